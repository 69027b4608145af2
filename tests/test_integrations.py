"""Ticketing adapters: sample webhook payloads to requests, decisions written back, failing closed.

The expected requests and decisions below are written out by hand from the
sample payloads in ``examples/ticketing/`` and the directory :data:`DIRECTORY`
(never recomputed by the code under test). The Jira comments are validated
against Atlassian's own ADF JSON schema (``tests/data/adf/full.json``).
"""

from __future__ import annotations

import copy
import html
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from helpdesk_policy import HelpdeskPolicy, Level
from helpdesk_policy.errors import DocumentError, FieldError, InvalidRequestError
from helpdesk_policy.integrations import (
    SHIPPED_MAPPINGS,
    FactsUnavailableError,
    MappingDefinitionError,
    MappingError,
    PayloadFieldError,
    TicketMapping,
    checklist,
    load_mapping,
    parse_payload,
    webhook_for,
)
from helpdesk_policy.integrations.jira import adf_comment, adf_document
from helpdesk_policy.integrations.paths import PathSyntaxError, PayloadPath, PayloadShapeError
from helpdesk_policy.integrations.servicenow import work_note, work_note_update
from helpdesk_policy.integrations.zendesk import internal_note, internal_note_html
from helpdesk_policy.models import Action, Decision, parse_request

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "examples" / "ticketing"
ADF_SCHEMA = json.loads((Path(__file__).parent / "data" / "adf" / "full.json").read_text(encoding="utf-8"))

#: The directory of record the samples are decided against (what a FactsProvider answers).
DIRECTORY: dict[str, dict[str, Any]] = {
    "jane.doe": {"type": "human", "privileged": True, "privilege_tier": 2, "vip": False, "status": "active",
                 "manager": "raj.patel", "contact_age_days": 400, "roles": ["network_admin", "employee"],
                 "enrolled_factor_available": False, "recent_credential_change_hours": 2000},
    "li.wei": {"type": "human", "privileged": True, "privilege_tier": 1, "vip": False, "status": "active",
               "manager": "ana.silva", "contact_age_days": 900, "roles": ["dba", "employee"],
               "enrolled_factor_available": True, "recent_credential_change_hours": 500},
    "maria.garcia@example.com": {"type": "human", "privileged": False, "privilege_tier": 0, "vip": False,
                                 "status": "active", "roles": ["employee", "people_manager"]},
    "tom.baker@example.com": {"type": "human", "privileged": False, "privilege_tier": 0, "vip": False,
                              "status": "active", "manager": "maria.garcia@example.com", "contact_age_days": 2,
                              "enrolled_factor_available": True, "recent_credential_change_hours": 60},
    "u-30781": {"type": "human", "privileged": False, "privilege_tier": 0, "vip": False, "status": "active",
                "manager": "u-10002", "contact_age_days": 800, "roles": ["employee"],
                "enrolled_factor_available": True, "recent_credential_change_hours": 1500},
}

SAMPLE_FILES = {
    "servicenow_incident": "servicenow_incident.json",
    "servicenow_catalog": "servicenow_catalog_request.json",
    "jira_service_management": "jira_service_management.json",
    "zendesk": "zendesk.json",
}


def sample(name: str) -> dict[str, Any]:
    return parse_payload((SAMPLES / SAMPLE_FILES[name]).read_text(encoding="utf-8"), source=SAMPLE_FILES[name])


def facts(identifier: str) -> dict[str, Any] | None:
    return copy.deepcopy(DIRECTORY.get(identifier))


_NATIVE: list[HelpdeskPolicy] = []


def policy() -> HelpdeskPolicy:
    if not _NATIVE:
        _NATIVE.append(HelpdeskPolicy(engine="native"))
    return _NATIVE[0]


# ------------------------------------------------------------ the samples


