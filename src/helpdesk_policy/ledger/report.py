"""The compliance report: how tickets were decided, closed and kept, per action, channel, target type and team.

:func:`report_from_ledger` streams a ledger (:meth:`LedgerStore.scan`, ordered
by chain) and :func:`report_from_jsonl` one or more decision-log files
(:class:`~helpdesk_policy.ledger.logsinks.JsonlSink`, rotated files too) into a
:class:`ComplianceReport`; :func:`render_text`, :meth:`ComplianceReport.to_dict`
(JSON) and :func:`helpdesk_policy.ledger.report_html.render_html` (one
self-contained HTML page with charts) show it. Memory grows with the number
of tickets (a few small fields each), never with the number of events.

Units and dimensions
--------------------

* A **decision** is a ``decision`` event (a decision-log record). Its
  dimensions are its own request's: ``action`` (``input.request.action``),
  ``channel`` (``input.request.channel``), ``target_type``
  (``input.target.type``) and ``team`` (``labels.team``, else
  ``"unassigned"``); a value missing from the record is ``"unknown"``.
* A **ticket** is one request id: ``labels.ticket`` of its decisions
  (``input.request.id`` when that is missing or masked; the chain
  ``"ticket:<id>"`` the record is in when both are), ``payload.ticket`` of
  its ``evidence`` and ``ticket`` events, and the chain ``"ticket:<id>"``. Its
  dimensions are those of its **latest** decision (the latest record
  ``timestamp``; the later one read on a tie). A ticket with no decision in
  the source has ``"unknown"`` for all four.
* Every metric is given overall and per value of each of the four
  dimensions. Decision metrics are grouped by each decision's dimensions,
  ticket metrics by each ticket's.

Metrics
-------

A *rate* keeps its numerator and denominator; the rate of an empty set is
``null`` (shown ``n/a``).

``decisions_by_level``
    Decisions counted by ``result.level`` (``self_service``, ``step_up``,
    ``manager_approval``, ``callback``, ``deny``; ``unknown`` for a record
    without a readable level). Decisions, not tickets: a ticket decided twice
    counts twice.
``degraded``
    Decisions with ``result.degraded`` true ÷ decisions.
``exceptions_applied`` (the exception rate)
    Decisions whose ``result.exceptions`` has an entry with status
    ``applied`` ÷ decisions.
``decisions_with_expired_exception``
    Decisions whose ``result.exceptions`` has an entry with status
    ``expired`` (a decision an exception would have touched, had it not
    expired).
``exceptions_past_expiry``
    Exceptions granted (an ``exception`` event ``granted`` in the chain
    ``"exception:<id>"``) whose ``expires_at`` is before ``now`` and that were
    not revoked (no ``revoked`` event in that chain). Counted overall and per the
    exception's own ``action``; ``null`` for the other dimensions (an
    exception has no channel, target type or team of its own: see
    ``decisions_with_expired_exception`` there). Ledger only.
``tickets``
    Tickets seen.
``first_contact_resolution``
    Tickets closed compliantly at first contact ÷ tickets closed. A ticket
    is *closed* when it has a ``closed`` ticket event; it is resolved at first
    contact when its last ``closed`` event has ``compliant`` true and it has
    no ``reopened`` and no ``escalated`` event. Ledger only.
``compliance``
    Sensitive tickets whose last ``closed`` event has ``compliant`` true ÷
    sensitive tickets closed. A ticket is *sensitive* when its latest
    decision is allowed with a level above ``self_service`` (``step_up``,
    ``manager_approval`` or ``callback``): one that needed more than the
    requester's own sign-in. A close the evidence did not support
    (``TicketLifecycle.close(..., allow_incomplete=True)``) counts against
    it, never hidden. Ledger only.
``overdue_obligations``
    Obligation items (:mod:`~helpdesk_policy.ledger.obligations`) not done
    whose ``due_at`` is before ``now``, each counted for its ticket: the
    chain ``"ticket:<id>"`` it lives in, else the ticket of the decision it
    belongs to (``decision_id``). Ledger only.
``verification_failures``
    ``verified`` evidence events whose ``verification.closable`` is not
    true: evidence checked and found short, before a close or at one.
    Ledger only.
``close_refusals``
    ``close_refused`` ticket events: a close asked for and refused. (Such a
    close also recorded its failed verification, which
    ``verification_failures`` counts: the two are kept apart, not added.)
    Ledger only.

From a decision log (JSONL) only the decision metrics and ``tickets``
exist: closures, evidence, obligations and exception grants live in the
ledger, so the ledger-only metrics are ``null`` and the report says so.

Records that cannot be read (not JSON, not an object, a decision without a
``result``) are counted in ``unreadable`` and logged, never guessed at.
Everything a report shows comes from the ledger or the log and is treated
as untrusted text by the renderers.

>>> report = report_from_records([])
>>> report.overall.decisions, str(report.overall.degraded)
(0, 'n/a')
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from ..errors import LedgerError
from ..levels import Level
from .base import LedgerStore, StoredEvent, format_timestamp, now_or
from .lifecycle import TICKET_CHAIN_PREFIX
from .obligations import ObligationTracker, record_chain

__all__ = [
    "DIMENSIONS",
    "LEVELS",
    "REPORT_SCHEMA_VERSION",
    "ComplianceReport",
    "Metrics",
    "Rate",
    "render_text",
    "report_from_jsonl",
    "report_from_ledger",
    "report_from_records",
]

log = logging.getLogger(__name__)

#: The version of :meth:`ComplianceReport.to_dict`'s shape.
REPORT_SCHEMA_VERSION = 1

#: The four dimensions every metric is broken down by.
DIMENSIONS: tuple[str, ...] = ("action", "channel", "target_type", "team")

#: The level keys of ``decisions_by_level``, in ladder order, and ``unknown``.
LEVELS: tuple[str, ...] = tuple(level.value for level in Level) + ("unknown",)
_LEVEL_INDEX = {name: i for i, name in enumerate(LEVELS)}
_UNKNOWN_LEVEL = _LEVEL_INDEX["unknown"]
_SENSITIVE = frozenset({Level.STEP_UP.value, Level.MANAGER_APPROVAL.value, Level.CALLBACK.value})

UNKNOWN = "unknown"
UNASSIGNED = "unassigned"
#: A dimension value longer than this is cut (a tampered record cannot blow up a page).
MAX_VALUE_LENGTH = 128
#: A JSONL line longer than this is skipped as unreadable (a record is a few KiB).
MAX_LINE_BYTES = 1 << 20
#: Unreadable records logged one by one, at most; the rest are counted.
_MAX_LOGGED = 20

Source = Literal["ledger", "jsonl"]

# --------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class Rate:
    """A fraction that keeps what it is made of; ``value`` is None for an empty denominator."""

    numerator: int
    denominator: int

    @property
    def value(self) -> float | None:
        return None if self.denominator == 0 else self.numerator / self.denominator

    def __str__(self) -> str:
        if self.denominator == 0:
            return "n/a"
        return f"{100 * self.numerator / self.denominator:.1f}% ({self.numerator}/{self.denominator})"

    def to_dict(self) -> dict[str, Any]:
        return {"numerator": self.numerator, "denominator": self.denominator, "rate": self.value}


@dataclass(frozen=True)
class Metrics:
    """Every metric for one group (overall, or one value of one dimension); see the module doc.

    A ``None`` metric does not exist for the source (a decision log) or the
    dimension (``exceptions_past_expiry`` outside ``action``).
    """

    decisions: int
    decisions_by_level: dict[str, int]
    degraded: Rate
    exceptions_applied: Rate
    decisions_with_expired_exception: int
    exceptions_past_expiry: int | None
    tickets: int
    first_contact_resolution: Rate | None
    compliance: Rate | None
    overdue_obligations: int | None
    verification_failures: int | None
    close_refusals: int | None

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            doc[name] = value.to_dict() if isinstance(value, Rate) else dict(value) if isinstance(value, dict) else value
        return doc


@dataclass(frozen=True)
class ComplianceReport:
    """A compliance report: ``overall`` and ``by[dimension][value]`` :class:`Metrics`.

    Attributes:
        source: ``"ledger"`` or ``"jsonl"`` (decision metrics only).
        now: the time obligations and exceptions were judged at.
        events: events (or log records) read.
        unreadable: of those, the ones that could not be read.
        notes: what a reader must know (metrics that do not exist for the source).
    """

    source: Source
    now: datetime
    events: int
    unreadable: int
    overall: Metrics
    by: dict[str, dict[str, Metrics]]
    notes: tuple[str, ...] = ()
    schema_version: int = field(default=REPORT_SCHEMA_VERSION)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (``schema_version`` says its shape)."""
        return {
            "schema_version": self.schema_version,
            "source": self.source,
            "now": format_timestamp(self.now),
            "events": self.events,
            "unreadable": self.unreadable,
            "notes": list(self.notes),
            "dimensions": list(DIMENSIONS),
            "levels": list(LEVELS),
            "overall": self.overall.to_dict(),
            "by": {dim: {value: m.to_dict() for value, m in groups.items()} for dim, groups in self.by.items()},
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)


