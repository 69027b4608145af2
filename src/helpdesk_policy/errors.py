"""Every exception helpdesk-policy raises, in one tree.

::

    HelpdeskPolicyError
    ├── InvalidRequestError      the request failed validation (lists every bad field)
    ├── InvalidConfigError       the policy config failed validation
    ├── PolicyLoadError          policy files missing or do not compile
    │   └── BundleError              a bundle cannot be built or read
    │       └── BundleVerificationError  bad manifest, signature, digest or revision
    ├── DocumentError            a JSON/YAML file is unreadable, has duplicate keys or nests too deep
    ├── SuiteError               an expectation suite file is unreadable or invalid
    ├── DiffError                a policy diff cannot run (bad cases, bad policy source)
    ├── ResourceLimitError       a Rego test run exceeded its time or memory bound
    ├── EngineConfigError        an engine option is invalid (bad URL, unreadable CA/cert/key file)
    ├── LedgerError              the ledger cannot be opened, read or written (bad URL, schema too new)
    │   └── LedgerUnavailableError   a missing extra (psycopg) or an unreachable database
    └── EngineError              an engine could not produce a decision
        ├── EngineUnavailableError   cannot load (missing extra, server down, breaker open)
        │   └── CircuitOpenError         the breaker refused the call without attempting it
        ├── OpaHTTPError             OPA answered with an HTTP error status
        ├── PolicyRevisionMismatchError  the server runs another policy revision
        ├── EngineTimeoutError       no answer within the deadline
        ├── UndefinedDecisionError   the policy produced no decision (Rego "undefined")
        └── MalformedDecisionError   the engine answered something that is not a decision
            └── ResponseTooLargeError    the server's answer is larger than allowed

The engine chain catches ``EngineError`` to move to the next engine; the
facade never catches ``InvalidRequestError``: bad input is the caller's to
fix, and a decision for it would be a guess.
"""

from __future__ import annotations

import difflib
import re
import typing
from collections.abc import Iterable, Sequence
from typing import Any
from dataclasses import dataclass

__all__ = [
    "HelpdeskPolicyError",
    "FieldError",
    "InvalidRequestError",
    "InvalidConfigError",
    "PolicyLoadError",
    "EngineConfigError",
    "EngineError",
    "EngineUnavailableError",
    "EngineTimeoutError",
    "UndefinedDecisionError",
    "MalformedDecisionError",
    "ResponseTooLargeError",
    "CircuitOpenError",
    "OpaHTTPError",
    "PolicyRevisionMismatchError",
    "BundleError",
    "BundleVerificationError",
    "DocumentError",
    "SuiteError",
    "DiffError",
    "ResourceLimitError",
    "LedgerError",
    "LedgerUnavailableError",
]


class HelpdeskPolicyError(Exception):
    """Base class of every error raised by helpdesk-policy."""


