"""helpdesk-policy test: passes on the stock policies, fails (exit 1) on a broken copy."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from helpdesk_policy.ci import regotest
from helpdesk_policy.ci.runner import run_policy_tests
from helpdesk_policy.ci.suites import load_suites, stock_suite_paths
from helpdesk_policy.cli import ci as cli_ci
from helpdesk_policy.cli import main
from helpdesk_policy.cli.ci import EXIT_ENGINE, EXIT_FAILED, EXIT_OK, EXIT_USAGE, REGO_TEST_EVALUATORS
from helpdesk_policy.policyset import PolicySet
from helpdesk_policy.resources import stock_policy_dir

#: The stock expectation-suite cases, guidance corpus included (counted, not pinned).
STOCK_CASES = sum(len(s.cases) for s in load_suites(stock_suite_paths()))


def run(*args: str) -> Result:
    # Through the module: a name starting with "test_" imported here would be collected by pytest.
    return CliRunner().invoke(cli_ci.test_command, list(args), catch_exceptions=False)


def copy_stock(dest: Path) -> Path:
    shutil.copytree(stock_policy_dir(), dest)
    return dest


@pytest.fixture(scope="module")
def stock_json() -> dict[str, Any]:
    result = run(str(stock_policy_dir()), "--generate", "50", "--format", "json")
    assert result.exit_code == EXIT_OK, result.output
    return json.loads(result.output)


def test_stock_policies_pass(stock_json: dict[str, Any]) -> None:
    c = stock_json["counts"]
    assert stock_json["ok"] is True
    assert c["rego_tests"]["total"] > 0 and c["rego_tests"]["failed"] == 0
    assert c["suite_cases"]["total"] >= 100 and c["suite_cases"]["failed"] == 0 and c["suite_cases"]["files"] >= 5
    assert c["parity"] == {"status": "passed", "requests": 50 + c["suite_cases"]["total"], "mismatches": 0}
    test = stock_json["rego_tests"]["results"][0]
    assert set(test) == {"file", "package", "name", "ref", "passed", "error", "duration_s"}
    assert test["ref"] == f"data.{test['package']}.{test['name']}"
    case = stock_json["suites"]["results"][0]
    assert {"suite", "file", "case", "passed", "mismatches", "decision"} <= set(case)


def test_text_report() -> None:
    # Default POLICY_DIR: the stock policies. (Rego test lines: see the failing-test case below.)
    result = run("--generate", "10", "--skip", "rego-tests")
    assert result.exit_code == EXIT_OK
    out = result.output
    assert "PASS recovery.yaml: manager asking to reset a report's password needs a callback to the holder (" in out
    assert (f"Parity rego/native: PASS on {10 + STOCK_CASES} requests (10 generated with seed 0, "
            f"{STOCK_CASES} from suites)") in out
    assert out.rstrip().splitlines()[-1].startswith(f"PASS: rego tests skipped; suite cases {STOCK_CASES}/{STOCK_CASES} passed")
    quiet = run("--generate", "10", "--skip", "rego-tests", "-q").output
    assert "PASS recovery.yaml" not in quiet and quiet.rstrip().splitlines()[-1].startswith("PASS:")
    skipped = run("--skip", "suites", "--skip", "parity", "--skip", "rego-tests").output
    assert "Expectation suites: skipped" in skipped and "Parity rego/native: SKIPPED (disabled)" in skipped


def test_failing_rego_test_fails_the_run(tmp_path: Path) -> None:
    policies = copy_stock(tmp_path / "p")
    # Keep one small test module (the full Rego test suite runs in stock_json).
    for f in (policies / "helpdesk").glob("*_test.rego"):
        if f.name != "levels_test.rego":
            f.unlink()
    (policies / "helpdesk" / "broken_test.rego").write_text(
        "package helpdesk.broken_test\n\nimport rego.v1\n\nimport data.helpdesk\n\n"
        "test_always_fails if {\n\thelpdesk.level == \"nope\"\n}\n", encoding="utf-8")
    result = run(str(policies), "--generate", "10")
    assert result.exit_code == EXIT_FAILED
    # One line per test, with file and name, as `opa test -v` prints them.
    first = next(t for t in regotest.discover(PolicySet.load(policies)) if t.file == "helpdesk/levels_test.rego")
    assert f"PASS {first.file}: {first.name} (" in result.output
    assert "FAIL helpdesk/broken_test.rego: test_always_fails (" in result.output
    assert "test is undefined" in result.output
    # The test file is not a policy module, so the Rego still equals the stock Rego.
    assert "Parity rego/native: PASS" in result.output
    assert result.output.rstrip().splitlines()[-1].startswith("FAIL: rego tests")


def test_failing_suite_case_fails_the_run(tmp_path: Path) -> None:
    policies = copy_stock(tmp_path / "p")
    suite_path = policies / "tests" / "targets.yaml"
    suite = yaml.safe_load(suite_path.read_text(encoding="utf-8"))
    suite["cases"][0]["expect"] = {"level": "deny", "reasons": ["vip_target"]}
    suite_path.write_text(yaml.safe_dump(suite, sort_keys=False), encoding="utf-8")
    result = run(str(policies), "--generate", "10", "--format", "json", "--skip", "rego-tests")
    assert result.exit_code == EXIT_FAILED
    doc = json.loads(result.output)
    (failed,) = [r for r in doc["suites"]["results"] if not r["passed"]]
    assert failed["file"] == "targets.yaml"
    assert failed["mismatches"] == ["level: expected deny, got manager_approval", "reason missing: vip_target"]
    text = run(str(policies), "--skip", "parity", "--skip", "rego-tests", "-q").output
    assert "FAIL targets.yaml: tier-1 target needs manager approval" in text
    assert "level: expected deny, got manager_approval" in text


def test_changed_rego_skips_parity_with_the_reason(tmp_path: Path) -> None:
    policies = copy_stock(tmp_path / "p")
    rego = policies / "helpdesk" / "access.rego"
    rego.write_text(rego.read_text(encoding="utf-8").replace(
        'privileged_level := "callback" if', 'privileged_level := "deny" if'), encoding="utf-8")
    doc = json.loads(run(str(policies), "--format", "json", "--skip", "rego-tests").output)
    assert doc["parity"]["status"] == "skipped"
    assert "native engine mirrors the stock policies only" in doc["parity"]["reason"]
    # The suites are decided by the changed Rego: tier-2 cases now fail.
    assert doc["counts"]["suite_cases"]["failed"] > 0 and doc["ok"] is False


def test_policy_that_does_not_compile_fails(tmp_path: Path) -> None:
    # A broken policy is a usage error (exit 2) naming file and line, not a run of failed tests.
    policies = copy_stock(tmp_path / "p")
    (policies / "helpdesk" / "oops.rego").write_text("package helpdesk.oops\n\nx := {\n", encoding="utf-8")
    result = run(str(policies), "--generate", "5", "--format", "json")
    assert result.exit_code == EXIT_USAGE
    assert "helpdesk/oops.rego:3: '{' opened here is never closed" in result.stderr


def test_invalid_suite_file_fails_with_its_errors(tmp_path: Path) -> None:
    policies = copy_stock(tmp_path / "p")
    (policies / "tests" / "zz-bad.yaml").write_text("suite: bad\ncases:\n  - name: x\n    expect: {levle: deny}\n",
                                                    encoding="utf-8")
    result = run(str(policies), "--skip", "parity", "--skip", "rego-tests", "-q")
    assert result.exit_code == EXIT_FAILED
    assert "ERROR suite " in result.output and "zz-bad.yaml: cases[0] 'x'.expect.levle" in result.output


def test_extra_suite_and_config(tmp_path: Path) -> None:
    extra = tmp_path / "extra.yaml"
    extra.write_text(yaml.safe_dump({"suite": "extra", "cases": [{
        # At the desk (the holder's own strong portal session is not escalated for a VIP),
        # with a factor still enrolled: only vip_target, at the configured vip_level, raises it.
        "name": "vip at callback",
        "request": {"request": {"id": "X", "action": "mfa_add_factor", "channel": "walk_in"},
                    "actor": {"id": "u-1", "type": "human", "relationship": "self", "authenticated": True,
                              "auth_strength": "mfa"},
                    "target": {"id": "u-1", "type": "human", "privileged": False, "privilege_tier": 0,
                               "vip": True, "status": "active"},
                    "context": {"enrolled_factor_available": True}},
        "expect": {"level": "callback"}}]}), encoding="utf-8")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("vip_level: callback\n", encoding="utf-8")
    report = run_policy_tests(config=cfg, suites=[extra], dir_suites=False, generate=30, rego_tests=False)
    assert [r.case for r in report.suite_results] == ["vip at callback"]
    assert report.ok, report.render_text()
    # A tuned config keeps parity: the native engine reads the same config.
    assert report.parity.status == "passed" and report.parity.requests == 31


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert run(str(tmp_path / "missing")).exit_code == 2
    assert run(str(tmp_path)).exit_code == 2  # exists but holds no .rego files
    assert "no .rego policy files" in run(str(tmp_path)).output
    assert run("--evaluator", "opa").exit_code == 2


def test_evaluator_choices_match_the_runner() -> None:
    assert REGO_TEST_EVALUATORS == regotest.EVALUATORS


# ------------------------------------------------------------- OPA conformance

#: A change rego-cpp evaluates exactly like the stock policy, while OPA reads the
#: non-owner deny as step_up: rego-cpp orders mixed values as strings in min()
#: (so min({10, 9, "a"}) is "a" there), OPA orders numbers before strings (9).
MIXED_MIN_RULE = ('\n# Which level? Ask min() over mixed values.\n_not_owner_level := "deny" if {\n'
                  '\tmin({10, 9, "a"}) == "a"\n} else := "step_up"\n')


def opa_reads_looser(dest: Path) -> Path:
    """A copy of the stock policies whose non-owner deny only OPA reads as step_up."""
    policies = copy_stock(dest)
    nhi = policies / "helpdesk" / "nhi.rego"
    text = nhi.read_text(encoding="utf-8")
    old = 'common.reason("nhi_requester_not_owner", "deny", [])'
    assert text.count(old) == 1
    nhi.write_text(text.replace(old, 'common.reason("nhi_requester_not_owner", _not_owner_level, [])')
                   + MIXED_MIN_RULE, encoding="utf-8")
    return policies


def test_a_policy_only_opa_reads_as_looser_fails(tmp_path: Path) -> None:
    policies = opa_reads_looser(tmp_path / "p")
    # The embedded engine alone sees nothing wrong: every suite case passes.
    doc = json.loads(run(str(policies), "--generate", "60", "--skip", "rego-tests", "--format", "json").output)
    assert doc["counts"]["suite_cases"]["failed"] == 0
    assert doc["conformance"]["status"] == "failed" and doc["ok"] is False
    mismatch = doc["conformance"]["mismatches"][0]
    assert set(mismatch) == {"case", "rego", "opa-go"}
    assert mismatch["rego"]["reasons"]["nhi_requester_not_owner"]["level"] == "deny"
    assert mismatch["opa-go"]["reasons"]["nhi_requester_not_owner"]["level"] == "step_up"
    text = run(str(policies), "--generate", "60", "--skip", "rego-tests", "-q")
    assert text.exit_code == EXIT_FAILED
    assert "Conformance rego-cpp/OPA: FAIL on" in text.output
    assert "reasons.nhi_requester_not_owner.level: rego 'deny' != opa-go 'step_up'" in text.output
    assert text.output.rstrip().splitlines()[-1].startswith("FAIL:")


def test_conformance_passes_on_the_stock_policies() -> None:
    report = run_policy_tests(generate=30, rego_tests=False, parity=False)
    assert report.conformance.status == "passed" and report.conformance.requests == 30 + STOCK_CASES
    assert report.conformance.engines == ("rego", "opa-go")


def test_without_opa_conformance_is_skipped_visibly_or_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opa_bindings", None)  # import opa_bindings -> ImportError
    result = run("--generate", "5", "--skip", "rego-tests", "--skip", "suites", "--skip", "parity")
    assert result.exit_code == EXIT_OK
    assert ("Conformance rego-cpp/OPA: SKIPPED (install OPA's Go evaluator to check OPA conformance: "
            "pip install --ignore-requires-python --no-deps opa-golib-python-bindings==0.4.4)") in result.output
    required = run("--generate", "5", "--skip", "rego-tests", "--require-opa")
    assert required.exit_code == EXIT_ENGINE
    assert "OPA conformance is required" in required.output and "opa-golib-python-bindings==0.4.4" in required.output
    assert ("Compiled policy/OPA: SKIPPED (install OPA's Go evaluator to check the compiled policy against OPA: "
            "pip install") in result.output
    # The compiled policy's check needs OPA too: --require-opa still applies without the conformance check.
    assert run("--generate", "5", "--skip", "rego-tests", "--require-opa", "--skip", "conformance").exit_code \
        == EXIT_ENGINE
    assert run("--require-opa", "--skip", "conformance", "--skip", "compiled").exit_code == EXIT_USAGE


# ------------------------------------------------------------- organisations


def test_init_then_test_passes(tmp_path: Path) -> None:
    target = tmp_path / "org" / "policies"
    result = CliRunner().invoke(main, ["init", str(target)], catch_exceptions=False)
    assert result.exit_code == EXIT_OK, result.output
    assert "Next steps:" in result.output and f"helpdesk-policy test {target}" in result.output
    stock = sorted(p.relative_to(stock_policy_dir()).as_posix() for p in stock_policy_dir().rglob("*.*"))
    copied = sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file())
    assert copied == [p for p in stock if "__pycache__" not in p]
    assert {"config.yaml", "helpdesk/decision.rego", "helpdesk/decision_test.rego", "tests/recovery.yaml"} <= set(copied)
    # The Rego unit tests under regopy run on the stock directory (stock_json); here
    # OPA's evaluator runs the copied ones, which is much faster.
    tested = run(str(target), "--generate", "20", "--evaluator", "opa-go", "-q")
    assert tested.exit_code == EXIT_OK, tested.output
    last = tested.output.rstrip().splitlines()[-1]
    assert last.startswith("PASS: rego tests ") and f"; suite cases {STOCK_CASES}/{STOCK_CASES} passed; parity passed; " \
        "OPA conformance passed" in last


def test_init_refuses_a_non_empty_directory_unless_forced(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    refused = CliRunner().invoke(main, ["init", str(tmp_path)])
    assert refused.exit_code == EXIT_USAGE and "is not empty" in refused.output and "--force" in refused.output
    assert not (tmp_path / "config.yaml").exists()
    forced = CliRunner().invoke(main, ["init", "--force", str(tmp_path)])
    assert forced.exit_code == EXIT_OK
    assert (tmp_path / "notes.txt").read_text(encoding="utf-8") == "mine"  # kept
    assert (tmp_path / "helpdesk" / "nhi.rego").is_file()
    assert CliRunner().invoke(main, ["init", str(tmp_path / "notes.txt")]).exit_code == EXIT_USAGE


ORG_SUITE = {
    "suite": "org",
    "base_request": {
        "request": {"id": "ORG-1", "action": "mfa_reset", "channel": "phone"},
        "actor": {"id": "u-1", "type": "human", "relationship": "self", "authenticated": True,
                  "auth_strength": "mfa"},
        "target": {"id": "u-1", "type": "human", "privileged": True, "privilege_tier": 2, "vip": False,
                   "status": "active"},
    },
    "cases": [
        {"name": "tier 2 is below our callback tier", "refs": ["ORG-IAM-7"],
         "request": {"request": {"action": "role_change", "channel": "walk_in"}},
         "expect": {"level": "manager_approval"}},
        {"name": "phone recovery of an admin still needs a callback",
         "expect": {"level_at_least": "callback"}},
    ],
}


def test_org_config_runs_only_the_org_suites(tmp_path: Path) -> None:
    cfg = tmp_path / "org.yaml"
    cfg.write_text("callback_tier: 3\n", encoding="utf-8")
    (tmp_path / "org-tests").mkdir()
    (tmp_path / "org-tests" / "org.yaml").write_text(yaml.safe_dump(ORG_SUITE), encoding="utf-8")
    report = run_policy_tests(config=cfg, suites=[tmp_path / "org-tests"], generate=20,
                              evaluator="opa-go", conformance=False)
    # Only the org's suite ran, under the org's config; the Rego unit tests,
    # which pin the stock values, ran with the stock config, and the report says so.
    assert [r.case for r in report.suite_results] == [c["name"] for c in ORG_SUITE["cases"]]
    assert report.ok, report.render_text()
    assert report.rego_tests and not report.rego_failed
    assert report.rego_config is not None and "stock config" in report.rego_config
    assert "config: the stock config" in report.render_text()
    assert report.parity.status == "passed"

    # Asked for, the stock suites run too, under the org config, and those pinning tier-2 callbacks fail.
    both = run(str(stock_policy_dir()), "--config", str(cfg), "--suite", str(tmp_path / "org-tests"),
               "--with-dir-suites", "--skip", "rego-tests", "--skip", "parity", "--skip", "conformance",
               "--format", "json")
    doc = json.loads(both.output)
    files = {r["file"] for r in doc["suites"]["results"]}
    assert "org.yaml" in files and "recovery.yaml" in files
    assert doc["counts"]["suite_cases"]["failed"] > 0 and both.exit_code == EXIT_FAILED
    assert run("--with-dir-suites").exit_code == EXIT_USAGE


def test_ranges_per_suite_counts_and_subdirectories(tmp_path: Path) -> None:
    policies = copy_stock(tmp_path / "p")
    # A subdirectory of its own (the stock tests/guidance holds the guidance corpus).
    sub = policies / "tests" / "org"
    sub.mkdir()
    (sub / "x.yaml").write_text(yaml.safe_dump(ORG_SUITE), encoding="utf-8")
    result = run(str(policies), "--skip", "rego-tests", "--skip", "parity", "--skip", "conformance")
    assert result.exit_code == EXIT_FAILED  # the stock config keeps tier 2 at callback: case 1 fails
    out = result.output
    assert "PASS org/x.yaml: phone recovery of an admin still needs a callback — callback in [callback, deny] (" \
        in out
    assert "FAIL org/x.yaml: tier 2 is below our callback tier" in out
    assert "org/x.yaml (suite 'org'): 2 case(s), 1 passed, 1 failed" in out
    assert "recovery.yaml (suite 'recovery'): " in out
    doc = json.loads(run(str(policies), "--skip", "rego-tests", "--skip", "parity", "--skip", "conformance",
                         "--format", "json").output)
    assert {"file": "org/x.yaml", "suite": "org", "cases": 2, "passed": 1, "failed": 1} in \
        doc["suites"]["per_suite"]
    ranged = next(r for r in doc["suites"]["results"] if r["case"] == "phone recovery of an admin still needs a callback")
    assert ranged["expect"] == {"level_at_least": "callback"}
    pinned = next(r for r in doc["suites"]["results"] if r["case"] == "tier 2 is below our callback tier")
    assert pinned["refs"] == ["ORG-IAM-7"]


@pytest.mark.parametrize(("name", "content", "needle"), [
    ("latin1.yaml", "suite: caf\xe9\n".encode("latin-1"), "not UTF-8"),
    ("dup.yaml", b"suite: a\ncases:\n  - name: x\n    expect: {level: deny}\n    expect: {level: step_up}\n",
     "line 5: duplicate key 'expect'"),
    ("deep.json", b"[" * 100000 + b"]" * 100000, "nested deeper than"),
    ("bad.yaml", b"suite: [unclosed\n", "not valid YAML"),
])
def test_a_broken_suite_file_given_is_a_usage_error(tmp_path: Path, name: str, content: bytes, needle: str) -> None:
    p = tmp_path / name
    p.write_bytes(content)
    result = run("--suite", str(p), "--skip", "rego-tests", "--skip", "parity", "--skip", "conformance")
    assert result.exit_code == EXIT_USAGE, result.output
    assert name in result.output and needle in result.output
    assert "Traceback" not in result.output


def test_the_interpreters_decide_each_request_once_for_both_engine_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The conformance check and the compiled-policy check share rego-cpp's and OPA's answers."""
    from helpdesk_policy.ci.conformance import OpaGoEngine
    from helpdesk_policy.engines.rego import RegoEngine

    calls = {"rego": 0, "opa-go": 0}
    for cls, name in ((RegoEngine, "rego"), (OpaGoEngine, "opa-go")):
        def counted(self: Any, request: Any, _real: Any = cls.evaluate, _name: str = name) -> Any:
            calls[_name] += 1
            return _real(self, request)

        monkeypatch.setattr(cls, "evaluate", counted)
    report = run_policy_tests(generate=20, rego_tests=False, run_suites=False, parity=False)
    assert report.ok, report.render_text()
    assert report.conformance.status == report.compiled_rego.status == report.compiled_opa.status == "passed"
    assert calls == {"rego": 20, "opa-go": 20}
