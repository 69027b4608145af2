"""The ledger's contract: events, the hash chain, and the store interface.

Every event belongs to a *chain* (a ticket or decision id, or ``"decisions"``
for the decision log). Stored, it gets ``seq`` (1, 2, … within its chain),
``prev_hash`` (the previous event's ``hash``; 64 zeros for the first) and
``hash``: SHA-256 over the canonical JSON (sorted keys, no spaces, UTF-8) of
``{chain, seq, kind, timestamp, payload, prev_hash}``. Editing, deleting,
inserting or reordering stored events breaks the chain, and
:func:`check_chain` names the first event where it breaks.

Each backend (:mod:`~helpdesk_policy.ledger.sqlite`,
:mod:`~helpdesk_policy.ledger.postgres`) keeps, beside the events, one *head*
row per chain (its last ``seq`` and ``hash``), written in the same
transaction as the event: removing the newest events is then detected too.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..errors import LedgerError

__all__ = [
    "GENESIS_HASH",
    "EventKind",
    "Event",
    "StoredEvent",
    "BadEvent",
    "ChainReport",
    "LedgerStore",
    "canonical_json",
    "event_hash",
    "format_timestamp",
    "aware_utc",
    "now_or",
    "parse_timestamp",
    "check_chain",
]

#: The ``prev_hash`` of the first event of every chain.
GENESIS_HASH = "0" * 64

EventKind = Literal["decision", "evidence", "obligation", "exception", "ticket"]

#: The deepest a payload may nest (a decision-log record nests about 6 deep).
_MAX_DEPTH = 64


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, UTF-8 kept, NaN and infinities refused."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def format_timestamp(ts: datetime) -> str:
    """The one text form of a timestamp in the hash and the store: UTC, microseconds, ``Z``."""
    return ts.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def aware_utc(value: datetime, name: str) -> datetime:
    """``value`` in UTC; a naive datetime (no zone says when it was) is refused, naming ``name``."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must carry a time zone")
    return value.astimezone(timezone.utc)


def now_or(now: datetime | None, name: str = "now") -> datetime:
    """``now`` in UTC, or the current time when it is ``None``."""
    return datetime.now(timezone.utc) if now is None else aware_utc(now, name)


def parse_timestamp(text: Any) -> datetime:
    """A payload's ISO 8601 timestamp (``Z`` or an offset), in UTC; ValueError otherwise."""
    if not isinstance(text, str):
        raise ValueError("not a timestamp")
    return aware_utc(datetime.fromisoformat(text.replace("Z", "+00:00")), "timestamp")


def event_hash(*, chain: str, seq: int, kind: str, timestamp: str, payload: dict[str, Any], prev_hash: str) -> str:
    body = {"chain": chain, "seq": seq, "kind": kind, "timestamp": timestamp, "payload": payload,
            "prev_hash": prev_hash}
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


def _check_json(value: Any, depth: int = 0) -> None:
    if depth > _MAX_DEPTH:
        raise ValueError(f"payload nests deeper than {_MAX_DEPTH}")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"payload keys must be strings, not {type(key).__name__}")
            _check_json(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_json(item, depth + 1)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("payload numbers must be finite")
    elif value is not None and not isinstance(value, (str, int, bool)):
        raise ValueError(f"payload values must be JSON (not {type(value).__name__})")


class Event(BaseModel):
    """One thing to record: a decision, evidence, an obligation's state, an exception, a ticket's step."""

    model_config = ConfigDict(frozen=True, strict=True, extra="forbid")

    # 300: a ticket id may be 256 characters, and its chain is "ticket:" + the id.
    chain: str = Field(min_length=1, max_length=300)
    kind: EventKind
    payload: dict[str, Any]
    timestamp: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))

    @field_validator("payload")
    @classmethod
    def _json_payload(cls, value: dict[str, Any]) -> dict[str, Any]:
        _check_json(value)
        return value

    @field_validator("timestamp")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("timestamp must carry a time zone")
        return value


@dataclass(frozen=True)
class StoredEvent:
    """An event as the ledger holds it, with its place in the chain."""

    chain: str
    seq: int
    kind: str
    timestamp: str
    payload: dict[str, Any]
    prev_hash: str
    hash: str

    def expected_hash(self) -> str:
        return event_hash(chain=self.chain, seq=self.seq, kind=self.kind, timestamp=self.timestamp,
                          payload=self.payload, prev_hash=self.prev_hash)


@dataclass(frozen=True)
class BadEvent:
    """Where a chain first breaks: ``seq`` is the stored event's (or the missing one's)."""

    chain: str
    seq: int
    problem: str

    def __str__(self) -> str:
        return f"chain {self.chain!r} event {self.seq}: {self.problem}"


