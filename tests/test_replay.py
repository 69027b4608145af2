"""Parallel replay (helpdesk_policy.replay): decide_many, adecide_many and diff with worker processes.

Every parallel run here is checked against the same work done in one
process: the same decisions apart from ``decision_id``, the same records in
the same order, the same diff report. Worker processes are real (forkserver
or spawn), two at most, on inputs of a few dozen requests: the point is the
plumbing, not the speed (benchmarks/bench_replay.py measures that).
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import multiprocessing
import operator
import os
import re
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from helpdesk_policy import HelpdeskPolicy
from helpdesk_policy.ci.diff import AUTO_MIN_CASES, diff_policies, generated_cases, load_cases
from helpdesk_policy.ci.generate import generate_request_dicts
from helpdesk_policy.cli.ci import diff_command
from helpdesk_policy.engines.native import NativeEngine
from helpdesk_policy.errors import InvalidConfigError, InvalidRequestError
from helpdesk_policy.policyset import PolicySet
from helpdesk_policy.replay import (
    AUTO_MIN_REQUESTS,
    KeptSurvivors,
    ProgressBar,
    WorkerJob,
    plan_workers,
    policy_job,
    run_chunks,
)
from helpdesk_policy.resources import stock_policy_dir

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples" / "requests").glob("*.json"))
#: Generated requests plus the shipped examples: every action, channel and target type.
REQUESTS: list[dict[str, Any]] = generate_request_dicts(96, seed=11) + [
    json.loads(p.read_text(encoding="utf-8")) for p in EXAMPLES
]
#: Two reasons demanding other levels: decisions whose level another reason holds show "reasons" changes.
EDITS = {
    "recovery.rego": ('common.reason("privileged_remote_recovery", "callback",',
                      'common.reason("privileged_remote_recovery", "manager_approval",'),
    "baseline.rego": ('common.reason("target_suspended", "manager_approval",',
                      'common.reason("target_suspended", "callback",'),
}


def without_id(decision: Any) -> dict[str, Any]:
    doc = decision.to_dict()
    assert doc.pop("decision_id")
    return doc


def comparable(record: dict[str, Any]) -> dict[str, Any]:
    """A decision-log record without what differs between two runs: ids, times."""
    doc = json.loads(json.dumps(record))
    for key in ("decision_id", "timestamp", "metrics"):
        doc.pop(key)
    doc["result"].pop("decision_id")
    return doc


def chunks_done_by_workers(caplog: pytest.LogCaptureFixture) -> int:
    """How many chunks the last run_chunks call said worker processes did (its DEBUG line)."""
    lines = [r.getMessage() for r in caplog.records if r.name == "helpdesk_policy.replay"]
    found = [re.search(r"(\d+) of them by (\d+) worker processes", m) for m in lines]
    counts = [int(m.group(1)) for m in found if m]
    assert counts, lines
    return counts[-1]


# ---------------------------------------------------------------- decide_many


def test_parallel_decisions_equal_serial_ones_in_order(caplog: pytest.LogCaptureFixture) -> None:
    with HelpdeskPolicy(engine="native") as policy, caplog.at_level(logging.DEBUG, logger="helpdesk_policy.replay"):
        serial = policy.decide_many(REQUESTS, workers=1)
        parallel = policy.decide_many(REQUESTS, workers=2)
    assert chunks_done_by_workers(caplog) >= 1  # the first chunks go to the worker, whatever its start-up
    assert [d.request_id for d in parallel] == [r["request"]["id"] for r in REQUESTS]
    assert [without_id(d) for d in parallel] == [without_id(d) for d in serial]
    # Provenance: the same engines on the same policy; fresh, unique ids.
    assert {d.engine for d in parallel} == {"native"} and not any(d.degraded for d in parallel)
    assert {d.policy_revision for d in parallel} == {policy.policy_revision}
    assert [d.input_digest for d in parallel] == [d.input_digest for d in serial]
    ids = [d.decision_id for d in serial + parallel]
    assert len(set(ids)) == 2 * len(REQUESTS)


def test_records_reach_the_sink_in_order_in_the_calling_thread() -> None:
    calls: list[tuple[int, int, dict[str, Any]]] = []

    def sink(record: dict[str, Any]) -> None:
        calls.append((os.getpid(), threading.get_ident(), record))

    options: dict[str, Any] = {
        "engine": "native", "log_sink": sink, "log_pseudonym_key": "k-replay", "log_labels": {"team": "it"},
        "log_mask": ["/input/target/manager", {"op": "upsert", "path": "/input/context/note", "value": "x"}],
    }
    with HelpdeskPolicy(**options) as policy:
        serial = policy.decide_many(REQUESTS, workers=1)
        serial_records = [c[2] for c in calls]
        calls.clear()
        parallel = policy.decide_many(REQUESTS, workers=2)
    assert {(pid, thread) for pid, thread, _ in calls} == {(os.getpid(), threading.get_ident())}
    records = [c[2] for c in calls]
    assert [r["decision_id"] for r in records] == [d.decision_id for d in parallel]
    assert [comparable(r) for r in records] == [comparable(r) for r in serial_records]
    # The worker's policy pseudonymised with the same key, labelled and masked alike.
    first = records[0]
    assert first["labels"]["team"] == "it" and first["input"]["context"]["note"] == "x"
    assert first["input"]["actor"]["id"].startswith("pid:")
    assert len(serial) == len(parallel) == len(records)


def test_an_invalid_request_fails_the_batch_naming_every_bad_field() -> None:
    calls: list[dict[str, Any]] = []
    batch = json.loads(json.dumps(REQUESTS))
    batch[3]["request"]["action"] = "format_disk"
    batch[70]["target"]["privilege_tier"] = "high"
    del batch[101]["actor"]
    with HelpdeskPolicy(engine="native", log_sink=calls.append) as policy:
        with pytest.raises(InvalidRequestError) as serial:
            policy.decide_many(batch, workers=1)
        with pytest.raises(InvalidRequestError) as parallel:
            policy.decide_many(batch, workers=2)
    assert parallel.value.paths == serial.value.paths == ["[3].request.action", "[70].target.privilege_tier",
                                                          "[101].actor"]
    assert str(parallel.value) == str(serial.value)
    assert calls == []  # nothing decided is logged when the batch is refused


def test_the_rego_engine_replays_in_workers_too() -> None:
    batch = REQUESTS[:40]
    with HelpdeskPolicy(engine="rego") as policy:
        serial = policy.decide_many(batch, workers=1)
        parallel = policy.decide_many(batch, workers=2)
    assert {d.engine for d in parallel} == {"rego"}
    assert [without_id(d) for d in parallel] == [without_id(d) for d in serial]


def test_adecide_many_with_workers_awaits_an_async_sink_in_order() -> None:
    seen: list[str] = []

    async def sink(record: dict[str, Any]) -> None:
        await asyncio.sleep(0)
        seen.append(record["labels"]["ticket"])

    async def run() -> list[Any]:
        async with HelpdeskPolicy(engine="native", log_sink=sink) as policy:
            return await policy.adecide_many(REQUESTS, workers=2)

    decisions = asyncio.run(run())
    assert seen == [r["request"]["id"] for r in REQUESTS] == [d.request_id for d in decisions]


class _LockedNative(NativeEngine):
    """A custom engine holding a lock: it cannot be pickled, so it cannot go to a worker."""

    def __init__(self, policy_set: PolicySet) -> None:
        super().__init__(policy_set)
        self.lock = threading.Lock()


def test_an_engine_that_cannot_be_pickled_decides_in_this_process(policy_set: PolicySet,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    with HelpdeskPolicy(engine=_LockedNative(policy_set)) as policy:
        with caplog.at_level(logging.INFO, logger="helpdesk_policy.replay"):
            parallel = policy.decide_many(REQUESTS[:20], workers=2)
        serial = policy.decide_many(REQUESTS[:20], workers=1)
    assert [without_id(d) for d in parallel] == [without_id(d) for d in serial]
    [message] = [r.getMessage() for r in caplog.records]
    assert "deciding 20 requests in this process" in message
    assert "'_LockedNative'" in message or "_LockedNative" in message
    assert "cannot be pickled" in message


class _LockedSource:
    """An exception source holding a lock (as one holding a database connection): it cannot be pickled."""

    def __init__(self) -> None:
        self.lock = threading.Lock()

    def exceptions_for(self, target_id: str, action: str) -> list[Any]:
        return []


def test_what_cannot_go_to_a_worker_is_named() -> None:
    with HelpdeskPolicy(engine="native", exceptions=_LockedSource()) as policy:
        assert policy_job(policy) == ("the exception source cannot be pickled "
                                      "(TypeError: cannot pickle '_thread.lock' object)")
    with HelpdeskPolicy(engine="opa", engine_options={"opa": {"url": "http://127.0.0.1:9"}}) as policy:
        assert "'opa' engine decides over HTTP" in policy_job(policy)  # type: ignore[operator]
    with HelpdeskPolicy(engine="native", cache_size=7, log_identifiers="keep") as policy:
        job = policy_job(policy)
        assert isinstance(job, WorkerJob) and job.args[3] == ["native"]
        kwargs = job.args[1]
        assert (kwargs["cache_size"], kwargs["log_identifiers"], kwargs["policy_dir"]) == (7, "keep", None)


def test_a_policy_changed_on_disk_is_never_replayed_by_a_worker(tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    directory = tmp_path / "policies"
    shutil.copytree(stock_policy_dir(), directory)
    with HelpdeskPolicy(engine="native", policy_dir=directory) as policy:
        reasons = directory / "reasons.yaml"
        reasons.write_text(reasons.read_text(encoding="utf-8").replace("MFA", "multi-factor", 1), encoding="utf-8")
        assert PolicySet.load(directory).revision != policy.policy_revision
        with caplog.at_level(logging.WARNING, logger="helpdesk_policy.replay"):
            decisions = policy.decide_many(REQUESTS[:30], workers=2)
    assert {d.policy_revision for d in decisions} == {policy.policy_revision}
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "the policy changed on disk" in warning and "the rest is done in this process" in warning


@pytest.mark.parametrize("workers", [0, -1, True, 1.5, "2"])
def test_workers_must_be_a_positive_int(workers: Any) -> None:
    with HelpdeskPolicy(engine="native") as policy, pytest.raises(InvalidConfigError) as info:
        policy.decide_many(REQUESTS[:2], workers=workers)
    assert info.value.paths == ["workers"]


def test_plan_workers() -> None:
    assert plan_workers(AUTO_MIN_REQUESTS - 1, None) == 1
    assert plan_workers(AUTO_MIN_REQUESTS, None) == min(AUTO_MIN_REQUESTS, len(os.sched_getaffinity(0)))
    assert plan_workers(5, 8) == 5 and plan_workers(0, 8) == 1 and plan_workers(50, 1) == 1


# ---------------------------------------------------------------- run_chunks


def test_run_chunks_keeps_the_order_and_uses_a_worker(caplog: pytest.LogCaptureFixture) -> None:
    # setup = os.getpid and run = operator.add: a worker answers its pid + the chunk.
    chunks = list(range(12))
    job: WorkerJob[int, int] = WorkerJob(os.getpid, (), operator.add)
    with caplog.at_level(logging.DEBUG, logger="helpdesk_policy.replay"):
        results = run_chunks(chunks, local=lambda c: os.getpid() + c, job=job, workers=2, weight=lambda c: 1)
    pids = [r - c for r, c in zip(results, chunks)]
    assert pids[0] != os.getpid()  # the first chunk always goes to a worker
    assert set(pids) - {os.getpid()} == {pids[0]}
    assert chunks_done_by_workers(caplog) == pids.count(pids[0])


def test_results_travel_through_a_private_spool_that_is_removed(monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    import tempfile

    import helpdesk_policy.replay as replay

    real = Path(replay._spool_dir())
    try:
        assert real.name.startswith("helpdesk-policy-replay-") and real.stat().st_mode & 0o777 == 0o700
    finally:
        real.rmdir()
    made: list[str] = []

    def spool_dir() -> str:
        made.append(tempfile.mkdtemp(prefix="spool-", dir=tmp_path))
        return made[-1]

    monkeypatch.setattr(replay, "_spool_dir", spool_dir)
    job: WorkerJob[int, int] = WorkerJob(os.getpid, (), operator.add)
    results = run_chunks(list(range(8)), local=lambda c: os.getpid() + c, job=job, workers=2, weight=lambda c: 1)
    assert results[0] != os.getpid()  # chunk 0 came back from a worker, through the spool
    assert len(made) == 1 and not Path(made[0]).exists()


def test_a_worker_that_fails_leaves_its_chunks_to_this_process(caplog: pytest.LogCaptureFixture) -> None:
    job: WorkerJob[int, int] = WorkerJob(operator.truediv, (1, 0), operator.add)  # setup raises
    with caplog.at_level(logging.WARNING, logger="helpdesk_policy.replay"):
        results = run_chunks(list(range(6)), local=lambda c: c * 10, job=job, workers=2, weight=lambda c: 1)
    assert results == [0, 10, 20, 30, 40, 50]
    [warning] = [r.getMessage() for r in caplog.records]
    assert "cannot set up (ZeroDivisionError: division by zero)" in warning


def test_no_workers_from_a_daemonic_process(monkeypatch: pytest.MonkeyPatch,
                                            caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(multiprocessing.current_process(), "daemon", True)
    job: WorkerJob[int, int] = WorkerJob(os.getpid, (), operator.add)
    with caplog.at_level(logging.INFO, logger="helpdesk_policy.replay"):
        results = run_chunks([1, 2], local=lambda c: -c, job=job, workers=2, weight=lambda c: 1)
    assert results == [-1, -2]
    assert "cannot have children" in caplog.records[0].getMessage()


def test_a_worker_importing_a_replaying_main_module_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    # An unguarded script replays when a worker imports it: refused, as multiprocessing refuses.
    monkeypatch.setattr(multiprocessing.current_process(), "_inheriting", True, raising=False)
    job: WorkerJob[int, int] = WorkerJob(os.getpid, (), operator.add)
    with pytest.raises(RuntimeError, match="if __name__ == '__main__'"):
        run_chunks([1, 2], local=lambda c: -c, job=job, workers=2)


# ------------------------------------------------------------------ progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_bar_draws_on_a_terminal_only() -> None:
    now = [100.0]
    screen = _Terminal()
    bar = ProgressBar(10_000, "decided", stream=screen, interval=0.5, clock=lambda: now[0])
    now[0] = 102.0
    bar.advance(2500)
    now[0] = 102.1
    bar.advance(100)  # within the interval: not drawn
    now[0] = 104.0
    bar.advance(7400)
    bar.close()
    # A shorter line blanks what is left of the longer one before it.
    assert screen.getvalue() == ("\rdecided 2,500/10,000 (25%) 1,250/s, 6s left"
                                 "\rdecided 10,000/10,000 (100%) 2,500/s in 4s "
                                 "\rdecided 10,000/10,000 (100%) 2,500/s in 4s\n")
    plain = io.StringIO()
    quiet = ProgressBar(10, "decided", stream=plain)
    quiet.advance(10)
    quiet.close()
    assert plain.getvalue() == "" and not quiet.enabled


def test_decide_many_progress_is_silent_when_stderr_is_not_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    with HelpdeskPolicy(engine="native") as policy:
        assert len(policy.decide_many(REQUESTS[:10], progress=True)) == 10
        assert len(policy.decide_many(REQUESTS[:10], workers=2, progress=True)) == 10
    assert capsys.readouterr() == ("", "")


def test_decide_many_draws_progress_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    screen = _Terminal()
    monkeypatch.setattr("sys.stderr", screen)
    with HelpdeskPolicy(engine="native") as policy:
        policy.decide_many(REQUESTS[:10], workers=1, progress=True)
    assert screen.getvalue().startswith("\rdecided ")
    assert re.search(r"decided 10/10 \(100%\) [\d,]+/s in \d+s *\n$", screen.getvalue())


# ----------------------------------------------------------------------- diff


def changed_head(tmp_path: Path) -> PolicySet:
    head = tmp_path / "head"
    shutil.copytree(stock_policy_dir(), head)
    for name, (old, new) in EDITS.items():
        rego = head / "helpdesk" / name
        text = rego.read_text(encoding="utf-8")
        assert text.count(old) == 1
        rego.write_text(text.replace(old, new), encoding="utf-8")
    return PolicySet.load(head)


def report_doc(report: Any) -> dict[str, Any]:
    doc = report.to_dict()
    assert doc["conformance"].pop("duration_s") >= 0
    return doc


def test_diff_in_parallel_gives_the_serial_report(tmp_path: Path, policy_set: PolicySet,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("helpdesk_policy.ci.diff._CHUNK", 7)  # 7 chunks of 48 cases
    cases = generated_cases(48, seed=3)
    head = changed_head(tmp_path)
    serial = diff_policies(policy_set, head, cases, workers=1)
    parallel = diff_policies(policy_set, head, cases, workers=2)
    assert report_doc(parallel) == report_doc(serial)
    assert parallel.to_markdown() == serial.to_markdown()
    # The report says something (9 cases changed their reasons), in the cases' order.
    assert serial.counts()["reasons"] == 9 and serial.conformance.status == "passed"
    assert [d.case.name for d in parallel.diffs] == [c.name for c in cases]


def test_diff_cli_workers_option(tmp_path: Path) -> None:
    head = changed_head(tmp_path)
    args = ["--base", str(stock_policy_dir()), "--head", str(head.directory), "--generate", "30", "--seed", "3",
            "--format", "json"]
    one = CliRunner().invoke(diff_command, [*args, "--workers", "1"])
    two = CliRunner().invoke(diff_command, [*args, "--workers", "2"])
    assert one.exit_code == two.exit_code == 0, one.output
    assert report_doc_from(two.stdout) == report_doc_from(one.stdout)
    assert "\r" not in two.stderr  # no progress bar when stderr is not a terminal
    bad = CliRunner().invoke(diff_command, [*args, "--workers", "0"])
    assert bad.exit_code == 2 and "--workers" in bad.output
    help_text = CliRunner().invoke(diff_command, ["--help"]).output
    assert f"from {AUTO_MIN_CASES} cases on" in " ".join(help_text.split())


def test_diff_against_recorded_decisions_in_parallel(tmp_path: Path, policy_set: PolicySet) -> None:
    records: list[dict[str, Any]] = []
    with HelpdeskPolicy(engine="native", log_sink=records.append) as policy:
        policy.decide_many(REQUESTS[:30], workers=2)
    log = tmp_path / "decisions.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    cases = load_cases([log])
    head = changed_head(tmp_path)
    serial = diff_policies(None, head, cases, workers=1, opa="off")
    parallel = diff_policies(None, head, cases, workers=2, opa="off")
    assert report_doc(parallel) == report_doc(serial)
    assert serial.counts()["total"] == 30 and serial.counts()["unchanged"] < 30


def test_diff_progress_ends_its_line_on_a_terminal(monkeypatch: pytest.MonkeyPatch, policy_set: PolicySet) -> None:
    screen = _Terminal()
    monkeypatch.setattr("sys.stderr", screen)
    diff_policies(policy_set, policy_set, generated_cases(5, seed=1), workers=1, opa="off", progress=True)
    assert re.fullmatch(r"(\rdiff: cases decided [^\r\n]*)+\n", screen.getvalue())
    assert "diff: cases decided 5/5 (100%)" in screen.getvalue()


def report_doc_from(output: str) -> dict[str, Any]:
    doc = json.loads(output)
    doc["conformance"].pop("duration_s")
    return doc


# ------------------------------------------------------------- the collector


def test_a_large_batch_keeps_its_survivors_out_of_the_collectors_way(monkeypatch: pytest.MonkeyPatch) -> None:
    import gc

    import helpdesk_policy.replay as replay

    assert gc.get_freeze_count() == 0
    frozen_while_deciding: list[int] = []
    with HelpdeskPolicy(engine="native", log_sink=lambda r: frozen_while_deciding.append(gc.get_freeze_count())) \
            as policy:
        policy.decide_many(REQUESTS, workers=1)  # under KEEP_SURVIVORS_FROM: the collector as ever
        assert frozen_while_deciding and set(frozen_while_deciding) == {0}
        frozen_while_deciding.clear()
        monkeypatch.setattr(replay, "KEEP_SURVIVORS_FROM", 50)
        policy.decide_many(REQUESTS, workers=1)
    assert len(frozen_while_deciding) == len(REQUESTS) and min(frozen_while_deciding) > 0
    assert gc.get_freeze_count() == 0  # all put back


def test_kept_survivors_leaves_a_frozen_or_disabled_collector_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    import gc

    import helpdesk_policy.replay as replay

    monkeypatch.setattr(replay, "KEEP_SURVIVORS_FROM", 10)
    assert not KeptSurvivors(9).active and KeptSurvivors(10).active
    gc.freeze()  # the process's own frozen objects (a pre-forking server's)
    try:
        with KeptSurvivors(10) as kept:
            assert not kept.active
        assert gc.get_freeze_count() > 0  # not thawed
    finally:
        gc.unfreeze()
    gc.disable()
    try:
        assert not KeptSurvivors(10).active
    finally:
        gc.enable()


def test_the_module_doctests_run() -> None:
    import doctest

    import helpdesk_policy.replay as replay

    result = doctest.testmod(replay)
    assert result.attempted >= 5 and result.failed == 0
