"""The ticket lifecycle events and the compliance report (issue 11, item 6), on both ledger backends.

The report's numbers are checked against a fixture of eight tickets built
through the real APIs (HelpdeskPolicy with a log sink writing into the
ledger, TicketLifecycle, ObligationTracker, exception events), with every
expected number computed by hand below (not by the code under test). The
HTML page is rendered in a real headless Chromium: its DOM must hold the
charts and its screenshot must show every chart's fill colours.

PostgreSQL is a real server, as in ``tests/test_ledger.py``; its cases skip,
saying why, only when no server answers.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import re
import shutil
import struct
import subprocess
import uuid
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from helpdesk_policy import HelpdeskPolicy
from helpdesk_policy.cli import main
from helpdesk_policy.engines.base import BaseEngine
from helpdesk_policy.errors import EngineError, LedgerError
from helpdesk_policy.evidence import Approval, Evidence, IdentityProof, Outcome
from helpdesk_policy.ledger import Event, JsonlSink, LedgerStore, ObligationTracker, open_ledger
from helpdesk_policy.ledger.base import format_timestamp
from helpdesk_policy.ledger.lifecycle import NotClosableError, TicketLifecycle, ticket_chain
from helpdesk_policy.ledger.report import (
    LEVELS,
    ComplianceReport,
    Rate,
    render_text,
    report_from_jsonl,
    report_from_ledger,
    report_from_records,
)
from helpdesk_policy.ledger.report_html import LEVEL_COLOURS, RATES, rate_colour, render_html
from helpdesk_policy.models import Decision, Request
from ledger_backends import postgres_schema  # noqa: E402 - tests/ is on sys.path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "requests"

#: Obligations are opened at T0; the report judges at NOW (T0 + 30 h).
T0 = datetime(2030, 1, 1, 9, 0, tzinfo=timezone.utc)
NOW = T0 + timedelta(hours=30)


def _example(prefix: str, ticket: str) -> dict[str, Any]:
    path = next(EXAMPLES.glob(f"{prefix}-*.json"))
    doc = json.loads(path.read_text(encoding="utf-8"))
    doc["request"]["id"] = ticket
    return doc


class Broken(BaseEngine):
    """An engine that always fails: the chain falls back to native and the decision is degraded."""

    name = "broken"

    def evaluate(self, request: Request) -> Any:
        raise EngineError("down for the test", engine="broken")


@dataclass
class Tee:
    """A log sink: each record into the ledger (chain ``ticket:<id>``, or ``decisions`` for some) and a JSONL file."""

    store: LedgerStore
    jsonl: JsonlSink
    default_chain_for: set[str] = field(default_factory=set)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __call__(self, record: dict[str, Any]) -> None:
        self.write(json.loads(json.dumps(record, default=str)))

    def write(self, record: dict[str, Any]) -> None:
        ticket = record["input"]["request"]["id"]
        chain = "decisions" if ticket in self.default_chain_for else ticket_chain(ticket)
        self.store.append(Event(chain=chain, kind="decision", payload=record))
        self.jsonl(record)
        self.records.setdefault(ticket, record)


def _hand_written(base: dict[str, Any], *, ticket: str, team: str, level: str, exceptions: list[dict[str, Any]],
                  timestamp: datetime) -> dict[str, Any]:
    """A decision-log record as the facade writes one, with an exception entry (the contract's shape)."""
    record = copy.deepcopy(base)
    record["decision_id"] = str(uuid.uuid4())
    record["timestamp"] = timestamp.isoformat()
    record["input"]["request"]["id"] = ticket
    record["labels"] = {**record["labels"], "ticket": ticket, "team": team}
    record["result"] = {**record["result"], "level": level, "allowed": level != "deny", "exceptions": exceptions}
    return record


def _proof(now: datetime) -> IdentityProof:
    return IdentityProof(method="government_id_in_person", verified_by="agent-7", verified_by_type="human", at=now)


def _evidence(decision: Decision, requester: str, now: datetime, **parts: Any) -> Evidence:
    return Evidence(decision_id=decision.decision_id, input_digest=decision.input_digest, requester_id=requester,
                    recorded_at=now, **parts)


@dataclass
class Fixture:
    url: str
    jsonl_files: list[Path]
    decisions: dict[str, Decision]


def _build(url: str, tmp: Path) -> Fixture:
    """Eight tickets; what each one is, and so every expected number, is in the table below.

    ======  ====================  ===================  ==========  =====  ================  ======================================
    ticket  action                channel              target      team   level             what happens
    ======  ====================  ===================  ==========  =====  ================  ======================================
    INC-1   password_reset        self_service_portal  human       red    self_service      closed compliant
    INC-2   mfa_reset             walk_in              human       red    step_up           closed, reopened, closed (compliant)
    INC-3   mfa_reset             phone                human       blue   callback          close refused, then closed incomplete;
                                                                                            3 obligations at T0, 1 done: 2 overdue
    INC-4   password_reset        chat                 human       blue   manager_approval  escalated, closed compliant; 2
                                                                                            obligations at T0+10h: none overdue
    INC-5   api_key_reissue       self_service_portal  api_key     red    self_service      degraded (engine down), logged in chain
                                                                                            "decisions", 3 obligations in chain
                                                                                            "INC-5" at T0: 3 overdue; not closed
    INC-6   api_key_reissue       email                api_key     blue   deny              closed compliant (refused)
    INC-7   mfa_reset             phone                human       red    manager_approval  hand-written, exception "applied";
                                                                                            evidence short: 1 failed verification
    INC-8   password_reset        phone -> portal      human       red -> blue  deny -> self_service  two decisions; the later
                                                                                            one (appended first) hand-written with
                                                                                            an "expired" exception entry
    ======  ====================  ===================  ==========  =====  ================  ======================================

    Exceptions granted: EXC-A (mfa_reset, expired at T0), EXC-B (password_reset,
    expired at T0, revoked), EXC-C (mfa_reset, expires T0+100h).
    """
    store = open_ledger(url)
    jsonl = JsonlSink(tmp / "decisions.jsonl", max_bytes=9000, backups=20)
    tee = Tee(store, jsonl, default_chain_for={"INC-5"})
    now = datetime.now(timezone.utc)  # evidence is gathered and checked now (its window is 72 h)
    lifecycle = TicketLifecycle(store)
    tracker = ObligationTracker(store)
    decisions: dict[str, Decision] = {}
    try:
        red = HelpdeskPolicy(engine="native", log_sink=tee, log_labels={"team": "red"})
        blue = HelpdeskPolicy(engine="native", log_sink=tee, log_labels={"team": "blue"})
        degraded = HelpdeskPolicy(engine=Broken(), fallback=["native"], log_sink=tee, log_labels={"team": "red"})
        with red, blue, degraded:
            # INC-8's later decision is written first: "latest" goes by the record's time, not arrival.
            tee.write(_hand_written(
                _example_record("01"), ticket="INC-8", team="blue", level="self_service",
                exceptions=[{"id": "EXC-B", "status": "expired", "level_before": "self_service",
                             "level_after": "self_service", "expires_at": format_timestamp(T0),
                             "why_not": "expired"}],
                timestamp=now + timedelta(hours=1)))
            for ticket, prefix, policy in (("INC-1", "01", red), ("INC-2", "03", red), ("INC-3", "02", blue),
                                           ("INC-4", "06", blue), ("INC-5", "07", degraded),
                                           ("INC-6", "09", blue), ("INC-8", "16", red)):
                decisions[ticket] = policy.decide(_example(prefix, ticket))
            tee.write(_hand_written(
                tee.records["INC-3"], ticket="INC-7", team="red", level="manager_approval",
                exceptions=[{"id": "EXC-A", "status": "applied", "level_before": "callback",
                             "level_after": "manager_approval", "expires_at": format_timestamp(NOW + timedelta(days=1)),
                             "why_not": None}],
                timestamp=now))
        assert decisions["INC-5"].degraded and not decisions["INC-1"].degraded
        assert [decisions[t].level.value for t in ("INC-1", "INC-2", "INC-3", "INC-4", "INC-5", "INC-6", "INC-8")] == [
            "self_service", "step_up", "callback", "manager_approval", "self_service", "deny", "deny"]

        done = Outcome(status="completed", at=now)
        # INC-1: self-service, closed compliant at first contact.
        d = decisions["INC-1"]
        assert lifecycle.close(d, _evidence(d, "u-48213", now, authentication_event="idp-1", outcome=done),
                               ticket="INC-1", by="agent-1").closable
        # INC-2: step-up, closed, reopened, closed again (compliant both times).
        d = decisions["INC-2"]
        ev2 = _evidence(d, "u-33508", now, identity_proof=_proof(now), outcome=done)
        assert lifecycle.close(d, ev2, ticket="INC-2", by="agent-1").closable
        lifecycle.reopen("INC-2", by="agent-2", reason="user_still_locked_out")
        assert lifecycle.close(d, ev2, ticket="INC-2", by="agent-2").closable
        # INC-3: callback; no approval nor callback recorded: refused, then closed anyway (non-compliant).
        d = decisions["INC-3"]
        ev3 = _evidence(d, "u-20417", now, identity_proof=_proof(now), outcome=done)
        with pytest.raises(NotClosableError):
            lifecycle.close(d, ev3, ticket="INC-3", by="agent-3")
        assert not lifecycle.close(d, ev3, ticket="INC-3", by="agent-3", allow_incomplete=True).closable
        tracker.open_for(d, decided_at=T0, chain=ticket_chain("INC-3"))  # revoke (0 h), terminate, notify (24 h)
        tracker.mark_done(d.decision_id, "terminate_sessions", by="agent-3", at=T0 + timedelta(hours=1))
        # INC-4: manager approval; escalated, then closed compliant; obligations not yet due at NOW.
        d = decisions["INC-4"]
        lifecycle.escalate("INC-4", by="agent-4", to="tier-2")
        ev4 = _evidence(d, "u-51876", now, identity_proof=_proof(now), outcome=done,
                        approval=Approval(approver_id="u-90001", approver_type="human",
                                          relationship_of_record="manager", at=now))
        assert lifecycle.close(d, ev4, ticket="INC-4", by="agent-4").closable
        tracker.open_for(d, decided_at=T0 + timedelta(hours=10), chain=ticket_chain("INC-4"))  # due T0+34h
        # INC-5: obligations in a chain named by the bare ticket id (the tracker's own convention).
        tracker.open_for(decisions["INC-5"], decided_at=T0, chain="INC-5")  # revoke, move, notify (24 h)
        # INC-6: a denial, refused and closed compliant.
        d = decisions["INC-6"]
        assert lifecycle.close(d, _evidence(d, "u-50311", now, channel="email", caller_contact="sam@example.com",
                                            denial_reason=d.reasons[0].code,
                                            outcome=Outcome(status="refused", at=now)),
                               ticket="INC-6", by="agent-6").closable
        # INC-7: evidence checked and found short (no close asked for).
        assert not lifecycle.record_evidence(decisions["INC-3"], ev3, ticket="INC-7").closable
        # Exceptions.
        for exc_id, action, expires in (("EXC-A", "mfa_reset", T0), ("EXC-B", "password_reset", T0),
                                        ("EXC-C", "mfa_reset", T0 + timedelta(hours=100))):
            store.append(Event(chain=f"exception:{exc_id}", kind="exception", payload={"event": "granted", "exception": {
                "id": exc_id, "target_id": "u-1", "action": action, "channels": ["phone"], "level": "manager_approval",
                "requested_by": "u-2", "reason": "travel", "reference": "CHG-1", "approved_by": "u-3",
                "approver_type": "human", "approved_at": format_timestamp(T0 - timedelta(days=1)),
                "starts_at": format_timestamp(T0 - timedelta(days=1)), "expires_at": format_timestamp(expires)}}))
        store.append(Event(chain="exception:EXC-B", kind="exception", payload={
            "event": "revoked", "exception_id": "EXC-B", "revoked_by": "u-3",
            "revoked_at": format_timestamp(T0 - timedelta(hours=1)), "reason": "no_longer_needed"}))
    finally:
        jsonl.close()
        store.close()
    files = sorted(tmp.glob("decisions.jsonl*"))
    return Fixture(url=url, jsonl_files=files, decisions=decisions)


def _example_record(prefix: str) -> dict[str, Any]:
    """A real decision-log record for an example, captured without logging it anywhere."""
    captured: list[dict[str, Any]] = []
    with HelpdeskPolicy(engine="native", log_sink=captured.append) as quiet:
        quiet.decide(_example(prefix, "template"))
    return json.loads(json.dumps(captured[0], default=str))


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fixture]:
    tmp = tmp_path_factory.mktemp(f"report-{request.param}")
    if request.param == "sqlite":
        yield _build(f"sqlite:///{tmp / 'ledger.db'}", tmp)
        return
    with postgres_schema("hp_report_test") as (url, _schema):
        yield _build(url, tmp)


