"""``LedgerSink``: the decision log into the ledger, never in the decision's way.

``HelpdeskPolicy(log_sink=LedgerSink(store))``: each decision-log record is
put on a bounded queue (waiting at most ``budget_s`` when the queue is full)
and a background thread appends it to the ledger. When the ledger is down or
slow the decision is still made and returned; the record that could not be
stored is counted (``failures`` for a failed append, ``dropped`` for a full
queue) and logged. Nothing is lost silently.

A failing append is retried a few times with a short, doubling backoff
(bounded: the whole wait for one record never exceeds
:data:`MAX_RETRY_WAIT_S`) before it counts as a failure; it all happens on
the background thread, never in the decision's way.

``chain=LedgerSink.BY_TICKET`` records each decision in its ticket's chain,
``"ticket:<id>"`` (the record's ``labels.ticket``, else its
``input.request.id``; ``"decisions"`` when it has neither), next to the
ticket's evidence, obligations and closure. ``track_obligations=`` an
:class:`~helpdesk_policy.ledger.ObligationTracker` opens each stored
decision's obligation items too (:meth:`ObligationTracker.open_from_record`),
in the ticket's chain.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from typing import Any

from .base import Event, LedgerStore
from .obligations import ObligationTracker, record_chain

__all__ = ["LedgerSink"]

log = logging.getLogger("helpdesk_policy.ledger")

_STOP = object()

#: The longest the retries of one record may wait in total, in seconds.
MAX_RETRY_WAIT_S = 2.0
#: The most retries a sink may be given.
MAX_RETRIES = 10


class LedgerSink:
    """A decision-log sink appending each record to ``store`` from a background thread.

    Args:
        store: the ledger.
        budget_s: the longest a decision waits for room on a full queue.
        queue_size: records waiting to be stored, at most.
        chain: the chain decisions are recorded in, or :attr:`BY_TICKET`
            (``"by_ticket"``): each in its ticket's chain, ``"ticket:<id>"``.
        retries: further attempts after a failed append (0 to 10).
        retry_backoff_s: the wait before the first retry, doubling for each
            next one; the total wait per record is capped at :data:`MAX_RETRY_WAIT_S`.
        track_obligations: when given, the obligation items of each stored
            decision are opened with it (in the ticket's chain); a failure
            there is retried alike, then counted in ``obligation_failures``.
    """

    #: ``chain=LedgerSink.BY_TICKET``: each record in its ticket's chain.
    BY_TICKET = "by_ticket"
    #: The chain of a record with no ticket id, in :attr:`BY_TICKET` mode.
    DEFAULT_CHAIN = "decisions"

    def __init__(self, store: LedgerStore, *, budget_s: float = 0.05, queue_size: int = 10000,
                 chain: str = "decisions", retries: int = 2, retry_backoff_s: float = 0.05,
                 track_obligations: ObligationTracker | None = None) -> None:
        if budget_s < 0:
            raise ValueError("budget_s must be >= 0")
        if queue_size < 1:
            raise ValueError("queue_size must be >= 1")
        if not isinstance(chain, str) or not chain:
            raise ValueError("chain must be a chain name or LedgerSink.BY_TICKET")
        if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= MAX_RETRIES:
            raise ValueError(f"retries must be an int from 0 to {MAX_RETRIES}")
        if not 0 <= retry_backoff_s <= MAX_RETRY_WAIT_S:
            raise ValueError(f"retry_backoff_s must be from 0 to {MAX_RETRY_WAIT_S} seconds")
        if track_obligations is not None and not callable(getattr(track_obligations, "open_from_record", None)):
            raise ValueError("track_obligations must be an ObligationTracker")
        self.store = store
        self.budget_s = budget_s
        self.chain = chain
        self.retries = retries
        self.retry_backoff_s = retry_backoff_s
        self.track_obligations = track_obligations
        #: Records stored whose obligation items could not be opened.
        self.obligation_failures = 0
        #: Appends retried (each retry counted).
        self.retried = 0
        self._stop = threading.Event()  # cuts a retry's backoff short at close
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._counts_lock = threading.Lock()
        #: Records whose append raised (the ledger down, a bad record).
        self.failures = 0
        #: Records refused because the queue stayed full for the whole budget, or after close().
        self.dropped = 0
        #: Records stored.
        self.stored = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="helpdesk-policy-ledger-sink", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return (f"LedgerSink({self.store!r}, stored={self.stored}, failures={self.failures}, "
                f"dropped={self.dropped}, pending={self.pending})")

    @property
    def pending(self) -> int:
        """Records queued or being appended."""
        return self._queue.unfinished_tasks

    def __call__(self, record: dict[str, Any]) -> None:
        """Queue one decision-log record; returns within ``budget_s`` whatever the ledger does."""
        if self._closed:
            self._count_drop(record, "the sink is closed")
            return
        try:
            self._queue.put(record, timeout=self.budget_s) if self.budget_s > 0 else self._queue.put_nowait(record)
        except queue.Full:
            self._count_drop(record, "the ledger queue is full")

    def _count_drop(self, record: dict[str, Any], why: str) -> None:
        with self._counts_lock:
            self.dropped += 1
            dropped = self.dropped
        log.error("decision log record %s not stored in the ledger: %s (%d dropped so far)",
                  record.get("decision_id"), why, dropped)

    def _run(self) -> None:
        while True:
            record = self._queue.get()
            try:
                if record is _STOP:
                    return
                self._store(record)
            finally:
                self._queue.task_done()

    def chain_for(self, record: dict[str, Any]) -> str:
        """The chain ``record`` is stored in."""
        if self.chain != self.BY_TICKET:
            return self.chain
        return record_chain(record) or self.DEFAULT_CHAIN

    def _store(self, record: dict[str, Any]) -> None:
        try:
            # A JSON round trip: a record holding a datetime or a tuple is stored as JSON shows it.
            payload = json.loads(json.dumps(record, default=str))
            # Built once: a record the ledger refuses (not JSON, too deep) is not retried.
            event = Event(chain=self.chain_for(payload), kind="decision", payload=payload)
            self._with_retries(lambda: self.store.append(event), "append")
        except Exception:  # noqa: BLE001 - the sink never raises into the decision path
            with self._counts_lock:
                self.failures += 1
                failures = self.failures
            log.exception("decision log record %s not stored in the ledger (%d failures so far)",
                          record.get("decision_id"), failures)
            return
        with self._counts_lock:
            self.stored += 1
        tracker = self.track_obligations
        if tracker is None:
            return
        try:
            self._with_retries(lambda: tracker.open_from_record(payload, chain=record_chain(payload)),
                               "obligations")
        except Exception:  # noqa: BLE001 - the sink never raises into the decision path
            with self._counts_lock:
                self.obligation_failures += 1
                failures = self.obligation_failures
            log.exception("obligations of decision %s not opened in the ledger (%d so far)",
                          record.get("decision_id"), failures)

    def _with_retries(self, attempt: Any, what: str) -> Any:
        """``attempt()``, retried ``retries`` times with a doubling backoff; the last error is raised."""
        waited = 0.0
        for n in range(self.retries + 1):
            try:
                return attempt()
            except ValueError:
                raise  # a refused record or obligation: retrying cannot help
            except Exception as exc:  # noqa: BLE001 - retried, then raised to _store
                if n >= self.retries or self._stop.is_set():
                    raise
                delay = max(0.0, min(self.retry_backoff_s * (2 ** n), MAX_RETRY_WAIT_S - waited))
                log.warning("ledger %s failed (%s); retry %d of %d in %.2fs", what, type(exc).__name__,
                            n + 1, self.retries, delay)
                with self._counts_lock:
                    self.retried += 1
                if delay > 0 and self._stop.wait(delay):
                    raise
                waited += delay
        raise AssertionError("unreachable")  # pragma: no cover

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued record is stored (or failed); False if ``timeout`` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._queue.all_tasks_done.wait(remaining)
        return True

    def close(self, timeout: float | None = 5.0) -> bool:
        """Store what is queued (up to ``timeout``), then stop the thread. The store stays open.

        Returns False when records were still pending at the timeout (they are
        counted in ``dropped``).
        """
        if self._closed:
            return True
        self._closed = True
        done = self.flush(timeout)
        self._stop.set()
        if not done:
            # A record waiting out a retry's backoff now fails at once: a failure, not a drop.
            self.flush(0.1)
            with self._counts_lock:
                self.dropped += self.pending
            log.error("ledger sink closed with %d record(s) not stored", self.pending)
        try:
            self._queue.put_nowait(_STOP)
        except queue.Full:
            pass  # the thread is stuck in an append; it is a daemon and dies with the process
        else:
            self._thread.join(timeout if done else 0)
        return done

    def __enter__(self) -> LedgerSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
