"""The errors of :mod:`helpdesk_policy.agents`, under the package's one error tree.

::

    HelpdeskPolicyError
    └── AgentError                  base of every error this subpackage raises
        ├── PermitError             a permit was refused at execution time
        │   ├── PermitForgedError       bad signature, malformed, or not from this guard's key
        │   ├── PermitExpiredError      past its expires_at
        │   ├── PermitReplayedError     consumed before (single use)
        │   └── PermitMismatchError     for another request, or another policy revision
        ├── NotPermittedError       the guard gave no permit (``outcome`` says why)
        │   ├── EscalationRequiredError  a person must act: ``outcome`` is an Escalation
        │   └── RefusedError             the request is refused: ``outcome`` is a Refusal
        ├── FactsError              the facts of record could not be had (no decision from partial facts)
        │   ├── FactsUnavailableError    the system of record did not answer usably (down, HTTP error, timeout)
        │   ├── InvalidFactsError        the system of record holds invalid facts (``errors`` names each)
        │   └── UnknownIdentityError     the target is not in the system of record
        └── McpUnavailableError     the MCP server needs the ``mcp`` extra (also an ImportError)

Messages name permit and decision ids, never a ticket's free text, a
credential or a signature.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import FieldError, HelpdeskPolicyError

__all__ = [
    "AgentError",
    "PermitError",
    "PermitForgedError",
    "PermitExpiredError",
    "PermitReplayedError",
    "PermitMismatchError",
    "NotPermittedError",
    "EscalationRequiredError",
    "RefusedError",
    "FactsError",
    "FactsUnavailableError",
    "InvalidFactsError",
    "UnknownIdentityError",
    "McpUnavailableError",
]


class AgentError(HelpdeskPolicyError):
    """Base class of the errors raised by :mod:`helpdesk_policy.agents`."""


class PermitError(AgentError):
    """A permit was refused at execution time: the identity change must not run.

    ``permit_id`` names the permit (``None`` when it could not even be read).
    """

    def __init__(self, message: str, *, permit_id: str | None = None) -> None:
        super().__init__(message)
        self.permit_id = permit_id


class PermitForgedError(PermitError):
    """The permit's signature does not match its fields (edited, or not issued
    under this key), or the permit is malformed."""


class PermitExpiredError(PermitError):
    """The permit is past its ``expires_at``: authorize again."""


class PermitReplayedError(PermitError):
    """The permit was consumed before: a permit authorizes one execution."""


class PermitMismatchError(PermitError):
    """The permit is for another request (another action, target, channel or
    any other field: its ``input_digest`` differs) or another policy revision."""


class NotPermittedError(AgentError):
    """The guard issued no permit, so the wrapped function did not run.

    ``outcome`` is the :class:`~helpdesk_policy.agents.guard.Escalation` or
    :class:`~helpdesk_policy.agents.guard.Refusal` the guard answered.
    """

    def __init__(self, message: str, *, outcome: Any) -> None:
        super().__init__(message)
        self.outcome = outcome


class EscalationRequiredError(NotPermittedError):
    """A person must act (verify, approve, call back) before this can run."""


class RefusedError(NotPermittedError):
    """The request is refused (denied, or the guard failed closed)."""


class FactsError(AgentError):
    """The facts of record for a request could not be had, so nothing is decided.

    Fail closed: a request is never decided from partial facts (a target
    whose tier or VIP status could not be read is not a target without
    them). See :mod:`helpdesk_policy.agents.facts`.
    """


class FactsUnavailableError(FactsError):
    """The system of record did not answer usably: unreachable, an HTTP error,
    a timeout, an answer that is not what was asked for (another identity,
    several identities, not JSON, too large).

    ``source`` names the provider (``scim``, ``file``, a class name). The
    message never holds a credential (a bearer token) or an answer's body.
    """

    def __init__(self, message: str, *, source: str = "") -> None:
        super().__init__(f"{source}: {message}" if source else message)
        self.source = source


class InvalidFactsError(FactsError, ValueError):
    """The system of record holds facts that are not valid: ``errors`` names each.

    Each :class:`~helpdesk_policy.errors.FieldError` path names where the bad
    value is (``inventory.csv:4:privilege_tier``, a SCIM attribute) and, after
    ``->``, the fact it was read into. Values are never quoted.
    """

    def __init__(self, errors: Sequence[FieldError]) -> None:
        self.errors: tuple[FieldError, ...] = tuple(errors)
        shown = self.errors[:50]
        lines = "\n".join(f"  - {e}" for e in shown)
        more = len(self.errors) - len(shown)
        tail = f"\n  … and {more} more" if more > 0 else ""
        super().__init__(f"invalid facts of record ({len(self.errors)} error(s)):\n{lines}{tail}")

    @property
    def paths(self) -> list[str]:
        """Where each bad value is, in the order found."""
        return [e.path for e in self.errors]


class UnknownIdentityError(FactsError):
    """The identity a request is about is not in the system of record.

    Nothing is decided: an identity the directory does not know cannot have
    its tier, VIP status or owners read, and a decision without them would be
    a guess. Route the request to a person (an escalation), who finds out why
    the identity is unknown (a typo, a deleted account, an attacker's probe).
    ``identifier`` is the canonical identifier looked up.
    """

    def __init__(self, identifier: str, *, source: str = "") -> None:
        where = f" in {source}" if source else ""
        super().__init__(f"no identity of record{where} for the target")
        self.identifier = identifier
        self.source = source


class McpUnavailableError(AgentError, ImportError):
    """The MCP server (:mod:`helpdesk_policy.agents.mcp_server`) needs the ``mcp``
    package: ``pip install 'helpdesk-policy[mcp]'``."""

    def __init__(self, detail: str = "") -> None:
        why = f" ({detail})" if detail else ""
        super().__init__(f"the MCP server needs the mcp package{why}: pip install 'helpdesk-policy[mcp]'")
