"""Benchmark the embedded engines: decisions/s, p50/p99 latency, cold start, memory.

Run on demand (not a test): ``python benchmarks/bench_engines.py [--seconds 3]``.
Latency is measured around ``HelpdeskPolicy.decide`` with a plain dict as input,
so it includes validation, evaluation, decision assembly and digesting. The
example requests are decided under ever new request ids (more distinct
requests than the decision cache holds), so a facade with a decision cache
misses every time and the numbers are the engine's; where the cache is on
(``rego`` by default), a hit is measured too, on the examples decided again.
Cold start (import + policy compile + first decision) runs in a fresh
interpreter per engine, best of three, with bytecode caches allowed (an
installed wheel has them; ``PYTHONDONTWRITEBYTECODE`` would time the compiler
instead). Beside it, the *pydantic floor*: a fresh interpreter importing
pydantic, ``logging`` and ``json`` and validating one two-field model, which
is what any library with pydantic models pays before its own code runs.

Memory runs in one more fresh interpreter per engine (all engines at once:
the numbers do not depend on speed): the peak resident set (VmHWM) of the
bare interpreter, after ``import helpdesk_policy``, and after loading the
engine and deciding once; then ``--memory-decisions`` more decisions
(100,000 by default) cycling over the example requests, each with a fresh
request id so that a decision cache, if the facade has one, misses every time
and has to stay bounded. The resident set (VmRSS) after 10,000 decisions and
after the last one shows growth: a leak shows there. ``--memory-only`` skips
the latency and cold-start measurements. The ``rego`` engine takes about
2 ms a decision, so its 100,000 take a few minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(Path(__import__("os").environ.get("BENCH_REQUESTS", ROOT / "examples" / "requests")).glob("*.json"))

COLD = """
import time, json, sys
def rss_mb():
    # Peak resident set of this process image (VmHWM; Linux). Not ru_maxrss,
    # which keeps the forking parent's peak across exec.
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
base = rss_mb()
t0 = time.perf_counter()
from helpdesk_policy import HelpdeskPolicy, Decision
t1 = time.perf_counter()
imported = rss_mb()
policy = HelpdeskPolicy(engine=sys.argv[1])
t2 = time.perf_counter()
request = json.load(open(sys.argv[2]))
policy.decide(request)
t3 = time.perf_counter()
loaded = rss_mb()
out = {"import_ms": (t1-t0)*1e3, "load_ms": (t2-t1)*1e3, "first_ms": (t3-t2)*1e3, "total_ms": (t3-t0)*1e3,
       "python_mb": base, "import_mb": imported - base, "load_mb": loaded - imported}
decisions = int(sys.argv[3])
if decisions:
    def now_mb():
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024
    requests = []
    for p in sys.argv[4:]:
        doc = json.load(open(p))
        requests.extend(doc if isinstance(doc, list) else [doc])
    n = len(requests)
    checkpoint = min(10_000, decisions)
    for i in range(decisions):
        r = requests[i % n]
        # A fresh id each time: a decision cache keyed on the input misses.
        policy.decide({**r, "request": {**r["request"], "id": f"MEM-{i}"}})
        if i + 1 == checkpoint:
            out["rss_checkpoint_mb"] = now_mb()
    out.update(checkpoint=checkpoint, decisions=decisions, rss_end_mb=now_mb())
out["total_mb"] = rss_mb()
print(json.dumps(out))
"""


def load_requests() -> list[dict]:
    out: list[dict] = []
    for path in EXAMPLES:
        doc = json.loads(path.read_text())
        out.extend(doc if isinstance(doc, list) else [doc])
    return out


def distinct(requests: list[dict], policy, tag: str) -> list[dict]:
    """The requests again and again under new ids: more of them than the decision cache keeps."""
    info = policy.cache_info() if hasattr(policy, "cache_info") else None
    copies = max(200, (info.maxsize if info is not None and info.maxsize else 0) // len(requests) + 2)
    return [{**r, "request": {**r["request"], "id": f"{r['request']['id']}-{tag}{k}"}}
            for k in range(copies) for r in requests]


def latency(policy, requests: list[dict], seconds: float) -> dict[str, float]:
    for r in requests[-56:]:  # warm up (per-thread interpreter), on requests the loop reaches last if at all
        policy.decide(r)
    samples: list[int] = []
    deadline = time.perf_counter() + seconds
    i = 0
    n = len(requests)
    while time.perf_counter() < deadline:
        r = requests[i % n]
        t = time.perf_counter_ns()
        policy.decide(r)
        samples.append(time.perf_counter_ns() - t)
        i += 1
    samples.sort()
    return {
        "decisions": len(samples),
        "per_second": len(samples) / (sum(samples) / 1e9),
        "p50_us": samples[len(samples) // 2] / 1e3,
        "p99_us": samples[int(len(samples) * 0.99)] / 1e3,
        "mean_us": statistics.fmean(samples) / 1e3,
    }


def threaded(policy, requests: list[dict], threads: int, seconds: float) -> float:
    counts = [0] * threads
    stop = time.perf_counter() + seconds

    def work(k: int) -> None:
        j = k
        while time.perf_counter() < stop:
            policy.decide(requests[j % len(requests)])
            counts[k] += 1
            j += threads  # each thread its own requests: none answers another's from the cache

    ts = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return sum(counts) / seconds


FLOOR = """
import time, json
t0 = time.perf_counter()
import logging, pydantic
class M(pydantic.BaseModel):
    a: int
    b: str
