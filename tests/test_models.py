"""The models' own contract: levels, request validation, the decision contract's shape,
verdict consistency, config validation, digests and redaction."""

from __future__ import annotations

import asyncio
import copy
import json
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import model_serializer

from helpdesk_policy import (
    Decision,
    HelpdeskPolicy,
    InvalidConfigError,
    InvalidRequestError,
    Level,
    PolicyConfig,
    Verdict,
    load_config,
    parse_request,
)
from helpdesk_policy.digest import REDACTED, input_digest, redact
from helpdesk_policy.engines.native import NativeEngine
from helpdesk_policy.levels import REQUIREMENTS
from helpdesk_policy.models import Obligation, Reason, Request, Target, construct_trusted
from helpdesk_policy.policyset import PolicySet
from helpdesk_policy.testing import request_dicts, requests

REQUEST: dict[str, Any] = {
    "request": {"id": "INC-1042", "action": "mfa_reset", "channel": "phone",
                "justification": "lost phone, my old password was hunter2", "emergency": False,
                "requested_at": "2026-11-24T10:00:00Z"},
    "actor": {"id": "u-123", "type": "human", "relationship": "self", "authenticated": True,
              "auth_strength": "password", "on_behalf_of": None, "roles": ["employee"]},
    "target": {"id": "u-123", "type": "human", "privileged": True, "privilege_tier": 2, "vip": False,
               "status": "active", "environment": None, "owners": [], "owner_active": True,
               "secret_age_days": None, "consumers": None, "in_secrets_manager": None},
    "context": {"risk_signals": ["new_device"], "failed_verifications_24h": 0,
                "recent_credential_change_hours": None},
}


def _doc(**changes: Any) -> dict[str, Any]:
    """REQUEST with ``section__field=value`` changes."""
    doc = copy.deepcopy(REQUEST)
    for key, value in changes.items():
        section, name = key.split("__", 1)
        doc[section][name] = value
    return doc


# --------------------------------------------------------------------- levels


def test_levels_are_ordered_along_the_ladder() -> None:
    ladder = [Level.SELF_SERVICE, Level.STEP_UP, Level.MANAGER_APPROVAL, Level.CALLBACK, Level.DENY]
    assert list(Level) == ladder
    assert sorted(reversed(ladder)) == ladder  # not alphabetical ("callback" < "deny" < "manager_approval")
    assert [lvl.rank for lvl in ladder] == [0, 1, 2, 3, 4]
    assert [Level.from_rank(i) for i in range(5)] == ladder
    assert max(ladder[:4]) is Level.CALLBACK and min(ladder) is Level.SELF_SERVICE
    for low, high in zip(ladder, ladder[1:]):
        assert low < high and low <= high and high > low and high >= low and not high < low
    assert str(Level.MANAGER_APPROVAL) == "manager_approval"
    assert Level("deny") is Level.DENY and Level.DENY == "deny"
    assert {Level.STEP_UP: 1}["step_up"] == 1  # hashes like its value


def test_requirements_are_cumulative_and_deny_has_none() -> None:
    assert Level.SELF_SERVICE.requirements == []
    assert Level.STEP_UP.requirements == ["identity_step_up"]
    assert Level.MANAGER_APPROVAL.requirements == ["identity_step_up", "manager_approval"]
    assert Level.CALLBACK.requirements == ["identity_step_up", "manager_approval", "out_of_band_callback"]
    assert Level.DENY.requirements == []
    allowed = [lvl for lvl in Level if lvl.allowed]
    assert allowed == [Level.SELF_SERVICE, Level.STEP_UP, Level.MANAGER_APPROVAL, Level.CALLBACK]
    for low, high in zip(allowed, allowed[1:]):
        assert high.requirements[: len(low.requirements)] == low.requirements
        assert len(high.requirements) == len(low.requirements) + 1
    # A copy: a caller mutating it cannot change the table.
    Level.CALLBACK.requirements.append("nothing")
    assert "nothing" not in REQUIREMENTS[Level.CALLBACK]


def test_comparing_a_level_with_a_plain_string_is_not_alphabetical() -> None:
    """FINDING-1: Level is a str enum; a comparison with a plain string used to
    fall back to str ordering ('deny' < 'self_service'). A string naming a
    level now compares by rank, either way round; any other string raises."""
    assert Level.DENY > "self_service"  # type: ignore[operator]
    assert "self_service" < Level.DENY  # type: ignore[operator]
    assert Level.STEP_UP <= "step_up" and Level.STEP_UP >= "step_up"  # type: ignore[operator]
    assert not (Level.CALLBACK < "manager_approval")  # type: ignore[operator]
    assert Level.MANAGER_APPROVAL < "callback"  # type: ignore[operator]  # alphabetically the other way
    for low in Level:
        for high in Level:
            assert (low < high.value) is (low.rank < high.rank)  # type: ignore[operator]
            assert (low.value < high) is (low.rank < high.rank)  # type: ignore[operator]
            assert (low >= high.value) is (low.rank >= high.rank)  # type: ignore[operator]
    for unknown in ("zzz", "", "DENY", "Level.DENY"):
        with pytest.raises(TypeError):
            Level.DENY > unknown  # type: ignore[operator]  # noqa: B015
        with pytest.raises(TypeError):
            unknown < Level.SELF_SERVICE  # type: ignore[operator]  # noqa: B015
    with pytest.raises(TypeError):
        Level.DENY < 3  # type: ignore[operator]  # noqa: B015
    assert Level.DENY == "deny" and Level.DENY != "callback"  # equality is by value, as before


# ----------------------------------------------------------- request validation


def test_the_spec_example_is_valid_and_round_trips() -> None:
    req = parse_request(REQUEST)
    doc = req.to_input()
    assert set(doc) == {"request", "actor", "target", "context"}
    assert parse_request(doc) == req
    assert parse_request(req) == req  # validated again, equal (see the model-instance tests)


def test_every_bad_field_is_listed_at_once() -> None:
    bad = _doc(
        request__action="reset_everything", request__channel="fax",
        actor__type="robot", actor__auth_strength="strong",
        target__privilege_tier=12, target__status="gone",
        context__risk_signals=["new_device", "bad_vibes"], context__failed_verifications_24h=-3,
    )
    bad["target"]["privilege_teir"] = 1  # a typo is an error, not a silent default
    del bad["actor"]["relationship"]
    with pytest.raises(InvalidRequestError) as info:
        parse_request(bad)
    assert set(info.value.paths) == {
        "request.action", "request.channel", "actor.type", "actor.auth_strength", "actor.relationship",
        "target.privilege_tier", "target.status", "target.privilege_teir", "context.risk_signals.1",
        "context.failed_verifications_24h",
    }
    text = str(info.value)
    assert text.startswith("invalid request (10 error(s)):")
    for path in info.value.paths:
        assert f"  - {path}: " in text


def test_missing_sections_and_non_objects_are_errors() -> None:
    with pytest.raises(InvalidRequestError) as info:
        parse_request({"request": REQUEST["request"]})
    assert set(info.value.paths) == {"actor", "target"}
    for not_a_request in (None, [], "INC-1", 42):
        with pytest.raises(InvalidRequestError):
            parse_request(not_a_request)  # type: ignore[arg-type]


