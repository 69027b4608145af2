"""Expectation suites: the stock suite passes and covers every rule; bad files fail clearly."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from helpdesk_policy import HelpdeskPolicy, Level
from helpdesk_policy.engines.base import BaseEngine
from helpdesk_policy.errors import EngineError, HelpdeskPolicyError
from helpdesk_policy.ci.suites import (
    SuiteError,
    load_suite,
    load_suites,
    run_suite,
    run_suites,
    stock_suite_paths,
)
from helpdesk_policy.expectations import Expectation, assert_decision, check_decision
from helpdesk_policy.models import Request, RiskSignal
from helpdesk_policy.catalogue import load_catalogue
from helpdesk_policy.policyset import PolicySet
from helpdesk_policy.resources import stock_policy_dir

BASE: dict[str, Any] = {
    "request": {"id": "T-1", "action": "password_reset", "channel": "self_service_portal"},
    "actor": {"id": "u-1", "type": "human", "relationship": "self", "authenticated": True, "auth_strength": "mfa"},
    "target": {"id": "u-1", "type": "human", "privileged": False, "privilege_tier": 0, "vip": False,
               "status": "active"},
}
#: The holder phoning in for an MFA reset, last credential change long ago: step_up.
PHONE_MFA_RESET: dict[str, Any] = {
    **BASE, "request": {**BASE["request"], "action": "mfa_reset", "channel": "phone"},
    "context": {"recent_credential_change_hours": 1000},
}


def write(tmp_path: Path, doc: Any, name: str = "suite.yaml") -> Path:
    p = tmp_path / name
    p.write_text(doc if isinstance(doc, str) else json.dumps(doc), encoding="utf-8")
    return p


def suite_doc(*cases: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"suite": "t", "cases": list(cases), **extra}


# ------------------------------------------------------------------ stock suite


@pytest.fixture(scope="module")
def stock_suites() -> list[Any]:
    return load_suites(stock_suite_paths())


#: Where the guidance corpus lives among the stock suites.
GUIDANCE = stock_policy_dir() / "tests" / "guidance"


def _is_guidance(suite: Any) -> bool:
    return suite.path is not None and suite.path.parent == GUIDANCE


@pytest.fixture(scope="module")
def stock_results(stock_suites: list[Any]) -> dict[str, list[Any]]:
    out = {}
    for engine in ("rego", "native"):
        with HelpdeskPolicy(engine=engine) as policy:
            out[engine] = run_suites(policy, stock_suites)
    return out


@pytest.mark.parametrize("engine", ["rego", "native"])
def test_stock_suites_pass(stock_results: dict[str, list[Any]], stock_suites: list[Any], engine: str) -> None:
    results = stock_results[engine]
    failures = [r.failure_text() for r in results if not r.passed]
    assert not failures, "\n".join(failures)
    policy_cases = sum(len(s.cases) for s in stock_suites if not _is_guidance(s))
    assert policy_cases >= 250


def test_the_guidance_corpus_ships_with_the_stock_suites(stock_suites: list[Any]) -> None:
    # 140 cases written from the public guidance, each citing it and stating a
    # range of defensible levels (or one level), never a bare expectation.
    guidance = [s for s in stock_suites if _is_guidance(s)]
    assert len(guidance) == 14
    cases = [c for s in guidance for c in s.cases]
    assert len(cases) >= 140
    for case in cases:
        assert case.refs, case.name
        assert case.expect.level is not None or case.expect.level_range is not None, case.name
    assert sum(c.why is not None for c in cases) >= 70  # most say why; the obvious ones need not


def _catalogue_codes() -> set[str]:
    cat = load_catalogue()
    codes = {e.code for e in cat.reasons.values() if "%v" not in e.code}
    codes |= {e.reason_code(s.value) for e in cat.reasons.values() if "%v" in e.code for s in RiskSignal}
    return codes


def test_stock_suites_require_every_reason_and_obligation_code(stock_suites: list[Any]) -> None:
    # Every code the stock policy can emit (its reasons come from the catalogue,
    # its obligations from the Rego) is required to be present by some case,
    # so each rule family has at least one case proving it fires.
    sources = "\n".join(PolicySet.load().modules.values())
    emitted = set(re.findall(r'"code":\s*"([a-z_]+)"', sources)) | _catalogue_codes()
    required_reasons = {c for s in stock_suites for case in s.cases for c in case.expect.reason_codes}
    required_obligations = {c for s in stock_suites for case in s.cases for c in case.expect.obligation_codes}
    missing = emitted - required_reasons - required_obligations
    assert not missing, f"no stock case requires {sorted(missing)}"


def _template(message: str) -> re.Pattern[str]:
    return re.compile("^" + ".+?".join(map(re.escape, message.split("%v"))) + "$", re.S)


def test_every_catalogue_entry_is_produced_by_some_stock_case(stock_results: dict[str, list[Any]]) -> None:
    """Each variant of each rule (a catalogue key: a known or unknown fact, an
    agent, a strong path) reads differently; some stock case must produce it,
    so every sentence the policy can say has been seen in a decision."""
    cat = load_catalogue()
    patterns = {key: (_template(e.message), tuple(e.refs)) for key, e in cat.reasons.items()}
    produced: set[str] = set()
    for result in stock_results["native"]:
        if result.decision is None:
            continue
        for reason in result.decision.reasons:
            keys = [k for k, (pattern, refs) in patterns.items()
                    if tuple(reason.refs) == refs and pattern.match(reason.message)
                    and cat.reasons[k].reason_code(reason.code.removeprefix("risk_")) == reason.code]
            if len(keys) == 1:
                produced |= set(keys)
    missing = sorted(set(cat.reasons) - produced)
    assert not missing, f"no stock case produces the catalogue entries {missing}"


def test_stock_suites_cover_every_level_and_actor_kind(stock_suites: list[Any]) -> None:
    levels = {case.expect.level for s in stock_suites for case in s.cases if case.expect.level}
    assert {lv.value for lv in levels} == {"self_service", "step_up", "manager_approval", "callback", "deny"}
    actors = {case.request.actor.type.value for s in stock_suites for case in s.cases}
    assert actors == {"human", "ai_agent", "service"}
    targets = {case.request.target.type.value for s in stock_suites for case in s.cases}
    assert len(targets) == 7
    actions = {case.request.request.action.value for s in stock_suites for case in s.cases}
    assert len(actions) == 18


# --------------------------------------------------------------------- loading


def test_base_request_is_deep_merged(tmp_path: Path) -> None:
    p = write(tmp_path, suite_doc(
        {"name": "phone", "request": {"request": {"channel": "phone"}}, "expect": {"level": "step_up"}},
        base_request=BASE,
    ))
    (case,) = load_suite(p).cases
    assert case.request.request.channel.value == "phone"
    assert case.request.request.action.value == "password_reset"  # kept from the base


def test_request_file_is_relative_to_the_suite(tmp_path: Path) -> None:
    (tmp_path / "reqs").mkdir()
    (tmp_path / "reqs" / "r.json").write_text(json.dumps(BASE), encoding="utf-8")
    sub = tmp_path / "suites"
    sub.mkdir()
    doc = suite_doc({"name": "from file", "request_file": "../reqs/r.json", "expect": {"level": "self_service"}})
    p = write(sub, doc)
    (case,) = load_suite(p).cases
    assert case.request.request.id == "T-1"
    assert case.request_file == sub / "../reqs/r.json"


def test_json_suites_load(tmp_path: Path) -> None:
    p = write(tmp_path, suite_doc({"name": "a", "request": BASE, "expect": {"allowed": True}}), "s.json")
    assert load_suites([p])[0].name == "t"


def errors_of(tmp_path: Path, doc: Any, name: str = "suite.yaml") -> str:
    p = write(tmp_path, doc, name)
    with pytest.raises(SuiteError) as info:
        load_suite(p)
    assert isinstance(info.value, HelpdeskPolicyError)
    return str(info.value)


def test_unknown_key_names_file_case_and_field(tmp_path: Path) -> None:
    msg = errors_of(tmp_path, suite_doc(
        {"name": "ok", "request": BASE, "expect": {"level": "self_service"}},
        {"name": "typo", "request": BASE, "expect": {"levle": "deny"}},
    ))
    assert "suite.yaml: cases[1] 'typo'.expect.levle" in msg
    assert "Extra inputs are not permitted" in msg


def test_bad_level_and_bad_code(tmp_path: Path) -> None:
    msg = errors_of(tmp_path, suite_doc(
        {"name": "lvl", "request": BASE, "expect": {"level": "maybe", "reasons": ["Not A Code"]}},
    ))
    assert "cases[0] 'lvl'.expect.level" in msg
    assert "cases[0] 'lvl'.expect.reasons[0]" in msg


def test_invalid_request_lists_every_field_path(tmp_path: Path) -> None:
    bad = json.loads(json.dumps(BASE))
    bad["target"]["privilege_tier"] = 12
    bad["request"]["channel"] = "fax"
    msg = errors_of(tmp_path, suite_doc({"name": "bad req", "request": bad, "expect": {"level": "deny"}}))
    assert "cases[0] 'bad req': request.target.privilege_tier" in msg
    assert "cases[0] 'bad req': request.request.channel" in msg


def test_cross_field_request_error(tmp_path: Path) -> None:
    bad = json.loads(json.dumps(BASE))
    bad["actor"]["relationship"] = "manager"  # ids still equal
    msg = errors_of(tmp_path, suite_doc({"name": "x", "request": bad, "expect": {"level": "deny"}}))
    assert "actor.id equals target.id" in msg


@pytest.mark.parametrize(("doc", "needle"), [
    ({"suite": "t"}, "cases: Field required"),
    ({"suite": "t", "cases": []}, "cases: List should have at least 1 item"),
    ([1, 2], "must hold a mapping"),
    (suite_doc({"name": "a", "request": BASE, "expect": {}}), "states nothing to check"),
    (suite_doc({"name": "a", "request": BASE, "expect": {"level": "deny", "allowed": True}}),
     "allowed=True contradicts level 'deny'"),
    (suite_doc({"name": "a", "request": BASE, "expect": {"reasons": ["x"], "reasons_absent": ["x"]}}),
     "both required and absent"),
    (suite_doc({"name": "a", "request": BASE, "request_file": "r.json", "expect": {"level": "deny"}}),
     "either request or request_file"),
    (suite_doc({"name": "a", "expect": {"level": "deny"}}), "needs request or request_file"),
    (suite_doc({"name": "a", "request": BASE, "expect": {"level": "deny"}},
               {"name": "a", "request": BASE, "expect": {"level": "deny"}}), "repeated: ['a']"),
    (suite_doc({"name": "a", "request_file": "missing.json", "expect": {"level": "deny"}}),
     "cases[0] 'a': request_file"),
])
def test_clear_errors(tmp_path: Path, doc: Any, needle: str) -> None:
    assert needle in errors_of(tmp_path, doc)


def test_duplicate_yaml_keys_are_refused(tmp_path: Path) -> None:
    text = "suite: t\ncases:\n  - name: a\n    expect: {level: deny}\n    expect: {level: step_up}\n"
    assert "duplicate key 'expect'" in errors_of(tmp_path, text)


def test_invalid_yaml(tmp_path: Path) -> None:
    assert "not valid YAML" in errors_of(tmp_path, "suite: [unclosed\n")


def test_duplicate_json_keys_are_refused_with_file_and_line(tmp_path: Path) -> None:
    # json.loads keeps the last "expect": the case would silently test only the second one.
    text = ('{"suite": "t", "cases": [{"name": "a", "request": {},\n'
            ' "expect": {"level": "deny"},\n "expect": {"level": "step_up"}}]}')
    msg = errors_of(tmp_path, text, "s.json")
    assert "s.json: duplicate key 'expect'" in msg  # JSON's parser does not know the line; YAML's does:
    yaml_text = "suite: t\ncases:\n  - name: a\n    request: {}\n    expect: {level: deny}\n    expect: {level: step_up}\n"
    assert "suite.yaml: line 6: duplicate key 'expect'" in errors_of(tmp_path, yaml_text)


def test_duplicate_keys_in_a_request_file_are_refused(tmp_path: Path) -> None:
    # A tier-2 request whose duplicated key says tier 0 must not be decided as either.
    (tmp_path / "r.json").write_text(json.dumps(BASE)[:-1] + ', "target": {"privilege_tier": 0}}', encoding="utf-8")
    msg = errors_of(tmp_path, suite_doc({"name": "a", "request_file": "r.json", "expect": {"level": "deny"}}))
    assert "cases[0] 'a': request_file: " in msg and "r.json: duplicate key 'target'" in msg


def test_non_utf8_suite_names_the_file(tmp_path: Path) -> None:
    p = tmp_path / "latin1.yaml"
    p.write_bytes("suite: caf\xe9\ncases: []\n".encode("latin-1"))
    with pytest.raises(SuiteError) as info:
        load_suite(p)
    assert "latin1.yaml" in str(info.value) and "not UTF-8" in str(info.value)


def test_deeply_nested_suite_is_a_clean_error(tmp_path: Path) -> None:
    text = '{"suite": "t", "cases": ' + "[" * 5000 + "]" * 5000 + "}"
    assert "nested deeper than" in errors_of(tmp_path, text, "deep.json")


# ------------------------------------------------------------- level ranges, refs


def test_range_expectations_validate() -> None:
    assert Expectation.model_validate({"level_at_least": "step_up"}).level_range == (Level.STEP_UP, Level.DENY)
    assert Expectation.model_validate({"level_at_most": "step_up"}).level_range == (Level.SELF_SERVICE,
                                                                                     Level.STEP_UP)
    both = Expectation.model_validate({"level_at_least": "step_up", "level_at_most": "manager_approval"})
    assert both.level_text() == "[step_up, manager_approval]"
    assert Expectation.model_validate({"level": "deny"}).level_range is None


@pytest.mark.parametrize(("expect", "needle"), [
    ({"level": "deny", "level_at_least": "step_up"}, "either level or level_at_least/level_at_most"),
    ({"level": "deny", "level_at_most": "deny"}, "either level or level_at_least/level_at_most"),
    ({"level_at_least": "callback", "level_at_most": "step_up"}, "level_at_least 'callback' is above level_at_most"),
    ({"level_at_least": "deny", "allowed": True}, "allowed=True contradicts level_at_least 'deny'"),
    ({"level_at_most": "callback", "allowed": False}, "allowed=False contradicts level_at_most 'callback'"),
    ({"level_at_least": "sometimes"}, "expect.level_at_least"),
])
def test_range_schema_errors(tmp_path: Path, expect: dict[str, Any], needle: str) -> None:
    assert needle in errors_of(tmp_path, suite_doc({"name": "r", "request": BASE, "expect": expect}))


@pytest.mark.parametrize(("refs", "needle"), [
    ([], "cases[0] 'r'.refs"),
    ([""], "cases[0] 'r'.refs[0]"),
    ("CISA-AA23-320A", "cases[0] 'r'.refs"),
])
def test_refs_must_be_a_non_empty_list_of_non_empty_strings(tmp_path: Path, refs: Any, needle: str) -> None:
    assert needle in errors_of(tmp_path, suite_doc({"name": "r", "refs": refs, "request": BASE,
                                                   "expect": {"level_at_most": "step_up"}}))


def test_ranges_are_checked_and_reported(tmp_path: Path, native: HelpdeskPolicy) -> None:
    phone = PHONE_MFA_RESET  # step_up
    p = write(tmp_path, suite_doc(
        {"name": "in range", "refs": ["CISA-AA23-320A", "NIST-SP-800-63B-4"], "request": phone,
         "expect": {"level_at_least": "step_up", "level_at_most": "manager_approval"}},
        {"name": "floor only", "request": phone, "expect": {"level_at_least": "step_up"}},
        {"name": "ceiling only", "request": phone, "expect": {"level_at_most": "step_up"}},
        {"name": "above the ceiling", "request": phone, "expect": {"level_at_most": "self_service"}},
        {"name": "below the floor", "request": phone, "expect": {"level_at_least": "callback"}},
    ))
    suite = load_suite(p)
    assert suite.cases[0].refs == ("CISA-AA23-320A", "NIST-SP-800-63B-4") and suite.cases[1].refs == ()
    results = {r.case: r for r in run_suite(native, suite)}
    assert [n for n, r in results.items() if r.passed] == ["in range", "floor only", "ceiling only"]
    assert results["in range"].range_note == "step_up in [step_up, manager_approval]"
    assert results["floor only"].range_note == "step_up in [step_up, deny]"
    assert results["above the ceiling"].mismatches == ("level: expected in [self_service, self_service], got step_up",)
    assert results["below the floor"].mismatches == ("level: expected in [callback, deny], got step_up",)
    doc = results["in range"].to_dict()
    assert doc["expect"] == {"level_at_least": "step_up", "level_at_most": "manager_approval"}
    assert doc["refs"] == ["CISA-AA23-320A", "NIST-SP-800-63B-4"]


def test_a_range_accepts_exactly_the_levels_between_its_bounds(native: HelpdeskPolicy) -> None:
    decisions = {  # one real decision per level
        "self_service": BASE,
        "step_up": PHONE_MFA_RESET,
        "manager_approval": {**PHONE_MFA_RESET, "target": {**BASE["target"], "privilege_tier": 1},
                             "request": {**PHONE_MFA_RESET["request"], "channel": "walk_in"}},
        "callback": {**PHONE_MFA_RESET, "target": {**BASE["target"], "privileged": True, "privilege_tier": 2}},
        "deny": {**BASE, "target": {**BASE["target"], "status": "offboarded"}},
    }
    by_level = {lv: native.decide(decisions[lv.value]) for lv in Level}
    assert {lv: d.level for lv, d in by_level.items()} == {lv: lv for lv in Level}
    bounds: list[Level | None] = [None, *Level]
    for lo in bounds:
        for hi in bounds:
            if lo is None and hi is None or (lo is not None and hi is not None and lo > hi):
                continue
            expect = Expectation.model_validate({"level_at_least": lo, "level_at_most": hi})
            for level, decision in by_level.items():
                inside = (lo is None or lo <= level) and (hi is None or level <= hi)
                assert (check_decision(decision, expect) == []) is inside, (lo, hi, level)


def test_a_case_may_say_why(tmp_path: Path) -> None:
    p = write(tmp_path, suite_doc(
        {"name": "a", "why": "the holder's own session", "request": BASE, "expect": {"level": "self_service"}},
        {"name": "b", "request": BASE, "expect": {"level": "self_service"}},
    ))
    a, b = load_suite(p).cases
    assert (a.why, b.why) == ("the holder's own session", None)
    assert "cases[0] 'c'.why" in errors_of(tmp_path, suite_doc({"name": "c", "why": "", "request": BASE,
                                                               "expect": {"level": "deny"}}))
    assert "cases[0] 'c'.why" in errors_of(tmp_path, suite_doc({"name": "c", "why": ["x"], "request": BASE,
                                                               "expect": {"level": "deny"}}))


def test_obligation_to_and_constraints_are_checked(tmp_path: Path, native: HelpdeskPolicy) -> None:
    grant = {**BASE, "request": {**BASE["request"], "action": "access_grant", "requested_privilege_tier": 0},
             "target": {**BASE["target"], "manager": "u-2"}}  # manager_approval
    reset = {**PHONE_MFA_RESET, "target": {**BASE["target"], "privileged": True, "privilege_tier": 2,
                                           "contact_age_days": 5}}  # callback
    p = write(tmp_path, suite_doc(
        {"name": "right", "request": grant, "expect": {
            "obligations": [{"code": "notify_identity_owner", "to": "holder"}],
            "constraints": {"approver": {"of_record": "manager", "ids": ["u-2"], "exclude": ["u-1"]}}}},
        {"name": "wrong to", "request": grant, "expect": {
            "obligations": [{"code": "notify_identity_owner", "to": "owners"}]}},
        {"name": "wrong approver", "request": grant, "expect": {
            "constraints": {"approver": {"of_record": "owner", "ids_unknown": True}}}},
        {"name": "no callback here", "request": grant, "expect": {
            "level": "manager_approval", "constraints": {"callback": {"to": "holder"}}}},
        {"name": "callback", "request": reset, "expect": {
            "constraints": {"callback": {"to": "holder", "ids": ["u-1"], "contact_age_days": 5,
                                         "contact_usable": False, "not_the_recovered_factor": True}}}},
        {"name": "callback usable", "request": reset, "expect": {
            "level": "callback", "constraints": {"callback": {"contact_usable": True}}}},
    ))
    results = {r.case: r for r in run_suite(native, load_suite(p))}
    assert results["right"].passed and results["callback"].passed, [r.failure_text() for r in results.values()]
    assert results["wrong to"].mismatches == ("obligation notify_identity_owner: expected to=owners, got holder",)
    assert results["wrong approver"].mismatches == (
        "constraint approver.of_record: expected 'owner', got 'manager'",
        "constraint approver.ids: expected null, got ['u-2']",
    )
    assert results["no callback here"].mismatches == ("constraint missing: callback",)
    assert results["callback usable"].mismatches == ("constraint callback.contact_usable: expected True, got False",)


@pytest.mark.parametrize(("expect", "needle"), [
    ({"obligations": [{"code": "x", "too": "holder"}]}, "expect.obligations[0].too"),
    ({"constraints": {"approver": {"of_record": "boss"}}, "level": "deny"}, "expect.constraints.approver.of_record"),
    ({"constraints": {"approver": {"ids": ["a"], "ids_unknown": True}}, "level": "deny"}, "not both"),
    ({"constraints": {"callback": {"to": "caller"}}, "level": "deny"}, "expect.constraints.callback.to"),
    ({"constraints": {"approvers": {}}, "level": "deny"}, "expect.constraints.approvers"),
])
def test_constraint_expectations_are_validated(tmp_path: Path, expect: dict[str, Any], needle: str) -> None:
    assert needle in errors_of(tmp_path, suite_doc({"name": "c", "request": BASE, "expect": expect}))


def test_suites_in_subdirectories_are_found_and_labelled(tmp_path: Path) -> None:
    write(tmp_path, suite_doc({"name": "a", "request": BASE, "expect": {"allowed": True}}), "top.yaml")
    (tmp_path / "guidance" / "cisa").mkdir(parents=True)
    write(tmp_path / "guidance", suite_doc({"name": "b", "request": BASE, "expect": {"allowed": True}}), "x.yaml")
    write(tmp_path / "guidance" / "cisa", suite_doc({"name": "c", "request": BASE, "expect": {"allowed": True}}),
          "y.yml")
    (tmp_path / ".hidden").mkdir()
    write(tmp_path / ".hidden", "not: a suite", "z.yaml")  # editor and VCS droppings are not suites
    suites = load_suites([tmp_path])
    assert [s.label for s in suites] == ["guidance/cisa/y.yml", "guidance/x.yaml", "top.yaml"]
    assert [s.label for s in load_suites([tmp_path / "guidance" / "x.yaml"])] == ["x.yaml"]


def test_every_file_is_reported_at_once(tmp_path: Path) -> None:
    write(tmp_path, {"suite": "a"}, "a.yaml")
    write(tmp_path, {"suite": "b", "cases": [{"name": "x"}]}, "b.yaml")
    with pytest.raises(SuiteError) as info:
        load_suites([tmp_path])
    paths = [e.path for e in info.value.errors]
    assert any(p.endswith("a.yaml: cases") for p in paths)
    assert any("b.yaml: cases[0] 'x'.expect" in p for p in paths)


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(SuiteError, match="no such file"):
        load_suites([tmp_path / "nope"])


# --------------------------------------------------------------------- running


@pytest.fixture(scope="module")
def native() -> HelpdeskPolicy:
    return HelpdeskPolicy(engine="native")


def test_failure_text_shows_expected_and_actual(tmp_path: Path, native: HelpdeskPolicy) -> None:
    p = write(tmp_path, suite_doc({
        "name": "wrong",
        "request": {**BASE, "request": {**BASE["request"], "channel": "phone"},
                    "context": {"recent_credential_change_hours": 1000}},
        "expect": {"level": "callback", "reasons": ["privileged_remote_recovery", {"code": "action_baseline",
                   "level": "step_up"}], "reasons_absent": ["remote_channel_recovery"],
                   "obligations": [{"code": "record_evidence", "fields": ["requester"]}, "time_bound_access"],
                   "obligations_absent": ["terminate_sessions"]},
    }))
    (result,) = run_suite(native, load_suite(p))
    assert not result.passed
    text = result.failure_text()
    assert "FAIL suite.yaml: wrong" in text
    assert "level: expected callback, got step_up" in text
    assert "reason missing: privileged_remote_recovery" in text
    assert "reason action_baseline: expected level step_up, got self_service" in text
    assert ("reason unexpected: remote_channel_recovery [step_up]: "
            "password_reset requested over phone, an impersonable channel") in text
    assert "obligation record_evidence: expected fields ['requester'], got" in text
    assert "obligation missing: time_bound_access" in text
    assert "obligation unexpected: terminate_sessions" in text
    assert "actual decision:" in text and "level: step_up (allowed)" in text
    assert result.to_dict()["decision"]["level"] == "step_up"


class _Broken(BaseEngine):
    name = "broken"

    def evaluate(self, request: Request) -> Any:
        raise EngineError("boom", engine=self.name)


def test_degraded_decision_fails_the_case(tmp_path: Path) -> None:
    # The engine under test fails, so the facade answers from its last resort (the
    # native mirror of the stock policy): right or not, that is not what the
    # engine under test decided, and a case must not pass by accident.
    p = write(tmp_path, suite_doc({"name": "c", "request": BASE, "expect": {"level": "self_service"}}))
    policy = HelpdeskPolicy(engine=_Broken())
    (result,) = run_suite(policy, load_suite(p))
    assert not result.passed
    assert "degraded" in result.failure_text()
    (allowed,) = run_suite(policy, load_suite(p), allow_degraded=True)
    assert allowed.passed


def test_obligation_parameters(native: HelpdeskPolicy) -> None:
    d = native.decide({**BASE, "request": {**BASE["request"], "action": "mfa_reset"}})  # the lost factor: at once
    ok = Expectation.model_validate({"obligations": [{"code": "revoke_previous_credential", "within_hours": 0}]})
    bad = Expectation.model_validate({"obligations": [{"code": "revoke_previous_credential", "within_hours": 24}]})
    assert check_decision(d, ok) == []
    assert check_decision(d, bad) == ["obligation revoke_previous_credential: expected within_hours=24, got 0"]


# --------------------------------------------------------------- assert_decision


def test_assert_decision_passes_and_fails_readably(native: HelpdeskPolicy) -> None:
    d = native.decide(BASE)
    assert_decision(d, level="self_service", allowed=True, reasons=["action_baseline"],
                    obligations=["terminate_sessions"], reasons_absent=["weak_authentication"])
    with pytest.raises(AssertionError) as info:
        assert_decision(d, level="callback", reasons=["vip_target"], reasons_absent=["action_baseline"],
                        obligations_absent=["terminate_sessions"])
    text = str(info.value)
    assert text.startswith("decision does not match the expectation:")
    assert "level: expected callback, got self_service" in text
    assert "reason missing: vip_target" in text
    assert "reason unexpected: action_baseline [self_service]: password_reset starts at self_service" in text
    assert "obligation unexpected: terminate_sessions" in text
    assert "reason action_baseline [self_service]:" in text  # the actual decision follows


def test_assert_decision_accepts_a_range(native: HelpdeskPolicy) -> None:
    d = native.decide(BASE)  # self_service
    assert_decision(d, level_at_most="step_up")
    assert_decision(d, level_at_least=Level.SELF_SERVICE, level_at_most="self_service", allowed=True)
    with pytest.raises(AssertionError, match=r"level: expected in \[step_up, callback\], got self_service"):
        assert_decision(d, level_at_least="step_up", level_at_most="callback")
    with pytest.raises(ValueError, match="either level or level_at_least"):
        assert_decision(d, level="self_service", level_at_most="step_up")


def test_assert_decision_rejects_a_bad_expectation(native: HelpdeskPolicy) -> None:
    d = native.decide(BASE)
    with pytest.raises(ValueError, match="invalid expectation"):
        assert_decision(d, level="sometimes")
    with pytest.raises(ValueError, match="states nothing"):
        assert_decision(d)


def test_module_doctests() -> None:
    import doctest

    from helpdesk_policy import expectations
    from helpdesk_policy.ci import conformance, generate, suites
    from helpdesk_policy.ci import diff as policydiff
    from helpdesk_policy.ci import runner as policytest

    for module in (suites, expectations, generate, policydiff, policytest, conformance):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.attempted > 0 and result.failed == 0, module.__name__
