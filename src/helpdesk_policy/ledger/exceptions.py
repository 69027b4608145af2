"""Policy exceptions in the ledger: granted, revoked, listed, and served to the facade from memory.

Each exception lives in its own chain, ``exception:<id>``, as ``exception``
events, append-only and hash-chained like everything else in the ledger:

* ``{"event": "granted", "exception": {id, target_id, action, channels, level,
  requested_by, reason, reference, approved_by, approver_type, approved_at,
  starts_at, expires_at}}`` when :meth:`ExceptionRegistry.grant` records one;
* ``{"event": "revoked", "exception_id", "revoked_by", "revoked_at", "reason"}``
  when :meth:`ExceptionRegistry.revoke` ends one early.

Nothing is ever updated or deleted: an exception's state (``active``,
``expired``, ``revoked``, ``not_started``) is folded from its events and the
time. An expired exception stays in the ledger and in :meth:`~ExceptionRegistry.list`
with ``include_inactive=True`` (and :meth:`~ExceptionRegistry.expired`), and
every decision it would have touched reports it (``status: expired``): it
never disappears silently.

:class:`ExceptionRegistry` is also the facade's
:class:`~helpdesk_policy.policy_exceptions.ExceptionSource`:
``HelpdeskPolicy(exceptions=registry)``. The decision path reads an
in-memory index, refreshed when older than ``refresh_s`` seconds and after
the registry's own writes, so a decision does not hit the database each
time. When a refresh fails, the index is dropped (a stale one could still
hold a revoked exception) and lookups raise until the next attempt
``refresh_s`` later: the facade then decides without exceptions (stricter).

>>> from datetime import datetime, timedelta, timezone
>>> from helpdesk_policy.ledger import ExceptionRegistry, open_ledger
>>> from helpdesk_policy.policy_exceptions import PolicyException
>>> import tempfile, os
>>> store = open_ledger("sqlite:///" + os.path.join(tempfile.mkdtemp(), "ledger.db"))
>>> registry = ExceptionRegistry(store, max_hours=72)
>>> now = datetime.now(timezone.utc)
>>> registry.grant(PolicyException(
...     id="EXC-7", target_id="u-20417", action="mfa_reset", channels=["phone"], level="manager_approval",
...     requested_by="u-30001", reason="travel_no_callback_contact", reference="RISK-2026-117",
...     approved_by="u-40002", approver_type="human", approved_at=now, expires_at=now + timedelta(hours=48))).id
'EXC-7'
>>> [(i.id, i.status) for i in registry.list()]
[('EXC-7', 'active')]
>>> registry.revoke("EXC-7", by="u-40002", reason="traveller_back").id
'EXC-7'
>>> registry.list(), [(i.id, i.status) for i in registry.list(include_inactive=True)]
([], [('EXC-7', 'revoked')])
>>> store.close()
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import TypeAdapter, ValidationError

from ..config import PolicyConfig
from ..errors import FieldError, LedgerError
from ..models import Action, Identifier, canonical_identifier
from ..policy_exceptions import (
    Code,
    InvalidExceptionError,
    PolicyException,
    RevokedException,
    exception_payload,
    parse_exception,
)
from .base import Event, LedgerStore, StoredEvent, format_timestamp, now_or, parse_timestamp

__all__ = [
    "CHAIN_PREFIX",
    "ExceptionError",
    "ExceptionItem",
    "ExceptionRegistry",
    "ExceptionState",
]

log = logging.getLogger(__name__)

#: Every exception's chain is this prefix and its id.
CHAIN_PREFIX = "exception:"

#: An exception's state as of a moment.
ExceptionState = Literal["active", "expired", "revoked", "not_started"]

#: How far in the future an approval time may be (clocks differ a little between hosts).
_CLOCK_SKEW = timedelta(minutes=5)

_IDENTIFIER: TypeAdapter[str] = TypeAdapter(Identifier)
_CODE: TypeAdapter[str] = TypeAdapter(Code)


class ExceptionError(LedgerError):
    """A policy exception cannot be granted or revoked: invalid, over the cap, a reused id, unknown, revoked.

    ``errors`` names each bad field (never its value), as the CLI prints them.
    """

    def __init__(self, message: str, errors: Sequence[FieldError] = ()) -> None:
        self.errors: tuple[FieldError, ...] = tuple(errors)
        lines = "".join(f"\n  - {e}" for e in self.errors)
        super().__init__(f"{message}{lines}")

    @property
    def paths(self) -> list[str]:
        """The field of every problem, in the order found."""
        return [e.path for e in self.errors]


@dataclass(frozen=True)
class ExceptionItem:
    """One exception as the ledger holds it, judged at a moment.

    ``exception`` is a :class:`~helpdesk_policy.policy_exceptions.RevokedException`
    once revoked. ``exceeds_max_hours``: its window is longer than the
    registry's cap (a cap shortened after the grant), so no decision applies it.
    """

    exception: PolicyException
    status: ExceptionState
    granted_at: datetime
    exceeds_max_hours: bool

    @property
    def id(self) -> str:
        return self.exception.id

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the granted fields, then the state and the revocation (or ``null``)."""
        exc = self.exception
        revoked = isinstance(exc, RevokedException)
        return {
            **exception_payload(exc),
            "status": self.status,
            "granted_at": format_timestamp(self.granted_at),
            "duration_hours": round(exc.duration_hours, 3),
            "exceeds_max_hours": self.exceeds_max_hours,
            "revoked_at": format_timestamp(exc.revoked_at) if revoked else None,
            "revoked_by": exc.revoked_by if revoked else None,
            "revoke_reason": exc.revoke_reason if revoked else None,
        }


