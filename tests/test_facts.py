"""Trusted facts versus claims (issue 12, item 1): helpdesk_policy.agents.facts, inventory and scim.

* build_request: each field's provenance, each claim rule of the module's
  table, the riskiest fills, fail closed (unknown target, a failing or lying
  provider, invalid arguments naming every bad field).
* Who the actor is: the chat reset relayed by a bot (the user acts) and
  made by the bot (the agent acts), with the stock policy's levels.
* Property: claims never lower a decision (any actor, and AI agents alone),
  and a request whose facts are all of record is rebuilt exactly.
* FileFactsProvider: YAML, JSON, CSV; every bad cell named file:row:column.
* ScimFactsProvider against a loopback SCIM 2.0 server: look-ups, the
  enterprise manager, custom extensions, and every failure.
"""

from __future__ import annotations

import asyncio
import copy
import doctest
import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import helpdesk_policy.agents.facts as facts_module
import helpdesk_policy.agents.inventory as inventory_module
import helpdesk_policy.agents.scim as scim_module
from helpdesk_policy import HelpdeskPolicy, InvalidConfigError, InvalidRequestError, Level, Request
from helpdesk_policy.agents import (
    Claim,
    FactsUnavailableError,
    FileFactsProvider,
    IdentityFacts,
    InMemoryFactsProvider,
    InvalidFactsError,
    RequestFacts,
    ScimFactsProvider,
    SessionFacts,
    UnknownIdentityError,
    abuild_request,
    acting_agent,
    build_request,
    claim_resolver,
    parse_claim,
    relayed_by_bot,
)
from helpdesk_policy.agents.facts import REQUEST_PATHS, SAYABLE_PATHS
from helpdesk_policy.models import (
    AUTH_STRENGTH_ORDER,
    CHANNEL_TRUST_ORDER,
    ActorType,
    Relationship,
    TargetType,
    parse_request,
)
from helpdesk_policy.testing import requests

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "requests"
NOW = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def policy() -> Iterator[HelpdeskPolicy]:
    with HelpdeskPolicy(engine="native") as p:
        yield p


def person(id: str = "u-51876", **kw: Any) -> IdentityFacts:
    base: dict[str, Any] = dict(id=id, type="human", status="active", privileged=False, privilege_tier=0, vip=False,
                                contact_age_days=512, recent_credential_change_hours=2150.0,
                                enrolled_factor_available=True)
    return IdentityFacts(**{**base, **kw})


def test_the_module_doctests_run() -> None:
    for module in (facts_module, inventory_module, scim_module):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0 and result.attempted > 0, module.__name__


# ================================================================ who the actor is


def chat_reset_facts() -> InMemoryFactsProvider:
    """The target of examples/requests/06-chatbot-password-reset.json, as the directory knows it."""
    doc = json.loads((EXAMPLES / "06-chatbot-password-reset.json").read_text(encoding="utf-8"))
    t = doc["target"]
    return InMemoryFactsProvider([person(
        id=t["id"], contact_age_days=t["contact_age_days"],
        recent_credential_change_hours=float(doc["context"]["recent_credential_change_hours"]),
        enrolled_factor_available=doc["context"]["enrolled_factor_available"]),
    ])


def test_chat_reset_relayed_by_a_bot_is_the_users_request(policy: HelpdeskPolicy) -> None:
    # The bot hands the request to a human helpdesk agent: the user is the
    # actor, the bot only the chat channel, the user's authentication the chat SSO's.
    session = relayed_by_bot(user_id="U-51876", auth_strength="mfa", risk_signals=["new_device"])
    built = build_request(Claim(action="password_reset", justification="locked out after changing laptops"),
                          facts=chat_reset_facts(), session=session, channel="chat", request_id="CHAT-0088412",
                          now=NOW)
    actor = built.request.actor
    assert (actor.id, actor.type, actor.relationship, actor.auth_strength.value) == (
        "u-51876", ActorType.HUMAN, Relationship.SELF, "mfa")
    assert built.request.target.id == "u-51876"  # "reset my password": the requester themself
    decision = policy.decide(built.request)
    assert decision.level is Level.STEP_UP
    assert {r.code for r in decision.reasons} == {"remote_channel_recovery", "risk_new_device", "action_baseline"}


def test_chat_reset_made_by_the_bot_is_the_agents_request(policy: HelpdeskPolicy) -> None:
    # The bot calls the identity API itself: it is the actor, for the user
    # its chat session authenticated; the stricter level is the right one.
    user = relayed_by_bot(user_id="u-51876", auth_strength="mfa", risk_signals=["new_device"])
    session = acting_agent(agent_id="agent-helpdesk-assistant", auth_strength="phishing_resistant", user=user)
    built = build_request(Claim(action="password_reset"), facts=chat_reset_facts(), session=session,
                          channel="chat", request_id="CHAT-0088412", now=NOW)
    actor = built.request.actor
    assert (actor.id, actor.type, actor.on_behalf_of) == ("agent-helpdesk-assistant", ActorType.AI_AGENT, "u-51876")
    assert built.request.target.id == "u-51876"  # "me" from an agent: its principal
    assert built.request.context.risk_signals[0].value == "new_device"  # the user session's signals carry over
    decision = policy.decide(built.request)
    assert decision.level is Level.MANAGER_APPROVAL
    assert "ai_agent_requester" in {r.code for r in decision.reasons}


def test_an_agent_for_an_anonymous_chat_has_no_principal(policy: HelpdeskPolicy) -> None:
    anonymous = relayed_by_bot(user_id="u-51876", auth_strength="none")
    session = acting_agent(agent_id="agent-helpdesk-assistant", auth_strength="phishing_resistant", user=anonymous)
    assert session.on_behalf_of is None  # a name typed in chat is not a principal
    with pytest.raises(InvalidRequestError) as err:
        build_request(Claim(action="password_reset"), facts=chat_reset_facts(), session=session, channel="chat")
    assert err.value.paths == ["claim.target_id"]
    built = build_request(Claim(action="password_reset", target_id="u-51876"), facts=chat_reset_facts(),
                          session=session, channel="chat")
    decision = policy.decide(built.request)
    assert decision.level is Level.DENY
    assert {"ai_agent_no_principal", "unrelated_requester"} <= {r.code for r in decision.reasons}


def test_an_anonymous_relayed_chat_is_an_unauthenticated_user(policy: HelpdeskPolicy) -> None:
    session = relayed_by_bot(user_id="u-51876", auth_strength="none")
    built = build_request(Claim(action="password_reset"), facts=chat_reset_facts(), session=session, channel="chat")
    assert (built.request.actor.authenticated, built.request.actor.auth_strength.value) == (False, "none")
    assert "requester_unauthenticated" in {r.code for r in policy.decide(built.request).reasons}


# ================================================================ the naive tool call


