"""A ticket's life in the ledger: evidence verified, closed (or refused), reopened, escalated.

:class:`TicketLifecycle` records, in the ticket's chain ``"ticket:<ticket id>"``
(append-only and hash-chained like everything in the ledger):

* ``evidence`` events: ``{"event": "verified", "ticket", "decision_id", "at",
  "evidence": {...Evidence JSON}, "verification": {"closable", "items":
  [{"check", "status", "reason"}]}}``, each time evidence is checked
  (:meth:`~TicketLifecycle.record_evidence`, and at every close);
* ``ticket`` events:

  - ``{"event": "closed", "ticket", "decision_id", "by", "at", "compliant"}``:
    ``compliant`` is true when the evidence made the ticket closable, false
    when a ticketing system closed it anyway (``allow_incomplete=True``: it is
    recorded, and counted as non-compliant by the report, never hidden);
  - ``{"event": "close_refused", "ticket", "decision_id", "by", "at",
    "problems": [check codes]}``: a close asked for and refused;
  - ``{"event": "reopened", "ticket", "by", "at", "reason"}``;
  - ``{"event": "escalated", "ticket", "by", "at", "to"}``.

``by`` and ``to`` are identifiers (stored in canonical form, as requests
store them), ``reason`` a code such as ``user_still_locked_out``: no free
text, so nothing a person types (a password, a code) can land in the ledger.

>>> from datetime import datetime, timezone
>>> from helpdesk_policy import HelpdeskPolicy
>>> from helpdesk_policy.evidence import Evidence, Outcome
>>> from helpdesk_policy.ledger.sqlite import SQLiteLedgerStore
>>> import tempfile, os
>>> store = SQLiteLedgerStore(os.path.join(tempfile.mkdtemp(), "ledger.db"))
>>> with HelpdeskPolicy(engine="native") as policy:
...     decision = policy.decide({
...         "request": {"id": "INC-7", "action": "password_reset", "channel": "self_service_portal"},
...         "actor": {"id": "u-1", "type": "human", "relationship": "self",
...                   "authenticated": True, "auth_strength": "mfa"},
...         "target": {"id": "u-1", "type": "human", "privileged": False,
...                    "privilege_tier": 0, "vip": False, "status": "active"},
...     })
>>> now = datetime.now(timezone.utc)
>>> evidence = Evidence(decision_id=decision.decision_id, input_digest=decision.input_digest,
...                     requester_id="u-1", authentication_event="idp-evt-1",
...                     outcome=Outcome(status="completed", at=now), recorded_at=now)
>>> TicketLifecycle(store).close(decision, evidence, ticket="INC-7", by="agent-3").closable
True
>>> [e.payload["event"] for e in store.events("ticket:INC-7")]
['verified', 'closed']
>>> store.close()
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from ..credentials import not_a_credential, not_a_credential_ticket
from ..digest import mask_credentials
from ..errors import LedgerError
from ..evidence import DEFAULT_WINDOW_HOURS, Evidence, Verification, verify
from ..models import Decision, Identifier, TicketId
from .base import Event, LedgerStore, StoredEvent, format_timestamp, now_or

__all__ = ["TICKET_CHAIN_PREFIX", "NotClosableError", "TicketLifecycle", "ticket_chain"]

log = logging.getLogger(__name__)

#: Every event about one ticket lives in the chain ``"ticket:" + ticket id``.
TICKET_CHAIN_PREFIX = "ticket:"

ReasonCode = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]


class NotClosableError(LedgerError):
    """The evidence does not let the ticket close; ``verification`` says why (the refusal is recorded)."""

    def __init__(self, ticket: str, verification: Verification) -> None:
        self.ticket = ticket
        self.verification = verification
        problems = "; ".join(f"{i.check} ({i.status}): {i.reason}" for i in verification.problems)
        if not problems:
            # Every check passed, yet the outcome does not close the ticket
            # (abandoned, or a denial not refused).
            problems = f"outcome {verification.outcome!r} does not close a {verification.level.value} decision"
        super().__init__(f"ticket {ticket!r} may not be closed: {problems}")


class _Step(BaseModel):
    """The arguments of a ticket step, validated together so every bad one is named."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    # Never credential-shaped: these are stored verbatim (the ticket in the chain's name).
    ticket: Annotated[TicketId, BeforeValidator(not_a_credential_ticket)]
    by: Annotated[Identifier, BeforeValidator(not_a_credential)] | None = None
    to: Annotated[Identifier, BeforeValidator(not_a_credential)] | None = None
    reason: ReasonCode | None = None


def ticket_chain(ticket: str) -> str:
    """The chain holding every event about ``ticket``: ``"ticket:" + ticket``."""
    return TICKET_CHAIN_PREFIX + ticket