@dataclass
class _Folded:
    exception: PolicyException
    granted_at: datetime




class ExceptionRegistry:
    """Grants, revokes and lists policy exceptions in a ledger; serves them to the facade.

    Args:
        store: the ledger (:func:`helpdesk_policy.ledger.open_ledger`).
        max_hours: the longest an exception granted here may last; default
            ``config.exception_max_hours``, else the stock 72. The facade
            checks its own policy's cap again on every decision.
        config: a policy config to take ``max_hours`` from.
        refresh_s: how old (seconds) the in-memory index :meth:`exceptions_for`
            reads may get before it is read again from the ledger; ``0``
            reads the ledger on every lookup.

    Safe to share between threads (one lock guards the index).
    """

    def __init__(self, store: LedgerStore, *, max_hours: int | None = None, config: PolicyConfig | None = None,
                 refresh_s: float = 5.0) -> None:
        if max_hours is None:
            max_hours = (config.exception_max_hours if config is not None
                         else PolicyConfig.model_fields["exception_max_hours"].default)
        if isinstance(max_hours, bool) or not isinstance(max_hours, int) or max_hours < 1:
            raise ValueError("max_hours must be a whole number of hours >= 1")
        if isinstance(refresh_s, bool) or not isinstance(refresh_s, int | float) or not (
                math.isfinite(refresh_s) and refresh_s >= 0):
            raise ValueError("refresh_s must be a finite number of seconds >= 0")
        self.store = store
        self.max_hours: int = max_hours
        self.refresh_s = float(refresh_s)
        self._lock = threading.Lock()
        self._index: dict[tuple[str, str], tuple[PolicyException, ...]] | None = None
        self._loaded_at = -math.inf
        self._failed_at = -math.inf
        #: How many times the index was read from the ledger (for tests and metrics).
        self.refreshes = 0

    # ------------------------------------------------------------------ writing

    def grant(self, exception: PolicyException | Mapping[str, Any], *, now: datetime | None = None) -> PolicyException:
        """Record an approved exception; return it as validated (``starts_at`` filled in).

        Checked again here (an instance may have been built without
        validation): every field, the separation of duties, a window no longer
        than :attr:`max_hours`, an expiry still ahead of ``now`` (default: the
        current time), an approval not in the future, and an id never used
        before (ids are never reused, even once the first one expired).

        Raises:
            ExceptionError: naming every bad field.
        """
        now = now_or(now, "now")
        try:
            exc = parse_exception(exception)
        except InvalidExceptionError as err:
            raise ExceptionError("invalid policy exception", err.errors) from None
        problems: list[FieldError] = []
        if isinstance(exc, RevokedException):
            problems.append(FieldError("revoked_at", "a new exception cannot be granted revoked"))
        if exc.duration_hours > self.max_hours:
            problems.append(FieldError("expires_at", f"the exception would last {exc.duration_hours:g} hours; "
                                                     f"the policy allows at most {self.max_hours} (exception_max_hours)"))
        if exc.expires_at <= now:
            problems.append(FieldError("expires_at", "is already past"))
        if exc.approved_at > now + _CLOCK_SKEW:
            problems.append(FieldError("approved_at", "is in the future: record an approval once it is given"))
        if exc.id in self._fold():
            problems.append(FieldError("id", "an exception with this id exists already (ids are never reused)"))
        if problems:
            raise ExceptionError(f"cannot grant policy exception {exc.id}", problems)
        chain = CHAIN_PREFIX + exc.id
        stored = self.store.append(Event(chain=chain, kind="exception",
                                         payload={"event": "granted", "exception": exception_payload(exc)}))
        self._invalidate()
        # Two grants of one id at once both append; the first in the chain counts.
        first = next((e for e in self.store.events(chain) if e.kind == "exception"
                      and e.payload.get("event") == "granted"), None)
        if first is not None and first.hash != stored.hash:
            raise ExceptionError(f"cannot grant policy exception {exc.id}",
                                 [FieldError("id", "was granted at the same time by another writer")])
        log.info("policy exception %s granted: %s at %s until %s", exc.id, exc.action.value, exc.level,
                 format_timestamp(exc.expires_at))
        return exc

    def revoke(self, exception_id: str, *, by: str, reason: str, at: datetime | None = None) -> RevokedException:
        """End an exception before its expiry: it never applies again. Anyone may revoke (it only tightens).

        Args:
            exception_id: the exception's id.
            by: who revokes (an identifier).
            reason: why, as a code (``traveller_back``, ``suspected_compromise``).
            at: when (default: now).

        Raises:
            ExceptionError: an unknown or already revoked exception, or a bad ``by`` / ``reason``.
        """
        at = now_or(at, "at")
        problems: list[FieldError] = []
        for name, adapter, value in (("by", _IDENTIFIER, by), ("reason", _CODE, reason)):
            try:
                adapter.validate_python(value)
            except ValidationError as exc:
                problems.append(FieldError(name, exc.errors(include_url=False)[0]["msg"]))
        if problems:
            raise ExceptionError(f"cannot revoke policy exception {exception_id}", problems)
        by = _IDENTIFIER.validate_python(by)
        folded = self._fold().get(exception_id)
        if folded is None:
            raise ExceptionError(f"cannot revoke policy exception {exception_id}",
                                 [FieldError("id", "no exception with this id was granted")])
        if isinstance(folded.exception, RevokedException):
            raise ExceptionError(f"cannot revoke policy exception {exception_id}", [FieldError(
                "id", f"was already revoked at {format_timestamp(folded.exception.revoked_at)}")])
        self.store.append(Event(chain=CHAIN_PREFIX + exception_id, kind="exception", payload={
            "event": "revoked", "exception_id": exception_id, "revoked_by": by,
            "revoked_at": format_timestamp(at), "reason": reason,
        }))
        self._invalidate()
        log.info("policy exception %s revoked (%s)", exception_id, reason)
        return RevokedException(**folded.exception.__dict__, revoked_at=at, revoked_by=by, revoke_reason=reason)

    # ------------------------------------------------------------------ reading

    def get(self, exception_id: str, now: datetime | None = None) -> ExceptionItem | None:
        """The exception with this id as of ``now`` (default: the current time), or ``None``."""
        now = now_or(now, "now")
        folded = self._fold().get(exception_id)
        return None if folded is None else self._item(folded, now)

    def list(self, now: datetime | None = None, *, include_inactive: bool = False) -> list[ExceptionItem]:
        """The active exceptions as of ``now`` (default: the current time); every one with ``include_inactive``.

        Sorted by expiry, then id.
        """
        now = now_or(now, "now")
        items = [self._item(f, now) for f in self._fold().values()]
        if not include_inactive:
            items = [i for i in items if i.status == "active"]
        return sorted(items, key=lambda i: (i.exception.expires_at, i.id))

    def expired(self, now: datetime | None = None) -> list[ExceptionItem]:
        """The exceptions that ran out (not revoked) as of ``now``: to report, and to renew or let go."""
        return [i for i in self.list(now, include_inactive=True) if i.status == "expired"]

    def exceptions_for(self, target_id: str, action: str | Action) -> Sequence[PolicyException]:
        """Every exception, in any state, for this identity and action (the facade's lookup).

        Served from the in-memory index (see the class). Raises
        :class:`~helpdesk_policy.errors.LedgerError` when the ledger cannot be read.
        """
        key = (canonical_identifier(target_id), action.value if isinstance(action, Action) else str(action))
        return self._current_index().get(key, ())

    def refresh(self) -> None:
        """Read the index from the ledger now."""
        with self._lock:
            self._reload()

    # ---------------------------------------------------------------- internals

    def _item(self, folded: _Folded, now: datetime) -> ExceptionItem:
        exc = folded.exception
        status: ExceptionState
        if isinstance(exc, RevokedException):
            status = "revoked"
        elif now >= exc.expires_at:
            status = "expired"
        elif now < exc.start:
            status = "not_started"
        else:
            status = "active"
        return ExceptionItem(exception=exc, status=status, granted_at=folded.granted_at,
                             exceeds_max_hours=exc.duration_hours > self.max_hours)

    def _invalidate(self) -> None:
        with self._lock:
            self._index = None
            self._loaded_at = -math.inf
            self._failed_at = -math.inf

    def _current_index(self) -> dict[tuple[str, str], tuple[PolicyException, ...]]:
        index = self._index
        if index is not None and time.monotonic() - self._loaded_at < self.refresh_s:
            return index
        with self._lock:
            now = time.monotonic()
            if self._index is not None and now - self._loaded_at < self.refresh_s:
                return self._index
            if now - self._failed_at < self.refresh_s:
                # Not retried on every decision: the facade decides without
                # exceptions (stricter) until the next attempt.
                raise LedgerError("the policy exceptions could not be read from the ledger; "
                                  f"retrying within {self.refresh_s:g}s")
            return self._reload()

    def _reload(self) -> dict[tuple[str, str], tuple[PolicyException, ...]]:
        # Called with the lock held.
        try:
            folded = self._fold()
        except Exception:
            # A stale index could still hold an exception revoked since: drop it.
            self._index = None
            self._failed_at = time.monotonic()
            raise
        index: dict[tuple[str, str], list[PolicyException]] = {}
        for f in folded.values():
            index.setdefault((f.exception.target_id, f.exception.action.value), []).append(f.exception)
        self._index = {k: tuple(v) for k, v in index.items()}
        self._loaded_at = time.monotonic()
        self._failed_at = -math.inf
        self.refreshes += 1
        return self._index

    def _events(self) -> Iterator[StoredEvent]:
        scan = getattr(self.store, "scan", None)
        if callable(scan):  # one streamed query over the exception events
            for event in scan(["exception"]):
                if event.chain.startswith(CHAIN_PREFIX):
                    yield event
            return
        for chain in self.store.chains():
            if chain.startswith(CHAIN_PREFIX):
                yield from self.store.events(chain)

    def _fold(self) -> dict[str, _Folded]:
        """Every exception the ledger's ``exception`` events leave, by id, in the order granted."""
        states: dict[str, _Folded] = {}
        for stored in self._events():
            if stored.kind != "exception":
                continue
            try:
                self._fold_one(stored, states)
            except (KeyError, TypeError, ValueError, ValidationError, InvalidExceptionError) as exc:
                log.warning("ledger chain %r event %s: not a readable exception event (%s)", stored.chain,
                            stored.seq, str(exc).splitlines()[0])
        return states

    @staticmethod
    def _fold_one(stored: StoredEvent, states: dict[str, _Folded]) -> None:
        payload = stored.payload
        kind = payload.get("event")
        if kind == "granted":
            data = payload["exception"]
            if not isinstance(data, Mapping) or "revoked_at" in data:
                raise ValueError("the granted exception is not a plain exception")
            exc = parse_exception(data)
            if CHAIN_PREFIX + exc.id != stored.chain:
                raise ValueError("the exception's id does not match its chain")
            if exc.id in states:
                return  # granted twice (two writers at once): the first one counts
            states[exc.id] = _Folded(exc, parse_timestamp(stored.timestamp))
        elif kind == "revoked":
            exception_id = payload["exception_id"]
            if CHAIN_PREFIX + str(exception_id) != stored.chain:
                raise ValueError("the revoked id does not match its chain")
            folded = states.get(exception_id)
            if folded is None:
                raise ValueError("revokes an exception never granted")
            if isinstance(folded.exception, RevokedException):
                return  # revoked twice: the first one counts
            folded.exception = RevokedException(
                **folded.exception.__dict__, revoked_at=parse_timestamp(payload["revoked_at"]),
                revoked_by=payload["revoked_by"], revoke_reason=payload["reason"])
        else:
            raise ValueError("unknown exception event")
