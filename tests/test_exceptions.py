"""Policy exceptions (issue 11, item 3): approved, time-bound overrides that never disappear silently.

The model refuses every separation-of-duty breach by field, never echoing a
value; the ledger registry grants, revokes and lists them on SQLite and on a
real PostgreSQL (see ``tests/ledger_backends.py``); real decisions through
``HelpdeskPolicy(engine="native", exceptions=registry)`` reach every status
and every ``why_not``; the decision JSON and the decision-log record carry
them; a hypothesis property checks that an exception never loosens past its
own level, never touches a deny, a degraded or an AI agent's decision, and
changes nothing when none applies.
"""

from __future__ import annotations

import asyncio
import doctest
import json
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from helpdesk_policy import HelpdeskPolicy
from helpdesk_policy import policy_exceptions as policy_exceptions_module
from helpdesk_policy.cli import main
from helpdesk_policy.config import load_config
from helpdesk_policy.engines.base import BaseEngine, checked_verdict
from helpdesk_policy.engines.native import EVIDENCE_FIELDS
from helpdesk_policy.errors import EngineUnavailableError, InvalidConfigError, LedgerError, MalformedDecisionError
from helpdesk_policy.evidence import Approval, Evidence, IdentityProof, Outcome
from helpdesk_policy.ledger import Event, ExceptionError, ExceptionRegistry, LedgerStore
from helpdesk_policy.ledger import exceptions as ledger_exceptions_module
from helpdesk_policy.levels import Level
from helpdesk_policy.models import Decision, ExceptionEffect, Request, parse_request
from helpdesk_policy.policy_exceptions import (
    InvalidExceptionError,
    PolicyException,
    RevokedException,
    apply_exceptions,
    parse_exception,
)
from helpdesk_policy.testing import requests
from ledger_backends import store, url  # noqa: E402, F401 - tests/ is on sys.path; the ledger fixtures, on both backends

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "requests"


def _example(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / name).read_text(encoding="utf-8"))


#: 02 without its caller-ID mismatch and urgency: an administrator's MFA reset
#: by phone, a callback (privileged tier 2, no credential-change history).
ADMIN_PHONE_RESET = _example("02-phone-mfa-reset-admin.json")
ADMIN_PHONE_RESET["context"]["risk_signals"] = []
#: 02 as it is: a caller-ID mismatch (a high-risk signal) on the same request.
ADMIN_PHONE_RESET_SPOOFED = _example("02-phone-mfa-reset-admin.json")
PHONE_TAP = _example("28-phone-temporary-access-pass.json")          # manager_approval, u-44310
OFFBOARDED_RESET = _example("13-password-reset-offboarded.json")     # deny, u-35880
CHATBOT_RESET = _example("06-chatbot-password-reset.json")           # ai_agent actor, manager_approval, u-51876
MANAGER_ROLE_CHANGE = _example("04-manager-role-change.json")        # manager_approval, u-30577
FAILED_UNLOCK = _example("19-phone-unlock-failed-verifications.json")  # callback, 3 failed verifications

NOW = datetime.now(timezone.utc)


def _exc(**changes: Any) -> dict[str, Any]:
    """An exception for ADMIN_PHONE_RESET (u-20417, mfa_reset by phone), valid unless changed."""
    doc: dict[str, Any] = {
        "id": "EXC-2026-0042", "target_id": "u-20417", "action": "mfa_reset", "channels": ["phone"],
        "level": "manager_approval", "requested_by": "u-30001", "reason": "travel_no_callback_contact",
        "reference": "RISK-2026-117", "approved_by": "u-40002", "approver_type": "human",
        "approved_at": NOW - timedelta(hours=1), "expires_at": NOW + timedelta(hours=47),
    }
    doc.update(changes)
    return doc


def _without_provenance(decision: Decision) -> dict[str, Any]:
    doc = decision.to_dict()
    doc.pop("decision_id")
    return doc


# ------------------------------------------------------------------ fixtures




@pytest.fixture
def registry(store: LedgerStore) -> ExceptionRegistry:
    return ExceptionRegistry(store, refresh_s=3600)


@pytest.fixture(scope="module")
def plain() -> Iterator[HelpdeskPolicy]:
    with HelpdeskPolicy(engine="native") as policy:
        yield policy


def _policy(source: Any, **options: Any) -> HelpdeskPolicy:
    return HelpdeskPolicy(engine="native", exceptions=source, **options)


# ------------------------------------------------------------------ the model


def test_module_doctests_run() -> None:
    for module in (policy_exceptions_module, ledger_exceptions_module):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0 and result.attempted > 0


def test_a_valid_exception_defaults_its_start_and_canonicalises_ids() -> None:
    exc = parse_exception(_exc(target_id="U-20417", approved_by="ＵＵ-40002"))
    assert (exc.target_id, exc.approved_by) == ("u-20417", "uu-40002")
    assert exc.starts_at == exc.approved_at == NOW - timedelta(hours=1)
    assert exc.duration_hours == 48.0
    assert exc.covers("u-20417", "mfa_reset", "phone") and not exc.covers("u-20417", "mfa_reset", "chat")
    assert not exc.covers("u-20418", "mfa_reset", "phone") and not exc.covers("u-20417", "password_reset", "phone")
    anywhere = parse_exception(_exc(channels=None))
    assert all(anywhere.covers("u-20417", "mfa_reset", c) for c in ("phone", "walk_in", "chat"))


