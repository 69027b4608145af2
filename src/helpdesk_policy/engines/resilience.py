"""Calling something that may fail: one deadline, jittered retries, a circuit breaker.

Three small pieces, usable on their own and together, from threads and from
asyncio alike:

* :class:`Deadline` — one time budget for a whole call, retries included.
* :class:`RetryPolicy` — how many retries and how long to wait before each:
  exponential backoff with jitter, so that many clients retrying at once do
  not hit a recovering server in lock-step.
* :class:`CircuitBreaker` — after ``threshold`` consecutive failed calls the
  breaker *opens*: calls are refused at once (:class:`CircuitOpenError`, no
  network) for ``cooldown`` seconds. Then it is *half-open*: exactly one
  caller is let through as a probe; its success closes the breaker, its
  failure opens it for another cool-down. So a dead dependency costs at most
  one deadline per cool-down instead of one per call.

* :class:`Watchdog` — runs a callback when a deadline passes unless it was
  disarmed first, from one daemon thread: what lets a blocking call be cut
  off at its deadline (the ``opa`` engine shuts its socket down) when the
  library it goes through only knows per-operation timeouts.

:func:`call` and :func:`acall` put them together: the breaker is consulted
once per call, then attempts run until one succeeds, the error is not
retryable, the retries are spent, or the next backoff would overrun the
deadline; the outcome of the whole call (not of each attempt) is what the
breaker counts.

>>> from helpdesk_policy.engines.resilience import CircuitBreaker, RetryPolicy, call
>>> breaker = CircuitBreaker(threshold=2, cooldown=30.0)
>>> call(lambda timeout: "ok", deadline=1.0, retry=RetryPolicy(retries=2), breaker=breaker)
'ok'
>>> breaker.state
<BreakerState.CLOSED: 'closed'>

Thread-safety: the breaker's state is guarded by a :class:`threading.Lock`
that is never held while calling out or awaiting, so one breaker can be
shared by sync and async callers and by many threads and event loops.
"""

from __future__ import annotations

import asyncio
import enum
import heapq
import itertools
import os
import random
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from ..errors import CircuitOpenError, EngineError, EngineTimeoutError, EngineUnavailableError

__all__ = [
    "Deadline",
    "RetryPolicy",
    "BreakerState",
    "CircuitBreaker",
    "CircuitOpenError",
    "Permit",
    "Watchdog",
    "Alarm",
    "call",
    "acall",
    "is_retryable",
]

T = TypeVar("T")
Clock = Callable[[], float]


# ---------------------------------------------------------------------------- deadline


class Deadline:
    """A point in time by which a call must be over.

    >>> d = Deadline(0.5)
    >>> 0 < d.remaining() <= 0.5
    True
    """

    __slots__ = ("seconds", "_end", "_clock")

    def __init__(self, seconds: float, *, clock: Clock = time.monotonic) -> None:
        if seconds <= 0:
            raise ValueError(f"deadline must be positive, got {seconds!r}")
        self.seconds = seconds
        self._clock = clock
        self._end = clock() + seconds

    def remaining(self) -> float:
        """Seconds left (never negative)."""
        return max(0.0, self._end - self._clock())

    @property
    def expired(self) -> bool:
        return self._clock() >= self._end

    def __repr__(self) -> str:
        return f"<Deadline {self.remaining():.3f}s of {self.seconds}s left>"


# ---------------------------------------------------------------------------- watchdog


class Alarm:
    """One armed callback of a :class:`Watchdog`; :meth:`disarm` it when the guarded work ends."""

    __slots__ = ("_callback", "_lock", "_state")

    def __init__(self, callback: Callable[[], object]) -> None:
        self._callback = callback
        self._lock = threading.Lock()
        self._state = "armed"  # then "disarmed" or "fired", never both

    @property
    def fired(self) -> bool:
        """Whether the deadline passed before :meth:`disarm` (the callback ran or is running)."""
        with self._lock:
            return self._state == "fired"

    def disarm(self) -> bool:
        """Stop the alarm. Returns True when it had already fired."""
        with self._lock:
            if self._state == "armed":
                self._state = "disarmed"
            return self._state == "fired"

    def _fire(self) -> None:
        with self._lock:
            if self._state != "armed":
                return
            self._state = "fired"
        self._callback()  # outside the lock: the callback may take a while, disarm must not wait


