"""Decision-log sinks for files, collectors and the logging system: :class:`JsonlSink`,
:class:`HttpBatchSink`, :class:`LoggingSink`.

Both take one decision-log record per call (``HelpdeskPolicy(log_sink=...)``)
and never raise into the decision path: what they cannot write or ship is
counted and logged (logger ``helpdesk_policy.logs``), never lost silently.

* :class:`JsonlSink` appends one JSON line per record to a file, rotating it
  like :class:`logging.handlers.RotatingFileHandler` (``path.1``, ``path.2``…).
* :class:`HttpBatchSink` ships records in batches to an OPA-compatible
  decision-log collector: a gzip-compressed JSON array POSTed with
  ``Content-Encoding: gzip``, from a background thread with a bounded buffer,
  retried with backoff; records that overflow the buffer or outlive the
  retries are dropped and counted.
* :class:`LoggingSink` hands each record to a :mod:`logging` logger, for
  applications that already ship their logs (to a SIEM, a log pipeline):
  the handlers and format are the application's.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import random
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["JsonlSink", "HttpBatchSink", "LoggingSink"]

log = logging.getLogger("helpdesk_policy.logs")


def _json_line(record: Mapping[str, Any]) -> bytes:
    return (json.dumps(record, default=str, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


class JsonlSink:
    """Append each decision-log record to ``path`` as one JSON line; thread-safe.

    Args:
        path: the log file (created with mode 0600 when new).
        max_bytes: rotate before a line would take the file past this size;
            0 never rotates. A single line larger than ``max_bytes`` is still
            written, alone in its file.
        backups: rotated files kept (``path.1`` the newest … ``path.N``);
            with 0 the file is truncated instead.

    ``written`` counts records written, ``failures`` records that could not
    be written (logged with the I/O error).
    """

    def __init__(self, path: str | os.PathLike[str], *, max_bytes: int = 10 * 1024 * 1024, backups: int = 5) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        if backups < 0:
            raise ValueError("backups must be >= 0")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self.written = 0
        self.failures = 0
        self._lock = threading.Lock()
        self._file: Any = None
        self._size = 0
        self._closed = False

    def __repr__(self) -> str:
        return f"JsonlSink({str(self.path)!r}, written={self.written}, failures={self.failures})"

    def _open(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._file = os.fdopen(fd, "ab")
        self._size = os.fstat(fd).st_size

    def _rotate(self) -> None:
        self._file.close()
        self._file = None
        if self.backups > 0:
            for i in range(self.backups - 1, 0, -1):
                src = self.path.with_name(f"{self.path.name}.{i}")
                if src.exists():
                    os.replace(src, self.path.with_name(f"{self.path.name}.{i + 1}"))
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        else:
            with open(self.path, "wb"):
                pass
        self._open()

    def __call__(self, record: dict[str, Any]) -> None:
        """Write one record; an I/O error is counted and logged, never raised."""
        try:
            line = _json_line(record)
            with self._lock:
                if self._closed:
                    raise ValueError("the sink is closed")
                if self._file is None:
                    self._open()
                if self.max_bytes and self._size and self._size + len(line) > self.max_bytes:
                    self._rotate()
                self._file.write(line)
                self._file.flush()
                self._size += len(line)
                self.written += 1
        except Exception:  # noqa: BLE001 - the sink never raises into the decision path
            with self._lock:
                self.failures += 1
                failures = self.failures
            log.exception("decision log record %s not written to %s (%d failures so far)",
                          record.get("decision_id") if isinstance(record, Mapping) else None, self.path, failures)

    def flush(self, timeout: float | None = None) -> bool:
        """Push written lines to the OS (every write is flushed already); always True."""
        with self._lock:
            if self._file is not None:
                self._file.flush()
        return True

    def close(self, timeout: float | None = None) -> bool:
        with self._lock:
            self._closed = True
            if self._file is not None:
                self._file.close()
                self._file = None
        return True

    def __enter__(self) -> JsonlSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Retryable(Exception):
    pass


class HttpBatchSink:
    """Ship decision-log records to an OPA-compatible collector, in gzip JSON batches.

    Each call puts the record in a bounded buffer and returns at once. A
    background thread POSTs up to ``batch_size`` records as one JSON array,
    gzip-compressed (``Content-Encoding: gzip``, as OPA's decision-log plugin
    uploads), when a batch is full or ``flush_interval_s`` has passed. A
    connection error, a timeout, HTTP 429 or 5xx is retried ``retries``
    times with jittered exponential backoff; then the batch is dropped.
    Another 4xx drops it at once (the collector refused it).

    Args:
        url: the collector's endpoint (``http://`` or ``https://``).
        batch_size: records per upload, at most.
        flush_interval_s: the longest a record waits for its batch to fill.
        max_buffer: records waiting, at most; one more is dropped.
        retries: further attempts after a failed upload.
        timeout_s: each upload's timeout.
        headers: extra request headers (e.g. ``Authorization``).
        backoff_s: the first retry's delay (doubling, with jitter).

    Counters (records unless said): ``sent``; ``dropped`` (buffer full,
    retries exhausted, refused by the collector, or left at close);
    ``failures`` (failed upload attempts, retried ones included).
    """

    def __init__(self, url: str, *, batch_size: int = 100, flush_interval_s: float = 1.0, max_buffer: int = 10000,
                 retries: int = 3, timeout_s: float = 5, headers: Mapping[str, str] | None = None,
                 backoff_s: float = 0.2) -> None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError("url must be an http:// or https:// URL")
        for name, value, least in (("batch_size", batch_size, 1), ("max_buffer", max_buffer, 1),
                                   ("retries", retries, 0)):
            if not isinstance(value, int) or value < least:
                raise ValueError(f"{name} must be an int >= {least}")
        for name, seconds in (("flush_interval_s", flush_interval_s), ("timeout_s", timeout_s)):
            if not seconds > 0:
                raise ValueError(f"{name} must be > 0")
        if backoff_s < 0:
            raise ValueError("backoff_s must be >= 0")
        self.url = url
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.max_buffer = max_buffer
        self.retries = retries
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s
        self._headers = {"Content-Type": "application/json", "Content-Encoding": "gzip",
                         "User-Agent": "helpdesk-policy", **dict(headers or {})}
        self.sent = 0
        self.dropped = 0
        self.failures = 0
        self._buffer: deque[dict[str, Any]] = deque()
        self._in_flight = 0
        self._cond = threading.Condition()
        self._flush_wanted = False
        self._closing = False
        self._closed = False
        self._stop = threading.Event()  # interrupts a retry's backoff at close
        self._thread = threading.Thread(target=self._run, name="helpdesk-policy-http-log-sink", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return (f"HttpBatchSink({self.url!r}, sent={self.sent}, dropped={self.dropped}, "
                f"failures={self.failures}, pending={self.pending})")

    @property
    def pending(self) -> int:
        """Records buffered or being uploaded."""
        with self._cond:
            return len(self._buffer) + self._in_flight

    def __call__(self, record: dict[str, Any]) -> None:
        """Buffer one record; returns at once. A full buffer drops it (counted and logged)."""
        with self._cond:
            if self._closing:
                why = "the sink is closed"
            elif len(self._buffer) >= self.max_buffer:
                why = f"the buffer is full ({self.max_buffer} records)"
            else:
                self._buffer.append(record)
                if len(self._buffer) in (1, self.batch_size):  # a batch starts its clock, or is full
                    self._cond.notify_all()
                return
            self.dropped += 1
            dropped = self.dropped
        log.error("decision log record %s not shipped to %s: %s (%d dropped so far)",
                  record.get("decision_id") if isinstance(record, Mapping) else None, self.url, why, dropped)

    # ------------------------------------------------------------ the thread

    def _run(self) -> None:
        while True:
            with self._cond:
                # A batch leaves when full, at a flush or close, or flush_interval_s after its first record came.
                deadline = time.monotonic() + self.flush_interval_s
                while True:
                    if not self._buffer:
                        if self._closing:
                            return
                        self._flush_wanted = False
                        self._cond.wait()
                        deadline = time.monotonic() + self.flush_interval_s
                        continue
                    if len(self._buffer) >= self.batch_size or self._closing or self._flush_wanted:
                        break
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                batch = [self._buffer.popleft() for _ in range(min(self.batch_size, len(self._buffer)))]
                self._in_flight = len(batch)
            try:
                self._ship(batch)
            finally:
                with self._cond:
                    self._in_flight = 0
                    self._cond.notify_all()

    def _ship(self, batch: list[dict[str, Any]]) -> None:
        try:
            body = gzip.compress(json.dumps(batch, default=str, ensure_ascii=False).encode("utf-8"))
        except Exception as exc:  # noqa: BLE001 - a record that cannot be serialised
            self._drop(batch, f"not serialisable: {exc}")
            return
        attempt = 0
        while True:
            try:
                self._post(body)
            except _Retryable as exc:
                why = str(exc)
            except Exception as exc:  # noqa: BLE001 - refused by the collector, or a bug: drop, never raise
                with self._cond:
                    self.failures += 1
                self._drop(batch, str(exc))
                return
            else:
                with self._cond:
                    self.sent += len(batch)
                return
            with self._cond:
                self.failures += 1
            if attempt >= self.retries or self._stop.is_set():
                self._drop(batch, f"{why} (after {attempt + 1} attempt(s))")
                return
            delay = self.backoff_s * (2 ** attempt) * random.uniform(0.5, 1.5)
            log.warning("decision log upload to %s failed (%s); retrying in %.2fs", self.url, why, delay)
            attempt += 1
            if self._stop.wait(delay):
                self._drop(batch, f"{why} (the sink was closed while retrying)")
                return

    def _post(self, body: bytes) -> None:
        request = urllib.request.Request(self.url, data=body, method="POST", headers=self._headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310 - http(s) only
                response.read()
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
            exc.close()
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            raise _Retryable(f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}") from None
        if 200 <= status < 300:
            return
        if status == 429 or status >= 500:
            raise _Retryable(f"HTTP {status}")
        raise ValueError(f"HTTP {status}: the collector refused the batch")

    def _drop(self, batch: list[dict[str, Any]], why: str) -> None:
        with self._cond:
            self.dropped += len(batch)
            dropped = self.dropped
        log.error("%d decision log record(s) not shipped to %s: %s (%d dropped so far)",
                  len(batch), self.url, why, dropped)

    # ------------------------------------------------------------ control

    def flush(self, timeout: float | None = None) -> bool:
        """Ship what is buffered now and wait for it; False if ``timeout`` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._flush_wanted = True
            self._cond.notify_all()
            while self._buffer or self._in_flight:
                if not self._thread.is_alive():
                    return False
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining if remaining is not None else 0.5)
                self._flush_wanted = True
        return True

    def close(self, timeout: float | None = 5.0) -> bool:
        """Ship what is buffered (up to ``timeout``), then stop the thread.

        Returns False when records were still pending at the timeout; they are
        counted in ``dropped``.
        """
        if self._closed:
            return True
        done = self.flush(timeout)
        with self._cond:
            self._closed = self._closing = True
            left = len(self._buffer)
            self._buffer.clear()
            self._cond.notify_all()
        self._stop.set()
        self._thread.join(None if done else 0.1)
        if left:
            with self._cond:
                self.dropped += left
            log.error("decision log sink for %s closed with %d record(s) not shipped", self.url, left)
        return done and not left

    def __enter__(self) -> HttpBatchSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LoggingSink:
    """Hand each decision-log record to a :mod:`logging` logger: one log call per record.

    The message is the record as compact JSON; the record itself rides along
    as ``extra={"decision_log": record}`` (``logrecord.decision_log``), for a
    handler or formatter that ships structured data. The sink never
    configures handlers, levels or propagation: that is the application's
    logging configuration. A logger not enabled for ``level`` costs a
    decision nothing (the JSON is not built).

    Args:
        logger: a logger or its name (default ``"helpdesk_policy.decisions"``).
        level: the level of each record's log call (default ``INFO``).

    ``written`` counts records logged, ``failures`` records that could not be
    (a record that is not JSON, a filter that raised); a failure is reported
    on the ``helpdesk_policy.logs`` logger and never raised into the decision.

    >>> import logging
    >>> sink = LoggingSink("helpdesk_policy.decisions", level=logging.INFO)
    >>> sink({"decision_id": "d-1", "result": {"level": "step_up"}})
    """

    def __init__(self, logger: str | logging.Logger = "helpdesk_policy.decisions", level: int = logging.INFO) -> None:
        if isinstance(logger, str):
            if not logger:
                raise ValueError("logger must be a logger or a non-empty logger name")
            logger = logging.getLogger(logger)
        elif not isinstance(logger, logging.Logger):
            raise ValueError("logger must be a logging.Logger or a logger name")
        if isinstance(level, bool) or not isinstance(level, int) or level <= logging.NOTSET:
            raise ValueError("level must be a logging level above NOTSET, such as logging.INFO")
        self.logger = logger
        self.level = level
        self.written = 0
        self.failures = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (f"LoggingSink({self.logger.name!r}, level={logging.getLevelName(self.level)}, "
                f"written={self.written}, failures={self.failures})")

    def __call__(self, record: dict[str, Any]) -> None:
        """Log one record; a failure is counted and reported, never raised."""
        try:
            if not self.logger.isEnabledFor(self.level):
                return
            message = json.dumps(record, default=str, ensure_ascii=False, separators=(",", ":"))
            # No args: the message is not %-formatted, so a '%' in the record is harmless.
            self.logger.log(self.level, message, extra={"decision_log": record})
        except Exception:  # noqa: BLE001 - the sink never raises into the decision path
            with self._lock:
                self.failures += 1
                failures = self.failures
            try:
                log.exception("decision log record %s not logged to %r (%d failures so far)",
                              record.get("decision_id") if isinstance(record, Mapping) else None,
                              self.logger.name, failures)
            except Exception:  # noqa: BLE001, S110 - logging itself is broken: nothing more to do
                pass
            return
        with self._lock:
            self.written += 1

    def flush(self, timeout: float | None = None) -> bool:
        """Nothing is buffered here (the handlers flush themselves); always True."""
        return True

    def close(self, timeout: float | None = None) -> bool:
        """Nothing to close: the logger and its handlers belong to the application; always True."""
        return True

    def __enter__(self) -> LoggingSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