ADMIN = dict(id="adm-4410", type="human", status="active", privileged=True, privilege_tier=3, vip=False,
             manager="u-20417", contact_age_days=900, recent_credential_change_hours=4000.0,
             enrolled_factor_available=False)


def test_a_model_claiming_strong_auth_and_an_unprivileged_target_still_gets_a_callback(policy: HelpdeskPolicy) -> None:
    # Issue 12: "a naive tool call in which the model claims phishing-resistant
    # auth and a non-privileged target got step_up for an admin MFA reset that needs callback".
    naive = {"action": "mfa_reset", "target_id": "ADM-4410",
             "says": {"actor.authenticated": True, "actor.auth_strength": "phishing_resistant",
                      "actor.relationship": "helpdesk_agent", "actor.roles": ["helpdesk"],
                      "target.privileged": False, "target.privilege_tier": 0, "target.vip": False}}
    session = relayed_by_bot(user_id="u-77001", auth_strength="password")
    built = build_request(naive, facts=InMemoryFactsProvider([IdentityFacts(**ADMIN)]), session=session,
                          channel="phone", now=NOW)
    t, a = built.request.target, built.request.actor
    assert (t.privileged, t.privilege_tier, a.auth_strength.value, a.relationship, a.roles) == (
        True, 3, "password", Relationship.OTHER, [])
    assert built.overridden == ("actor.relationship", "actor.auth_strength", "actor.roles",
                                "target.privileged", "target.privilege_tier")
    assert policy.decide(built.request).level is Level.DENY  # a stranger recovering an admin's MFA by phone
    # The holder themself, by phone, with the same lies: callback, never step_up.
    own = build_request({**naive, "target_id": None}, facts=InMemoryFactsProvider([IdentityFacts(**ADMIN)]),
                        session=relayed_by_bot(user_id="adm-4410", auth_strength="password"), channel="phone")
    assert policy.decide(own.request).level is Level.CALLBACK


# ================================================================ provenance and the claim rules


def test_every_field_has_a_provenance() -> None:
    built = build_request(Claim(action="account_unlock"), facts=InMemoryFactsProvider([person()]),
                          session=relayed_by_bot(user_id="u-51876", auth_strength="mfa"), channel="chat",
                          request_id="INC-1", now=NOW)
    assert len(REQUEST_PATHS) == 37
    assert list(built.provenance) == list(REQUEST_PATHS)
    claimed = {"request.action", "request.justification", "request.emergency", "request.requested_privilege_tier",
               "request.consent_scope", "request.consent_tenant_wide"}
    assert set(built.claimed_paths) == claimed
    assert set(built.trusted_paths) == set(REQUEST_PATHS) - claimed
    assert built.overridden == () and built.assumed == ()
    assert built.request.request.requested_at == NOW
    doc = built.to_dict()
    assert doc["request"]["request"]["id"] == "INC-1" and doc["provenance"]["target.vip"] == "trusted"
    assert json.dumps(doc)  # JSON-ready


def claim_with(says: dict[str, Any], **kw: Any) -> Claim:
    return Claim(action=kw.pop("action", "password_reset"), target_id=kw.pop("target_id", "svc-7"), says=says, **kw)


NHI = dict(id="svc-7", type="service_account", status="active", privileged=False, privilege_tier=1, vip=False,
           owners=["u-1"], owner_active=True, environment="staging", consumers=3, secret_age_days=10,
           in_secrets_manager=True, publisher_verified=True, holds_secret=False, contact_age_days=400,
           failed_verifications_24h=1, recent_credential_change_hours=500.0, enrolled_factor_available=True,
           risk_signals=["off_hours"])


def build_nhi(says: dict[str, Any], record: dict[str, Any] | None = None, **kw: Any):
    facts = IdentityFacts(**{**NHI, **(record or {})})
    channel, request_facts = kw.pop("channel", "chat"), kw.pop("request_facts", None)
    return build_request(claim_with(says, **kw), facts=InMemoryFactsProvider([facts]),
                         session=SessionFacts(actor_id="u-9", authenticated=True, auth_strength="mfa"),
                         channel=channel, now=NOW, request_facts=request_facts)


# (path, a riskier value, the safer value NHI holds): each direction is one
# the README's monotonicity guarantee states.
RAISING = [
    ("target.privileged", True, False),
    ("target.vip", True, False),
    ("target.privilege_tier", 5, 1),
    ("target.consumers", 40, 3),
    ("target.contact_age_days", 2, 400),
    ("target.publisher_verified", False, True),
    ("target.holds_secret", True, False),
    ("context.failed_verifications_24h", 4, 1),
    ("context.enrolled_factor_available", False, True),
]


@pytest.mark.parametrize(("path", "riskier", "safer"), RAISING, ids=[r[0] for r in RAISING])
def test_a_claim_that_can_only_raise_is_used(path: str, riskier: Any, safer: Any) -> None:
    section, name = path.split(".")
    built = build_nhi({path: riskier})
    assert getattr(getattr(built.request, section), name) == riskier
    assert built.provenance[path] == "claimed" and path not in built.overridden


@pytest.mark.parametrize(("path", "riskier", "safer"), RAISING, ids=[r[0] for r in RAISING])
def test_a_claim_that_would_lower_is_ignored(path: str, riskier: Any, safer: Any) -> None:
    section, name = path.split(".")
    built = build_nhi({path: safer}, record={name: riskier})
    assert getattr(getattr(built.request, section), name) == riskier
    assert built.provenance[path] == "trusted" and built.overridden == (path,)


IGNORED = {
    "actor.id": "u-1", "actor.type": "service", "actor.relationship": "owner", "actor.on_behalf_of": "u-1",
    "actor.roles": ["security"], "actor.runs_as": "svc-7", "target.type": "human", "target.status": "offboarded",
    "target.environment": "production", "target.owners": ["u-9"], "target.owner_active": False,
    "target.secret_age_days": 1, "target.in_secrets_manager": False, "target.manager": "u-9",
    "context.recent_credential_change_hours": 1.0, "request.id": "FAKE-1",
    "request.requested_at": "2020-01-01T00:00:00Z",
}


def test_claims_of_identity_ownership_and_record_are_ignored() -> None:
    built = build_nhi(IGNORED)
    req = built.request
    assert (req.actor.id, req.actor.type, req.actor.relationship, req.actor.roles, req.actor.runs_as) == (
        "u-9", ActorType.HUMAN, Relationship.OTHER, [], None)
    assert (req.target.type, req.target.owners, req.target.manager, req.target.environment) == (
        TargetType.SERVICE_ACCOUNT, ["u-1"], None, "staging")
    assert req.request.id.startswith("req-") and req.request.requested_at == NOW
    # Each is listed as not used (actor.on_behalf_of: a person has no principal).
    assert set(built.overridden) == set(IGNORED)
    assert all(built.provenance[p] == "trusted" for p in IGNORED)