@pytest.mark.parametrize(("changes", "path"), [
    ({"request__justification": "hunter2 " * 600}, "request.justification"),  # too long
    ({"request__justification": ["hunter2"]}, "request.justification"),  # wrong type
    ({"request__action": "hunter2"}, "request.action"),  # unknown value
    ({"target__environment": "hunter2" * 10}, "target.environment"),
    ({"target__privilege_tier": "hunter2"}, "target.privilege_tier"),
    ({"context__recent_credential_change_hours": "hunter2"}, "context.recent_credential_change_hours"),
    ({"request__requested_at": "hunter2"}, "request.requested_at"),
    ({"actor__roles": ["employee", {"pw": "hunter2"}]}, "actor.roles.1"),
])
def test_errors_never_echo_input_values(changes: dict[str, Any], path: str) -> None:
    """Guarantee 5: a bad field may hold a pasted credential; errors name the path, not the value."""
    with pytest.raises(InvalidRequestError) as info:
        parse_request(_doc(**changes))
    assert info.value.paths == [path]
    assert "hunter2" not in str(info.value) and "hunter2" not in repr(info.value.errors)


def test_a_valid_justification_never_reaches_an_error_either() -> None:
    with pytest.raises(InvalidRequestError) as info:
        parse_request(_doc(request__justification="my password is hunter2", request__channel="fax"))
    assert info.value.paths == ["request.channel"] and "hunter2" not in str(info.value)


def test_strict_types_where_a_coercion_could_lower_a_level() -> None:
    for tier in ("2", 2.0, True):
        with pytest.raises(InvalidRequestError, match="target.privilege_tier"):
            parse_request(_doc(target__privilege_tier=tier))
    for count in ("3", 3.5, False):
        with pytest.raises(InvalidRequestError, match="context.failed_verifications_24h"):
            parse_request(_doc(context__failed_verifications_24h=count))


def test_risk_signals_are_a_sorted_set() -> None:
    req = parse_request(_doc(context__risk_signals=["off_hours", "new_device", "off_hours"]))
    assert [s.value for s in req.context.risk_signals] == ["new_device", "off_hours"]


def test_optional_fields_default_to_unknown_or_none_observed() -> None:
    minimal = {k: REQUEST[k] for k in ("request", "actor", "target")}
    minimal["target"] = {k: v for k, v in REQUEST["target"].items()
                         if k in ("id", "type", "privileged", "privilege_tier", "vip", "status")}
    req = parse_request(minimal)
    t = req.target
    assert (t.environment, t.owner_active, t.secret_age_days, t.consumers, t.in_secrets_manager) == (None,) * 5
    assert t.owners == [] and req.context.risk_signals == [] and req.context.failed_verifications_24h == 0


# ----------------------------------------------------------- decision shape

#: the decision contract, the output example's keys, exactly.
SPEC_DECISION_KEYS = {
    "level", "allowed", "requirements", "reasons", "obligations", "playbook", "constraints",
    "engine", "degraded", "policy_revision", "decision_id", "input_digest",
    # Additive (SPEC §6): the request's id, action and target.
    "request_id", "action", "target_id",
}
SPEC_REASON_KEYS = {"code", "level", "message", "refs"}
SPEC_OBLIGATION_KEYS = {"code", "within_hours", "fields", "to"}
#: A constraint is given in full (an approver's ``ids: null`` is not ``[]``).
SPEC_APPROVER_KEYS = {"of_record", "ids", "exclude", "ai_agent"}
SPEC_CALLBACK_KEYS = {
    "to", "ids", "min_contact_age_days", "contact_age_days", "contact_usable", "fallback",
    "not_the_recovered_factor", "request_supplied", "ai_agent",
}


@settings(max_examples=100)
@given(req=requests())
def test_decision_to_dict_is_exactly_the_spec_shape(req: Request) -> None:
    decision = _native_policy().decide(req)
    doc = decision.to_dict()
    assert set(doc) == SPEC_DECISION_KEYS
    assert all(set(r) == SPEC_REASON_KEYS for r in doc["reasons"])
    assert all("code" in o and set(o) <= SPEC_OBLIGATION_KEYS for o in doc["obligations"])
    # The stock policy always states its constraints: exactly the checks the level requires.
    constraints = doc["constraints"]
    assert set(constraints) == ({"approver"} if "manager_approval" in doc["requirements"] else set()) | (
        {"callback"} if "out_of_band_callback" in doc["requirements"] else set())
    if "approver" in constraints:
        assert set(constraints["approver"]) == SPEC_APPROVER_KEYS and constraints["approver"]["ai_agent"] is False
    if "callback" in constraints:
        callback = constraints["callback"]
        assert set(callback) == SPEC_CALLBACK_KEYS
        assert (callback["ai_agent"], callback["request_supplied"]) == (False, False)
    assert json.loads(decision.to_json()) == doc
    assert isinstance(doc["level"], str) and isinstance(doc["allowed"], bool)
    assert doc["policy_revision"].startswith("sha256:") and doc["input_digest"].startswith("sha256:")
    assert (doc["request_id"], doc["action"], doc["target_id"]) == (req.request.id, req.request.action.value,
                                                                     req.target.id)


_POLICY: list[HelpdeskPolicy] = []


def _native_policy() -> HelpdeskPolicy:
    if not _POLICY:
        _POLICY.append(HelpdeskPolicy(engine="native"))
    return _POLICY[0]


@settings(max_examples=100)
@given(req=requests())
def test_construct_trusted_equals_a_validated_model(req: Request) -> None:
    """The native engine and the facade build models without validation
    (``construct_trusted``); they must equal validated ones in every way a
    caller can observe. Guards against pydantic internals changing."""
    fast = NativeEngine(PolicySet.load()).evaluate(req)
    slow = Verdict.model_validate(fast.model_dump())
    assert fast == slow
    assert fast.model_dump() == slow.model_dump() and fast.model_dump_json() == slow.model_dump_json()
    assert fast.model_fields_set == slow.model_fields_set
    assert fast.parity_key() == slow.parity_key()
    decision = _native_policy().decide(req)
    assert Decision.model_validate(decision.model_dump()) == decision
    assert decision.model_copy(update={"engine": "x"}).engine == "x"
    for part in ("approver", "callback"):  # nested constraints built the same way
        fast_part = None if fast.constraints is None else getattr(fast.constraints, part)
        slow_part = None if slow.constraints is None else getattr(slow.constraints, part)
        assert fast_part == slow_part
        assert fast_part is None or fast_part.model_fields_set == slow_part.model_fields_set  # type: ignore[union-attr]
    assert construct_trusted(Obligation, {"code": "c", "within_hours": None, "fields": None, "to": None}) == (
        Obligation(code="c"))


# ------------------------------------------------------- verdict consistency