#: Each sample's request, read off the payload (ticket, action, channel, who) and
#: the directory (everything about the target, the requester's roles).
EXPECTED_REQUESTS: dict[str, dict[str, Any]] = {
    "servicenow_incident": {
        "request": {"id": "INC0010234", "action": "mfa_reset", "channel": "phone",
                    "justification": "Caller says her phone was replaced over the weekend and the authenticator "
                                     "app is gone. She is on call for tonight's network change and needs access now."},
        "actor": {"id": "jane.doe", "type": "human", "relationship": "self", "authenticated": False,
                  "auth_strength": "none", "roles": ["network_admin", "employee"]},
        "target": {"id": "jane.doe", "type": "human", "privileged": True, "privilege_tier": 2, "vip": False,
                   "status": "active", "environment": "production", "manager": "raj.patel", "contact_age_days": 400},
        "context": {"risk_signals": ["caller_id_mismatch", "urgency_pressure"], "failed_verifications_24h": 0,
                    "recent_credential_change_hours": 2000.0, "enrolled_factor_available": False},
    },
    "servicenow_catalog": {
        "request": {"id": "RITM0010045", "action": "privilege_elevation", "channel": "self_service_portal",
                    "justification": "Apply the approved schema migration CHG0030012 to the production billing "
                                     "database.", "requested_privilege_tier": 2, "emergency": False},
        "actor": {"id": "li.wei", "type": "human", "relationship": "self", "authenticated": True,
                  "auth_strength": "mfa", "roles": ["dba", "employee"]},
        "target": {"id": "li.wei", "type": "human", "privileged": True, "privilege_tier": 1, "vip": False,
                   "status": "active", "environment": "production", "manager": "ana.silva", "contact_age_days": 900},
        "context": {"recent_credential_change_hours": 500.0, "enrolled_factor_available": True},
    },
    "jira_service_management": {
        "request": {"id": "ITHELP-412", "action": "access_grant", "channel": "self_service_portal",
                    "justification": "Access to the expenses app for Tom, who joined my team this week",
                    "requested_privilege_tier": 0},
        # Maria is Tom's manager of record: the relationship comes from the directory, not the ticket.
        "actor": {"id": "maria.garcia@example.com", "type": "human", "relationship": "manager",
                  "authenticated": True, "auth_strength": "mfa", "roles": ["employee", "people_manager"]},
        "target": {"id": "tom.baker@example.com", "type": "human", "privileged": False, "privilege_tier": 0,
                   "vip": False, "status": "active", "environment": "production",
                   "manager": "maria.garcia@example.com", "contact_age_days": 2},
        "context": {"recent_credential_change_hours": 60.0, "enrolled_factor_available": True},
    },
    "zendesk": {
        # The ticket number as text; the "vip_caller" tag is the caller's claim and is not read.
        "request": {"id": "48213", "action": "account_unlock", "channel": "phone",
                    "justification": "Caller says he is locked out after too many attempts and has a customer "
                                     "demo in ten minutes."},
        "actor": {"id": "u-30781", "type": "human", "relationship": "self", "authenticated": False,
                  "auth_strength": "none", "roles": ["employee"]},
        "target": {"id": "u-30781", "type": "human", "privileged": False, "privilege_tier": 0, "vip": False,
                   "status": "active", "environment": "production", "manager": "u-10002", "contact_age_days": 800},
        "context": {"risk_signals": ["urgency_pressure"], "failed_verifications_24h": 1,
                    "recent_credential_change_hours": 1500.0, "enrolled_factor_available": True},
    },
}

#: How each sample decides under the stock policy (native engine), and the reasons that carry it.
EXPECTED_DECISIONS: dict[str, tuple[Level, set[str]]] = {
    # A tier-2 admin's MFA reset by phone, caller ID mismatch, no enrolled factor left.
    "servicenow_incident": (Level.CALLBACK, {"privileged_remote_recovery", "risk_caller_id_mismatch",
                                             "factor_recovery_unverifiable", "requester_unauthenticated"}),
    # A tier-2 elevation asked for in the portal: the requested tier decides, not the holder's own tier 1.
    "servicenow_catalog": (Level.CALLBACK, {"requested_privilege"}),
    # An ordinary tier-0 access grant asked for by the manager of record.
    "jira_service_management": (Level.MANAGER_APPROVAL, {"action_baseline"}),
    # A phone unlock, unauthenticated, with urgency pressure and one failed verification.
    "zendesk": (Level.STEP_UP, {"remote_channel_recovery", "requester_unauthenticated", "risk_urgency_pressure",
                                "failed_verifications"}),
}


@pytest.mark.parametrize("name", SHIPPED_MAPPINGS)
def test_each_sample_maps_to_the_expected_request(name: str) -> None:
    mapped = load_mapping(name).map_payload(sample(name), facts)
    assert mapped.request == parse_request(EXPECTED_REQUESTS[name])
    # Where each field came from: the ticket, or the records.
    assert mapped.sources["request.channel"].startswith("payload path ")
    assert mapped.sources["target.vip"] == "the facts of record of the target (key 'vip')"
    assert mapped.sources["actor.relationship"].startswith("the relationship of record")


@pytest.mark.parametrize("name", SHIPPED_MAPPINGS)
def test_each_sample_decides_as_expected(name: str) -> None:
    decision = policy().decide(load_mapping(name).to_request(sample(name), facts))
    level, reasons = EXPECTED_DECISIONS[name]
    assert decision.level is level
    assert reasons <= {r.code for r in decision.reasons}
    # The decision says what it is about: no need to keep the request beside it.
    expected = EXPECTED_REQUESTS[name]
    assert (decision.request_id, decision.action, decision.target_id) == (
        expected["request"]["id"], Action(expected["request"]["action"]), expected["target"]["id"])


def test_the_directory_decides_the_target_not_the_ticket() -> None:
    """Claims never lower a decision: what the ticket says about the target (its tier,
    VIP status, privileges) is never read; the directory decides, and only the directory."""
    payload = sample("servicenow_incident")
    payload["u_affected_user"].update({"vip": "false", "privilege_tier": "0", "privileged": "false"})
    payload["u_privilege_tier"] = "0"
    req = load_mapping("servicenow_incident").to_request(payload, facts)
    assert req == parse_request(EXPECTED_REQUESTS["servicenow_incident"])  # the claims changed nothing
    directory = copy.deepcopy(DIRECTORY)
    directory["jane.doe"]["vip"] = True
    decision = policy().decide(load_mapping("servicenow_incident").to_request(payload, directory.get))
    assert {"vip_target", "vip_remote_recovery"} <= {r.code for r in decision.reasons}


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=12),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                     max_leaves=6)
_CLAIM_KEYS = st.sampled_from(["vip", "privileged", "privilege_tier", "status", "manager", "owners", "type",
                               "relationship", "authenticated", "auth_strength", "roles"])