class Watchdog:
    """Runs callbacks when their deadlines pass, unless disarmed first.

    One daemon thread serves every alarm (started on first use, and again in
    a forked child). Callbacks run on that thread, one after another, so they
    must be quick and must not raise; one that raises is ignored, so that the
    other alarms still fire.

    >>> import threading
    >>> fired = threading.Event()
    >>> alarm = Watchdog().arm(0.01, fired.set)
    >>> fired.wait(5), alarm.fired, alarm.disarm()
    (True, True, True)
    """

    def __init__(self, *, name: str = "helpdesk-policy-watchdog", clock: Clock = time.monotonic) -> None:
        self.name = name
        self._clock = clock
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Alarm]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        if hasattr(os, "register_at_fork"):
            # A child inherits the heap but not the thread, and maybe a lock
            # held by a thread that no longer exists: start afresh.
            ref = weakref.ref(self)
            os.register_at_fork(after_in_child=lambda: (w := ref()) is not None and w._after_fork())

    def arm(self, seconds: float, callback: Callable[[], object]) -> Alarm:
        """Run ``callback`` in ``seconds`` unless the returned alarm is disarmed first."""
        alarm = Alarm(callback)
        when = self._clock() + seconds
        with self._cond:
            heapq.heappush(self._heap, (when, next(self._seq), alarm))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            elif self._heap[0][2] is alarm:
                self._cond.notify()  # the new alarm is the earliest: wake up sooner
        return alarm

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    # Disarmed alarms are dropped when they reach the top, so
                    # the heap holds at most the alarms armed in one deadline.
                    while self._heap and self._heap[0][2]._state != "armed":  # noqa: SLF001
                        heapq.heappop(self._heap)
                    if not self._heap:
                        self._cond.wait()
                        continue
                    wait = self._heap[0][0] - self._clock()
                    if wait <= 0:
                        alarm = heapq.heappop(self._heap)[2]
                        break
                    self._cond.wait(wait)
            try:
                alarm._fire()  # noqa: SLF001
            except Exception:  # noqa: BLE001, S110 - one bad callback must not stop the others
                pass

    def _after_fork(self) -> None:
        self._cond = threading.Condition()
        self._heap = []
        self._thread = None


# ------------------------------------------------------------------------------ retry


