"""``LedgerSink``: the decision log into the ledger, never in the decision's way.

``HelpdeskPolicy(log_sink=LedgerSink(store))``: each decision-log record is
put on a bounded queue (waiting at most ``budget_s`` when the queue is full)
and a background thread appends it to the ledger. When the ledger is down or
slow the decision is still made and returned; the record that could not be
stored is counted (``failures`` for a failed append, ``dropped`` for a full
queue) and logged. Nothing is lost silently.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from typing import Any

from .base import Event, LedgerStore

__all__ = ["LedgerSink"]

log = logging.getLogger("helpdesk_policy.ledger")

_STOP = object()


class LedgerSink:
    """A decision-log sink appending each record to ``store`` from a background thread.

    Args:
        store: the ledger.
        budget_s: the longest a decision waits for room on a full queue.
        queue_size: records waiting to be stored, at most.
        chain: the chain decisions are recorded in.
    """

    def __init__(self, store: LedgerStore, *, budget_s: float = 0.05, queue_size: int = 10000,
                 chain: str = "decisions") -> None:
        if budget_s < 0:
            raise ValueError("budget_s must be >= 0")
        if queue_size < 1:
            raise ValueError("queue_size must be >= 1")
        self.store = store
        self.budget_s = budget_s
        self.chain = chain
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

    def _store(self, record: dict[str, Any]) -> None:
        try:
            # A JSON round trip: a record holding a datetime or a tuple is stored as JSON shows it.
            payload = json.loads(json.dumps(record, default=str))
            self.store.append(Event(chain=self.chain, kind="decision", payload=payload))
        except Exception:  # noqa: BLE001 - the sink never raises into the decision path
            with self._counts_lock:
                self.failures += 1
                failures = self.failures
            log.exception("decision log record %s not stored in the ledger (%d failures so far)",
                          record.get("decision_id"), failures)
        else:
            with self._counts_lock:
                self.stored += 1

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
        if not done:
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