def _step(**values: Any) -> _Step:
    """The step's arguments, validated; a ValueError names every bad (or missing) one."""
    bad: list[str] = [f"{name}: required" for name, value in values.items() if value is None]
    try:
        step = _Step(**values)
    except ValidationError as exc:
        bad += [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        step = None
    if bad or step is None:
        raise ValueError(f"invalid ticket step: {'; '.join(bad)}")
    return step


def _only_ticket(ticket: str) -> str:
    return _step(ticket=ticket).ticket


class TicketLifecycle:
    """Records a ticket's evidence checks and steps in the ledger.

    Args:
        store: the ledger (:func:`helpdesk_policy.ledger.open_ledger`).
        window_hours: how old evidence may be when verified (default
            :data:`helpdesk_policy.evidence.DEFAULT_WINDOW_HOURS`).
        withdrawn_revisions: policy revisions withdrawn since: evidence for a
            decision made on one never closes a ticket.
    """

    def __init__(self, store: LedgerStore, *, window_hours: int | None = None,
                 withdrawn_revisions: Collection[str] = ()) -> None:
        hours = DEFAULT_WINDOW_HOURS if window_hours is None else window_hours
        if isinstance(hours, bool) or not isinstance(hours, int) or hours < 1:
            raise ValueError(f"window_hours must be a whole number of hours >= 1, not {window_hours!r}")
        if isinstance(withdrawn_revisions, str):
            raise TypeError("withdrawn_revisions is a collection of revisions, not one string")
        self.store = store
        self.window_hours = hours
        self.withdrawn_revisions = frozenset(withdrawn_revisions)

    # ------------------------------------------------------------------ evidence

    def _verify(self, decision: Decision, evidence: Evidence, now: datetime) -> Verification:
        return verify(decision, evidence, now=now, window_hours=self.window_hours,
                      withdrawn_revisions=self.withdrawn_revisions)

    def _record_verified(self, ticket: str, decision: Decision, evidence: Evidence, verification: Verification,
                         now: datetime) -> StoredEvent:
        payload = {
            "event": "verified",
            "ticket": ticket,
            "decision_id": decision.decision_id,
            "at": format_timestamp(now),
            "evidence": evidence.model_dump(mode="json"),
            # The reasons quote ids from the request (the approvers of record): an id
            # shaped like a one-time code or a key is masked, as in the decision log.
            "verification": mask_credentials({
                "closable": verification.closable,
                "items": [i.model_dump(mode="json") for i in verification.items],
            }),
        }
        return self.store.append(Event(chain=ticket_chain(ticket), kind="evidence", payload=payload))

    def record_evidence(self, decision: Decision, evidence: Evidence, *, ticket: str,
                        now: datetime | None = None) -> Verification:
        """Verify ``evidence`` against ``decision`` at ``now`` and record the result; return it.

        Raises:
            ValueError: ``ticket`` is not a ticket id, or ``now`` is naive.
            LedgerError: the ledger cannot be written.
        """
        ticket = _only_ticket(ticket)
        now = now_or(now)
        verification = self._verify(decision, evidence, now)
        self._record_verified(ticket, decision, evidence, verification, now)
        return verification

    # ------------------------------------------------------------------ steps

    def _ticket_event(self, ticket: str, payload: dict[str, Any]) -> StoredEvent:
        return self.store.append(Event(chain=ticket_chain(ticket), kind="ticket", payload=payload))

    def close(self, decision: Decision, evidence: Evidence, *, ticket: str, by: str, now: datetime | None = None,
              allow_incomplete: bool = False) -> Verification:
        """May this ticket be closed? Verify, record the answer, and close it or refuse.

        The evidence is verified at ``now`` and recorded (a ``verified``
        evidence event), then:

        * closable: a ``closed`` event with ``compliant: true``;
        * not closable, ``allow_incomplete=False``: a ``close_refused`` event
          listing the problem checks, and :class:`NotClosableError`;
        * not closable, ``allow_incomplete=True`` (a ticketing system that
          closed it anyway): a ``closed`` event with ``compliant: false``.

        Returns:
            The :class:`~helpdesk_policy.evidence.Verification`.

        Raises:
            NotClosableError: the evidence does not let the ticket close.
            ValueError: ``ticket`` or ``by`` is not identifier-shaped, or ``now`` is naive.
            LedgerError: the ledger cannot be written.
        """
        step = _step(ticket=ticket, by=by)
        now = now_or(now)
        verification = self._verify(decision, evidence, now)
        self._record_verified(step.ticket, decision, evidence, verification, now)
        common = {"ticket": step.ticket, "decision_id": decision.decision_id, "by": step.by,
                  "at": format_timestamp(now)}
        if verification.closable or allow_incomplete:
            if not verification.closable:
                log.warning("ticket %r closed by %r without complete evidence (%s): recorded as non-compliant",
                            step.ticket, step.by, ", ".join(i.check for i in verification.problems) or "outcome")
            self._ticket_event(step.ticket, {"event": "closed", **common, "compliant": verification.closable})
            return verification
        problems = [i.check for i in verification.problems] or ["outcome"]
        self._ticket_event(step.ticket, {"event": "close_refused", **common, "problems": problems})
        raise NotClosableError(step.ticket, verification)

    def reopen(self, ticket: str, *, by: str, reason: str, now: datetime | None = None) -> StoredEvent:
        """Record that ``by`` reopened ``ticket`` for ``reason`` (a code such as ``still_locked_out``)."""
        step = _step(ticket=ticket, by=by, reason=reason)
        return self._ticket_event(step.ticket, {"event": "reopened", "ticket": step.ticket, "by": step.by,
                                                "at": format_timestamp(now_or(now)), "reason": step.reason})

    def escalate(self, ticket: str, *, by: str, to: str, now: datetime | None = None) -> StoredEvent:
        """Record that ``by`` escalated ``ticket`` to ``to`` (a team or person id)."""
        step = _step(ticket=ticket, by=by, to=to)
        return self._ticket_event(step.ticket, {"event": "escalated", "ticket": step.ticket, "by": step.by,
                                                "at": format_timestamp(now_or(now)), "to": step.to})
