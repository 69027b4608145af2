"""Obligations tracked to the end (issue 11, item 2), on both ledger backends.

PostgreSQL is a real server, as in ``tests/test_ledger.py``: the DSN comes from
``HELPDESK_POLICY_TEST_PG_DSN`` (default ``postgresql://postgres@127.0.0.1:5432/test``),
each test gets a schema of its own, and the PostgreSQL cases skip, saying why,
only when no server answers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from helpdesk_policy import HelpdeskPolicy
from helpdesk_policy.cli import main
from helpdesk_policy.ledger import (
    Event,
    LedgerStore,
    ObligationError,
    ObligationItem,
    ObligationTracker,
    open_ledger,
)
from helpdesk_policy.models import Decision
from ledger_backends import postgres_schema  # noqa: E402 - tests/ is on sys.path

ROOT = Path(__file__).resolve().parents[1]
REQUEST = json.loads((ROOT / "examples" / "requests" / "02-phone-mfa-reset-admin.json").read_text(encoding="utf-8"))
DECIDED = datetime(2026, 11, 23, 16, 47, 5, tzinfo=timezone.utc)


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
        return
    with postgres_schema("hp_oblig_test") as (url, _schema):
        yield url


@pytest.fixture
def store(url: str) -> Iterator[LedgerStore]:
    s = open_ledger(url)
    yield s
    s.close()


@pytest.fixture(scope="module")
def decision() -> Decision:
    with HelpdeskPolicy(engine="native") as policy:
        return policy.decide(REQUEST)


def _by_code(items: list[ObligationItem]) -> dict[str, ObligationItem]:
    return {i.code: i for i in items}


def test_a_real_decision_opens_its_deadlined_obligations(store: LedgerStore, decision: Decision) -> None:
    codes = {o.code for o in decision.obligations}
    assert {"revoke_previous_credential", "terminate_sessions", "record_evidence"} <= codes
    tracker = ObligationTracker(store)
    opened = _by_code(tracker.open_for(decision, decided_at=DECIDED, chain="INC0041388"))
    assert "record_evidence" not in opened  # verify checks evidence, not the tracker
    revoke, terminate = opened["revoke_previous_credential"], opened["terminate_sessions"]
    assert (revoke.due_at, revoke.within_hours) == (DECIDED, 0)
    assert (terminate.due_at, terminate.within_hours) == (DECIDED + timedelta(hours=24), None)
    assert opened["notify_identity_owner"].to == "holder"
    assert all(i.chain == "INC0041388" and i.decision_id == decision.decision_id for i in opened.values())
    events = [e for e in store.events("INC0041388") if e.kind == "obligation"]
    assert len(events) == len(opened) and {e.payload["event"] for e in events} == {"opened"}
    assert {e.payload["code"] for e in events} == set(opened)
    # Opening again (a retried call) records nothing new.
    tracker.open_for(decision, decided_at=DECIDED, chain="INC0041388")
    assert len(list(store.events("INC0041388"))) == len(events)
    assert store.verify().ok


def test_status_open_done_overdue(store: LedgerStore, decision: Decision) -> None:
    tracker = ObligationTracker(store, default_hours=8)
    tracker.open_for(decision, decided_at=DECIDED)  # chain: the decision id
    before = _by_code(tracker.items(DECIDED))
    assert before["revoke_previous_credential"].status == "open"  # due at once: not yet past
    assert before["terminate_sessions"].due_at == DECIDED + timedelta(hours=8)
    later = DECIDED + timedelta(minutes=30)
    assert _by_code(tracker.items(later))["revoke_previous_credential"].status == "overdue"
    assert _by_code(tracker.items(later))["terminate_sessions"].status == "open"

    done = tracker.mark_done(decision.decision_id, "terminate_sessions", by="u-900", at=later)
    assert (done.status, done.done_by, done.done_at, done.late) == ("done", "u-900", later, False)
    much_later = DECIDED + timedelta(days=3)
    now = _by_code(tracker.items(much_later))
    assert now["terminate_sessions"].status == "done"  # done stays done past its deadline
    assert now["notify_identity_owner"].status == "overdue"
    tracker.mark_done(decision.decision_id, "revoke_previous_credential", by="u-901", at=much_later)
    revoke = _by_code(tracker.items(much_later))["revoke_previous_credential"]
    assert (revoke.status, revoke.late) == ("done", True)
    kinds = [e.payload["event"] for e in store.events(decision.decision_id)]
    assert kinds[-2:] == ["done", "done"] and kinds.count("opened") == 3
    assert store.verify().ok


def test_due_lists_overdue_and_what_falls_due_within_the_horizon(store: LedgerStore, decision: Decision) -> None:
    tracker = ObligationTracker(store)
    tracker.open_for(decision, decided_at=DECIDED)
    now = DECIDED + timedelta(hours=1)
    assert [i.code for i in tracker.due(now)] == ["revoke_previous_credential"]
    assert [i.status for i in tracker.due(now)] == ["overdue"]
    assert {i.code for i in tracker.due(now, within_hours=23)} == {
        "revoke_previous_credential", "notify_identity_owner", "terminate_sessions"}
    assert [i.code for i in tracker.due(now, within_hours=22.5)] == ["revoke_previous_credential"]
    tracker.mark_done(decision.decision_id, "revoke_previous_credential", by="u-900", at=now)
    assert tracker.due(now) == []
    assert tracker.due(DECIDED - timedelta(hours=1)) == []
    with pytest.raises(ValueError):
        tracker.due(now, within_hours=-1)


def test_unknown_or_repeated_items_are_refused(store: LedgerStore, decision: Decision) -> None:
    tracker = ObligationTracker(store)
    tracker.open_for(decision, decided_at=DECIDED)
    with pytest.raises(ObligationError, match="no obligation 'post_incident_review'"):
        tracker.mark_done(decision.decision_id, "post_incident_review", by="u-900")
    with pytest.raises(ObligationError, match="no obligation"):
        tracker.mark_done("not-a-decision", "terminate_sessions", by="u-900")
    with pytest.raises(ObligationError, match="no obligation 'record_evidence'"):
        tracker.mark_done(decision.decision_id, "record_evidence", by="u-900")
    tracker.mark_done(decision.decision_id, "terminate_sessions", by="u-900")
    with pytest.raises(ObligationError, match="already done by 'u-900'"):
        tracker.mark_done(decision.decision_id, "terminate_sessions", by="u-901")
    with pytest.raises(ValueError, match="by names who"):
        tracker.mark_done(decision.decision_id, "notify_identity_owner", by=" ")
    with pytest.raises(ValueError, match="time zone"):
        tracker.mark_done(decision.decision_id, "notify_identity_owner", by="u-1", at=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="time zone"):
        tracker.open_for(decision, decided_at=datetime(2026, 1, 1))
    assert store.verify().ok


def test_other_events_and_unreadable_obligation_events_are_skipped(store: LedgerStore, decision: Decision) -> None:
    store.append(Event(chain=decision.decision_id, kind="decision", payload={"decision_id": decision.decision_id}))
    store.append(Event(chain="INC-x", kind="obligation", payload={"event": "opened", "code": "x"}))
    store.append(Event(chain="INC-x", kind="obligation", payload={"event": "done", "decision_id": "d", "code": "x",
                                                                "done_by": "u", "done_at": "2026-01-01T00:00:00Z"}))
    tracker = ObligationTracker(store)
    assert tracker.items(DECIDED) == []
    tracker.open_for(decision, decided_at=DECIDED)
    assert len(tracker.items(DECIDED)) == 3


def test_tracked_deadlines_of_other_obligations() -> None:
    from helpdesk_policy.models import Obligation

    tracker = ObligationTracker.__new__(ObligationTracker)
    tracker.default_hours = 4
    assert tracker.deadline_hours(Obligation(code="time_bound_access", within_hours=8)) == 8
    assert tracker.deadline_hours(Obligation(code="post_incident_review", within_hours=72)) == 72
    assert tracker.deadline_hours(Obligation(code="rotate_stale_secret")) == 4
    assert tracker.deadline_hours(Obligation(code="record_evidence", fields=["outcome"])) is None
    assert tracker.deadline_hours(Obligation(code="something_else")) is None
    with pytest.raises(ValueError):
        ObligationTracker(None, default_hours=-1)  # type: ignore[arg-type]


def test_cli_obligations_due(url: str, decision: Decision) -> None:
    store = open_ledger(url)
    try:
        tracker = ObligationTracker(store)
        tracker.open_for(decision, decided_at=DECIDED, chain="INC0041388")
        tracker.mark_done(decision.decision_id, "notify_identity_owner", by="u-900", at=DECIDED)
    finally:
        store.close()
    runner = CliRunner()
    now = "2026-11-23T18:00:00Z"
    text = runner.invoke(main, ["obligations", "due", "--ledger", url, "--now", now], catch_exceptions=False)
    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()
    assert lines[0] == (f"OVERDUE  2026-11-23T16:47:05.000000Z  INC0041388  revoke_previous_credential"
                        f"  (decision {decision.decision_id})")
    assert lines[-1] == "1 due, 1 overdue"

    wide = runner.invoke(main, ["obligations", "due", "--ledger", url, "--now", now, "--within-hours", "24",
                                "--json"], catch_exceptions=False)
    assert wide.exit_code == 0, wide.output
    doc = json.loads(wide.stdout)
    assert (doc["now"], doc["within_hours"], doc["overdue"]) == ("2026-11-23T18:00:00.000000Z", 24.0, 1)
    assert [(i["code"], i["status"]) for i in doc["items"]] == [
        ("revoke_previous_credential", "overdue"), ("terminate_sessions", "open")]
    item = doc["items"][1]
    assert item == {"decision_id": decision.decision_id, "chain": "INC0041388", "code": "terminate_sessions",
                    "decided_at": "2026-11-23T16:47:05.000000Z", "due_at": "2026-11-24T16:47:05.000000Z",
                    "within_hours": None, "to": None, "status": "open", "done_by": None, "done_at": None}

    early = runner.invoke(main, ["obligations", "due", "--ledger", url, "--now", "2026-11-23T10:00:00+00:00"])
    assert (early.exit_code, early.stdout) == (0, "nothing due\n")
    bad = runner.invoke(main, ["obligations", "due", "--ledger", url, "--now", "yesterday"])
    assert bad.exit_code == 2 and "ISO 8601" in bad.stderr
    naive = runner.invoke(main, ["obligations", "due", "--ledger", url, "--now", "2026-11-23T10:00:00"])
    assert naive.exit_code == 2 and "time zone" in naive.stderr

    audit = runner.invoke(main, ["audit", "verify", "--ledger", url], catch_exceptions=False)
    assert audit.exit_code == 0 and audit.stdout.startswith("OK"), audit.output


def test_cli_bad_ledger_url() -> None:
    result = CliRunner().invoke(main, ["obligations", "due", "--ledger", "nosuch://x"])
    assert result.exit_code == 2 and "unknown ledger URL scheme" in result.stderr


def test_the_readme_obligations_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import re

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n### Obligations to the end\n", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"^```python\n(.*?)^```", section, flags=re.S | re.M)
    (console,) = re.findall(r"^```console\n(.*?)^```", section, flags=re.S | re.M)
    monkeypatch.chdir(ROOT)  # the example reads examples/requests/…
    store = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    namespace: dict[str, object] = {"store": store}
    try:
        code = "from helpdesk_policy import HelpdeskPolicy\n" + code
        exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - our own README
        tracker = namespace["tracker"]
        assert isinstance(tracker, ObligationTracker)
        assert [(i.code, i.status) for i in tracker.due(within_hours=4)] == [("revoke_previous_credential", "overdue")]
        # The console output: the same request decided at its own time, judged the next day.
        other = open_ledger(f"sqlite:///{tmp_path / 'shown.db'}")
        try:
            with HelpdeskPolicy(engine="native") as policy:
                decision = policy.decide(REQUEST)
            ObligationTracker(other).open_for(decision, decided_at=DECIDED, chain="INC0041388")
        finally:
            other.close()
    finally:
        store.close()
    command, output = console.split("\n", 1)
    args = command.removeprefix("$ helpdesk-policy ").split()
    args[args.index("sqlite:///ledger.db")] = f"sqlite:///{tmp_path / 'shown.db'}"
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0
    assert result.output == output.replace("0eccf969-…", decision.decision_id)
