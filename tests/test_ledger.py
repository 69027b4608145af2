"""The ledger (issue 11, item 4): both backends pass the same tests.

PostgreSQL is a real server: the DSN comes from ``HELPDESK_POLICY_TEST_PG_DSN``
(default ``postgresql://postgres@127.0.0.1:5432/test``); each test gets a
schema of its own, dropped after. The PostgreSQL cases skip, saying why, only
when no server answers.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from helpdesk_policy import HelpdeskPolicy
from helpdesk_policy.cli import main
from helpdesk_policy.errors import LedgerError, LedgerUnavailableError
from helpdesk_policy.ledger import Event, LedgerSink, LedgerStore, open_ledger
from helpdesk_policy.ledger.base import GENESIS_HASH, event_hash
from ledger_backends import PG_DSN, postgres_schema  # noqa: E402 - tests/ is on sys.path

ROOT = Path(__file__).resolve().parents[1]
REQUEST = json.loads((ROOT / "examples" / "requests" / "02-phone-mfa-reset-admin.json").read_text(encoding="utf-8"))


@dataclass
class Backend:
    name: str
    url: str
    path: Path | None = None
    schema: str | None = None

    def open(self) -> LedgerStore:
        return open_ledger(self.url)

    def raw(self, *statements: tuple[str, tuple[Any, ...]]) -> None:
        """Run SQL on the backing tables, bypassing the store (``?`` placeholders)."""
        if self.name == "sqlite":
            import sqlite3

            conn = sqlite3.connect(str(self.path), isolation_level=None)
            try:
                conn.execute("BEGIN IMMEDIATE")
                for sql, params in statements:
                    conn.execute(sql, params)
                conn.execute("COMMIT")
            finally:
                conn.close()
        else:
            import psycopg

            with psycopg.connect(PG_DSN) as conn:
                conn.execute(f'SET search_path TO "{self.schema}"')
                for sql, params in statements:
                    conn.execute(sql.replace("?", "%s"), params)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        path = tmp_path / "ledger.db"
        yield Backend("sqlite", f"sqlite:///{path}", path=path)
        return
    with postgres_schema("hp_ledger_test") as (url, schema):
        yield Backend("postgres", url, schema=schema)


@pytest.fixture
def store(backend: Backend) -> Iterator[LedgerStore]:
    s = backend.open()
    yield s
    s.close()


def _fill(store: LedgerStore, chain: str = "INC-1", n: int = 5) -> None:
    kinds = ["decision", "evidence", "obligation", "exception"]
    for i in range(n):
        store.append(Event(chain=chain, kind=kinds[i % 4], payload={"i": i, "note": "ü", "x": 0.5}))


# ---------------------------------------------------------------- the chain


def test_append_read_verify(store: LedgerStore) -> None:
    ts = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=timezone.utc)
    first = store.append(Event(chain="INC-1", kind="decision", payload={"decision_id": "d1", "n": [1, 2.5, None]},
                               timestamp=ts))
    assert (first.seq, first.prev_hash, first.timestamp) == (1, GENESIS_HASH, "2026-01-02T03:04:05.000006Z")
    assert first.hash == event_hash(chain="INC-1", seq=1, kind="decision", timestamp=first.timestamp,
                                    payload={"decision_id": "d1", "n": [1, 2.5, None]}, prev_hash=GENESIS_HASH)
    second = store.append(Event(chain="INC-1", kind="evidence", payload={"who": "a"}))
    other = store.append(Event(chain="INC-2", kind="obligation", payload={}))
    assert (second.seq, second.prev_hash, other.seq) == (2, first.hash, 1)
    assert list(store.events("INC-1")) == [first, second]
    assert store.chains() == ["INC-1", "INC-2"]
    report = store.verify()
    assert report.ok and (report.chains, report.events) == (2, 3), report
    assert store.verify("INC-2").events == 1
    assert str(report).startswith("OK")


def test_events_are_strict(store: LedgerStore) -> None:
    with pytest.raises(ValueError):
        Event(chain="c", kind="note", payload={})  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Event(chain="c", kind="decision", payload={"t": datetime.now(timezone.utc)})
    with pytest.raises(ValueError):
        Event(chain="c", kind="decision", payload={"x": float("nan")})
    with pytest.raises(ValueError):
        Event(chain="c", kind="decision", payload={}, timestamp=datetime(2026, 1, 1))
    event = Event(chain="c", kind="decision", payload={})
    with pytest.raises(ValueError):
        event.chain = "d"  # type: ignore[misc]


def test_the_schema_is_versioned(backend: Backend) -> None:
    first = backend.open()
    first.close()
    again = backend.open()  # opening twice applies nothing twice
    assert again.schema_version() == 1  # type: ignore[attr-defined]
    again.close()


# ------------------------------------------------------------------ tampering


def test_an_edited_payload_is_named(backend: Backend, store: LedgerStore) -> None:
    _fill(store)
    _fill(store, "INC-0", 2)
    backend.raw(("UPDATE ledger_events SET payload = ? WHERE chain = ? AND seq = ?", ('{"i":99}', "INC-1", 3)))
    bad = store.verify().first_bad
    assert bad is not None and (bad.chain, bad.seq) == ("INC-1", 3) and "edited" in bad.problem, bad


def test_an_edited_kind_or_timestamp_is_named(backend: Backend, store: LedgerStore) -> None:
    _fill(store)
    backend.raw(("UPDATE ledger_events SET ts = ? WHERE chain = ? AND seq = ?", ("2020-01-01T00:00:00.000000Z", "INC-1", 2)))
    bad = store.verify().first_bad
    assert bad is not None and (bad.chain, bad.seq) == ("INC-1", 2), bad


def test_a_deleted_event_is_named(backend: Backend, store: LedgerStore) -> None:
    _fill(store)
    backend.raw(("DELETE FROM ledger_events WHERE chain = ? AND seq = ?", ("INC-1", 3)))
    bad = store.verify("INC-1").first_bad
    assert bad is not None and (bad.chain, bad.seq) == ("INC-1", 4) and "3 missing" in bad.problem, bad


def test_deleting_the_newest_events_is_named(backend: Backend, store: LedgerStore) -> None:
    _fill(store)
    backend.raw(("DELETE FROM ledger_events WHERE chain = ? AND seq >= ?", ("INC-1", 4)))
    bad = store.verify().first_bad
    assert bad is not None and (bad.chain, bad.seq) == ("INC-1", 4) and "deleted" in bad.problem, bad


def test_an_inserted_event_is_named(backend: Backend, store: LedgerStore) -> None:
    _fill(store)
    prev = [e for e in store.events("INC-1") if e.seq == 2][0]
    # A careful forger: a well-formed event at seq 3, the later ones renumbered.
    forged = {"i": "forged"}
    ts = "2026-01-01T00:00:00.000000Z"
    digest = event_hash(chain="INC-1", seq=3, kind="evidence", timestamp=ts, payload=forged, prev_hash=prev.hash)
    backend.raw(
        ("UPDATE ledger_events SET seq = seq + 1000 WHERE chain = ? AND seq >= ?", ("INC-1", 3)),
        ("UPDATE ledger_events SET seq = seq - 999 WHERE chain = ? AND seq >= ?", ("INC-1", 1000)),
        ("INSERT INTO ledger_events (chain, seq, kind, ts, payload, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?)",
         ("INC-1", 3, "evidence", ts, json.dumps(forged), prev.hash, digest)),
    )
    bad = store.verify().first_bad
    assert bad is not None and (bad.chain, bad.seq) == ("INC-1", 4), bad


def test_swapped_events_are_named(backend: Backend, store: LedgerStore) -> None:
    _fill(store)
    backend.raw(
        ("UPDATE ledger_events SET seq = -1 WHERE chain = ? AND seq = ?", ("INC-1", 2)),
        ("UPDATE ledger_events SET seq = 2 WHERE chain = ? AND seq = ?", ("INC-1", 3)),
        ("UPDATE ledger_events SET seq = 3 WHERE chain = ? AND seq = ?", ("INC-1", -1)),
    )
    bad = store.verify().first_bad
    assert bad is not None and (bad.chain, bad.seq) == ("INC-1", 2) and "prev_hash" in bad.problem, bad


def test_audit_verify_command(backend: Backend) -> None:
    store = backend.open()
    _fill(store)
    store.close()
    runner = CliRunner()
    ok = runner.invoke(main, ["audit", "verify", "--ledger", backend.url])
    assert ok.exit_code == 0 and ok.output.startswith("OK: 5 events in 1 chain(s)"), ok.output
    backend.raw(("UPDATE ledger_events SET payload = ? WHERE chain = ? AND seq = ?", ('{"i":7}', "INC-1", 2)))
    bad = runner.invoke(main, ["audit", "verify", "--ledger", backend.url])
    assert bad.exit_code == 1, bad.output
    assert bad.output.strip() == "BAD: chain 'INC-1' event 2: hash mismatch: the event was edited"
    as_json = runner.invoke(main, ["audit", "verify", "--ledger", backend.url, "--json"])
    assert as_json.exit_code == 1
    assert json.loads(as_json.output)["first_bad"] == {"chain": "INC-1", "seq": 2,
                                                       "problem": "hash mismatch: the event was edited"}


def test_audit_verify_refuses_a_bad_url() -> None:
    result = CliRunner().invoke(main, ["audit", "verify", "--ledger", "mysql://x/y"])
    assert result.exit_code == 2 and "unknown ledger URL scheme" in result.output


def test_an_unreachable_postgres_is_unavailable() -> None:
    pytest.importorskip("psycopg")
    with pytest.raises(LedgerUnavailableError, match="cannot connect"):
        open_ledger("postgresql://postgres@127.0.0.1:1/test", connect_timeout=2)
    result = CliRunner().invoke(main, ["audit", "verify", "--ledger", "postgresql://postgres@127.0.0.1:1/test"])
    assert result.exit_code == 3


def test_a_missing_psycopg_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(LedgerUnavailableError, match=r"helpdesk-policy\[postgres\]"):
        open_ledger(PG_DSN)


# ---------------------------------------------------------------- concurrency


def _append_many(url: str, writer: str, n: int, start: Any) -> None:
    store = open_ledger(url)
    try:
        start.wait(30)
        for i in range(n):
            store.append(Event(chain="shared", kind="evidence", payload={"writer": writer, "i": i}))
    finally:
        store.close()


def _crash_mid_append(url: str) -> None:
    store = open_ledger(url)
    store.append(Event(chain="crash", kind="decision", payload={"i": "before"}))

    def die(*_: Any) -> None:
        os._exit(3)  # inside the open transaction: the event row written, not committed

    store._write_head = die  # type: ignore[attr-defined]
    store.append(Event(chain="crash", kind="decision", payload={"i": "lost"}))


def test_threads_and_processes_lose_no_event(backend: Backend) -> None:
    ctx = multiprocessing.get_context("spawn")
    store = backend.open()
    start = ctx.Event()
    procs = [ctx.Process(target=_append_many, args=(backend.url, f"p{k}", 50, start)) for k in range(4)]
    for p in procs:
        p.start()
    errors: list[BaseException] = []

    def thread_writer(k: int) -> None:
        try:
            start.wait(30)
            for i in range(50):
                store.append(Event(chain="shared", kind="evidence", payload={"writer": f"t{k}", "i": i}))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=thread_writer, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    start.set()
    for t in threads:
        t.join(60)
    for p in procs:
        p.join(60)
    assert not errors, errors
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    events = list(store.events("shared"))
    assert [e.seq for e in events] == list(range(1, 601))
    assert {(e.payload["writer"], e.payload["i"]) for e in events} == {
        (w, i) for w in [*(f"t{k}" for k in range(8)), *(f"p{k}" for k in range(4))] for i in range(50)}
    report = store.verify()
    assert report.ok and report.events == 600, report
    store.close()


def test_a_crash_mid_write_leaves_a_verifiable_ledger(backend: Backend) -> None:
    store = backend.open()
    _fill(store, "crash", 2)
    proc = multiprocessing.get_context("spawn").Process(target=_crash_mid_append, args=(backend.url,))
    proc.start()
    proc.join(60)
    assert proc.exitcode == 3
    report = store.verify()
    assert report.ok and report.events == 3, report
    after = store.append(Event(chain="crash", kind="evidence", payload={"i": "after"}))
    assert after.seq == 4
    assert [e.payload["i"] for e in store.events("crash")] == [0, 1, "before", "after"]
    assert store.verify().ok
    store.close()


# -------------------------------------------------------------- the sink


class _FailingStore:
    def __init__(self) -> None:
        self.calls = 0

    def append(self, event: Event) -> Any:
        self.calls += 1
        raise LedgerUnavailableError("the ledger is down")


class _HangingStore:
    def __init__(self) -> None:
        self.release = threading.Event()
        self.appended: list[Event] = []

    def append(self, event: Event) -> Any:
        self.release.wait(30)
        self.appended.append(event)


def test_a_failing_ledger_never_changes_a_decision(caplog: pytest.LogCaptureFixture) -> None:
    sink = LedgerSink(_FailingStore(), budget_s=0.05)  # type: ignore[arg-type]
    policy = HelpdeskPolicy(engine="native", log_sink=sink)
    plain = HelpdeskPolicy(engine="native")
    try:
        for _ in range(3):
            decision = policy.decide(REQUEST)
            assert decision.level == plain.decide(REQUEST).level
        assert sink.flush(5)
        assert (sink.failures, sink.dropped, sink.stored) == (3, 0, 0)
        assert any("not stored in the ledger" in r.getMessage() for r in caplog.records)
    finally:
        sink.close()
        policy.close()
        plain.close()


def test_a_hanging_ledger_costs_a_decision_at_most_the_budget(caplog: pytest.LogCaptureFixture) -> None:
    store = _HangingStore()
    sink = LedgerSink(store, budget_s=0.05, queue_size=2)  # type: ignore[arg-type]
    policy = HelpdeskPolicy(engine="native", log_sink=sink)
    try:
        policy.decide(REQUEST)  # warm up
        slowest = 0.0
        for _ in range(8):
            began = time.perf_counter()
            assert policy.decide(REQUEST).level is not None
            slowest = max(slowest, time.perf_counter() - began)
        assert slowest < 0.05 + 0.2, slowest
        # One record in the hanging append, two queued: the other six dropped, counted and logged.
        assert sink.dropped == 6
        assert any("queue is full" in r.getMessage() for r in caplog.records)
        store.release.set()
        assert sink.flush(5)
        assert len(store.appended) == 3 and sink.stored == 3
    finally:
        store.release.set()
        sink.close()
        policy.close()


def test_the_sink_stores_decisions_in_the_ledger(store: LedgerStore) -> None:
    sink = LedgerSink(store)
    policy = HelpdeskPolicy(engine="native", log_sink=sink)
    try:
        ids = [policy.decide(REQUEST).decision_id for _ in range(5)]
        assert sink.flush(10)
    finally:
        sink.close()
        policy.close()
    events = list(store.events("decisions"))
    assert [e.payload["decision_id"] for e in events] == ids
    assert {e.kind for e in events} == {"decision"}
    assert store.verify().ok
    assert (sink.stored, sink.failures, sink.dropped) == (5, 0, 0)


def test_a_closed_sink_counts_what_it_refuses() -> None:
    sink = LedgerSink(_HangingStore())  # type: ignore[arg-type]
    sink.close()
    sink({"decision_id": "late"})
    assert sink.dropped == 1


def test_open_ledger_refuses_unknown_urls() -> None:
    with pytest.raises(LedgerError, match="unknown ledger URL scheme"):
        open_ledger("redis://x")
    with pytest.raises(LedgerError, match="sqlite:///"):
        open_ledger("sqlite://relative.db")


def test_the_readme_ledger_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    import re

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    # Up to the first subsection ("Obligations to the end" has its own test).
    section = readme.split("\n## The ledger\n", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    (code,) = re.findall(r"^```python\n(.*?)^```", section, flags=re.S | re.M)
    (console,) = re.findall(r"^```console\n(.*?)^```", section, flags=re.S | re.M)
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    shown = re.search(r"print\(store.verify\(\)\) +# (.+)$", code, re.M)
    assert shown is not None and capsys.readouterr().out.strip() == shown.group(1)
    namespace["policy"].close()
    namespace["store"].close()
    command, output = console.split("\n", 1)
    result = CliRunner().invoke(main, command.removeprefix("$ helpdesk-policy ").split())
    assert result.exit_code == 0 and result.output == output


# -------------------------------------------------------------- the sink: per ticket, retries


def test_by_ticket_puts_each_decision_in_its_ticket_chain(store: LedgerStore) -> None:
    assert LedgerSink.BY_TICKET == "by_ticket"
    sink = LedgerSink(store, chain=LedgerSink.BY_TICKET)
    policy = HelpdeskPolicy(engine="native", log_sink=sink)
    try:
        first = policy.decide(REQUEST).decision_id
        other = policy.decide({**REQUEST, "request": {**REQUEST["request"], "id": "RITM0000042"}}).decision_id
        again = policy.decide(REQUEST).decision_id
        # Records with no ticket id (a hand-made record, or one whose id a mask erased).
        sink({"decision_id": "no-ticket", "labels": {"app": "x"}, "input": {"request": {}}})
        sink({"decision_id": "masked", "labels": {"ticket": "[masked:credential]"},
              "input": {"request": {"id": "[masked:credential]"}}})
        sink({"decision_id": "from-input", "input": {"request": {"id": "INC-9"}}})
        assert sink.flush(10)
    finally:
        sink.close()
        policy.close()
    assert [e.payload["decision_id"] for e in store.events("ticket:INC0041388")] == [first, again]
    assert [e.payload["decision_id"] for e in store.events("ticket:RITM0000042")] == [other]
    assert [e.payload["decision_id"] for e in store.events("ticket:INC-9")] == ["from-input"]
    assert [e.payload["decision_id"] for e in store.events("decisions")] == ["no-ticket", "masked"]
    assert (sink.stored, sink.failures) == (6, 0)
    assert store.verify().ok


def test_by_ticket_with_a_masked_ticket_goes_to_the_default_chain(store: LedgerStore) -> None:
    sink = LedgerSink(store, chain="by_ticket")
    with HelpdeskPolicy(engine="native", log_sink=sink, log_identifiers="keep") as policy:
        policy.decide({**REQUEST, "request": {**REQUEST["request"], "id": "AKIAIOSFODNN7EXAMPLE"}})  # a key as ticket id
    assert sink.close(10)
    assert store.chains() == ["decisions"]
    (event,) = store.events("decisions")
    assert event.payload["labels"]["ticket"] == "[masked:credential]"


class _FlakyStore:
    """Fails the first ``failures`` appends, then stores in memory."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        self.appended: list[Event] = []

    def append(self, event: Event) -> Any:
        self.calls += 1
        if self.calls <= self.failures:
            raise LedgerUnavailableError("the ledger blinked")
        self.appended.append(event)


