"""Evidence and the closure check (issue 11, item 1).

Decisions are real ones from the native engine; every rule is shown
satisfied, missing and violated, and two properties hold for generated
requests: evidence built as the constraints say verifies, and an approver who
is the requester or an AI agent, or a callback to a contact from the request,
never does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from pydantic import ValidationError

import helpdesk_policy
from helpdesk_policy import HelpdeskPolicy, Level
from helpdesk_policy.engines.native import EVIDENCE_FIELDS as NATIVE_EVIDENCE_FIELDS
from helpdesk_policy.engines.native import INFO_EVIDENCE_FIELDS
from helpdesk_policy.evidence import (
    EVIDENCE_FIELDS,
    Approval,
    _lookup,
    Callback,
    Evidence,
    IdentityProof,
    Outcome,
    Verification,
    verify,
)
from helpdesk_policy.models import Decision, Request, parse_request
from helpdesk_policy.testing import requests

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
AT = NOW - timedelta(hours=1)


@pytest.fixture(scope="module")
def policy() -> Iterator[HelpdeskPolicy]:
    with HelpdeskPolicy(engine="native") as p:
        yield p


def _example(name: str) -> dict[str, Any]:
    (path,) = (ROOT / "examples" / "requests").glob(f"{name}-*.json")
    return json.loads(path.read_text(encoding="utf-8"))


def _decide(policy: HelpdeskPolicy, name: str) -> tuple[Request, Decision]:
    req = parse_request(_example(name))
    return req, policy.decide(req)


def _fresh_id(req: Request, prefix: str) -> str:
    """An identifier that names nobody in the request."""
    taken = {req.actor.id, req.target.id, req.actor.on_behalf_of, req.actor.runs_as, req.target.manager,
             *(req.target.owners or [])}
    n = 0
    while f"{prefix}-{n}" in taken:
        n += 1
    return f"{prefix}-{n}"


def good_evidence(req: Request, decision: Decision) -> Evidence:
    """Evidence recorded as the decision's constraints say, with everything it may ask for."""
    constraints = decision.constraints
    proof = IdentityProof(method="phishing_resistant", verified_by=_fresh_id(req, "hd-agent"),
                          verified_by_type="human", at=AT)
    approval = callback = None
    if constraints is not None and constraints.approver is not None:
        a = constraints.approver
        approver = a.ids[0] if a.ids else _fresh_id(req, "approver")
        approval = Approval(approver_id=approver, approver_type="human", relationship_of_record=a.of_record, at=AT)
    if constraints is not None and constraints.callback is not None:
        c = constraints.callback
        callback = Callback(contact="+44 20 7946 0000", contact_source="directory",
                            contact_age_days=max(c.min_contact_age_days, c.contact_age_days or 0),
                            answered_by=c.ids[0] if c.ids else _fresh_id(req, "holder"),
                            answered_by_type="human", at=AT)
    denial = next((r.code for r in decision.reasons if r.level is Level.DENY), None)
    return Evidence(
        decision_id=decision.decision_id,
        input_digest=decision.input_digest,
        requester_id=req.actor.id,
        identity_proof=proof,
        approval=approval,
        callback=callback,
        authentication_event="idp:evt-0001",
        channel=req.request.channel,
        caller_contact="+44 20 7946 0999",
        denial_reason=denial,
        outcome=Outcome(status="refused" if decision.level is Level.DENY else "completed", at=AT),
        recorded_at=AT,
    )


def _item(v: Verification, check: str) -> tuple[str, str]:
    (item,) = [i for i in v.items if i.check == check]
    return item.status, item.reason


def _without(evidence: Evidence, **changes: Any) -> Evidence:
    # Validate again: the changes go through the same validation a caller's would.
    return Evidence.model_validate({**evidence.model_dump(), **changes})


# ------------------------------------------------------------------ the models


def test_the_public_names_are_exported_lazily() -> None:
    assert helpdesk_policy.Evidence is Evidence
    assert helpdesk_policy.Verification is Verification
    assert {"Evidence", "Verification"} <= set(helpdesk_policy.__all__)


