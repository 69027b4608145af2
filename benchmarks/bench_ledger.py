"""Benchmark ledger appends: throughput and latency percentiles with N writer threads.

Run on demand (not a test)::

    python benchmarks/bench_ledger.py [--writers 8] [--events 4000] [--pg postgresql://postgres@127.0.0.1:5432/test]

All writers append to one chain (the worst case: every append waits for the
chain's lock) and, in a second run, each to its own chain. SQLite is measured
with ``synchronous=FULL`` (the default) and ``NORMAL``; PostgreSQL in a
throw-away schema, dropped after. A decision-log-sized payload (~1 KB).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from helpdesk_policy.ledger import Event
from helpdesk_policy.ledger.sqlite import SQLiteLedgerStore

PAYLOAD = {"decision_id": "x" * 36, "path": "helpdesk/decision", "input": {"request": {"action": "mfa_reset",
           "channel": "phone"}, "actor": {"id": "pid:" + "a" * 16}}, "result": {"level": "callback",
           "requirements": ["identity_step_up", "manager_approval", "out_of_band_callback"],
           "reasons": [{"code": f"r{i}", "detail": "y" * 60} for i in range(8)]}}


def run(store: Any, writers: int, events: int, shared: bool) -> dict[str, float]:
    per = events // writers
    latencies: list[float] = []
    lock = threading.Lock()
    start = threading.Barrier(writers + 1)

    def writer(k: int) -> None:
        mine = []
        chain = "bench" if shared else f"bench-{k}"
        start.wait()
        for _ in range(per):
            t = time.perf_counter()
            store.append(Event(chain=chain, kind="decision", payload=PAYLOAD))
            mine.append(time.perf_counter() - t)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(writers)]
    for t in threads:
        t.start()
    start.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    q = statistics.quantiles(latencies, n=100)
    return {"events": len(latencies), "per_s": round(len(latencies) / elapsed), "p50_ms": round(q[49] * 1000, 2),
            "p99_ms": round(q[98] * 1000, 2), "max_ms": round(max(latencies) * 1000, 1),
            "mean_ms": round(statistics.fmean(latencies) * 1000, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--events", type=int, default=4000)
    parser.add_argument("--pg", default=os.environ.get("HELPDESK_POLICY_TEST_PG_DSN",
                                                       "postgresql://postgres@127.0.0.1:5432/test"))
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for sync in ("FULL", "NORMAL"):
            for shared in (True, False):
                store = SQLiteLedgerStore(Path(tmp) / f"{sync}-{shared}.db", synchronous=sync)
                results[f"sqlite synchronous={sync} {'one chain' if shared else 'a chain per writer'}"] = \
                    run(store, args.writers, args.events, shared)
                assert store.verify().ok
                store.close()
    try:
        import psycopg

        from helpdesk_policy.ledger.postgres import PostgresLedgerStore
    except ImportError:
        print("psycopg not installed: PostgreSQL skipped")
    else:
        schema = f"hp_ledger_bench_{uuid.uuid4().hex[:8]}"
        try:
            for shared in (True, False):
                store = PostgresLedgerStore(args.pg, schema=schema)
                results[f"postgres {'one chain' if shared else 'a chain per writer'}"] = \
                    run(store, args.writers, args.events, shared)
                assert store.verify().ok
                store.close()
        finally:
            with psycopg.connect(args.pg, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    print(f"{args.writers} writer threads, {args.events} appends each run, payload "
          f"{len(json.dumps(PAYLOAD))} bytes")
    for name, r in results.items():
        print(f"  {name:45s} {r['per_s']:>7,}/s  p50 {r['p50_ms']:7.2f} ms  p99 {r['p99_ms']:7.2f} ms  mean {r['mean_ms']:6.2f} ms  max {r['max_ms']:6.1f} ms")


if __name__ == "__main__":
    main()