@pytest.fixture(scope="module")
def ledger_report(built: Fixture) -> ComplianceReport:
    store = open_ledger(built.url)
    try:
        return report_from_ledger(store, now=NOW)
    finally:
        store.close()


def _r(rate: Rate | None) -> tuple[int, int] | None:
    return None if rate is None else (rate.numerator, rate.denominator)


def _levels(ss: int = 0, su: int = 0, ma: int = 0, cb: int = 0, deny: int = 0) -> dict[str, int]:
    return {"self_service": ss, "step_up": su, "manager_approval": ma, "callback": cb, "deny": deny, "unknown": 0}


# ------------------------------------------------------------------ the hand-computed numbers

#: Decisions per group, from the table in _build (each decision by its own dimensions):
#: INC-1 pr/portal/human/red ss; INC-2 mfa/walk_in/human/red su; INC-3 mfa/phone/human/blue cb;
#: INC-4 pr/chat/human/blue ma; INC-5 api/portal/api_key/red ss (degraded); INC-6 api/email/api_key/blue deny;
#: INC-7 mfa/phone/human/red ma (applied); INC-8a pr/phone/human/red deny; INC-8b pr/portal/human/blue ss (expired).
DECISIONS: dict[tuple[str, str], tuple[int, dict[str, int], tuple[int, int], tuple[int, int], int]] = {
    # (dimension, value): (decisions, by level, degraded, exceptions applied, decisions with an expired exception)
    ("overall", ""): (9, _levels(ss=3, su=1, ma=2, cb=1, deny=2), (1, 9), (1, 9), 1),  # 3+1+2+1+2 = 9
    ("action", "password_reset"): (4, _levels(ss=2, ma=1, deny=1), (0, 4), (0, 4), 1),  # INC-1, 4, 8a, 8b
    ("action", "mfa_reset"): (3, _levels(su=1, ma=1, cb=1), (0, 3), (1, 3), 0),  # INC-2, 3, 7
    ("action", "api_key_reissue"): (2, _levels(ss=1, deny=1), (1, 2), (0, 2), 0),  # INC-5, 6
    ("channel", "self_service_portal"): (3, _levels(ss=3), (1, 3), (0, 3), 1),  # INC-1, 5, 8b
    ("channel", "walk_in"): (1, _levels(su=1), (0, 1), (0, 1), 0),  # INC-2
    ("channel", "phone"): (3, _levels(ma=1, cb=1, deny=1), (0, 3), (1, 3), 0),  # INC-3, 7, 8a
    ("channel", "chat"): (1, _levels(ma=1), (0, 1), (0, 1), 0),  # INC-4
    ("channel", "email"): (1, _levels(deny=1), (0, 1), (0, 1), 0),  # INC-6
    ("target_type", "human"): (7, _levels(ss=2, su=1, ma=2, cb=1, deny=1), (0, 7), (1, 7), 1),  # all but INC-5, 6
    ("target_type", "api_key"): (2, _levels(ss=1, deny=1), (1, 2), (0, 2), 0),  # INC-5, 6
    ("team", "red"): (5, _levels(ss=2, su=1, ma=1, deny=1), (1, 5), (1, 5), 0),  # INC-1, 2, 5, 7, 8a
    ("team", "blue"): (4, _levels(ss=1, ma=1, cb=1, deny=1), (0, 4), (0, 4), 1),  # INC-3, 4, 6, 8b
}

