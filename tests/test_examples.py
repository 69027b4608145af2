"""The example requests decide as a security reviewer would expect, under every engine.

``EXPECTED`` is the reviewed table: for each file in ``examples/requests/``, the
level, the reason codes that must be among the reasons (the ones that carry the
decision), and the exact obligations (codes and parameters). Both the ``rego``
and the ``native`` engine must produce it, and the same verdict as each other.
``examples/README.md`` documents the same table; a test keeps the two in step.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from helpdesk_policy import HelpdeskPolicy, Level
from helpdesk_policy.models import Actor, Context, Request, RequestInfo, Target

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
REQUESTS = EXAMPLES / "requests"

SS, SU, MA, CB, DENY = (Level.SELF_SERVICE, Level.STEP_UP, Level.MANAGER_APPROVAL, Level.CALLBACK, Level.DENY)

# Obligations as (code, within_hours or None); record_evidence fields follow from the level.
NOTIFY = ("notify_identity_owner", None)
REVOKE_24 = ("revoke_previous_credential", 24)
REVOKE_NOW = ("revoke_previous_credential", 0)  # a lost factor or a leaked credential
TERMINATE = ("terminate_sessions", None)
PREVIOUS_CONTACT = ("notify_previous_contact", None)
TIME_BOUND_8 = ("time_bound_access", 8)
REVIEW_72 = ("post_incident_review", 72)


@dataclass(frozen=True)
class Expect:
    level: Level
    reasons: frozenset[str]
    obligations: frozenset[tuple[str, int | None]] = field(default_factory=frozenset)
    notify: bool = True  # every identity-changing action notifies the holder/owner


def E(level: Level, reasons: set[str], *obligations: tuple[str, int | None], notify: bool = True) -> Expect:
    return Expect(level, frozenset(reasons), frozenset(obligations), notify)


EXPECTED: dict[str, Expect] = {
    "01-portal-password-reset.json": E(SS, {"action_baseline"}, TERMINATE),
    "02-phone-mfa-reset-admin.json": E(
        CB, {"privileged_remote_recovery", "privileged_target", "risk_caller_id_mismatch",
             "requester_unauthenticated", "remote_channel_recovery", "factor_recovery_unverifiable",
             "chained_credential_change"}, REVOKE_NOW, TERMINATE),
    "03-walk-in-mfa-reset.json": E(
        SU, {"action_baseline", "factor_recovery_unverifiable", "weak_authentication"}, REVOKE_NOW, TERMINATE),
    "04-manager-role-change.json": E(MA, {"action_baseline"}),
    "05-agent-self-elevation.json": E(DENY, {"ai_agent_self_privilege"}),
    "06-chatbot-password-reset.json": E(
        MA, {"ai_agent_requester", "remote_channel_recovery", "risk_new_device"}, TERMINATE),
    "07-api-key-reissue-by-owner.json": E(
        SS, {"action_baseline", "nhi_secret_unmanaged"}, REVOKE_24, ("move_to_secrets_manager", None)),
    "08-secret-rotation-non-owner.json": E(DENY, {"nhi_requester_not_owner"}),
    "09-nhi-owner-offboarded.json": E(DENY, {"nhi_no_active_owner", "nhi_requester_not_owner"}),
    "10-service-account-no-owner.json": E(DENY, {"nhi_create_without_owner"}),
    "11-revoke-leaked-token.json": E(SS, {"action_baseline"}),
    "12-disable-offboarded-user.json": E(SS, {"action_baseline"}, TERMINATE),
    "13-password-reset-offboarded.json": E(DENY, {"target_offboarded"}),
    "14-contact-change-after-reset.json": E(
        CB, {"chained_credential_change", "factor_recovery_unverifiable"}, PREVIOUS_CONTACT),
    "15-break-glass-elevation.json": E(
        CB, {"privileged_target", "requested_privilege", "break_glass"}, TIME_BOUND_8, REVIEW_72),
    "16-unrelated-colleague-reset.json": E(DENY, {"unrelated_requester"}),
    "17-oauth-consent-tenant-wide.json": E(MA, {"oauth_consent_scope", "oauth_consent_tenant_wide"}),
    "18-vip-mfa-add-factor.json": E(MA, {"vip_target", "risk_unfamiliar_location"}),
    "19-phone-unlock-failed-verifications.json": E(CB, {"failed_verifications", "remote_channel_recovery"}),
    "20-agent-access-grant-no-principal.json": E(DENY, {"unrelated_requester", "ai_agent_no_principal"}),
    "21-chat-info-request.json": E(SS, {"action_baseline"}, notify=False),
    "22-unlock-suspended-account.json": E(MA, {"target_suspended"}),
    "23-colleague-disables-account.json": E(MA, {"containment_needs_approval"}, TERMINATE),
    "24-reconnaissance-mfa-question.json": E(DENY, {"identity_info_disclosure"}, notify=False),
    "25-oauth-consent-low-scope.json": E(SS, {"action_baseline"}),
    "26-workload-rotates-own-secret.json": E(SS, {"action_baseline"}, REVOKE_24),
    "27-admin-adds-security-key-portal.json": E(SS, {"action_baseline"}),
    "28-phone-temporary-access-pass.json": E(
        MA, {"factor_recovery_unverifiable", "remote_channel_recovery"}, TIME_BOUND_8),
}

EVIDENCE = {
    SS: ["requester", "authentication_event", "outcome"],
    SU: ["identity_proof", "verifier", "outcome"],
    MA: ["identity_proof", "verifier", "approver", "outcome"],
    CB: ["identity_proof", "verifier", "approver", "callback_contact", "callback_contact_source",
         "callback_answered_by", "outcome"],
    DENY: ["requester", "channel", "caller_contact", "denial_reason", "outcome"],
}
#: A self-service information request changes nothing: no authentication event to keep.
EVIDENCE_INFO_SELF_SERVICE = ["requester", "outcome"]

#: Reasons that must never appear on a containment action (it must stay fast).
RISK_PREFIX = "risk_"


def _load(name: str) -> dict[str, Any]:
    return json.loads((REQUESTS / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def engines() -> Iterator[dict[str, HelpdeskPolicy]]:
    out = {"rego": HelpdeskPolicy(engine="rego"), "native": HelpdeskPolicy(engine="native")}
    yield out
    for p in out.values():
        p.close()


def test_the_table_covers_every_example_file() -> None:
    files = sorted(p.name for p in REQUESTS.glob("*.json"))
    assert files == sorted(EXPECTED), "examples/requests and EXPECTED disagree"
    assert len(files) >= 28


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_decides_as_reviewed(name: str, engines: dict[str, HelpdeskPolicy]) -> None:
    want = EXPECTED[name]
    doc = _load(name)
    decisions = {engine: policy.decide(doc) for engine, policy in engines.items()}
    assert decisions["rego"].parity_key() == decisions["native"].parity_key(), "rego and native disagree"
    for engine, d in decisions.items():
        ctx = f"{name} under {engine}"
        assert d.engine == engine and not d.degraded, ctx
        assert d.level is want.level, f"{ctx}: {d.level.value} ({[r.code for r in d.reasons]})"
        assert d.allowed is (want.level is not DENY), ctx
        codes = {r.code for r in d.reasons}
        assert want.reasons <= codes, f"{ctx}: missing {sorted(want.reasons - codes)}"
        routine = ("record_evidence", "notify_identity_owner")
        got = {(o.code, o.within_hours) for o in d.obligations if o.code not in routine}
        assert got == set(want.obligations), ctx
        assert any(o.code == "notify_identity_owner" for o in d.obligations) is want.notify, ctx
        (evidence,) = [o for o in d.obligations if o.code == "record_evidence"]
        info = doc["request"]["action"] == "info_request" and want.level is SS
        assert evidence.fields == (EVIDENCE_INFO_SELF_SERVICE if info else EVIDENCE[want.level]), ctx
        # The notification goes to the holder, an NHI's owners, or NHI governance when it has no active owner.
        for o in d.obligations:
            if o.code == "notify_identity_owner":
                nhi = doc["target"]["type"] != "human"
                ownerless = nhi and not (doc["target"]["owners"] and doc["target"]["owner_active"] is True)
                assert o.to == ("nhi-governance" if ownerless else "owners" if nhi else "holder"), ctx


@pytest.mark.parametrize("name", sorted(n for n, e in EXPECTED.items() if e.level is DENY))
def test_every_deny_names_a_formal_process(name: str, engines: dict[str, HelpdeskPolicy]) -> None:
    d = engines["native"].decide(_load(name))
    deny_messages = [r.message for r in d.reasons if r.level is DENY]
    assert deny_messages
    process = re.compile(r"process|transfer|owner .*request|must ask|name an accountable owner|refer the requester to",
                         re.I)
    assert all(process.search(m) for m in deny_messages), deny_messages
    # A deny never carries an obligation to act (revoke, rotate, time-bound...).
    assert {o.code for o in d.obligations} <= {"record_evidence", "notify_identity_owner"}


def test_containment_examples_ignore_risk_signals(engines: dict[str, HelpdeskPolicy]) -> None:
    # The leaked-token revocation carries leaked_credential and off_hours: they must not slow it.
    d = engines["rego"].decide(_load("11-revoke-leaked-token.json"))
    assert not [r.code for r in d.reasons if r.code.startswith(RISK_PREFIX)]


_SECTIONS: dict[str, type[BaseModel]] = {"request": RequestInfo, "actor": Actor, "target": Target, "context": Context}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_sets_every_spec_field(name: str) -> None:
    doc = _load(name)
    assert set(doc) == set(Request.model_fields)
    for section, model in _SECTIONS.items():
        assert set(doc[section]) == set(model.model_fields), f"{name}: {section} fields"
    # Realistic, not placeholder: a justification and a timestamp on every request.
    assert doc["request"]["justification"] and doc["request"]["requested_at"]


def test_example_ids_and_families_are_distinct() -> None:
    docs = [_load(n) for n in sorted(EXPECTED)]
    ids = [d["request"]["id"] for d in docs]
    assert len(set(ids)) == len(ids)
    # Each example exercises its own rule family: the key reason sets differ.
    keys = [EXPECTED[n].reasons for n in sorted(EXPECTED) if EXPECTED[n].reasons != {"action_baseline"}]
    assert len(set(keys)) == len(keys)


def test_examples_readme_lists_each_example_with_its_level() -> None:
    text = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `([^`]+\.json)` \|[^|]*\| `([a-z_]+)` \|", text, re.M)}
    assert rows == {name: e.level.value for name, e in EXPECTED.items()}


def test_quickstart_runs() -> None:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart.py")],
        capture_output=True, text=True, timeout=60, cwd=ROOT, check=False,
    )
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr
    assert "level: callback" in proc.stdout
    assert "risk_caller_id_mismatch" in proc.stdout
    assert "revoke_previous_credential" in proc.stdout
    assert "rejected: request.action, request.channel, actor, target" in proc.stdout
    # Generous bound for a loaded CI machine; it runs in ~0.3 s locally.
    assert elapsed < 10, elapsed