def test_the_channel_and_the_authentication_are_the_weaker_of_record_and_claim() -> None:
    built = build_nhi({"request.channel": "phone", "actor.auth_strength": "password"}, channel="chat")
    assert built.request.request.channel.value == "phone" and built.request.actor.auth_strength.value == "password"
    assert built.provenance["request.channel"] == built.provenance["actor.auth_strength"] == "claimed"
    built = build_nhi({"actor.authenticated": False})
    assert (built.request.actor.authenticated, built.request.actor.auth_strength.value) == (False, "none")
    built = build_nhi({"request.channel": "self_service_portal", "actor.auth_strength": "phishing_resistant",
                       "actor.authenticated": True}, channel="chat")
    assert built.request.request.channel.value == "chat" and built.request.actor.auth_strength.value == "mfa"
    assert built.overridden == ("request.channel", "actor.auth_strength")


def test_claimed_risk_signals_are_added_to_those_of_record() -> None:
    built = build_nhi({"context.risk_signals": ["urgency_pressure", "off_hours"]})
    assert [s.value for s in built.request.context.risk_signals] == ["off_hours", "urgency_pressure"]
    assert built.provenance["context.risk_signals"] == "claimed"
    assert build_nhi({"context.risk_signals": ["off_hours"]}).provenance["context.risk_signals"] == "trusted"


def test_request_facts_come_from_the_catalogue_and_a_claim_only_raises_them() -> None:
    described = dict(action="access_grant", requested_privilege_tier=0, consent_scope="low",
                     consent_tenant_wide=False)
    without = build_nhi({}, **described)
    info = without.request.request
    assert (info.requested_privilege_tier, info.consent_scope, info.consent_tenant_wide) == (None, None, None)
    assert set(without.overridden) == {"request.requested_privilege_tier", "request.consent_scope",
                                       "request.consent_tenant_wide"}
    catalogue = RequestFacts(requested_privilege_tier=2, consent_scope="medium", consent_tenant_wide=False)
    lower = build_nhi({}, request_facts=catalogue, **described).request.request
    assert (lower.requested_privilege_tier, lower.consent_scope.value, lower.consent_tenant_wide) == (2, "medium", False)
    higher = build_nhi({}, request_facts=catalogue, action="access_grant", requested_privilege_tier=7,
                       consent_scope="high", consent_tenant_wide=True)
    info = higher.request.request
    assert (info.requested_privilege_tier, info.consent_scope.value, info.consent_tenant_wide) == (7, "high", True)
    assert higher.provenance["request.requested_privilege_tier"] == "claimed"


def test_required_facts_the_record_lacks_are_read_at_their_riskiest(policy: HelpdeskPolicy) -> None:
    bare = IdentityFacts(id="u-3", type="human")
    built = build_request(Claim(action="password_reset", says={"target.vip": False, "target.privilege_tier": 0}),
                          facts=InMemoryFactsProvider([bare]),
                          session=relayed_by_bot(user_id="u-3", auth_strength="mfa"), channel="self_service_portal")
    t = built.request.target
    assert (t.privileged, t.privilege_tier, t.vip, t.status.value) == (True, 9, True, "offboarded")
    assert built.assumed == ("target.privileged", "target.privilege_tier", "target.vip", "target.status")
    assert all(built.provenance[p] == "claimed" for p in built.assumed)
    assert built.overridden == ("target.privilege_tier", "target.vip")
    assert policy.decide(built.request).level is Level.DENY  # offboarded, as far as anyone can tell


def test_the_relationship_comes_from_the_record() -> None:
    boss = person(id="u-2", manager="u-20417")
    provider = InMemoryFactsProvider([boss, person(id="u-20417", roles=["Employee"])])
    built = build_request(Claim(action="account_unlock", target_id="u-2"), facts=provider,
                          session=relayed_by_bot(user_id="U-20417", auth_strength="mfa"), channel="walk_in")
    assert built.request.actor.relationship is Relationship.MANAGER
    assert built.request.actor.roles == ["employee"]  # the actor's record's roles
    nhi = InMemoryFactsProvider([IdentityFacts(**NHI), person(id="u-1")])
    owner = build_request(Claim(action="secret_rotation", target_id="svc-7"), facts=nhi,
                          session=relayed_by_bot(user_id="u-1", auth_strength="mfa"), channel="api")
    assert owner.request.actor.relationship is Relationship.OWNER
    console = build_request(Claim(action="account_unlock", target_id="u-2"), facts=provider,
                            session=relayed_by_bot(user_id="u-5", auth_strength="mfa",
                                                   relationship="helpdesk_agent", roles=["helpdesk"]),
                            channel="phone")
    assert (console.request.actor.relationship, console.request.actor.roles) == (Relationship.HELPDESK_AGENT,
                                                                                  ["helpdesk"])


@pytest.mark.parametrize(("statuses", "expected"), [
    (["active", "active"], True),
    (["active", "suspended"], False),
    (["active", None], None),        # one owner's status unknown
    (["active", "missing"], None),   # one owner not in the record
])
def test_owner_active_is_looked_up_when_the_inventory_does_not_say(statuses: list[Any], expected: bool | None) -> None:
    owners = [IdentityFacts(id=f"o-{i}", type="human", status=s) for i, s in enumerate(statuses) if s != "missing"]
    nhi = IdentityFacts(**{**NHI, "owners": ["o-0", "o-1"], "owner_active": None})
    built = build_request(Claim(action="secret_rotation", target_id="svc-7"),
                          facts=InMemoryFactsProvider([nhi, *owners]),
                          session=relayed_by_bot(user_id="u-9", auth_strength="mfa"), channel="api")
    assert built.request.target.owner_active is expected


def test_a_service_account_to_create_comes_from_the_provisioning_record(policy: HelpdeskPolicy) -> None:
    planned = IdentityFacts(id="svc-new", type="service_account", status="active", privileged=False,
                            privilege_tier=0, vip=False, owners=["u-1"], environment="dev")
    session = relayed_by_bot(user_id="u-1", auth_strength="mfa")
    with pytest.raises(UnknownIdentityError):
        build_request(Claim(action="service_account_create", target_id="svc-new"), facts=InMemoryFactsProvider(),
                      session=session, channel="self_service_portal")
    built = build_request(Claim(action="service_account_create", target_id="svc-new"), facts=InMemoryFactsProvider(),
                          session=session, channel="self_service_portal", new_identity=planned)
    assert (built.request.target.id, built.request.target.environment) == ("svc-new", "dev")
    assert built.provenance["target.environment"] == "trusted"
    with pytest.raises(InvalidRequestError) as err:
        build_request(Claim(action="password_reset", target_id="svc-new"), facts=InMemoryFactsProvider(),
                      session=session, channel="chat", new_identity=planned)
    assert err.value.paths == ["new_identity"]


# ================================================================ fail closed


class Raising:
    source = "cmdb"

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def identity(self, identifier: str) -> IdentityFacts | None:
        raise self.exc