def test_every_field_the_stock_policy_asks_for_can_be_recorded(policy: HelpdeskPolicy) -> None:
    asked = {f for fields in NATIVE_EVIDENCE_FIELDS.values() for f in fields} | set(INFO_EVIDENCE_FIELDS)
    assert asked == set(EVIDENCE_FIELDS)
    req, decision = _decide(policy, "02")
    full = _without(good_evidence(req, decision), denial_reason="any_reason")  # every part present
    assert all(_lookup(full, path) is not None for path in EVIDENCE_FIELDS.values())


@pytest.mark.parametrize("contact", ["+44 20 7946 0000", "+1 (555) 010-0199", "+4915112345678",
                                     "dana.ops@example.com", "a+tag@sub.example.org"])
def test_a_contact_looks_like_a_phone_number_or_an_email_address(contact: str) -> None:
    c = Callback(contact=contact, contact_source="directory", contact_age_days=40, answered_by="u-1",
                 answered_by_type="human", at=AT)
    assert c.contact == contact  # stored as given


@pytest.mark.parametrize("secret", ["123456", "hunter2", "Winter2026!", "ABCD-EFGH-IJKL", "4821 9930",
                                    "0044 20 7946 0000", "+44", "not an address@", "@example.com"])
def test_a_secret_is_no_contact(secret: str) -> None:
    with pytest.raises(ValidationError, match="phone number in international form"):
        Callback(contact=secret, contact_source="directory", contact_age_days=40, answered_by="u-1",
                 answered_by_type="human", at=AT)
    with pytest.raises(ValidationError):
        Evidence(decision_id="d", input_digest="sha256:" + "0" * 64, requester_id="u-1", caller_contact=secret,
                 recorded_at=AT)


def test_evidence_is_strict_frozen_and_canonical() -> None:
    ev = Evidence(decision_id="d", input_digest="sha256:" + "0" * 64, requester_id="U-1", recorded_at=AT)
    assert ev.requester_id == "u-1"
    with pytest.raises(ValidationError):
        ev.requester_id = "u-2"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="Extra inputs"):
        Evidence(decision_id="d", input_digest="sha256:" + "0" * 64, requester_id="u-1", recorded_at=AT,
                 password="hunter2")  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="timezone"):
        Outcome(status="completed", at=datetime(2026, 11, 30, 12, 0))
    with pytest.raises(ValidationError):
        Evidence(decision_id="d", input_digest="sha256:" + "0" * 64, requester_id="u-1", recorded_at=AT,
                 authentication_event="my otp is 123456")


# ------------------------------------------------------------------ the callback level


def test_the_callback_example_closes_with_complete_evidence(policy: HelpdeskPolicy) -> None:
    req, decision = _decide(policy, "02")
    assert decision.level is Level.CALLBACK
    v = policy.verify(decision, good_evidence(req, decision), now=NOW)
    assert v.ok and v.closable, v.problems
    assert [i.check for i in v.items] == [
        "binding", "window", "policy_revision", "requirement:identity_step_up", "requirement:manager_approval",
        "requirement:out_of_band_callback", "obligation:record_evidence", "outcome",
    ]


def test_no_callback_is_missing_and_names_the_fallback(policy: HelpdeskPolicy) -> None:
    req, decision = _decide(policy, "02")
    assert decision.constraints is not None and decision.constraints.callback is not None
    assert not decision.constraints.callback.contact_usable  # the example's contact age is unknown
    v = verify(decision, _without(good_evidence(req, decision), callback=None), now=NOW)
    status, reason = _item(v, "requirement:out_of_band_callback")
    assert status == "missing" and "manager_of_record_or_in_person" in reason
    status, reason = _item(v, "obligation:record_evidence")
    assert status == "missing" and "callback_contact, callback_contact_source, callback_answered_by" in reason
    assert not v.ok and not v.closable


@pytest.mark.parametrize(("change", "words"), [
    ({"contact_source": "request"}, "supplied in the request"),
    ({"contact_age_days": 29}, "use the fallback (manager_of_record_or_in_person)"),
    ({"answered_by": "u-99999"}, "not by the holder"),
    ({"answered_by_type": "ai_agent"}, "answered by an AI agent"),
    ({"contact": "+44 20 7946 0999"}, "the contact the request came from"),
])
def test_a_bad_callback_is_violated(policy: HelpdeskPolicy, change: dict[str, Any], words: str) -> None:
    req, decision = _decide(policy, "02")
    good = good_evidence(req, decision)
    assert good.callback is not None
    bad = _without(good, callback={**good.callback.model_dump(), **change})
    status, reason = _item(verify(decision, bad, now=NOW), "requirement:out_of_band_callback")
    assert status == "violated" and words in reason
    assert _item(verify(decision, good, now=NOW), "requirement:out_of_band_callback")[0] == "satisfied"