M.model_validate({"a": 1, "b": "x"})
print(json.dumps({"total_ms": (time.perf_counter() - t0) * 1e3}))
"""


def _fresh(code: str, *args: str) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def cold_start(engine: str, runs: int = 3) -> dict[str, float]:
    _fresh(COLD, engine, str(EXAMPLES[0]), "0")  # writes the bytecode caches
    results = [_fresh(COLD, engine, str(EXAMPLES[0]), "0") for _ in range(runs)]
    best = min(results, key=lambda r: r["total_ms"])
    floor = min(_fresh(FLOOR)["total_ms"] for _ in range(runs))
    return {**{k: round(v, 1) for k, v in best.items()}, "pydantic_floor_ms": round(floor, 1)}


def memory(engines: list[str], decisions: int) -> dict[str, dict[str, float]]:
    """Each engine in its own fresh interpreter, all at once; see the module docstring."""
    procs = {
        engine: subprocess.Popen(
            [sys.executable, "-c", COLD, engine, str(EXAMPLES[0]), str(decisions), *map(str, EXAMPLES)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for engine in engines
    }
    results = {}
    for engine, proc in procs.items():
        stdout, stderr = proc.communicate()
        if proc.returncode:
            raise RuntimeError(f"memory run of {engine} failed: {stderr.strip()[-2000:]}")
        results[engine] = {k: round(v, 1) for k, v in json.loads(stdout).items()}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per engine")
    parser.add_argument("--engines", nargs="+", default=["native", "rego"])
    parser.add_argument("--memory-decisions", type=int, default=100_000,
                        help="decisions of the memory run (0: none; the growth is read after 10,000 and at the end)")
    parser.add_argument("--memory-only", action="store_true", help="skip the latency and cold-start measurements")
    args = parser.parse_args()

    from helpdesk_policy import HelpdeskPolicy

    requests = load_requests()
    print(f"{len(requests)} example requests from {EXAMPLES[0].parent}")
    # Otherwise after the latency runs, which another process would disturb.
    mem = memory(args.engines, args.memory_decisions) if args.memory_only else None
    for engine in [] if args.memory_only else args.engines:
        policy = HelpdeskPolicy(engine=engine)
        lat = latency(policy, distinct(requests, policy, "L"), args.seconds)
        two = threaded(policy, distinct(requests, policy, "T"), 2, args.seconds)
        info = policy.cache_info() if hasattr(policy, "cache_info") else None
        hit = latency(policy, requests, min(args.seconds, 1.0)) if info is not None and info.enabled else None
        cold = cold_start(engine)
        print(
            f"{engine:7s} {lat['per_second']:>10,.0f} decisions/s  p50 {lat['p50_us']:8.1f} us  "
            f"p99 {lat['p99_us']:8.1f} us  (n={lat['decisions']:,})  2 threads {two:,.0f}/s  "
            f"cold start {cold['total_ms']} ms (import {cold['import_ms']}, load {cold['load_ms']}, "
            f"first decision {cold['first_ms']}; pydantic floor {cold['pydantic_floor_ms']})"
        )
        if hit is not None:
            assert info is not None
            print(f"{'':7s} decision cache hit: p50 {hit['p50_us']:.1f} us  p99 {hit['p99_us']:.1f} us "
                  f"({info.hits:,} hits, {info.misses:,} misses before it)")
        policy.close()
    if mem is None:
        mem = memory(args.engines, args.memory_decisions)
    for engine, m in mem.items():
        print(
            f"{engine:7s} memory: peak RSS {m['total_mb']} MB (interpreter {m['python_mb']}, +{m['import_mb']} import, "
            f"+{m['load_mb']} engine load and first decision)"
        )
        if "decisions" in m:
            print(
                f"{'':7s} RSS after {m['checkpoint']:,.0f} decisions {m['rss_checkpoint_mb']} MB, after "
                f"{m['decisions']:,.0f} {m['rss_end_mb']} MB: growth {m['rss_end_mb'] - m['rss_checkpoint_mb']:+.1f} MB"
            )


if __name__ == "__main__":
    main()