class Answering:
    def __init__(self, answer: Any) -> None:
        self.answer = answer

    def identity(self, identifier: str) -> Any:
        return self.answer


SESSION = SessionFacts(actor_id="u-9", authenticated=True, auth_strength="mfa")


def test_an_unknown_target_is_never_decided() -> None:
    with pytest.raises(UnknownIdentityError) as err:
        build_request(Claim(action="password_reset", target_id="ghost-1"), facts=InMemoryFactsProvider([person()]),
                      session=SESSION, channel="chat")
    assert err.value.identifier == "ghost-1" and "ghost-1" not in str(err.value)


@pytest.mark.parametrize("provider", [
    Raising(KeyError("boom")),
    Raising(TimeoutError()),
    Answering({"id": "u-51876", "type": "human"}),  # not IdentityFacts
    Answering(person(id="u-other")),                # another identity's facts
], ids=["keyerror", "timeout", "a-dict", "another-identity"])
def test_a_failing_or_lying_provider_is_unavailable(provider: Any) -> None:
    with pytest.raises(FactsUnavailableError):
        build_request(Claim(action="password_reset", target_id="u-51876"), facts=provider, session=SESSION,
                      channel="chat")


def test_a_failing_actor_look_up_fails_too() -> None:
    class TargetOnly:
        def identity(self, identifier: str) -> IdentityFacts | None:
            if identifier == "u-51876":
                return person()
            raise ConnectionError("directory down")

    with pytest.raises(FactsUnavailableError) as err:
        build_request(Claim(action="password_reset", target_id="u-51876"), facts=TargetOnly(), session=SESSION,
                      channel="chat")
    assert "ConnectionError" in str(err.value)


def test_invalid_arguments_name_every_bad_field() -> None:
    with pytest.raises(InvalidRequestError) as err:
        build_request({"action": "pasword_reset", "says": {"target.vip": "maybe", "target.tier": 3,
                                                           "request.action": "info_request"}},
                      facts=InMemoryFactsProvider(), channel="fax", request_id="bad\nid",
                      session={"actor_id": "u-1", "authenticated": True, "auth_strength": "none"})
    paths = err.value.paths
    assert "claim.action" in paths and "claim.says.target.vip" in paths and "claim.says" in paths
    assert "claim.says.request.action" in paths
    assert {"session.auth_strength", "channel", "request_id"} <= set(paths)
    assert "did you mean 'password_reset'" in str(err.value)
    assert "maybe" not in str(err.value)  # values are never echoed


@pytest.mark.parametrize(("session", "path"), [
    (dict(actor_id="u-1", authenticated=True, auth_strength="none"), "auth_strength"),
    (dict(actor_id="u-1", authenticated=True, auth_strength="mfa", on_behalf_of="u-2"), "on_behalf_of"),
    (dict(actor_id="u-1", authenticated=True, auth_strength="mfa", relationship="self"), "relationship"),
    (dict(actor_id="bot", actor_type="ai_agent", authenticated=True, auth_strength="mfa", relationship="manager"),
     "relationship"),
])
def test_an_inconsistent_session_is_refused(session: dict[str, Any], path: str) -> None:
    with pytest.raises(InvalidRequestError) as err:
        build_request(Claim(action="account_unlock"), facts=InMemoryFactsProvider(), session=session, channel="chat")
    assert err.value.paths == [f"session.{path}"]


def test_an_inconsistent_merged_request_is_refused() -> None:
    with pytest.raises(InvalidRequestError) as err:
        build_request(Claim(action="service_account_create", target_id="u-51876"),
                      facts=InMemoryFactsProvider([person()]), session=SESSION, channel="api")
    assert err.value.paths == ["target.type"]


def test_parse_claim_reports_field_and_says_errors_together() -> None:
    with pytest.raises(InvalidRequestError) as err:
        parse_claim({"action": 7, "emergency": "yes", "says": {"context.failed_verifications_24h": -1}})
    assert err.value.paths == ["claim.action", "claim.emergency", "claim.says.context.failed_verifications_24h"]
    assert parse_claim(Claim(action="info_request")).action.value == "info_request"


def test_claim_from_request_keeps_only_what_was_asked() -> None:
    doc = json.loads((EXAMPLES / "06-chatbot-password-reset.json").read_text(encoding="utf-8"))
    claim = Claim.from_request(doc)
    assert (claim.action.value, claim.target_id, claim.emergency) == ("password_reset", "u-51876", False)
    assert claim.says["actor.auth_strength"].value == "phishing_resistant"
    assert set(claim.says) <= SAYABLE_PATHS and "target.environment" not in claim.says  # null: no statement


def test_the_guard_resolver_rebuilds_a_request_from_record() -> None:
    doc = json.loads((EXAMPLES / "06-chatbot-password-reset.json").read_text(encoding="utf-8"))
    resolve = claim_resolver(facts=chat_reset_facts(), channel="chat",
                             session=relayed_by_bot(user_id="u-51876", auth_strength="password"))
    req = resolve(parse_request(doc))
    assert (req.request.id, req.actor.id, req.actor.type, req.actor.auth_strength.value) == (
        "CHAT-0088412", "u-51876", ActorType.HUMAN, "password")


def test_abuild_request_awaits_an_async_provider_and_threads_a_sync_one() -> None:
    class SyncOnly:
        def __init__(self) -> None:
            self.threads: set[int] = set()

        def identity(self, identifier: str) -> IdentityFacts | None:
            self.threads.add(threading.get_ident())
            return person() if identifier == "u-51876" else None

    sync = SyncOnly()
    session = relayed_by_bot(user_id="u-51876", auth_strength="mfa")

    async def main() -> tuple[Any, Any]:
        a = await abuild_request(Claim(action="password_reset"), facts=chat_reset_facts(), session=session,
                                 channel="chat", now=NOW, request_id="A-1")
        b = await abuild_request(Claim(action="password_reset"), facts=sync, session=session, channel="chat",
                                 now=NOW, request_id="A-1")
        with pytest.raises(UnknownIdentityError):
            await abuild_request(Claim(action="password_reset", target_id="nobody"), facts=sync, session=session,
                                 channel="chat")
        return a, b

    a, b = asyncio.run(main())
    assert a.request == b.request and a.provenance == b.provenance
    assert threading.get_ident() not in sync.threads  # the event loop's thread never blocked on it


# ================================================================ property: claims never lower


_TARGET_KIND = {"human": "human", "ai_agent": "ai_agent", "service": "service_account"}