@pytest.mark.parametrize(("changes", "field", "needle"), [
    # The same person, spelled in another case: still the requester.
    ({"approved_by": "U-30001"}, "approved_by", "requester"),
    ({"approved_by": "u-20417"}, "approved_by", "identity the exception is about"),
    ({"approver_type": "ai_agent"}, "approver_type", "AI agent never satisfies an approval"),
    ({"expires_at": NOW - timedelta(hours=1)}, "expires_at", "after starts_at"),
    ({"starts_at": NOW - timedelta(hours=2)}, "starts_at", "before approved_at"),
    ({"level": "self_service"}, "level", "step_up"),
    ({"level": "deny"}, "level", "manager_approval"),
    ({"reason": "he is travelling"}, "reason", "pattern"),
    ({"reference": "see my e-mail"}, "reference", "pattern"),
    ({"channels": ["phone", "phone"]}, "channels", "twice"),
    ({"channels": []}, "channels", "at least 1"),
    ({"approved_at": datetime(2026, 11, 23, 9, 0)}, "approved_at", "time zone"),
    ({"expires_at": 1_900_000_000}, "expires_at", "date-time"),
    ({"id": "exc 42"}, "id", "pattern"),
    ({"action": "mfa_rest"}, "action", "mfa_reset"),
    ({"colour": "red"}, "colour", "Extra inputs"),
])
def test_each_refusal_names_its_field(changes: dict[str, Any], field: str, needle: str) -> None:
    with pytest.raises(InvalidExceptionError) as info:
        parse_exception(_exc(**changes))
    assert info.value.paths == [field]
    assert needle in str(info.value)


def test_every_problem_is_listed_at_once_and_no_value_is_echoed() -> None:
    secret = "Hunter2-correct-horse"
    with pytest.raises(InvalidExceptionError) as info:
        parse_exception(_exc(reason=secret, requested_by="u-40002", approver_type="ai_agent",
                             reference=f"{secret} pasted"))
    # Field errors and the separation-of-duty rules together, though fields failed.
    assert sorted(info.value.paths) == ["approved_by", "approver_type", "reason", "reference"]
    assert secret not in str(info.value) and "u-40002" not in str(info.value)
    # The model itself refuses alike (the separation-of-duty rule at its field, no value).
    with pytest.raises(ValueError) as model_info:
        PolicyException(**_exc(approved_by="u-30001"))
    assert "u-30001" not in str(model_info.value) and "approved_by" in str(model_info.value)


def test_an_unvalidated_exception_is_validated_again() -> None:
    forged = PolicyException.model_construct(**{**parse_exception(_exc()).__dict__, "approved_by": "u-30001"})
    with pytest.raises(InvalidExceptionError) as info:
        parse_exception(forged)
    assert info.value.paths == ["approved_by"]
    with pytest.raises(InvalidExceptionError):
        parse_exception(["not", "a", "mapping"])  # type: ignore[arg-type]


def test_an_effect_is_consistent() -> None:
    at = NOW + timedelta(hours=1)
    assert ExceptionEffect(id="E-1", status="applied", level_before="callback", level_after="step_up",
                           expires_at=at).why_not is None
    # Expiries read as the ledger writes times: UTC, microseconds, Z.
    effect = ExceptionEffect(id="E-1", status="expired", level_before="callback", level_after="callback",
                             expires_at="2026-11-24T10:00:00+02:00")
    assert effect.model_dump(mode="json")["expires_at"] == "2026-11-24T08:00:00.000000Z"
    for bad in (
        {"status": "applied", "level_before": "deny", "level_after": "manager_approval"},
        {"status": "applied", "level_before": "manager_approval", "level_after": "self_service"},
        {"status": "applied", "level_before": "step_up", "level_after": "step_up"},
        {"status": "expired", "level_before": "callback", "level_after": "step_up"},
        {"status": "not_applicable", "level_before": "callback", "level_after": "callback"},
        {"status": "revoked", "level_before": "callback", "level_after": "callback", "why_not": "superseded"},
    ):
        with pytest.raises(ValueError):
            ExceptionEffect(id="E-1", expires_at=at, **bad)


# ------------------------------------------------------ decisions: the contract


def test_engines_cannot_claim_an_exception(plain: HelpdeskPolicy) -> None:
    """Only the facade applies exceptions: an engine's answer is a Verdict, which has no place for one."""
    source = _StaticSource([parse_exception(_exc())])
    decision = _policy(source).decide(ADMIN_PHONE_RESET)
    assert decision.level is Level.MANAGER_APPROVAL
    raw = decision.model_dump(mode="json", include=set(Decision.model_fields) - {
        "engine", "degraded", "policy_revision", "decision_id", "input_digest", "request_id", "action", "target_id"})

    class Liar(BaseEngine):
        name = "liar"

        def evaluate(self, request: Request) -> Any:
            return raw

    with pytest.raises(MalformedDecisionError, match="exceptions"):
        checked_verdict(Liar(), raw)
    without = {k: v for k, v in raw.items() if k != "exceptions"}
    with pytest.raises(MalformedDecisionError, match="not the maximum of the reasons"):
        checked_verdict(Liar(), without)


def test_a_decision_names_one_applied_exception_or_is_refused(plain: HelpdeskPolicy) -> None:
    decision = _policy(_StaticSource([parse_exception(_exc())])).decide(ADMIN_PHONE_RESET)
    doc = decision.model_dump()
    assert Decision.model_validate(doc) == decision
    with pytest.raises(ValueError, match="not the maximum"):
        Decision.model_validate({**doc, "exceptions": []})
    with pytest.raises(ValueError, match="degraded"):
        Decision.model_validate({**doc, "degraded": True})
    twice = [doc["exceptions"][0], {**doc["exceptions"][0], "id": "EXC-other"}]
    with pytest.raises(ValueError, match="not the maximum of the reasons"):
        Decision.model_validate({**doc, "exceptions": twice})
    # Two applied at the level of the reasons: refused by the decision's own rule.
    with pytest.raises(ValueError, match="at most one"):
        Decision.model_validate({**doc, "level": "callback", "allowed": True, "playbook": "mfa-reset-callback",
                                 "requirements": Level.CALLBACK.requirements, "constraints": None,
                                 "exceptions": twice})
    with pytest.raises(ValueError, match="policy_exception_applied"):
        Decision.model_validate({**doc, "reasons": [r for r in doc["reasons"]
                                                    if r["code"] != "policy_exception_applied"]})
    untouched = plain.decide(ADMIN_PHONE_RESET).model_dump()
    stated = [r for r in doc["reasons"] if r["code"] == "policy_exception_applied"]
    with pytest.raises(ValueError, match="needs an applied exception"):
        Decision.model_validate({**untouched, "reasons": untouched["reasons"] + stated})