# ------------------------------------------------------------------ identity step-up


def test_no_identity_proof_is_missing(policy: HelpdeskPolicy) -> None:
    req, decision = _decide(policy, "02")
    v = verify(decision, _without(good_evidence(req, decision), identity_proof=None), now=NOW)
    assert _item(v, "requirement:identity_step_up")[0] == "missing"
    status, reason = _item(v, "obligation:record_evidence")
    assert status == "missing" and "identity_proof, verifier" in reason


@pytest.mark.parametrize(("change", "words"), [
    ({"method": "knowledge_questions"}, "never proves identity"),
    ({"verified_by_type": "ai_agent"}, "is an AI agent"),
    ({"verified_by": "U-20417"}, "verified their own identity"),  # the requester, in another spelling
])
def test_a_bad_identity_proof_is_violated(policy: HelpdeskPolicy, change: dict[str, Any], words: str) -> None:
    req, decision = _decide(policy, "02")
    good = good_evidence(req, decision)
    assert good.identity_proof is not None
    bad = _without(good, identity_proof={**good.identity_proof.model_dump(), **change})
    status, reason = _item(verify(decision, bad, now=NOW), "requirement:identity_step_up")
    assert status == "violated" and words in reason


@pytest.mark.parametrize("method", ["enrolled_factor_push", "phishing_resistant", "government_id_in_person",
                                    "supervised_remote_proofing"])
def test_every_acceptable_proof_satisfies_a_step_up(policy: HelpdeskPolicy, method: str) -> None:
    req, decision = _decide(policy, "02")
    good = good_evidence(req, decision)
    assert good.identity_proof is not None
    ev = _without(good, identity_proof={**good.identity_proof.model_dump(), "method": method})
    assert _item(verify(decision, ev, now=NOW), "requirement:identity_step_up")[0] == "satisfied"


# ------------------------------------------------------------------ manager approval


def test_the_manager_approval_example(policy: HelpdeskPolicy) -> None:
    # 23: a colleague disables an account: the target's manager of record approves.
    req, decision = _decide(policy, "23")
    assert decision.level is Level.MANAGER_APPROVAL
    assert decision.constraints is not None and decision.constraints.approver is not None
    assert decision.constraints.approver.ids == ["u-20310"]
    good = good_evidence(req, decision)
    assert verify(decision, good, now=NOW).closable
    v = verify(decision, _without(good, approval=None), now=NOW)
    status, reason = _item(v, "requirement:manager_approval")
    assert status == "missing" and "manager of record" in reason
    assert "requirement:out_of_band_callback" not in [i.check for i in v.items]


@pytest.mark.parametrize(("change", "words"), [
    ({"approver_id": "U-28841"}, "is the requester"),
    ({"approver_type": "ai_agent"}, "is an AI agent"),
    ({"relationship_of_record": "owner"}, "not its manager"),
    ({"relationship_of_record": "other"}, "not its manager"),
    ({"approver_id": "u-30000"}, "not among the approvers of record"),
])
def test_a_bad_approval_is_violated(policy: HelpdeskPolicy, change: dict[str, Any], words: str) -> None:
    req, decision = _decide(policy, "23")
    good = good_evidence(req, decision)
    assert good.approval is not None
    bad = _without(good, approval={**good.approval.model_dump(), **change})
    v = verify(decision, bad, now=NOW)
    status, reason = _item(v, "requirement:manager_approval")
    assert status == "violated" and words in reason
    assert not v.ok and not v.closable