def facts_of_record(req: Request) -> tuple[InMemoryFactsProvider, SessionFacts, RequestFacts]:
    """The systems of record that would have produced ``req``."""
    t, c, a = req.target, req.context, req.actor
    target = dict(
        id=t.id, type=t.type, status=t.status, privileged=t.privileged, privilege_tier=t.privilege_tier, vip=t.vip,
        manager=t.manager, contact_age_days=t.contact_age_days, owners=t.owners, owner_active=t.owner_active,
        environment=t.environment, consumers=t.consumers, secret_age_days=t.secret_age_days,
        in_secrets_manager=t.in_secrets_manager, publisher_verified=t.publisher_verified,
        holds_secret=t.holds_secret, risk_signals=c.risk_signals,
        failed_verifications_24h=c.failed_verifications_24h,
        recent_credential_change_hours=c.recent_credential_change_hours,
        enrolled_factor_available=c.enrolled_factor_available,
    )
    records = []
    if a.id == t.id:
        target.update(roles=a.roles, runs_as=a.runs_as)
    else:
        # Status unknown: the actor's record must not make an owner "active".
        records.append(IdentityFacts(id=a.id, type=_TARGET_KIND[a.type.value], roles=a.roles, runs_as=a.runs_as))
    records.append(IdentityFacts(**target))
    agent = a.type is ActorType.AI_AGENT
    session = SessionFacts(
        actor_id=a.id, actor_type=a.type, authenticated=a.authenticated, auth_strength=a.auth_strength,
        on_behalf_of=a.on_behalf_of if agent else None,
        relationship=None if agent or a.relationship is Relationship.SELF else a.relationship,
    )
    catalogue = RequestFacts(requested_privilege_tier=req.request.requested_privilege_tier,
                             consent_scope=req.request.consent_scope,
                             consent_tenant_wide=req.request.consent_tenant_wide)
    return InMemoryFactsProvider(records), session, catalogue


def flattering_lies(truth: Request) -> dict[str, Any]:
    """The claim that would lower the level most, were it believed: every
    claimable fact at its safest (strong auth, the portal, an unprivileged
    active non-VIP target the requester owns and manages, a fresh secret in a
    vault, nothing observed, nothing changed for years)."""
    a, t = truth.actor, truth.target
    return {
        "action": truth.request.action, "target_id": t.id, "emergency": False,
        "requested_privilege_tier": 0, "consent_scope": "low", "consent_tenant_wide": False,
        "says": {
            "request.id": "INC-0", "request.channel": "self_service_portal",
            "request.requested_at": "2026-01-01T00:00:00Z",
            "actor.id": t.id, "actor.type": "human", "actor.relationship": "self", "actor.authenticated": True,
            "actor.auth_strength": "phishing_resistant", "actor.on_behalf_of": t.id,
            "actor.roles": ["security", "helpdesk"], "actor.runs_as": a.id,
            "target.type": "human", "target.privileged": False, "target.privilege_tier": 0, "target.vip": False,
            "target.status": "active", "target.environment": "dev", "target.owners": [a.id],
            "target.owner_active": True, "target.secret_age_days": 0, "target.consumers": 0,
            "target.in_secrets_manager": True, "target.manager": a.on_behalf_of or a.id,
            "target.contact_age_days": 10**9, "target.publisher_verified": True, "target.holds_secret": False,
            "context.risk_signals": [], "context.failed_verifications_24h": 0,
            "context.recent_credential_change_hours": 10.0**6, "context.enrolled_factor_available": True,
        },
    }


def honest_and_lying(truth: Request, liar: Request | None, *, catalogue: bool):
    """The request built from the honest claim (action and target only) and
    from a lying one (``liar``'s every field, or the flattering lies when None)."""
    provider, session, request_facts = facts_of_record(truth)
    common = dict(facts=provider, session=session, channel=truth.request.channel, request_id=truth.request.id,
                  request_facts=request_facts if catalogue else None, now=NOW)
    honest = build_request(Claim(action=truth.request.action, target_id=truth.target.id), **common)
    if liar is None:
        lie = flattering_lies(truth)
    else:
        lie = Claim.from_request(liar).model_dump()
        lie.update(action=truth.request.action, target_id=truth.target.id)
    lying = build_request(lie, **common)
    return honest, lying


def _no_self_owned_unknown(req: Request) -> bool:
    # build_request looks owner_active up from the owners' records when the
    # inventory gives none; a target that owns itself would answer for itself.
    return not (req.target.owner_active is None and req.target.id in req.target.owners)


# Each fact's values from the safest to the riskiest (None, unknown, is the
# riskiest of all): the directions the README's monotonicity guarantee states.
_RISK_ORDERS: dict[str, Any] = {
    "request.emergency": [False, True],
    "target.privileged": [False, True],
    "target.vip": [False, True],
    "target.holds_secret": [False, True],
    "request.consent_tenant_wide": [False, True],
    "target.publisher_verified": [True, False],
    "context.enrolled_factor_available": [True, False],
    "request.consent_scope": ["low", "medium", "high"],
    "request.channel": [c.value for c in CHANNEL_TRUST_ORDER],
    "actor.auth_strength": [a.value for a in reversed(AUTH_STRENGTH_ORDER)],
    "actor.authenticated": [True, False],
}
_HIGHER_RISKIER = ("target.privilege_tier", "target.consumers", "context.failed_verifications_24h",
                   "request.requested_privilege_tier")
_LOWER_RISKIER = ("target.contact_age_days",)
_MAY_DIFFER = ("request.justification",)


def _risk(path: str, value: Any) -> float:
    if value is None:
        return float("inf")
    if path in _RISK_ORDERS:
        return float(_RISK_ORDERS[path].index(value))
    if path in _HIGHER_RISKIER:
        return float(value)
    return float(-value)


def assert_no_fact_is_safer(honest: Request, lying: Request) -> None:
    """Field by field: the lying request's every fact is the honest one's, or riskier."""
    h, l = honest.to_input(), lying.to_input()
    for path in REQUEST_PATHS:
        section, name = path.split(".")
        hv, lv = h[section][name], l[section][name]
        if path in _MAY_DIFFER:
            continue
        if path in _RISK_ORDERS or path in _HIGHER_RISKIER or path in _LOWER_RISKIER:
            assert _risk(path, lv) >= _risk(path, hv), path
        elif path == "context.risk_signals":
            assert set(lv) >= set(hv), path
        else:
            assert lv == hv, path


_LIARS = st.one_of(st.none(), requests())  # None: the flattering lies


@settings(max_examples=150)
@given(truth=requests(), liar=_LIARS, catalogue=st.booleans())
def test_claims_never_lower_a_decision(policy: HelpdeskPolicy, truth: Request, liar: Request | None,
                                       catalogue: bool) -> None:
    assume(_no_self_owned_unknown(truth))
    honest, lying = honest_and_lying(truth, liar, catalogue=catalogue)
    assert_no_fact_is_safer(honest.request, lying.request)
    assert policy.decide(lying.request).level >= policy.decide(honest.request).level


@settings(max_examples=120)
@given(truth=requests(actor_type="ai_agent"), liar=_LIARS, catalogue=st.booleans())
def test_an_agents_own_claims_never_lower_a_decision(policy: HelpdeskPolicy, truth: Request, liar: Request | None,
                                                     catalogue: bool) -> None:
    assume(_no_self_owned_unknown(truth))
    honest, lying = honest_and_lying(truth, liar, catalogue=catalogue)
    assert lying.request.actor.type is ActorType.AI_AGENT
    assert_no_fact_is_safer(honest.request, lying.request)
    assert policy.decide(lying.request).level >= policy.decide(honest.request).level