#: Tickets per group (each ticket by its latest decision: INC-8 is password_reset/portal/human/blue):
#: closed: INC-1, 2, 3, 4, 6; first contact: INC-1, 6 (INC-2 reopened, INC-4 escalated, INC-3 not compliant);
#: sensitive closed: INC-2 (su), 3 (cb), 4 (ma), compliant INC-2, 4; INC-7 is sensitive but not closed;
#: overdue: INC-3 2 (3 opened, 1 done), INC-5 3, INC-4 0 (due T0+34h > NOW);
#: failed verifications: INC-3 2 (the refused close and the incomplete close), INC-7 1; refused closes: INC-3 1.
TICKETS: dict[tuple[str, str], tuple[int, tuple[int, int], tuple[int, int], int, int, int]] = {
    # (dimension, value): (tickets, first-contact resolution, compliance, overdue, failed verifications, refused)
    ("overall", ""): (8, (2, 5), (2, 3), 5, 3, 1),  # overdue 2+3; failures 2+1
    ("action", "password_reset"): (3, (1, 2), (1, 1), 0, 0, 0),  # INC-1, 4, 8: closed 1, 4; FCR 1; sensitive 4
    ("action", "mfa_reset"): (3, (0, 2), (1, 2), 2, 3, 1),  # INC-2, 3, 7: closed 2, 3; sensitive 2, 3 (2 compliant)
    ("action", "api_key_reissue"): (2, (1, 1), (0, 0), 3, 0, 0),  # INC-5, 6: closed 6 (deny: not sensitive)
    ("channel", "self_service_portal"): (3, (1, 1), (0, 0), 3, 0, 0),  # INC-1, 5, 8
    ("channel", "walk_in"): (1, (0, 1), (1, 1), 0, 0, 0),  # INC-2
    ("channel", "phone"): (2, (0, 1), (0, 1), 2, 3, 1),  # INC-3, 7
    ("channel", "chat"): (1, (0, 1), (1, 1), 0, 0, 0),  # INC-4
    ("channel", "email"): (1, (1, 1), (0, 0), 0, 0, 0),  # INC-6
    ("target_type", "human"): (6, (1, 4), (2, 3), 2, 3, 1),  # INC-1, 2, 3, 4, 7, 8: closed 1-4, FCR 1
    ("target_type", "api_key"): (2, (1, 1), (0, 0), 3, 0, 0),  # INC-5, 6
    ("team", "red"): (4, (1, 2), (1, 1), 3, 1, 0),  # INC-1, 2, 5, 7: closed 1, 2; sensitive closed 2
    ("team", "blue"): (4, (1, 3), (1, 2), 2, 2, 1),  # INC-3, 4, 6, 8: closed 3, 4, 6; sensitive closed 3, 4
}

