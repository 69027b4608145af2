"""Obligations tracked to the end: each one with a deadline is an item, ``open``, ``done`` or ``overdue``.

A decision's obligations (revoke the previous credential, terminate sessions,
time-bound access, a post-incident review…) become *items* in the ledger, as
``obligation`` events in the ticket's chain, append-only and hash-chained like
everything else there:

* ``{"event": "opened", "decision_id", "code", "due_at", "decided_at", "within_hours", "to"}``
  when :meth:`ObligationTracker.open_for` records a decision's obligations;
* ``{"event": "done", "decision_id", "code", "done_by", "done_by_type", "done_at"}``
  when :meth:`ObligationTracker.mark_done` records that one was carried out
  (``done_by_type``: ``human``, ``service`` or ``ai_agent``; absent from events
  written before it existed).

:meth:`ObligationTracker.open_from_record` opens them from a decision-log
record instead of a :class:`~helpdesk_policy.models.Decision` (what
:class:`~helpdesk_policy.ledger.LedgerSink` does with ``track_obligations=``).
A review (``post_incident_review``, any code ending in ``_review``) is
accountability for what happened: only a person may mark it done, never a
service or an AI agent (OWASP LLM06 excessive agency, NIST CSF 2.0 RS.AN).

Nothing is ever updated: :meth:`ObligationTracker.items` folds the events into
the items' current state. An item's deadline (``due_at``) is the decision's
time plus the obligation's ``within_hours`` (``time_bound_access``: the access
must have ended by then). The actions the policy states without a deadline
(:data:`ACTIONS_WITHOUT_DEADLINE`) get the tracker's ``default_hours``.
``record_evidence`` is not tracked here: :func:`helpdesk_policy.evidence.verify`
checks it.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..credentials import CREDENTIAL_MASK, looks_like_credential
from ..digest import REDACTED
from ..errors import LedgerError
from ..models import Decision, Obligation
from .base import Event, LedgerStore, aware_utc, format_timestamp, now_or, parse_timestamp

__all__ = [
    "ACTIONS_WITHOUT_DEADLINE",
    "NOT_TRACKED",
    "DoneByType",
    "is_review",
    "record_chain",
    "ObligationError",
    "ObligationItem",
    "ObligationStatus",
    "ObligationTracker",
]

log = logging.getLogger(__name__)

ObligationStatus = Literal["open", "done", "overdue"]

#: Who carried an obligation out: a person, a service (automation) or an AI agent.
DoneByType = Literal["human", "service", "ai_agent"]
_DONE_BY_TYPES: tuple[str, ...] = get_args(DoneByType)

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
    """An obligation item cannot be changed: it is unknown, already done, or a
    review that only a person may mark done."""


def is_review(code: str) -> bool:
    """A review (``post_incident_review``, any ``*_review``): only a person may mark it done."""
    return code == "post_incident_review" or code.endswith("_review")


def record_chain(record: Mapping[str, Any]) -> str | None:
    """The ticket chain of a decision-log record: ``"ticket:<id>"``, or ``None``.

    The id is the record's ``labels.ticket``, else its ``input.request.id``;
    an id masked in the record (``[masked:credential]``, ``[redacted]``) is
    no id.
    """
    labels = record.get("labels")
    request = record.get("input")
    request = request.get("request") if isinstance(request, Mapping) else None
    for ticket in (labels.get("ticket") if isinstance(labels, Mapping) else None,
                   request.get("id") if isinstance(request, Mapping) else None):
        if isinstance(ticket, str) and ticket.strip() and ticket not in (CREDENTIAL_MASK, REDACTED):
            return f"ticket:{ticket}"
    return None




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
    #: ``human``, ``service`` or ``ai_agent``; ``None`` for items done before it was recorded.
    done_by_type: DoneByType | None = None
    done_at: datetime | None = None

    @property
    def late(self) -> bool:
        """Done after its deadline."""
        return self.done_at is not None and self.done_at > self.due_at

    def to_dict(self) -> dict[str, Any]:
        """The item as JSON; ``done_by_type`` only once it is known (an item done with it recorded)."""
        doc = self.model_dump(mode="json")
        if doc["done_by_type"] is None:
            del doc["done_by_type"]
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
    done_by_type: DoneByType | None = None
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

        ``chain`` is the ticket's chain (``"ticket:<request id>"``); by default
        the decision id. Obligations already open for this decision are not
        opened twice in the chain, so a retried call records nothing new.
        """
        decided_at = aware_utc(decided_at, "decided_at")
        return self._open(decision.decision_id, decision.obligations, decided_at, chain or decision.decision_id)

    def open_from_record(self, record: Mapping[str, Any], *, chain: str | None = None) -> list[ObligationItem]:
        """Open the obligation items of a decision-log record (as :meth:`open_for` does for a decision).

        Reads the record's ``decision_id``, ``timestamp`` (the decision's
        time, from which deadlines run) and ``result.obligations``. ``chain``
        defaults to the record's ticket chain (:func:`record_chain`), else the
        decision id. The same rules apply: untracked obligations are skipped,
        and items already open for the decision are not opened twice.

        Raises:
            ValueError: the record has no decision id or no readable
                timestamp, or an obligation in it is not one (named by its
                position); the readable ones are opened first.
        """
        decision_id = record.get("decision_id")
        if not isinstance(decision_id, str) or not decision_id:
            raise ValueError("the record has no decision_id")
        try:
            decided_at = parse_timestamp(record.get("timestamp"))
        except ValueError:
            raise ValueError(f"record {decision_id}: timestamp is not an ISO 8601 time with a zone") from None
        result = record.get("result")
        raw = result.get("obligations") if isinstance(result, Mapping) else None
        if not isinstance(raw, Sequence) or isinstance(raw, str):
            raise ValueError(f"record {decision_id}: result.obligations is not a list")
        obligations: list[Obligation] = []
        bad: list[str] = []
        for i, item in enumerate(raw):
            try:
                obligations.append(Obligation.model_validate(item))
            except ValidationError:
                bad.append(f"result.obligations[{i}]")
        items = self._open(decision_id, obligations, decided_at, chain or record_chain(record) or decision_id)
        if bad:
            raise ValueError(f"record {decision_id}: not an obligation: {', '.join(bad)}")
        return items

    def _open(self, decision_id: str, obligations: Iterable[Obligation], decided_at: datetime,
              chain: str) -> list[ObligationItem]:
        # Only the ticket's own chain is read: a decision's items live in one
        # chain, and reading the whole ledger on every decision would slow the
        # sink down as the ledger grows.
        existing = {(s.decision_id, s.code) for s in self._fold(chain)}
        for obligation in obligations:
            hours = self.deadline_hours(obligation)
            if hours is None or (decision_id, obligation.code) in existing:
                continue
            payload: dict[str, Any] = {
                "event": "opened",
                "decision_id": decision_id,
                "code": obligation.code,
                "decided_at": format_timestamp(decided_at),
                "due_at": format_timestamp(decided_at + timedelta(hours=hours)),
                "within_hours": obligation.within_hours,
                "to": obligation.to,
            }
            self.store.append(Event(chain=chain, kind="obligation", payload=payload))
            existing.add((decision_id, obligation.code))
        now = datetime.now(timezone.utc)
        return [s.at(now) for s in self._fold(chain) if s.decision_id == decision_id]

    def mark_done(self, decision_id: str, code: str, *, by: str, at: datetime | None = None,
                  by_type: DoneByType = "human") -> ObligationItem:
        """Record that ``by`` carried out the obligation ``code`` of ``decision_id`` at ``at`` (default now).

        Args:
            decision_id: the decision the obligation belongs to.
            code: the obligation's code.
            by: who carried it out: an id, never a credential.
            at: when (timezone-aware; default now).
            by_type: ``human`` (default), ``service`` or ``ai_agent``. A review
                (:func:`is_review`) must be done by a ``human``.

        Raises:
            ValueError: ``by`` is empty or looks like a credential (the value is
                never repeated), or ``by_type`` is not one of the three.
            ObligationError: the item was never opened, is already done, or is
                a review marked done by a service or an AI agent.
        """
        if not isinstance(by, str) or not by.strip():
            raise ValueError("by names who carried the obligation out (a non-empty id)")
        if looks_like_credential(by):
            raise ValueError("by looks like a credential (a key, token, password or code): give the id of who "
                             "carried the obligation out, never a secret")
        if by_type not in _DONE_BY_TYPES:
            raise ValueError(f"by_type must be one of {list(_DONE_BY_TYPES)}, not {by_type!r}")
        if is_review(code) and by_type != "human":
            raise ObligationError(
                f"obligation {code!r} is a review: only a person may mark it done, not a {by_type.replace('_', ' ')} "
                "(a review is accountability for what happened: OWASP LLM06 excessive agency, NIST CSF 2.0 RS.AN)")
        at = now_or(at, "at")
        state = next((s for s in self._fold() if (s.decision_id, s.code) == (decision_id, code)), None)
        if state is None:
            raise ObligationError(f"no obligation {code!r} is open for decision {decision_id!r}")
        if state.done_at is not None:
            raise ObligationError(f"obligation {code!r} of decision {decision_id!r} was already done by "
                                  f"{state.done_by!r} at {format_timestamp(state.done_at)}")
        self.store.append(Event(chain=state.chain, kind="obligation", payload={
            "event": "done", "decision_id": decision_id, "code": code, "done_by": by, "done_by_type": by_type,
            "done_at": format_timestamp(at),
        }))
        state.done_by, state.done_by_type, state.done_at = by, by_type, at
        return state.at(at)

    # ------------------------------------------------------------------ reading

    def items(self, now: datetime | None = None) -> list[ObligationItem]:
        """Every item as of ``now`` (default: the current time), by deadline."""
        now = now_or(now, "now")
        return sorted((s.at(now) for s in self._fold()), key=lambda i: (i.due_at, i.chain, i.decision_id, i.code))

    def due(self, now: datetime | None = None, within_hours: float = 0) -> list[ObligationItem]:
        """The items not done whose deadline has passed or falls within ``within_hours`` of ``now``."""
        if within_hours < 0:
            raise ValueError("within_hours must be >= 0")
        now = now_or(now, "now")
        horizon = now + timedelta(hours=within_hours)
        return [i for i in self.items(now) if i.status != "done" and i.due_at <= horizon]

    def _fold(self, chain: str | None = None) -> list[_State]:
        """The items the ledger's ``obligation`` events leave (in ``chain`` only, when given).

        The whole ledger is read in one streamed query of its ``obligation``
        events (:meth:`LedgerStore.scan`), not chain by chain.
        """
        if chain is not None:
            states: dict[tuple[str, str], _State] = {}
            self._fold_chain(chain, self.store.events(chain), states)
            return list(states.values())
        # Chain by chain, then merged: an item opened in two chains (opening
        # reads only its own chain) is one item, the one opened first, done
        # when it was done in either chain.
        merged: dict[tuple[str, str], tuple[str, _State]] = {}
        for name, events in itertools.groupby(self.store.scan(kinds=("obligation",)), key=lambda e: e.chain):
            rows = list(events)
            opened_at = {(e.payload.get("decision_id"), e.payload.get("code")): e.timestamp
                         for e in reversed(rows) if e.payload.get("event") == "opened"}
            states = {}
            self._fold_chain(name, rows, states)
            for key, state in states.items():
                first = merged.get(key)
                stamp = opened_at.get(key, "")
                if first is None:
                    merged[key] = (stamp, state)
                    continue
                kept, other = (state, first[1]) if stamp < first[0] else (first[1], state)
                if kept.done_at is None and other.done_at is not None:
                    kept.done_by, kept.done_by_type, kept.done_at = other.done_by, other.done_by_type, other.done_at
                merged[key] = (min(stamp, first[0]), kept)
        return [state for _, state in merged.values()]

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
                        decided_at=parse_timestamp(payload["decided_at"]), due_at=parse_timestamp(payload["due_at"]),
                        within_hours=payload.get("within_hours"), to=payload.get("to"))
                elif kind == "done":
                    state = states.get(key)  # type: ignore[arg-type]
                    if state is not None and state.done_at is None:
                        done_type = payload.get("done_by_type")
                        state.done_by = str(payload["done_by"])
                        state.done_by_type = done_type if done_type in _DONE_BY_TYPES else None
                        state.done_at = parse_timestamp(payload["done_at"])
            except (KeyError, ValueError, ValidationError) as exc:
                log.warning("ledger chain %r event %s: not a readable obligation event (%s)", chain, stored.seq,
                            str(exc).splitlines()[0])