def test_an_excluded_approver_is_violated_even_when_not_the_requester(policy: HelpdeskPolicy) -> None:
    # An AI agent acting for a person: that person is excluded, though not the requester.
    req, decision = _decide(policy, "23")
    excluded = decision.constraints.approver.exclude + ["u-77777"]  # type: ignore[union-attr]
    approver = decision.constraints.approver.model_copy(update={"exclude": excluded, "ids": None})  # type: ignore[union-attr]
    custom = decision.model_copy(update={"constraints": decision.constraints.model_copy(  # type: ignore[union-attr]
        update={"approver": approver})})
    good = good_evidence(req, decision)
    bad = _without(good, approval={**good.approval.model_dump(), "approver_id": "u-77777"})  # type: ignore[union-attr]
    status, reason = _item(verify(custom, bad, now=NOW), "requirement:manager_approval")
    assert status == "violated" and "may never approve" in reason
    status, reason = _item(verify(custom, good, now=NOW), "requirement:manager_approval")
    assert status == "satisfied" and "confirm them in the directory" in reason


# ------------------------------------------------------------------ self-service and deny


def test_the_self_service_example_needs_its_authentication_event(policy: HelpdeskPolicy) -> None:
    req, decision = _decide(policy, "01")
    assert decision.level is Level.SELF_SERVICE and decision.requirements == []
    ev = Evidence(decision_id=decision.decision_id, input_digest=decision.input_digest, requester_id=req.actor.id,
                  authentication_event="idp:evt-1", outcome=Outcome(status="completed", at=AT), recorded_at=AT)
    assert verify(decision, ev, now=NOW).closable
    v = verify(decision, _without(ev, authentication_event=None), now=NOW)
    status, reason = _item(v, "obligation:record_evidence")
    assert status == "missing" and "authentication_event" in reason and not v.closable


def test_a_deny_closes_when_refused_and_is_violated_when_completed(policy: HelpdeskPolicy) -> None:
    req, decision = _decide(policy, "24")
    assert decision.level is Level.DENY
    good = good_evidence(req, decision)
    v = verify(decision, good, now=NOW)
    assert v.closable, v.problems
    # An identity proof or approval changes nothing on a denial.
    assert verify(decision, _without(good, identity_proof=None, approval=None), now=NOW).closable
    done = verify(decision, _without(good, outcome={"status": "completed", "at": AT}), now=NOW)
    status, reason = _item(done, "outcome")
    assert status == "violated" and "security incident" in reason and not done.closable
    abandoned = verify(decision, _without(good, outcome={"status": "abandoned", "at": AT}), now=NOW)
    assert abandoned.ok and not abandoned.closable


def test_a_deny_records_who_called_from_where_and_why(policy: HelpdeskPolicy) -> None:
    req, decision = _decide(policy, "24")
    good = good_evidence(req, decision)
    v = verify(decision, _without(good, channel=None, caller_contact=None, denial_reason=None), now=NOW)
    status, reason = _item(v, "obligation:record_evidence")
    assert status == "missing" and "channel, caller_contact, denial_reason" in reason
    v = verify(decision, _without(good, denial_reason="made_up_reason"), now=NOW)
    status, reason = _item(v, "obligation:record_evidence")
    assert status == "violated" and "not a reason of this decision" in reason


def test_no_outcome_is_missing_and_an_allowed_refusal_does_not_close(policy: HelpdeskPolicy) -> None:
    req, decision = _decide(policy, "23")
    good = good_evidence(req, decision)
    v = verify(decision, _without(good, outcome=None), now=NOW)
    assert _item(v, "outcome")[0] == "missing" and not v.closable
    refused = verify(decision, _without(good, outcome={"status": "refused", "at": AT}), now=NOW)
    assert refused.ok and not refused.closable


# ------------------------------------------------------------------ binding, window, revision


@pytest.mark.parametrize(("change", "words"), [
    ({"decision_id": "another-decision"}, "record evidence against the decision actually acted on"),
    ({"input_digest": "sha256:" + "1" * 64}, "not the one decided"),
])
def test_evidence_for_another_decision_is_violated(policy: HelpdeskPolicy, change: dict[str, Any], words: str) -> None:
    req, decision = _decide(policy, "02")
    v = verify(decision, _without(good_evidence(req, decision), **change), now=NOW)
    status, reason = _item(v, "binding")
    assert status == "violated" and words in reason
    assert not v.closable