def test_a_failing_append_is_retried_before_it_counts_as_a_failure(caplog: pytest.LogCaptureFixture) -> None:
    store = _FlakyStore(failures=2)
    sink = LedgerSink(store, retry_backoff_s=0.01)  # type: ignore[arg-type]
    try:
        sink({"decision_id": "d-1"})
        assert sink.flush(5)
        assert (store.calls, len(store.appended), sink.stored, sink.failures, sink.retried) == (3, 1, 1, 0, 2)
        assert sum("retry" in r.getMessage() for r in caplog.records) == 2
    finally:
        sink.close()


def test_retries_exhausted_count_one_failure_within_the_bound() -> None:
    store = _FailingStore()
    sink = LedgerSink(store, retries=3, retry_backoff_s=0.01)  # type: ignore[arg-type]
    try:
        began = time.monotonic()
        sink({"decision_id": "d-1"})
        assert sink.flush(5)
        # 1 + 3 attempts, waiting 0.01 + 0.02 + 0.04 s between them.
        assert (store.calls, sink.failures, sink.stored, sink.retried) == (4, 1, 0, 3)
        assert 0.07 <= time.monotonic() - began < 1.5
    finally:
        sink.close()
    # Without retries: one attempt.
    once = _FailingStore()
    sink = LedgerSink(once, retries=0)  # type: ignore[arg-type]
    sink({"decision_id": "d-2"})
    assert sink.flush(5) and (once.calls, sink.failures) == (1, 1)
    sink.close()


