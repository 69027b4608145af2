"""Replay many requests on every core: worker processes, the caller's order, a progress bar.

The native engine is pure Python, so threads cannot decide two requests at
once (the GIL); processes can. :meth:`HelpdeskPolicy.decide_many
<helpdesk_policy.facade.HelpdeskPolicy.decide_many>` and
:func:`~helpdesk_policy.ci.diff.diff_policies` split a large input into
chunks and hand them to :func:`run_chunks`, which decides them in worker
processes **and in the calling process**: ``workers=N`` starts ``N - 1``
processes and the caller works as the N-th, so its share starts at once
while the others start up, and ``workers=2`` on two cores is two busy
processes. Chunks come back in the input's order, whichever process did
them.

>>> from helpdesk_policy import HelpdeskPolicy
>>> from helpdesk_policy.ci.generate import generate_request_dicts
>>> requests = generate_request_dicts(40, seed=1)
>>> with HelpdeskPolicy(engine="native") as policy:
...     decisions = policy.decide_many(requests, workers=2)
>>> [d.request_id for d in decisions[:2]], len({d.decision_id for d in decisions})
(['GEN-1-00000', 'GEN-1-00001'], 40)

How a worker gets its policy. A :class:`~helpdesk_policy.facade.HelpdeskPolicy`
holds engines, compiled Rego and threads and is not picklable, so a worker
builds its own from a description (:func:`policy_job`): the engine names (an
engine instance of your own goes as itself, pickled), the config, the
policy directory, the timeout, the decision-log settings and the exception
source. It must come out with the same policy revision and engines, or the
worker refuses to decide. When the policy cannot be described so (an ``opa``
engine, whose options and HTTP session stay in the caller; an engine or an
exception source that cannot be pickled), or worker processes cannot start
(a daemonic process), the requests are decided in the calling process, as
without ``workers``, and the reason is logged at INFO. A worker that fails
mid-way is logged at WARNING and its chunks are decided in the calling
process: replay never loses or changes a decision because of the pool.

What stays the same as deciding in one process:

* every decision, byte for byte apart from its ``decision_id`` (a fresh one
  each, unique) and nothing else: engine, ``degraded``, ``policy_revision``,
  ``input_digest`` come from the same engines on the same policy;
* validation: every request is validated, an invalid one raises
  :class:`~helpdesk_policy.errors.InvalidRequestError` naming each bad field
  as ``[i].path``, and then no decision is returned and no record logged;
* the decision log: the workers build the records (with the same masking,
  labels and pseudonyms) and send them back; the caller's ``log_sink`` is
  called **in the calling process, in the requests' order, after every
  request was decided** (not while they are decided, as one at a time does).

What differs: the policy object's own counters (cache statistics, exception
lookup failures) count only the decisions made in the calling process, and a
worker process logs through its own (unconfigured) ``logging``.

A batch of :data:`KEEP_SURVIVORS_FROM` requests or more, in one process or
several, keeps the decisions it holds out of the garbage collector's full
passes while it runs (:class:`KeptSurvivors`): they cost more than deciding
at that size.

Worker processes start with ``multiprocessing``'s ``forkserver`` method where
there is one (``spawn`` elsewhere), never ``fork``: forking a process that
runs threads (the engine chain's, a web server's) is unsafe. A worker's
results come back pickled in a file of a private directory (mode 0700, in
memory under ``/dev/shm`` where there is one), removed as it is read, and
the directory at the end. Like every
``multiprocessing`` program, a script that replays in parallel must guard
its entry point with ``if __name__ == "__main__":``: a worker imports the
main module.
"""

from __future__ import annotations

import gc
import logging
import math
import os
import pickle
import signal
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import IO, Any, Generic, TypeVar

from .errors import FieldError, InvalidConfigError, InvalidRequestError
from .models import parse_request