#: Exceptions granted and expired at NOW, not revoked: EXC-A only (EXC-B revoked, EXC-C expires later).
PAST_EXPIRY = {("overall", ""): 1, ("action", "mfa_reset"): 1, ("action", "password_reset"): 0,
               ("action", "api_key_reissue"): 0}


def _group(report: ComplianceReport, dim: str, value: str) -> Any:
    return report.overall if dim == "overall" else report.by[dim][value]


def test_the_groups_are_exactly_the_hand_computed_ones(ledger_report: ComplianceReport) -> None:
    for dim in ("action", "channel", "target_type", "team"):
        assert sorted(ledger_report.by[dim]) == sorted(v for d, v in DECISIONS if d == dim), dim


@pytest.mark.parametrize("key", list(DECISIONS), ids=lambda k: f"{k[0]}-{k[1]}")
def test_decision_metrics_match_the_hand_computed_fixture(ledger_report: ComplianceReport, key: tuple[str, str]) -> None:
    m = _group(ledger_report, *key)
    decisions, levels, degraded, applied, expired = DECISIONS[key]
    assert (m.decisions, m.decisions_by_level, _r(m.degraded), _r(m.exceptions_applied),
            m.decisions_with_expired_exception) == (decisions, levels, degraded, applied, expired)
    assert m.exceptions_past_expiry == PAST_EXPIRY.get(key)  # None outside overall and action


@pytest.mark.parametrize("key", list(TICKETS), ids=lambda k: f"{k[0]}-{k[1]}")
def test_ticket_metrics_match_the_hand_computed_fixture(ledger_report: ComplianceReport, key: tuple[str, str]) -> None:
    m = _group(ledger_report, *key)
    assert (m.tickets, _r(m.first_contact_resolution), _r(m.compliance), m.overdue_obligations,
            m.verification_failures, m.close_refusals) == TICKETS[key]


def test_report_totals_and_json(ledger_report: ComplianceReport) -> None:
    # Events: 9 decisions; closes INC-1 2, INC-2 2+1+2, INC-3 2+2 (+4 obligation), INC-4 1+2 (+2 obligation),
    # INC-5 3 obligation, INC-6 2, INC-7 1 evidence; exceptions 3 granted + 1 revoked:
    # 9 + 2 + 5 + 8 + 5 + 3 + 2 + 1 + 4 = 39.
    assert (ledger_report.events, ledger_report.unreadable, ledger_report.source) == (39, 0, "ledger")
    doc = json.loads(ledger_report.to_json())
    assert doc["schema_version"] == 1 and doc["now"] == "2030-01-02T15:00:00.000000Z"
    assert doc["overall"]["first_contact_resolution"] == {"numerator": 2, "denominator": 5, "rate": 0.4}
    assert doc["by"]["channel"]["email"]["compliance"] == {"numerator": 0, "denominator": 0, "rate": None}
    assert doc["by"]["team"]["red"]["exceptions_past_expiry"] is None
    assert doc["levels"] == list(LEVELS)


def test_text_rendering_aligns_and_says_n_a(ledger_report: ComplianceReport) -> None:
    text = render_text(ledger_report)
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line == "Tickets by channel")
    table = lines[header + 1:header + 2 + 2 + 5]  # header, rule, (all), 5 channels
    assert table[0].split() == ["channel", "tickets", "first-contact", "resolution", "compliance", "overdue",
                                "obligations", "verification", "failures", "closes", "refused"]
    assert len({len(line) for line in table[:2]}) == 1  # the rule is as wide as the header
    email = next(line for line in table if line.startswith("email "))
    assert email.split() == ["email", "1", "100.0%", "(1/1)", "n/a", "0", "0", "0"]
    assert "40.0% (2/5)" in text  # overall first-contact resolution
    # Every column's right edge lines up in the decisions table.
    decisions = lines[lines.index("Decisions by team") + 1:lines.index("Decisions by team") + 5]
    ends = [[m.end() for m in re.finditer(r"\S+(?= {2}|$)", line)] for line in decisions]
    assert ends[0][1:] == ends[2][1:] == ends[3][1:]


def test_the_jsonl_log_gives_the_decision_subset(built: Fixture) -> None:
    assert len(built.jsonl_files) >= 3, built.jsonl_files  # rotated: several files
    report = report_from_jsonl(built.jsonl_files, now=NOW)
    assert (report.source, report.events, report.unreadable) == ("jsonl", 9, 0)
    for key, (decisions, levels, degraded, applied, expired) in DECISIONS.items():
        m = _group(report, *key)
        assert (m.decisions, m.decisions_by_level, _r(m.degraded), _r(m.exceptions_applied),
                m.decisions_with_expired_exception) == (decisions, levels, degraded, applied, expired), key
        # Tickets are known from the decisions; everything else about them lives in the ledger only.
        assert m.tickets == TICKETS[key][0], key
        assert (m.first_contact_resolution, m.compliance, m.overdue_obligations, m.verification_failures,
                m.close_refusals, m.exceptions_past_expiry) == (None,) * 6, key
    assert any("only the decision metrics" in note for note in report.notes)
    assert "n/a" in render_text(report)
    # The same file twice counts once.
    again = report_from_jsonl([*built.jsonl_files, built.jsonl_files[0]], now=NOW)
    assert again.overall.decisions == 9


