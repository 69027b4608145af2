"""Benchmark the compiled stock policy stage by stage: input conversion, evaluation, output
conversion, and the facade's ``decide(dict)``.

Run on demand (not a test): ``python benchmarks/bench_compiled.py [--rounds 3] [--json]``.

The requests are those of ``examples/requests/*.json`` plus
``generate_request_dicts(1000, seed=13)``, each decided under a fresh request
id (so a decision cache, if the facade has one, misses every time). Each stage
is timed per request with ``time.perf_counter_ns`` and reported as p50/p90 in
microseconds over every request of every round:

* ``convert_in``: :func:`~helpdesk_policy.compiler.values.from_json` on the
  request's input document (``Request.to_input()``, already validated);
* ``evaluate``: ``CompiledPolicy.evaluate_value`` on the converted input (the
  issue's target: p50 under 60 us);
* ``convert_out``: :func:`~helpdesk_policy.compiler.values.to_json` on the result;
* ``decide``: ``HelpdeskPolicy(engine="compiled").decide(dict)``, the whole
  facade call (validation, conversions, evaluation, verdict checks; target:
  p50 under 100 us).
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples" / "requests").glob("*.json"))


def _requests() -> list[dict[str, Any]]:
    from helpdesk_policy.ci.generate import generate_request_dicts

    requests: list[dict[str, Any]] = []
    for path in EXAMPLES:
        doc = json.loads(path.read_text())
        requests.extend(doc if isinstance(doc, list) else [doc])
    requests.extend(generate_request_dicts(1000, seed=13))
    return requests


def _percentiles(samples_ns: list[int]) -> dict[str, float]:
    ordered = sorted(samples_ns)
    cuts = statistics.quantiles(ordered, n=10, method="inclusive")
    return {"p50_us": statistics.median(ordered) / 1e3, "p90_us": cuts[8] / 1e3, "n": len(ordered)}


def run(rounds: int) -> dict[str, Any]:
    from helpdesk_policy import HelpdeskPolicy
    from helpdesk_policy.compiler.values import from_json, to_json
    from helpdesk_policy.models import Request

    policy = HelpdeskPolicy(engine="compiled")
    compiled = policy.engines[0].compiled
    requests = _requests()
    inputs = [Request.model_validate(r).to_input() for r in requests]
    clock = time.perf_counter_ns
    stages: dict[str, list[int]] = {"convert_in": [], "evaluate": [], "convert_out": [], "decide": []}
    evaluate_value = compiled.evaluate_value
    # Warm-up: the first calls pay for lazily built caches (regexes, lookups).
    for doc in inputs[:50]:
        evaluate_value(from_json(doc))
    counter = 0
    gc.collect()
    for _ in range(rounds):
        for doc in inputs:
            t0 = clock()
            value = from_json(doc)
            t1 = clock()
            result = evaluate_value(value)
            t2 = clock()
            to_json(result)
            t3 = clock()
            stages["convert_in"].append(t1 - t0)
            stages["evaluate"].append(t2 - t1)
            stages["convert_out"].append(t3 - t2)
        for request in requests:
            counter += 1
            fresh = {**request, "request": {**request["request"], "id": f"BENCH-{counter}"}}
            t0 = clock()
            policy.decide(fresh)
            stages["decide"].append(clock() - t0)
    return {
        "python": sys.version.split()[0],
        "requests": len(requests),
        "rounds": rounds,
        "stages": {name: _percentiles(samples) for name, samples in stages.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3, help="passes over the requests (default 3)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    result = run(args.rounds)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"compiled stock policy, {result['requests']} requests x {result['rounds']} rounds, Python {result['python']}")
    print(f"{'stage':<12} {'p50 us':>8} {'p90 us':>8}")
    for name, stats in result["stages"].items():
        print(f"{name:<12} {stats['p50_us']:>8.1f} {stats['p90_us']:>8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
