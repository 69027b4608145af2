"""Obligations tracked to the end: each one with a deadline is an item, ``open``, ``done`` or ``overdue``.

A decision's obligations (revoke the previous credential, terminate sessions,
time-bound access, a post-incident review…) become *items* in the ledger, as
``obligation`` events in the ticket's chain, append-only and hash-chained like
everything else there:

* ``{"event": "opened", "decision_id", "code", "due_at", "decided_at", "within_hours", "to"}``
  when :meth:`ObligationTracker.open_for` records a decision's obligations;
* ``{"event": "done", "decision_id", "code", "done_by", "done_at"}`` when
  :meth:`ObligationTracker.mark_done` records that one was carried out.

Nothing is ever updated: :meth:`ObligationTracker.items` folds the events into
the items' current state. An item's deadline (``due_at``) is the decision's
time plus the obligation's ``within_hours`` (``time_bound_access``: the access
must have ended by then). The actions the policy states without a deadline
(:data:`ACTIONS_WITHOUT_DEADLINE`) get the tracker's ``default_hours``.
``record_evidence`` is not tracked here: :func:`helpdesk_policy.evidence.verify`
checks it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import LedgerError
from ..models import Decision, Obligation
from .base import Event, LedgerStore, format_timestamp

__all__ = [
    "ACTIONS_WITHOUT_DEADLINE",
    "NOT_TRACKED",
    "ObligationError",
    "ObligationItem",
    "ObligationStatus",
    "ObligationTracker",
]

log = logging.getLogger(__name__)

ObligationStatus = Literal["open", "done", "overdue"]

#: Actions an obligation may name without ``within_hours``; tracked with the
#: tracker's ``default_hours``.
ACTIONS_WITHOUT_DEADLINE = frozenset({
    "terminate_sessions",
    "rotate_stale_secret",
    "move_to_secrets_manager",
    "notify_identity_owner",
    "notify_previous_contact",
})

#: Obligations never tracked here (``record_evidence`` is checked by ``verify``).
NOT_TRACKED = frozenset({"record_evidence"})


class ObligationError(LedgerError):
    """An obligation item cannot be changed: it is unknown, or already done."""


def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must carry a time zone")
    return value.astimezone(timezone.utc)


def _parse_ts(text: Any) -> datetime:
    if not isinstance(text, str):
        raise ValueError(f"not a timestamp: {text!r}")
    return _aware(datetime.fromisoformat(text.replace("Z", "+00:00")), "timestamp")


class ObligationItem(BaseModel):
    """One tracked obligation of one decision, as of a moment (``status`` depends on it)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    decision_id: str
    #: The ledger chain it lives in: the ticket id, or the decision id.
    chain: str
    code: str
    decided_at: datetime
    due_at: datetime
    #: The obligation's own deadline in hours; ``None`` when the default applied.
    within_hours: int | None = None
    #: Whom to notify, when the obligation names someone.
    to: str | None = None
    status: ObligationStatus
    done_by: str | None = None
    done_at: datetime | None = None

    @property
    def late(self) -> bool:
        """Done after its deadline."""
        return self.done_at is not None and self.done_at > self.due_at

    def to_dict(self) -> dict[str, Any]:
        doc = self.model_dump(mode="json")
        for key in ("decided_at", "due_at", "done_at"):
            value = getattr(self, key)
            doc[key] = None if value is None else format_timestamp(value)
        return doc


class _State(BaseModel):
    """An item as the events left it (no status yet)."""

    model_config = ConfigDict(extra="forbid")

    decision_id: str = Field(min_length=1)
    chain: str
    code: str = Field(min_length=1)
    decided_at: datetime
    due_at: datetime
    within_hours: int | None = None
    to: str | None = None
    done_by: str | None = None
    done_at: datetime | None = None

    def at(self, now: datetime) -> ObligationItem:
        if self.done_at is not None:
            status: ObligationStatus = "done"
        elif now > self.due_at:
            status = "overdue"
        else:
            status = "open"
        return ObligationItem(status=status, **self.model_dump())


