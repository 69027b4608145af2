"""Decision logs the OPA way: the record's shape, and the JSONL and HTTP batch sinks."""

from __future__ import annotations

import gzip
import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from helpdesk_policy import HelpdeskPolicy, InvalidConfigError, __version__
from helpdesk_policy.cli.ci import diff_command
from helpdesk_policy.ledger import HttpBatchSink, JsonlSink, LoggingSink
from helpdesk_policy.resources import stock_policy_dir

REQUEST = {
    "request": {"id": "INC-1", "action": "password_reset", "channel": "phone",
                "justification": "my password is hunter2, please reset it", "emergency": False},
    "actor": {"id": "u-1", "type": "human", "relationship": "self", "authenticated": True,
              "auth_strength": "password", "roles": ["employee"]},
    "target": {"id": "u-1", "type": "human", "privileged": False, "privilege_tier": 0,
               "vip": False, "status": "active"},
    "context": {"recent_credential_change_hours": 1000},
}


def request(ticket: str) -> dict[str, Any]:
    return {**REQUEST, "request": {**REQUEST["request"], "id": ticket}}


def record(i: int = 0, pad: int = 0) -> dict[str, Any]:
    return {"decision_id": f"d-{i}", "input": {"n": i}, "result": {"pad": "x" * pad}}


# ------------------------------------------------------------ the record's shape


def test_a_record_has_the_opa_decision_log_shape() -> None:
    records: list[dict[str, Any]] = []
    with HelpdeskPolicy(engine="native", log_sink=records.append,
                        log_labels={"region": "eu-west", "desk": "L1 Helpdesk"}) as policy:
        decision = policy.decide(REQUEST)
    (rec,) = records
    # The existing keys are kept.
    for key in ("decision_id", "timestamp", "path", "policy_revision", "input_digest", "input", "masked",
                "erased", "result", "engine_errors"):
        assert key in rec, key
    assert rec["bundles"] == {"helpdesk": {"revision": decision.policy_revision}}
    assert rec["labels"] == {"app": "helpdesk-policy", "version": __version__, "region": "eu-west",
                             "desk": "L1 Helpdesk", "ticket": "INC-1"}
    (name, value), = rec["metrics"].items()
    assert name == "timer_helpdesk_decide_ns"
    assert isinstance(value, int) and value > 0
    assert rec["input"]["request"]["justification"] == "[redacted]"
    json.dumps(rec)  # JSON as it stands


@pytest.mark.asyncio
async def test_adecide_records_carry_the_same_shape() -> None:
    records: list[dict[str, Any]] = []
    async with HelpdeskPolicy(engine="native", log_sink=records.append) as policy:
        decision = await policy.adecide(request("INC-77"))
    (rec,) = records
    assert rec["labels"]["ticket"] == "INC-77"
    assert rec["bundles"]["helpdesk"]["revision"] == decision.policy_revision
    assert rec["metrics"]["timer_helpdesk_decide_ns"] > 0


def test_labels_do_not_change_the_decision() -> None:
    plain = HelpdeskPolicy(engine="native").decide(REQUEST)
    labelled = HelpdeskPolicy(engine="native", log_labels={"a": "b"}, log_sink=lambda r: None).decide(REQUEST)
    assert labelled.model_dump(exclude={"decision_id"}) == plain.model_dump(exclude={"decision_id"})


@pytest.mark.parametrize(("labels", "needle"), [
    ({"region": 3}, "log_labels.region"),
    ({"bad\nkey": "v"}, "log_labels.'bad\\nkey'"),
    ({"": "v"}, "log_labels."),
    ({1: "v"}, "log_labels.1"),
    ({"desk": "a\x1b[31mred"}, "log_labels.desk"),
    ({"ticket": "INC-9"}, "log_labels.ticket"),
    (["not", "a", "mapping"], "log_labels"),
])
def test_bad_labels_are_refused_naming_the_key(labels: Any, needle: str) -> None:
    with pytest.raises(InvalidConfigError) as info:
        HelpdeskPolicy(engine="native", log_labels=labels)
    assert any(e.path == needle for e in info.value.errors), info.value.errors


# ------------------------------------------------------------ JsonlSink