@dataclass(frozen=True)
class FieldError:
    """One bad field: its dotted path (``target.privilege_tier``) and what is wrong."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class _ValidationFailure(HelpdeskPolicyError):
    what = "input"

    def __init__(self, errors: Sequence[FieldError]):
        self.errors: tuple[FieldError, ...] = tuple(errors)
        lines = "\n".join(f"  - {e}" for e in self.errors)
        super().__init__(f"invalid {self.what} ({len(self.errors)} error(s)):\n{lines}")

    @property
    def paths(self) -> list[str]:
        """The dotted path of every bad field, in the order found."""
        return [e.path for e in self.errors]

    @classmethod
    def from_pydantic(cls, exc: object, prefix: str = "", model: type | None = None) -> _ValidationFailure:
        return cls(list(field_errors_from_pydantic(exc, prefix, model)))


def field_errors_from_pydantic(exc: object, prefix: str = "", model: type | None = None) -> Iterable[FieldError]:
    """Turn a ``pydantic.ValidationError`` into our ``FieldError`` list.

    Input values are deliberately not echoed back: a bad field may hold a
    credential someone pasted into a ticket (guarantee 5). A misspelled
    vocabulary word or key gets a hint instead (``— did you mean
    'password_reset'?``) that quotes only the vocabulary; ``model``, the
    pydantic model that was validated, lets an unknown key be matched with
    the keys allowed where it sits.
    """
    for err in exc.errors(include_url=False):  # type: ignore[attr-defined]
        loc = [str(p) for p in err.get("loc", ())]
        path = ".".join(loc) if loc else "(root)"
        if prefix:
            path = f"{prefix}.{path}" if loc else prefix
        message = err.get("msg", "invalid")
        hint = _did_you_mean(err, model)
        if hint is not None:
            message = f"{message} — did you mean {hint!r}?"
        yield FieldError(path=path, message=message)


#: Longer inputs get no hint: a vocabulary word is short, and a long string
#: is more likely pasted text than a misspelling.
_HINT_MAX_LENGTH = 64


def _did_you_mean(err: dict[str, Any], model: type | None) -> str | None:
    """The vocabulary word or key closest to what was sent (difflib), if one is close."""
    kind = err.get("type")
    if kind in ("enum", "literal_error"):
        word = err.get("input")
        # pydantic lists the expected values as "'a', 'b' or 'c'"; enum values hold no quote.
        choices = re.findall(r"'([^']*)'", str((err.get("ctx") or {}).get("expected", "")))
    elif kind == "extra_forbidden" and model is not None and err.get("loc"):
        word = err["loc"][-1]
        choices = _keys_at(model, err["loc"][:-1])
    else:
        return None
    if not isinstance(word, str) or not choices or len(word) > _HINT_MAX_LENGTH:
        return None
    close = difflib.get_close_matches(word.casefold(), choices, n=1, cutoff=0.6)
    return close[0] if close else None


def _keys_at(model: type, loc: Sequence[Any]) -> list[str]:
    """The field names of the (nested) pydantic model found at ``loc`` inside ``model``."""
    current: Any = model
    for part in loc:
        fields = getattr(current, "model_fields", None)
        if not isinstance(fields, dict) or part not in fields:
            return []
        current = _model_in(fields[part].annotation)
    fields = getattr(current, "model_fields", None)
    return list(fields) if isinstance(fields, dict) else []


def _model_in(annotation: Any) -> Any:
    # The model inside ``X | None``, ``Annotated[X, …]`` or ``list[X]``.
    if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


class InvalidRequestError(_ValidationFailure, ValueError):
    """The request is not valid; ``errors`` names every bad field path."""

    what = "request"


class InvalidConfigError(_ValidationFailure, ValueError):
    """The policy configuration is not valid; ``errors`` names every bad field path."""

    what = "policy config"


class PolicyLoadError(HelpdeskPolicyError):
    """The policy directory or its files could not be loaded or compiled."""


class EngineError(HelpdeskPolicyError):
    """An engine could not produce a decision. ``engine`` names which one."""

    def __init__(self, message: str, *, engine: str = "") -> None:
        super().__init__(f"{engine}: {message}" if engine else message)
        self.engine = engine


class EngineUnavailableError(EngineError):
    """The engine cannot run: a missing extra, an unreachable server, an open breaker."""


class EngineTimeoutError(EngineError):
    """The engine did not answer within its deadline."""


class PolicyRevisionMismatchError(EngineError):
    """The engine decided with a different policy than the one configured.

    An OPA server whose bundle revision is not the local policy revision
    would put a revision on the decision that did not make it. Not retried;
    the engine chain moves on to an engine that runs the configured policy.
    """

    retryable = False


class UndefinedDecisionError(EngineError):
    """The policy produced no decision (Rego *undefined*): never read as "allow"."""


class MalformedDecisionError(EngineError):
    """The engine returned something that is not a valid decision."""


class ResponseTooLargeError(MalformedDecisionError):
    """The server's answer is larger than the engine accepts (``max_response_bytes``).

    Reading stopped at the limit; not retried, since asking again would only
    fetch as much again. Counted against the circuit breaker like any
    malformed answer.
    """

    retryable = False


class EngineConfigError(HelpdeskPolicyError, ValueError):
    """An engine option is invalid: a bad URL, a missing or unreadable CA,
    certificate or key file, a number out of range.

    ``option`` names the option (``url``, ``ca_file``…); the message names it
    too, with the file's path where there is one, and never a credential (a
    password in a URL is shown as ``***``). A ``ValueError``, raised when the
    engine is built, so a misconfiguration fails at start-up rather than
    degrading every decision.
    """

    def __init__(self, message: str, *, engine: str = "", option: str = "") -> None:
        super().__init__(f"{engine}: {message}" if engine else message)
        self.engine = engine
        self.option = option


class CircuitOpenError(EngineUnavailableError):
    """The circuit breaker is open: the call was refused without being attempted."""

    def __init__(self, message: str, *, engine: str = "", retry_after: float = 0.0) -> None:
        super().__init__(message, engine=engine)
        #: Seconds until the breaker lets a probe through (0 when a probe is in flight).
        self.retry_after = retry_after


class OpaHTTPError(EngineError):
    """OPA answered with an HTTP error status.

    ``code`` and ``opa_message`` are OPA's error ``code`` and ``message``
    (``{"code": "invalid_parameter", "message": …, "errors": […]}``), as far
    as a server can be trusted with them: a ``code`` that is not an
    identifier-like token is dropped (None), and the message has its control
    and format characters (newlines, ESC…) replaced and is cut to 200
    characters. The detailed ``errors`` are kept on the exception (the same
    way cleaned, at most 20) but only their codes and locations go into its
    text, because an evaluation error can quote input values and error texts
    end up in decision logs (guarantee 5).
    """

    def __init__(
        self, message: str, *, engine: str, status: int, code: str | None = None,
        opa_message: str | None = None, errors: Sequence[Any] = (),
    ) -> None:
        super().__init__(message, engine=engine)
        self.status = status
        self.code = code
        self.opa_message = opa_message
        self.errors = list(errors)

    @property
    def retryable(self) -> bool:
        """A server error (5xx) may pass; a client error (4xx) will not."""
        return self.status >= 500


class BundleError(PolicyLoadError):
    """A bundle cannot be built or read."""


class BundleVerificationError(BundleError):
    """A bundle failed verification: bad manifest, signature, digest or revision."""


class DocumentError(HelpdeskPolicyError, ValueError):
    """A JSON or YAML document cannot be read: unreadable, not UTF-8, not valid,
    a duplicated key, or nested too deep (see :mod:`helpdesk_policy.loading`).

    ``source`` names the file (or ``-`` for standard input), ``line`` the line
    when the parser knows it, ``detail`` what is wrong. No value from the
    document is quoted, only key names.
    """

    def __init__(self, source: str, detail: str, *, line: int | None = None) -> None:
        self.source = source
        self.line = line
        self.detail = detail
        where = f"{source}: line {line}" if line is not None else source
        super().__init__(f"{where}: {detail}")


#: The most problems a SuiteError or DiffError lists in its message (all are on ``errors``).
_MAX_LISTED_ERRORS = 50


class SuiteError(HelpdeskPolicyError, ValueError):
    """A suite file is unreadable or invalid; ``errors`` names every problem.

    Each :class:`~helpdesk_policy.errors.FieldError` path reads
    ``<file>: cases[<i>] '<name>': <field path>``.
    """

    def __init__(self, errors: Sequence[FieldError]) -> None:
        self.errors: tuple[FieldError, ...] = tuple(errors)
        lines = "\n".join(f"  - {e}" for e in self.errors)
        super().__init__(f"invalid expectation suite ({len(self.errors)} error(s)):\n{lines}")


class DiffError(HelpdeskPolicyError, ValueError):
    """The diff cannot run: bad case files, invalid requests, a bad policy source.

    ``errors`` names every problem (file and line or index, field path).
    """

    def __init__(self, errors: Sequence[FieldError] | str) -> None:
        if isinstance(errors, str):
            errors = [FieldError("diff", errors)]
        self.errors: tuple[FieldError, ...] = tuple(errors)
        shown = self.errors[:_MAX_LISTED_ERRORS]
        lines = "\n".join(f"  - {e}" for e in shown)
        more = len(self.errors) - len(shown)
        tail = f"\n  … and {more} more" if more > 0 else ""
        super().__init__(f"cannot diff ({len(self.errors)} problem(s)):\n{lines}{tail}")


class ResourceLimitError(HelpdeskPolicyError):
    """A run was stopped at its bound: ``limit`` is ``"time"`` or ``"memory"``."""

    def __init__(self, message: str, *, limit: str) -> None:
        super().__init__(message)
        self.limit = limit


class LedgerError(HelpdeskPolicyError):
    """The ledger (:mod:`helpdesk_policy.ledger`) cannot be opened, read or written:
    a bad ledger URL, an event that is not JSON, a schema newer than this library.

    A tampered ledger is not an error: ``verify()`` reports it as a
    :class:`~helpdesk_policy.ledger.ChainReport`.
    """


class LedgerUnavailableError(LedgerError):
    """The ledger's backend cannot be used: a missing extra (``pip install
    'helpdesk-policy[postgres]'``) or a database that does not answer."""
