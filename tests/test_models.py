"""The models' own contract: levels, request validation, the SPEC §4 shape,
verdict consistency, config validation, digests and redaction."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
from helpdesk_policy.models import Obligation, Reason, Request, construct_trusted
from helpdesk_policy.policies import PolicySet
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
    assert parse_request(req) is req


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
    """SPEC §5.5: a bad field may hold a pasted credential; errors name the path, not the value."""
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

#: SPEC §4, the output example's keys, exactly.
SPEC_DECISION_KEYS = {
    "level", "allowed", "requirements", "reasons", "obligations", "playbook",
    "engine", "degraded", "policy_revision", "decision_id", "input_digest",
}
SPEC_REASON_KEYS = {"code", "level", "message", "refs"}
SPEC_OBLIGATION_KEYS = {"code", "within_hours", "fields"}


@settings(max_examples=100)
@given(req=requests())
def test_decision_to_dict_is_exactly_the_spec_shape(req: Request) -> None:
    decision = _native_policy().decide(req)
    doc = decision.to_dict()
    assert set(doc) == SPEC_DECISION_KEYS
    assert all(set(r) == SPEC_REASON_KEYS for r in doc["reasons"])
    assert all("code" in o and set(o) <= SPEC_OBLIGATION_KEYS for o in doc["obligations"])
    assert json.loads(decision.to_json()) == doc
    assert isinstance(doc["level"], str) and isinstance(doc["allowed"], bool)
    assert doc["policy_revision"].startswith("sha256:") and doc["input_digest"].startswith("sha256:")


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
    assert construct_trusted(Obligation, {"code": "c", "within_hours": None, "fields": None}) == Obligation(code="c")


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
