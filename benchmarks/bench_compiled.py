"""Benchmark the compiled stock policy stage by stage: input conversion, evaluation, output
conversion, the engine call, and the facade's ``decide(dict)`` with the decision cache off and on.

Run on demand (not a test): ``python benchmarks/bench_compiled.py [--rounds 3] [--json]``.

The requests are those of ``examples/requests/*.json`` plus
``generate_request_dicts(1000, seed=13)``, each decided under a fresh request
id (so a decision cache, if the facade has one, misses every time). Each stage
is timed per request with ``time.perf_counter_ns`` and reported as p50/p90 in
microseconds over every request of every round:

* ``convert_in``: :func:`~helpdesk_policy.compiler.values.from_json` on the
  request's input document (``Request.to_input()``, already validated), the
  general route;
* ``convert_in_direct``: :func:`~helpdesk_policy.engines.compiled.request_to_rego`
  on the validated request, the route ``CompiledEngine.evaluate`` takes (no
  ``to_input()`` before it, which ``convert_in`` does not count either);
* ``evaluate``: ``CompiledPolicy.evaluate_value`` on the converted input (the
  issue's target: p50 under 60 us);
* ``convert_out``: :func:`~helpdesk_policy.compiler.values.to_json` on the result;
* ``convert_out_document``: :func:`~helpdesk_policy.compiler.values.to_json_document`,
  the engine's own output conversion;
* ``engine``: ``CompiledEngine.evaluate(request)``, the three above together;
* ``decide``: ``HelpdeskPolicy(engine="compiled", cache_size=0).decide(dict)``,
  the whole facade call (validation, conversions, evaluation, verdict checks;
  target: p50 under 100 us);
* ``decide_cache_miss`` / ``decide_cache_hit``: the same with the decision
  cache on (the facade's default size), each request decided twice: the
  first decision misses (and pays the input digest), the second hits.
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
    from helpdesk_policy.cache import DEFAULT_CACHE_SIZE
    from helpdesk_policy.compiler.values import from_json, to_json, to_json_document
    from helpdesk_policy.engines.compiled import request_to_rego
    from helpdesk_policy.models import Request

    policy = HelpdeskPolicy(engine="compiled", cache_size=0)
    cached = HelpdeskPolicy(engine="compiled", cache_size=DEFAULT_CACHE_SIZE)
    engine = policy.engines[0]
    compiled = engine.compiled  # type: ignore[attr-defined]
    requests = _requests()
    validated = [Request.model_validate(r) for r in requests]
    inputs = [r.to_input() for r in validated]
    clock = time.perf_counter_ns
    names = ("convert_in", "convert_in_direct", "evaluate", "convert_out", "convert_out_document", "engine",
             "decide", "decide_cache_miss", "decide_cache_hit")
    stages: dict[str, list[int]] = {name: [] for name in names}
    evaluate_value = compiled.evaluate_value
    # Warm-up: the first calls pay for lazily built caches (regexes, lookups).
    for doc in inputs[:50]:
        evaluate_value(from_json(doc))
    counter = 0
    gc.collect()
    for _ in range(rounds):
        for request, doc in zip(validated, inputs):
            t0 = clock()
            value = from_json(doc)
            t1 = clock()
            request_to_rego(request)
            t2 = clock()
            result = evaluate_value(value)
            t3 = clock()
            to_json(result)
            t4 = clock()
            to_json_document(result)
            t5 = clock()
            engine.evaluate(request)
            t6 = clock()
            stages["convert_in"].append(t1 - t0)
            stages["convert_in_direct"].append(t2 - t1)
            stages["evaluate"].append(t3 - t2)
            stages["convert_out"].append(t4 - t3)
            stages["convert_out_document"].append(t5 - t4)
            stages["engine"].append(t6 - t5)
        for request in requests:
            counter += 1
            fresh = {**request, "request": {**request["request"], "id": f"BENCH-{counter}"}}
            t0 = clock()
            policy.decide(fresh)
            stages["decide"].append(clock() - t0)
        for request in requests:
            counter += 1
            fresh = {**request, "request": {**request["request"], "id": f"BENCH-{counter}"}}
            t0 = clock()
            cached.decide(fresh)
            t1 = clock()
            cached.decide(fresh)
            t2 = clock()
            stages["decide_cache_miss"].append(t1 - t0)
            stages["decide_cache_hit"].append(t2 - t1)
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
    print(f"{'stage':<22} {'p50 us':>8} {'p90 us':>8}")
    for name, stats in result["stages"].items():
        print(f"{name:<22} {stats['p50_us']:>8.1f} {stats['p90_us']:>8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