def test_evidence_outside_the_window_is_violated(policy: HelpdeskPolicy) -> None:
    req, decision = _decide(policy, "02")
    good = good_evidence(req, decision)
    assert _item(verify(decision, good, now=NOW, window_hours=2), "window")[0] == "satisfied"
    old = verify(decision, good, now=NOW + timedelta(hours=72, minutes=1))
    status, reason = _item(old, "window")
    assert status == "violated" and "more than 72 h old" in reason and not old.closable
    assert _item(verify(decision, good, now=NOW, window_hours=1), "window")[0] == "satisfied"  # exactly 1 h
    status, reason = _item(verify(decision, good, now=AT - timedelta(hours=1)), "window")
    assert status == "violated" and "in the future" in reason
    with pytest.raises(ValueError, match="timezone-aware"):
        verify(decision, good, now=datetime(2026, 11, 30))
    with pytest.raises(ValueError, match="window_hours"):
        verify(decision, good, now=NOW, window_hours=0)


def test_a_withdrawn_policy_revision_is_violated(policy: HelpdeskPolicy) -> None:
    req, decision = _decide(policy, "02")
    good = good_evidence(req, decision)
    v = policy.verify(decision, good, now=NOW, withdrawn_revisions={policy.policy_revision})
    status, reason = _item(v, "policy_revision")
    assert status == "violated" and "decide the request again" in reason and not v.closable
    assert policy.verify(decision, good, now=NOW, withdrawn_revisions={"sha256:" + "0" * 64}).closable


def test_a_requirement_no_evidence_can_show_is_missing(policy: HelpdeskPolicy) -> None:
    req, decision = _decide(policy, "01")
    odd = decision.model_copy(update={"requirements": ["biometric_match"], "obligations": [
        o.model_copy(update={"fields": [*(o.fields or []), "ticket_photo"]}) if o.code == "record_evidence" else o
        for o in decision.obligations]})
    v = verify(odd, good_evidence(req, decision), now=NOW)
    assert _item(v, "requirement:biometric_match")[0] == "missing"
    status, reason = _item(v, "obligation:record_evidence")
    assert status == "missing" and "ticket_photo cannot be recorded" in reason


# ------------------------------------------------------------------ properties


@given(req=requests())
def test_evidence_built_from_the_constraints_verifies(policy: HelpdeskPolicy, req: Request) -> None:
    decision = policy.decide(req)
    v = verify(decision, good_evidence(req, decision), now=NOW)
    assert v.ok and v.closable, v.problems
    expected = {f"requirement:{r}" for r in decision.requirements}
    assert expected <= {i.check for i in v.items}


@given(req=requests(), how=st.sampled_from(["requester", "requester_spelt_otherwise", "ai_agent"]))
def test_the_requester_or_an_ai_agent_never_approves(policy: HelpdeskPolicy, req: Request, how: str) -> None:
    decision = policy.decide(req)
    assume("manager_approval" in decision.requirements)
    good = good_evidence(req, decision)
    assert good.approval is not None
    spelt = req.actor.id.upper() if how == "requester_spelt_otherwise" and req.actor.id.isascii() else req.actor.id
    change = {"approver_type": "ai_agent"} if how == "ai_agent" else {"approver_id": spelt}
    bad = _without(good, approval={**good.approval.model_dump(), **change})
    v = verify(decision, bad, now=NOW)
    assert _item(v, "requirement:manager_approval")[0] == "violated"
    assert not v.ok and not v.closable


@given(req=requests())
def test_a_callback_to_a_contact_from_the_request_is_always_violated(policy: HelpdeskPolicy, req: Request) -> None:
    decision = policy.decide(req)
    assume("out_of_band_callback" in decision.requirements)
    good = good_evidence(req, decision)
    assert good.callback is not None
    bad = _without(good, callback={**good.callback.model_dump(), "contact_source": "request"})
    v = verify(decision, bad, now=NOW)
    assert _item(v, "requirement:out_of_band_callback")[0] == "violated"
    assert not v.ok and not v.closable


