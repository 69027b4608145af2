"""Obligations tracked to the end (issue 11, item 2), on both ledger backends.

PostgreSQL is a real server, as in ``tests/test_ledger.py``: the DSN comes from
``HELPDESK_POLICY_TEST_PG_DSN`` (default ``postgresql://postgres@127.0.0.1:5432/test``),
each test gets a schema of its own, and the PostgreSQL cases skip, saying why,
only when no server answers.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from helpdesk_policy import HelpdeskPolicy
from helpdesk_policy.cli import main
from helpdesk_policy.ledger import (
    Event,
    LedgerSink,
    LedgerStore,
    ObligationError,
    ObligationItem,
    ObligationTracker,
    open_ledger,
)
from helpdesk_policy.models import Decision
from ledger_backends import store, url  # noqa: E402, F401 - tests/ is on sys.path; the ledger fixtures, on both backends

ROOT = Path(__file__).resolve().parents[1]
REQUEST = json.loads((ROOT / "examples" / "requests" / "02-phone-mfa-reset-admin.json").read_text(encoding="utf-8"))
DECIDED = datetime(2026, 11, 23, 16, 47, 5, tzinfo=timezone.utc)




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
    section = readme.split("\n### Obligations to the end\n", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
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
    # Each command, run in order against that ledger, prints what the README shows.
    runs = re.findall(r"^\$ helpdesk-policy (.*)\n((?:(?!\$ ).*\n)*)", console, flags=re.M)
    assert len(runs) == 2
    for command, output in runs:
        args = command.replace("0eccf969-…", decision.decision_id).split()
        args[args.index("sqlite:///ledger.db")] = f"sqlite:///{tmp_path / 'shown.db'}"
        result = CliRunner().invoke(main, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert result.output == output.replace("0eccf969-…", decision.decision_id)
    # The second command did it: the overdue item is done.
    done = CliRunner().invoke(main, ["obligations", "due", "--ledger", f"sqlite:///{tmp_path / 'shown.db'}",
                                     "--within-hours", "4", "--now", "2026-11-24T14:00:00Z"])
    assert "OVERDUE" not in done.output


# ------------------------------------------------------------------ from decision-log records, auto-open

BREAK_GLASS = json.loads((ROOT / "examples" / "requests" / "15-break-glass-elevation.json").read_text(encoding="utf-8"))


def _logged(request: dict[str, object]) -> tuple[Decision, dict[str, object]]:
    records: list[dict[str, object]] = []
    with HelpdeskPolicy(engine="native", log_sink=records.append) as policy:
        decision = policy.decide(request)
    (record,) = records
    return decision, record


def test_open_from_record_opens_what_open_for_opens(store: LedgerStore) -> None:
    decision, record = _logged(REQUEST)
    record = {**record, "timestamp": "2026-11-23T16:47:05+00:00"}
    tracker = ObligationTracker(store)
    opened = _by_code(tracker.open_from_record(record))
    assert set(opened) == {"revoke_previous_credential", "terminate_sessions", "notify_identity_owner"}
    assert all(i.chain == "ticket:INC0041388" and i.decision_id == decision.decision_id for i in opened.values())
    assert opened["revoke_previous_credential"].due_at == DECIDED
    assert opened["terminate_sessions"].due_at == DECIDED + timedelta(hours=24)
    # The same dedup as open_for: neither the record again nor the decision opens anything new in the chain.
    events = len(list(store.events("ticket:INC0041388")))
    tracker.open_from_record(record)
    tracker.open_for(decision, decided_at=DECIDED, chain="ticket:INC0041388")
    assert len(list(store.events("ticket:INC0041388"))) == events
    # Opened again in another chain (only that chain is read, to keep opening cheap), the
    # first opening still counts: one item per obligation, in the ticket's chain.
    before = tracker.items(DECIDED)
    tracker.open_for(decision, decided_at=DECIDED, chain="elsewhere")
    assert tracker.items(DECIDED) == before
    # An explicit chain wins; a record with no ticket goes to its decision id.
    _, other = _logged(BREAK_GLASS)
    items = tracker.open_from_record(other, chain="ticket:P1")
    assert {i.chain for i in items} == {"ticket:P1"}
    bare = {"decision_id": "d-bare", "timestamp": "2026-11-23T16:47:05Z",
            "result": {"obligations": [{"code": "terminate_sessions"}]}}
    assert [i.chain for i in tracker.open_from_record(bare)] == ["d-bare"]
    assert store.verify().ok


@pytest.mark.parametrize(("record", "words"), [
    ({"timestamp": "2026-11-23T16:47:05Z", "result": {"obligations": []}}, "no decision_id"),
    ({"decision_id": "d", "timestamp": "yesterday", "result": {"obligations": []}}, "timestamp"),
    ({"decision_id": "d", "timestamp": "2026-11-23T16:47:05", "result": {"obligations": []}}, "timestamp"),
    ({"decision_id": "d", "timestamp": "2026-11-23T16:47:05Z", "result": {}}, "result.obligations"),
])
def test_an_unreadable_record_is_refused(store: LedgerStore, record: dict[str, object], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        ObligationTracker(store).open_from_record(record)
    assert store.chains() == []


def test_a_bad_obligation_is_named_after_the_good_ones_are_opened(store: LedgerStore) -> None:
    record = {"decision_id": "d-1", "timestamp": "2026-11-23T16:47:05Z", "result": {"obligations": [
        {"code": "terminate_sessions"}, {"code": "Not A Code"}, "nonsense"]}}
    tracker = ObligationTracker(store)
    with pytest.raises(ValueError, match=r"result.obligations\[1\], result.obligations\[2\]"):
        tracker.open_from_record(record)
    assert [i.code for i in tracker.items(DECIDED)] == ["terminate_sessions"]


def test_the_ledger_sink_auto_opens_obligations_in_the_ticket_chain(store: LedgerStore) -> None:
    tracker = ObligationTracker(store)
    sink = LedgerSink(store, chain=LedgerSink.BY_TICKET, track_obligations=tracker)
    with HelpdeskPolicy(engine="native", log_sink=sink) as policy:
        decision = policy.decide(REQUEST)
        glass = policy.decide(BREAK_GLASS)
        policy.decide(REQUEST)  # the same ticket again: a new decision, its own items
    assert sink.close(10)
    assert (sink.stored, sink.failures, sink.obligation_failures) == (3, 0, 0)
    kinds = [(e.kind, e.payload.get("event")) for e in store.events("ticket:INC0041388")]
    assert kinds[:4] == [("decision", None)] + [("obligation", "opened")] * 3
    items = tracker.items()
    assert len(items) == 3 + 3 + 3  # break glass: notify_identity_owner, post_incident_review, time_bound_access
    mine = _by_code([i for i in items if i.decision_id == decision.decision_id])
    assert set(mine) == {"revoke_previous_credential", "terminate_sessions", "notify_identity_owner"}
    review = _by_code([i for i in items if i.decision_id == glass.decision_id])["post_incident_review"]
    assert review.chain == "ticket:P1-INC-7781" and review.due_at - review.decided_at == timedelta(hours=72)
    assert store.verify().ok


def test_auto_open_in_the_decisions_chain_still_files_obligations_by_ticket(store: LedgerStore) -> None:
    tracker = ObligationTracker(store)
    sink = LedgerSink(store, track_obligations=tracker)
    with HelpdeskPolicy(engine="native", log_sink=sink) as policy:
        policy.decide(REQUEST)
    assert sink.close(10)
    assert [e.kind for e in store.events("decisions")] == ["decision"]
    assert {e.kind for e in store.events("ticket:INC0041388")} == {"obligation"}


class _NoObligations(ObligationTracker):
    def __init__(self) -> None:
        self.calls = 0

    def open_from_record(self, record: object, *, chain: str | None = None) -> list[ObligationItem]:
        self.calls += 1
        raise RuntimeError("the tracker is down")


def test_a_failing_auto_open_is_retried_then_counted_and_the_record_stays_stored(
        store: LedgerStore, caplog: pytest.LogCaptureFixture) -> None:
    tracker = _NoObligations()
    sink = LedgerSink(store, retries=1, retry_backoff_s=0.01, track_obligations=tracker)
    with HelpdeskPolicy(engine="native", log_sink=sink) as policy:
        policy.decide(REQUEST)
    assert sink.close(10)
    assert (sink.stored, sink.failures, sink.obligation_failures, tracker.calls) == (1, 0, 1, 2)
    assert any("obligations of decision" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------ who marks it done


def test_mark_done_records_the_kind_of_party(store: LedgerStore, decision: Decision) -> None:
    tracker = ObligationTracker(store)
    tracker.open_for(decision, decided_at=DECIDED, chain="ticket:INC0041388")
    done = tracker.mark_done(decision.decision_id, "terminate_sessions", by="svc-iam-bot", by_type="service",
                             at=DECIDED)
    assert (done.done_by, done.done_by_type) == ("svc-iam-bot", "service")
    agent = tracker.mark_done(decision.decision_id, "notify_identity_owner", by="agent-7", by_type="ai_agent",
                              at=DECIDED)
    assert agent.done_by_type == "ai_agent"
    person = tracker.mark_done(decision.decision_id, "revoke_previous_credential", by="u-900", at=DECIDED)
    assert person.done_by_type == "human"  # the default
    last = list(store.events("ticket:INC0041388"))[-1].payload
    assert (last["done_by"], last["done_by_type"]) == ("u-900", "human")
    assert {i.code: i.done_by_type for i in tracker.items(DECIDED)} == {
        "terminate_sessions": "service", "notify_identity_owner": "ai_agent", "revoke_previous_credential": "human"}
    assert person.to_dict()["done_by_type"] == "human"


@pytest.mark.parametrize("by_type", ["ai_agent", "service"])
def test_a_review_is_refused_unless_a_person_does_it(store: LedgerStore, by_type: str) -> None:
    _, record = _logged(BREAK_GLASS)
    tracker = ObligationTracker(store)
    tracker.open_from_record(record)
    decision_id = str(record["decision_id"])
    with pytest.raises(ObligationError, match="only a person may mark it done"):
        tracker.mark_done(decision_id, "post_incident_review", by="agent-7", by_type=by_type)  # type: ignore[arg-type]
    assert _by_code(tracker.items())["post_incident_review"].status == "open"  # nothing recorded
    # Any *_review alike, even one never opened (refused before the ledger is read).
    with pytest.raises(ObligationError, match="review"):
        tracker.mark_done(decision_id, "access_review", by="agent-7", by_type=by_type)  # type: ignore[arg-type]
    # A person may; and a service may do the rest.
    assert tracker.mark_done(decision_id, "post_incident_review", by="u-42").status == "done"
    assert tracker.mark_done(decision_id, "time_bound_access", by="svc-pam", by_type="service").status == "done"


def test_who_did_it_is_an_id_never_a_credential(store: LedgerStore, decision: Decision) -> None:
    tracker = ObligationTracker(store)
    tracker.open_for(decision, decided_at=DECIDED)
    secret = "ghp_" + "1a2B3c4D5e6F7g8H9i0JkLmNoPqRsTuVwXyZ"
    for by in (secret, "123456", "password=hunter2"):
        with pytest.raises(ValueError, match="looks like a credential") as info:
            tracker.mark_done(decision.decision_id, "terminate_sessions", by=by)
        assert by not in str(info.value)
    with pytest.raises(ValueError, match="by_type"):
        tracker.mark_done(decision.decision_id, "terminate_sessions", by="u-1", by_type="robot")  # type: ignore[arg-type]
    assert all(i.status != "done" for i in tracker.items(DECIDED))


# ------------------------------------------------------------------ obligations done (CLI)


def test_cli_obligations_done(url: str, decision: Decision) -> None:
    store = open_ledger(url)
    try:
        ObligationTracker(store).open_for(decision, decided_at=DECIDED, chain="ticket:INC0041388")
        _, glass = _logged(BREAK_GLASS)
        ObligationTracker(store).open_from_record(glass)
    finally:
        store.close()
    runner = CliRunner()
    base = ["obligations", "done", "--ledger", url]
    ok = runner.invoke(main, [*base, decision.decision_id, "terminate_sessions", "--by", "u-900",
                              "--at", "2026-11-23T18:00:00Z"], catch_exceptions=False)
    assert ok.exit_code == 0, ok.output
    assert ok.stdout == (f"DONE     2026-11-23T18:00:00.000000Z  ticket:INC0041388  terminate_sessions  by u-900 "
                         f"(human)  (decision {decision.decision_id})\n")
    late = runner.invoke(main, [*base, decision.decision_id, "revoke_previous_credential", "--by", "svc-iam",
                                "--by-type", "service", "--at", "2026-11-23T18:00:00Z"])
    assert late.exit_code == 0 and "(service)" in late.stdout and "LATE (due 2026-11-23T16:47:05.000000Z)" in late.stdout

    again = runner.invoke(main, [*base, decision.decision_id, "terminate_sessions", "--by", "u-901"])
    assert again.exit_code == 1 and "already done by 'u-900'" in again.stderr
    unknown = runner.invoke(main, [*base, "no-such-decision", "terminate_sessions", "--by", "u-901"])
    assert unknown.exit_code == 1 and "no obligation" in unknown.stderr
    agent = runner.invoke(main, [*base, str(glass["decision_id"]), "post_incident_review", "--by", "agent-7",
                                 "--by-type", "ai_agent"])
    assert agent.exit_code == 1 and "only a person" in agent.stderr

    secret = runner.invoke(main, [*base, decision.decision_id, "notify_identity_owner", "--by", "123456"])
    assert secret.exit_code == 2 and "credential" in secret.stderr and "123456" not in secret.output
    bad_at = runner.invoke(main, [*base, decision.decision_id, "notify_identity_owner", "--by", "u-1", "--at", "soon"])
    assert bad_at.exit_code == 2 and "--at 'soon'" in bad_at.stderr
    bad_type = runner.invoke(main, [*base, decision.decision_id, "notify_identity_owner", "--by", "u-1",
                                    "--by-type", "robot"])
    assert bad_type.exit_code == 2
    no_by = runner.invoke(main, [*base, decision.decision_id, "notify_identity_owner"])
    assert no_by.exit_code == 2

    audit = runner.invoke(main, ["audit", "verify", "--ledger", url], catch_exceptions=False)
    assert audit.exit_code == 0, audit.output


def test_cli_obligations_done_unreachable_ledger() -> None:
    result = CliRunner().invoke(main, ["obligations", "done", "--ledger", "postgresql://nobody@127.0.0.1:1/x",
                                       "d", "terminate_sessions", "--by", "u-1"])
    assert result.exit_code == 3, result.output
    bad = CliRunner().invoke(main, ["obligations", "done", "--ledger", "nosuch://x", "d", "c", "--by", "u-1"])
    assert bad.exit_code == 2