@dataclass(frozen=True)
class ChainReport:
    """What :meth:`LedgerStore.verify` found: ``ok``, or the first bad event."""

    chains: int
    events: int
    first_bad: BadEvent | None = None
    checked: tuple[str, ...] = field(default=(), repr=False)

    @property
    def ok(self) -> bool:
        return self.first_bad is None

    def __str__(self) -> str:
        if self.first_bad is None:
            return f"OK: {self.events} events in {self.chains} chain(s), hash chains intact"
        return f"BAD: {self.first_bad}"


def check_chain(chain: str, rows: Iterable[StoredEvent], head: tuple[int, str] | None) -> tuple[int, BadEvent | None]:
    """Walk one chain's rows in ``seq`` order; return (events seen, first bad event or None).

    ``head`` is the chain's head row (last seq, last hash), or None when the
    store has none for the chain.
    """
    expected_seq = 1
    prev_hash = GENESIS_HASH
    count = 0
    for row in rows:
        count += 1
        if row.seq != expected_seq:
            if row.seq > expected_seq:
                gone = f"{expected_seq}" if row.seq == expected_seq + 1 else f"{expected_seq}-{row.seq - 1}"
                return count, BadEvent(chain, row.seq, f"seq gap: event(s) {gone} missing (deleted?)")
            return count, BadEvent(chain, row.seq, f"seq {row.seq} repeated or out of order, expected {expected_seq}")
        if row.prev_hash != prev_hash:
            return count, BadEvent(chain, row.seq, "prev_hash does not match the previous event's hash "
                                                   "(an event was inserted, removed or reordered)")
        if row.hash != row.expected_hash():
            return count, BadEvent(chain, row.seq, "hash mismatch: the event was edited")
        prev_hash = row.hash
        expected_seq += 1
    last = expected_seq - 1
    if head is None:
        if count:
            return count, BadEvent(chain, last, "the chain has no head row")
        return count, None
    head_seq, head_hash = head
    if head_seq != last or head_hash != prev_hash:
        if head_seq > last:
            return count, BadEvent(chain, last + 1, f"the head says {head_seq} events, found {last}: "
                                                    "the newest event(s) were deleted")
        return count, BadEvent(chain, last, f"the head (seq {head_seq}) does not match the last event")
    return count, None


@runtime_checkable
class LedgerStore(Protocol):
    """One ledger backend: append-only, hash-chained, verifiable.

    Implementations are safe to share between threads, and several processes
    (or hosts, for PostgreSQL) may append to the same ledger at once.
    """

    def append(self, event: Event) -> StoredEvent:
        """Append ``event`` to the end of its chain, atomically; return it as stored."""
        ...

    def events(self, chain: str) -> Iterator[StoredEvent]:
        """The chain's events in ``seq`` order."""
        ...

    def chains(self) -> list[str]:
        """Every chain in the ledger, sorted."""
        ...

    def scan(self, kinds: Collection[str] | None = None) -> Iterator[StoredEvent]:
        """Every event (of ``kinds`` only, when given), ordered by (chain, seq), streamed.

        For reports over the whole ledger: rows are fetched in batches, never
        all at once, so memory stays flat however large the ledger is.
        """
        ...

    def verify(self, chain: str | None = None) -> ChainReport:
        """Check one chain, or every chain; name the first bad event."""
        ...

    def close(self) -> None:
        ...


def verify_chains(store: Any, chains: Iterable[str], heads: dict[str, tuple[int, str]]) -> ChainReport:
    """Check ``chains`` (sorted) of ``store`` against their ``heads``; shared by the backends."""
    total = 0
    checked: list[str] = []
    for name in sorted(chains):
        count, bad = check_chain(name, store.events(name), heads.get(name))
        total += count
        checked.append(name)
        if bad is not None:
            return ChainReport(chains=len(checked), events=total, first_bad=bad, checked=tuple(checked))
    return ChainReport(chains=len(checked), events=total, checked=tuple(checked))


def scan_kinds(kinds: Collection[str] | None) -> tuple[str, ...] | None:
    """``kinds`` for :meth:`LedgerStore.scan` as a sorted tuple (None: every kind); a bare string is refused."""
    if kinds is None:
        return None
    if isinstance(kinds, str):
        raise TypeError("kinds is a collection of kinds, e.g. ['decision'], not one string")
    return tuple(sorted(set(kinds)))


#: Rows fetched per round trip by :meth:`LedgerStore.scan`.
SCAN_BATCH = 2000


def stored_from_row(chain: str, seq: int, kind: str, timestamp: str, payload: str, prev_hash: str,
                    hash_: str) -> StoredEvent:
    try:
        data = json.loads(payload)
    except ValueError:
        data = {"__unreadable__": payload}
    if not isinstance(data, dict):
        data = {"__not_an_object__": data}
    return StoredEvent(chain=chain, seq=seq, kind=kind, timestamp=timestamp, payload=data, prev_hash=prev_hash,
                       hash=hash_)


def check_schema_version(found: int, known: int) -> None:
    if found > known:
        raise LedgerError(f"the ledger's schema is version {found}; this helpdesk-policy knows up to {known}: "
                          "upgrade helpdesk-policy")
