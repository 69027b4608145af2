"""The ``compiled`` engine: an edited policy decided by its Rego compiled to Python.

What is proven here is the engine and its place in the product: it decides
the stock policy exactly as the native mirror does, an edited policy exactly
as the interpreters do, ``engine="auto"`` picks it only for a policy it
translates whole, it fails closed, and ``helpdesk-policy test`` and
``compile`` report on it. The compiler's semantics, construct by construct and
against OPA's own evaluator, are proven in ``tests/test_compiler.py``; the
corpus of edited policies in ``tests/test_mutations.py``.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from helpdesk_policy import HelpdeskPolicy
from helpdesk_policy.ci.conformance import conformance_summary
from helpdesk_policy.ci.generate import generate_requests
from helpdesk_policy.ci.runner import run_policy_tests
from helpdesk_policy.cli import main
from helpdesk_policy.engines import load_engine
from helpdesk_policy.engines.base import checked_verdict
from helpdesk_policy.engines.compiled import CompiledEngine
from helpdesk_policy.errors import EngineError, EngineUnavailableError, PolicyLoadError, UndefinedDecisionError
from helpdesk_policy.levels import Level
from helpdesk_policy.policyset import PolicySet
from helpdesk_policy.resources import stock_policy_dir

REQUESTS = generate_requests(300, seed=41)

#: An organisation's edit: a suspended target's account needs a callback, not a manager's approval.
SUSPENDED_OLD = 'reasons contains common.reason("target_suspended", "manager_approval", []) if {'
SUSPENDED_NEW = 'reasons contains common.reason("target_suspended", "callback", []) if {'

#: An edit the compiler refuses: a rule reading the clock (not a function of the request).
CLOCK_RULE = '''
reasons contains common.reason("target_suspended", "callback", []) if {
	input.target.status == "suspended"
	time.now_ns() > 0
}
'''


def edited_copy(dest: Path, old: str = SUSPENDED_OLD, new: str = SUSPENDED_NEW, append: str = "") -> Path:
    shutil.copytree(stock_policy_dir(), dest)
    baseline = dest / "helpdesk" / "baseline.rego"
    text = baseline.read_text(encoding="utf-8")
    assert text.count(old) == 1, "the stock rule this test edits has changed"
    baseline.write_text(text.replace(old, new) + append, encoding="utf-8")
    return dest


def summaries(engine: Any, requests: list[Any]) -> list[dict[str, Any]]:
    return [conformance_summary(checked_verdict(engine, engine.evaluate(r))) for r in requests]


@pytest.fixture(scope="module")
def edited(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return edited_copy(tmp_path_factory.mktemp("edited") / "policies")


@pytest.fixture(scope="module")
def refused(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return edited_copy(tmp_path_factory.mktemp("refused") / "policies", append=CLOCK_RULE)


def test_the_compiled_stock_policy_decides_every_request_as_the_native_mirror() -> None:
    policy_set = PolicySet.load()
    compiled, native = CompiledEngine(policy_set), load_engine("native", policy_set)
    assert summaries(compiled, REQUESTS) == summaries(native, REQUESTS)


def test_an_edited_policy_is_decided_by_the_compiled_engine_as_by_the_interpreter(edited: Path) -> None:
    policy_set = PolicySet.load(edited)
    compiled, rego = CompiledEngine(policy_set), load_engine("rego", policy_set)
    try:
        assert summaries(compiled, REQUESTS) == summaries(rego, REQUESTS)
    finally:
        rego.close()
    # The edit is live: a suspended target's decision differs from the stock one.
    suspended = [r for r in REQUESTS if r.target.status.value == "suspended"]
    assert suspended, "the generated requests include a suspended target"
    stock = load_engine("native", PolicySet.load())
    assert summaries(compiled, suspended) != summaries(stock, suspended)


def test_auto_runs_an_edited_policy_compiled_with_the_interpreter_behind_it(edited: Path) -> None:
    with HelpdeskPolicy(policy_dir=edited) as policy:
        assert policy.engine_names == ["compiled", "rego"]
        decision = policy.decide(REQUESTS[0])
        assert (decision.engine, decision.degraded) == ("compiled", False)
    with HelpdeskPolicy(policy_dir=edited, engine="rego") as interpreter:
        assert decision.parity_key() == interpreter.decide(REQUESTS[0]).parity_key()


def test_a_policy_the_compiler_refuses_runs_on_the_interpreter_and_says_why(
        refused: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="helpdesk_policy"):
        with HelpdeskPolicy(policy_dir=refused) as policy:
            assert policy.engine_names == ["rego"]
            assert policy.decide(REQUESTS[0]).engine == "rego"
    refusal = [r.getMessage() for r in caplog.records if "engine 'compiled' refuses" in r.getMessage()]
    assert refusal and "baseline.rego" in refusal[0] and "time.now_ns" in refusal[0]
    # Asked for by name, it refuses to load, naming the file and the construct.
    with pytest.raises(PolicyLoadError, match=r"baseline\.rego:\d+.*time\.now_ns"):
        HelpdeskPolicy(policy_dir=refused, engine="compiled")


def test_a_fault_in_the_compiled_policy_is_an_engine_error_and_the_interpreter_decides(
        edited: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with HelpdeskPolicy(policy_dir=edited) as policy:
        expected = HelpdeskPolicy(policy_dir=edited, engine="rego").decide(REQUESTS[1])
        engine = policy.engines[0]
        assert isinstance(engine, CompiledEngine)

        def broken(document: Any) -> Any:
            raise KeyError("a fault in generated code")

        monkeypatch.setattr(engine, "_evaluate", broken)
        with pytest.raises(EngineError, match="compiled policy failed: KeyError"):
            engine.evaluate(REQUESTS[1])
        decision = policy.decide(REQUESTS[1])
        assert (decision.engine, decision.degraded) == ("rego", True)
        assert decision.parity_key() == expected.parity_key()


def test_with_no_engine_left_an_edited_policy_gets_the_strict_answer(
        edited: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never a looser decision: a compiled engine that fails, alone, gives the strict level."""
    with HelpdeskPolicy(policy_dir=edited, engine="compiled") as policy:
        assert policy.engine_names == ["compiled"]  # no native last resort for edited rules

        def undefined(document: Any) -> Any:
            raise UndefinedDecisionError("decision is undefined", engine="compiled")

        monkeypatch.setattr(policy.engines[0], "_evaluate", undefined)
        decision = policy.decide(REQUESTS[2])
    assert decision.level is Level.DENY and decision.degraded
    assert "engine_unavailable" in {r.code for r in decision.reasons}