class ObligationTracker:
    """Opens, closes and lists obligation items in a ledger.

    Args:
        store: the ledger (:func:`helpdesk_policy.ledger.open_ledger`).
        default_hours: the deadline of an action in :data:`ACTIONS_WITHOUT_DEADLINE`
            that the decision states without ``within_hours``.
    """

    def __init__(self, store: LedgerStore, *, default_hours: int = 24) -> None:
        if isinstance(default_hours, bool) or not isinstance(default_hours, int) or default_hours < 0:
            raise ValueError(f"default_hours must be a whole number of hours >= 0, not {default_hours!r}")
        self.store = store
        self.default_hours = default_hours

    # ------------------------------------------------------------------ writing

    def deadline_hours(self, obligation: Obligation) -> int | None:
        """The hours an obligation is given, or ``None`` when it is not tracked."""
        if obligation.code in NOT_TRACKED:
            return None
        if obligation.within_hours is not None:
            return obligation.within_hours
        if obligation.code in ACTIONS_WITHOUT_DEADLINE:
            return self.default_hours
        return None

    def open_for(self, decision: Decision, *, decided_at: datetime, chain: str | None = None) -> list[ObligationItem]:
        """Record one ``opened`` event per trackable obligation of ``decision``; return its items.

        ``chain`` is the ticket id (the request's ``id``); by default the
        decision id. Obligations already open for this decision are not
        opened twice, so a retried call records nothing new.
        """
        decided_at = _aware(decided_at, "decided_at")
        chain = chain or decision.decision_id
        existing = {(s.decision_id, s.code) for s in self._fold()}
        for obligation in decision.obligations:
            hours = self.deadline_hours(obligation)
            if hours is None or (decision.decision_id, obligation.code) in existing:
                continue
            payload: dict[str, Any] = {
                "event": "opened",
                "decision_id": decision.decision_id,
                "code": obligation.code,
                "decided_at": format_timestamp(decided_at),
                "due_at": format_timestamp(decided_at + timedelta(hours=hours)),
                "within_hours": obligation.within_hours,
                "to": obligation.to,
            }
            self.store.append(Event(chain=chain, kind="obligation", payload=payload))
            existing.add((decision.decision_id, obligation.code))
        now = datetime.now(timezone.utc)
        return [s.at(now) for s in self._fold() if s.decision_id == decision.decision_id]

    def mark_done(self, decision_id: str, code: str, *, by: str, at: datetime | None = None) -> ObligationItem:
        """Record that ``by`` carried out the obligation ``code`` of ``decision_id`` at ``at`` (default now).

        Raises :class:`ObligationError` for an item never opened, or one already done.
        """
        if not isinstance(by, str) or not by.strip():
            raise ValueError("by names who carried the obligation out (a non-empty id)")
        at = _aware(at, "at") if at is not None else datetime.now(timezone.utc)
        state = next((s for s in self._fold() if (s.decision_id, s.code) == (decision_id, code)), None)
        if state is None:
            raise ObligationError(f"no obligation {code!r} is open for decision {decision_id!r}")
        if state.done_at is not None:
            raise ObligationError(f"obligation {code!r} of decision {decision_id!r} was already done by "
                                  f"{state.done_by!r} at {format_timestamp(state.done_at)}")
        self.store.append(Event(chain=state.chain, kind="obligation", payload={
            "event": "done", "decision_id": decision_id, "code": code, "done_by": by,
            "done_at": format_timestamp(at),
        }))
        state.done_by, state.done_at = by, at
        return state.at(at)

    # ------------------------------------------------------------------ reading

    def items(self, now: datetime | None = None) -> list[ObligationItem]:
        """Every item as of ``now`` (default: the current time), by deadline."""
        now = _aware(now, "now") if now is not None else datetime.now(timezone.utc)
        return sorted((s.at(now) for s in self._fold()), key=lambda i: (i.due_at, i.chain, i.decision_id, i.code))

    def due(self, now: datetime | None = None, within_hours: float = 0) -> list[ObligationItem]:
        """The items not done whose deadline has passed or falls within ``within_hours`` of ``now``."""
        if within_hours < 0:
            raise ValueError("within_hours must be >= 0")
        now = _aware(now, "now") if now is not None else datetime.now(timezone.utc)
        horizon = now + timedelta(hours=within_hours)
        return [i for i in self.items(now) if i.status != "done" and i.due_at <= horizon]

    def _fold(self) -> list[_State]:
        """The items the ledger's ``obligation`` events leave, in the order they were opened."""
        states: dict[tuple[str, str], _State] = {}
        for chain in self.store.chains():
            self._fold_chain(chain, self.store.events(chain), states)
        return list(states.values())

    @staticmethod
    def _fold_chain(chain: str, events: Iterable[Any], states: dict[tuple[str, str], _State]) -> None:
        for stored in events:
            if stored.kind != "obligation":
                continue
            payload = stored.payload
            kind = payload.get("event")
            key = (payload.get("decision_id"), payload.get("code"))
            try:
                if kind == "opened":
                    if key in states:
                        continue  # opened twice (two workers at once): the first one counts
                    states[key] = _State(  # type: ignore[index]
                        decision_id=payload["decision_id"], chain=chain, code=payload["code"],
                        decided_at=_parse_ts(payload["decided_at"]), due_at=_parse_ts(payload["due_at"]),
                        within_hours=payload.get("within_hours"), to=payload.get("to"))
                elif kind == "done":
                    state = states.get(key)  # type: ignore[arg-type]
                    if state is not None and state.done_at is None:
                        state.done_by = str(payload["done_by"])
                        state.done_at = _parse_ts(payload["done_at"])
            except (KeyError, ValueError, ValidationError) as exc:
                log.warning("ledger chain %r event %s: not a readable obligation event (%s)", chain, stored.seq,
                            str(exc).splitlines()[0])