def test_the_total_backoff_is_bounded_and_close_cuts_it_short() -> None:
    from helpdesk_policy.ledger.sink import MAX_RETRY_WAIT_S

    store = _FailingStore()
    sink = LedgerSink(store, retries=10, retry_backoff_s=MAX_RETRY_WAIT_S)  # type: ignore[arg-type]
    sink({"decision_id": "d-1"})
    time.sleep(0.1)  # the first attempt failed; the sink is waiting to retry
    began = time.monotonic()
    assert sink.close(0.2) is False  # still pending at the timeout: counted as dropped
    assert time.monotonic() - began < 1.0
    sink._thread.join(2)  # the backoff was cut short: the thread ends
    assert not sink._thread.is_alive()
    assert (store.calls, sink.failures, sink.dropped) == (1, 1, 0)


def test_a_decision_is_never_held_by_retries() -> None:
    sink = LedgerSink(_FailingStore(), retries=10, retry_backoff_s=0.5)  # type: ignore[arg-type]
    policy = HelpdeskPolicy(engine="native", log_sink=sink)
    try:
        policy.decide(REQUEST)
        began = time.perf_counter()
        policy.decide(REQUEST)
        assert time.perf_counter() - began < 0.05 + 0.2
    finally:
        sink.close(0.1)
        policy.close()


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"retries": -1}, "retries"),
    ({"retries": 11}, "retries"),
    ({"retries": True}, "retries"),
    ({"retry_backoff_s": -0.1}, "retry_backoff_s"),
    ({"retry_backoff_s": 60}, "retry_backoff_s"),
    ({"chain": ""}, "chain"),
    ({"track_obligations": object()}, "track_obligations"),
])
def test_ledger_sink_options_are_checked(kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        LedgerSink(_FailingStore(), **kwargs)  # type: ignore[arg-type]