@settings(max_examples=150)
@given(
    ticket_claims=st.dictionaries(_CLAIM_KEYS, _JSON, max_size=4),
    requester_claims=st.dictionaries(_CLAIM_KEYS, _JSON, max_size=4),
    channel=st.sampled_from(["voice", "email", "chat", "native_messaging", "web", "api", "sms", "Voice"]),
    tags=st.lists(st.sampled_from(["risk_urgency", "risk_new_device", "vip", "vip_caller", "other"]), max_size=4),
    target=st.sampled_from(["u-30781", "jane.doe", "U-30781", "maria.garcia@example.com", "nobody"]),
)
def test_whatever_a_payload_claims_the_target_facts_are_the_directorys(
    ticket_claims: dict[str, Any], requester_claims: dict[str, Any], channel: str, tags: list[str], target: str,
) -> None:
    """Claims never lower a decision: whatever a payload adds (a VIP flag, a tier, a
    relationship), the request's target facts are the directory's, the relationship is
    the one of record, or nothing is decided at all."""
    payload = sample("zendesk")
    payload["ticket"].update({k: v for k, v in ticket_claims.items() if k not in payload["ticket"]})
    payload["ticket"]["requester"].update(requester_claims)
    payload["ticket"]["via"]["channel"] = channel
    payload["ticket"]["tags"] = tags
    payload["ticket"]["custom_fields"][2]["value"] = target
    try:
        req = load_mapping("zendesk").to_request(payload, facts)
    except MappingError as exc:
        assert exc.errors and all(isinstance(e, PayloadFieldError) and e.source for e in exc.errors)
        return
    record = DIRECTORY[req.target.id]
    for key in ("type", "privileged", "privilege_tier", "vip", "status", "manager", "contact_age_days"):
        value = getattr(req.target, key)
        assert (value.value if hasattr(value, "value") else value) == record.get(key), key
    actor = req.actor.id
    expected = ("self" if actor == req.target.id else "manager" if record.get("manager") == actor else "other")
    assert req.actor.relationship.value == expected
    assert channel in {"voice", "email", "chat", "native_messaging", "web"}  # every other channel is refused