# ------------------------------------------------------------------ the ledger's scan


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LedgerStore]:
    if request.param == "sqlite":
        s = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
        yield s
        s.close()
        return
    with postgres_schema("hp_report_test") as (url, _schema):
        s = open_ledger(url)
        yield s
        s.close()


def test_scan_streams_every_event_by_chain_and_seq_filtered_by_kind(store: LedgerStore) -> None:
    kinds = ["decision", "ticket", "evidence", "obligation", "exception"]
    for i in range(30):
        store.append(Event(chain=f"c{i % 7}", kind=kinds[i % 5], payload={"i": i}))  # type: ignore[arg-type]
    every = list(store.scan())
    assert len(every) == 30
    # Chains in the store's own order (chains()), each one contiguous and in seq order.
    order = [chain for chain, _ in itertools.groupby(e.chain for e in every)]
    assert order == store.chains()
    for chain in order:
        seqs = [e.seq for e in every if e.chain == chain]
        assert seqs == list(range(1, len(seqs) + 1))
    assert {e.hash for e in every} == {e.hash for c in order for e in store.events(c)}
    only = list(store.scan(kinds=["ticket", "exception"]))
    assert sorted(e.payload["i"] for e in only) == [i for i in range(30) if i % 5 in (1, 4)]
    assert list(store.scan(kinds=[])) == []
    with pytest.raises(TypeError):
        list(store.scan(kinds="ticket"))