# --------------------------------------------------------------------------- accumulation


class _Acc:
    """Counters for one group while events stream by."""

    __slots__ = ("decisions", "levels", "degraded", "applied", "expired_decisions", "past_expiry", "tickets",
                 "closed", "fcr", "sensitive_closed", "sensitive_compliant", "overdue", "failures", "refusals")

    def __init__(self) -> None:
        self.decisions = 0
        self.levels = [0] * len(LEVELS)
        self.degraded = 0
        self.applied = 0
        self.expired_decisions = 0
        self.past_expiry = 0
        self.tickets = 0
        self.closed = 0
        self.fcr = 0
        self.sensitive_closed = 0
        self.sensitive_compliant = 0
        self.overdue = 0
        self.failures = 0
        self.refusals = 0

    def metrics(self, *, ledger: bool, past_expiry: bool) -> Metrics:
        return Metrics(
            decisions=self.decisions,
            decisions_by_level=dict(zip(LEVELS, self.levels)),
            degraded=Rate(self.degraded, self.decisions),
            exceptions_applied=Rate(self.applied, self.decisions),
            decisions_with_expired_exception=self.expired_decisions,
            exceptions_past_expiry=self.past_expiry if ledger and past_expiry else None,
            tickets=self.tickets,
            first_contact_resolution=Rate(self.fcr, self.closed) if ledger else None,
            compliance=Rate(self.sensitive_compliant, self.sensitive_closed) if ledger else None,
            overdue_obligations=self.overdue if ledger else None,
            verification_failures=self.failures if ledger else None,
            close_refusals=self.refusals if ledger else None,
        )


