"""Benchmark the ``opa`` engine over loopback, and decisions while the OPA server is down.

Run on demand (not a test)::

    python benchmarks/bench_opa.py [--seconds 3] [--concurrency 16] [--json]

It starts ``tests/opa_server.py`` (OPA's REST API over OPA's own Go
evaluator) in a separate process, so client and server do not share a GIL,
and measures ``HelpdeskPolicy.decide`` with a plain dict as input (so it
includes validation, the HTTP round trip, OPA's evaluation, result
validation and decision assembly):

* one caller: decisions/s, p50, p99;
* the same with the server answering a canned decision (no evaluation):
  the cost of the client and the HTTP round trip alone;
* ``--concurrency`` threads, and as many asyncio tasks (``adecide``);
* the server down (a port that refuses connections), with
  ``HelpdeskPolicy(engine="opa", fallback=["native"])``:
  breaker closed (every decision tries the network: connection refused,
  retried with backoff, then native) vs breaker open (native at once);
* the server hung (accepts, never answers): one deadline per decision while
  the breaker is closed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import socket
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
EXAMPLES = sorted(Path(os.environ.get("BENCH_REQUESTS", ROOT / "examples" / "requests")).glob("*.json"))


def load_requests() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in EXAMPLES:
        doc = json.loads(path.read_text(encoding="utf-8"))
        out.extend(doc if isinstance(doc, list) else [doc])
    return out


def _serve(conn: Any, fault: str | None) -> None:
    from opa_server import OpaTestServer

    from helpdesk_policy.policyset import PolicySet

    server = OpaTestServer(PolicySet.load(), pool_size=8, warm=8).start()
    if fault:
        server.set_fault(fault, delay=3600)
    conn.send(server.url)
    conn.recv()  # stop
    server.stop()


class ServerProcess:
    """tests/opa_server.py in a child process."""

    def __init__(self, fault: str | None = None) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, fault), daemon=True)

    def __enter__(self) -> str:
        self._proc.start()
        return str(self._conn.recv())

    def __exit__(self, *exc: object) -> None:
        self._conn.send("stop")
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.kill()


def percentiles(samples_ns: list[int]) -> dict[str, float]:
    s = sorted(samples_ns)
    pick = lambda q: s[min(len(s) - 1, int(q * len(s)))] / 1e3  # noqa: E731
    return {"p50_us": pick(0.50), "p99_us": pick(0.99), "mean_us": statistics.fmean(s) / 1e3, "n": len(s)}


def timed_loop(fn: Callable[[dict[str, Any]], Any], requests: list[dict[str, Any]], seconds: float) -> dict[str, float]:
    for r in requests:
        fn(r)  # warm-up: connections, per-thread state
    samples: list[int] = []
    engines: Counter[str] = Counter()
    end = time.perf_counter() + seconds
    i = 0
    started = time.perf_counter()
    while time.perf_counter() < end:
        t0 = time.perf_counter_ns()
        engines[fn(requests[i % len(requests)]).engine] += 1
        samples.append(time.perf_counter_ns() - t0)
        i += 1
    elapsed = time.perf_counter() - started
    return {"per_s": len(samples) / elapsed, **percentiles(samples), **_answered(engines)}


def threaded(policy: Any, requests: list[dict[str, Any]], seconds: float, threads: int) -> dict[str, float]:
    samples: list[int] = []
    lock = threading.Lock()
    engines: Counter[str] = Counter()
    warm = threading.Barrier(threads)
    end = 0.0

    def worker(offset: int) -> None:
        nonlocal end
        for r in requests[:4]:  # warm-up: every thread opens its keep-alive connection
            policy.decide(r)
        if warm.wait() == 0:
            policy.engines[0].breaker.reset()  # whatever the warm-up burst did
            end = time.perf_counter() + seconds
        warm.wait()
        mine: list[int] = []
        seen: Counter[str] = Counter()
        i = offset
        while time.perf_counter() < end:
            t0 = time.perf_counter_ns()
            seen[policy.decide(requests[i % len(requests)]).engine] += 1
            mine.append(time.perf_counter_ns() - t0)
            i += 1
        with lock:
            samples.extend(mine)
            engines.update(seen)

    pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return {"per_s": len(samples) / seconds, **percentiles(samples), **_answered(engines)}


def _answered(engines: Counter[str]) -> dict[str, float]:
    total = sum(engines.values()) or 1
    return {"answered_by_opa": engines["opa"] / total}


def asynchronous(policy: Any, requests: list[dict[str, Any]], seconds: float, tasks: int) -> dict[str, float]:
    async def main() -> dict[str, float]:
        await asyncio.gather(*(policy.adecide(requests[k % len(requests)]) for k in range(tasks)))  # warm-up
        samples: list[int] = []
        engines: Counter[str] = Counter()
        end = time.perf_counter() + seconds

        async def worker(offset: int) -> None:
            i = offset
            while time.perf_counter() < end:
                t0 = time.perf_counter_ns()
                engines[(await policy.adecide(requests[i % len(requests)])).engine] += 1
                samples.append(time.perf_counter_ns() - t0)
                i += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(tasks)))
        result = {"per_s": len(samples) / (time.perf_counter() - started), **percentiles(samples), **_answered(engines)}
        await policy.engines[0].aclose()
        return result

    return asyncio.run(main())


def refusing_port() -> tuple[socket.socket, str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per scenario")
    parser.add_argument("--concurrency", type=int, default=16, help="threads / asyncio tasks")
    parser.add_argument("--deadline", type=float, default=0.25, help="opa engine deadline (s)")
    parser.add_argument("--down-decisions", type=int, default=40, help="decisions per server-down scenario")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()

    import logging

    logging.getLogger("helpdesk_policy").setLevel(logging.CRITICAL)  # fallbacks warn on every decision
    from helpdesk_policy import HelpdeskPolicy

    requests = load_requests()
    results: dict[str, dict[str, float]] = {}

    with ServerProcess() as url:
        opts = {"opa": {"url": url, "deadline": args.deadline}}
        with HelpdeskPolicy(engine="opa", engine_options=opts) as policy:
            results["opa, 1 caller"] = timed_loop(policy.decide, requests, args.seconds)
            results[f"opa, {args.concurrency} threads"] = threaded(policy, requests, args.seconds, args.concurrency)
        policy = HelpdeskPolicy(engine="opa", engine_options=opts)
        results[f"opa, {args.concurrency} async tasks"] = asynchronous(policy, requests, args.seconds, args.concurrency)
        policy.close()
    with ServerProcess(fault="lying") as canned:
        # The server answers a fixed, valid decision without evaluating: what
        # is left is the client, HTTP over loopback and the server's plumbing.
        opts = {"opa": {"url": canned, "deadline": args.deadline}}
        with HelpdeskPolicy(engine="opa", engine_options=opts) as policy:
            results["opa transport only (canned answer, no evaluation)"] = timed_loop(policy.decide, requests, args.seconds)

    with HelpdeskPolicy(engine="native") as native:
        ref = timed_loop(native.decide, requests, min(args.seconds, 1.0))
        results["native alone (reference)"] = {k: v for k, v in ref.items() if k != "answered_by_opa"}

    n = args.down_decisions
    sock, down = refusing_port()
    try:
        for label, opa in (
            ("down: breaker closed, retries=2 (refused, backoff, native)", {"breaker_threshold": 10**9}),
            ("down: breaker closed, retries=0 (refused, native)", {"breaker_threshold": 10**9, "retries": 0}),
            ("down: breaker open (native at once)", {"breaker_threshold": 1, "breaker_cooldown": 3600}),
        ):
            options = {"opa": {"url": down, "deadline": args.deadline, **opa}}
            with HelpdeskPolicy(engine="opa", fallback=["native"], engine_options=options) as policy:
                if opa.get("breaker_threshold") == 1:
                    policy.decide(requests[0])  # opens it
                samples = []
                for i in range(n):
                    t0 = time.perf_counter_ns()
                    decision = policy.decide(requests[i % len(requests)])
                    samples.append(time.perf_counter_ns() - t0)
                    assert decision.engine == "native" and decision.degraded
                results[label] = {"per_s": 1e9 * len(samples) / sum(samples), **percentiles(samples)}
    finally:
        sock.close()

    with ServerProcess(fault="slow") as hung:
        for label, opa in (
            ("hung: breaker closed (one deadline each)", {"breaker_threshold": 10**9}),
            ("hung: breaker open", {"breaker_threshold": 1, "breaker_cooldown": 3600}),
        ):
            options = {"opa": {"url": hung, "deadline": args.deadline, **opa}}
            with HelpdeskPolicy(engine="opa", fallback=["native"], engine_options=options) as policy:
                if opa.get("breaker_threshold") == 1:
                    policy.decide(requests[0])
                samples = []
                for i in range(min(n, 8) if opa["breaker_threshold"] > 1 else n):
                    t0 = time.perf_counter_ns()
                    policy.decide(requests[i % len(requests)])
                    samples.append(time.perf_counter_ns() - t0)
                results[label] = {"per_s": 1e9 * len(samples) / sum(samples), **percentiles(samples)}

    if args.json:
        print(json.dumps({"deadline_s": args.deadline, "results": results}, indent=2))
        return
    print(f"opa engine over loopback (server in a child process), deadline {args.deadline}s, "
          f"{len(requests)} example requests, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    print(f"{'scenario':<62} {'decisions/s':>12} {'p50':>10} {'p99':>10} {'by opa':>7}")
    for label, r in results.items():
        by_opa = f"{r['answered_by_opa']:.0%}" if "answered_by_opa" in r else "-"
        print(f"{label:<62} {r['per_s']:>12,.0f} {_fmt(r['p50_us']):>10} {_fmt(r['p99_us']):>10} {by_opa:>7}")


def _fmt(us: float) -> str:
    return f"{us:,.0f} us" if us < 10_000 else f"{us / 1e3:,.1f} ms"


if __name__ == "__main__":
    main()