__all__ = [
    "AUTO_MIN_REQUESTS",
    "DECIDE_CHUNK",
    "KEEP_SURVIVORS_FROM",
    "KeptSurvivors",
    "ProgressBar",
    "WorkerJob",
    "decide_here",
    "plan_workers",
    "policy_job",
    "replay_decisions",
    "run_chunks",
    "start_method",
    "usable_cpus",
]

log = logging.getLogger(__name__)

#: ``workers=None`` replays in parallel from this many requests on. The first
#: pool of a process starts in about a quarter of a second (the forkserver
#: imports the library once), later ones in tens of milliseconds; the calling
#: process decides its share meanwhile, but a smaller batch gains little. Pass
#: ``workers`` to choose.
AUTO_MIN_REQUESTS = 10_000
#: Requests per chunk handed to a worker: large enough that sending it costs
#: little, small enough that the processes finish together.
DECIDE_CHUNK = 1000
#: From this many requests on, a batch keeps its decisions out of the garbage
#: collector's full passes while it runs (:class:`KeptSurvivors`).
KEEP_SURVIVORS_FROM = 10_000

C = TypeVar("C")
R = TypeVar("R")


# ------------------------------------------------------------------ planning


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def plan_workers(count: int, workers: int | None, *, auto_min: int = AUTO_MIN_REQUESTS) -> int:
    """How many processes (the caller included) should decide ``count`` items.

    ``workers=None`` is automatic: every usable CPU from ``auto_min`` items
    on, else 1 (this process). An explicit number is used as given, capped
    at ``count``.

    >>> plan_workers(10, 1), plan_workers(10, 4), plan_workers(3, 4), plan_workers(10, None, auto_min=100)
    (1, 4, 3, 1)

    Raises:
        InvalidConfigError: ``workers`` is not a positive int or None.
    """
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise InvalidConfigError([FieldError("workers", "must be a positive int (processes, this one included) "
                                                        "or None (every CPU for a large input)")])
    if workers is None:
        workers = usable_cpus() if count >= auto_min else 1
    return max(1, min(workers, count))


def start_method() -> str:
    """``forkserver`` where the platform has it, else ``spawn``; never ``fork`` (unsafe with threads)."""
    import multiprocessing

    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


#: What the forkserver imports once, before it forks workers: each worker then
#: starts in milliseconds instead of importing the library (a fifth of a second).
_PRELOAD = ["__main__", "helpdesk_policy.facade", "helpdesk_policy.replay"]


def _context() -> Any:
    """The ``multiprocessing`` context workers start with; the forkserver preloads the library.

    The preload is added to the default one (the main module) only while
    the forkserver has neither started nor been given another list by the
    application, whose choice stands.
    """
    import multiprocessing

    method = start_method()
    ctx = multiprocessing.get_context(method)
    if method == "forkserver":
        from multiprocessing import forkserver

        server = getattr(forkserver, "_forkserver", None)
        if getattr(server, "_preload_modules", None) == ["__main__"] and getattr(server, "_forkserver_pid", 0) is None:
            ctx.set_forkserver_preload(list(_PRELOAD))
    return ctx


def _cannot_start_processes() -> str | None:
    """Why this process cannot start worker processes, or None."""
    import multiprocessing

    if multiprocessing.current_process().daemon:
        return "this is a daemonic process (a multiprocessing pool's worker), which cannot have children"
    return None


# ------------------------------------------------------------ the collector


class KeptSurvivors:
    """While a large batch runs, keep what it made so far out of the garbage collector's full passes.

    A full pass of Python's cyclic collector visits every tracked object, and
    it runs again each time the objects that survived grow by a quarter. A
    batch that holds tens of thousands of decisions for its caller pays for
    those passes more than for deciding: measured on 50,000 native
    decisions, 9 full passes took 3.3 s of the 6.5 s. So the batch calls this
    object after each chunk, which moves everything alive into the
    collector's permanent generation (:func:`gc.freeze`), and its end puts
    it all back (:func:`gc.unfreeze`): nothing is lost, garbage among it is
    collected by the next full pass as ever.

    It does nothing for a batch under :data:`KEEP_SURVIVORS_FROM`, when the
    collector is off, or when the process has frozen objects of its own (a
    pre-forking server's): unfreezing would thaw them.
    """

    def __init__(self, size: int) -> None:
        self.active = size >= KEEP_SURVIVORS_FROM and gc.isenabled() and gc.get_freeze_count() == 0

    def __enter__(self) -> KeptSurvivors:
        if self.active:
            gc.freeze()
        return self

    def __call__(self) -> None:
        if self.active:
            gc.freeze()

    def __exit__(self, *exc: object) -> None:
        if self.active:
            gc.unfreeze()