def test_scan_in_batches_while_appending_in_the_same_thread(store: LedgerStore,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from helpdesk_policy.ledger import postgres, sqlite

    monkeypatch.setattr(sqlite, "SCAN_BATCH", 3)
    monkeypatch.setattr(postgres, "SCAN_BATCH", 3)
    for i in range(10):
        store.append(Event(chain="a", kind="decision", payload={"i": i}))
    seen = []
    for event in store.scan():
        seen.append(event.payload["i"])
        if len(seen) == 2:
            # The scan reads on its own connection and snapshot: appends go on meanwhile.
            store.append(Event(chain="b", kind="decision", payload={"i": 99}))
    assert seen == list(range(10))
    assert [e.payload["i"] for e in store.scan()] == [*range(10), 99]
    assert store.verify().ok


def test_a_ticket_chain_holds_the_longest_ticket_id(store: LedgerStore) -> None:
    ticket = "T" * 256
    stored = TicketLifecycle(store).escalate(ticket, by="agent-1", to="tier-2")
    assert stored.chain == "ticket:" + ticket and len(stored.chain) == 263
    assert [e.payload["to"] for e in store.events("ticket:" + ticket)] == ["tier-2"]
    with pytest.raises(ValueError):
        Event(chain="x" * 301, kind="ticket", payload={})


def test_overdue_items_of_an_unknown_decision_count_under_unknown(store: LedgerStore) -> None:
    opened = {"event": "opened", "decision_id": "d-gone", "code": "terminate_sessions",
              "decided_at": format_timestamp(T0), "due_at": format_timestamp(T0 + timedelta(hours=1)),
              "within_hours": None, "to": None}
    store.append(Event(chain="d-gone", kind="obligation", payload=opened))
    store.append(Event(chain="d-gone", kind="obligation", payload={**opened, "code": "notify_identity_owner",
                                                                    "due_at": format_timestamp(NOW + timedelta(1))}))
    store.append(Event(chain="ticket:T-9", kind="ticket", payload={"event": "sideways", "ticket": "T-9"}))
    report = report_from_ledger(store, now=NOW)
    # One item overdue (due T0+1h), one not yet (due NOW+1d); no decision names d-gone.
    assert report.overall.overdue_obligations == 1 and report.by["team"]["unknown"].overdue_obligations == 1
    # An unknown ticket event is unreadable, and makes no ticket; nor does an orphan item.
    assert (report.overall.tickets, report.unreadable) == (0, 1)


# ------------------------------------------------------------------ the lifecycle


@pytest.fixture(scope="module")
def walk_in() -> tuple[Decision, dict[str, Any]]:
    request = _example("03", "INC-W")
    with HelpdeskPolicy(engine="native") as policy:
        return policy.decide(request), request


def test_close_records_the_verification_and_the_close(store: LedgerStore, walk_in: tuple[Decision, Any]) -> None:
    decision, _ = walk_in
    now = datetime.now(timezone.utc)
    evidence = _evidence(decision, "u-33508", now, identity_proof=_proof(now), outcome=Outcome(status="completed", at=now))
    verification = TicketLifecycle(store).close(decision, evidence, ticket="INC-W", by="Agent-1", now=now)
    assert verification.closable
    verified, closed = list(store.events("ticket:INC-W"))
    assert (verified.kind, closed.kind) == ("evidence", "ticket")
    assert verified.payload["event"] == "verified" and verified.payload["verification"]["closable"] is True
    assert verified.payload["evidence"]["identity_proof"]["method"] == "government_id_in_person"
    assert {i["check"] for i in verified.payload["verification"]["items"]} >= {"binding", "requirement:identity_step_up"}
    assert closed.payload == {"event": "closed", "ticket": "INC-W", "decision_id": decision.decision_id,
                              "by": "agent-1", "at": format_timestamp(now), "compliant": True}  # by: canonical


def test_close_refuses_incomplete_evidence_and_records_the_refusal(store: LedgerStore,
                                                                   walk_in: tuple[Decision, Any]) -> None:
    decision, _ = walk_in
    now = datetime.now(timezone.utc)
    evidence = _evidence(decision, "u-33508", now)  # no identity proof, no outcome
    lifecycle = TicketLifecycle(store)
    with pytest.raises(NotClosableError) as caught:
        lifecycle.close(decision, evidence, ticket="INC-W", by="agent-1", now=now)
    assert isinstance(caught.value, LedgerError)
    assert not caught.value.verification.closable
    message = str(caught.value)
    assert "requirement:identity_step_up" in message and "obligation:record_evidence" in message
    verified, refused = list(store.events("ticket:INC-W"))
    assert verified.payload["verification"]["closable"] is False
    assert refused.payload["event"] == "close_refused"
    assert refused.payload["problems"] == ["requirement:identity_step_up", "obligation:record_evidence", "outcome"]
    # A ticketing system that closes anyway: recorded, and as non-compliant.
    assert not lifecycle.close(decision, evidence, ticket="INC-W", by="agent-1", now=now,
                               allow_incomplete=True).closable
    events = list(store.events("ticket:INC-W"))
    assert [e.payload["event"] for e in events] == ["verified", "close_refused", "verified", "closed"]
    assert events[-1].payload["compliant"] is False


def test_an_abandoned_request_is_not_closable_even_with_every_check_satisfied(
        store: LedgerStore, walk_in: tuple[Decision, Any]) -> None:
    decision, _ = walk_in
    now = datetime.now(timezone.utc)
    evidence = _evidence(decision, "u-33508", now, identity_proof=_proof(now),
                         outcome=Outcome(status="abandoned", at=now))
    with pytest.raises(NotClosableError, match="outcome 'abandoned'"):
        TicketLifecycle(store).close(decision, evidence, ticket="INC-W", by="agent-1", now=now)
    assert list(store.events("ticket:INC-W"))[-1].payload["problems"] == ["outcome"]


def test_window_and_withdrawn_revisions_are_applied(store: LedgerStore, walk_in: tuple[Decision, Any]) -> None:
    decision, _ = walk_in
    then = datetime.now(timezone.utc) - timedelta(hours=5)
    evidence = _evidence(decision, "u-33508", then, identity_proof=_proof(then),
                         outcome=Outcome(status="completed", at=then))
    assert TicketLifecycle(store).record_evidence(decision, evidence, ticket="INC-W").closable
    assert not TicketLifecycle(store, window_hours=2).record_evidence(decision, evidence, ticket="INC-W").closable
    withdrawn = TicketLifecycle(store, withdrawn_revisions=[decision.policy_revision])
    verification = withdrawn.record_evidence(decision, evidence, ticket="INC-W")
    assert [i.check for i in verification.problems] == ["policy_revision"]
    assert [e.payload["verification"]["closable"] for e in store.events("ticket:INC-W")] == [True, False, False]


def test_reopen_and_escalate_are_recorded(store: LedgerStore) -> None:
    lifecycle = TicketLifecycle(store)
    at = datetime(2030, 1, 1, tzinfo=timezone.utc)
    lifecycle.reopen("INC-9", by="agent-2", reason="user_still_locked_out", now=at)
    lifecycle.escalate("INC-9", by="agent-2", to="Security-Team", now=at)
    assert [e.payload for e in store.events("ticket:INC-9")] == [
        {"event": "reopened", "ticket": "INC-9", "by": "agent-2", "at": "2030-01-01T00:00:00.000000Z",
         "reason": "user_still_locked_out"},
        {"event": "escalated", "ticket": "INC-9", "by": "agent-2", "at": "2030-01-01T00:00:00.000000Z",
         "to": "security-team"},
    ]


@pytest.mark.parametrize(("call", "bad"), [
    (lambda lc: lc.reopen("INC-9", by="agent 2 ", reason="fine"), "by"),
    (lambda lc: lc.reopen("INC-9", by="agent-2", reason="Free text, maybe a password"), "reason"),
    (lambda lc: lc.escalate("INC-9\n", by="agent-2", to="tier-2"), "ticket"),
    (lambda lc: lc.escalate("INC-9", by="", to='a"b'), "by"),
    (lambda lc: lc.escalate("INC-9", by="agent-2", to=None), "to"),
])
def test_bad_step_arguments_are_refused_and_nothing_is_recorded(store: LedgerStore, call: Any, bad: str) -> None:
    with pytest.raises(ValueError, match=bad):
        call(TicketLifecycle(store))
    assert store.chains() == []


def test_every_bad_argument_is_named_at_once(store: LedgerStore) -> None:
    with pytest.raises(ValueError) as caught:
        TicketLifecycle(store).escalate("", by="", to='x"')
    assert all(name in str(caught.value) for name in ("ticket", "by", "to"))


def test_lifecycle_options_are_checked(store: LedgerStore) -> None:
    for hours in (0, True, 1.5):
        with pytest.raises(ValueError):
            TicketLifecycle(store, window_hours=hours)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        TicketLifecycle(store, withdrawn_revisions="sha256:abc")


def test_the_lifecycle_module_doctest_runs() -> None:
    import doctest

    from helpdesk_policy.ledger import lifecycle, report

    for module in (lifecycle, report):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.attempted > 0 and result.failed == 0, module.__name__


# ------------------------------------------------------------------ hostile and odd input


def test_unreadable_records_are_counted_not_guessed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    log = tmp_path / "d.jsonl"
    good = {"decision_id": "d1", "timestamp": "2030-01-01T00:00:00+00:00",
            "input": {"request": {"id": "T1", "action": "password_reset", "channel": "phone"},
                      "target": {"type": "human"}},
            "labels": {"ticket": "T1"}, "result": {"level": "no_such_level", "allowed": True, "degraded": "yes"}}
    log.write_bytes(b"not json\n[1, 2]\n\n" + json.dumps(good).encode() + b"\n" + b'{"x": ' + b"1" * (1 << 20) + b"}\n"
                    + json.dumps({"result": {"level": "deny"}}).encode() + b"\n")
    report = report_from_jsonl([log], now=NOW)
    # 5 non-blank lines: "not json", "[1, 2]", the long line unreadable; good and the bare deny read.
    assert (report.events, report.unreadable) == (5, 3)
    assert report.overall.decisions == 2
    assert report.overall.decisions_by_level["unknown"] == 1 and report.overall.decisions_by_level["deny"] == 1
    assert _r(report.overall.degraded) == (0, 2)  # only a true degraded counts
    assert report.overall.tickets == 1  # the bare deny names no ticket
    assert report.by["action"]["unknown"].decisions == 1 and report.by["team"]["unassigned"].decisions == 2
    assert any("could not be read" in n for n in report.notes)
    assert "unreadable" in caplog.text


def test_a_missing_jsonl_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match="cannot read the decision log"):
        report_from_jsonl([tmp_path / "nope.jsonl"])
    with pytest.raises(TypeError):
        report_from_jsonl(str(tmp_path / "nope.jsonl"))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        report_from_records([], now=datetime(2030, 1, 1))


