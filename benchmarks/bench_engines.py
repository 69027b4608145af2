"""Benchmark the embedded engines: decisions/s, p50/p99 latency, cold start, memory.

Run on demand (not a test): ``python benchmarks/bench_engines.py [--seconds 3]``.
Latency is measured around ``HelpdeskPolicy.decide`` with a plain dict as input,
so it includes validation, evaluation, decision assembly and digesting.
Cold start (import + policy compile + first decision) and memory (peak RSS
after import, after loading the engine, and growth over 2,000 more decisions:
a leak shows there) run in a fresh interpreter per engine.
"""

from __future__ import annotations

import argparse
import json
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
for _ in range(2000):
    policy.decide(request)
print(json.dumps({"import_ms": (t1-t0)*1e3, "load_ms": (t2-t1)*1e3, "first_ms": (t3-t2)*1e3, "total_ms": (t3-t0)*1e3,
                  "python_mb": base, "import_mb": imported - base, "load_mb": loaded - imported,
                  "after_2000_mb": rss_mb() - loaded, "total_mb": rss_mb()}))
"""


def load_requests() -> list[dict]:
    out: list[dict] = []
    for path in EXAMPLES:
        doc = json.loads(path.read_text())
        out.extend(doc if isinstance(doc, list) else [doc])
    return out


def latency(policy, requests: list[dict], seconds: float) -> dict[str, float]:
    for r in requests:  # warm up (per-thread interpreter, caches)
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
            j += 1

    ts = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return sum(counts) / seconds


def cold_start(engine: str, runs: int = 3) -> dict[str, float]:
    results = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", COLD, engine, str(EXAMPLES[0])], capture_output=True, text=True, check=True
        )
        results.append(json.loads(out.stdout))
    best = min(results, key=lambda r: r["total_ms"])
    return {k: round(v, 1) for k, v in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per engine")
    parser.add_argument("--engines", nargs="+", default=["native", "rego"])
    args = parser.parse_args()

    from helpdesk_policy import HelpdeskPolicy

    requests = load_requests()
    print(f"{len(requests)} example requests from {EXAMPLES[0].parent}")
    for engine in args.engines:
        policy = HelpdeskPolicy(engine=engine)
        lat = latency(policy, requests, args.seconds)
        two = threaded(policy, requests, 2, args.seconds)
        cold = cold_start(engine)
        print(
            f"{engine:7s} {lat['per_second']:>10,.0f} decisions/s  p50 {lat['p50_us']:8.1f} us  "
            f"p99 {lat['p99_us']:8.1f} us  (n={lat['decisions']:,})  2 threads {two:,.0f}/s  "
            f"cold start {cold['total_ms']} ms (import {cold['import_ms']}, load {cold['load_ms']}, "
            f"first decision {cold['first_ms']})"
        )
        print(
            f"{'':7s} memory (peak RSS) {cold['total_mb']} MB: interpreter {cold['python_mb']}, +{cold['import_mb']} import, "
            f"+{cold['load_mb']} engine load and first decision, +{cold['after_2000_mb']} over 2,000 more decisions"
        )
        policy.close()


if __name__ == "__main__":
    main()
