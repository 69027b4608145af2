"""helpdesk-policy test: passes on the stock policies, fails (exit 1) on a broken copy."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from helpdesk_policy import cli_ci, regotest
from helpdesk_policy.cli_ci import EXIT_FAILED, EXIT_OK, REGO_TEST_EVALUATORS
from helpdesk_policy.policies import PolicySet, stock_policy_dir
from helpdesk_policy.policytest import run_policy_tests


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
    assert "Parity rego/native: PASS on 114 requests (10 generated with seed 0, 104 from suites)" in out
    assert out.rstrip().splitlines()[-1].startswith("PASS: rego tests skipped; suite cases 104/104 passed")
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
    policies = copy_stock(tmp_path / "p")
    (policies / "helpdesk" / "oops.rego").write_text("package helpdesk.oops\n\nx := {\n", encoding="utf-8")
    result = run(str(policies), "--generate", "5", "--format", "json")
    assert result.exit_code == EXIT_FAILED
    doc = json.loads(result.output)
    assert doc["counts"]["rego_tests"]["failed"] == doc["counts"]["rego_tests"]["total"] > 0
    assert any("do not compile" in e for e in doc["errors"])


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
        "name": "vip at callback",
        "request": {"request": {"id": "X", "action": "mfa_add_factor", "channel": "self_service_portal"},
                    "actor": {"id": "u-1", "type": "human", "relationship": "self", "authenticated": True,
                              "auth_strength": "mfa"},
                    "target": {"id": "u-1", "type": "human", "privileged": False, "privilege_tier": 0,
                               "vip": True, "status": "active"}},
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