@dataclass(frozen=True)
class RetryPolicy:
    """Retries with exponential backoff and jitter.

    The wait before retry *n* (0-based) is ``d = min(cap, base * 2**n)``
    scaled into ``[d * (1 - jitter), d]`` uniformly at random ("equal jitter"
    for ``jitter=0.5``): never zero, so a retry storm spreads out, and never
    more than ``d``.

    Args:
        retries: retries after the first attempt (``0`` = try once).
        base: the first backoff, in seconds.
        cap: the longest backoff, in seconds.
        jitter: the randomised fraction of each backoff, 0 to 1.
        attempt_timeout: cap on a single attempt's time, in seconds. ``None``
            gives each attempt the whole remaining deadline, so an attempt
            that times out leaves no budget to retry; set it (well below the
            deadline) to retry a hung attempt, e.g. on another replica.

    >>> p = RetryPolicy(retries=3, base=0.1, cap=0.3, jitter=0.5)
    >>> [0.05 <= p.backoff(0) <= 0.1, 0.1 <= p.backoff(1) <= 0.2, 0.15 <= p.backoff(5) <= 0.3]
    [True, True, True]
    """

    retries: int = 2
    base: float = 0.05
    cap: float = 1.0
    jitter: float = 0.5
    attempt_timeout: float | None = None

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries!r}")
        if self.base < 0 or self.cap < 0:
            raise ValueError("backoff base and cap must be >= 0")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be within [0, 1], got {self.jitter!r}")
        if self.attempt_timeout is not None and self.attempt_timeout <= 0:
            raise ValueError(f"attempt_timeout must be positive, got {self.attempt_timeout!r}")

    def backoff(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (0-based)."""
        d = min(self.cap, self.base * (2 ** min(retry, 62)))
        return d * (1.0 - self.jitter) + random.uniform(0.0, d * self.jitter)  # noqa: S311 - not crypto


def is_retryable(exc: BaseException) -> bool:
    """Default retry rule: an explicit ``retryable`` attribute wins; otherwise
    an unreachable engine or a timeout is worth retrying, and nothing else is."""
    flag = getattr(exc, "retryable", None)
    if flag is not None:
        return bool(flag)
    return isinstance(exc, (EngineUnavailableError, EngineTimeoutError)) and not isinstance(exc, CircuitOpenError)


# ---------------------------------------------------------------------------- breaker


class BreakerState(str, enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class Permit:
    """Permission to make one call, from :meth:`CircuitBreaker.acquire`.
    ``probe`` is true for the single half-open probe."""

    probe: bool
    generation: int


class CircuitBreaker:
    """Stop calling a dependency that keeps failing; probe it again after a cool-down.

    Args:
        threshold: consecutive failed calls that open the breaker.
        cooldown: seconds the breaker stays open before one probe is let through.
        name: used in the :class:`CircuitOpenError` message (an engine name).
        clock: a monotonic clock (injectable for tests).

    Use :meth:`acquire` before a call and exactly one of :meth:`success`,
    :meth:`failure` or :meth:`abandon` after it (:func:`call` does this).
    Results of calls that started before the breaker last changed state are
    ignored: a slow success from before an outage does not close a breaker
    that opened since, and a straggling failure does not re-arm a cool-down.

    >>> now = [0.0]
    >>> b = CircuitBreaker(threshold=2, cooldown=10, clock=lambda: now[0])
    >>> for _ in range(2):
    ...     b.failure(b.acquire())
    >>> b.state
    <BreakerState.OPEN: 'open'>
    >>> b.acquire()
    Traceback (most recent call last):
      ...
    helpdesk_policy.errors.CircuitOpenError: circuit open after 2 consecutive failures; next probe in 10.0s
    >>> now[0] = 10.0
    >>> probe = b.acquire(); probe.probe, b.state
    (True, <BreakerState.HALF_OPEN: 'half_open'>)
    >>> b.success(probe); b.state
    <BreakerState.CLOSED: 'closed'>
    """

    def __init__(self, threshold: int = 5, cooldown: float = 30.0, *, name: str = "", clock: Clock = time.monotonic) -> None:
        if threshold < 1:
            raise ValueError(f"breaker threshold must be >= 1, got {threshold!r}")
        if cooldown < 0:
            raise ValueError(f"breaker cooldown must be >= 0, got {cooldown!r}")
        self.threshold = threshold
        self.cooldown = cooldown
        self.name = name
        self._clock = clock
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False
        # Bumped on every state change, so results of calls that started
        # before the change can be recognised and ignored.
        self._generation = 0
        #: Counters for monitoring: calls refused while open, times opened.
        self.rejected = 0
        self.opened = 0

    # -- inspection ---------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        with self._lock:
            return self._state

    @property
    def failures(self) -> int:
        """Consecutive failed calls counted so far (while closed)."""
        with self._lock:
            return self._failures

    def retry_after(self) -> float:
        """Seconds until a probe may be let through (0 when closed or due)."""
        with self._lock:
            if self._state is not BreakerState.OPEN:
                return 0.0
            return max(0.0, self._opened_at + self.cooldown - self._clock())

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self.name or ''} {self.state.value} failures={self.failures}/{self.threshold}>"

    # -- protocol -----------------------------------------------------------

    def acquire(self) -> Permit:
        """Permission for one call, or :class:`CircuitOpenError` (no call may be made)."""
        with self._lock:
            if self._state is BreakerState.CLOSED:
                return Permit(False, self._generation)
            if self._state is BreakerState.OPEN:
                wait = self._opened_at + self.cooldown - self._clock()
                if wait <= 0:
                    self._set(BreakerState.HALF_OPEN)
                    self._probe_in_flight = True
                    return Permit(True, self._generation)
                self.rejected += 1
                raise CircuitOpenError(
                    f"circuit open after {self._failures} consecutive failures; next probe in {wait:.1f}s",
                    engine=self.name, retry_after=wait,
                )
            # HALF_OPEN
            if not self._probe_in_flight:
                self._probe_in_flight = True
                return Permit(True, self._generation)
            self.rejected += 1
            raise CircuitOpenError("circuit half-open: a probe call is in flight", engine=self.name)

    def success(self, permit: Permit) -> None:
        """The call made under ``permit`` succeeded."""
        with self._lock:
            if permit.generation != self._generation:
                return
            if permit.probe or self._state is BreakerState.CLOSED:
                self._failures = 0
                self._probe_in_flight = False
                if self._state is not BreakerState.CLOSED:
                    self._set(BreakerState.CLOSED)

    def failure(self, permit: Permit) -> None:
        """The call made under ``permit`` failed."""
        with self._lock:
            if permit.generation != self._generation:
                return
            if permit.probe:
                self._probe_in_flight = False
                self._open()
                return
            if self._state is BreakerState.CLOSED:
                self._failures += 1
                if self._failures >= self.threshold:
                    self._open()

    def abandon(self, permit: Permit) -> None:
        """The call ended without telling success from failure (cancelled):
        free the probe slot so the next caller probes; count nothing."""
        with self._lock:
            if permit.probe and permit.generation == self._generation:
                self._probe_in_flight = False

    def reset(self) -> None:
        """Close the breaker and forget the failures (e.g. after a manual fix)."""
        with self._lock:
            self._failures = 0
            self._probe_in_flight = False
            self._set(BreakerState.CLOSED)

    # -- internals (lock held) -----------------------------------------------

    def _open(self) -> None:
        self._opened_at = self._clock()
        self.opened += 1
        self._set(BreakerState.OPEN)

    def _set(self, state: BreakerState) -> None:
        self._state = state
        self._generation += 1


# ------------------------------------------------------------------------- running


def _attempt_budget(deadline: Deadline, retry: RetryPolicy) -> float:
    left = deadline.remaining()
    return min(left, retry.attempt_timeout) if retry.attempt_timeout is not None else left


def _may_retry(
    exc: BaseException, n: int, attempts: int, deadline: Deadline, retry: RetryPolicy,
    breaker: CircuitBreaker | None, retryable: Callable[[BaseException], bool],
) -> float | None:
    """The backoff before the next attempt, or None to give up."""
    if n + 1 >= attempts or not retryable(exc):
        return None
    if breaker is not None and breaker.state is BreakerState.OPEN:
        return None  # other calls opened it meanwhile: stop adding load
    wait = retry.backoff(n)
    if deadline.remaining() <= wait:
        return None  # the backoff would overrun the deadline
    return wait


def call(
    attempt: Callable[[float], T],
    *,
    deadline: float | Deadline,
    retry: RetryPolicy = RetryPolicy(),
    breaker: CircuitBreaker | None = None,
    retryable: Callable[[BaseException], bool] = is_retryable,
    counts_as_failure: Callable[[BaseException], bool] = lambda exc: True,
    timeout_error: Callable[[float], BaseException] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``attempt(timeout)`` with retries inside one deadline, behind a breaker.

    ``attempt`` receives the seconds it may take and must honour them (raise
    on timeout). Only exceptions are retried, and only those ``retryable``
    accepts; any other exception ends the call at once. ``counts_as_failure``
    decides whether the final error counts against the breaker (a request the
    server rejects as invalid says nothing about its health).

    Raises:
        CircuitOpenError: the breaker refused the call (``attempt`` not run).
        EngineTimeoutError: the deadline passed before an attempt could start
            (or whatever ``timeout_error`` builds).
        the last attempt's exception, otherwise.
    """
    dl = deadline if isinstance(deadline, Deadline) else Deadline(deadline)
    permit = breaker.acquire() if breaker is not None else None
    attempts = 1 if permit is not None and permit.probe else retry.retries + 1
    n = 0
    with _Reporting(breaker, permit, counts_as_failure):
        while True:
            budget = _attempt_budget(dl, retry)
            if budget <= 0:
                raise (timeout_error or _timeout)(dl.seconds)
            try:
                result = attempt(budget)
            except Exception as exc:  # noqa: BLE001 - classified below, re-raised
                wait = _may_retry(exc, n, attempts, dl, retry, breaker, retryable)
                if wait is None:
                    raise
                sleep(wait)
                n += 1
                continue
            return result


async def acall(
    attempt: Callable[[float], Awaitable[T]],
    *,
    deadline: float | Deadline,
    retry: RetryPolicy = RetryPolicy(),
    breaker: CircuitBreaker | None = None,
    retryable: Callable[[BaseException], bool] = is_retryable,
    counts_as_failure: Callable[[BaseException], bool] = lambda exc: True,
    timeout_error: Callable[[float], BaseException] | None = None,
) -> T:
    """Async twin of :func:`call`. Each attempt is also cut off by
    :func:`asyncio.wait_for` at its budget, so a hung attempt cannot overrun
    the deadline; the waits between attempts are :func:`asyncio.sleep`."""
    dl = deadline if isinstance(deadline, Deadline) else Deadline(deadline)
    make_timeout = timeout_error or _timeout
    permit = breaker.acquire() if breaker is not None else None
    attempts = 1 if permit is not None and permit.probe else retry.retries + 1
    n = 0
    with _Reporting(breaker, permit, counts_as_failure):
        while True:
            budget = _attempt_budget(dl, retry)
            if budget <= 0:
                raise make_timeout(dl.seconds)
            try:
                try:
                    result = await asyncio.wait_for(attempt(budget), budget)
                except asyncio.TimeoutError:
                    raise make_timeout(budget) from None
            except Exception as exc:  # noqa: BLE001 - classified below, re-raised
                wait = _may_retry(exc, n, attempts, dl, retry, breaker, retryable)
                if wait is None:
                    raise
                await asyncio.sleep(wait)
                n += 1
                continue
            return result


class _Reporting:
    """Tells the breaker how a call ended: success, failure (as
    ``counts_as_failure`` judges the exception), or abandoned (cancelled,
    interrupted: no verdict on the server's health)."""

    def __init__(self, breaker: CircuitBreaker | None, permit: Permit | None,
                 counts_as_failure: Callable[[BaseException], bool]) -> None:
        self.breaker, self.permit, self.counts_as_failure = breaker, permit, counts_as_failure

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if self.breaker is None or self.permit is None:
            return
        if exc is None or (isinstance(exc, Exception) and not self.counts_as_failure(exc)):
            self.breaker.success(self.permit)
        elif isinstance(exc, Exception):
            self.breaker.failure(self.permit)
        else:
            self.breaker.abandon(self.permit)


def _timeout(seconds: float) -> EngineError:
    return EngineTimeoutError(f"no answer within {seconds:g}s")