@settings(max_examples=150)
@given(req=requests())
def test_no_status_of_record_is_riskier_than_offboarded(policy: HelpdeskPolicy, req: Request) -> None:
    # Why an unknown status is read as offboarded (and SCIM's active: false too).
    doc = req.to_input()
    levels = []
    for status in ("active", "suspended", "offboarded"):
        doc["target"]["status"] = status
        levels.append(policy.decide(doc).level)
    assert levels == sorted(levels)


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.json")))
def test_flattering_lies_never_lower_a_shipped_example(policy: HelpdeskPolicy, example: str) -> None:
    truth = parse_request(json.loads((EXAMPLES / example).read_text(encoding="utf-8")))
    honest, lying = honest_and_lying(truth, None, catalogue=True)
    assert_no_fact_is_safer(honest.request, lying.request)
    assert policy.decide(lying.request).level >= policy.decide(honest.request).level
    assert policy.decide(honest.request).level == policy.decide(truth).level


@settings(max_examples=120)
@given(truth=requests())
def test_a_request_whose_facts_are_all_of_record_is_rebuilt_exactly(policy: HelpdeskPolicy, truth: Request) -> None:
    assume(_no_self_owned_unknown(truth))
    provider, session, catalogue = facts_of_record(truth)
    built = build_request(
        Claim(action=truth.request.action, target_id=truth.target.id, justification=truth.request.justification,
              emergency=truth.request.emergency),
        facts=provider, session=session, channel=truth.request.channel, request_id=truth.request.id,
        request_facts=catalogue, now=NOW)
    expected = copy.deepcopy(truth.to_input())
    got = built.request.to_input()
    expected["request"]["requested_at"] = got["request"]["requested_at"]
    if truth.actor.type is not ActorType.AI_AGENT:
        expected["actor"]["on_behalf_of"] = None  # only an agent has a principal
    else:
        expected["actor"]["relationship"] = got["actor"]["relationship"]  # an agent's is its principal's of record
    assert got == expected
    assert policy.decide(built.request).level == policy.decide(truth).level
    assert built.overridden == () and built.assumed == ()


# ================================================================ the file provider


YAML_INVENTORY = """\
- id: U-51876
  type: human
  status: active
  privileged: false
  privilege_tier: 0
  vip: false
  manager: u-20417
  contact_age_days: 512
- id: svc-billing-export
  type: service_account
  status: active
  privileged: true
  privilege_tier: 2
  vip: false
  owners: [u-20417, U-33001]
  environment: " Production "
  consumers: 14
  secret_age_days: 200
  in_secrets_manager: true
"""

CSV_INVENTORY = (
    "\ufeffid,type,status,privileged,privilege_tier,vip,owners,environment,secret_age_days,roles,"
    "recent_credential_change_hours\n"
    "u-51876,human,active,FALSE,0,false,,,,employee;Helpdesk,2150.5\n"
    "svc-billing-export,service_account,active,true,2,false,u-20417; u-33001,production,200,,\n"
)


def test_a_yaml_inventory(tmp_path: Path) -> None:
    path = tmp_path / "inventory.yaml"
    path.write_text(YAML_INVENTORY, encoding="utf-8")
    provider = FileFactsProvider(path)
    assert len(provider) == 2
    u = provider.identity("u-51876")
    assert u is not None and (u.id, u.manager, u.contact_age_days) == ("u-51876", "u-20417", 512)
    svc = provider.identity("SVC-BILLING-EXPORT")
    assert svc is not None and (svc.owners, svc.environment, svc.consumers) == (["u-20417", "u-33001"], "production", 14)
    assert provider.identity("nobody") is None and provider.identity("bad\nid") is None


def test_a_json_inventory_as_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "inventory.json"
    path.write_text(json.dumps({"u-1": {"type": "human", "status": "suspended", "vip": True},
                                "U-2": {"id": "u-2", "type": "ai_agent", "runs_as": "svc-bot"}}), encoding="utf-8")
    provider = FileFactsProvider(path)
    assert provider.identity("u-1").status.value == "suspended"  # type: ignore[union-attr]
    assert provider.identity("u-2").runs_as == "svc-bot"  # type: ignore[union-attr]
    path.write_text(json.dumps({"identities": [{"id": "u-3", "type": "human"}]}), encoding="utf-8")
    assert provider.reload() == 1 and provider.identity("u-3") is not None and provider.identity("u-1") is None


def test_a_csv_inventory(tmp_path: Path) -> None:
    path = tmp_path / "inventory.csv"
    path.write_text(CSV_INVENTORY, encoding="utf-8")
    provider = FileFactsProvider(path)
    u = provider.identity("u-51876")
    assert u is not None and (u.privileged, u.roles, u.recent_credential_change_hours, u.owners) == (
        False, ["employee", "helpdesk"], 2150.5, [])
    svc = provider.identity("svc-billing-export")
    assert svc is not None and (svc.owners, svc.secret_age_days, svc.privileged) == (["u-20417", "u-33001"], 200, True)


def test_a_bad_csv_names_every_bad_cell(tmp_path: Path) -> None:
    path = tmp_path / "inventory.csv"
    path.write_text(
        "id,type,status,privileged,privilege_tier,vip\n"
        "u-1,human,active,maybe,0,false\n"          # row 2: privileged
        "u-2,human,retired,false,12,false\n"        # row 3: status, privilege_tier
        "U-1,human,active,false,0,false\n"          # row 4: u-1 again
        "u-4,human,active,false,1_0,false\n"        # row 5: not plain digits
        "u-5,human\n",                              # row 6: too few cells
        encoding="utf-8")
    with pytest.raises(InvalidFactsError) as err:
        FileFactsProvider(path)
    where = str(path)
    assert err.value.paths == [f"{where}:2:privileged", f"{where}:5:privilege_tier", f"{where}:6",
                               f"{where}:3:status", f"{where}:3:privilege_tier", f"{where}:4:id"]
    assert "row 2" in str(err.value) and "retired" not in str(err.value)


def test_a_csv_header_is_checked_first(tmp_path: Path) -> None:
    path = tmp_path / "inventory.csv"
    path.write_text("identifier,type,privilege_teir,type\nu-1,human,0,human\n", encoding="utf-8")
    with pytest.raises(InvalidFactsError) as err:
        FileFactsProvider(path)
    where = str(path)
    assert err.value.paths == [f"{where}:1:identifier", f"{where}:1:privilege_teir", f"{where}:1:id",
                               f"{where}:1:type"]
    assert "did you mean 'privilege_tier'" in str(err.value)