def test_the_module_doctest_runs() -> None:
    import doctest

    from helpdesk_policy import evidence

    result = doctest.testmod(evidence, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_evidence_built_without_validation_is_validated_again(policy: HelpdeskPolicy) -> None:
    # model_copy(update=...) skips validation: a contact that is no phone number or address is still refused.
    req, decision = _decide(policy, "02")
    good = good_evidence(req, decision)
    assert verify(decision, good, now=AT).ok
    forged = good.model_copy(update={"callback": good.callback.model_copy(update={"contact": "call me maybe"})})
    with pytest.raises(ValidationError):
        verify(decision, forged)


# ------------------------------------------------------------------ no credentials in evidence ids

_KEY = "ghp_" + "1a2B3c4D5e6F7g8H9i0JkLmNoPqRsTuVwXyZ"  # assembled: not a leak to a scanner
_AWS = "AKIA" + "IOSFODNN7EXAMPLE"


def _base(**changes: Any) -> dict[str, Any]:
    return {"decision_id": "d-1", "input_digest": "sha256:" + "0" * 64, "requester_id": "u-1",
            "recorded_at": AT, **changes}


_PROOF = {"method": "phishing_resistant", "verified_by": "hd-1", "verified_by_type": "human", "at": AT}
_APPROVAL = {"approver_id": "u-77", "approver_type": "human", "relationship_of_record": "manager", "at": AT}
_CALL = {"contact": "+44 20 7946 0000", "contact_source": "directory", "contact_age_days": 400,
         "answered_by": "u-1", "answered_by_type": "human", "at": AT}
_FALLBACK = {"fallback": "manager_of_record", "confirmed_by": "u-77", "confirmed_by_type": "human", "at": AT}


@pytest.mark.parametrize(("changes", "field"), [
    ({"requester_id": _AWS}, "requester_id"),
    ({"requester_id": "123456"}, "requester_id"),
    ({"decision_id": _KEY}, "decision_id"),
    ({"authentication_event": "otp:123456"}, "authentication_event"),
    ({"authentication_event": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.abcdefgh"}, "authentication_event"),
    ({"identity_proof": {**_PROOF, "verified_by": "7f3k-9d2m-x8q1"}}, "identity_proof.verified_by"),
    ({"approval": {**_APPROVAL, "approver_id": _KEY}}, "approval.approver_id"),
    ({"callback": {**_CALL, "answered_by": "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc"}}, "callback.answered_by"),
    ({"callback": {**_FALLBACK, "confirmed_by": "1234 5678"}}, "callback.confirmed_by"),
])
def test_an_id_field_refuses_a_credential_naming_the_field_never_the_value(changes: dict[str, Any],
                                                                          field: str) -> None:
    with pytest.raises(ValidationError) as info:
        Evidence.model_validate(_base(**changes))
    (error,) = info.value.errors()
    assert ".".join(str(p) for p in error["loc"]) == field and error["type"] == "credential"
    shown = str(info.value)
    assert field.split(".")[-1] in shown and "credential" in shown
    secret = next(v for v in _leaves(changes))
    assert secret not in shown and secret.lower() not in shown


def _leaves(changes: dict[str, Any]) -> list[str]:
    # The one credential-shaped value in the changes.
    from helpdesk_policy.credentials import looks_like_credential

    values: list[Any] = list(changes.values())
    found = []
    while values:
        v = values.pop()
        if isinstance(v, dict):
            values.extend(v.values())
        elif isinstance(v, str) and looks_like_credential(v):
            found.append(v)
    assert len(found) == 1
    return found


def test_ordinary_ids_are_still_accepted() -> None:
    ev = Evidence.model_validate(_base(requester_id="alice@example.com", authentication_event="idp:evt-0001",
                                       identity_proof=_PROOF, approval=_APPROVAL, callback=_CALL,
                                       decision_id="d1c98fca-6cfc-426d-b214-471adbf0c1f3"))
    assert ev.requester_id == "alice@example.com"


# ------------------------------------------------------------------ the callback fallback


def _manager_request() -> Request:
    doc = _example("02")
    doc["target"]["manager"] = "u-77"  # the manager of record; the contact age stays unknown
    return parse_request(doc)


def _fallback_evidence(req: Request, decision: Decision, **fallback: Any) -> Evidence:
    good = good_evidence(req, decision)
    return _without(good, callback={**_FALLBACK, **fallback})


def test_a_callback_records_a_call_or_a_fallback_never_half_of_either() -> None:
    with pytest.raises(ValidationError, match="missing: answered_by, answered_by_type"):
        Callback(contact="+44 20 7946 0000", contact_source="directory", contact_age_days=40, at=AT)
    with pytest.raises(ValidationError, match="missing: confirmed_by_type"):
        Callback(fallback="in_person", confirmed_by="hd-1", at=AT)
    with pytest.raises(ValidationError, match="remove contact"):
        Callback(**{**_FALLBACK, "contact": "+44 20 7946 0000"})
    with pytest.raises(ValidationError, match="confirmed_by belong to a fallback"):
        Callback(**{**_CALL, "confirmed_by": "u-77"})
    with pytest.raises(ValidationError):
        Callback(**{**_FALLBACK, "fallback": "a_friend"})
    assert Callback(**_FALLBACK).fallback == "manager_of_record"


@pytest.mark.parametrize(("fallback", "words"), [
    ({}, "confirmed by the manager of record 'u-77'"),
    ({"fallback": "in_person", "confirmed_by": "hd-desk-3"}, "identity checked in person by 'hd-desk-3'"),
])
def test_a_fallback_stands_in_for_the_callback_when_the_contact_is_not_usable(
        policy: HelpdeskPolicy, fallback: dict[str, Any], words: str) -> None:
    req = _manager_request()
    decision = policy.decide(req)
    assert decision.constraints.callback.contact_usable is False  # type: ignore[union-attr]
    v = verify(decision, _fallback_evidence(req, decision, **fallback), now=NOW)
    status, reason = _item(v, "requirement:out_of_band_callback")
    assert status == "satisfied" and "contact of record was not usable" in reason and words in reason
    # The record_evidence fields about the callback count as recorded by the fallback.
    assert _item(v, "obligation:record_evidence")[0] == "satisfied"
    assert v.closable, v.problems


def test_a_fallback_alone_is_missing_when_the_contact_is_usable(policy: HelpdeskPolicy) -> None:
    doc = _example("02")
    doc["target"].update(manager="u-77", contact_age_days=400)
    req = parse_request(doc)
    decision = policy.decide(req)
    assert decision.constraints.callback.contact_usable is True  # type: ignore[union-attr]
    v = verify(decision, _fallback_evidence(req, decision), now=NOW)
    status, reason = _item(v, "requirement:out_of_band_callback")
    assert status == "missing" and "usable contact of record" in reason and "call that contact back" in reason
    assert not v.closable
    # The call itself satisfies it.
    assert verify(decision, good_evidence(req, decision), now=NOW).closable


def test_a_fallback_with_no_callback_constraint_is_missing(policy: HelpdeskPolicy) -> None:
    req = _manager_request()
    decision = policy.decide(req)
    bare = decision.model_copy(update={"constraints": decision.constraints.model_copy(  # type: ignore[union-attr]
        update={"callback": None})})
    status, reason = _item(verify(bare, _fallback_evidence(req, decision), now=NOW), "requirement:out_of_band_callback")
    assert status == "missing" and "does not say the contact of record was unusable" in reason


@pytest.mark.parametrize(("fallback", "words"), [
    ({"confirmed_by_type": "ai_agent"}, "given by an AI agent"),
    ({"confirmed_by": "U-20417"}, "requester confirmed their own request"),  # the requester, spelt otherwise
    ({"fallback": "in_person", "confirmed_by": "u-20417"}, "requester confirmed their own request"),
    ({"confirmed_by": "u-30000"}, "is not the manager of record ['u-77']"),
])
def test_a_bad_fallback_is_violated(policy: HelpdeskPolicy, fallback: dict[str, Any], words: str) -> None:
    req = _manager_request()
    decision = policy.decide(req)
    v = verify(decision, _fallback_evidence(req, decision, **fallback), now=NOW)
    status, reason = _item(v, "requirement:out_of_band_callback")
    assert status == "violated" and words in reason, reason
    assert not v.closable


def test_the_account_holder_is_not_their_own_manager_of_record(policy: HelpdeskPolicy) -> None:
    req = _manager_request()
    decision = policy.decide(req)
    constraints = decision.constraints
    assert constraints is not None and constraints.callback is not None
    # Someone else's account: the holder u-555 confirming as "manager of record".
    other = decision.model_copy(update={"constraints": constraints.model_copy(update={
        "callback": constraints.callback.model_copy(update={"ids": ["u-555"]})})})
    v = verify(other, _fallback_evidence(req, decision, confirmed_by="u-555"), now=NOW)
    status, reason = _item(v, "requirement:out_of_band_callback")
    assert status == "violated" and "is the account holder" in reason


def test_a_fallback_with_no_manager_named_asks_to_confirm_them(policy: HelpdeskPolicy) -> None:
    req, decision = _decide(policy, "02")  # no target.manager: the decision names no approver
    v = verify(decision, _fallback_evidence(req, decision, confirmed_by="u-88"), now=NOW)
    status, reason = _item(v, "requirement:out_of_band_callback")
    assert status == "satisfied" and "named no manager: confirm them in the directory" in reason


# ------------------------------------------------------------------ not the recovered factor


def test_a_callback_to_the_factor_being_recovered_is_violated(policy: HelpdeskPolicy) -> None:
    req, decision = _decide(policy, "02")
    assert decision.constraints.callback.not_the_recovered_factor  # type: ignore[union-attr]
    good = good_evidence(req, decision)  # calls +44 20 7946 0000
    same = _without(good, recovered_factor_contact="+44 (20) 7946-0000")  # the same number, spelt otherwise
    status, reason = _item(verify(decision, same, now=NOW), "requirement:out_of_band_callback")
    assert status == "violated" and "callback went to the factor being recovered" in reason
    assert "use the fallback (manager_of_record_or_in_person)" in reason
    other = _without(good, recovered_factor_contact="+44 20 7946 0111")
    status, reason = _item(verify(decision, other, now=NOW), "requirement:out_of_band_callback")
    assert status == "satisfied" and "confirm it was not the one called" not in reason


def test_an_unstated_recovered_factor_is_noted_not_missing(policy: HelpdeskPolicy) -> None:
    req, decision = _decide(policy, "02")
    status, reason = _item(verify(decision, good_evidence(req, decision), now=NOW), "requirement:out_of_band_callback")
    assert status == "satisfied" and "confirm it was not the one called" in reason


def test_the_recovered_factor_does_not_matter_when_the_constraint_does_not_say_so(policy: HelpdeskPolicy) -> None:
    req, decision = _decide(policy, "02")
    constraints = decision.constraints
    plain = decision.model_copy(update={"constraints": constraints.model_copy(update={  # type: ignore[union-attr]
        "callback": constraints.callback.model_copy(update={"not_the_recovered_factor": False})})})  # type: ignore[union-attr]
    same = _without(good_evidence(req, decision), recovered_factor_contact="+44 20 7946 0000")
    status, reason = _item(verify(plain, same, now=NOW), "requirement:out_of_band_callback")
    assert status == "satisfied" and "recovered" not in reason


def test_the_recovered_factor_must_be_a_contact() -> None:
    with pytest.raises(ValidationError, match="phone number in international form"):
        Evidence.model_validate(_base(recovered_factor_contact="my old phone"))


# ------------------------------------------------------------------ the window from the config


def test_verify_takes_its_window_from_the_config() -> None:
    from helpdesk_policy.config import load_config
    from helpdesk_policy.evidence import DEFAULT_WINDOW_HOURS

    assert load_config().evidence_window_hours == DEFAULT_WINDOW_HOURS == 72
    req = parse_request(_example("02"))
    late = NOW + timedelta(hours=30)  # AT is 31 h before
    with HelpdeskPolicy(engine="native") as stock, \
            HelpdeskPolicy(engine="native", config={"evidence_window_hours": 24}) as tight:
        for p, expected in ((stock, "satisfied"), (tight, "violated")):
            decision = p.decide(req)
            v = p.verify(decision, good_evidence(req, decision), now=late)
            assert _item(v, "window")[0] == expected
        decision = tight.decide(req)
        status, reason = _item(tight.verify(decision, good_evidence(req, decision), now=late), "window")
        assert "more than 24 h old" in reason
        # An explicit window_hours still wins.
        assert _item(tight.verify(decision, good_evidence(req, decision), now=late, window_hours=48),
                     "window")[0] == "satisfied"


@pytest.mark.parametrize("value", [0, 721, -1, "72", 1.5, True])
def test_the_evidence_window_is_checked(value: Any) -> None:
    from helpdesk_policy import InvalidConfigError
    from helpdesk_policy.config import load_config

    with pytest.raises(InvalidConfigError) as info:
        load_config({"evidence_window_hours": value})
    assert [e.path for e in info.value.errors] == ["evidence_window_hours"]
    assert load_config({"evidence_window_hours": 720}).evidence_window_hours == 720
