"""Benchmark the compliance report over a ledger of a million events: time and peak memory.

Run on demand (not a test)::

    python benchmarks/bench_report.py [--events 1000000] [--tickets 200000] [--keep DIR]
                                      [--pg postgresql://postgres@127.0.0.1:5432/test]

1. Builds a SQLite ledger of ``--events`` events over about ``--tickets``
   tickets, written in bulk (one transaction, ``executemany``) into the tables
   :mod:`helpdesk_policy.ledger.sqlite` uses, heads included, every hash
   computed with :func:`helpdesk_policy.ledger.base.event_hash` (the ledger
   verifies). The mix, per ticket: 3 decisions (real decision-log records of
   the example requests, the ticket id, decision id, time and team changed;
   1 % degraded, 2 % with an applied exception, 0.5 % with an expired one),
   evidence verified for 60 %, closed for 60 % (some non-compliant), a few
   reopened, escalated or refused, obligations opened for half and done for
   some; plus policy exceptions granted (and some revoked) in chains of
   their own. About 60 % of the events are decisions.
2. Runs the report in a fresh process (so its peak memory is its own):
   build (:func:`report_from_ledger`), then render text, JSON and HTML, each
   timed; peak memory as the process's peak resident set size (VmHWM)
   and, in a second run, the peak of Python allocations
   (``tracemalloc``, which slows the run down).
3. With ``--pg``, the same ledger is copied into PostgreSQL (``COPY``, in a
   throw-away schema, dropped after) and the report measured there too.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2030, 1, 1, tzinfo=timezone.utc)
TEAMS = ["service-desk-emea", "service-desk-amer", "service-desk-apac", "identity-ops", "tier-2", "contractors"]


# --------------------------------------------------------------------------- building


def _templates() -> list[dict[str, Any]]:
    """A real decision-log record for every example request."""
    from helpdesk_policy import HelpdeskPolicy

    records: list[dict[str, Any]] = []
    with HelpdeskPolicy(engine="native", log_sink=records.append) as policy:
        for path in sorted((ROOT / "examples" / "requests").glob("*.json")):
            policy.decide(json.loads(path.read_text(encoding="utf-8")))
    return [json.loads(json.dumps(r, default=str)) for r in records]


def _events(total: int, tickets: int, seed: int = 7) -> Iterator[tuple[str, str, dict[str, Any], datetime]]:
    """(chain, kind, payload, time) in chain order, about ``total`` of them."""
    from helpdesk_policy.ledger.base import format_timestamp

    rng = random.Random(seed)
    templates = _templates()
    start = NOW - timedelta(days=30)
    made = 0
    # Exceptions first: 1 % of tickets' worth, a quarter already expired, a tenth of those revoked.
    for i in range(max(1, tickets // 100)):
        exc_id = f"EXC-{i:06d}"
        expires = NOW + timedelta(days=rng.choice([-3, -1, 5, 20]))
        granted = {"event": "granted", "exception": {
            "id": exc_id, "target_id": f"u-{i}", "action": rng.choice(templates)["input"]["request"]["action"],
            "channels": ["phone"], "level": "manager_approval", "requested_by": f"u-{i + 1}", "reason": "travel",
            "reference": f"CHG-{i}", "approved_by": "u-boss", "approver_type": "human",
            "approved_at": format_timestamp(start), "starts_at": format_timestamp(start),
            "expires_at": format_timestamp(expires)}}
        yield f"exception:{exc_id}", "exception", granted, start
        made += 1
        if rng.random() < 0.1:
            yield f"exception:{exc_id}", "exception", {"event": "revoked", "exception_id": exc_id,
                                                      "revoked_by": "u-boss", "revoked_at": format_timestamp(start),
                                                      "reason": "no_longer_needed"}, start
            made += 1
    n = 0
    while made < total:
        n += 1
        ticket = f"INC{n:08d}"
        chain = f"ticket:{ticket}"
        team = TEAMS[n % len(TEAMS)]
        at = start + timedelta(seconds=n * 10)
        last_id = ""
        for k in range(3):
            tmpl = rng.choice(templates)
            result = tmpl["result"]
            roll = rng.random()
            if roll < 0.01:
                result = {**result, "degraded": True}
            elif roll < 0.03:
                result = {**result, "exceptions": [{"id": "EXC-000001", "status": "applied", "level_before": "callback",
                                                    "level_after": result["level"], "expires_at": "2030-01-05T00:00:00.000000Z",
                                                    "why_not": None}]}
            elif roll < 0.035:
                result = {**result, "exceptions": [{"id": "EXC-000002", "status": "expired", "level_before": result["level"],
                                                    "level_after": result["level"], "expires_at": "2029-12-01T00:00:00.000000Z",
                                                    "why_not": "expired"}]}
            last_id = str(uuid.UUID(int=rng.getrandbits(128)))
            when = at + timedelta(seconds=k)
            record = {**tmpl, "decision_id": last_id, "timestamp": when.isoformat(), "result": result,
                      "input": {**tmpl["input"], "request": {**tmpl["input"]["request"], "id": ticket}},
                      "labels": {**tmpl["labels"], "ticket": ticket, "team": team}}
            yield chain, "decision", record, when
            made += 1
        at += timedelta(minutes=5)
        closable = rng.random() < 0.85
        if rng.random() < 0.6:
            yield chain, "evidence", {
                "event": "verified", "ticket": ticket, "decision_id": last_id, "at": format_timestamp(at),
                "evidence": {"decision_id": last_id, "input_digest": "sha256:" + "0" * 64, "requester_id": "u-1",
                             "identity_proof": {"method": "enrolled_factor_push", "verified_by": "agent-1",
                                                "verified_by_type": "human", "at": format_timestamp(at)},
                             "outcome": {"status": "completed", "at": format_timestamp(at)},
                             "recorded_at": format_timestamp(at)},
                "verification": {"closable": closable, "items": [
                    {"check": c, "status": "satisfied" if closable else "missing", "reason": "Recorded as required."}
                    for c in ("binding", "window", "policy_revision", "requirement:identity_step_up",
                              "obligation:record_evidence", "outcome")]}}, at
            made += 1
        roll = rng.random()
        if roll < 0.05:
            yield chain, "ticket", {"event": "close_refused", "ticket": ticket, "decision_id": last_id, "by": "agent-1",
                                    "at": format_timestamp(at), "problems": ["outcome"]}, at
            made += 1
        if roll < 0.6:
            if rng.random() < 0.05:
                yield chain, "ticket", {"event": "escalated", "ticket": ticket, "by": "agent-1",
                                        "at": format_timestamp(at), "to": "tier-2"}, at
                made += 1
            yield chain, "ticket", {"event": "closed", "ticket": ticket, "decision_id": last_id, "by": "agent-1",
                                    "at": format_timestamp(at), "compliant": closable}, at
            made += 1
            if rng.random() < 0.05:
                yield chain, "ticket", {"event": "reopened", "ticket": ticket, "by": "agent-2",
                                        "at": format_timestamp(at), "reason": "user_still_locked_out"}, at
                made += 1
        if rng.random() < 0.5:
            due = at + timedelta(hours=rng.choice([0, 8, 24, 72, 24 * 60]))
            yield chain, "obligation", {"event": "opened", "decision_id": last_id, "code": "terminate_sessions",
                                        "decided_at": format_timestamp(at), "due_at": format_timestamp(due),
                                        "within_hours": None, "to": None}, at
            made += 1
            if rng.random() < 0.3:
                yield chain, "obligation", {"event": "done", "decision_id": last_id, "code": "terminate_sessions",
                                            "done_by": "agent-1", "done_at": format_timestamp(at)}, at
                made += 1


def build_sqlite(path: Path, total: int, tickets: int) -> dict[str, Any]:
    """Write the ledger in bulk; return counts and the time taken."""
    from helpdesk_policy.ledger.base import GENESIS_HASH, canonical_json, event_hash, format_timestamp
    from helpdesk_policy.ledger.sqlite import SQLiteLedgerStore

    SQLiteLedgerStore(path).close()  # the tables, as the store makes them
    began = time.perf_counter()
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("BEGIN")
    kinds: dict[str, int] = {}
    heads: dict[str, tuple[int, str]] = {}
    batch: list[tuple[Any, ...]] = []
    count = 0
    for chain, kind, payload, when in _events(total, tickets):
        seq, prev = heads.get(chain, (0, GENESIS_HASH))
        seq += 1
        ts = format_timestamp(when)
        digest = event_hash(chain=chain, seq=seq, kind=kind, timestamp=ts, payload=payload, prev_hash=prev)
        batch.append((chain, seq, kind, ts, canonical_json(payload), prev, digest))
        heads[chain] = (seq, digest)
        kinds[kind] = kinds.get(kind, 0) + 1
        count += 1
        if len(batch) >= 20000:
            conn.executemany("INSERT INTO ledger_events (chain, seq, kind, ts, payload, prev_hash, hash) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?)", batch)
            batch.clear()
    conn.executemany("INSERT INTO ledger_events (chain, seq, kind, ts, payload, prev_hash, hash) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?)", batch)
    conn.executemany("INSERT INTO ledger_heads (chain, seq, hash) VALUES (?, ?, ?)",
                     [(c, s, h) for c, (s, h) in heads.items()])
    conn.execute("COMMIT")
    conn.close()
    return {"events": count, "chains": len(heads), "kinds": kinds, "build_s": round(time.perf_counter() - began, 1),
            "db_mb": round(path.stat().st_size / 2**20)}


def copy_to_postgres(sqlite_path: Path, dsn: str, schema: str) -> float:
    """Copy the SQLite ledger's rows into a PostgreSQL ledger (COPY); return the seconds taken."""
    import psycopg

    from helpdesk_policy.ledger.postgres import PostgresLedgerStore

    PostgresLedgerStore(dsn, schema=schema).close()
    began = time.perf_counter()
    src = sqlite3.connect(str(sqlite_path))
    with psycopg.connect(dsn) as conn:
        with conn.cursor() as cur:
            with cur.copy(f'COPY "{schema}".ledger_events (chain, seq, kind, ts, payload, prev_hash, hash) '
                          "FROM STDIN") as copy:
                for row in src.execute("SELECT chain, seq, kind, ts, payload, prev_hash, hash FROM ledger_events"):
                    copy.write_row(row)
            with cur.copy(f'COPY "{schema}".ledger_heads (chain, seq, hash) FROM STDIN') as copy:
                for row in src.execute("SELECT chain, seq, hash FROM ledger_heads"):
                    copy.write_row(row)
        conn.execute(f'ANALYZE "{schema}".ledger_events')
    src.close()
    return round(time.perf_counter() - began, 1)