def test_a_bad_yaml_inventory(tmp_path: Path) -> None:
    path = tmp_path / "inventory.yml"
    path.write_text("- {id: u-1, type: human, vip: 'no'}\n- 7\n- {id: u-1, type: robot}\n", encoding="utf-8")
    with pytest.raises(InvalidFactsError) as err:
        FileFactsProvider(path)
    where = str(path)
    assert err.value.paths == [f"{where}:2", f"{where}:1:vip", f"{where}:3:type"]
    path.write_text("- {id: u-1, type: human}\n- {id: u-1, type: human, id: u-2}\n", encoding="utf-8")
    with pytest.raises(FactsUnavailableError, match="duplicate key"):
        FileFactsProvider(path)


def test_a_failed_reload_keeps_the_inventory_in_use(tmp_path: Path) -> None:
    path = tmp_path / "inventory.yaml"
    path.write_text(YAML_INVENTORY, encoding="utf-8")
    provider = FileFactsProvider(path)
    path.write_text("- {id: u-1, type: human, privilege_tier: high}\n", encoding="utf-8")
    with pytest.raises(InvalidFactsError):
        provider.reload()
    assert provider.identity("u-51876") is not None
    path.unlink()
    with pytest.raises(FactsUnavailableError):
        provider.reload()
    with pytest.raises(ValueError, match="format"):
        FileFactsProvider(tmp_path / "inventory.txt")


def test_a_file_inventory_decides_end_to_end(tmp_path: Path, policy: HelpdeskPolicy) -> None:
    path = tmp_path / "inventory.csv"
    path.write_text(CSV_INVENTORY, encoding="utf-8")
    built = build_request(Claim(action="secret_rotation", target_id="svc-billing-export"),
                          facts=FileFactsProvider(path), session=relayed_by_bot(user_id="u-33001", auth_strength="mfa"),
                          channel="self_service_portal")
    assert built.request.actor.relationship is Relationship.OWNER
    assert policy.decide(built.request).level >= Level.STEP_UP


# ================================================================ the SCIM provider


EXT = "urn:example:params:scim:schemas:extension:helpdesk:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
CORE = "urn:ietf:params:scim:schemas:core:2.0:User"
TOKEN = "scim-test-token-7f3a9c"

BJENSEN = {
    "schemas": [CORE, ENTERPRISE, EXT],
    "id": "2819c223-7f76-453a-919d-413861904646",
    "externalId": "51876",
    "userName": "U-51876",
    "name": {"formatted": "Ms. Barbara J Jensen III", "familyName": "Jensen", "givenName": "Barbara"},
    "displayName": "Babs Jensen",
    "emails": [{"value": "bjensen@example.com", "type": "work", "primary": True}],
    "phoneNumbers": [{"value": "555-555-8377", "type": "work"}],
    "active": True,
    "groups": [
        {"value": "e9e30dba-f08f-4109-8486-d5c6a331660a", "$ref": "https://example.com/v2/Groups/e9e30dba",
         "display": "Employees"},
        {"value": "fc348aa8-3835-40eb-a20b-c726e15c55b5", "$ref": "https://example.com/v2/Groups/fc348aa8",
         "display": "Sales \"EMEA\""},
    ],
    ENTERPRISE: {
        "employeeNumber": "701984", "costCenter": "4130", "organization": "Universal Studios",
        "division": "Theme Park", "department": "Tour Operations",
        "manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d",
                    "$ref": "https://evil.example.net/Users/26118915", "displayName": "John Smith"},
    },
    EXT: {"privilegeTier": 0, "VIP": False, "privileged": "false", "contactChangedAt": "2025-06-29T08:00:00Z"},
    "meta": {"resourceType": "User", "created": "2010-01-23T04:56:22Z", "lastModified": "2011-05-13T04:42:34Z",
             "version": 'W/"3694e05e9dff591"',
             "location": "https://example.com/v2/Users/2819c223-7f76-453a-919d-413861904646"},
}
JSMITH = {
    "schemas": [CORE, ENTERPRISE], "id": "26118915-6090-4610-87e4-49d8ca9f808d", "userName": "u-20417",
    "active": True, "roles": [{"value": "people_manager", "primary": True}],
    "meta": {"resourceType": "User", "created": "2009-03-01T09:00:00Z"},
}
LEAVER = {"schemas": [CORE], "id": "5d48a0a8-e48c-4c1a-b0f8-2b1a4f6a9e11", "userName": "u-90001", "active": False}
MAPPING = {"privilege_tier": f"{EXT}:privilegeTier", "vip": f"{EXT}:vip", "privileged": f"{EXT}:privileged",
           "contact_age_days": f"{EXT}:contactChangedAt"}


class ScimServer:
    """A SCIM 2.0 service provider on 127.0.0.1 with faults on demand (``mode``)."""

    def __init__(self, users: list[dict[str, Any]]) -> None:
        self.users = {u["id"]: u for u in users}
        self.mode = "normal"
        self.seen: list[tuple[str, str | None]] = []  # (path, Authorization)
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                owner.seen.append((self.path, self.headers.get("Authorization")))
                owner.handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/scim/v2"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> ScimServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def send(self, h: BaseHTTPRequestHandler, status: int, body: Any, ctype: str = "application/scim+json",
             headers: dict[str, str] | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)

    def error(self, h: BaseHTTPRequestHandler, status: int, detail: str) -> None:
        self.send(h, status, {"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"], "status": str(status),
                              "detail": detail})

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        mode = self.mode
        if h.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self.error(h, 401, "Authorization failure. The authorization header is invalid or missing.")
        if mode == "500":
            return self.error(h, 500, f"internal error for token {TOKEN}")
        if mode == "slow":
            time.sleep(1.5)
        if mode == "redirect":
            return self.send(h, 302, b"", headers={"Location": "http://127.0.0.2:9/scim/v2/Users"})
        if mode == "html":
            return self.send(h, 200, b"<html>login</html>", ctype="text/html")
        if mode == "huge":
            return self.send(h, 200, {"schemas": [scim_module.LIST_RESPONSE], "pad": "x" * 5000})
        parts = urllib.parse.urlsplit(h.path)
        prefix = "/scim/v2/Users"
        if not parts.path.startswith(prefix):
            return self.error(h, 404, "no such endpoint")
        rest = parts.path[len(prefix):]
        if rest.startswith("/"):
            user = self.users.get(urllib.parse.unquote(rest[1:]))
            return self.send(h, 200, user) if user else self.error(h, 404, "Resource not found")
        query = urllib.parse.parse_qs(parts.query).get("filter", [""])[0]
        attr, _, literal = query.partition(" eq ")
        wanted = json.loads(literal) if literal else None
        found = [u for u in self.users.values()
                 if isinstance(u.get(attr), str) and isinstance(wanted, str) and u[attr].lower() == wanted.lower()]
        if mode == "ambiguous":
            found = list(self.users.values())[:2]
        if mode == "ignores_filter":
            found = [u for u in self.users.values() if u["userName"].lower() != str(wanted).lower()][:1]
        self.send(h, 200, {"schemas": [scim_module.LIST_RESPONSE], "totalResults": len(found),
                           "startIndex": 1, "itemsPerPage": len(found), "Resources": found})