def test_the_examples_readme_runs_and_its_table_is_the_tests(capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    text = (SAMPLES / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([a-z_]+\.json)` \|.*\| `([a-z_]+)` \|$", text, re.MULTILINE)
    assert {file: level for file, level in rows} == {
        SAMPLE_FILES[name]: level.value for name, (level, _) in EXPECTED_DECISIONS.items()}
    (code,) = re.findall(r"```python\n(.*?)```", text, re.DOTALL)
    monkeypatch.chdir(ROOT)  # the example runs from the repository's root
    exec(compile(code, "examples/ticketing/README.md", "exec"), {})  # noqa: S102 - our own example
    assert capsys.readouterr().out.startswith("helpdesk-policy decision for INC0010234: CALLBACK (allowed)\n")


def test_the_shipped_mappings_load_and_need_facts() -> None:
    for name in SHIPPED_MAPPINGS:
        mapping = load_mapping(name)
        assert mapping.needs_facts and mapping.system in {"servicenow", "jira_service_management", "zendesk"}
        for field in ("target.privileged", "target.privilege_tier", "target.vip", "target.status"):
            assert mapping.fields[field].kind == "facts", (name, field)  # never the ticket's word
    assert load_mapping("servicenow_incident") is load_mapping("servicenow_incident")  # read once


# ------------------------------------------------------------- value maps

MINI = """
system: servicenow
record: incident
fields:
  request.id: {path: number}
  request.action: {value: password_reset}
  request.channel:
    path: contact_type
    map: {phone: phone, self-service: self_service_portal, walk-in: walk_in, virtual_agent: chat}
  actor.id: {path: caller_id.user_name}
  actor.type: {value: human}
  actor.relationship: {from: facts}
  actor.authenticated: {path: contact_type, map: {phone: false, self-service: true, walk-in: false, virtual_agent: true}}
  actor.auth_strength: {path: contact_type, map: {phone: none, self-service: mfa, walk-in: none, virtual_agent: password}}
  target.id: {path: caller_id.user_name}
  target.type: {from: facts}
  target.privileged: {from: facts}
  target.privilege_tier: {from: facts}
  target.vip: {from: facts}
  target.status: {from: facts}
  context.risk_signals: {path: u_risk_signals, split: ",", map: {caller_id_mismatch: caller_id_mismatch, urgency: urgency_pressure}}
  context.failed_verifications_24h: {path: u_failed_verifications, as: integer}
"""

U1 = {"type": "human", "privileged": False, "privilege_tier": 0, "vip": False, "status": "active"}


def mini_payload(**changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"number": "INC0010001", "contact_type": "phone", "caller_id": {"user_name": "U-1"},
                               "u_risk_signals": "", "u_failed_verifications": "0"}
    payload.update(changes)
    return payload


@pytest.mark.parametrize(("contact_type", "channel", "authenticated", "strength"), [
    ("phone", "phone", False, "none"),
    ("self-service", "self_service_portal", True, "mfa"),
    ("walk-in", "walk_in", False, "none"),
    ("virtual_agent", "chat", True, "password"),
])
def test_value_maps_translate_the_systems_vocabulary(contact_type: str, channel: str, authenticated: bool,
                                                     strength: str) -> None:
    req = TicketMapping.from_yaml(MINI).to_request(mini_payload(contact_type=contact_type), {"u-1": U1}.get)
    assert req.request.channel.value == channel
    assert (req.actor.authenticated, req.actor.auth_strength.value) == (authenticated, strength)
    assert req.actor.id == "u-1" and req.actor.relationship.value == "self"  # looked up in canonical form


def test_list_fields_split_and_map_each_element() -> None:
    mapping = TicketMapping.from_yaml(MINI)
    req = mapping.to_request(mini_payload(u_risk_signals="urgency, caller_id_mismatch", u_failed_verifications="2"),
                             {"u-1": U1}.get)
    assert [s.value for s in req.context.risk_signals] == ["caller_id_mismatch", "urgency_pressure"]
    assert req.context.failed_verifications_24h == 2
    # ServiceNow's "" is an empty list here (observed: none), not a missing value.
    assert mapping.to_request(mini_payload(), {"u-1": U1}.get).context.risk_signals == []


def test_unmapped_elements_are_errors_unless_the_mapping_drops_them() -> None:
    with pytest.raises(MappingError) as info:
        TicketMapping.from_yaml(MINI).to_request(mini_payload(u_risk_signals="urgency,bomb_threat"), {"u-1": U1}.get)
    (err,) = info.value.errors
    assert err.path == "context.risk_signals" and "(element [1])" in err.message
    assert "bomb_threat" not in str(info.value)
    # The Zendesk mapping reads only risk_* tags: any other tag is not its vocabulary.
    payload = sample("zendesk")
    payload["ticket"]["tags"] = ["phone_support", "risk_caller_id_mismatch", "another_tag"]
    req = load_mapping("zendesk").to_request(payload, facts)
    assert [s.value for s in req.context.risk_signals] == ["caller_id_mismatch"]


# ---------------------------------------------------------- failing closed


def test_every_bad_field_is_named_at_once_with_its_payload_path() -> None:
    payload = sample("servicenow_incident")
    del payload["number"]                                     # required, missing
    payload["contact_type"] = "fax"                           # not in the value map (3 fields read it)
    payload["u_identity_action"] = "sk-live-hunter2-0123456789abcdef"  # a pasted secret, not a choice value
    payload["u_failed_verifications"] = "many"                # not an integer
    payload["u_affected_user"] = "jane.doe"                   # a string where an object is expected
    with pytest.raises(MappingError) as info:
        load_mapping("servicenow_incident").to_request(payload, facts)
    errors = info.value.errors
    assert all(isinstance(e, PayloadFieldError) for e in errors)
    by_field = {e.path: e for e in errors}
    assert set(by_field) == {"request.id", "request.action", "request.channel", "actor.authenticated",
                             "actor.auth_strength", "context.failed_verifications_24h", "target.id"}
    assert by_field["request.id"].source == "payload path 'number'"
    assert "holds no value, and request.id is required" in by_field["request.id"].message
    assert by_field["request.action"].message == (
        "payload path 'u_identity_action' holds a string of 32 characters that the value map does not list (it "
        "maps: account_question, add_mfa_factor, change_contact, change_role, disable_account, elevate_privilege, "
        "grant_access, reissue_api_key, reset_mfa, reset_password, revoke_token, rotate_secret, "
        "temporary_access_pass, unlock_account)")
    for field in ("request.channel", "actor.authenticated", "actor.auth_strength"):
        assert by_field[field].source == "payload path 'contact_type'"
        assert "a string of 3 characters that the value map does not list" in by_field[field].message
    assert "holds a string of 4 characters, not an integer" in by_field["context.failed_verifications_24h"].message
    assert "expected an object at 'u_affected_user', found a string" in by_field["target.id"].message
    text = str(info.value)
    assert "hunter2" not in text and "fax" not in text and "many" not in text  # values are never echoed
    assert isinstance(info.value, InvalidRequestError)  # the caller's to fix: a 422, not a 503


def test_invalid_values_are_relabelled_with_their_payload_path() -> None:
    payload = sample("jira_service_management")
    payload["issue"]["key"] = "ITHELP-412\nInjected: line"  # a control character in the ticket id
    directory = copy.deepcopy(DIRECTORY)
    directory["tom.baker@example.com"]["privilege_tier"] = 12  # the directory holds a bad tier
    with pytest.raises(MappingError) as info:
        load_mapping("jira_service_management").to_request(payload, directory.get)
    by_field = {e.path: e for e in info.value.errors}
    assert set(by_field) == {"request.id", "target.privilege_tier"}
    assert by_field["request.id"].message.startswith("payload path 'issue.key': ")
    assert by_field["target.privilege_tier"].message.startswith(
        "the facts of record of the target (key 'privilege_tier'): ")


def test_an_identity_the_directory_does_not_know_is_an_error_naming_its_payload_path() -> None:
    payload = sample("zendesk")
    payload["ticket"]["custom_fields"][2]["value"] = "u-99999"  # affected user: not in the directory
    with pytest.raises(MappingError) as info:
        load_mapping("zendesk").to_request(payload, facts)
    (err,) = info.value.errors  # once, at the id: not again for every fact it would have filled
    assert err.path == "target.id"
    assert err.source == "payload path 'ticket.custom_fields[id=360012345673].value'"
    assert "names no identity the facts provider knows" in err.message


def test_a_requester_of_no_record_has_no_facts_of_record() -> None:
    """Someone writing in from outside is no one's manager, owner or admin: no roles, the
    relationship "other", and the stock policy refuses to act on someone else's account."""
    payload = sample("jira_service_management")
    payload["issue"]["fields"]["reporter"]["emailAddress"] = "mallory@example.net"
    mapped = load_mapping("jira_service_management").map_payload(payload, facts)
    assert (mapped.request.actor.relationship.value, mapped.request.actor.roles) == ("other", [])
    assert "actor.roles" not in mapped.sources  # not there: read as none
    decision = policy().decide(mapped.request)
    assert decision.level is Level.DENY and "unrelated_requester" in {r.code for r in decision.reasons}


class UnknownIdentityError(Exception):
    """Named as :class:`helpdesk_policy.agents.errors.UnknownIdentityError` is."""


@pytest.mark.parametrize("error", [KeyError("u-30781"), UnknownIdentityError("no record")])
def test_a_provider_saying_no_such_identity_by_raising_is_read_as_unknown(error: Exception) -> None:
    def provider(identifier: str) -> dict[str, Any]:
        raise error

    with pytest.raises(MappingError) as info:
        load_mapping("zendesk").to_request(sample("zendesk"), provider)
    assert [e.path for e in info.value.errors] == ["target.id"]


class _BrokenDirectory:
    def identity(self, identifier: str) -> dict[str, Any]:
        raise TimeoutError("directory did not answer in 2 s (password=hunter2)")


@pytest.mark.parametrize(("provider", "says"), [
    (_BrokenDirectory(), "failed for the target"),
    (lambda identifier: ["not", "a", "record"], "answered a list of 3 items for the target, not a record"),
    (None, "no facts provider was given"),
    (42, "not int"),
])
def test_a_failing_facts_provider_decides_nothing(provider: Any, says: str) -> None:
    with pytest.raises(FactsUnavailableError) as info:
        load_mapping("servicenow_incident").to_request(sample("servicenow_incident"), provider)
    assert says in str(info.value)
    assert "hunter2" not in str(info.value)
    # Not a payload error: no field list, so a service answers 503 and retries, never 422.
    assert not isinstance(info.value, InvalidRequestError) and not hasattr(info.value, "errors")


def test_facts_records_may_be_models_and_only_missing_optional_facts_are_left_out() -> None:
    class Record(BaseModel):  # as agents.facts.IdentityFacts answers: a model, None for "not known"
        type: str
        privileged: bool | None
        privilege_tier: int | None
        vip: bool | None
        status: str | None
        environment: str | None = None

    class Directory:
        def __init__(self, record: Record) -> None:
            self.record = record

        def identity(self, identifier: str) -> Record | None:
            return self.record if identifier == "u-30781" else None

    known = Record(type="human", privileged=False, privilege_tier=0, vip=False, status="active")
    req = load_mapping("zendesk").to_request(sample("zendesk"), Directory(known))
    # Unknown optional facts are left out and read at their riskiest; the environment's default is production.
    assert (req.target.manager, req.target.contact_age_days, req.target.environment) == (None, None, "production")
    assert req.context.enrolled_factor_available is None and req.actor.roles == []
    unknown_vip = Record(type="human", privileged=False, privilege_tier=0, vip=None, status="active")
    with pytest.raises(MappingError) as info:
        load_mapping("zendesk").to_request(sample("zendesk"), Directory(unknown_vip))
    (err,) = info.value.errors
    assert err.path == "target.vip" and err.message == (
        "the facts of record of the target (key 'vip') holds no value, and target.vip is required")


def test_observations_left_out_are_errors_not_none_observed() -> None:
    payload = sample("zendesk")
    payload["ticket"]["custom_fields"][3]["value"] = None  # failed verifications: not recorded
    del payload["ticket"]["tags"]
    with pytest.raises(MappingError) as info:
        load_mapping("zendesk").to_request(payload, facts)
    assert {e.path for e in info.value.errors} == {"context.failed_verifications_24h", "context.risk_signals"}
    assert all("would read as none observed" in e.message for e in info.value.errors)


def test_a_payload_that_is_not_an_object_or_not_strict_json_is_refused() -> None:
    with pytest.raises(MappingError, match="must be a JSON object, not a list of 0 items"):
        load_mapping("zendesk").to_request([], facts)
    with pytest.raises(DocumentError, match="duplicate key 'contact_type'"):
        parse_payload(b'{"contact_type": "self-service", "contact_type": "phone"}')


# ---------------------------------------------------------------- paths


def test_payload_paths() -> None:
    doc = {"a": {"b": [{"id": 7, "v": "x"}, {"id": "8", "v": "y"}], "c": None}, "k.dot": {"z": 1}}
    assert PayloadPath.parse("a.b[0].v").resolve(doc) == (True, "x")
    assert PayloadPath.parse("a.b[-1].v").resolve(doc) == (True, "y")
    assert PayloadPath.parse("a.b[id=8].v").resolve(doc) == (True, "y")  # "8" and 8 are one id
    assert PayloadPath.parse("a.b[id='8'].v").resolve(doc) == (True, "y")
    assert PayloadPath.parse('["k.dot"].z').resolve(doc) == (True, 1)
    assert PayloadPath.parse("a.b[5].v").resolve(doc) == (False, None)
    assert PayloadPath.parse("a.c.d").resolve(doc) == (False, None)  # null is no value
    with pytest.raises(PayloadShapeError, match=r"expected a list at 'a', found an object with 2 keys"):
        PayloadPath.parse("a[0]").resolve(doc)
    twice = {"f": [{"id": 1}, {"id": "1"}]}
    with pytest.raises(PayloadShapeError, match=r"\[id=…\] matches 2 elements of 'f', not one"):
        PayloadPath.parse("f[id=1]").resolve(twice)
    for bad, where in [("a..b", "position 3"), (".a", "position 1"), ("a.", "ends with"), ("a b", "position 2"),
                       ("a.[0]", "position 3"), ("", "non-empty")]:
        with pytest.raises(PathSyntaxError, match=re.escape(where)):
            PayloadPath.parse(bad)


# ----------------------------------------------------------- mapping files

BAD_MAPPING = """\
system: servicenow
feilds_extra: 1
fields:
  request.id: {path: "number..x"}
  request.action: {value: reset_everything}
  request.chanel: {path: contact_type}
  request.channel:
    path: contact_type
    mapp: {phone: phone}
  actor.id: {path: caller, value: u-1}
  actor.type: {value: human}
  actor.relationship: {from: directory}
  actor.authenticated:
    path: contact_type
    map: {yes: true, phone: false}
  actor.auth_strength: {path: contact_type, map: {phone: nope}}
  target.id: {from: facts}
  target.type: {from: facts}
  target.privileged: {from: facts}
  target.privilege_tier: {from: facts}
  target.vip: {from: facts, default: false}
  target.environment: {from: facts, default: staging}
"""


def test_mapping_file_errors_name_the_file_line_and_key_all_at_once() -> None:
    with pytest.raises(MappingDefinitionError) as info:
        TicketMapping.from_yaml(BAD_MAPPING, source="bad.yaml")
    got = {(e.path, e.message) for e in info.value.errors}
    paths = [e.path for e in info.value.errors]
    assert paths == [
        "bad.yaml: line 2: feilds_extra",
        "bad.yaml: line 4: fields.request.id.path",
        "bad.yaml: line 5: fields.request.action.value",
        "bad.yaml: line 6: fields.request.chanel",
        "bad.yaml: line 9: fields.request.channel.mapp",
        "bad.yaml: line 10: fields.actor.id",
        "bad.yaml: line 12: fields.actor.relationship.from",
        "bad.yaml: line 15: fields.actor.authenticated.map.True",
        "bad.yaml: line 16: fields.actor.auth_strength.map.phone",
        "bad.yaml: line 17: fields.target.id",
        "bad.yaml: line 21: fields.target.vip.default",
        "bad.yaml: line 22: fields.target.environment.default",
        "bad.yaml: line 3: fields",
    ]
    assert ("bad.yaml: line 2: feilds_extra", "unknown key (a mapping has system, record, description, fields)") in got
    assert ("bad.yaml: line 6: fields.request.chanel", "is not a request field — did you mean 'request.channel'? "
            "(fields are section.name: request.channel)") in got
    assert any(p.endswith("request.channel.mapp") and "did you mean 'map'" in m for p, m in got)
    assert any(p.endswith("request.id.path") and "has no key before it" in m for p, m in got)
    assert any(p.endswith("actor.authenticated.map.True") and "quote it" in m for p, m in got)
    assert any(p.endswith("target.vip.default") and "may have no default" in m for p, m in got)
    assert any(p.endswith("target.environment.default") and "is 'production'" in m for p, m in got)
    assert ("bad.yaml: line 3: fields", "has no source for the required request field(s) target.status") in got


def test_a_mapping_file_with_a_duplicate_key_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("system: zendesk\nfields:\n  request.id: {path: a}\n  request.id: {path: b}\n", encoding="utf-8")
    with pytest.raises(DocumentError, match=r"dup\.yaml: line 4: duplicate key 'request\.id'"):
        load_mapping(path)


def test_a_field_from_the_facts_needs_an_identity_to_look_up() -> None:
    doc = {"system": "x", "fields": {"request.justification": {"from": "facts"},
                                    "context.enrolled_factor_available": {"from": "facts"}}}
    with pytest.raises(MappingDefinitionError) as info:
        TicketMapping.from_dict(doc, source="d")
    messages = {e.path: e.message for e in info.value.errors}
    assert "the ticket's own" in messages["d: fields.request.justification"]
    assert "must be 'target' or 'actor'" in messages["d: fields.context.enrolled_factor_available.of"]


# ------------------------------------------------------------ write-backs


def _decided(name: str) -> tuple[Decision, Any]:
    req = load_mapping(name).to_request(sample(name), facts)
    return policy().decide(req), req


def test_the_checklist_is_the_decisions_requirements_then_obligations() -> None:
    decision, request = _decided("servicenow_incident")  # callback: step-up, approval, callback
    items = checklist(decision)
    assert [i.code for i in items] == [
        "identity_step_up", "manager_approval", "out_of_band_callback", "stop_if_a_check_fails", "perform",
        "terminate_sessions", "revoke_previous_credential", "notify_identity_owner", "record_evidence",
    ]
    assert items[0].text.startswith("Verify the requester's identity by identity proofing")  # no factor left
    assert "raj.patel" in items[1].text and "Never by jane.doe" in items[1].text  # the approver of record
    assert items[4].text == "Perform the request (mfa_reset on jane.doe), following playbook mfa-reset-callback."
    assert checklist(decision, request) == items  # a person requested it: the request adds nothing


def test_a_deny_checklist_says_what_not_to_do() -> None:
    directory = copy.deepcopy(DIRECTORY)
    directory["u-30781"]["status"] = "offboarded"
    decision = policy().decide(load_mapping("zendesk").to_request(sample("zendesk"), directory.get))
    assert decision.level is Level.DENY
    codes = [i.code for i in checklist(decision)]
    assert codes[0] == "do_not_perform" and "formal_process" in codes and "perform" not in codes
    assert checklist(decision)[0].text.startswith("Do not perform this request (account_unlock on u-30781)")


def test_servicenow_work_note_is_plain_text_with_the_checklist() -> None:
    decision, request = _decided("servicenow_incident")
    note = work_note(decision, request)
    lines = note.splitlines()
    assert lines[0] == "helpdesk-policy decision for INC0010234: CALLBACK (allowed)"
    assert lines[1] == "Action: mfa_reset on jane.doe | Playbook: mfa-reset-callback"
    items = checklist(decision, request)
    for i, item in enumerate(items, 1):
        assert f"[ ] {i}. {item.text}" in lines
    assert "- [callback] privileged_remote_recovery: " in note and decision.decision_id in note
    assert work_note_update(decision) == {"work_notes": work_note(decision)}


def test_servicenow_work_note_defuses_code_tags_in_values() -> None:
    decision, _ = _decided("servicenow_incident")
    hostile = decision.model_copy(update={"request_id": "INC1[code]<img src=x onerror=alert(1)>[/CODE ]"})
    note = work_note(hostile)
    assert not re.search(r"\[\s*/?\s*code\s*\]", note, re.IGNORECASE)
    assert "INC1\uff3bcode]<img src=x onerror=alert(1)>\uff3b/CODE ]" in note.splitlines()[0]


def _check_json_schema(instance: Any, schema: dict[str, Any], root: dict[str, Any], where: str = "$") -> list[str]:
    """Validate against a draft-04 schema, with the keywords the ADF schema uses (others fail loudly)."""
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/definitions/")
        return _check_json_schema(instance, root["definitions"][name], root, where)
    known = {"type", "enum", "properties", "additionalProperties", "required", "items", "anyOf", "allOf",
             "minItems", "maxItems", "minLength", "minimum", "maximum", "pattern", "description", "$schema",
             "definitions"}
    assert set(schema) <= known, set(schema) - known
    kinds = {"object": dict, "array": list, "string": str, "boolean": bool}
    t = schema.get("type")
    if t is not None:
        if t in ("number", "integer"):
            ok = isinstance(instance, int | float) and not isinstance(instance, bool)
        else:
            ok = isinstance(instance, kinds[t])
        if not ok:
            return [f"{where}: not {t}"]
    problems: list[str] = []
    if "enum" in schema and instance not in schema["enum"]:
        problems.append(f"{where}: {instance!r} not in {schema['enum']}")
    if "anyOf" in schema and not any(not _check_json_schema(instance, s, root, where) for s in schema["anyOf"]):
        problems.append(f"{where}: matches none of anyOf")
    for s in schema.get("allOf", []):
        problems += _check_json_schema(instance, s, root, where)
    if isinstance(instance, dict):
        props = schema.get("properties", {})
        problems += [f"{where}: missing {k}" for k in schema.get("required", []) if k not in instance]
        for key, value in instance.items():
            if key in props:
                problems += _check_json_schema(value, props[key], root, f"{where}.{key}")
            elif schema.get("additionalProperties") is False:
                problems.append(f"{where}: unexpected {key}")
    if isinstance(instance, list):
        if len(instance) < schema.get("minItems", 0) or len(instance) > schema.get("maxItems", len(instance)):
            problems.append(f"{where}: {len(instance)} items")
        items = schema.get("items")
        if isinstance(items, dict):
            for i, item in enumerate(instance):
                problems += _check_json_schema(item, items, root, f"{where}[{i}]")
        elif isinstance(items, list):
            for i, (item, s) in enumerate(zip(instance, items)):
                problems += _check_json_schema(item, s, root, f"{where}[{i}]")
    if isinstance(instance, str):
        if len(instance) < schema.get("minLength", 0):
            problems.append(f"{where}: too short")
        if "pattern" in schema and not re.search(schema["pattern"], instance):
            problems.append(f"{where}: does not match {schema['pattern']}")
    if isinstance(instance, int | float) and not isinstance(instance, bool):
        if instance < schema.get("minimum", instance) or instance > schema.get("maximum", instance):
            problems.append(f"{where}: out of range")
    return problems


def test_the_adf_checker_can_fail() -> None:
    bad = {"version": 1, "type": "doc", "content": [
        {"type": "taskList", "attrs": {"localId": "l"}, "content": [
            {"type": "taskItem", "attrs": {"localId": "i", "state": "todo"}, "content": [{"type": "text", "text": ""}]}]}]}
    assert _check_json_schema(bad, ADF_SCHEMA, ADF_SCHEMA)
    assert _check_json_schema({"version": 1, "type": "doc", "content": []}, ADF_SCHEMA, ADF_SCHEMA) == []


@pytest.mark.parametrize("name", SHIPPED_MAPPINGS)
def test_jira_comment_is_valid_adf_with_the_checklist_as_a_task_list(name: str) -> None:
    decision, request = _decided(name)
    comment = adf_comment(decision, request)
    assert comment["properties"] == [{"key": "sd.public.comment", "value": {"internal": True}}]
    doc = comment["body"]
    assert _check_json_schema(doc, ADF_SCHEMA, ADF_SCHEMA) == []
    (tasks,) = [n for n in doc["content"] if n["type"] == "taskList"]
    items = checklist(decision, request)
    assert [t["attrs"]["state"] for t in tasks["content"]] == ["TODO"] * len(items)
    assert [t["content"][0]["text"] for t in tasks["content"]] == [f"{i}. {it.text}" for i, it in enumerate(items, 1)]
    local_ids = [tasks["attrs"]["localId"], *(t["attrs"]["localId"] for t in tasks["content"])]
    assert len(set(local_ids)) == len(local_ids)
    assert doc == adf_document(decision, request)


def test_zendesk_internal_note_is_private_and_escapes_a_hostile_payload() -> None:
    payload = sample("zendesk")
    payload["ticket"]["id"] = "<script>alert('t')</script>"
    hostile_target = "<img src=x onerror=alert(1)>&amp;"
    payload["ticket"]["custom_fields"][2]["value"] = hostile_target
    directory = copy.deepcopy(DIRECTORY)
    directory[hostile_target] = copy.deepcopy(DIRECTORY["u-30781"])
    req = load_mapping("zendesk").to_request(payload, directory.get)
    decision = policy().decide(req)
    body = internal_note(decision, req)
    comment = body["ticket"]["comment"]
    assert comment["public"] is False and set(body) == {"ticket"} and set(comment) == {"html_body", "public"}
    note = comment["html_body"]
    assert note == internal_note_html(decision, req)
    assert set(re.findall(r"</?([a-zA-Z0-9]+)", note)) <= {"p", "strong", "ol", "ul", "li"}
    assert "<script" not in note and "<img" not in note
    assert html.escape("<script>alert('t')</script>", quote=True) in note
    assert "&lt;img src=x onerror=alert(1)&gt;&amp;amp;" in note
    # Each checklist step is a list item, escaped.
    for item in checklist(decision, req):
        assert f"<li>\u2610 {html.escape(item.text, quote=True)}</li>" in note


def test_the_webhook_object_maps_and_writes_back_per_system() -> None:
    for name, key in [("servicenow_incident", "work_notes"), ("servicenow_catalog", "work_notes"),
                      ("jira_service_management", "body"), ("zendesk", "ticket")]:
        hook = webhook_for(name, facts)
        req = hook.to_request(sample(name))
        assert key in hook.write_back(policy().decide(req), req)
    with pytest.raises(ValueError, match="no shipped mapping"):
        webhook_for("freshdesk")


# ---------------------------------------------- the decision names its request


def test_a_decision_log_record_masks_the_decisions_target_and_keeps_a_ticket_number() -> None:
    records: list[dict[str, Any]] = []
    req = load_mapping("zendesk").to_request(sample("zendesk"), facts)
    HelpdeskPolicy(engine="native", log_sink=records.append).decide(req)
    (record,) = records
    # 48213 is Zendesk's ticket number, not a one-time code: kept in the input and the result.
    assert record["input"]["request"]["id"] == record["result"]["request_id"] == "48213"
    assert record["result"]["target_id"] == record["input"]["target"]["id"] != "u-30781"
    assert record["result"]["target_id"].startswith("pid:") and "/result/target_id" in record["masked"]
    assert "/result/request_id" not in record["masked"] and record["result"]["action"] == "account_unlock"
    assert "u-30781" not in json.dumps(record)


def test_the_results_ticket_follows_the_log_mask_of_the_inputs() -> None:
    req = load_mapping("zendesk").to_request(sample("zendesk"), facts)
    for rules, expected in [(["/input/request/id"], None),
                            ([{"op": "upsert", "path": "/input/request/id", "value": "[ticket]"}], "[ticket]")]:
        records: list[dict[str, Any]] = []
        HelpdeskPolicy(engine="native", log_sink=records.append, log_mask=rules).decide(req)
        (record,) = records
        assert record["result"].get("request_id") == expected
        assert "labels" in record and record["labels"].get("ticket") == expected
        assert ("/result/request_id" in record["erased"]) == (expected is None)
        assert ("/result/request_id" in record["masked"]) == (expected is not None)


def test_a_decision_without_its_request_fields_still_renders() -> None:
    decision, _ = _decided("servicenow_incident")
    bare = Decision.model_validate({k: v for k, v in decision.model_dump().items()
                                    if k not in ("request_id", "action", "target_id")})
    assert "request_id" not in bare.to_dict() and bare.action is None
    assert work_note(bare).splitlines()[0] == "helpdesk-policy decision: CALLBACK (allowed)"
    assert checklist(bare)[4].text == ("Perform the request (the action asked for), following playbook "
                                      "mfa-reset-callback.")


def test_payload_field_errors_are_field_errors() -> None:
    err = PayloadFieldError("request.channel", "payload path 'x' holds null", source="payload path 'x'")
    assert isinstance(err, FieldError) and str(err) == "request.channel: payload path 'x' holds null"


@pytest.mark.parametrize("module", ["paths", "mapping", "checklist", "servicenow", "zendesk", "webhook"])
def test_the_module_doctests_run(module: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(f"helpdesk_policy.integrations.{module}"))
    assert result.attempted > 0 and result.failed == 0