class _Ticket:
    """What the report keeps of one ticket: its latest decision, and how it was closed."""

    __slots__ = ("ts", "order", "dims", "level", "allowed", "closes", "last_compliant", "reopened", "escalated",
                 "overdue", "failures", "refusals")

    def __init__(self) -> None:
        self.ts = float("-inf")
        self.order = -1
        self.dims: tuple[str, str, str, str] | None = None
        self.level: str | None = None
        self.allowed = False
        self.closes = 0
        self.last_compliant = False
        self.reopened = False
        self.escalated = False
        self.overdue = 0
        self.failures = 0
        self.refusals = 0


_UNKNOWN_DIMS = (UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN)

#: Every event about one policy exception lives in the chain ``"exception:" + its id``.
EXCEPTION_CHAIN_PREFIX = "exception:"


def _record_ticket(record: dict[str, Any]) -> str | None:
    """A decision-log record's ticket: as the per-ticket ledger chains name it (a masked id is none)."""
    chain = record_chain(record)
    return chain[len(TICKET_CHAIN_PREFIX):] if chain is not None else None


def _get(doc: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(key)
    return doc


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        return None  # a time without a zone says nothing certain about order: not used
    return parsed


class _Builder:
    """Folds events into per-ticket state and per-group counters."""

    def __init__(self, now: datetime, source: Source) -> None:
        self.now = now
        self.now_ts = now.timestamp()
        self.source = source
        self.events = 0
        self.unreadable = 0
        self.order = 0
        self.overall = _Acc()
        self.groups: dict[str, dict[str, _Acc]] = {dim: {} for dim in DIMENSIONS}
        self.tickets: dict[str, _Ticket] = {}
        self._strings: dict[str, str] = {}
        self._dims: dict[tuple[str, str, str, str], tuple[str, str, str, str]] = {}
        # Exceptions granted and already expired at `now` (id -> action), and revoked ids.
        self.expired_grants: dict[str, str] = {}
        self.revoked: set[str] = set()
        # Overdue obligation items whose chain names no ticket: decision id -> count.
        self.pending_overdue: dict[str, int] = {}
        # Overdue items whose decision is nowhere in the source.
        self.orphan_overdue = 0
        self._chain: str | None = None
        self._chain_obligations: list[StoredEvent] = []

    # ---------------------------------------------------------------- helpers

    def bad(self, where: str, why: str) -> None:
        self.unreadable += 1
        if self.unreadable <= _MAX_LOGGED:
            log.warning("%s: unreadable, skipped (%s)", where, why)
        elif self.unreadable == _MAX_LOGGED + 1:
            log.warning("more unreadable records: counted in the report, no longer logged one by one")

    def _value(self, value: Any, default: str = UNKNOWN) -> str:
        if not isinstance(value, str) or not value:
            return default
        value = value[:MAX_VALUE_LENGTH]
        # One string object per distinct value: 200 000 tickets share a handful.
        return self._strings.setdefault(value, value)

    def ticket(self, ticket_id: str) -> _Ticket:
        state = self.tickets.get(ticket_id)
        if state is None:
            state = self.tickets[ticket_id] = _Ticket()
        return state

    def _accs(self, dims: tuple[str, str, str, str]) -> Iterator[_Acc]:
        yield self.overall
        for dim, value in zip(DIMENSIONS, dims):
            groups = self.groups[dim]
            acc = groups.get(value)
            if acc is None:
                acc = groups[value] = _Acc()
            yield acc

    # ---------------------------------------------------------------- decisions

    def decision(self, record: Any, where: str, *, chain: str | None = None, fallback_ts: str | None = None) -> None:
        result = _get(record, "result")
        if not isinstance(record, dict) or not isinstance(result, dict):
            self.bad(where, "not a decision-log record (no result object)")
            return
        ticket_id = _record_ticket(record)
        if ticket_id is None and chain and chain.startswith(TICKET_CHAIN_PREFIX):
            ticket_id = chain[len(TICKET_CHAIN_PREFIX):]
        dims = (
            self._value(_get(record, "input", "request", "action")),
            self._value(_get(record, "input", "request", "channel")),
            self._value(_get(record, "input", "target", "type")),
            self._value(_get(record, "labels", "team"), UNASSIGNED),
        )
        dims = self._dims.setdefault(dims, dims)
        level = result.get("level")
        index = _LEVEL_INDEX.get(level, _UNKNOWN_LEVEL) if isinstance(level, str) else _UNKNOWN_LEVEL
        degraded = result.get("degraded") is True
        applied = expired = False
        entries = result.get("exceptions")
        if isinstance(entries, list):
            for entry in entries:
                status = entry.get("status") if isinstance(entry, dict) else None
                applied = applied or status == "applied"
                expired = expired or status == "expired"
        for acc in self._accs(dims):
            acc.decisions += 1
            acc.levels[index] += 1
            acc.degraded += degraded
            acc.applied += applied
            acc.expired_decisions += expired
        if not isinstance(ticket_id, str) or not ticket_id:
            return  # counted as a decision; it belongs to no ticket
        when = _parse_time(record.get("timestamp")) or _parse_time(fallback_ts)
        ts = when.timestamp() if when is not None else float("-inf")
        self.order += 1
        state = self.ticket(ticket_id)
        if (ts, self.order) >= (state.ts, state.order):
            state.ts, state.order = ts, self.order
            state.dims = dims
            state.level = LEVELS[index]
            state.allowed = result.get("allowed") is True and LEVELS[index] != Level.DENY.value

    # ---------------------------------------------------------------- ledger events

    def stored(self, event: StoredEvent) -> None:
        self.events += 1
        if event.chain != self._chain:
            self._end_chain()
            self._chain = event.chain
        where = f"ledger chain {event.chain!r} event {event.seq}"
        payload = event.payload
        kind = event.kind
        if kind == "decision":
            self.decision(payload, where, chain=event.chain, fallback_ts=event.timestamp)
        elif kind == "obligation":
            self._chain_obligations.append(event)
        elif kind == "ticket":
            self._ticket_event(event, payload, where)
        elif kind == "evidence":
            if payload.get("event") == "verified":
                ticket_id = self._ticket_of(event, payload)
                if ticket_id is None:
                    self.bad(where, "evidence names no ticket")
                elif _get(payload, "verification", "closable") is not True:
                    self.ticket(ticket_id).failures += 1
        elif kind == "exception":
            self._exception(event.chain, payload, where)

    @staticmethod
    def _ticket_of(event: StoredEvent, payload: dict[str, Any]) -> str | None:
        ticket_id = payload.get("ticket")
        if isinstance(ticket_id, str) and ticket_id:
            return ticket_id
        if event.chain.startswith(TICKET_CHAIN_PREFIX) and len(event.chain) > len(TICKET_CHAIN_PREFIX):
            return event.chain[len(TICKET_CHAIN_PREFIX):]
        return None

    def _ticket_event(self, event: StoredEvent, payload: dict[str, Any], where: str) -> None:
        ticket_id = self._ticket_of(event, payload)
        if ticket_id is None:
            self.bad(where, "a ticket event that names no ticket")
            return
        what = payload.get("event")
        if what == "closed":
            state = self.ticket(ticket_id)
            state.closes += 1
            state.last_compliant = payload.get("compliant") is True
        elif what == "close_refused":
            self.ticket(ticket_id).refusals += 1
        elif what == "reopened":
            self.ticket(ticket_id).reopened = True
        elif what == "escalated":
            self.ticket(ticket_id).escalated = True
        else:
            self.bad(where, f"unknown ticket event {str(what)[:40]!r}")

    def _exception(self, chain: str, payload: dict[str, Any], where: str) -> None:
        # As the exception registry reads them: an event counts only in its exception's own chain.
        what = payload.get("event")
        if what == "granted":
            exc = payload.get("exception")
            exc_id = _get(exc, "id")
            expires = _parse_time(_get(exc, "expires_at"))
            if not isinstance(exc_id, str) or expires is None or chain != EXCEPTION_CHAIN_PREFIX + exc_id:
                self.bad(where, "a granted exception without an id matching its chain or a readable expires_at")
            elif expires < self.now:
                self.expired_grants.setdefault(exc_id, self._value(_get(exc, "action")))
        elif what == "revoked":
            exc_id = payload.get("exception_id")
            if isinstance(exc_id, str) and chain == EXCEPTION_CHAIN_PREFIX + exc_id:
                self.revoked.add(exc_id)
            else:
                self.bad(where, "a revoked exception without an exception_id matching its chain")
        else:
            self.bad(where, f"unknown exception event {str(what)[:40]!r}")

    def _end_chain(self) -> None:
        """Fold the finished chain's obligation events into items; count the overdue ones."""
        if not self._chain_obligations or self._chain is None:
            self._chain_obligations = []
            return
        chain, events = self._chain, self._chain_obligations
        self._chain_obligations = []
        states: dict[Any, Any] = {}
        # The tracker's own fold, so "overdue" means here what `obligations due` says.
        ObligationTracker._fold_chain(chain, events, states)
        ticket_id = chain[len(TICKET_CHAIN_PREFIX):] if chain.startswith(TICKET_CHAIN_PREFIX) else None
        for state in states.values():
            if state.at(self.now).status != "overdue":
                continue
            if ticket_id:
                self.ticket(ticket_id).overdue += 1
            else:
                self.pending_overdue[state.decision_id] = self.pending_overdue.get(state.decision_id, 0) + 1

    def resolve_pending(self, decisions: Iterable[StoredEvent]) -> None:
        """Attribute overdue items from chains that name no ticket, through their decision's ticket."""
        pending = self.pending_overdue
        for event in decisions:
            if not pending:
                break
            record = event.payload
            count = pending.pop(record.get("decision_id"), 0) if isinstance(record.get("decision_id"), str) else 0
            if not count:
                continue
            ticket_id = _record_ticket(record)
            if ticket_id is not None:
                self.ticket(ticket_id).overdue += count
            else:
                self.orphan_overdue += count
        # Items whose decision is nowhere in the ledger: counted under "unknown".
        self.orphan_overdue += sum(pending.values())
        if self.orphan_overdue:
            log.warning("%d overdue obligation item(s) belong to no ticket the ledger knows", self.orphan_overdue)
        self.pending_overdue = {}

    # ---------------------------------------------------------------- the end

    def finish(self) -> ComplianceReport:
        self._end_chain()
        ledger = self.source == "ledger"
        for state in self.tickets.values():
            dims = state.dims or _UNKNOWN_DIMS
            compliant_close = state.closes > 0 and state.last_compliant
            first_contact = compliant_close and not state.reopened and not state.escalated
            sensitive = state.level in _SENSITIVE and state.allowed
            for acc in self._accs(dims):
                acc.tickets += 1
                if state.closes:
                    acc.closed += 1
                    acc.fcr += first_contact
                    if sensitive:
                        acc.sensitive_closed += 1
                        acc.sensitive_compliant += compliant_close
                acc.overdue += state.overdue
                acc.failures += state.failures
                acc.refusals += state.refusals
        if self.orphan_overdue:
            for acc in self._accs(_UNKNOWN_DIMS):
                acc.overdue += self.orphan_overdue
        if ledger:
            for exc_id, action in self.expired_grants.items():
                if exc_id in self.revoked:
                    continue
                self.overall.past_expiry += 1
                groups = self.groups["action"]
                acc = groups.get(action)
                if acc is None:
                    acc = groups[action] = _Acc()
                acc.past_expiry += 1
        notes: list[str] = []
        if not ledger:
            notes.append("From a decision log (JSONL) only the decision metrics exist: closures, evidence, "
                         "obligations and exception grants live in the ledger, so first-contact resolution, "
                         "compliance, exceptions past expiry, overdue obligations, verification failures and "
                         "refused closes are n/a.")
        if ledger:
            notes.append("Exceptions past expiry are counted per the exception's own action; for channel, target "
                         "type and team see the decisions touched by an expired exception.")
        if self.unreadable:
            notes.append(f"{self.unreadable} record(s) could not be read and were skipped (see the log).")
        return ComplianceReport(
            source=self.source,
            now=self.now,
            events=self.events,
            unreadable=self.unreadable,
            overall=self.overall.metrics(ledger=ledger, past_expiry=True),
            by={dim: {value: acc.metrics(ledger=ledger, past_expiry=dim == "action")
                      for value, acc in sorted(self.groups[dim].items())}
                for dim in DIMENSIONS},
            notes=tuple(notes),
        )


# --------------------------------------------------------------------------- entry points


def report_from_ledger(store: LedgerStore, *, now: datetime | None = None) -> ComplianceReport:
    """Stream every event of ``store`` into a report, judging deadlines and expiries at ``now`` (default: now).

    One pass over :meth:`LedgerStore.scan`; a second pass over the decisions
    only when overdue obligations live in chains that name no ticket (to
    find their decision's ticket).

    Raises:
        LedgerError: the ledger cannot be read.
        ValueError: ``now`` is naive.
    """
    builder = _Builder(now_or(now), "ledger")
    for event in store.scan():
        builder.stored(event)
    builder._end_chain()
    if builder.pending_overdue:
        builder.resolve_pending(store.scan(kinds=("decision",)))
    return builder.finish()


def report_from_records(records: Iterable[Any], *, now: datetime | None = None) -> ComplianceReport:
    """A report over decision-log records (dicts, as a log sink receives them): decision metrics only."""
    builder = _Builder(now_or(now), "jsonl")
    for i, record in enumerate(records, 1):
        builder.events += 1
        builder.decision(record, f"record {i}")
    return builder.finish()


def _jsonl_records(paths: Sequence[str | os.PathLike[str]], builder: _Builder) -> Iterator[tuple[Any, str]]:
    seen: set[Path] = set()
    for raw in paths:
        path = Path(raw)
        resolved = path.resolve()
        if resolved in seen:
            continue  # the same file named twice counts once
        seen.add(resolved)
        try:
            handle = open(path, "rb")
        except OSError as exc:
            raise LedgerError(f"cannot read the decision log {path}: {exc.strerror or exc}") from exc
        with handle:
            number = 0
            while True:
                line = handle.readline(MAX_LINE_BYTES + 1)
                if not line:
                    break
                number += 1
                where = f"{path}:{number}"
                if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
                    while line and not line.endswith(b"\n"):  # skip the rest of the long line
                        line = handle.readline(MAX_LINE_BYTES)
                    builder.events += 1
                    builder.bad(where, f"a line longer than {MAX_LINE_BYTES} bytes")
                    continue
                if not line.strip():
                    continue
                builder.events += 1
                try:
                    record = json.loads(line)
                except ValueError as exc:
                    builder.bad(where, f"not JSON ({str(exc)[:80]})")
                    continue
                yield record, where


def report_from_jsonl(paths: Sequence[str | os.PathLike[str]], *, now: datetime | None = None) -> ComplianceReport:
    """A report over decision-log files written by :class:`~helpdesk_policy.ledger.logsinks.JsonlSink`.

    Give every file, rotated ones too (``decisions.jsonl decisions.jsonl.1 …``);
    a file named twice is read once. Only decision metrics exist here.

    Raises:
        LedgerError: a file cannot be read.
        ValueError: ``now`` is naive.
    """
    if isinstance(paths, (str, os.PathLike)):
        raise TypeError("paths is a list of files, not one path")
    builder = _Builder(now_or(now), "jsonl")
    for record, where in _jsonl_records(paths, builder):
        builder.decision(record, where)
    return builder.finish()


# --------------------------------------------------------------------------- text


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        return "  ".join([first, *(c.rjust(w) for c, w in zip(cells[1:], widths[1:]))]).rstrip()

    return [line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def _show(value: object) -> str:
    return "n/a" if value is None else str(value)


def _printable(text: str) -> str:
    # Values come from the ledger: no control character reaches a terminal.
    return "".join(ch if ch.isprintable() else "\ufffd" for ch in text)


def render_text(report: ComplianceReport) -> str:
    """The report as aligned plain-text tables (overall first, then each dimension)."""
    shown_levels = [lv for lv in LEVELS if lv != "unknown" or report.overall.decisions_by_level.get(lv)]
    out = [
        "helpdesk-policy compliance report",
        f"source: {report.source}   now: {format_timestamp(report.now)}   events: {report.events}   "
        f"unreadable: {report.unreadable}",
    ]
    out += [f"note: {n}" for n in report.notes]
    for dim in DIMENSIONS:
        groups = [("(all)", report.overall), *((_printable(v), m) for v, m in report.by[dim].items())]
        out += ["", f"Decisions by {dim}"]
        out += _table(
            [dim, "decisions", *shown_levels, "degraded", "exceptions applied", "expired-exc. decisions",
             "exceptions past expiry"],
            [[name, str(m.decisions), *(str(m.decisions_by_level[lv]) for lv in shown_levels), str(m.degraded),
              str(m.exceptions_applied), str(m.decisions_with_expired_exception), _show(m.exceptions_past_expiry)]
             for name, m in groups])
        out += ["", f"Tickets by {dim}"]
        out += _table(
            [dim, "tickets", "first-contact resolution", "compliance", "overdue obligations",
             "verification failures", "closes refused"],
            [[name, str(m.tickets), _show(m.first_contact_resolution), _show(m.compliance),
              _show(m.overdue_obligations), _show(m.verification_failures), _show(m.close_refusals)]
             for name, m in groups])
    return "\n".join(out) + "\n"