@pytest.fixture()
def scim() -> Iterator[ScimServer]:
    with ScimServer([BJENSEN, JSMITH, LEAVER]) as server:
        yield server


def provider_for(server: ScimServer, **kw: Any) -> ScimFactsProvider:
    return ScimFactsProvider(server.url, token=kw.pop("token", TOKEN), attributes=kw.pop("attributes", MAPPING),
                             proxies={}, clock=lambda: NOW, timeout=kw.pop("timeout", 3.0), **kw)


def test_scim_reads_a_user_with_the_enterprise_manager_and_a_custom_extension(scim: ScimServer) -> None:
    facts = provider_for(scim).identity("u-51876")
    assert facts is not None
    assert (facts.id, facts.type.value, facts.status.value) == ("u-51876", "human", "active")  # type: ignore[union-attr]
    assert (facts.privileged, facts.privilege_tier, facts.vip) == (False, 0, False)
    assert facts.contact_age_days == 512  # 2025-06-29 to 2026-11-23
    assert facts.manager == "u-20417"  # the manager's SCIM id, resolved to their userName
    assert facts.roles == ["employees"]  # 'Sales "EMEA"' is no valid identifier: skipped
    paths = [p for p, _ in scim.seen]
    assert paths == ['/scim/v2/Users?filter=userName+eq+%22u-51876%22',
                     "/scim/v2/Users/26118915-6090-4610-87e4-49d8ca9f808d"]  # never the manager's $ref
    assert all(auth == f"Bearer {TOKEN}" for _, auth in scim.seen)


def test_scim_by_external_id_and_by_id(scim: ScimServer) -> None:
    assert provider_for(scim, lookup="externalId").identity("51876").id == "51876"  # type: ignore[union-attr]
    by_id = provider_for(scim, lookup="id", attributes={})
    facts = by_id.identity("26118915-6090-4610-87e4-49d8ca9f808d")
    assert facts is not None and facts.roles == ["people_manager"]
    assert facts.privileged is None and facts.vip is None  # unmapped: unknown, read at the riskiest


def test_scim_unknown_and_inactive_users(scim: ScimServer) -> None:
    provider = provider_for(scim, attributes={})
    assert provider.identity("u-00000") is None
    assert provider_for(scim, lookup="id").identity("no-such-id") is None
    # active: false does not tell suspended from offboarded: the riskiest.
    assert provider.identity("u-90001").status.value == "offboarded"  # type: ignore[union-attr]


@pytest.mark.parametrize(("mode", "message"), [
    ("500", "HTTP 500"),
    ("redirect", "redirect"),
    ("html", "not SCIM JSON"),
    ("huge", "more than 1024 bytes"),
    ("ambiguous", "several identities"),
    ("ignores_filter", "not the one asked for"),
])
def test_scim_failures_are_unavailable_never_partial(scim: ScimServer, mode: str, message: str) -> None:
    scim.mode = mode
    with pytest.raises(FactsUnavailableError, match=message) as err:
        provider_for(scim, max_response_bytes=1024 if mode == "huge" else 1 << 20).identity("u-51876")
    assert TOKEN not in str(err.value) and err.value.source == "scim"
    if mode == "redirect":
        assert len(scim.seen) == 1  # not followed: the token went to the base URL only


def test_scim_refused_credentials_and_a_token_source(scim: ScimServer) -> None:
    with pytest.raises(FactsUnavailableError, match="refused the credentials") as err:
        provider_for(scim, token="wrong-token").identity("u-51876")
    assert "wrong-token" not in str(err.value)
    tokens = iter([TOKEN, TOKEN, TOKEN])
    assert provider_for(scim, token=lambda: next(tokens)).identity("u-51876") is not None
    with pytest.raises(FactsUnavailableError, match="token source"):
        provider_for(scim, token=lambda: "two words").identity("u-51876")


def test_scim_timeout(scim: ScimServer) -> None:
    scim.mode = "slow"
    started = time.monotonic()
    with pytest.raises(FactsUnavailableError):
        provider_for(scim, timeout=0.3).identity("u-51876")
    assert time.monotonic() - started < 1.2


def test_scim_unreachable() -> None:
    with ScimServer([]) as server:
        url = server.url
    with pytest.raises(FactsUnavailableError, match="did not answer"):
        ScimFactsProvider(url, token=TOKEN, proxies={}, timeout=1.0).identity("u-1")


def test_scim_invalid_values_name_the_attribute_and_the_fact(scim: ScimServer) -> None:
    bad = copy.deepcopy(BJENSEN)
    bad[EXT].update(privilegeTier="high", contactChangedAt="2099-01-01T00:00:00Z")
    scim.users[bad["id"]] = bad
    with pytest.raises(InvalidFactsError) as err:
        provider_for(scim).identity("u-51876")
    assert err.value.paths == [f"scim:{EXT}:privilegeTier -> privilege_tier",
                               f"scim:{EXT}:contactChangedAt -> contact_age_days"]


def test_scim_configuration_is_checked() -> None:
    with pytest.raises(InvalidConfigError) as err:
        ScimFactsProvider("http://idp.example.com/scim/v2", token="bad\r\ntoken", lookup="email",
                          attributes={"tier": "x"}, timeout=0, identity_type="robot")
    assert err.value.paths == ["base_url", "token", "attributes.tier", "lookup", "identity_type", "timeout"]
    assert "bad" not in str(err.value).replace("bad argument", "")
    with pytest.raises(InvalidConfigError) as err:
        ScimFactsProvider("https://user:pw@idp.example.com/scim/v2?x=1")
    assert err.value.paths == ["base_url", "base_url"] and "pw" not in str(err.value)
    assert ScimFactsProvider("http://idp.example.com/scim/v2/", allow_insecure_http=True).base_url == \
        "http://idp.example.com/scim/v2"


def test_scim_end_to_end_for_a_relayed_chat_reset(scim: ScimServer, policy: HelpdeskPolicy) -> None:
    provider = provider_for(scim)

    async def main() -> Any:
        return await abuild_request(Claim(action="password_reset", says={"target.vip": False}), facts=provider,
                                    session=relayed_by_bot(user_id="u-51876", auth_strength="mfa"),
                                    channel="chat", now=NOW)

    built = asyncio.run(main())
    t = built.request.target
    assert (t.manager, t.contact_age_days, t.vip) == ("u-20417", 512, False)
    assert built.request.actor.roles == ["employees"]
    # Neither recent_credential_change_hours nor enrolled_factor_available comes
    # from SCIM: unknown, read at the riskiest (a change within the window).
    assert policy.decide(built.request).level is Level.CALLBACK
