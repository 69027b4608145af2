"""Benchmark parallel replay: ``decide_many`` and ``diff`` in one process against worker processes.

Run on demand (not a test)::

    python benchmarks/bench_replay.py [--requests 100000] [--workers 2] [--rounds 3] [--engine native]
                                      [--read-digests] [--with-sink] [--diff-cases 1000]

What it measures, round-robin (serial, then parallel, ``--rounds`` times;
the p50 of each is reported, and the ratio of the p50s):

* ``decide_many(requests, workers=1)`` against ``workers=N`` on
  ``--requests`` generated requests (plain dicts, as a replay of logged
  inputs feeds them), decisions per second. The parallel time includes
  starting the worker processes (forkserver where available), every call:
  it is what a caller gets.
* the start-up alone: how long until a fresh pool's worker has decided its
  first (tiny) chunk.
* with ``--with-sink``, the same with a decision-log sink (the workers build
  the records; the sink gets them in order in this process).
* with ``--read-digests``, the same, reading every decision's
  ``input_digest`` after the batch. The facade works a decision's digest
  out when it is first read, so one process that never reads it skips that
  work; a decision sent back from a worker carries it, worked out there.
  A replay that keeps or compares its decisions reads it.
* ``diff_policies(workers=1)`` against ``workers=N`` on ``--diff-cases``
  generated cases (the rego engine, twice, and OPA's Go evaluator when it is
  installed).
* CPU time, which other processes on the machine disturb far less than
  wall time: one process's CPU seconds for the batch, and in one parallel
  run (workers started with ``spawn`` here, so that they are this process's
  children and their CPU time can be read; start-up included) this
  process's and the workers'. Each process does its share at once on free
  cores, so the ratio the CPU times project is 1 process's CPU over the
  busiest process's.
* the machine's own ceiling, first: a pure-Python loop in one process
  against the same loop in N processes at once. On a quiet machine with N
  free cores it is N×; when other work shares the cores it is less, and no
  replay can beat it. Read the replay ratio against it.

The load average before and after is printed: other processes on the
machine change every number here.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from helpdesk_policy import HelpdeskPolicy  # noqa: E402
from helpdesk_policy.ci.generate import generate_request_dicts  # noqa: E402
from helpdesk_policy.replay import WorkerJob, run_chunks, start_method, usable_cpus  # noqa: E402


def spin(n: int) -> float:
    """A fixed amount of pure-Python work; its duration."""
    started = time.perf_counter()
    total = 0
    for i in range(n):
        total += i * i % 7
    return time.perf_counter() - started


def ceiling(workers: int, n: int = 4_000_000) -> tuple[float, float]:
    """(one process's time for the work, N processes' time for N times the work)."""
    one = min(spin(n) for _ in range(3))
    # spawn: the forkserver stays untouched until replay starts it (with its preload).
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        pool.map(spin, [10] * workers)  # started
        started = time.perf_counter()
        pool.map(spin, [n] * workers)
        many = time.perf_counter() - started
    return one, many


def start_up(policy: HelpdeskPolicy, requests: list[dict[str, Any]]) -> float:
    """Seconds until a fresh pool's worker has decided a chunk of one request (this process does the other)."""
    from helpdesk_policy.replay import _Decider, _decide_chunk, policy_job

    job = policy_job(policy)
    assert isinstance(job, WorkerJob), job
    here = _Decider(policy)
    started = time.perf_counter()
    run_chunks([(0, requests[:1]), (1, requests[1:2])], local=lambda c: _decide_chunk(here, c), job=job, workers=2,
               weight=lambda c: 1)
    return time.perf_counter() - started


def cpu_projection(policy: HelpdeskPolicy, requests: list[dict[str, Any]], workers: int) -> None:
    """CPU seconds: one process, and this process and its workers in a parallel run; the projected ratio."""
    import resource

    import helpdesk_policy.replay as replay

    def children() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    started = time.process_time()
    policy.decide_many(requests, workers=1)
    serial = time.process_time() - started
    chosen = replay.start_method
    replay.start_method = lambda: "spawn"  # type: ignore[assignment]
    try:
        before, started = children(), time.process_time()
        policy.decide_many(requests, workers=workers)
        parent, spent = time.process_time() - started, children() - before
    finally:
        replay.start_method = chosen  # type: ignore[assignment]
    busiest = max(parent, spent / (workers - 1))
    print(f"CPU: 1 process {serial:.2f} s ({serial / len(requests) * 1e6:.1f} us a decision); {workers} processes: "
          f"this one {parent:.2f} s, the workers {spent:.2f} s in all (start-up included): "
          f"{(parent + spent) / serial - 1:+.0%} CPU, projected ratio {serial / busiest:.2f}x on free cores",
          flush=True)