def test_a_compiled_answer_that_is_not_a_decision_is_refused(edited: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The facade validates what the compiled engine answers, as for every engine but native."""
    with HelpdeskPolicy(policy_dir=edited, engine="compiled", fallback=["rego"]) as policy:
        real = policy.engines[0]._evaluate  # type: ignore[attr-defined]

        def looser(document: Any) -> Any:
            answer = dict(real(document))
            answer["level"] = "self_service"  # reasons still say otherwise
            return answer

        monkeypatch.setattr(policy.engines[0], "_evaluate", looser)
        request = next(r for r in REQUESTS if HelpdeskPolicy(engine="native").decide(r).level is Level.DENY)
        decision = policy.decide(request)
    assert (decision.engine, decision.degraded, decision.level) == ("rego", True, Level.DENY)


def test_without_lark_the_compiled_engine_names_the_extra(edited: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import helpdesk_policy.compiler as compiler

    monkeypatch.setattr(compiler, "_CACHE", {})
    monkeypatch.delitem(sys.modules, "helpdesk_policy.compiler.parser", raising=False)
    monkeypatch.setitem(sys.modules, "lark", None)
    with pytest.raises(EngineUnavailableError, match=r"pip install 'helpdesk-policy\[rego\]'"):
        CompiledEngine(PolicySet.load(edited))


def test_the_decision_cache_may_keep_compiled_verdicts(edited: Path) -> None:
    with HelpdeskPolicy(policy_dir=edited, engine="compiled", cache_size=16) as policy:
        first, second = policy.decide(REQUESTS[3]), policy.decide(REQUESTS[3])
        info = policy.cache_info()
    assert info.enabled and (info.hits, info.misses) == (1, 1)
    assert first.parity_key() == second.parity_key() and first.decision_id != second.decision_id


def test_replay_decides_an_edited_policy_compiled_in_worker_processes(edited: Path) -> None:
    with HelpdeskPolicy(policy_dir=edited, engine="compiled") as policy:
        one = [d.parity_key() for d in policy.decide_many(REQUESTS[:60])]
        many = [d.parity_key() for d in policy.decide_many(REQUESTS[:60], workers=2)]
    assert one == many


# ------------------------------------------------------------------ helpdesk-policy test


def test_the_policy_test_proves_the_compiled_policy_against_regopy_and_opa(edited: Path) -> None:
    report = run_policy_tests(edited, generate=60, rego_tests=False, run_suites=False)
    assert report.ok, report.render_text()
    assert report.compiled_rego.status == "passed" and report.compiled_rego.requests == 60
    assert report.compiled_opa.status == "passed"
    counts = report.counts()
    assert counts["compiled_rego"] == {"status": "passed", "requests": 60, "mismatches": 0}
    assert "Compiled policy/rego-cpp: PASS" in report.render_text()


def test_the_policy_test_fails_on_a_compiled_policy_that_disagrees(
        edited: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = CompiledEngine.evaluate_input

    def lying(self: CompiledEngine, document: dict[str, Any]) -> Any:
        answer = dict(real(self, document))
        if answer["level"] == "callback":
            answer = {**answer, "obligations": []}
        return answer

    monkeypatch.setattr(CompiledEngine, "evaluate_input", lying)
    report = run_policy_tests(edited, generate=120, rego_tests=False, run_suites=False, conformance=False)
    assert not report.ok
    assert report.compiled_rego.status == "failed" and report.compiled_rego.mismatches
    assert "obligations" in report.compiled_rego.mismatches[0].describe()


def test_the_policy_test_reports_a_refused_policy_without_failing(refused: Path) -> None:
    report = run_policy_tests(refused, generate=20, rego_tests=False, run_suites=False)
    assert report.ok, report.render_text()
    assert report.compiled_rego.status == "skipped" and "time.now_ns" in (report.compiled_rego.reason or "")
    assert "compiled refused (runs on the interpreter)" in report.render_text()


# ------------------------------------------------------------------ helpdesk-policy compile


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_compile_shows_a_policy_compiles_whole(edited: Path) -> None:
    result = run("compile", str(edited))
    assert result.exit_code == 0, result.output
    assert "refused" not in result.output.lower().replace("0 refused", "")
    assert "engine=\"auto\" runs it compiled" in result.output


def test_compile_names_each_refused_construct_and_exits_1(refused: Path) -> None:
    result = run("compile", str(refused))
    assert result.exit_code == 1, result.output
    assert "baseline.rego" in result.output and "time.now_ns" in result.output
    doc = json.loads(run("compile", str(refused), "--format", "json").output)
    assert doc["compiles"] is False
    assert any(r["file"].endswith("baseline.rego") and "time.now_ns" in r["construct"] + r["detail"]
               for r in doc["refusals"])


def test_compile_emits_the_generated_python(edited: Path, tmp_path: Path) -> None:
    out = tmp_path / "policy.py"
    result = run("compile", str(edited), "--emit", str(out))
    assert result.exit_code == 0, result.output
    source = out.read_text(encoding="utf-8")
    compile(source, str(out), "exec")  # valid Python
    assert "baseline.rego" in source  # each function names the Rego it came from


def test_compile_lists_every_rule_and_says_the_stock_rules_run_native() -> None:
    result = run("compile", "-v")
    assert result.exit_code == 0, result.output
    assert "compiles helpdesk.baseline.reasons (helpdesk/baseline.rego:" in result.output
    assert "native mirror" in result.output and "REFUSED" not in result.output


def test_an_organisation_inits_edits_proves_and_decides_at_compiled_speed(tmp_path: Path) -> None:
    """Issue 14's whole path: init, edit a rule, test proves the compiled policy equal to regopy and OPA on
    the organisation's own suites, and every decision of the edited policy is a compiled one."""
    org = tmp_path / "org-policies"
    assert run("init", str(org)).exit_code == 0
    baseline = org / "helpdesk" / "baseline.rego"
    baseline.write_text(baseline.read_text(encoding="utf-8").replace(SUSPENDED_OLD, SUSPENDED_NEW), encoding="utf-8")
    # The copied suites pin the stock level for a suspended target; the organisation updates its suite.
    tested = run("test", str(org), "--skip", "rego-tests", "--skip", "suites", "--generate", "80", "--format", "json")
    assert tested.exit_code == 0, tested.output
    counts = json.loads(tested.output)["counts"]
    assert counts["compiled_rego"]["status"] == counts["compiled_opa"]["status"] == "passed"
    assert counts["compiled_rego"]["requests"] >= 80
    request = next(r for r in REQUESTS if r.target.status.value == "suspended")
    path = tmp_path / "request.json"
    path.write_text(request.model_dump_json(), encoding="utf-8")
    decided = json.loads(run("decide", "--policy-dir", str(org), str(path)).output)
    assert decided["engine"] == "compiled" and decided["degraded"] is False
    assert "target_suspended" in {r["code"] for r in decided["reasons"]}