HOSTILE = '<img src=x onerror=alert(1)>"\'&</svg><script>alert(2)</script>'


def _hostile_report() -> ComplianceReport:
    record = {"decision_id": "d1", "timestamp": "2030-01-01T00:00:00+00:00",
              "input": {"request": {"id": HOSTILE, "action": HOSTILE, "channel": "phone"},
                        "target": {"type": "human"}},
              "labels": {"team": HOSTILE}, "result": {"level": "callback", "allowed": True}}
    return report_from_records([record], now=NOW)


def test_html_escapes_everything_from_the_ledger() -> None:
    page = render_html(_hostile_report())
    assert "<img" not in page and "<script" not in page
    assert html_escape(HOSTILE) in page
    assert "\x1b" not in render_text(report_from_records([{"input": {"request": {"id": "x", "action": "a\x1b[2J"}},
                                                           "result": {"level": "deny"}}]))


def html_escape(text: str) -> str:
    import html

    return html.escape(text, quote=True)


URL_IN_ATTRIBUTE = re.compile(r"""(?:\b(?:src|href|xlink:href|action|srcset|poster|data)\s*=\s*["']?\s*(?:https?:)?//)"""
                              r"""|url\(\s*["']?\s*(?:https?:)?//|@import""", re.IGNORECASE)


def test_the_page_references_nothing_outside_itself(ledger_report: ComplianceReport) -> None:
    page = render_html(ledger_report)
    assert not URL_IN_ATTRIBUTE.search(page)
    assert not re.search(r"https?://", page)
    assert not re.search(r"""\b(?:src|href)\s*=""", page, re.IGNORECASE)  # nothing is linked at all
    assert "<script" not in page.lower() and "@font-face" not in page
    assert "default-src 'none'" in page
    # The test's own pattern does catch what it must.
    for bad in ('<img src="https://x/a.png">', "<a href='//x'>", "background: url(http://x/y)", "<link href=//x>"):
        assert URL_IN_ATTRIBUTE.search(bad), bad


# ------------------------------------------------------------------ the page in a real browser


def _chromium(which: Any = shutil.which) -> str:
    path = which("chromium")
    if path is None:
        reason = "chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)"
        if os.environ.get("HELPDESK_POLICY_REQUIRE_BROWSER") == "1":
            pytest.fail(reason + ", and HELPDESK_POLICY_REQUIRE_BROWSER=1")
        pytest.skip(reason)
    return path


def _browse(page: Path, tmp: Path, *extra: str) -> subprocess.CompletedProcess[bytes]:
    args = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--force-color-profile=srgb", "--force-device-scale-factor=1", "--hide-scrollbars",
            f"--user-data-dir={tmp / 'profile'}", "--window-size=1280,2400", *extra, page.as_uri()]
    result = subprocess.run(args, capture_output=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]
    return result


