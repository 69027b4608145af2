"""helpdesk-policy diff: one rule changed in a copy of the stock policies is reported
exactly, loosening fails the command, and every case source and version spec works."""

from __future__ import annotations

import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from hypothesis import given
from hypothesis import strategies as st

from helpdesk_policy import HelpdeskPolicy, Level
from helpdesk_policy.ci.diff import (
    Change,
    DiffError,
    Outcome,
    compare,
    diff_policies,
    generated_cases,
    load_cases,
    parse_git_spec,
    resolve_policy_source,
)
from helpdesk_policy.ci.suites import load_suites, stock_suite_paths
from helpdesk_policy.cli.ci import diff_command
from helpdesk_policy.policyset import PolicySet
from helpdesk_policy.resources import stock_policy_dir

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "requests"
N, SEED = 300, 3

#: The stock agents suite: its cases, counted rather than pinned.
AGENTS_SUITE = stock_policy_dir() / "tests" / "agents.yaml"
AGENTS_CASES = len(load_suites([AGENTS_SUITE])[0].cases)

PRIVILEGED_REMOTE = ('common.reason("privileged_remote_recovery", "callback",',
                     'common.reason("privileged_remote_recovery", "manager_approval",')
SUSPENDED = ('common.reason("target_suspended", "manager_approval",',
             'common.reason("target_suspended", "callback",')


def copy_stock(dest: Path) -> Path:
    shutil.copytree(stock_policy_dir(), dest, symlinks=False)
    return dest


def edit(policy_dir: Path, file: str, old: str, new: str) -> None:
    path = policy_dir / "helpdesk" / file
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} not found exactly once in {file}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def drop_rule(policy_dir: Path, file: str, key: str) -> None:
    """Remove the ``reasons contains common.reason(key, ...) if {...}`` rule (``key``: the
    catalogue key as written, a string literal or the name of the rule that picks it)."""
    path = policy_dir / "helpdesk" / file
    text = path.read_text(encoding="utf-8")
    pattern = re.compile(r'\nreasons contains common\.reason\(' + re.escape(key) + r', .*?\n\}\n(?=\n|$)', re.S)
    new, n = pattern.subn("\n", text)
    assert n == 1, f"rule {key} not found once in {file}"
    path.write_text(new, encoding="utf-8")