# --------------------------------------------------------------------------- measuring


def _peak_rss_mb() -> float:
    """This process's peak resident set size: VmHWM (Linux), else ru_maxrss.

    ru_maxrss survives fork and exec on Linux (a child started by a large
    parent reports the parent's peak), VmHWM belongs to this process image.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def measure(url: str, use_tracemalloc: bool) -> dict[str, Any]:
    """In this (fresh) process: build and render the report, timed; peak memory."""
    import tracemalloc

    from helpdesk_policy.ledger import open_ledger
    from helpdesk_policy.ledger.report import render_text, report_from_ledger
    from helpdesk_policy.ledger.report_html import render_html

    baseline_mb = _peak_rss_mb()
    if use_tracemalloc:
        tracemalloc.start()
    store = open_ledger(url)
    out: dict[str, Any] = {}
    began = time.perf_counter()
    report = report_from_ledger(store, now=NOW)
    out["build_s"] = round(time.perf_counter() - began, 2)
    for name, render in (("text", render_text), ("json", lambda r: r.to_json()), ("html", render_html)):
        t = time.perf_counter()
        body = render(report)
        out[f"{name}_s"] = round(time.perf_counter() - t, 3)
        out[f"{name}_kb"] = round(len(body.encode("utf-8")) / 1024, 1)
    out["total_s"] = round(time.perf_counter() - began, 2)
    store.close()
    if use_tracemalloc:
        out["tracemalloc_peak_mb"] = round(tracemalloc.get_traced_memory()[1] / 2**20, 1)
        tracemalloc.stop()
    out["peak_rss_mb"] = _peak_rss_mb()
    out["peak_rss_after_imports_mb"] = baseline_mb
    out["events"] = report.events
    out["tickets"] = report.overall.tickets
    out["decisions"] = report.overall.decisions
    out["first_contact_resolution"] = str(report.overall.first_contact_resolution)
    out["compliance"] = str(report.overall.compliance)
    out["overdue_obligations"] = report.overall.overdue_obligations
    return out


def _measure_in_child(url: str, use_tracemalloc: bool) -> dict[str, Any]:
    args = [sys.executable, __file__, "--measure", url] + (["--tracemalloc"] if use_tracemalloc else [])
    done = subprocess.run(args, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--tickets", type=int, default=200_000, help="tickets the exceptions are scaled to")
    parser.add_argument("--keep", type=Path, default=None, help="build the ledger in this directory and keep it")
    parser.add_argument("--pg", default=None, help="also measure on this PostgreSQL (a throw-away schema)")
    parser.add_argument("--no-tracemalloc", action="store_true", help="skip the (slower) tracemalloc run")
    parser.add_argument("--reuse", action="store_true", help="with --keep: measure the ledger built there before")
    parser.add_argument("--measure", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--tracemalloc", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.tracemalloc)))
        return
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        where = args.keep or Path(tmp)
        where.mkdir(parents=True, exist_ok=True)
        path = where / "ledger.db"
        if args.reuse and path.exists():
            print("reusing", path, flush=True)
        else:
            if path.exists():
                path.unlink()
            built = build_sqlite(path, args.events, args.tickets)
            print("built:", json.dumps(built), flush=True)
        url = f"sqlite:///{path}"
        print("sqlite report:", json.dumps(_measure_in_child(url, False)), flush=True)
        if not args.no_tracemalloc:
            print("sqlite report (tracemalloc):", json.dumps(_measure_in_child(url, True)), flush=True)
        if args.pg:
            import psycopg

            schema = f"bench_report_{uuid.uuid4().hex[:8]}"
            try:
                print("postgres copy_s:", copy_to_postgres(path, args.pg, schema), flush=True)
                sep = "&" if "?" in args.pg else "?"
                print("postgres report:", json.dumps(_measure_in_child(f"{args.pg}{sep}schema={schema}", False)),
                      flush=True)
            finally:
                with psycopg.connect(args.pg, autocommit=True) as conn:
                    conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
