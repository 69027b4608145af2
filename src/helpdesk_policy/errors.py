"""Every exception helpdesk-policy raises, in one tree.

::

    HelpdeskPolicyError
    ├── InvalidRequestError      the request failed validation (lists every bad field)
    ├── InvalidConfigError       the policy config failed validation
    ├── PolicyLoadError          policy files missing or do not compile
    └── EngineError              an engine could not produce a decision
        ├── EngineUnavailableError   cannot load (missing extra, server down, breaker open)
        ├── EngineTimeoutError       no answer within the deadline
        ├── UndefinedDecisionError   the policy produced no decision (Rego "undefined")
        └── MalformedDecisionError   the engine answered something that is not a decision

The facade catches ``EngineError`` to move to the next engine in the chain; it
never catches ``InvalidRequestError``: bad input is the caller's to fix, and a
decision for it would be a guess.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "HelpdeskPolicyError",
    "FieldError",
    "InvalidRequestError",
    "InvalidConfigError",
    "PolicyLoadError",
    "EngineError",
    "EngineUnavailableError",
    "EngineTimeoutError",
    "UndefinedDecisionError",
    "MalformedDecisionError",
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
    def from_pydantic(cls, exc: object, prefix: str = "") -> _ValidationFailure:
        return cls(list(field_errors_from_pydantic(exc, prefix)))


def field_errors_from_pydantic(exc: object, prefix: str = "") -> Iterable[FieldError]:
    """Turn a ``pydantic.ValidationError`` into our ``FieldError`` list.

    Input values are deliberately not echoed back: a bad field may hold a
    credential someone pasted into a ticket (SPEC §5.5).
    """
    for err in exc.errors(include_input=False, include_url=False):  # type: ignore[attr-defined]
        loc = [str(p) for p in err.get("loc", ())]
        path = ".".join(loc) if loc else "(root)"
        if prefix:
            path = f"{prefix}.{path}" if loc else prefix
        yield FieldError(path=path, message=err.get("msg", "invalid"))


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


class UndefinedDecisionError(EngineError):
    """The policy produced no decision (Rego *undefined*): never read as "allow"."""


class MalformedDecisionError(EngineError):
    """The engine returned something that is not a valid decision."""