def run(*args: str) -> Result:
    return CliRunner().invoke(diff_command, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def cases() -> list[Any]:
    # Generated requests plus the stock suites' named cases.
    return generated_cases(N, SEED) + load_cases(stock_suite_paths())


@pytest.fixture(scope="module")
def base_decisions(cases: list[Any]) -> dict[str, Any]:
    with HelpdeskPolicy(engine="native") as policy:
        return {c.name: policy.decide(c.request) for c in cases}


def _other_max(decision: Any, code: str) -> Level:
    others = [r.level for r in decision.reasons if r.code != code]
    return max(others) if others else Level.SELF_SERVICE


# ------------------------------------------------- one rule changed: exact report


def test_lowering_one_rule_reports_exactly_the_affected_decisions(
    tmp_path: Path, cases: list[Any], base_decisions: dict[str, Any]
) -> None:
    head = copy_stock(tmp_path / "head")
    edit(head, "recovery.rego", *PRIVILEGED_REMOTE)
    report = diff_policies(PolicySet.load(stock_policy_dir()), PolicySet.load(head), cases)

    # Independently: a decision is affected iff the base decision carries the
    # changed reason; it gets looser iff no other reason keeps it at its level.
    code = "privileged_remote_recovery"
    affected = {n for n, d in base_decisions.items() if code in {r.code for r in d.reasons}}
    expect_level = {n: max(_other_max(base_decisions[n], code), Level.MANAGER_APPROVAL) for n in affected}
    looser = {n for n in affected if expect_level[n] < base_decisions[n].level}
    assert affected and looser and affected - looser, "the sample must exercise both outcomes"

    changed = {d.case.name: d for d in report.diffs if d.change is not Change.UNCHANGED}
    assert set(changed) == affected
    assert {n for n, d in changed.items() if d.change is Change.LOOSER} == looser
    for name, d in changed.items():
        assert d.head.level is expect_level[name]
        assert d.reason_levels_changed == ((code, Level.CALLBACK, Level.MANAGER_APPROVAL),)
        assert d.reasons_added == d.reasons_removed == ()
        expected_change = Change.LOOSER if name in looser else Change.REASONS
        assert d.change is expected_change
    counts = report.counts()
    assert counts["looser"] == len(looser)
    assert counts["reasons"] == len(affected) - len(looser)
    assert counts["unchanged"] == len(cases) - len(affected)
    assert report.has_loosening and report.exit_code == 1


def test_dropping_a_deny_rule(tmp_path: Path, cases: list[Any], base_decisions: dict[str, Any]) -> None:
    head = copy_stock(tmp_path / "head")
    drop_rule(head, "recovery.rego", "unrelated_key")
    report = diff_policies(PolicySet.load(stock_policy_dir()), PolicySet.load(head), cases)

    code = "unrelated_requester"
    affected = {n for n, d in base_decisions.items() if code in {r.code for r in d.reasons}}
    looser = {n for n in affected if _other_max(base_decisions[n], code) < Level.DENY}
    assert looser, "the sample must contain an unrelated requester denied by this rule alone"
    changed = {d.case.name: d for d in report.diffs if d.change is not Change.UNCHANGED}
    assert set(changed) == affected
    assert {n for n, d in changed.items() if d.change is Change.LOOSER} == looser
    for name, d in changed.items():
        assert d.reasons_removed == (code,)
        if name in looser:
            assert d.base.allowed is False and d.head.allowed is True
            # A deny's evidence fields differ from an allowed decision's: obligations changed too.
            assert "record_evidence" in d.obligations_changed


def test_tightening_is_reported_as_stricter_and_passes(tmp_path: Path, cases: list[Any],
                                                       base_decisions: dict[str, Any]) -> None:
    head = copy_stock(tmp_path / "head")
    edit(head, "baseline.rego", *SUSPENDED)
    report = diff_policies(PolicySet.load(stock_policy_dir()), PolicySet.load(head), cases)
    code = "target_suspended"
    affected = {n for n, d in base_decisions.items() if code in {r.code for r in d.reasons}}
    stricter = {n for n in affected if base_decisions[n].level < Level.CALLBACK}
    assert stricter
    assert {d.case.name for d in report.of(Change.STRICTER)} == stricter
    assert {d.case.name for d in report.diffs if d.change is not Change.UNCHANGED} == affected
    assert not report.has_loosening and report.exit_code == 0

    result = run("--base", str(stock_policy_dir()), "--head", str(head), "--generate", "100",
                 "--seed", str(SEED), "--format", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["counts"]["looser"] == 0 and doc["counts"]["stricter"] > 0
    assert doc["loosening"] is False and doc["exit_code"] == 0


@pytest.mark.parametrize(("hours", "expected"), [(48, Change.LOOSER), (12, Change.STRICTER)])
def test_a_config_deadline_change_is_judged_by_its_direction(tmp_path: Path, base_decisions: dict[str, Any],
                                                             cases: list[Any], hours: int, expected: Change) -> None:
    # Each version reads its own config.yaml. A longer window to revoke the
    # previous credential is a loosening even though no level changes.
    head = copy_stock(tmp_path / "head")
    cfg = yaml.safe_load((head / "config.yaml").read_text(encoding="utf-8"))
    stock_hours = cfg["revoke_previous_within_hours"]
    assert stock_hours != hours and cfg["revoke_compromised_within_hours"] not in (stock_hours, hours)
    cfg["revoke_previous_within_hours"] = hours
    (head / "config.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    report = diff_policies(PolicySet.load(stock_policy_dir()), PolicySet.load(head), cases)
    deadlines = {n: [o.within_hours for o in d.obligations if o.code == "revoke_previous_credential"]
                 for n, d in base_decisions.items()}
    # A lost factor or a leaked key is revoked at once (revoke_compromised_within_hours):
    # only the replaced credentials' deadline follows revoke_previous_within_hours.
    affected = {n for n, hs in deadlines.items() if hs == [stock_hours]}
    at_once = {n for n, hs in deadlines.items() if hs == [cfg["revoke_compromised_within_hours"]]}
    assert affected and at_once, "the sample must hold both deadlines"
    assert {d.case.name for d in report.of(expected)} == affected
    assert all(d.obligations_changed == ("revoke_previous_credential",) for d in report.of(expected))
    assert report.counts()["unchanged"] == len(cases) - len(affected)
    assert report.has_loosening is (expected is Change.LOOSER)


@pytest.mark.parametrize(("days", "expected"), [(7, Change.LOOSER), (90, Change.STRICTER)])
def test_a_callback_constraint_change_is_judged_by_its_direction(tmp_path: Path, base_decisions: dict[str, Any],
                                                                 cases: list[Any], days: int,
                                                                 expected: Change) -> None:
    """Where a callback may go is part of the decision (CISA AA23-320A: an aged contact of
    record): a shorter minimum contact age is a loosening though no level changes."""
    head = copy_stock(tmp_path / "head")
    cfg = yaml.safe_load((head / "config.yaml").read_text(encoding="utf-8"))
    assert cfg["callback_contact_min_age_days"] not in (days,)
    cfg["callback_contact_min_age_days"] = days
    (head / "config.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    report = diff_policies(PolicySet.load(stock_policy_dir()), PolicySet.load(head), cases)
    affected = {n for n, d in base_decisions.items() if d.constraints is not None and d.constraints.callback}
    assert affected
    assert {d.case.name for d in report.diffs if d.change is not Change.UNCHANGED} == affected
    assert {d.case.name for d in report.of(expected)} == affected
    assert all("callback.min_contact_age_days" in d.constraints_changed for d in report.of(expected))
    assert report.has_loosening is (expected is Change.LOOSER)
    shown = report.to_dict()["changes"][0]
    assert {"constraint": "callback.min_contact_age_days", "base": cfg_days(), "head": days} \
        in shown["constraints_changed"]
    if expected is Change.LOOSER:
        assert "`callback.min_contact_age_days` 30→7" in report.to_markdown()


def cfg_days() -> int:
    return int(yaml.safe_load((stock_policy_dir() / "config.yaml").read_text(encoding="utf-8"))
               ["callback_contact_min_age_days"])


def _outcome(constraints: dict[str, Any]) -> Outcome:
    leaves = tuple(sorted((path, json.dumps(value, sort_keys=True)) for path, value in constraints.items()))
    return Outcome(Level.MANAGER_APPROVAL, reasons=(("x", Level.MANAGER_APPROVAL),), constraints=leaves)


APPROVER = {"approver.of_record": "manager", "approver.ids": ["m-1"], "approver.exclude": ["u-1"],
            "approver.ai_agent": False}


@pytest.mark.parametrize(("head", "expected"), [
    ({}, Change.LOOSER),                                                   # the approver constraint dropped
    ({**APPROVER, "approver.exclude": []}, Change.LOOSER),                 # the requester may now approve
    ({**APPROVER, "approver.exclude": ["u-1", "a-7"]}, Change.STRICTER),   # one more excluded
    ({**APPROVER, "approver.ids": ["m-2"]}, Change.CONSTRAINTS),           # another approver: for a reviewer
    ({**APPROVER, "approver.ids": ["m-2"], "approver.exclude": []}, Change.LOOSER),
    (APPROVER, Change.UNCHANGED),
])
def test_approver_constraint_changes_are_classified(head: dict[str, Any], expected: Change) -> None:
    case = generated_cases(1, SEED)[0]
    assert compare(case, _outcome(APPROVER), _outcome(head)).change is expected
    # The other way round, a dropped constraint appears: stricter.
    if head == {}:
        assert compare(case, _outcome({}), _outcome(APPROVER)).change is Change.STRICTER


def test_a_callback_that_may_reach_the_recovered_factor_is_looser() -> None:
    base = {"callback.to": "holder", "callback.ids": ["u-1"], "callback.min_contact_age_days": 30,
            "callback.contact_age_days": 400, "callback.contact_usable": True,
            "callback.not_the_recovered_factor": True}
    case = generated_cases(1, SEED)[0]
    assert compare(case, _outcome(base), _outcome({**base, "callback.not_the_recovered_factor": False})).change \
        is Change.LOOSER
    assert compare(case, _outcome(base), _outcome({**base, "callback.contact_usable": False})).change \
        is Change.STRICTER
    assert compare(case, _outcome({**base, "callback.contact_usable": False}), _outcome(base)).change \
        is Change.LOOSER


def test_dropping_an_obligation_is_a_loosening(tmp_path: Path, base_decisions: dict[str, Any],
                                               cases: list[Any]) -> None:
    head = copy_stock(tmp_path / "head")
    rego = head / "helpdesk" / "obligations.rego"
    text = rego.read_text(encoding="utf-8")
    rule = 'unless_denied contains {"code": "terminate_sessions"} if {'
    assert rule in text
    rego.write_text(text.replace(rule, rule + "\n\tfalse"), encoding="utf-8")
    report = diff_policies(PolicySet.load(stock_policy_dir()), PolicySet.load(head), cases)
    affected = {n for n, d in base_decisions.items() if "terminate_sessions" in {o.code for o in d.obligations}}
    assert affected
    assert {d.case.name for d in report.of(Change.LOOSER)} == affected
    assert all(d.obligations_removed == ("terminate_sessions",) for d in report.of(Change.LOOSER))
    assert report.has_loosening and report.exit_code == 1
    # The reviewer sees why a decision at the same level is looser.
    markdown = report.to_markdown()
    assert "| obligation and constraint changes |" in markdown and "-`terminate_sessions`" in markdown


@pytest.mark.parametrize(("base", "head", "strength"), [
    ({"within_hours": 24}, {"within_hours": 48}, -1),
    ({"within_hours": 24}, {"within_hours": 4}, 1),
    ({"fields": ["a", "b"]}, {"fields": ["a"]}, -1),
    ({"fields": ["a"]}, {"fields": ["a", "b"]}, 1),
    ({"fields": ["a"]}, {"fields": ["b"]}, 0),  # one lost, one gained: for the reviewer
    ({"fields": ["a"], "within_hours": 4}, {"fields": ["a", "b"], "within_hours": 8}, 0),
    ({"mode": "x"}, {"mode": "y"}, 0),  # direction unknown
    ({"within_hours": 4, "mode": "x"}, {"within_hours": 8, "mode": "y"}, -1),  # weaker wins
    ({"within_hours": 4, "mode": "x"}, {"within_hours": 2, "mode": "y"}, 0),  # not clearly stronger
])
def test_obligation_strength(base: dict[str, Any], head: dict[str, Any], strength: int) -> None:
    from helpdesk_policy.ci.diff import _obligation_strength

    assert _obligation_strength({"code": "o", **base}, {"code": "o", **head}) == strength


# ------------------------------------------------------------- the command


@pytest.fixture
def loosened(tmp_path: Path) -> Path:
    head = copy_stock(tmp_path / "loose")
    edit(head, "recovery.rego", *PRIVILEGED_REMOTE)
    return head


def test_loosening_fails_unless_allowed(loosened: Path) -> None:
    args = ["--base", str(stock_policy_dir()), "--head", str(loosened), "--cases", str(EXAMPLES),
            "--cases", str(stock_policy_dir() / "tests"), "--generate", "50", "--seed", "1"]
    result = run(*args)
    assert result.exit_code == 1
    md = result.output
    assert "**⚠" in md and "became looser" in md
    # The looser section comes before the summary by group and the collapsible details.
    assert md.index("### ⚠ Looser decisions") < md.index("### Changes by action and target type")
    assert md.index("### Changes by action and target type") < md.index("<details>")
    assert "`privileged_remote_recovery` callback→manager_approval" in md
    assert "recovery.yaml: recovery of a tier-1 account by phone needs a callback" in md

    allowed = run(*args, "--allow-loosening")
    assert allowed.exit_code == 0
    assert "allowed by `--allow-loosening`" in allowed.output

    doc = json.loads(run(*args, "--format", "json").output)
    assert doc["loosening"] is True and doc["exit_code"] == 1
    looser = [c for c in doc["changes"] if c["change"] == "looser"]
    assert looser and all(c["base"]["level"] == "callback" and c["head"]["level"] == "manager_approval"
                          for c in looser)
    assert sum(g["looser"] for g in doc["by_group"]) == doc["counts"]["looser"] == len(looser)
    assert {"action", "target_type", "total", "looser", "stricter", "reasons", "obligations",
            "unchanged"} <= set(doc["by_group"][0])


def test_unchanged_policies(tmp_path: Path) -> None:
    same = copy_stock(tmp_path / "same")
    result = run("--base", str(stock_policy_dir()), "--head", str(same), "--generate", "30")
    assert result.exit_code == 0
    assert "✅ No decision became looser" in result.output and "No decision changed." in result.output


def test_default_is_generated_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    from helpdesk_policy.cli import ci as cli_ci

    assert cli_ci.DEFAULT_DIFF_GENERATE == 500
    monkeypatch.setattr(cli_ci, "DEFAULT_DIFF_GENERATE", 25)  # the same path, cheaper
    doc = json.loads(run("--base", str(stock_policy_dir()), "--head", str(stock_policy_dir()),
                         "--format", "json").output)
    assert doc["counts"]["total"] == 25
    assert doc["sources"] == ["25 generated requests (seed 0)"]


def test_head_that_cannot_decide_fails(tmp_path: Path) -> None:
    head = copy_stock(tmp_path / "broken")
    # An unknown level makes the decision undefined for every AI-agent request.
    edit(head, "agents.rego", 'common.reason("ai_agent_requester", cfg.ai_agent_level,',
         'common.reason("ai_agent_requester", "sometimes",')
    result = run("--base", str(stock_policy_dir()), "--head", str(head), "--generate", "60", "--format", "json")
    assert result.exit_code == 1
    doc = json.loads(result.output)
    errors = [c for c in doc["changes"] if c["change"] == "error"]
    assert errors and all("error" in c["head"] for c in errors)
    md = run("--base", str(stock_policy_dir()), "--head", str(head), "--generate", "60").output
    assert "❌ The head policy could not decide" in md


@pytest.mark.parametrize(("args", "needle"), [
    (["--generate", "0"], "nothing to compare"),
    (["--head", "/nonexistent/dir"], "policy directory not found"),
    (["--head", "git:"], "expected git:<ref>[:<path>]"),
])
def test_usage_errors_exit_2(args: list[str], needle: str) -> None:
    base = ["--base", str(stock_policy_dir())]
    if "--head" not in args:
        base += ["--head", str(stock_policy_dir())]
    result = run(*base, *args)
    assert result.exit_code == 2
    assert needle in result.output


def test_head_that_does_not_compile_exits_2(tmp_path: Path) -> None:
    head = copy_stock(tmp_path / "syntax")
    (head / "helpdesk" / "broken.rego").write_text("package helpdesk.broken\n\nthis is not rego {\n", encoding="utf-8")
    result = run("--base", str(stock_policy_dir()), "--head", str(head), "--generate", "5")
    assert result.exit_code == 2
    # The message names the side and the file that does not compile.
    assert "head policy" in result.output and "broken.rego" in result.output


# --------------------------------------------------------------- case sources


def _request(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / name).read_text(encoding="utf-8"))


def test_every_case_file_format(tmp_path: Path) -> None:
    a, b = _request("01-portal-password-reset.json"), _request("02-phone-mfa-reset-admin.json")
    (tmp_path / "one.json").write_text(json.dumps(a), encoding="utf-8")
    (tmp_path / "many.json").write_text(json.dumps([a, b]), encoding="utf-8")
    (tmp_path / "lines.jsonl").write_text(json.dumps(a) + "\n\n" + json.dumps(b) + "\n", encoding="utf-8")
    (tmp_path / "lines-as.json").write_text(json.dumps(a) + "\n" + json.dumps(b) + "\n", encoding="utf-8")
    shutil.copy(AGENTS_SUITE, tmp_path / "agents.yaml")
    (tmp_path / "notes.txt").write_text("ignored", encoding="utf-8")
    found = load_cases([tmp_path])
    names = [c.name for c in found]
    assert AGENTS_CASES > 1 and sum(n.startswith("agents.yaml: ") for n in names) == AGENTS_CASES
    assert any(n.endswith("lines.jsonl:3 (" + b["request"]["id"] + ")") for n in names)
    assert any(n.endswith("many.json[1] (" + b["request"]["id"] + ")") for n in names)
    assert any(n.endswith("one.json (" + a["request"]["id"] + ")") for n in names)
    assert len(found) == AGENTS_CASES + 1 + 2 + 2 + 2


def test_decision_log_records_are_cases(tmp_path: Path, loosened: Path) -> None:
    # Records as HelpdeskPolicy(log_sink=...) writes them: redacted inputs.
    records: list[dict[str, Any]] = []
    with HelpdeskPolicy(engine="native", log_sink=records.append) as policy:
        for f in sorted(EXAMPLES.glob("*.json")):
            policy.decide(_request(f.name))
    assert any(r["input"]["request"]["justification"] == "[redacted]" for r in records)
    log = tmp_path / "decisions.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    found = load_cases([log])
    assert len(found) == len(records)
    assert found[0].name.endswith(f"decisions.jsonl:1 (decision {records[0]['decision_id'][:8]})")

    result = run("--base", str(stock_policy_dir()), "--head", str(loosened), "--cases", str(log), "--format", "json")
    doc = json.loads(result.output)
    assert doc["counts"]["total"] == len(records)
    looser = [c for c in doc["changes"] if c["change"] == "looser"]
    expected = {r["input"]["request"]["id"] for r in records if r["result"]["level"] == "callback"
                and "privileged_remote_recovery" in {x["code"] for x in r["result"]["reasons"]}
                and max(Level(x["level"]) for x in r["result"]["reasons"] if x["code"] != "privileged_remote_recovery")
                < Level.CALLBACK}
    assert {c["input"]["request"]["id"] for c in looser} == expected
    # Reports never echo free text a requester typed.
    assert "authenticator app is gone" not in result.output


def test_opa_style_log_array(tmp_path: Path) -> None:
    rec = {"decision_id": "abc", "input": _request("01-portal-password-reset.json"), "result": {}}
    (tmp_path / "opa.json").write_text(json.dumps([rec, rec]), encoding="utf-8")
    assert [c.name.split("/")[-1] for c in load_cases([tmp_path / "opa.json"])] == \
        ["opa.json[0] (decision abc)", "opa.json[1] (decision abc)"]


def test_invalid_cases_are_listed_with_location(tmp_path: Path) -> None:
    bad = _request("01-portal-password-reset.json")
    bad["target"]["privilege_tier"] = 12
    log = tmp_path / "bad.jsonl"
    log.write_text(json.dumps(_request("01-portal-password-reset.json")) + "\n" + json.dumps(bad) + "\n{oops\n"
                   + json.dumps({"decision_id": "d1", "input": None}) + "\n", encoding="utf-8")
    with pytest.raises(DiffError) as info:
        load_cases([log])
    text = str(info.value)
    assert "bad.jsonl:2: target.privilege_tier" in text
    assert "bad.jsonl:3: not valid JSON" in text
    assert "bad.jsonl:4 (decision d1): input" in text
    result = run("--base", str(stock_policy_dir()), "--head", str(stock_policy_dir()), "--cases", str(log))
    assert result.exit_code == 2 and "bad.jsonl:2: target.privilege_tier" in result.output


# ------------------------------------------------------------------ git versions


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_CONFIG_GLOBAL": os.devnull,
           "GIT_CONFIG_NOSYSTEM": "1"}
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository shaped like this one: ``policies`` is a symlink into the package."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    root = tmp_path / "repo"
    pkg = root / "src" / "pkg"
    pkg.mkdir(parents=True)
    shutil.copytree(stock_policy_dir(), pkg / "policies")
    (root / "policies").symlink_to(Path("src/pkg/policies"))
    _git(root, "init", "-q", "-b", "main")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "stock")
    return root


def test_git_ref_base_against_working_tree(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    edit(repo / "policies", "recovery.rego", *PRIVILEGED_REMOTE)
    monkeypatch.chdir(repo)
    result = run("--base", "git:main", "--head", "policies", "--cases", "policies/tests/recovery.yaml")
    assert result.exit_code == 1, result.output
    assert "Base `git:main:policies @ " in result.output and "head `policies`" in result.output
    # The same with an explicit path, through the symlink, and an explicit --repo from elsewhere.
    monkeypatch.chdir(repo.parent)
    for spec in ("git:main:policies", "git:main:src/pkg/policies"):
        doc = json.loads(run("--repo", str(repo), "--base", spec, "--head", str(repo / "policies"),
                             "--cases", str(repo / "policies" / "tests" / "recovery.yaml"),
                             "--format", "json").output)
        assert doc["counts"]["looser"] > 0
        assert doc["base"]["revision"] == PolicySet.load(stock_policy_dir()).revision


def test_git_ref_to_git_ref(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    edit(repo / "policies", "baseline.rego", *SUSPENDED)
    _git(repo, "commit", "-q", "-am", "tighten suspended")
    monkeypatch.chdir(repo)
    doc = json.loads(run("--base", "git:HEAD~1", "--head", "git:HEAD", "--generate", "100", "--format", "json").output)
    assert doc["counts"]["stricter"] > 0 and doc["counts"]["looser"] == 0 and doc["exit_code"] == 0
    assert doc["head"]["source"].startswith("git:HEAD:src/pkg/policies") or doc["head"]["source"].startswith(
        "git:HEAD:")


@pytest.mark.parametrize(("spec", "needle"), [
    ("git:no-such-branch", "unknown git ref 'no-such-branch'"),
    ("git:main:nowhere", "'nowhere' does not exist"),
    ("git:main:policies/config.yaml", "is not a directory"),
])
def test_git_errors_exit_2(repo: Path, monkeypatch: pytest.MonkeyPatch, spec: str, needle: str) -> None:
    monkeypatch.chdir(repo)
    result = run("--base", spec, "--head", "policies", "--generate", "5")
    assert result.exit_code == 2
    assert needle in result.output


def test_git_outside_a_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    result = run("--base", "git:main", "--head", str(stock_policy_dir()), "--generate", "5")
    assert result.exit_code == 2 and "not inside a git repository" in result.output


def test_parse_git_spec() -> None:
    assert parse_git_spec("git:origin/main") == ("origin/main", None)
    assert parse_git_spec("git:HEAD~1:policies") == ("HEAD~1", "policies")
    assert parse_git_spec("git:v1.2:") == ("v1.2", None)


def test_markdown_escapes_case_names(tmp_path: Path, loosened: Path) -> None:
    suite = {"suite": "s", "cases": [{"name": "a | b <script>", "expect": {"allowed": True},
                                      "request_file": str(EXAMPLES / "02-phone-mfa-reset-admin.json")}]}
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(suite), encoding="utf-8")
    other = copy_stock(tmp_path / "other")
    edit(other, "access.rego", 'privileged_level := "callback" if', 'privileged_level := "manager_approval" if')
    md = run("--base", str(stock_policy_dir()), "--head", str(other), "--cases", str(p)).output
    assert "a \\| b &lt;script&gt;" in md


# ------------------------------------------------------------------ examples/ci


def test_example_ci_files_are_well_formed() -> None:
    ci = ROOT / "examples" / "ci"
    workflow = yaml.safe_load((ci / "policy-ci.yml").read_text(encoding="utf-8"))
    # YAML 1.1 reads the key "on" as True.
    trigger = workflow.get("on", workflow.get(True))
    assert trigger["pull_request"]["paths"] == ["policies/**"]
    steps = workflow["jobs"]["policy"]["steps"]
    runs = "\n".join(s.get("run", "") for s in steps)
    assert "helpdesk-policy test policies/" in runs
    assert 'helpdesk-policy diff --base "git:origin/$BASE_REF" --head policies' in runs
    assert "--generate 500 --seed 1 --format markdown" in runs
    assert 'pip install "helpdesk-policy[rego]' in runs
    assert any(s.get("uses", "").startswith("actions/github-script") for s in steps)
    script = ci / "policy-ci.sh"
    assert os.access(script, os.X_OK)
    if shutil.which("bash"):
        subprocess.run(["bash", "-n", str(script)], check=True)
    assert (ci / "README.md").is_file()


# ------------------------------------------------------------------ hostile git trees


def _crafted_repo(tmp_path: Path, entries: str) -> Path:
    """A repository whose ``policies`` tree is built by ``git mktree`` from ``entries``
    (mktree lines; ``{blob}`` is a policy file, ``{escape}`` a tree holding
    ``escape.rego``, ``{deep}`` a tree ``..`` holding a tree ``..`` holding
    ``{escape}``, ``{commit}`` a submodule commit)."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    root = tmp_path / "crafted"
    root.mkdir()
    _git(root, "init", "-q", "-b", "main")

    def run_git(*args: str, stdin: str | None = None) -> str:
        return subprocess.run(["git", *args], cwd=root, input=stdin, check=True, capture_output=True,
                              text=True).stdout.strip()

    rego = (stock_policy_dir() / "helpdesk" / "levels.rego").read_text(encoding="utf-8")
    blob = run_git("hash-object", "-w", "--stdin", stdin=rego)
    escape = run_git("mktree", stdin=f"100644 blob {blob}\tescape.rego\n")
    dotdot = run_git("mktree", stdin=f"040000 tree {escape}\t..\n")
    deep = run_git("mktree", stdin=f"040000 tree {dotdot}\t..\n")
    # A submodule's commit lives in another repository: --missing lets mktree name one.
    listing = entries.format(blob=blob, escape=escape, deep=deep, commit="1" * 40)
    policies = run_git("mktree", "--missing", stdin=f"100644 blob {blob}\tlevels.rego\n" + listing)
    top = run_git("mktree", stdin=f"040000 tree {policies}\tpolicies\n")
    commit = run_git("commit-tree", top, "-m", "crafted", stdin="")
    run_git("update-ref", "refs/heads/main", commit)
    return root


@pytest.mark.parametrize(("entries", "needle"), [
    ("040000 tree {deep}\t..\n", "entry '../../../escape.rego' is not a plain relative path"),
    ("040000 tree {escape}\t.\n", "entry './escape.rego' is not a plain relative path"),
    ("160000 commit {commit}\tvendored\n", "entry 'vendored' is not a regular file (mode 160000, commit)"),
    ("100644 blob {blob}\ta\\b.rego\n", "holds a backslash"),
])
def test_a_crafted_git_tree_cannot_write_outside_the_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            entries: str, needle: str) -> None:
    repo = _crafted_repo(tmp_path, entries)
    dest = tmp_path / "x" / "y" / "export"
    dest.mkdir(parents=True)
    with pytest.raises(DiffError) as info:
        resolve_policy_source("git:main:policies", dest, repo=repo)
    assert needle in str(info.value)
    assert not list(tmp_path.rglob("escape.rego")), "nothing may be written anywhere"
    assert not list(dest.rglob("*")), "nothing is written before every entry is checked"

    # The command: exit 2 naming the entry, and nothing escapes its temporary directory.
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.chdir(repo)
    result = run("--base", "git:main", "--head", str(stock_policy_dir()), "--generate", "5")
    assert result.exit_code == 2 and needle in result.output
    assert not list(tmp_path.rglob("escape.rego"))


def test_a_symlink_to_a_directory_is_refused(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (repo / "src" / "pkg" / "policies" / "more").symlink_to(Path("helpdesk"))
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "dir link")
    monkeypatch.chdir(repo)
    result = run("--base", "git:main", "--head", "policies", "--generate", "5")
    assert result.exit_code == 2
    assert "entry 'more' is a symlink to a tree, not to a file" in result.output


# ------------------------------------------------------------------ strict case files


@pytest.mark.parametrize(("name", "content", "needle"), [
    ("dup.json", '{"request": {"id": "A"}, "request": {"id": "B"}}', "dup.json: duplicate key 'request'"),
    ("dup.yaml", "cases:\n  - name: a\n  - name: b\ncases: []\n", "dup.yaml: line 4: duplicate key 'cases'"),
    ("log.jsonl", '{"decision_id": "d", "input": {"target": {}, "target": {}}}\n', "log.jsonl:1: duplicate key 'target'"),
    ("deep.json", "[" * 100000 + "]" * 100000, "deep.json: nested deeper than"),
    ("nan.json", '{"request": NaN}', "nan.json: not valid JSON: NaN is not valid JSON"),
])
def test_case_files_are_read_strictly(tmp_path: Path, name: str, content: str, needle: str) -> None:
    p = tmp_path / name
    p.write_text(content, encoding="utf-8")
    with pytest.raises(DiffError) as info:
        load_cases([p])
    assert needle in str(info.value)
    result = run("--base", str(stock_policy_dir()), "--head", str(stock_policy_dir()), "--cases", str(p))
    assert result.exit_code == 2 and needle in result.output


def test_a_non_utf8_case_file_is_a_usage_error(tmp_path: Path) -> None:
    p = tmp_path / "latin1.json"
    p.write_bytes('{"request": "café"}'.encode("latin-1"))
    result = run("--base", str(stock_policy_dir()), "--head", str(stock_policy_dir()), "--cases", str(tmp_path))
    assert result.exit_code == 2 and "latin1.json" in result.output and "not UTF-8" in result.output


def test_case_directories_are_read_recursively(tmp_path: Path) -> None:
    (tmp_path / "guidance").mkdir()
    shutil.copy(AGENTS_SUITE, tmp_path / "guidance" / "agents.yaml")
    shutil.copy(EXAMPLES / "01-portal-password-reset.json", tmp_path / "one.json")
    names = [c.name for c in load_cases([tmp_path])]
    assert sum(n.startswith("guidance/agents.yaml: ") for n in names) == AGENTS_CASES
    assert len(names) == AGENTS_CASES + 1


# ------------------------------------------------------------------ OPA conformance


def test_a_change_only_opa_reads_as_looser_fails_the_diff(tmp_path: Path) -> None:
    from test_policytest import opa_reads_looser

    head = opa_reads_looser(tmp_path / "head")
    report = diff_policies(PolicySet.load(stock_policy_dir()), PolicySet.load(head), generated_cases(80, SEED))
    # rego-cpp decides exactly as before: nothing looser, nothing changed ...
    assert report.counts()["unchanged"] == 80 and not report.has_loosening
    # ... and OPA's Go evaluator reads the non-owner deny as step_up: the diff fails.
    assert report.conformance.status == "failed" and report.exit_code == 1
    assert all("nhi_requester_not_owner" in m.describe() for m in report.conformance.mismatches)
    result = run("--base", str(stock_policy_dir()), "--head", str(head), "--generate", "80", "--seed", str(SEED))
    assert result.exit_code == 1
    assert "**❌ rego-cpp and OPA's Go evaluator decide" in result.output
    assert "### ❌ rego-cpp and OPA disagree" in result.output
    doc = json.loads(run("--base", str(stock_policy_dir()), "--head", str(head), "--generate", "80",
                         "--format", "json").output)
    assert doc["conformance"]["status"] == "failed" and doc["exit_code"] == 1


def test_opa_conformance_is_reported_skipped_or_required(monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["--base", str(stock_policy_dir()), "--head", str(stock_policy_dir()), "--generate", "10"]
    ok = run(*args)
    assert "OPA conformance: ✅ rego-cpp and OPA's Go evaluator agree on all 10 head decisions." in ok.output
    monkeypatch.setitem(sys.modules, "opa_bindings", None)
    skipped = run(*args)
    assert skipped.exit_code == 0
    assert ("OPA conformance: skipped — install OPA's Go evaluator to check OPA conformance: pip install "
            "--ignore-requires-python --no-deps opa-golib-python-bindings==0.4.4.") in skipped.output
    required = run(*args, "--require-opa")
    assert required.exit_code == 3 and "OPA conformance is required" in required.output


# ------------------------------------------------------------------ playbooks and messages


def test_a_playbook_for_a_lower_level_cannot_pass(tmp_path: Path) -> None:
    head = copy_stock(tmp_path / "head")
    # Every decision would open the self-service playbook, a callback included.
    edit(head, "decision.rego", 'replace(lvl, "_", "-")]', '"self-service"]')
    result = run("--base", str(stock_policy_dir()), "--head", str(head), "--generate", "40", "--format", "json")
    doc = json.loads(result.output)
    assert result.exit_code == 1
    errors = [c for c in doc["changes"] if c["change"] == "error"]
    assert errors and all("playbook does not end with" in c["head"]["error"] for c in errors)
    assert all(c["base"]["level"] != "self_service" for c in errors)


def test_a_renamed_playbook_and_a_reworded_message_are_reported(tmp_path: Path) -> None:
    head = copy_stock(tmp_path / "head")
    edit(head, "decision.rego", 'concat("-", [replace(common.action', 'concat("-", ["org", replace(common.action')
    # Messages live in the reason catalogue: rewording one is an edit of reasons.yaml.
    catalogue = head / "reasons.yaml"
    text = catalogue.read_text(encoding="utf-8")
    old = "an impersonable channel: verify"
    assert text.count(old) == 1
    catalogue.write_text(text.replace(old, "a channel anyone can impersonate: verify"), encoding="utf-8")
    report = diff_policies(PolicySet.load(stock_policy_dir()), PolicySet.load(head), generated_cases(120, SEED),
                           opa="off")
    reworded = [d for d in report.diffs if d.messages_changed]
    assert reworded and all(d.change is Change.REASONS and d.messages_changed == ("remote_channel_recovery",)
                            for d in reworded)
    renamed = report.of(Change.PLAYBOOK)
    assert len(renamed) + len(reworded) == 120 and not report.has_loosening and report.exit_code == 0
    assert all(d.playbook_changed and d.head.playbook == "org-" + d.base.playbook for d in report.diffs)
    md = report.to_markdown()
    assert "| playbook changed (same level and reasons) | " in md
    assert "`remote_channel_recovery` message changed" in md
    d = renamed[0].to_dict()
    assert d["playbook_changed"] == {"base": renamed[0].base.playbook, "head": renamed[0].head.playbook}


def test_outcome_classification_of_playbooks_and_messages() -> None:
    from helpdesk_policy.ci.diff import Outcome, compare, playbook_level

    case = generated_cases(1, SEED)[0]
    reasons = (("action_baseline", Level.CALLBACK),)
    base = Outcome(Level.CALLBACK, reasons, playbook="mfa-reset-callback", messages=(("action_baseline", "m"),))
    assert compare(case, base, base).change is Change.UNCHANGED
    lower = Outcome(Level.CALLBACK, reasons, playbook="mfa-reset-step-up", messages=base.messages)
    assert compare(case, base, lower).change is Change.LOOSER
    renamed = Outcome(Level.CALLBACK, reasons, playbook="org-mfa-reset-callback", messages=base.messages)
    assert compare(case, base, renamed).change is Change.PLAYBOOK
    reworded = Outcome(Level.CALLBACK, reasons, playbook=base.playbook, messages=(("action_baseline", "n"),))
    diff = compare(case, base, reworded)
    assert diff.change is Change.REASONS and diff.messages_changed == ("action_baseline",)
    assert [playbook_level(p) for p in ("x-self-service", "x-step-up", "x-manager-approval", "x-callback",
                                        "x-deny", "x", None)] == [*Level, None, None]


# ------------------------------------------------------------------ config-only changes


def test_a_config_only_change_is_one_command(tmp_path: Path) -> None:
    old, new = tmp_path / "old.yaml", tmp_path / "new.yaml"
    old.write_text("callback_tier: 2\n", encoding="utf-8")
    new.write_text("callback_tier: 3\n", encoding="utf-8")
    suites = str(stock_policy_dir() / "tests")
    # Same Rego; only the head's config changes.
    result = run("--base", str(stock_policy_dir()), "--config", str(new), "--cases", suites, "--format", "json")
    doc = json.loads(result.output)
    assert result.exit_code == 1 and doc["counts"]["looser"] > 0
    looser = [c for c in doc["changes"] if c["change"] == "looser"]
    # callback_tier grades both the target's tier and the tier of access asked for.
    def tier_2(c: dict[str, Any]) -> bool:
        return 2 in (c["input"]["target"]["privilege_tier"], c["input"]["request"].get("requested_privilege_tier"))
    assert all(tier_2(c) and c["base"]["level"] == "callback" for c in looser)
    assert any(c["input"]["target"]["privilege_tier"] == 2 for c in looser)
    assert doc["head"]["source"].endswith(f"with config {new}")
    # Both configs named, and the other way round: stricter, passes.
    back = run("--base", str(stock_policy_dir()), "--base-config", str(new), "--head-config", str(old),
               "--cases", suites, "--format", "json")
    doc = json.loads(back.output)
    assert back.exit_code == 0 and doc["counts"]["stricter"] > 0 and doc["counts"]["looser"] == 0
    assert run("--base", str(stock_policy_dir()), "--generate", "5").exit_code == 2  # nothing to compare with
    bad = tmp_path / "bad.yaml"
    bad.write_text("callback_tier: 0\n", encoding="utf-8")
    invalid = run("--base", str(stock_policy_dir()), "--config", str(bad), "--generate", "5")
    assert invalid.exit_code == 2 and f"head {bad}: callback_tier" in invalid.output


@given(st.lists(st.one_of(st.sampled_from(["..", ".", "", "a", "b.rego", "\\", "/"]), st.text(max_size=6)),
                min_size=1, max_size=5).map("/".join))
def test_an_exported_name_never_leaves_the_export_directory(rel: str) -> None:
    from helpdesk_policy.ci.diff import _export_name

    root = "/export/dir"
    try:
        parts = _export_name(rel, "t")
    except DiffError:
        return
    joined = posixpath.normpath(posixpath.join(root, *parts))
    assert joined.startswith(root + "/") and parts == rel.split("/")


# ------------------------------------------------ --base recorded (decision logs)


def _records(tmp_path: Path) -> tuple[Path, list[dict[str, Any]]]:
    records: list[dict[str, Any]] = []
    with HelpdeskPolicy(engine="native", log_sink=records.append) as policy:
        for f in sorted(EXAMPLES.glob("*.json")):
            policy.decide(_request(f.name))
    log = tmp_path / "decisions.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return log, records


def test_recorded_decisions_replayed_under_the_same_policy_are_unchanged(tmp_path: Path) -> None:
    log, records = _records(tmp_path)
    result = run("--base", "recorded", "--head", str(stock_policy_dir()), "--cases", str(log), "--format", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["counts"]["unchanged"] == doc["counts"]["total"] == len(records)
    assert doc["base"]["spec"] == "recorded"
    # Every record names the revision that decided it: the base is that revision.
    assert doc["base"]["revision"] == records[0]["policy_revision"] == doc["head"]["revision"]


def test_a_recorded_decision_stricter_than_the_head_is_a_loosening(tmp_path: Path) -> None:
    log, records = _records(tmp_path)
    lowered = next(i for i, r in enumerate(records) if r["result"]["level"] == "self_service")
    strict = records[lowered]["result"]
    # What an older policy decided: the same request at callback.
    strict.update(level="callback", requirements=["identity_step_up", "manager_approval", "out_of_band_callback"],
                  playbook=strict["playbook"].rsplit("-self-service", 1)[0] + "-callback")
    strict["reasons"] = [*strict["reasons"], {"code": "older_rule", "level": "callback", "message": "m", "refs": []}]
    strict.pop("constraints", None)
    log.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    result = run("--base", "recorded", "--head", str(stock_policy_dir()), "--cases", str(log), "--format", "json")
    assert result.exit_code == 1
    doc = json.loads(result.output)
    assert [c["change"] for c in doc["changes"]] == ["looser"]
    assert doc["changes"][0]["base"]["level"] == "callback"


def test_a_record_without_a_valid_decision_is_an_error_not_a_guess(tmp_path: Path) -> None:
    log, records = _records(tmp_path)
    records[0].pop("result")
    records[1]["result"]["level"] = "self_service"  # no longer the maximum of its reasons
    records[1]["result"]["reasons"] = [{"code": "x", "level": "deny", "message": "m", "refs": []}]
    log.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    result = run("--base", "recorded", "--head", str(stock_policy_dir()), "--cases", str(log), "--format", "json")
    doc = json.loads(result.output)
    errors = [c for c in doc["changes"] if c["change"] == "error"]
    assert len(errors) == 2
    assert "no recorded decision" in errors[0]["base"]["error"]
    assert "not valid" in errors[1]["base"]["error"]


@pytest.mark.parametrize(("args", "needle"), [
    (["--base", "recorded", "--head", "."], "needs --cases"),
    (["--base", "recorded", "--cases", "."], "give --head"),
    (["--base", "recorded", "--head", ".", "--cases", ".", "--generate", "5"], "no --base-config or --generate"),
])
def test_recorded_base_usage_errors(args: list[str], needle: str) -> None:
    result = CliRunner().invoke(diff_command, args)
    assert result.exit_code == 2
    assert needle in result.output