def _verdict(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "level": "manager_approval", "allowed": True,
        "requirements": ["identity_step_up", "manager_approval"],
        "reasons": [
            {"code": "action_baseline", "level": "manager_approval", "message": "m.", "refs": []},
            {"code": "risk_off_hours", "level": "step_up", "message": "m.", "refs": ["CISA-AA23-320A"]},
        ],
        "obligations": [{"code": "record_evidence", "fields": ["requester"]}, {"code": "notify_identity_owner"}],
        "playbook": "access-grant-manager-approval",
    }
    doc.update(changes)
    return doc


def test_a_consistent_verdict_validates_and_is_put_in_canonical_order() -> None:
    v = Verdict.model_validate(_verdict(reasons=list(reversed(_verdict()["reasons"]))))
    assert [r.code for r in v.reasons] == ["action_baseline", "risk_off_hours"]  # strictest first
    assert [o.code for o in v.obligations] == ["notify_identity_owner", "record_evidence"]


@pytest.mark.parametrize(("changes", "problem"), [
    ({"level": "callback"}, "not the maximum of the reasons"),
    ({"level": "step_up", "requirements": ["identity_step_up"]}, "not the maximum of the reasons"),
    ({"allowed": False}, "contradicts level"),
    ({"requirements": ["identity_step_up"]}, "do not match level"),
    ({"requirements": ["manager_approval", "identity_step_up"]}, "do not match level"),
    ({"reasons": []}, "at least 1 item"),
    ({"obligations": [{"code": "notify_identity_owner"}, {"code": "notify_identity_owner"}]}, "unique"),
    ({"reasons": _verdict()["reasons"] + [{"code": "x", "level": "deny", "message": "m.", "refs": []}]},
     "not the maximum of the reasons"),  # a looser level next to a deny reason
    ({"playbook": ""}, "at least 1 character"),
    ({"extra": 1}, "Extra inputs are not permitted"),
    ({"level": "admin"}, "Input should be"),
])
def test_an_inconsistent_verdict_is_rejected(changes: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Verdict.model_validate(_verdict(**changes))


def test_reason_and_obligation_codes_are_machine_codes() -> None:
    with pytest.raises(ValueError):
        Reason(code="Privileged Target", level=Level.CALLBACK, message="m.")
    with pytest.raises(ValueError):
        Obligation(code="revoke", within_hours=-1)


# ------------------------------------------------------------- config


def test_stock_config_is_valid_and_serialises_sets_sorted() -> None:
    cfg = load_config()
    data = cfg.to_data()
    assert data["remote_channels"] == ["chat", "email", "phone"]
    assert all(v == sorted(v) for v in data.values() if isinstance(v, list))
    assert PolicyConfig.from_mapping(data) == cfg
    assert json.loads(cfg.canonical_json()) == data


def test_a_non_upward_closed_remote_channel_set_is_refused_clearly() -> None:
    # phone and chat but not email: email (less trusted than chat) would get a *lower* level.
    with pytest.raises(InvalidConfigError) as info:
        load_config({"remote_channels": ["chat", "phone"]})
    text = str(info.value)
    assert "remote_channels" in text and "less trusted" in text and "['chat', 'email', 'phone']" in text
    for ok in ([], ["phone"], ["email", "phone"], ["walk_in", "api", "chat", "email", "phone"]):
        assert load_config({"remote_channels": ok}).remote_channels == frozenset(ok)


@pytest.mark.parametrize(("override", "needle"), [
    ({"callback_tier": 1, "privileged_tier": 2}, "callback_tier: must be >= privileged_tier"),
    ({"strict_level": "step_up"}, "strict_level"),
    ({"strict_level": "self_service"}, "strict_level"),
    ({"vip_level": "deny"}, "vip_level"),
    ({"ai_agent_level": "deny"}, "ai_agent_level"),
    ({"action_baseline": {"info_request": "self_service"}}, "missing actions"),
    ({"privileged_tier": 0}, "privileged_tier"),
    ({"privileged_tier": "1"}, "privileged_tier"),
    ({"recovery_actions": ["password_reset", "format_disk"]}, "recovery_actions"),
    ({"high_risk_signals": ["bad_vibes"]}, "high_risk_signals"),
    ({"nhi_wide_consumers": 0}, "nhi_wide_consumers"),
    ({"chained_change_window_hours": 24 * 366}, "chained_change_window_hours"),
    ({"unknown_knob": 1}, "unknown_knob"),
])
def test_config_validators_refuse_broken_invariants(override: dict[str, Any], needle: str) -> None:
    with pytest.raises(InvalidConfigError) as info:
        load_config(override)
    assert needle in str(info.value)


def test_config_problems_are_all_listed() -> None:
    with pytest.raises(InvalidConfigError) as info:
        load_config({"remote_channels": ["chat"], "callback_tier": 1, "privileged_tier": 3,
                     "strict_level": "step_up", "vip_level": "deny"})
    text = str(info.value)
    for needle in ("remote_channels", "callback_tier", "strict_level", "vip_level"):
        assert needle in text


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_a_partial_override_file_is_merged_over_stock(tmp_path: Path, suffix: str) -> None:
    override = {"callback_tier": 3, "strict_level": "deny", "remote_channels": ["email", "phone"]}
    path = tmp_path / f"org{suffix}"
    path.write_text(json.dumps(override) if suffix == ".json" else
                    "callback_tier: 3\nstrict_level: deny\nremote_channels: [email, phone]\n", encoding="utf-8")
    cfg, stock = load_config(path), load_config()
    assert (cfg.callback_tier, cfg.strict_level) == (3, Level.DENY)
    assert cfg.remote_channels == frozenset({"email", "phone"})
    untouched = set(PolicyConfig.model_fields) - set(override)
    assert {k: getattr(cfg, k) for k in untouched} == {k: getattr(stock, k) for k in untouched}
    assert load_config(str(path)) == cfg
    assert HelpdeskPolicy(engine="native", config=path).config == cfg


def test_unreadable_or_malformed_config_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(InvalidConfigError, match="mapping"):
        load_config(tmp_path / "list.yaml")
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(InvalidConfigError, match="not valid"):
        load_config(tmp_path / "bad.json")


# ------------------------------------------------------ digest and redaction


@settings(max_examples=100)
@given(doc=request_dicts(), data=st.data())
def test_input_digest_is_stable_under_key_order_and_duplicate_signals(doc: dict[str, Any], data: st.DataObject) -> None:
    digest = input_digest(parse_request(doc))
    shuffled = {
        section: dict(data.draw(st.permutations(list(doc[section].items())), label=section))
        for section in data.draw(st.permutations(list(doc)), label="sections")
    }
    signals = shuffled["context"]["risk_signals"]
    shuffled["context"]["risk_signals"] = data.draw(st.permutations(signals + signals[:1]), label="signals")
    assert input_digest(parse_request(shuffled)) == digest
    # Leaving out a field that holds its default is the same request too.
    if doc["request"]["justification"] is None:
        del shuffled["request"]["justification"]
        assert input_digest(parse_request(shuffled)) == digest


def test_input_digest_changes_with_any_field() -> None:
    base = input_digest(parse_request(REQUEST))
    assert base.startswith("sha256:") and len(base) == 71
    for changes in ({"target__privilege_tier": 3}, {"request__justification": "x"}, {"context__risk_signals": []},
                    {"request__id": "INC-1043"}):
        assert input_digest(parse_request(_doc(**changes))) != base


def test_redact_removes_the_justification_and_nothing_else() -> None:
    req = parse_request(REQUEST)
    doc = redact(req)
    assert doc["request"]["justification"] == REDACTED
    assert "hunter2" not in json.dumps(doc)
    doc["request"]["justification"] = req.request.justification
    assert doc == req.to_input()
    assert req.request.justification is not None and "hunter2" in req.request.justification  # not mutated
    assert redact(parse_request(_doc(request__justification=None)))["request"]["justification"] is None


# ----------------------------------------------- identifiers (issue 8 item 1)

from helpdesk_policy.models import MAX_ID_LENGTH, canonical_identifier  # noqa: E402

MARK = "hunter2"

#: Where an identifier-like value sits in REQUEST: (changes for _doc, reported path).
ID_FIELDS: list[tuple[str, Any, str]] = [
    ("actor__id", None, "actor.id"),
    ("target__id", None, "target.id"),
    ("actor__on_behalf_of", None, "actor.on_behalf_of"),
    ("actor__roles", "list", "actor.roles.0"),
    ("target__owners", "list", "target.owners.0"),
    ("request__id", None, "request.id"),
    ("target__environment", None, "target.environment"),
]

#: One of each kind of character an identifier may not hold.
REFUSED_CHARACTERS = {
    "NUL": "\x00", "LF": "\n", "CR": "\r", "ESC": "\x1b", "DEL": "\x7f", "C1 NEL": "\x85",
    "zero-width space": "\u200b", "zero-width joiner": "\u200d", "RTL override": "\u202e",
    "bidi isolate": "\u2066", "BOM": "\ufeff", "soft hyphen": "\u00ad", "line separator": "\u2028",
    "paragraph separator": "\u2029", "private use": "\ue000", "unassigned": "\u0378",
    "noncharacter": "\uffff", "lone surrogate": "\ud800",
}


def _with(field: str, shape: Any, value: str) -> dict[str, Any]:
    return _doc(**{field: [value] if shape == "list" else value})


@pytest.mark.parametrize(("field", "shape", "path"), ID_FIELDS, ids=[p for _, _, p in ID_FIELDS])
@pytest.mark.parametrize("kind", sorted(REFUSED_CHARACTERS))
def test_identifiers_hold_printable_characters_only(field: str, shape: Any, path: str, kind: str) -> None:
    """Guarantee 8: no control or format character in an identifier, wherever it sits
    (rego-cpp cut "u-7\\x00attacker" to "u-7"; a newline forged an explain step)."""
    value = f"u-7{REFUSED_CHARACTERS[kind]}{MARK}"
    with pytest.raises(InvalidRequestError) as info:
        parse_request(_with(field, shape, value))
    assert info.value.paths == [path]
    # (pydantic itself refuses a lone surrogate, which is not text: "a valid string")
    assert "printable characters only" in str(info.value) or kind == "lone surrogate"
    assert MARK not in str(info.value) and MARK not in repr(info.value.errors)


#: Every identifier-like field but the environment, which is normalised instead (below).
_UNTRIMMED_FIELDS = [f for f in ID_FIELDS if f[2] != "target.environment"]
_PADDED = [" u-1", "u-1 ", "u-1\u3000", "\u00a0u-1", "u-1\u2003"]


@pytest.mark.parametrize(("field", "shape", "path"), _UNTRIMMED_FIELDS, ids=[p for _, _, p in _UNTRIMMED_FIELDS])
@pytest.mark.parametrize("value", _PADDED)
def test_identifiers_have_no_surrounding_whitespace(field: str, shape: Any, path: str, value: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        parse_request(_with(field, shape, value))
    assert info.value.paths == [path] and "whitespace" in str(info.value)


@pytest.mark.parametrize("value", _PADDED)
def test_an_environment_is_trimmed_not_refused(value: str) -> None:
    """Issue 10 item 5: the environment is normalised (case, whitespace), so a
    directory export's padding is the same environment, not an error."""
    assert parse_request(_doc(target__environment=value)).target.environment == "u-1"


@pytest.mark.parametrize("value", [" ", "\u3000", " \u00a0\u2003 "])
def test_a_blank_environment_is_refused(value: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        parse_request(_doc(target__environment=value))
    assert info.value.paths == ["target.environment"] and "whitespace" in str(info.value)


@pytest.mark.parametrize("value", ["prod\n", "\tprod", "prod\x1f", "prod\u2028", "\x85prod"])
def test_only_spaces_are_trimmed_from_an_environment(value: str) -> None:
    # Padding is space separators; a control or line separator at an end is refused, not trimmed.
    with pytest.raises(InvalidRequestError) as info:
        parse_request(_doc(target__environment=value))
    assert info.value.paths == ["target.environment"]


#: An NHI key reissue by its owner over chat (a remote channel, so not the owner's
#: strong hygiene path): the environment decides nhi_critical_environment.
_NHI = {"request__action": "api_key_reissue", "request__channel": "chat",
        "actor__relationship": "owner", "actor__auth_strength": "mfa",
        "target__id": "key-1", "target__type": "api_key", "target__privileged": False, "target__privilege_tier": 0,
        "target__owners": ["u-123"], "context__risk_signals": [], "context__recent_credential_change_hours": 1000}


@pytest.mark.parametrize(("environment", "production"), [
    ("staging", False), (" Staging ", False), ("STAGING", False), ("\uff53\uff54\uff41\uff47\uff49\uff4e\uff47", False),
    ("DEV", False), ("Sandbox\u3000", False),
    ("production", True), ("PROD", True), (" Production ", True), ("prd", True), ("staging-eu", True), ("stagé", True),
])
def test_the_environment_is_compared_in_canonical_form(environment: str, production: bool) -> None:
    """A production NHI recorded as "PROD" keeps nhi_critical_environment, a
    padded or upper-case non-production name is still non-production, and any
    name not recognised as non-production counts as production."""
    codes = {r.code for r in _native_policy().decide(_doc(**_NHI, target__environment=environment)).reasons}
    assert ("nhi_critical_environment" in codes) is production


@pytest.mark.parametrize(("field", "shape", "path"), ID_FIELDS[:5], ids=[p for _, _, p in ID_FIELDS[:5]])
def test_an_identifier_whose_normal_form_breaks_the_rules_is_refused(field: str, shape: Any, path: str) -> None:
    # A diaeresis (U+00A8) is printable, but NFKC makes it a space and a combining mark.
    with pytest.raises(InvalidRequestError, match="once normalised") as info:
        parse_request(_with(field, shape, "\u00a8u-1"))
    assert info.value.paths == [path]
    assert parse_request(_doc(request__id="\u00a8u-1")).request.id == "\u00a8u-1"  # spelling kept: not normalised


def test_identifier_length_is_bounded_as_sent_and_once_normalised() -> None:
    for value in ("u" * MAX_ID_LENGTH, "\ufdfa" * (MAX_ID_LENGTH // 18)):  # U+FDFA expands to 18 characters
        assert len(canonical_identifier(parse_request(_doc(target__owners=[value])).target.owners[0])) <= MAX_ID_LENGTH
    for value, needle in (("u" * (MAX_ID_LENGTH + 1), "at most 256"), ("\ufdfa" * 20, "once normalised")):
        with pytest.raises(InvalidRequestError, match=needle) as info:
            parse_request(_doc(target__owners=[value]))
        assert info.value.paths == ["target.owners.0"]
    with pytest.raises(InvalidRequestError) as info:
        parse_request(_doc(actor__roles=[""]))
    assert info.value.paths == ["actor.roles.0"]


def test_identity_identifiers_are_stored_in_canonical_form() -> None:
    """Every engine sees one spelling: NFKC(casefold(NFKC(id)))."""
    doc = _doc(actor__id="ＡＧＥＮＴ-７", actor__type="ai_agent", actor__on_behalf_of="U-123",
               actor__roles=["Helpdesk_Bot", "Straße"],
               target__id="Agent-7", target__type="ai_agent", target__owners=["U-123", "ｕ-9"],
               request__id="INC-Ｘ1", target__environment="Production")
    req = parse_request(doc)
    assert req.actor.id == req.target.id == "agent-7"
    assert req.actor.on_behalf_of == "u-123" and req.actor.roles == ["helpdesk_bot", "strasse"]
    assert req.target.owners == ["u-123", "u-9"]
    # The ticket number is shown to people and keeps its spelling; the environment is
    # compared with the config's non-production names, so it is stored canonical too.
    assert req.request.id == "INC-Ｘ1" and req.target.environment == "production"
    assert parse_request(req.to_input()) == req  # a fixed point
    assert input_digest(req) == input_digest(parse_request(_doc(
        actor__id="agent-7", actor__type="ai_agent", actor__on_behalf_of="u-123", actor__roles=["helpdesk_bot", "strasse"],
        target__id="agent-7", target__type="ai_agent", target__owners=["u-123", "u-9"],
        request__id="INC-Ｘ1", target__environment="production")))


def test_free_text_may_hold_anything_but_a_lone_surrogate() -> None:
    text = "line one\nline two\x1b[31m\x00 \u202e\u200b ok"
    assert parse_request(_doc(request__justification=text)).request.justification == text
    with pytest.raises(InvalidRequestError) as info:
        parse_request(_doc(request__justification=f"{MARK}\ud800"))
    assert info.value.paths == ["request.justification"] and MARK not in str(info.value)


#: Any code point, surrogates and controls included (st.characters() alone leaves surrogates out).
_ANY_CHAR = st.one_of(st.characters(), st.characters(categories=["Cs"]), st.sampled_from(list(REFUSED_CHARACTERS.values())))
_ANY_TEXT = st.text(_ANY_CHAR, max_size=12)


@settings(max_examples=max(300, settings.default.max_examples))
@given(value=st.one_of(_ANY_TEXT, st.sampled_from(["AGENT-7", "ǰ", "ᾳ", "\u0345", "ﬃ", "İ", "Σ", "ς"]).flatmap(
    lambda s: st.tuples(st.just(s), _ANY_TEXT).map("".join))))
def test_canonical_identifiers_are_idempotent_and_valid(value: str) -> None:
    """Over the whole Unicode range: an id is refused, or stored in a form that
    canonicalises to itself and is itself a valid id (so validating again never changes it)."""
    try:
        stored = parse_request(_doc(target__owners=[value])).target.owners[0]
    except InvalidRequestError as exc:
        assert exc.paths == ["target.owners.0"]
        return
    assert canonical_identifier(stored) == stored
    assert canonical_identifier(canonical_identifier(value)) == canonical_identifier(value) == stored
    assert parse_request(_doc(target__owners=[stored])).target.owners == [stored]
    assert not any(unicodedata.category(ch) in {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"} for ch in stored)
    assert stored == stored.strip() and 1 <= len(stored) <= MAX_ID_LENGTH


# ------------------------------------------- "self" is one identity (item 2)


@pytest.mark.parametrize(("actor_type", "target_type", "ok"), [
    ("human", "human", True), ("ai_agent", "ai_agent", True),
    ("service", "service_account", True), ("service", "api_key", True), ("service", "workload_identity", True),
    ("ai_agent", "human", False), ("human", "ai_agent", False), ("human", "api_key", False),
    ("service", "human", False), ("service", "ai_agent", False), ("ai_agent", "service_account", False),
])
def test_self_needs_actor_and_target_of_the_same_kind(actor_type: str, target_type: str, ok: bool) -> None:
    """An AI agent claiming 'self' on a human target that carries its id would
    skip third_party_recovery: refused on actor.relationship."""
    doc = _doc(actor__type=actor_type, target__type=target_type, request__action="password_reset")
    if ok:
        assert parse_request(doc).actor.relationship.value == "self"
        return
    doc["request"]["channel"] = "fax"  # listed together with a field error
    with pytest.raises(InvalidRequestError) as info:
        parse_request(doc)
    assert sorted(info.value.paths) == ["actor.relationship", "request.channel"]
    assert "same kind of identity" in str(info.value)


# --------------------------------------- model instances are revalidated (item 2)


def _offboarded_reset() -> Request:
    return parse_request(_doc(request__action="password_reset", request__channel="self_service_portal",
                              actor__auth_strength="mfa", target__privileged=False, target__privilege_tier=0,
                              context__risk_signals=[]))


class _LooseTarget(Target):
    privilege_tier: int  # no bounds


class _LooseRequest(Request):
    target: _LooseTarget


class _NoCrossFieldChecks(Request):
    def _consistent(self) -> Request:  # overrides (and so removes) Request's cross-field validator
        return self


class _Extra(Request):
    approved_by_ciso: bool = True


class _Unreadable(Request):
    @model_serializer
    def _boom(self) -> dict[str, Any]:
        raise RuntimeError(MARK)


def _routes() -> list[tuple[str, Callable[[], Any], str | None]]:
    """(name, build an unvalidated request, path that must be reported or None for "valid once revalidated")."""
    base = _offboarded_reset()
    doc = base.to_input()
    return [
        ("model_copy: plain string where an enum belongs",
         lambda: base.model_copy(update={"target": base.target.model_copy(update={"status": "offboarded"})}), None),
        ("model_copy: tier 99",
         lambda: base.model_copy(update={"target": base.target.model_copy(update={"privilege_tier": 99})}),
         "target.privilege_tier"),
        ("model_copy: boolean as a string",
         lambda: base.model_copy(update={"request": base.request.model_copy(update={"emergency": "no"})}),
         "request.emergency"),
        ("model_copy: id with a NUL",
         lambda: base.model_copy(update={"actor": base.actor.model_copy(update={"id": "u-123\x00x"})}), "actor.id"),
        ("model_construct: nested",
         lambda: Request.model_construct(request=base.request, actor=base.actor, context=base.context,
                                         target=Target.model_construct(**{**base.target.__dict__, "vip": "yes"})),
         "target.vip"),
        ("model_construct: a section as a dict with a bad value",
         lambda: Request.model_construct(**{**base.__dict__, "target": {**doc["target"], "status": "gone"}}),
         "target.status"),
        ("a model_construct section inside a dict",
         lambda: {**doc, "target": Target.model_construct(**{**base.target.__dict__, "privilege_tier": 99})},
         "target.privilege_tier"),
        ("subclass with looser field types",
         lambda: _LooseRequest.model_validate({**doc, "target": {**doc["target"], "privilege_tier": 99}}),
         "target.privilege_tier"),
        ("subclass without the cross-field checks",
         lambda: _NoCrossFieldChecks.model_validate({**doc, "actor": {**doc["actor"], "id": "u-9"}}),
         "actor.relationship"),
        ("subclass with an extra field", lambda: _Extra.model_validate(doc), "approved_by_ciso"),
        ("subclass whose dump fails", lambda: _Unreadable.model_validate(doc), "(root)"),
    ]


ROUTES = _routes()


@pytest.mark.parametrize("via", ["decide", "decide_many", "adecide", "adecide_many"])
@pytest.mark.parametrize(("name", "build", "path"), ROUTES, ids=[r[0] for r in ROUTES])
def test_every_way_into_decide_ends_in_a_validated_request(
    via: str, name: str, build: Callable[[], Any], path: str | None
) -> None:
    """Issue 8 item 2 / guarantee 1: a model instance is validated again however it was built."""
    policy = _native_policy()
    calls = {
        "decide": lambda r: policy.decide(r),
        "decide_many": lambda r: policy.decide_many([r])[0],
        "adecide": lambda r: asyncio.run(policy.adecide(r)),
        "adecide_many": lambda r: asyncio.run(policy.adecide_many([r]))[0],
    }
    if path is None:
        # The offboarded target is read as offboarded: only containment is allowed.
        decision = calls[via](build())
        assert decision.level is Level.DENY and "target_offboarded" in {r.code for r in decision.reasons}
        return
    with pytest.raises(InvalidRequestError) as info:
        calls[via](build())
    prefix = "[0]." if via.endswith("_many") else ""
    assert f"{prefix}{path}" in info.value.paths, info.value.paths
    assert MARK not in str(info.value)


def test_parse_request_of_a_valid_instance_returns_an_equal_request() -> None:
    req = _offboarded_reset()
    assert parse_request(req) == req
    copied = req.model_copy(update={"actor": req.actor.model_copy(update={"id": "U-123"})})
    assert parse_request(copied).actor.id == "u-123"  # stored in canonical form like any input


# ------------------------------------------------ strict types (issue 8 item 15)


@pytest.mark.parametrize(("field", "value"), [
    ("request__emergency", "off"), ("request__emergency", "no"), ("request__emergency", 0),
    ("request__emergency", "false"), ("actor__authenticated", 1), ("actor__authenticated", "yes"),
    ("target__privileged", "true"), ("target__vip", 0), ("target__owner_active", "on"),
    ("target__in_secrets_manager", 1), ("context__recent_credential_change_hours", True),
    ("context__recent_credential_change_hours", "5"), ("request__requested_at", 1700000000),
    ("request__requested_at", 1.5e9), ("request__requested_at", False),
])
def test_booleans_and_numbers_are_not_coerced(field: str, value: Any) -> None:
    with pytest.raises(InvalidRequestError) as info:
        parse_request(_doc(**{field: value}))
    assert info.value.paths == [field.replace("__", ".")]


def test_numbers_and_dates_still_read_their_json_forms() -> None:
    req = parse_request(_doc(context__recent_credential_change_hours=72, request__requested_at="2026-11-24T10:00:00Z"))
    assert req.context.recent_credential_change_hours == 72.0
    assert req.request.requested_at is not None and req.request.requested_at.year == 2026


# ------------------------------------------------------------ "did you mean"


@pytest.mark.parametrize(("changes", "path", "suggestion"), [
    ({"request__action": "pasword_reset"}, "request.action", "password_reset"),
    ({"request__action": "PASSWORD_RESET"}, "request.action", "password_reset"),
    ({"request__channel": "phon"}, "request.channel", "phone"),
    ({"actor__type": "ai-agent"}, "actor.type", "ai_agent"),
    ({"actor__relationship": "manger"}, "actor.relationship", "manager"),
    ({"actor__auth_strength": "phishing-resistant"}, "actor.auth_strength", "phishing_resistant"),
    ({"target__type": "service-account"}, "target.type", "service_account"),
    ({"target__status": "offboard"}, "target.status", "offboarded"),
    ({"context__risk_signals": ["leaked_credentials"]}, "context.risk_signals.0", "leaked_credential"),
])
def test_a_misspelled_vocabulary_word_gets_a_did_you_mean(changes: dict[str, Any], path: str, suggestion: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        parse_request(_doc(**changes))
    (error,) = info.value.errors
    assert error.path == path and error.message.endswith(f" — did you mean {suggestion!r}?")
    assert error.message.startswith("Input should be ")  # the valid values are still listed
    sent = next(iter(changes.values()))
    sent = sent[0] if isinstance(sent, list) else sent
    assert repr(sent) not in error.message  # the value sent is not echoed


def test_an_unknown_key_gets_a_did_you_mean_and_nonsense_gets_none() -> None:
    doc = _doc(request__action="reset_everything")
    doc["target"]["privilege_teir"] = 1
    doc["request"]["emergncy"] = True
    with pytest.raises(InvalidRequestError) as info:
        parse_request(doc)
    messages = {e.path: e.message for e in info.value.errors}
    assert messages["target.privilege_teir"].endswith("did you mean 'privilege_tier'?")
    assert messages["request.emergncy"].endswith("did you mean 'emergency'?")
    assert "did you mean" not in messages["request.action"]  # nothing close: no guess
    with pytest.raises(InvalidRequestError) as info:
        parse_request(_doc(request__action=f"password_reset {MARK} " * 10))  # long: pasted text, not a typo
    assert "did you mean" not in str(info.value) and MARK not in str(info.value)


# ----------------------------------------------------------- config errors


def test_config_errors_sit_on_their_key_with_field_errors(tmp_path: Path) -> None:
    """Cross-field invariants are listed with field errors, each on its key (not '(root)')."""
    with pytest.raises(InvalidConfigError) as info:
        load_config({"callback_tier": 1, "privileged_tier": 3, "vip_level": "deny", "remote_channels": ["chat"],
                     "nhi_wide_consumers": 0, "privileged_teir": 2})
    assert sorted(info.value.paths) == sorted(
        ["callback_tier", "vip_level", "remote_channels", "nhi_wide_consumers", "privileged_teir"])
    assert "(root)" not in str(info.value)
    messages = {e.path: e.message for e in info.value.errors}
    assert messages["privileged_teir"].endswith("did you mean 'privileged_tier'?")
    assert messages["callback_tier"] == "must be >= privileged_tier"


def test_config_file_errors_are_prefixed_with_the_file(tmp_path: Path) -> None:
    path = tmp_path / "org.yaml"
    path.write_text("privileged_tier: 3\nhigh_risk_signals: [leaked_credentials]\n"
                    "action_baseline: {pasword_reset: self_service}\nvip_levl: callback\n", encoding="utf-8")
    with pytest.raises(InvalidConfigError) as info:
        load_config(path)
    lines = [str(e) for e in info.value.errors]
    assert all(line.startswith(f"{path}: ") for line in lines)
    assert f"{path}: callback_tier: must be >= privileged_tier" in lines
    assert f"{path}: vip_levl: Extra inputs are not permitted — did you mean 'vip_level'?" in lines
    assert any(line.startswith(f"{path}: high_risk_signals.") and line.endswith("did you mean 'leaked_credential'?")
               for line in lines)
    assert any(line.startswith(f"{path}: action_baseline.pasword_reset") and "did you mean 'password_reset'?" in line
               for line in lines)


@pytest.mark.parametrize(("suffix", "text", "line"), [
    (".yaml", "vip_level: callback\nvip_level: self_service\n", 2),
    (".json", '{"vip_level": "callback",\n "vip_level": "self_service"}', None),
])
def test_a_config_file_with_a_duplicated_key_is_refused(tmp_path: Path, suffix: str, text: str, line: int | None) -> None:
    path = tmp_path / f"org{suffix}"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InvalidConfigError) as info:
        load_config(path)
    where = f"{path}: line {line}" if line else str(path)
    assert [str(e) for e in info.value.errors] == [f"{where}: duplicate key 'vip_level'"]


def test_a_config_instance_is_validated_again() -> None:
    stock = load_config()
    assert load_config(stock) == stock
    for update, path in (({"callback_tier": 0}, "callback_tier"), ({"strict_level": "self_service"}, "strict_level"),
                         ({"vip_level": Level.DENY}, "vip_level")):
        with pytest.raises(InvalidConfigError) as info:
            load_config(stock.model_copy(update=update))
        assert path in info.value.paths
        with pytest.raises(InvalidConfigError):
            HelpdeskPolicy(engine="native", config=stock.model_copy(update=update))


@pytest.mark.parametrize("environment", ["prodé", "prod\"x", "prod\\x", "prod\x00", " prod", "ｐｒｏｄ"])
def test_config_environments_hold_what_every_engine_reads_alike(environment: str) -> None:
    """rego-cpp keeps a string read from JSON data escaped ("prod\\u00e9"), so it
    never equals the input's "prodé" there while it does in Python and OPA."""
    with pytest.raises(InvalidConfigError) as info:
        load_config({"non_production_environments": ["staging", environment]})
    assert [p.split(".")[0] for p in info.value.paths] == ["non_production_environments"]
    assert load_config({"non_production_environments": ["staging", "pre-prod_2 (eu)"]})


def test_config_environments_are_written_in_the_form_requests_are_compared_in() -> None:
    """A request's environment is stored case-folded: an upper-case config entry
    could never match, and that environment would silently count as production."""
    with pytest.raises(InvalidConfigError, match="lower case") as info:
        load_config({"non_production_environments": ["staging", "UAT"]})
    assert [p.split(".")[0] for p in info.value.paths] == ["non_production_environments"]


# ------------------------------ decision_id and input_digest, worked out when first read


def _digest_by_hand(req: Request) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(req.model_dump_json().encode()).hexdigest()


def _pending_decision(req: Request | dict[str, Any]) -> Decision:
    """A decision as the facade's hot path builds it: both fields still pending."""
    from helpdesk_policy.models import DigestOf, PendingDecisionId

    decision = _native_policy().decide(req)  # the native engine: no cache, nothing reads them
    assert isinstance(decision.__dict__["input_digest"], DigestOf)
    assert isinstance(decision.__dict__["decision_id"], PendingDecisionId)
    return decision


@settings(max_examples=60)
@given(req=requests())
def test_a_lazy_digest_equals_the_eager_one_and_the_json_is_unchanged(req: Request) -> None:
    lazy = _pending_decision(req)
    # The same decision with both fields given up front, as before.
    eager = construct_trusted(Decision, {**lazy.__dict__, "decision_id": "fixed-id",
                                         "input_digest": _digest_by_hand(req)})
    assert lazy.model_dump_json() == eager.model_dump_json().replace("fixed-id", lazy.decision_id)
    assert lazy.input_digest == _digest_by_hand(req) == input_digest(req)
    assert lazy.to_json() == eager.to_json().replace("fixed-id", lazy.decision_id)
    assert lazy.model_dump() == {**eager.model_dump(), "decision_id": lazy.decision_id}
    assert list(lazy.model_dump()) == list(Decision.model_fields)  # the field order, both fields in place


def test_a_pending_decision_pickles_as_itself() -> None:
    import pickle

    decision = _pending_decision(REQUEST)
    back = pickle.loads(pickle.dumps(decision))
    assert back == decision
    assert (back.decision_id, back.input_digest) == (decision.decision_id, decision.input_digest)
    assert isinstance(back.__dict__["decision_id"], str) and isinstance(back.__dict__["input_digest"], str)
    assert back.to_json() == decision.to_json()


def test_every_copy_of_a_pending_decision_is_the_same_decision() -> None:
    decision = _pending_decision(REQUEST)
    shallow, deep = copy.copy(decision), copy.deepcopy(decision)
    plain, updated = decision.model_copy(), decision.model_copy(update={"engine": "x"})
    assert {d.decision_id for d in (decision, shallow, deep, plain, updated)} == {decision.decision_id}
    assert {d.input_digest for d in (decision, shallow, deep, plain, updated)} == {_digest_by_hand(
        parse_request(REQUEST))}
    assert shallow == decision == deep == plain and updated != decision


def test_two_decisions_of_one_request_differ_only_by_their_ids() -> None:
    first, second = _pending_decision(REQUEST), _pending_decision(REQUEST)
    assert first != second  # compared before either id was read: each draws its own
    assert first.decision_id != second.decision_id and first.input_digest == second.input_digest
    assert {**first.model_dump(), "decision_id": ""} == {**second.model_dump(), "decision_id": ""}


def test_a_pending_decision_prints_and_iterates_its_values() -> None:
    decision = _pending_decision(REQUEST)
    text = repr(decision)
    assert f"decision_id='{decision.decision_id}'" in text and "input_digest='sha256:" in text
    assert dict(decision)["input_digest"] == decision.input_digest
    assert str(decision).count(decision.decision_id) == 1


def test_threads_reading_a_pending_id_read_one_id() -> None:
    import threading

    for _ in range(20):
        decision = _pending_decision(REQUEST)
        seen: list[str] = []
        start = threading.Barrier(8)

        def read() -> None:
            start.wait()
            seen.append(decision.decision_id)

        threads = [threading.Thread(target=read) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(seen) == 8 and set(seen) == {decision.decision_id}


def test_a_decision_inside_another_model_dumps_its_pending_fields() -> None:
    from pydantic import BaseModel

    class Envelope(BaseModel):
        decision: Decision
        note: str = "x"

    decision = _pending_decision(REQUEST)
    doc = json.loads(Envelope(decision=decision).model_dump_json())
    assert doc["decision"]["decision_id"] == decision.decision_id
    assert doc["decision"]["input_digest"] == decision.input_digest


def test_the_decision_schema_and_fields_are_unchanged() -> None:
    for mode in ("validation", "serialization"):
        schema = Decision.model_json_schema(mode=mode)  # type: ignore[arg-type]
        assert schema["properties"]["decision_id"] == {"title": "Decision Id", "type": "string"}
        assert schema["properties"]["input_digest"] == {"title": "Input Digest", "type": "string"}
        assert {"decision_id", "input_digest"} <= set(schema["required"])
        assert schema["description"].startswith("A decision for one request (the decision contract)")

    class Annotated_(Decision):
        note: str = ""

    assert Annotated_.model_fields["decision_id"].is_required()
    built = Decision.model_validate({**_pending_decision(REQUEST).model_dump(), "decision_id": "d-1"})
    assert (built.decision_id, type(built.__dict__["input_digest"])) == ("d-1", str)
    with pytest.raises(Exception, match="frozen"):
        built.decision_id = "d-2"  # type: ignore[misc]
    assert not hasattr(Decision, "decision_id")  # no class attribute (pydantic would read it as a default)
    assert "decision_id" not in Decision.model_construct().__dict__ and not hasattr(Decision.model_construct(),
                                                                                    "decision_id")


def test_new_decision_ids_are_version_4_uuids() -> None:
    import re
    import uuid

    from helpdesk_policy.models import new_decision_id

    ids = [new_decision_id() for _ in range(500)]
    assert len(set(ids)) == 500
    shape = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
    assert all(shape.match(i) for i in ids)
    assert all(uuid.UUID(i).version == 4 and uuid.UUID(i).variant == uuid.RFC_4122 and str(uuid.UUID(i)) == i
               for i in ids)


def test_a_plain_dict_request_with_dict_subclass_sections_is_validated_alike() -> None:
    from collections import OrderedDict

    plain = parse_request(REQUEST)
    assert parse_request(OrderedDict(REQUEST)) == plain
    assert parse_request({**REQUEST, "target": OrderedDict(REQUEST["target"])}) == plain
    with pytest.raises(InvalidRequestError) as info:
        parse_request({**REQUEST, "target": OrderedDict({**REQUEST["target"], "privilege_tier": 99})})
    assert info.value.paths == ["target.privilege_tier"]


def test_the_config_and_the_evidence_checks_agree_on_the_default_window() -> None:
    from helpdesk_policy import config, evidence

    assert config.DEFAULT_WINDOW_HOURS == evidence.DEFAULT_WINDOW_HOURS == 72
    assert load_config().evidence_window_hours == 72


def test_field_descriptions_are_fields_not_docstrings() -> None:
    """The models describe their fields with ``Field(description=...)``: an
    attribute docstring would be read by nobody (they are not parsed at
    import, ``use_attribute_docstrings`` is off), and its text would be
    missing from the JSON Schema."""
    from pydantic import BaseModel
    from pydantic._internal._docs_extraction import extract_docstrings_from_cls

    from helpdesk_policy import models

    classes = [c for c in vars(models).values() if isinstance(c, type) and issubclass(c, BaseModel)
               and c.__module__ == models.__name__]
    assert {c.__name__ for c in classes} >= {"Request", "RequestInfo", "Actor", "Target", "Context", "Decision"}
    for cls in classes:
        assert not cls.model_config.get("use_attribute_docstrings"), cls.__name__
        assert extract_docstrings_from_cls(cls, use_inspect=True) == {}, cls.__name__
    described = {n: f.description for n, f in Decision.model_fields.items() if f.description}
    assert described == {
        "request_id": "The request's ``request.id`` (the ticket), as spelled.",
        "action": "The request's ``request.action``.",
        "target_id": "The request's ``target.id`` (canonical form). An identifier: the decision log masks it "
                     "like ``target.id``.",
    }
    assert Request.model_fields["request"].description is None
    assert models.Actor.model_fields["id"].description == (
        "The requester's identity (canonical form; from the session, not the caller's word).")


def test_the_stock_documents_cache_is_current() -> None:
    """stock_documents.json holds config.yaml and reasons.yaml parsed, for the
    bytes now on disk: after editing either, run ``python -m helpdesk_policy.config``."""
    import hashlib

    from helpdesk_policy import config
    from helpdesk_policy.loading import load_yaml
    from helpdesk_policy.resources import stock_policy_dir

    cache = json.loads(config.STOCK_CACHE.read_text(encoding="utf-8"))
    assert set(cache) == {"about", "config.yaml", "reasons.yaml"}
    for name in config.STOCK_DOCUMENTS:
        path = stock_policy_dir() / name
        assert cache[name]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest(), (
            f"{name} changed: run python -m helpdesk_policy.config")
        assert cache[name]["document"] == load_yaml(path.read_text(encoding="utf-8"), source=name)


def test_the_stock_documents_cache_is_used_only_for_the_bytes_it_was_made_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import hashlib

    from helpdesk_policy import config
    from helpdesk_policy.loading import load_yaml
    from helpdesk_policy.resources import stock_policy_dir

    path = stock_policy_dir() / "config.yaml"
    parsed = load_yaml(path.read_text(encoding="utf-8"), source="config.yaml")
    fake = tmp_path / "cache.json"
    monkeypatch.setattr(config, "STOCK_CACHE", fake)
    # Made from these bytes: used as it is (this one says something the file does not).
    fake.write_text(json.dumps({"config.yaml": {"sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                                                "document": {"from": "the cache"}}}), encoding="utf-8")
    first = config.read_mapping_file(path)
    assert first == {"from": "the cache"}
    first["edited"] = True
    assert config.read_mapping_file(path) == {"from": "the cache"}  # each caller gets its own copy
    # Made from other bytes, missing, or not JSON: the file itself is read.
    for text in (json.dumps({"config.yaml": {"sha256": "0" * 64, "document": {"from": "the cache"}}}), "{", None):
        if text is None:
            fake.unlink()
        else:
            fake.write_text(text, encoding="utf-8")
        assert config.read_mapping_file(path) == parsed
    # Only the package's own files: a copy elsewhere is read as YAML, strictly.
    copy_ = tmp_path / "config.yaml"
    copy_.write_bytes(path.read_bytes())
    fake.write_text(json.dumps({"config.yaml": {"sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                                                "document": {"from": "the cache"}}}), encoding="utf-8")
    assert config.read_mapping_file(copy_) == parsed


def test_write_stock_cache_writes_what_is_checked_in(tmp_path: Path) -> None:
    from helpdesk_policy import config

    written = config.write_stock_cache(tmp_path / "out.json")
    assert json.loads(written.read_text(encoding="utf-8")) == json.loads(config.STOCK_CACHE.read_text(encoding="utf-8"))