def load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def rounds(label: str, n: int, serial: Any, parallel: Any, count: int, workers: int) -> None:
    s_times: list[float] = []
    p_times: list[float] = []
    for r in range(count):
        for times, fn in ((s_times, serial), (p_times, parallel)):
            started = time.perf_counter()
            fn()
            times.append(time.perf_counter() - started)
        print(f"  round {r + 1}: 1 process {s_times[-1]:.2f} s, {workers} processes {p_times[-1]:.2f} s "
              f"(load {load()})", flush=True)
    s50, p50 = statistics.median(s_times), statistics.median(p_times)
    print(f"{label}: 1 process p50 {s50:.2f} s ({n / s50:,.0f}/s); {workers} processes p50 {p50:.2f} s "
          f"({n / p50:,.0f}/s); ratio {s50 / p50:.2f}x", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2, help="processes, this one included")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--engine", default="native")
    parser.add_argument("--with-sink", action="store_true", help="also measure with a decision-log sink")
    parser.add_argument("--read-digests", action="store_true",
                        help="also measure reading every decision's input_digest after the batch")
    parser.add_argument("--diff-cases", type=int, default=1000, help="0 skips the diff measurement")
    args = parser.parse_args()

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs ({usable_cpus()} usable), start method "
          f"{start_method()}, load average {load()}", flush=True)
    one, many = ceiling(args.workers)
    print(f"machine ceiling: pure-Python work {one:.2f} s in 1 process, {args.workers}x the work in "
          f"{args.workers} processes {many:.2f} s: {args.workers * one / many:.2f}x", flush=True)

    requests = generate_request_dicts(args.requests, seed=0)
    with HelpdeskPolicy(engine=args.engine) as policy:
        policy.decide_many(requests[:2000], workers=1)  # warm
        ups = [start_up(policy, requests) for _ in range(3)]
        print(f"start-up (a fresh pool's worker decides its first request): p50 {statistics.median(ups):.3f} s, "
              f"all {', '.join(f'{u:.3f}' for u in ups)}", flush=True)
        rounds(f"decide_many, {args.engine}, {args.requests:,} requests", args.requests,
               lambda: policy.decide_many(requests, workers=1),
               lambda: policy.decide_many(requests, workers=args.workers), args.rounds, args.workers)
        cpu_projection(policy, requests, args.workers)
    if args.read_digests:
        with HelpdeskPolicy(engine=args.engine) as policy:
            rounds(f"decide_many and read each input_digest, {args.engine}, {args.requests:,} requests",
                   args.requests,
                   lambda: [d.input_digest for d in policy.decide_many(requests, workers=1)],
                   lambda: [d.input_digest for d in policy.decide_many(requests, workers=args.workers)],
                   args.rounds, args.workers)
    if args.with_sink:
        records: list[dict[str, Any]] = []
        with HelpdeskPolicy(engine=args.engine, log_sink=records.append) as policy:
            rounds(f"decide_many with a log sink, {args.engine}, {args.requests:,} requests", args.requests,
                   lambda: (policy.decide_many(requests, workers=1), records.clear()),
                   lambda: (policy.decide_many(requests, workers=args.workers), records.clear()),
                   args.rounds, args.workers)
    if args.diff_cases:
        from helpdesk_policy.ci.diff import diff_policies, generated_cases
        from helpdesk_policy.policyset import PolicySet

        stock = PolicySet.load()
        cases = generated_cases(args.diff_cases, seed=0)
        rounds(f"diff (rego, both versions, OPA conformance when installed), {args.diff_cases:,} cases",
               args.diff_cases,
               lambda: diff_policies(stock, stock, cases, workers=1),
               lambda: diff_policies(stock, stock, cases, workers=args.workers), args.rounds, args.workers)
    print(f"load average after: {load()}")


if __name__ == "__main__":
    main()