def read_png(data: bytes) -> tuple[int, int, int, list[bytes]]:
    """(width, height, bytes per pixel, rows) of an 8-bit, non-interlaced RGB or RGBA PNG."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat, header = 8, [], None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    assert header is not None, "no IHDR"
    width, height, depth, colour, _compression, _filter, interlace = header
    if depth != 8 or colour not in (2, 6) or interlace != 0:
        raise ValueError(f"unsupported PNG: depth {depth}, colour type {colour}, interlace {interlace}")
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(b"".join(idat))
    stride = width * bpp
    low = int.from_bytes(b"\x7f" * stride, "big")
    high = int.from_bytes(b"\x80" * stride, "big")
    prev, rows = bytes(stride), []
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], raw[start + 1:start + 1 + stride]
        if kind == 0:  # None
            cur = bytes(line)
        elif kind == 1:  # Sub: a running sum per channel
            out = bytearray(stride)
            for c in range(bpp):
                out[c::bpp] = bytes(v & 255 for v in itertools.accumulate(line[c::bpp]))
            cur = bytes(out)
        elif kind == 2:  # Up: bytewise addition without carries, on the whole row at once
            a, b = int.from_bytes(line, "big"), int.from_bytes(prev, "big")
            cur = (((a & low) + (b & low)) ^ ((a ^ b) & high)).to_bytes(stride, "big")
        elif kind in (3, 4):  # Average, Paeth
            out = bytearray(stride)
            for i in range(stride):
                left = out[i - bpp] if i >= bpp else 0
                up = prev[i]
                if kind == 3:
                    out[i] = (line[i] + ((left + up) >> 1)) & 255
                    continue
                corner = prev[i - bpp] if i >= bpp else 0
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                out[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 255
            cur = bytes(out)
        else:
            raise ValueError(f"bad PNG filter {kind} on row {y}")
        rows.append(cur)
        prev = cur
    return width, height, bpp, rows


def _pixels(rows: list[bytes], bpp: int) -> Counter[bytes]:
    counts: Counter[bytes] = Counter()
    for row in rows:
        counts.update(row[i:i + 3] for i in range(0, len(row), bpp))
    return counts


def test_the_png_reader_reads_every_filter() -> None:
    # A 3x2 RGB image, one row per filter type we can build by hand: None, then Up.
    pixels = [bytes([10, 20, 30, 40, 50, 60, 70, 80, 90]), bytes([11, 22, 33, 44, 55, 66, 77, 88, 99])]
    up = bytes((b - a) & 255 for a, b in zip(pixels[0], pixels[1]))
    sub = bytes([pixels[1][0], pixels[1][1], pixels[1][2]]
                + [(pixels[1][i] - pixels[1][i - 3]) & 255 for i in range(3, 9)])
    for second in (b"\x02" + up, b"\x01" + sub):
        raw = b"\x00" + pixels[0] + second
        png = (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", 3, 2, 8, 2, 0, 0, 0))
               + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b""))
        assert read_png(png) == (3, 2, 3, pixels)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


#: A chart "draws" when its colour covers at least this many pixels: a legend
#: swatch is 10 x 10, the smallest bar of the fixture about 1/7 x 520 x 11.
MIN_PIXELS = 400


def test_the_html_page_draws_its_charts_in_a_real_browser(ledger_report: ComplianceReport, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(render_html(ledger_report), encoding="utf-8")
    shot = tmp_path / "report.png"
    _browse(page, tmp_path, f"--screenshot={shot}")
    width, height, bpp, rows = read_png(shot.read_bytes())
    assert (width, height) == (1280, 2400)
    counts = _pixels(rows, bpp)

    def pixels_of(colour: str) -> int:
        return counts[bytes.fromhex(colour.lstrip("#"))]

    # The stacked levels chart: every level the fixture has is drawn...
    for level in ("self_service", "step_up", "manager_approval", "callback", "deny"):
        assert pixels_of(LEVEL_COLOURS[level]) >= MIN_PIXELS, level
    # ...and a level it has not ("unknown") only in the legend: the check can fail.
    assert 0 < pixels_of(LEVEL_COLOURS["unknown"]) < MIN_PIXELS
    # The widest bar (password_reset, 4 decisions) is 520 px: a decision is 130 x 20 px. self_service has 3
    # (2 password_reset, 1 api_key_reissue): 3 * 130 * 20 = 7800 px, less a little anti-aliasing at the edges.
    assert 7800 - 200 <= pixels_of(LEVEL_COLOURS["self_service"]) <= 7800 + 100 + 200  # + its legend swatch
    # Every rates chart (each has colours of its own) draws its four rates.
    for dim in ("action", "channel", "target_type", "team"):
        for key, _label, _attr in RATES:
            assert pixels_of(rate_colour(dim, key)) >= MIN_PIXELS, (dim, key)

    dom = _browse(page, tmp_path, "--dump-dom").stdout.decode("utf-8")
    for chart in ("chart-levels-by-action", "chart-rates-action", "chart-rates-channel", "chart-rates-target_type",
                  "chart-rates-team"):
        assert re.search(rf'<svg[^>]* id="{chart}"', dom), chart
    levels_svg = re.search(r'<svg[^>]* id="chart-levels-by-action".*?</svg>', dom, re.S)
    assert levels_svg is not None
    # One segment per (action, level) with decisions: pr 3 levels, mfa 3, api 2.
    assert len(re.findall(r'<rect class="seg level-', levels_svg.group(0))) == 8
    team_svg = re.search(r'<svg[^>]* id="chart-rates-team".*?</svg>', dom, re.S)
    assert team_svg is not None
    # red: fcr 1/2, compliance 1/1, applied 1/5, degraded 1/5; blue: fcr 1/3, compliance 1/2 (0 applied, 0 degraded).
    assert len(re.findall(r'<rect class="bar rate-', team_svg.group(0))) == 6


def test_the_browser_shows_hostile_text_as_text(tmp_path: Path) -> None:
    page = tmp_path / "hostile.html"
    page.write_text(render_html(_hostile_report()), encoding="utf-8")
    dom = _browse(page, tmp_path, "--dump-dom").stdout.decode("utf-8")
    assert "<img" not in dom and "<script" not in dom
    assert "onerror=alert(1)&gt;" in dom  # there, as text


def test_chromium_missing_fails_when_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HELPDESK_POLICY_REQUIRE_BROWSER", "1")
    with pytest.raises(pytest.fail.Exception, match="HELPDESK_POLICY_REQUIRE_BROWSER"):
        _chromium(lambda _name: None)
    monkeypatch.delenv("HELPDESK_POLICY_REQUIRE_BROWSER")
    with pytest.raises(pytest.skip.Exception):
        _chromium(lambda _name: None)


# ------------------------------------------------------------------ the command line


def test_cli_report_from_the_ledger_in_every_format(built: Fixture, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["report", "--ledger", built.url, "--now", "2030-01-02T15:00:00Z"])
    assert result.exit_code == 0, result.output
    assert "Tickets by team" in result.output and "40.0% (2/5)" in result.output
    result = runner.invoke(main, ["report", "--ledger", built.url, "--now", "2030-01-02T15:00:00Z", "--format", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["overall"]["overdue_obligations"] == 5 and doc["overall"]["compliance"]["rate"] == 2 / 3
    out = tmp_path / "r.html"
    result = runner.invoke(main, ["report", "--ledger", built.url, "--format", "html", "-o", str(out),
                                  "--now", "2030-01-02T15:00:00Z"])
    assert result.exit_code == 0 and result.output == ""
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_cli_report_from_jsonl_files(built: Fixture) -> None:
    first, *rest = map(str, built.jsonl_files)
    result = CliRunner().invoke(main, ["report", "--format", "json", "--jsonl", first, *rest])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["source"] == "jsonl" and doc["overall"]["decisions"] == 9
    assert doc["overall"]["first_contact_resolution"] is None
    repeated = [arg for f in built.jsonl_files for arg in ("--jsonl", str(f))]
    again = CliRunner().invoke(main, ["report", "--format", "json", *repeated])
    assert json.loads(again.output)["overall"]["decisions"] == 9


@pytest.mark.parametrize(("args", "code", "message"), [
    (["report"], 2, "say what to report on"),
    (["report", "--ledger", "nosuch://x"], 2, "unknown ledger URL scheme"),
    (["report", "--ledger", "sqlite:///x.db", "--jsonl", "a.jsonl"], 2, "not both"),
    (["report", "--jsonl", "missing.jsonl"], 2, "cannot read the decision log"),
    (["report", "stray.jsonl"], 2, "follow --jsonl"),
    (["report", "--ledger", "sqlite:///x.db", "--now", "yesterday"], 2, "not an ISO 8601 time"),
    (["report", "--ledger", "sqlite:///x.db", "--now", "2030-01-01T00:00:00"], 2, "needs a time zone"),
    (["report", "--ledger", "postgresql://nobody@127.0.0.1:1/none"], 3, "cannot connect"),
])
def test_cli_report_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], code: int,
                           message: str) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HELPDESK_POLICY_LEDGER", raising=False)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == code, result.output
    assert message in result.output


def test_cli_jsonl_wins_over_a_ledger_from_the_environment(built: Fixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HELPDESK_POLICY_LEDGER", "nosuch://x")
    result = CliRunner().invoke(main, ["report", "--format", "json", "--jsonl", str(built.jsonl_files[0])])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["source"] == "jsonl"