def test_jsonl_sink_writes_one_parsable_line_per_record(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    with JsonlSink(path) as sink, HelpdeskPolicy(engine="native", log_sink=sink) as policy:
        decisions = [policy.decide(request(f"INC-{i}")) for i in range(3)]
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["decision_id"] for line in lines] == [d.decision_id for d in decisions]
    assert sink.written == 3 and sink.failures == 0
    assert path.stat().st_mode & 0o077 == 0  # not readable by others


def test_jsonl_sink_rotates_at_max_bytes_keeping_n_backups(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    line_size = len(json.dumps(record(0, 50), separators=(",", ":"))) + 1
    sink = JsonlSink(path, max_bytes=3 * line_size, backups=2)
    for i in range(10):  # 3 lines a file: log.jsonl.2 = 3..5, .1 = 6..8, log.jsonl = 9
        sink(record(i, 50))
    sink.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["log.jsonl", "log.jsonl.1", "log.jsonl.2"]

    def ids(p: Path) -> list[str]:
        return [json.loads(line)["decision_id"] for line in p.read_text(encoding="utf-8").splitlines()]

    assert ids(path) == ["d-9"]
    assert ids(tmp_path / "log.jsonl.1") == ["d-6", "d-7", "d-8"]
    assert ids(tmp_path / "log.jsonl.2") == ["d-3", "d-4", "d-5"]
    assert all(p.stat().st_size <= 3 * line_size for p in tmp_path.iterdir())


def test_jsonl_sink_appends_to_an_existing_file_and_counts_its_size(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_bytes(b'{"decision_id":"old"}\n')
    with JsonlSink(path, max_bytes=40, backups=1) as sink:
        sink(record(1))
    assert json.loads((tmp_path / "log.jsonl.1").read_text())["decision_id"] == "old"
    assert json.loads(path.read_text())["decision_id"] == "d-1"


def test_jsonl_sink_is_thread_safe(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    sink = JsonlSink(path, max_bytes=2000, backups=100)
    threads = [threading.Thread(target=lambda t=t: [sink(record(t * 100 + i, 20)) for i in range(50)])
               for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sink.close()
    seen = [json.loads(line)["decision_id"] for p in tmp_path.iterdir()
            for line in p.read_text(encoding="utf-8").splitlines()]
    assert len(seen) == len(set(seen)) == 400 == sink.written


def test_a_failing_jsonl_sink_is_counted_and_logged_not_raised(tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    sink = JsonlSink(tmp_path / "no-such-dir" / "log.jsonl")
    with caplog.at_level(logging.ERROR, logger="helpdesk_policy.logs"):
        decision = HelpdeskPolicy(engine="native", log_sink=sink).decide(REQUEST)
    assert decision.allowed is not None
    assert sink.failures == 1 and sink.written == 0
    assert "not written" in caplog.text


def test_jsonl_records_replay_in_diff_base_recorded(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    with JsonlSink(path) as sink, HelpdeskPolicy(engine="native", log_sink=sink, log_labels={"env": "ci"}) as p:
        for i in range(3):
            p.decide(request(f"INC-{i}"))
    result = CliRunner().invoke(diff_command, ["--base", "recorded", "--head", str(stock_policy_dir()),
                                               "--cases", str(path), "--format", "json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["counts"]["unchanged"] == doc["counts"]["total"] == 3


# ------------------------------------------------------------ HttpBatchSink


class Collector:
    """A loopback decision-log collector: answers ``statuses`` in turn (then 200), keeps the batches."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.batches: list[list[dict[str, Any]]] = []
        self.headers: list[dict[str, str]] = []
        self.attempts = 0
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                collector.attempts += 1
                status = collector.statuses.pop(0) if collector.statuses else 200
                if status == 200:
                    collector.headers.append(dict(self.headers))
                    collector.batches.append(json.loads(gzip.decompress(body)))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/logs"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def records(self) -> list[dict[str, Any]]:
        return [r for b in self.batches for r in b]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def collector() -> Iterator[Collector]:
    c = Collector()
    yield c
    c.close()


def test_http_sink_ships_gzip_json_arrays_in_batches(collector: Collector) -> None:
    sink = HttpBatchSink(collector.url, batch_size=2, flush_interval_s=30)
    with HelpdeskPolicy(engine="native", log_sink=sink, log_labels={"desk": "L1"}) as policy:
        decisions = [policy.decide(request(f"INC-{i}")) for i in range(5)]
    assert sink.flush(5)
    assert sink.close()
    assert [r["decision_id"] for r in collector.records()] == [d.decision_id for d in decisions]
    assert [len(b) for b in collector.batches] == [2, 2, 1]
    assert all(h["Content-Encoding"] == "gzip" and h["Content-Type"] == "application/json"
               for h in collector.headers)
    assert collector.records()[0]["labels"]["desk"] == "L1"
    assert (sink.sent, sink.dropped, sink.failures) == (5, 0, 0)


def test_http_sink_ships_a_partial_batch_after_the_interval(collector: Collector) -> None:
    sink = HttpBatchSink(collector.url, batch_size=100, flush_interval_s=0.1)
    sink(record(1))
    deadline = time.monotonic() + 5
    while not collector.batches and time.monotonic() < deadline:
        time.sleep(0.02)
    assert collector.records() == [record(1)]
    sink.close()


def test_http_sink_retries_a_500() -> None:
    collector = Collector(statuses=[500])
    try:
        sink = HttpBatchSink(collector.url, batch_size=10, flush_interval_s=30, retries=3, backoff_s=0.01)
        for i in range(3):
            sink(record(i))
        assert sink.flush(5)
        sink.close()
        assert collector.attempts == 2
        assert [r["decision_id"] for r in collector.records()] == ["d-0", "d-1", "d-2"]
        assert (sink.sent, sink.dropped, sink.failures) == (3, 0, 1)
    finally:
        collector.close()


def test_http_sink_drops_a_batch_the_collector_refuses(caplog: pytest.LogCaptureFixture) -> None:
    collector = Collector(statuses=[400])
    try:
        sink = HttpBatchSink(collector.url, batch_size=10, flush_interval_s=30, retries=3, backoff_s=0.01)
        with caplog.at_level(logging.ERROR, logger="helpdesk_policy.logs"):
            sink(record(1))
            assert sink.flush(5)
        sink.close()
        assert collector.attempts == 1  # a 4xx is not retried
        assert (sink.sent, sink.dropped, sink.failures) == (0, 1, 1)
        assert "HTTP 400" in caplog.text
    finally:
        collector.close()


def test_a_dead_collector_drops_and_counts_and_decisions_are_unaffected(
        caplog: pytest.LogCaptureFixture) -> None:
    dead = Collector()
    url = dead.url
    dead.close()  # nothing listens on that port now: connection refused
    sink = HttpBatchSink(url, batch_size=2, flush_interval_s=30, retries=2, backoff_s=0.01, timeout_s=2)
    plain = HelpdeskPolicy(engine="native")
    with caplog.at_level(logging.WARNING, logger="helpdesk_policy.logs"):
        with HelpdeskPolicy(engine="native", log_sink=sink) as policy:
            for i in range(4):
                got = policy.decide(request(f"INC-{i}"))
                want = plain.decide(request(f"INC-{i}"))
                assert got.model_dump(exclude={"decision_id"}) == want.model_dump(exclude={"decision_id"})
        assert sink.flush(10)
    sink.close()
    assert (sink.sent, sink.dropped) == (0, 4)
    assert sink.failures == 2 * 3  # two batches, three attempts each
    assert "not shipped" in caplog.text


def test_overflowing_the_bounded_buffer_is_counted(collector: Collector, caplog: pytest.LogCaptureFixture) -> None:
    sink = HttpBatchSink(collector.url, batch_size=1000, flush_interval_s=30, max_buffer=5)
    with caplog.at_level(logging.ERROR, logger="helpdesk_policy.logs"):
        for i in range(8):
            sink(record(i))
    assert sink.dropped == 3
    assert "buffer is full" in caplog.text
    assert sink.close(5)
    assert [r["decision_id"] for r in collector.records()] == [f"d-{i}" for i in range(5)]
    assert (sink.sent, sink.dropped) == (5, 3)


def test_records_after_close_are_dropped_and_counted(collector: Collector) -> None:
    sink = HttpBatchSink(collector.url)
    sink.close()
    sink(record(1))
    assert sink.dropped == 1 and sink.sent == 0


@pytest.mark.asyncio
async def test_an_http_sink_never_stalls_adecide(collector: Collector) -> None:
    sink = HttpBatchSink(collector.url, batch_size=1, flush_interval_s=30)
    async with HelpdeskPolicy(engine="native", log_sink=sink) as policy:
        decision = await policy.adecide(REQUEST)
    assert sink.close(5)
    assert collector.records()[0]["decision_id"] == decision.decision_id


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"url": "file:///etc/passwd"}, "url"),
    ({"batch_size": 0}, "batch_size"),
    ({"max_buffer": 0}, "max_buffer"),
    ({"retries": -1}, "retries"),
    ({"flush_interval_s": 0}, "flush_interval_s"),
    ({"timeout_s": 0}, "timeout_s"),
])
def test_http_sink_options_are_checked(kwargs: dict[str, Any], needle: str) -> None:
    args = {"url": "http://127.0.0.1:9/logs", **kwargs}
    with pytest.raises(ValueError, match=needle):
        HttpBatchSink(args.pop("url"), **args)


# ------------------------------------------------------------ LoggingSink


def test_logging_sink_logs_one_compact_json_message_per_record(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="helpdesk_policy.decisions")
    sink = LoggingSink()
    with HelpdeskPolicy(engine="native", log_sink=sink) as policy:
        decision = policy.decide(request("INC-5"))
        policy.decide(request("INC-6"))
    logged = [r for r in caplog.records if r.name == "helpdesk_policy.decisions"]
    assert len(logged) == 2 and sink.written == 2 and sink.failures == 0
    first = logged[0]
    assert first.levelno == logging.INFO
    assert json.loads(first.getMessage()) == first.decision_log  # type: ignore[attr-defined]
    assert first.decision_log["decision_id"] == decision.decision_id  # type: ignore[attr-defined]
    assert first.decision_log["labels"]["ticket"] == "INC-5"  # type: ignore[attr-defined]
    assert first.getMessage() == json.dumps(first.decision_log, ensure_ascii=False,  # type: ignore[attr-defined]
                                            separators=(",", ":"))  # compact
    assert "hunter2" not in first.getMessage()


def test_logging_sink_takes_a_logger_and_a_level_and_configures_nothing(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("tests.audit")
    before = (list(logger.handlers), logger.level, logger.propagate)
    sink = LoggingSink(logger, level=logging.WARNING)
    assert (list(logger.handlers), logger.level, logger.propagate) == before
    caplog.set_level(logging.WARNING, logger="tests.audit")
    sink({"decision_id": "d-1", "note": "100% sure"})  # a '%' is not formatted
    (rec,) = [r for r in caplog.records if r.name == "tests.audit"]
    assert (rec.levelno, rec.getMessage()) == (logging.WARNING, '{"decision_id":"d-1","note":"100% sure"}')


def test_a_logger_not_enabled_costs_nothing_and_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="helpdesk_policy.decisions")
    sink = LoggingSink(level=logging.DEBUG)
    sink({"decision_id": "d-1"})
    assert not [r for r in caplog.records if r.name == "helpdesk_policy.decisions"]
    assert (sink.written, sink.failures) == (0, 0)


def test_a_failing_logging_sink_never_raises_into_the_decision(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("tests.broken")

    def explode(record: logging.LogRecord) -> bool:
        raise RuntimeError("a filter that raises")

    logger.addFilter(explode)
    try:
        caplog.set_level(logging.INFO, logger="tests.broken")
        sink = LoggingSink(logger)
        with HelpdeskPolicy(engine="native", log_sink=sink) as policy:
            assert policy.decide(REQUEST).level is not None
        assert (sink.failures, sink.written) == (1, 0)
        assert any("not logged to 'tests.broken'" in r.getMessage() for r in caplog.records)
    finally:
        logger.removeFilter(explode)
    sink({"decision_id": "d-2", "at": object()})  # not JSON by itself: shown as str, not refused
    assert (sink.failures, sink.written) == (1, 1)


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"logger": ""}, "logger"),
    ({"logger": 3}, "logger"),
    ({"level": 0}, "level"),
    ({"level": True}, "level"),
    ({"level": "INFO"}, "level"),
])
def test_logging_sink_options_are_checked(kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        LoggingSink(**kwargs)