# ------------------------------------------------------------------ progress


class ProgressBar:
    """A one-line progress bar on a terminal: ``\\r`` + counts, rate and time left; silent elsewhere.

    It draws only when ``stream`` (default: ``sys.stderr`` at creation) is a
    terminal, at most every ``interval`` seconds, and ends its line on
    :meth:`close`. No dependency: a progress bar is one rewritten line.

    >>> import io
    >>> bar = ProgressBar(100, "decided", stream=io.StringIO())  # not a terminal: draws nothing
    >>> bar.advance(40); bar.close(); bar.enabled
    False
    """

    def __init__(self, total: int, label: str, *, stream: IO[str] | None = None, interval: float = 0.1,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total = total
        self.label = label
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self._clock = clock
        self._started = clock()
        self._drawn_at: float | None = None
        self._width = 0
        try:
            self.enabled = total > 0 and bool(self.stream.isatty())
        except (AttributeError, ValueError):  # no isatty, or a closed stream
            self.enabled = False

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more items done; redraw when ``interval`` has passed."""
        self.done += n
        self.refresh()

    def refresh(self, *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = self._clock()
        if not force and self._drawn_at is not None and now - self._drawn_at < self.interval:
            return
        self._drawn_at = now
        self._write(self.line(now - self._started))

    def line(self, elapsed: float) -> str:
        """The bar's text after ``elapsed`` seconds.

        >>> bar = ProgressBar(1000, "decided")
        >>> bar.done = 250
        >>> bar.line(2.0)
        'decided 250/1,000 (25%) 125/s, 6s left'
        """
        done, total = self.done, self.total
        pct = 100 * done // total if total else 100
        text = f"{self.label} {done:,}/{total:,} ({pct}%)"
        if elapsed > 0 and done:
            rate = done / elapsed
            text += f" {rate:,.0f}/s"
            if done < total:
                text += f", {_duration((total - done) / rate)} left"
            else:
                text += f" in {_duration(elapsed)}"
        return text

    def close(self) -> None:
        """Draw the final count and end the line (nothing when not a terminal)."""
        if not self.enabled:
            return
        self.refresh(force=True)
        self.stream.write("\n")
        self.stream.flush()
        self.enabled = False

    def _write(self, text: str) -> None:
        pad = max(0, self._width - len(text))
        self._width = len(text)
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _duration(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"


# ------------------------------------------------------------- the pool


@dataclass(frozen=True)
class WorkerJob(Generic[C, R]):
    """What a worker process does: build its state once, then run chunks against it.

    ``setup`` and ``run`` must be module-level functions (pickled by name)
    and ``args`` picklable values: they travel to each worker once.

    Attributes:
        setup: called as ``setup(*args)`` on a worker's first chunk; its
            result is the worker's state.
        args: the arguments of ``setup``.
        run: called as ``run(state, chunk)``; its result goes back to the
            caller (pickled).
        what: what the job is, for log messages (``"diff"``).
    """

    setup: Callable[..., Any]
    args: tuple[Any, ...]
    run: Callable[[Any, C], R]
    what: str = "replaying"


# One job per worker process (a pool serves one run_chunks call).
_job: WorkerJob[Any, Any] | None = None
_spool = ""
_state: Any = None
_setup_done = False
_setup_failed: str | None = None
_results = 0


def _init_worker(job: WorkerJob[Any, Any], spool: str) -> None:
    global _job, _spool
    # Ctrl-C reaches the whole process group: the caller stops the pool, the workers do not die mid-chunk.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _job, _spool = job, spool


def _run_in_worker(chunk: Any) -> tuple[str, str]:
    """``("ok", the file holding the result, pickled)``, or ``("failed", why)``; never an exception.

    Not the result itself: a worker sending a megabyte through the pool's
    pipe waits for the caller to read it, and the caller, busy deciding its
    own share, reads it a pipe's buffer at a time, each after waiting for
    the GIL (measured: a worker did a third of the chunks instead of half).
    A file in the spool directory is written at once and read whole. An
    exception is not sent either: it might not pickle.
    """
    global _state, _setup_done, _setup_failed, _results
    assert _job is not None
    if not _setup_done:
        _setup_done = True
        try:
            _state = _job.setup(*_job.args)
        except Exception as exc:  # noqa: BLE001 - reported to the caller, who decides the chunk itself
            _setup_failed = f"cannot set up ({type(exc).__name__}: {exc})"
    if _setup_failed is not None:
        return "failed", _setup_failed
    try:
        data = pickle.dumps(_job.run(_state, chunk), protocol=pickle.HIGHEST_PROTOCOL)
        _results += 1
        path = os.path.join(_spool, f"{os.getpid()}-{_results}.pickle")
        with open(path, "wb") as f:
            f.write(data)
        return "ok", path
    except Exception as exc:  # noqa: BLE001 - the caller decides this chunk itself, and raises if it fails too
        return "failed", f"{type(exc).__name__}: {exc}"


def _spool_dir() -> str:
    """A private directory (mode 0700) for the workers' results: in memory (``/dev/shm``) where there is one."""
    import tempfile

    shm = "/dev/shm"
    where = shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else None
    return tempfile.mkdtemp(prefix="helpdesk-policy-replay-", dir=where)


def _collected(path: str) -> Any:
    """A worker's result, read from its spool file (removed) and unpickled."""
    with open(path, "rb") as f:
        data = f.read()
    os.unlink(path)
    return _unpickled(data)


def _unpickled(data: bytes) -> Any:
    """A worker's result, unpickled with the garbage collector paused.

    Unpickling a chunk makes tens of thousands of containers at once, and
    the collector's passes over them cost three times the unpickling
    (measured: 85 ms against 21 ms for 1,000 decisions with their records).
    They are the batch's results, not garbage: nothing is missed.
    """
    if not gc.isenabled():
        return pickle.loads(data)
    gc.disable()
    try:
        return pickle.loads(data)
    finally:
        gc.enable()


@dataclass
class _Pace:
    """How fast this process and the workers get through chunks: the last ones are shared so that all end together.

    Equal speeds cannot be assumed: a worker pays for sending its results,
    and on a busy machine one process gets less of a core than another.
    """

    procs: int
    here_seconds: float = 0.0
    here_chunks: int = 0
    first_result: float | None = None
    results: int = 0  # worker results after the first one

    def did_here(self, seconds: float) -> None:
        self.here_seconds += seconds
        self.here_chunks += 1

    def worker_result(self, now: float) -> None:
        if self.first_result is None:
            self.first_result = now
        else:
            self.results += 1

    def give(self, left: int, queued: int, now: float) -> bool:
        """Whether the workers should get one more chunk: ``left`` not handed out yet, ``queued`` with them.

        Yes while they would still finish before this process finishes the
        rest; before both speeds are known, while they have fewer than their
        share.
        """
        if self.here_chunks and self.results >= 2 and self.first_result is not None:
            rate = self.results / max(now - self.first_result, 1e-6)  # chunks a second, all workers
            return (queued + 1) / rate <= (left - 1) * self.here_seconds / self.here_chunks
        return left * self.procs > queued


def run_chunks(
    chunks: Sequence[C],
    *,
    local: Callable[[C], R],
    job: WorkerJob[C, R],
    workers: int,
    progress: ProgressBar | None = None,
    weight: Callable[[C], int] = len,  # type: ignore[assignment]
    after_each: Callable[[], None] | None = None,
) -> list[R]:
    """Every chunk's result, in the chunks' order, computed by ``workers`` processes (this one included).

    ``local(chunk)`` computes a chunk in this process and ``job`` in a
    worker; both must give the same result. The workers take chunks from the
    front, this process from the back, until they meet; a chunk a worker
    could not do (its setup or the chunk failed, or the pool broke) is done
    here, with a warning. ``weight(chunk)`` is what the chunk counts for in
    ``progress`` (its length by default); ``after_each()`` is called in this
    process after each chunk's result is in (a :class:`KeptSurvivors`).

    Raises:
        whatever ``local`` raises, after stopping the workers.
    """
    try:
        return _run_chunks(chunks, local, job, workers, progress, weight, after_each)
    finally:
        if progress is not None:
            progress.close()


def _run_chunks(chunks: Sequence[C], local: Callable[[C], R], job: WorkerJob[C, R], workers: int,
                progress: ProgressBar | None, weight: Callable[[C], int],
                after_each: Callable[[], None] | None) -> list[R]:
    results: list[Any] = [None] * len(chunks)
    procs = min(workers - 1, len(chunks) - 1)
    why_not = _cannot_start_processes() if procs >= 1 else None
    if why_not is not None:
        log.info("%s in this process only: %s", job.what, why_not)
    if procs < 1 or why_not is not None:
        for i, chunk in enumerate(chunks):
            results[i] = local(chunk)
            if after_each is not None:
                after_each()
            if progress is not None:
                progress.advance(weight(chunk))
        return results

    import multiprocessing
    from collections import deque
    from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor
    from concurrent.futures import wait as wait_futures

    if getattr(multiprocessing.current_process(), "_inheriting", False):
        # This is a worker importing a main module that replays as it is imported: refuse, as
        # multiprocessing does, rather than replay the whole batch inside a worker's start-up.
        raise RuntimeError("a worker process is importing the main module, which replays in parallel when "
                           "imported: guard the script's entry point with if __name__ == '__main__':")
    started = time.perf_counter()
    done_weight = 0
    by_workers = 0

    def count(chunk: C) -> None:
        nonlocal done_weight
        if after_each is not None:
            after_each()
        done_weight += weight(chunk)
        if progress is not None:
            progress.done = done_weight
            progress.refresh()

    # Futures are never cancelled: CPython 3.11's pool, when a worker dies,
    # fails every pending future, and a cancelled one makes it crash and hang
    # the interpreter's exit. So chunks are submitted a few at a time, from
    # the front, while this process takes them from the back.
    depth = 3 * procs
    pace = _Pace(procs)
    spool = _spool_dir()
    executor = ProcessPoolExecutor(procs, mp_context=_context(), initializer=_init_worker, initargs=(job, spool))
    inflight: deque[tuple[int, Future[tuple[str, Any]]]] = deque()
    head, tail = 0, len(chunks) - 1
    failure: str | None = None
    clean = False

    def failed(why: str) -> None:
        nonlocal failure
        if failure is None:
            failure = why
            log.warning("%s: worker processes failed (%s); the rest is done in this process", job.what, why)

    try:
        while head <= tail or inflight:
            # Take in what the workers finished, in order (a later chunk waits for an earlier one).
            while inflight and inflight[0][1].done():
                i, future = inflight.popleft()
                try:
                    status, value = future.result()
                except Exception as exc:  # noqa: BLE001 - a broken pool: the chunk is done here
                    status, value = "failed", f"{type(exc).__name__}: {exc}"
                if status == "ok":
                    by_workers += 1
                    pace.worker_result(time.perf_counter())
                    value = _collected(value)
                else:
                    failed(value)
                    value = local(chunks[i])
                results[i] = value
                count(chunks[i])
            # Up to 3 chunks a worker, fewer near the end: what is left is shared so that all finish together.
            while (failure is None and head <= tail and len(inflight) < depth
                   and pace.give(tail - head + 1, len(inflight), time.perf_counter())):
                try:
                    inflight.append((head, executor.submit(_run_in_worker, chunks[head])))
                except Exception as exc:  # noqa: BLE001 - no processes to be had (limits, a broken pool)
                    failed(f"{type(exc).__name__}: {exc}")
                    break
                head += 1
            if head <= tail:
                began = time.perf_counter()
                results[tail] = local(chunks[tail])
                pace.did_here(time.perf_counter() - began)
                count(chunks[tail])
                tail -= 1
            elif inflight:
                wait_futures([inflight[0][1]], timeout=0.2, return_when=FIRST_COMPLETED)
                if progress is not None:
                    progress.refresh()
        clean = True
    finally:
        if clean:
            executor.shutdown(wait=True)
        else:
            _stop(executor)
        import shutil

        shutil.rmtree(spool, ignore_errors=True)
    log.debug("%s: %d chunks, %d of them by %d worker processes, in %.3f s", job.what, len(chunks), by_workers,
              procs, time.perf_counter() - started)
    return results


def _stop(executor: Any) -> None:
    """Stop a pool now (an exception or Ctrl-C here): end the workers, do not wait for their chunks."""
    processes = list((getattr(executor, "_processes", None) or {}).values())
    executor.shutdown(wait=False)
    for process in processes:
        if process.is_alive():
            process.terminate()


# ---------------------------------------------------- deciding (the facade)


@dataclass
class _Decider:
    """A policy and the decision-log records its sink collected (``None``: records are not kept)."""

    policy: Any
    records: list[dict[str, Any]] | None = None

    def take_records(self) -> list[dict[str, Any]]:
        if self.records is None:
            return []
        taken, self.records[:] = list(self.records), []
        return taken


#: A chunk of requests: the index of its first one, and the requests.
DecideChunk = tuple[int, list[Any]]
#: ``("invalid", field errors)`` or ``("ok", decisions, records)``.
DecideResult = tuple[Any, ...]


def _decide_setup(cls: type, kwargs: dict[str, Any], revision: str, engine_names: list[str],
                  keep_records: bool) -> _Decider:
    """Build the worker's policy from :func:`policy_job`'s description and check it is the caller's."""
    records: list[dict[str, Any]] | None = [] if keep_records else None
    policy = cls(**kwargs, log_sink=records.append if records is not None else None)
    if policy.policy_revision != revision:
        policy.close()
        raise RuntimeError(f"the policy changed on disk: this process loaded revision {policy.policy_revision}, "
                           f"the caller's is {revision}")
    if policy.engine_names != engine_names:
        policy.close()
        raise RuntimeError(f"engines {policy.engine_names} loaded here, the caller has {engine_names}")
    return _Decider(policy, records)


def _validated(items: Iterable[Any], start: int, parsed: list[Any], bad: list[FieldError],
               every: Callable[[], None] | None = None) -> None:
    """Parse each request into ``parsed``; each bad field into ``bad`` as ``[i].path`` (``i`` from ``start``)."""
    for i, item in enumerate(items, start):
        try:
            parsed.append(parse_request(item))
        except InvalidRequestError as exc:
            bad.extend(FieldError(f"[{i}].{e.path}", e.message) for e in exc.errors)
        if every is not None and i % DECIDE_CHUNK == DECIDE_CHUNK - 1:
            every()


def _decide_chunk(decider: _Decider, chunk: DecideChunk) -> DecideResult:
    """Validate every request of the chunk (``[i].path`` errors, as ``decide_many`` names them), then decide."""
    start, items = chunk
    parsed: list[Any] = []
    bad: list[FieldError] = []
    _validated(items, start, parsed, bad)
    if bad:
        return ("invalid", bad)
    decisions = [decider.policy.decide(r) for r in parsed]
    return ("ok", decisions, decider.take_records())


def decide_here(policy: Any, requests: Sequence[Any], *, progress: bool = False) -> list[Any]:
    """Decide ``requests`` one after the other in this process: ``decide_many`` without workers.

    Every request is validated first; then each is decided by
    ``policy.decide``, whose ``log_sink`` gets each record as it is made. A
    batch of :data:`KEEP_SURVIVORS_FROM` or more keeps its decisions out of
    the collector's full passes (:class:`KeptSurvivors`).

    Raises:
        InvalidRequestError: a request is invalid; every bad field is named
            as ``[i].path``, and nothing is decided.
    """
    with KeptSurvivors(len(requests)) as kept:
        parsed: list[Any] = []
        bad: list[FieldError] = []
        _validated(requests, 0, parsed, bad, kept)
        if bad:
            raise InvalidRequestError(bad)
        decide = policy.decide
        bar = ProgressBar(len(parsed), "decided") if progress else None
        decisions: list[Any] = []
        try:
            for request in parsed:
                decisions.append(decide(request))
                if len(decisions) % DECIDE_CHUNK == 0:
                    kept()
                if bar is not None:
                    bar.advance()
        finally:
            if bar is not None:
                bar.close()
    return decisions


def _engine_spec(engine: Any) -> tuple[Any, dict[str, Any] | None]:
    """How a worker gets ``engine``: (its name, its options) for a stock engine, else (itself, None).

    Raises:
        ValueError: why it cannot go to a worker.
    """
    from .engines import ENGINES
    from .policyset import DECISION_PATH

    entry = ENGINES.get(getattr(engine, "name", None))  # type: ignore[arg-type]
    stock = entry is not None and type(engine).__module__ == entry[0] and type(engine).__qualname__ == entry[1]
    if stock and engine.name in ("native", "compiled"):
        return engine.name, None
    if stock and engine.name == "rego":
        entrypoint = getattr(engine, "entrypoint", DECISION_PATH)
        return "rego", ({"entrypoint": entrypoint} if entrypoint != DECISION_PATH else None)
    if stock:
        raise ValueError(f"the {engine.name!r} engine decides over HTTP with options (its URL, its token) "
                         "that stay in this process")
    try:
        pickle.dumps(engine)
    except Exception as exc:  # noqa: BLE001 - any pickling failure means the same: it stays here
        raise ValueError(f"engine {getattr(engine, 'name', '?')!r} ({type(engine).__qualname__}) cannot be "
                         f"pickled ({type(exc).__name__}: {exc})") from None
    return engine, None


def _mask_rule_spec(rule: Any) -> str | dict[str, Any]:
    """A parsed ``log_mask`` rule as the constructor takes it."""
    if rule.op == "remove":
        return str(rule.path)
    return {"op": rule.op, "path": rule.path, "value": rule.value}


def policy_job(policy: Any, *, keep_records: bool | None = None) -> WorkerJob[DecideChunk, DecideResult] | str:
    """A job that decides chunks in a worker with a policy built like ``policy``, or why there is none.

    Args:
        policy: a :class:`~helpdesk_policy.facade.HelpdeskPolicy`.
        keep_records: whether the workers keep the decision-log records
            (default: when ``policy`` has a ``log_sink``).

    Returns:
        The job, or a sentence saying why ``policy`` cannot be rebuilt in
        another process (then decide in this one).
    """
    from .resources import stock_policy_dir

    try:
        specs = [_engine_spec(e) for e in policy.engines]
    except ValueError as exc:
        return str(exc)
    options = {spec: opts for spec, opts in specs if opts is not None}
    engines = [spec for spec, _ in specs]  # stock engines by name, others as themselves
    ps = policy.policy_set
    try:
        kwargs: dict[str, Any] = {
            "engine": engines[0],
            "fallback": engines[1:],
            "config": ps.config,
            "policy_dir": None if ps.directory == stock_policy_dir() else ps.directory,
            "timeout": policy.timeout,
            "log_identifiers": policy._log_identifiers,
            "log_pseudonym_key": policy._log_key,
            "log_labels": dict(policy._log_labels),
            "log_mask": [_mask_rule_spec(r) for r in policy._log_mask],
            "engine_options": options,
            "exceptions": policy.exceptions,
        }
    except AttributeError as exc:  # a HelpdeskPolicy that no longer has what this module reads
        return f"cannot describe this {type(policy).__name__} for worker processes ({exc})"
    cache_info = getattr(policy, "cache_info", None)
    if cache_info is not None:
        # A worker's own decision cache, as large (a replayed log decides tickets again too).
        kwargs["cache_size"] = cache_info().maxsize
    if keep_records is None:
        keep_records = policy.log_sink is not None
    args = (type(policy), kwargs, policy.policy_revision, list(policy.engine_names), keep_records)
    try:
        pickle.dumps(args)
    except Exception as exc:  # noqa: BLE001 - an exception source (a ledger connection) or a class that will not pickle
        what = "exception source" if not _picklable(policy.exceptions) else "policy description"
        return f"the {what} cannot be pickled ({type(exc).__name__}: {exc})"
    return WorkerJob(_decide_setup, args, _decide_chunk, what="decide_many")


def _picklable(value: Any) -> bool:
    try:
        pickle.dumps(value)
    except Exception:  # noqa: BLE001
        return False
    return True


def replay_decisions(
    policy: Any, requests: Sequence[Any], *, workers: int | None = None, progress: bool = False,
    chunk_size: int = DECIDE_CHUNK,
) -> tuple[list[Any], list[dict[str, Any]]] | None:
    """Decide ``requests`` with worker processes: (decisions, decision-log records), both in order.

    ``None`` when they should be decided in this process instead: one
    worker is planned (:func:`plan_workers`), or ``policy`` cannot be rebuilt
    in a worker (logged at INFO with the reason). The records are those the
    policy's ``log_sink`` would get, not yet delivered: the caller delivers
    them (:meth:`HelpdeskPolicy.decide_many
    <helpdesk_policy.facade.HelpdeskPolicy.decide_many>` does, in order).

    Raises:
        InvalidRequestError: a request is invalid; every bad field is named
            as ``[i].path``, and no decision is returned.
        InvalidConfigError: ``workers`` is not a positive int or None.
    """
    n = plan_workers(len(requests), workers)
    if n < 2:
        return None
    job = policy_job(policy)
    if isinstance(job, str):
        log.info("decide_many: deciding %d requests in this process: %s", len(requests), job)
        return None
    if policy.log_sink is None:
        here = _Decider(policy)  # exactly decide(), on the caller's policy object
    else:
        # The records must wait for every chunk (nothing is logged if one is invalid) and keep the
        # requests' order: this process decides its share with a twin whose sink collects them.
        try:
            here = _decide_setup(*job.args)
        except Exception as exc:  # noqa: BLE001 - then the whole batch is decided one by one, as always
            log.info("decide_many: deciding %d requests in this process: cannot rebuild the policy (%s)",
                     len(requests), exc)
            return None
    size = max(1, min(chunk_size, math.ceil(len(requests) / (4 * n))))
    chunks: list[DecideChunk] = [(i, list(requests[i:i + size])) for i in range(0, len(requests), size)]
    bar = ProgressBar(len(requests), "decided") if progress else None
    try:
        with KeptSurvivors(len(requests)) as kept:
            results = run_chunks(chunks, local=lambda c: _decide_chunk(here, c), job=job, workers=n, progress=bar,
                                 weight=lambda c: len(c[1]), after_each=kept)
    finally:
        if here.policy is not policy:
            here.policy.close()
        if bar is not None:
            bar.close()
    bad = [e for r in results if r[0] == "invalid" for e in r[1]]
    if bad:
        raise InvalidRequestError(bad)
    decisions = [d for r in results for d in r[1]]
    records = [rec for r in results for rec in r[2]]
    return decisions, records