class _StaticSource:
    def __init__(self, items: list[PolicyException]) -> None:
        self.items = items
        self.calls: list[tuple[str, str]] = []

    def exceptions_for(self, target_id: str, action: str) -> list[PolicyException]:
        self.calls.append((target_id, action))
        return [e for e in self.items if e.target_id == target_id and e.action.value == action]


def test_an_admins_phone_reset_goes_from_callback_to_manager_approval(plain: HelpdeskPolicy) -> None:
    before = plain.decide(ADMIN_PHONE_RESET)
    assert before.level is Level.CALLBACK and before.constraints.callback is not None  # type: ignore[union-attr]
    source = _StaticSource([parse_exception(_exc())])
    after = _policy(source).decide(ADMIN_PHONE_RESET)
    assert source.calls == [("u-20417", "mfa_reset")]
    assert (after.level, after.allowed, after.requirements) == (
        Level.MANAGER_APPROVAL, True, ["identity_step_up", "manager_approval"])
    assert after.playbook == "mfa-reset-manager-approval"
    # What the policy decided stays visible: every reason, plus the exception's.
    assert [r.code for r in after.reasons if r.code != "policy_exception_applied"] == [r.code for r in before.reasons]
    (applied,) = [r for r in after.reasons if r.code == "policy_exception_applied"]
    assert applied.level is Level.MANAGER_APPROVAL
    for needle in ("EXC-2026-0042", "travel_no_callback_contact", "RISK-2026-117", "from callback to manager_approval"):
        assert needle in applied.message
    for person in ("u-30001", "u-40002", "u-20417"):  # who asked, who approved, whom: in the ledger, not here
        assert person not in applied.message
    assert "CISA-AA23-320A" in applied.refs and "NIST-CSF-2.0:ID.RA-07" in applied.refs
    # The approver constraint stays (the level needs approval); the callback goes.
    assert after.constraints.approver == before.constraints.approver  # type: ignore[union-attr]
    assert after.constraints.callback is None  # type: ignore[union-attr]
    # Every obligation stays; the evidence asked for is the final level's.
    assert [o.code for o in after.obligations] == [o.code for o in before.obligations]
    (record,) = [o for o in after.obligations if o.code == "record_evidence"]
    assert record.fields == EVIDENCE_FIELDS[Level.MANAGER_APPROVAL] == [
        "identity_proof", "verifier", "approver", "outcome"]
    assert [e.model_dump(mode="json") for e in after.exceptions] == [{
        "id": "EXC-2026-0042", "status": "applied", "level_before": "callback", "level_after": "manager_approval",
        "expires_at": (NOW + timedelta(hours=47)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "why_not": None}]
    assert Decision.model_validate(after.model_dump()) == after


def test_the_lowered_decision_closes_with_the_evidence_its_level_asks_for(plain: HelpdeskPolicy) -> None:
    before = plain.decide(ADMIN_PHONE_RESET)
    after = _policy(_StaticSource([parse_exception(_exc())])).decide(ADMIN_PHONE_RESET)
    at = datetime.now(timezone.utc)

    def evidence(decision: Decision) -> Evidence:
        return Evidence(
            decision_id=decision.decision_id, input_digest=decision.input_digest, requester_id="u-20417",
            identity_proof=IdentityProof(method="government_id_in_person", verified_by="hd-agent-7",
                                         verified_by_type="human", at=at),
            approval=Approval(approver_id="u-manager-9", approver_type="human", relationship_of_record="manager",
                              at=at),
            outcome=Outcome(status="completed", at=at), recorded_at=at)

    assert plain.verify(after, evidence(after)).closable
    # The policy's own decision still needs the callback it asked for.
    assert not plain.verify(before, evidence(before)).closable


def test_a_step_up_exception_drops_the_approval(plain: HelpdeskPolicy) -> None:
    exc = parse_exception(_exc(id="EXC-TAP", target_id="u-44310", action="temporary_access_pass", level="step_up"))
    before = plain.decide(PHONE_TAP)
    after = _policy(_StaticSource([exc])).decide(PHONE_TAP)
    assert (before.level, after.level) == (Level.MANAGER_APPROVAL, Level.STEP_UP)
    assert after.constraints is not None and after.constraints.approver is None and after.constraints.callback is None
    assert after.playbook == "temporary-access-pass-step-up"
    (record,) = [o for o in after.obligations if o.code == "record_evidence"]
    assert record.fields == EVIDENCE_FIELDS[Level.STEP_UP]
    # A time-bound pass stays time-bound: the stricter decision's obligations all apply.
    assert {o.code for o in before.obligations} == {o.code for o in after.obligations}


@pytest.mark.parametrize(("request_doc", "exception", "why_not"), [
    (OFFBOARDED_RESET, {"target_id": "u-35880", "action": "password_reset"}, "deny_not_overridable"),
    (CHATBOT_RESET, {"target_id": "u-51876", "action": "password_reset", "channels": ["chat"], "level": "step_up"},
     "ai_agent_actor"),
    (ADMIN_PHONE_RESET_SPOOFED, {}, "high_risk_signal"),
    (FAILED_UNLOCK, {"target_id": "u-47654", "action": "account_unlock"}, "high_risk_signal"),
    (MANAGER_ROLE_CHANGE, {"target_id": "u-30577", "action": "role_change", "channels": None}, "not_lower"),
    (ADMIN_PHONE_RESET, {"starts_at": NOW + timedelta(hours=2)}, "not_started"),
])
def test_why_an_exception_did_not_apply(plain: HelpdeskPolicy, request_doc: dict[str, Any],
                                         exception: dict[str, Any], why_not: str) -> None:
    before = plain.decide(request_doc)
    after = _policy(_StaticSource([parse_exception(_exc(**exception))])).decide(request_doc)
    assert _without_provenance(after) == {**_without_provenance(before), "exceptions": [{
        "id": "EXC-2026-0042", "status": "not_applicable", "level_before": before.level.value,
        "level_after": before.level.value, "expires_at": after.exceptions[0].expires_at.strftime(
            "%Y-%m-%dT%H:%M:%S.%fZ"), "why_not": why_not}]}


def test_a_degraded_decision_is_never_lowered() -> None:
    class Down(BaseEngine):
        name = "down"

        def evaluate(self, request: Request) -> Any:
            raise EngineUnavailableError("unreachable", engine=self.name)

    policy = HelpdeskPolicy(engine=Down(), exceptions=_StaticSource([parse_exception(_exc())]))
    decision = policy.decide(ADMIN_PHONE_RESET)
    assert (decision.engine, decision.degraded, decision.level) == ("native", True, Level.CALLBACK)
    assert [(e.status, e.why_not) for e in decision.exceptions] == [("not_applicable", "degraded_decision")]


def test_the_least_loosening_exception_applies_and_the_others_are_superseded() -> None:
    items = [parse_exception(_exc(id="EXC-B", level="step_up")),
             parse_exception(_exc(id="EXC-C")),
             parse_exception(_exc(id="EXC-A")),  # same level as EXC-C: the smaller id wins
             parse_exception(_exc(id="EXC-Z", channels=["walk_in"]))]  # another channel: not touched
    decision = _policy(_StaticSource(items)).decide(ADMIN_PHONE_RESET)
    assert decision.level is Level.MANAGER_APPROVAL
    assert [(e.id, e.status, e.why_not) for e in decision.exceptions] == [
        ("EXC-A", "applied", None), ("EXC-B", "not_applicable", "superseded"),
        ("EXC-C", "not_applicable", "superseded")]


def test_a_stricter_exception_in_force_keeps_the_policys_level() -> None:
    """Least loosening wins even when it is no loosening at all: nothing applies."""
    items = [parse_exception(_exc(id="EXC-MA", target_id="u-44310", action="temporary_access_pass")),
             parse_exception(_exc(id="EXC-SU", target_id="u-44310", action="temporary_access_pass", level="step_up"))]
    decision = _policy(_StaticSource(items)).decide(PHONE_TAP)  # manager_approval by the policy
    assert decision.level is Level.MANAGER_APPROVAL
    assert [(e.id, e.status, e.why_not) for e in decision.exceptions] == [
        ("EXC-MA", "not_applicable", "not_lower"), ("EXC-SU", "not_applicable", "superseded")]


def test_an_exception_for_another_channel_leaves_the_decision_byte_identical(plain: HelpdeskPolicy) -> None:
    before = plain.decide(ADMIN_PHONE_RESET)
    after = _policy(_StaticSource([parse_exception(_exc(channels=["walk_in"]))])).decide(ADMIN_PHONE_RESET)
    assert after.exceptions == []
    assert after.to_json().replace(after.decision_id, "") == before.to_json().replace(before.decision_id, "")
    assert "exceptions" not in after.to_dict()


def test_the_policy_cap_is_applied_again_at_decision_time() -> None:
    long = parse_exception(_exc(expires_at=NOW + timedelta(hours=95)))  # 96 hours in all
    decision = _policy(_StaticSource([long])).decide(ADMIN_PHONE_RESET)  # stock cap: 72 h
    assert [(e.status, e.why_not) for e in decision.exceptions] == [("not_applicable", "exceeds_policy_max")]
    assert decision.level is Level.CALLBACK
    wider = _policy(_StaticSource([long]), config={"exception_max_hours": 96}).decide(ADMIN_PHONE_RESET)
    assert wider.level is Level.MANAGER_APPROVAL


def test_expired_and_revoked_exceptions_are_reported_and_never_apply() -> None:
    expired = parse_exception(_exc(id="EXC-OLD", approved_at=NOW - timedelta(hours=30),
                                   expires_at=NOW - timedelta(seconds=1)))
    live = parse_exception(_exc(id="EXC-REV"))
    revoked = RevokedException(**live.__dict__, revoked_at=NOW, revoked_by="u-40002", revoke_reason="traveller_back")
    decision = _policy(_StaticSource([expired, revoked])).decide(ADMIN_PHONE_RESET)
    assert decision.level is Level.CALLBACK
    assert [(e.id, e.status, e.why_not, e.level_after) for e in decision.exceptions] == [
        ("EXC-OLD", "expired", None, Level.CALLBACK), ("EXC-REV", "revoked", None, Level.CALLBACK)]
    # Revoked even for a decision judged before the revocation: it never comes back.
    req = parse_request(ADMIN_PHONE_RESET)
    again = apply_exceptions(decision.model_copy(update={"exceptions": []}), req, [revoked],
                             now=NOW - timedelta(minutes=30), max_hours=72)
    assert [e.status for e in again.exceptions] == ["revoked"]
    with pytest.raises(ValueError, match="time zone"):
        apply_exceptions(decision, req, [revoked], now=datetime(2026, 1, 1), max_hours=72)


def test_the_decision_log_record_carries_the_exceptions() -> None:
    records: list[dict[str, Any]] = []
    source = _StaticSource([parse_exception(_exc()), parse_exception(_exc(id="EXC-OLD",
                            approved_at=NOW - timedelta(hours=30), expires_at=NOW - timedelta(hours=1)))])
    decision = _policy(source, log_sink=records.append).decide(ADMIN_PHONE_RESET)
    (record,) = records
    assert record["result"]["exceptions"] == decision.to_dict()["exceptions"]
    assert [(e["id"], e["status"]) for e in record["result"]["exceptions"]] == [
        ("EXC-2026-0042", "applied"), ("EXC-OLD", "expired")]
    assert record["result"]["level"] == "manager_approval"
    assert "policy_exception_applied" in {r["code"] for r in record["result"]["reasons"]}
    # Exception ids name no one: kept; the identities stay pseudonymised.
    assert not any(p.startswith("/result/exceptions") for p in record["masked"] + record["erased"])
    assert "u-20417" not in json.dumps(record)


def test_a_failing_source_leaves_the_decision_as_the_policy_made_it(plain: HelpdeskPolicy,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def exceptions_for(self, target_id: str, action: str) -> list[PolicyException]:
            raise LedgerError("database is down")

    policy = _policy(Broken())
    with caplog.at_level(logging.WARNING, logger="helpdesk_policy"):
        decision = policy.decide(ADMIN_PHONE_RESET)
    assert _without_provenance(decision) == _without_provenance(plain.decide(ADMIN_PHONE_RESET))
    assert policy.exception_lookup_failures == 1
    assert "deciding without exceptions" in caplog.text
    # A forged record (never validated, approved by its requester) is refused alike.
    forged = PolicyException.model_construct(**{**parse_exception(_exc()).__dict__, "approved_by": "u-30001"})
    policy = _policy(_StaticSource([forged]))
    assert policy.decide(ADMIN_PHONE_RESET).level is Level.CALLBACK
    assert policy.exception_lookup_failures == 1
    with pytest.raises(InvalidConfigError) as info:
        _policy(object())
    assert info.value.paths == ["exceptions"]


def test_adecide_and_decide_many_apply_exceptions_too() -> None:
    policy = _policy(_StaticSource([parse_exception(_exc())]))
    assert asyncio.run(policy.adecide(ADMIN_PHONE_RESET)).level is Level.MANAGER_APPROVAL
    levels = [d.level for d in policy.decide_many([ADMIN_PHONE_RESET, OFFBOARDED_RESET])]
    assert levels == [Level.MANAGER_APPROVAL, Level.DENY]
    assert [e.status for e in asyncio.run(policy.adecide_many([ADMIN_PHONE_RESET]))[0].exceptions] == ["applied"]


# ------------------------------------------------------------ the property


@st.composite
def _exceptions_for(draw: st.DrawFn, req: Request) -> list[PolicyException]:
    out = []
    for i in range(draw(st.integers(1, 3))):
        # Mostly in force now; else any window (expired, not started, longer than the cap).
        start = NOW + timedelta(hours=draw(st.one_of(st.integers(-8, -1), st.integers(-300, 5))))
        hours = draw(st.one_of(st.integers(9, 48), st.integers(1, 200)))
        channels = draw(st.one_of(st.none(), st.lists(st.sampled_from([req.request.channel.value, "walk_in", "api"]),
                                                      min_size=1, max_size=3, unique=True)))
        exc = parse_exception(_exc(
            id=f"EXC-{i}", target_id=req.target.id, action=req.request.action.value, channels=channels,
            level=draw(st.sampled_from(["step_up", "manager_approval"])), approved_at=start,
            requested_by="zz-requester", approved_by="zz-approver",
            expires_at=start + timedelta(hours=hours)))
        if draw(st.booleans()) and draw(st.booleans()):
            exc = RevokedException(**exc.__dict__, revoked_at=NOW, revoked_by="zz-approver",
                                   revoke_reason="no_longer_needed")
        out.append(exc)
    return out


#: Any request; requests an exception could lower (a person asking about an
#: active person by phone or chat, no attack signal); an AI agent's requests.
_REQUESTS = st.one_of(requests(), requests(actor_type="human", target_status="active", risk_signals=[],
                                           failed_verifications_24h=0, channel=st.sampled_from(["phone", "chat"]),
                                           target_type="human", relationship=st.sampled_from(["self", "manager"])),
                      requests(actor_type="ai_agent", target_status="active", risk_signals=[]))


@settings(max_examples=300)
@given(req=_REQUESTS, data=st.data())
def test_an_exception_never_loosens_past_its_own_level(req: Request, data: st.DataObject,
                                                       example_counts: Any) -> None:
    assume(req.target.id not in ("zz-requester", "zz-approver"))
    cfg = _PROPERTY_POLICY.config
    base = _PROPERTY_POLICY.decide(req)
    if data.draw(st.integers(0, 7)) == 7:
        base = base.model_copy(update={"degraded": True})
    candidates = data.draw(_exceptions_for(req))
    max_hours = data.draw(st.sampled_from([24, 72, 720]))
    result = apply_exceptions(base, req, candidates, now=NOW, max_hours=max_hours,
                              high_risk_signals=cfg.high_risk_signals,
                              failed_verifications_limit=cfg.failed_verifications_callback)
    assert Decision.model_validate(result.model_dump()) == result  # consistent by every rule
    matching = {c.id for c in candidates if c.covers(req.target.id, req.request.action, req.request.channel)}
    assert {e.id for e in result.exceptions} == matching  # every one it touched is reported
    applied = [e for e in result.exceptions if e.status == "applied"]
    assert len(applied) <= 1
    for c in candidates:
        # Never below an exception's own level; with several in force, the least loosening wins.
        in_force = (not isinstance(c, RevokedException) and c.start <= NOW < c.expires_at
                    and c.duration_hours <= max_hours)
        if c.id in matching and in_force:
            assert result.level >= min(base.level, Level(c.level))
        assert result.level >= min(base.level, Level.STEP_UP)
    untouchable = (base.level is Level.DENY or base.degraded or req.actor.type.value == "ai_agent"
                   or any(s in cfg.high_risk_signals for s in req.context.risk_signals)
                   or req.context.failed_verifications_24h >= cfg.failed_verifications_callback)
    example_counts["exceptions/property: examples"] += 1
    for effect in result.exceptions:
        example_counts[f"exceptions/property: {effect.status} {effect.why_not or ''}".rstrip()] += 1
    if applied:
        (effect,) = applied
        assert not untouchable
        assert result.level == effect.level_after >= Level.STEP_UP
        assert effect.level_before == base.level > result.level
        winner = next(c for c in candidates if c.id == effect.id)
        assert not isinstance(winner, RevokedException)
        assert winner.start <= NOW < winner.expires_at and winner.duration_hours <= max_hours
    else:
        assert result.model_copy(update={"exceptions": []}) == base
        assert result.level == base.level
    if untouchable:
        assert _without_provenance(result.model_copy(update={"exceptions": []})) == _without_provenance(base)


_PROPERTY_POLICY = HelpdeskPolicy(engine="native")


# ------------------------------------------------------------- the registry


def test_grant_records_the_contract_payload(registry: ExceptionRegistry, store: LedgerStore) -> None:
    granted = registry.grant(_exc())
    assert granted.starts_at == granted.approved_at
    (event,) = list(store.events("exception:EXC-2026-0042"))
    assert event.kind == "exception"
    assert event.payload == {"event": "granted", "exception": {
        "id": "EXC-2026-0042", "target_id": "u-20417", "action": "mfa_reset", "channels": ["phone"],
        "level": "manager_approval", "requested_by": "u-30001", "reason": "travel_no_callback_contact",
        "reference": "RISK-2026-117", "approved_by": "u-40002", "approver_type": "human",
        "approved_at": granted.approved_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "starts_at": granted.approved_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "expires_at": granted.expires_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}}
    assert registry.exceptions_for("U-20417", "mfa_reset") == (granted,)
    assert registry.exceptions_for("u-20417", "password_reset") == ()
    assert store.verify().ok


def test_grant_refuses_by_field(registry: ExceptionRegistry) -> None:
    def refused(**kwargs: Any) -> list[str]:
        now = kwargs.pop("now", None)
        with pytest.raises(ExceptionError) as info:
            registry.grant(_exc(**kwargs), now=now)
        return info.value.paths

    assert refused(approved_by="u-30001", approver_type="ai_agent") == ["approved_by", "approver_type"]
    assert refused(expires_at=NOW + timedelta(hours=72)) == ["expires_at"]  # 73 h > the stock 72
    assert refused(approved_at=NOW - timedelta(hours=10), expires_at=NOW - timedelta(hours=1)) == ["expires_at"]
    assert refused(approved_at=NOW + timedelta(hours=1), expires_at=NOW + timedelta(hours=2)) == ["approved_at"]
    registry.grant(_exc())
    assert refused() == ["id"]  # ids are never reused
    with pytest.raises(ExceptionError, match="granted revoked"):
        registry.grant({**_exc(id="EXC-R"), "revoked_at": NOW, "revoked_by": "u-1", "revoke_reason": "x"})
    assert [i.id for i in registry.list(include_inactive=True)] == ["EXC-2026-0042"]


def test_statuses_over_time_and_revocation(registry: ExceptionRegistry, store: LedgerStore) -> None:
    registry.grant(_exc(id="EXC-1"))
    registry.grant(_exc(id="EXC-2", approved_at=NOW, starts_at=NOW + timedelta(hours=2),
                        expires_at=NOW + timedelta(hours=20)))
    registry.grant(_exc(id="EXC-3", approved_at=NOW - timedelta(hours=10), expires_at=NOW + timedelta(hours=1)))

    def states(at: datetime, *, all_: bool = True) -> list[tuple[str, str]]:
        return [(i.id, i.status) for i in registry.list(at, include_inactive=all_)]

    assert states(NOW) == [("EXC-3", "active"), ("EXC-2", "not_started"), ("EXC-1", "active")]
    assert states(NOW, all_=False) == [("EXC-3", "active"), ("EXC-1", "active")]
    later = NOW + timedelta(hours=3)
    assert states(later) == [("EXC-3", "expired"), ("EXC-2", "active"), ("EXC-1", "active")]
    assert [i.id for i in registry.expired(later)] == ["EXC-3"]

    revoked = registry.revoke("EXC-1", by="U-40002", reason="traveller_back", at=NOW)
    assert (revoked.revoked_by, revoked.revoke_reason, revoked.revoked_at) == ("u-40002", "traveller_back", NOW)
    item = registry.get("EXC-1")
    assert item is not None and item.status == "revoked"
    assert item.to_dict()["revoked_at"] == NOW.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert registry.get("EXC-9") is None
    assert [e.payload for e in store.events("exception:EXC-1")][-1] == {
        "event": "revoked", "exception_id": "EXC-1", "revoked_by": "u-40002",
        "revoked_at": NOW.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "reason": "traveller_back"}
    with pytest.raises(ExceptionError, match="already revoked") as info:
        registry.revoke("EXC-1", by="u-40002", reason="again")
    assert info.value.paths == ["id"]
    with pytest.raises(ExceptionError, match="no exception with this id"):
        registry.revoke("EXC-9", by="u-40002", reason="traveller_back")
    with pytest.raises(ExceptionError) as bad:
        registry.revoke("EXC-2", by=" ", reason="Free text here")
    assert bad.value.paths == ["by", "reason"]
    assert store.verify().ok


def test_decisions_through_the_registry(registry: ExceptionRegistry, store: LedgerStore) -> None:
    """Every status reached through real decisions with the ledger as the source."""
    registry.grant(_exc(id="EXC-LIVE"))
    # Granted while it was still running (the grant's now), expired since.
    registry.grant(_exc(id="EXC-OLD", approved_at=NOW - timedelta(hours=10), expires_at=NOW - timedelta(hours=1)),
                   now=NOW - timedelta(hours=5))
    wide = ExceptionRegistry(store, max_hours=200)
    wide.grant(_exc(id="EXC-LONG", expires_at=NOW + timedelta(hours=150)))
    registry.grant(_exc(id="EXC-SOON", approved_at=NOW, starts_at=NOW + timedelta(hours=1)))
    policy = _policy(registry)
    decision = policy.decide(ADMIN_PHONE_RESET)
    assert decision.level is Level.MANAGER_APPROVAL
    assert [(e.id, e.status, e.why_not) for e in decision.exceptions] == [
        ("EXC-LIVE", "applied", None),
        ("EXC-LONG", "not_applicable", "exceeds_policy_max"),
        ("EXC-OLD", "expired", None),
        ("EXC-SOON", "not_applicable", "not_started"),
    ]
    assert registry.get("EXC-LONG").exceeds_max_hours  # type: ignore[union-attr]
    registry.revoke("EXC-LIVE", by="u-40002", reason="traveller_back")
    after = policy.decide(ADMIN_PHONE_RESET)  # the registry's own write refreshed its index
    assert after.level is Level.CALLBACK
    assert [(e.id, e.status) for e in after.exceptions][0] == ("EXC-LIVE", "revoked")
    assert policy.exception_lookup_failures == 0


def test_the_index_is_served_from_memory_and_refreshed(store: LedgerStore) -> None:
    reader = ExceptionRegistry(store, refresh_s=3600)
    writer = ExceptionRegistry(store)
    assert reader.exceptions_for("u-20417", "mfa_reset") == ()
    writer.grant(_exc())
    for _ in range(50):  # no ledger read per decision
        assert reader.exceptions_for("u-20417", "mfa_reset") == ()
    assert reader.refreshes == 1
    reader.refresh()
    assert [e.id for e in reader.exceptions_for("u-20417", "mfa_reset")] == ["EXC-2026-0042"]
    assert reader.refreshes == 2
    eager = ExceptionRegistry(store, refresh_s=0)
    eager.exceptions_for("u-20417", "mfa_reset")
    eager.exceptions_for("u-20417", "mfa_reset")
    assert eager.refreshes == 2
    with pytest.raises(ValueError):
        ExceptionRegistry(store, refresh_s=-1)
    with pytest.raises(ValueError):
        ExceptionRegistry(store, max_hours=0)
    assert ExceptionRegistry(store, config=load_config({"exception_max_hours": 12})).max_hours == 12
    assert ExceptionRegistry(store).max_hours == 72


def test_a_failed_refresh_drops_the_index_and_is_not_retried_at_once(store: LedgerStore) -> None:
    registry = ExceptionRegistry(store, refresh_s=3600)
    registry.grant(_exc())
    assert len(registry.exceptions_for("u-20417", "mfa_reset")) == 1

    class Down:
        calls = 0

        def __getattr__(self, name: str) -> Any:
            Down.calls += 1
            raise LedgerError("database is down")

    registry.store = Down()  # type: ignore[assignment]
    registry._invalidate()
    with pytest.raises(LedgerError, match="down"):
        registry.exceptions_for("u-20417", "mfa_reset")
    calls = Down.calls
    with pytest.raises(LedgerError, match="retrying"):
        registry.exceptions_for("u-20417", "mfa_reset")
    assert Down.calls == calls  # answered at once, not by another database call
    policy = _policy(registry)
    assert policy.decide(ADMIN_PHONE_RESET).level is Level.CALLBACK
    assert policy.exception_lookup_failures == 1


def test_unreadable_exception_events_are_logged_and_skipped(registry: ExceptionRegistry, store: LedgerStore,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    good = parse_exception(_exc(id="EXC-OK"))
    payload = policy_exceptions_module.exception_payload(good)
    store.append(Event(chain="exception:EXC-BAD", kind="exception", payload={"event": "granted"}))
    store.append(Event(chain="exception:EXC-X", kind="exception",
                       payload={"event": "granted", "exception": payload}))  # id does not match the chain
    store.append(Event(chain="exception:EXC-SOD", kind="exception", payload={"event": "granted", "exception": {
        **payload, "id": "EXC-SOD", "approved_by": "u-30001"}}))  # approved by its requester
    store.append(Event(chain="exception:EXC-NONE", kind="exception", payload={
        "event": "revoked", "exception_id": "EXC-NONE", "revoked_by": "u-1", "revoked_at": "2026-01-01T00:00:00Z",
        "reason": "x"}))
    store.append(Event(chain="exception:EXC-OK", kind="exception", payload={"event": "granted", "exception": payload}))
    store.append(Event(chain="exception:EXC-OK", kind="exception", payload={"event": "granted", "exception": {
        **payload, "level": "step_up"}}))  # granted twice: the first one counts
    store.append(Event(chain="exception:EXC-OK", kind="decision", payload={"unrelated": True}))
    with caplog.at_level(logging.WARNING, logger="helpdesk_policy"):
        items = registry.list(include_inactive=True)
    assert [(i.id, i.exception.level) for i in items] == [("EXC-OK", "manager_approval")]
    assert caplog.text.count("not a readable exception event") == 4
    assert "u-30001" not in caplog.text


# ------------------------------------------------------------------ the CLI


def _grant_args(url: str, **changes: str) -> list[str]:
    options = {"--id": "EXC-2026-0042", "--target": "u-20417", "--action": "mfa_reset", "--channel": "phone",
               "--level": "manager_approval", "--requested-by": "u-30001", "--reason": "travel_no_callback_contact",
               "--reference": "RISK-2026-117", "--approved-by": "u-40002", "--hours": "48"}
    options.update(changes)
    args = ["exceptions", "grant", "--ledger", url]
    for key, value in options.items():
        if value:
            args += [key, value]
    return args


def test_cli_grant_list_show_revoke(url: str) -> None:
    runner = CliRunner()
    granted = runner.invoke(main, _grant_args(url), catch_exceptions=False)
    assert granted.exit_code == 0, granted.output
    assert granted.stdout.startswith("granted EXC-2026-0042: mfa_reset for u-20417 at manager_approval until ")
    old = runner.invoke(main, _grant_args(url, **{"--id": "EXC-OLD", "--approved-at": "2026-01-05T09:00:00Z",
                                                  "--hours": "", "--expires": "2026-01-06T09:00:00Z"}))
    assert old.exit_code == 2 and "expires_at (--expires/--hours): is already past" in old.stderr

    listed = runner.invoke(main, ["exceptions", "list", "--ledger", url], catch_exceptions=False)
    assert listed.exit_code == 0
    line, summary = listed.stdout.splitlines()
    assert line.startswith("ACTIVE      EXC-2026-0042  u-20417  mfa_reset (phone) -> manager_approval  until ")
    assert line.endswith("(travel_no_callback_contact, RISK-2026-117)") and summary == "1 listed, 0 expired"

    later = (NOW + timedelta(hours=49)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert runner.invoke(main, ["exceptions", "list", "--ledger", url, "--now", later]).stdout == (
        "no active exceptions\n")
    every = runner.invoke(main, ["exceptions", "list", "--ledger", url, "--now", later, "--all"])
    assert every.stdout.startswith("EXPIRED     EXC-2026-0042") and every.stdout.endswith("1 listed, 1 expired\n")
    doc = json.loads(runner.invoke(main, ["exceptions", "list", "--ledger", url, "--now", later, "--all",
                                          "--json"]).stdout)
    assert (doc["expired"], doc["all"], [e["status"] for e in doc["exceptions"]]) == (1, True, ["expired"])
    assert doc["exceptions"][0]["duration_hours"] == 48.0

    shown = runner.invoke(main, ["exceptions", "show", "--ledger", url, "EXC-2026-0042"], catch_exceptions=False)
    assert shown.exit_code == 0 and shown.stdout.startswith("EXC-2026-0042: ACTIVE\n")
    assert "  approved_by: u-40002\n" in shown.stdout and "  channels: phone\n" in shown.stdout
    shown_json = json.loads(runner.invoke(main, ["exceptions", "show", "--ledger", url, "EXC-2026-0042",
                                                 "--json"]).stdout)
    assert (shown_json["status"], shown_json["revoked_at"], shown_json["reference"]) == (
        "active", None, "RISK-2026-117")
    missing = runner.invoke(main, ["exceptions", "show", "--ledger", url, "EXC-9"])
    assert missing.exit_code == 2 and "no policy exception 'EXC-9'" in missing.stderr

    revoked = runner.invoke(main, ["exceptions", "revoke", "--ledger", url, "EXC-2026-0042", "--by", "u-40002",
                                   "--reason", "traveller_back"], catch_exceptions=False)
    assert revoked.exit_code == 0 and revoked.stdout.startswith("revoked EXC-2026-0042 at ")
    again = runner.invoke(main, ["exceptions", "revoke", "--ledger", url, "EXC-2026-0042", "--by", "u-40002",
                                 "--reason", "traveller_back"])
    assert again.exit_code == 2 and "already revoked" in again.stderr
    assert runner.invoke(main, ["exceptions", "list", "--ledger", url, "--all"]).stdout.startswith(
        "REVOKED     EXC-2026-0042")
    assert runner.invoke(main, ["audit", "verify", "--ledger", url]).exit_code == 0


def test_cli_grant_refusals_name_fields_and_options(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    runner = CliRunner()
    sod = runner.invoke(main, _grant_args(url, **{"--approved-by": "U-30001", "--approver-type": "ai_agent"}))
    assert sod.exit_code == 2
    assert "approved_by (--approved-by): must not be the requester" in sod.stderr
    assert "approver_type (--approver-type): an AI agent never satisfies an approval" in sod.stderr
    assert "U-30001" not in sod.stderr
    over = runner.invoke(main, _grant_args(url, **{"--hours": "100"}))
    assert over.exit_code == 2 and "at most 72 (exception_max_hours)" in over.stderr
    assert runner.invoke(main, _grant_args(url, **{"--hours": "100", "--max-hours": "120"})).exit_code == 0
    both = runner.invoke(main, _grant_args(url, **{"--id": "EXC-2", "--expires": "2030-01-01T00:00:00Z"}))
    assert both.exit_code == 2 and "exactly one of --expires and --hours" in both.stderr
    naive = runner.invoke(main, _grant_args(url, **{"--id": "EXC-3", "--starts": "2030-01-01T00:00:00"}))
    assert naive.exit_code == 2 and "--starts" in naive.stderr and "time zone" in naive.stderr
    free_text = runner.invoke(main, _grant_args(url, **{"--id": "EXC-4", "--reason": "my password is hunter2"}))
    assert free_text.exit_code == 2 and "reason (--reason)" in free_text.stderr and "hunter2" not in free_text.stderr
    bad_url = runner.invoke(main, ["exceptions", "list", "--ledger", "nosuch://x"])
    assert bad_url.exit_code == 2 and "unknown ledger URL scheme" in bad_url.stderr
    bad_by = runner.invoke(main, ["exceptions", "revoke", "--ledger", url, "EXC-2026-0042", "--by", " ",
                                  "--reason", "Not A Code"])
    assert bad_by.exit_code == 2 and "by (--by)" in bad_by.stderr and "reason (--reason)" in bad_by.stderr


def test_cli_unreachable_database_exits_3() -> None:
    result = CliRunner().invoke(main, ["exceptions", "list", "--ledger",
                                       "postgresql://postgres@127.0.0.1:1/none?connect_timeout=2"])
    assert result.exit_code == 3, result.output
