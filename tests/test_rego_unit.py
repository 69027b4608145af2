"""The Rego unit tests (``policies/helpdesk/*_test.rego``), under regopy and under OPA.

Each Rego test is one pytest item per evaluator, with ids such as
``regopy::helpdesk/recovery_test.rego::test_x``. Each evaluator runs the whole
Rego suite once per session (compiling it is the expensive part) and the items
read their result from that run.

The second half tests the runner itself (:mod:`helpdesk_policy.ci.regotest`) on
temporary policy directories: a failing, a false, an undefined and an erroring
test, and a syntax error, must all be reported as failures, never as passes.
"""

from __future__ import annotations

import importlib.util
import inspect
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from helpdesk_policy.ci import regotest
from helpdesk_policy.errors import EngineUnavailableError, PolicyLoadError, ResourceLimitError
from helpdesk_policy.policyset import PolicySet
from helpdesk_policy.resources import stock_policy_dir
from helpdesk_policy.ci.regotest import RegoTest, RegoTestResult

_MODULES = {"regopy": "regopy", "opa-go": "opa_bindings"}
_MISSING = {
    "regopy": "regopy is not installed (pip install 'helpdesk-policy[rego]')",
    "opa-go": f"OPA's Go bindings are not installed ({regotest.OPA_INSTALL_HINT})",
}


def _available(evaluator: str) -> bool:
    return importlib.util.find_spec(_MODULES[evaluator]) is not None


def _needs(evaluator: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(not _available(evaluator), reason=_MISSING[evaluator])


STOCK = PolicySet.load()
STOCK_TESTS = regotest.discover(STOCK)


def _params() -> list[object]:
    return [
        pytest.param(evaluator, test, id=f"{evaluator}::{test.file}::{test.name}", marks=_needs(evaluator))
        for evaluator in regotest.EVALUATORS
        for test in STOCK_TESTS
    ]


@pytest.fixture(scope="session")
def stock_results() -> Callable[[str], dict[RegoTest, RegoTestResult]]:
    """Results of the stock Rego suite per evaluator, each run once on first use."""
    cache: dict[str, dict[RegoTest, RegoTestResult]] = {}

    def get(evaluator: str) -> dict[RegoTest, RegoTestResult]:
        if evaluator not in cache:
            cache[evaluator] = {r.test: r for r in regotest.run(STOCK, evaluator)}
        return cache[evaluator]

    return get


# ------------------------------------------------------------ the Rego suite


@pytest.mark.parametrize(("evaluator", "test"), _params())
def test_rego(evaluator: str, test: RegoTest, stock_results: Callable[[str], dict[RegoTest, RegoTestResult]]) -> None:
    result = stock_results(evaluator)[test]
    assert result.evaluator == evaluator
    assert result.passed, f"{test.ref} ({test.file}) failed under {evaluator}: {result.error}"
    assert result.error is None


def test_every_policy_module_has_a_test_module() -> None:
    tested = {t.file for t in STOCK_TESTS}
    for policy in STOCK.modules:
        assert policy.removesuffix(".rego") + "_test.rego" in tested, f"{policy} has no *_test.rego with tests"


def test_every_reason_and_obligation_code_is_tested() -> None:
    """Every catalogue entry the rules use, and every obligation code, is named by the tests.

    Reasons are built from the catalogue (reasons.yaml) by key, so the keys the
    policies name are what the tests must name (a variant key such as
    ``chained_credential_change.unknown`` included); risk_<signal> codes are built
    from the signal. Obligation codes are literals in obligations.rego.
    """
    policy_text = "\n".join(STOCK.modules.values())
    test_text = "\n".join(STOCK.test_modules.values())
    keys = set(STOCK.catalogue.reasons)
    used = {k for k in re.findall(r'"([a-z_]+(?:\.[a-z_]+)?)"', policy_text) if k in keys}
    assert {"action_baseline", "action_baseline.strong_self_service", "target_offboarded", "risk_high"} <= used
    assert used == keys, f"catalogue entries no rule uses: {sorted(keys - used)}"
    untested = sorted(k for k in used if f'"{k}"' not in test_text)
    assert not untested, f"catalogue entries no Rego test names: {untested}"
    codes = set(re.findall(r'"code": "([a-z_]+)"', policy_text))
    assert {"record_evidence", "notify_previous_contact", "time_bound_access", "post_incident_review"} <= codes
    untested = sorted(c for c in codes if f'"{c}"' not in test_text)
    assert not untested, f"obligation codes no Rego test names: {untested}"


def test_rego_test_names_are_unique_per_package() -> None:
    keys = [(t.package, t.name) for t in STOCK_TESTS]
    assert len(keys) == len(set(keys))
    assert len(STOCK_TESTS) >= 400


# ---------------------------------------------------------- runner self-tests

BROKEN_TEST = """\
package helpdesk.broken_test

import rego.v1

import data.helpdesk.levels

test_passes if {
\tlevels.raise(0, 1) == "step_up"
}

test_fails if {
\tlevels.raise(0, 1) == "callback"
}

test_false := false

test_undefined if {
\tinput.no_such_field == 1
}

test_errors if {
\tcount(levels.names) / 0 == 1
}

# Two bodies, one rule, one test: it passes when either body holds.
test_multi if {
\tfalse
}

test_multi if {
\ttrue
}

# A function is not a test, whatever its name.
test_helper(x) := x

raw := `
test_inside_a_raw_string if { false }
`
"""

SYNTAX_ERROR_TEST = """\
package helpdesk.syntax_test

import rego.v1

test_incomplete if { 1 == }
"""


def _policy_dir(root: Path, extra: dict[str, str]) -> Path:
    """The stock policies and config plus ``levels_test.rego`` and ``extra`` test files.

    Only one cheap stock test module is copied, so each run here compiles in
    well under a second.
    """
    stock = stock_policy_dir()
    target = root / "policies"
    shutil.copytree(stock, target, ignore=shutil.ignore_patterns("*_test.rego"))
    shutil.copy(stock / "helpdesk" / "levels_test.rego", target / "helpdesk" / "levels_test.rego")
    for name, source in extra.items():
        (target / "helpdesk" / name).write_text(source, encoding="utf-8")
    return target


@pytest.fixture()
def broken_set(tmp_path: Path) -> PolicySet:
    return PolicySet.load(_policy_dir(tmp_path, {"broken_test.rego": BROKEN_TEST}))


@pytest.fixture()
def syntax_error_set(tmp_path: Path) -> PolicySet:
    return PolicySet.load(_policy_dir(tmp_path, {"syntax_test.rego": SYNTAX_ERROR_TEST}))


def _by_name(results: list[RegoTestResult], file: str) -> dict[str, RegoTestResult]:
    return {r.test.name: r for r in results if r.test.file == file}


def test_discover_reads_package_and_test_rules(broken_set: PolicySet) -> None:
    broken = [t for t in regotest.discover(broken_set) if t.file == "helpdesk/broken_test.rego"]
    assert [t.name for t in broken] == ["test_passes", "test_fails", "test_false", "test_undefined", "test_errors", "test_multi"]
    assert {t.package for t in broken} == {"helpdesk.broken_test"}
    assert broken[0].ref == "data.helpdesk.broken_test.test_passes"


def test_discover_finds_a_multi_body_rule_once(broken_set: PolicySet) -> None:
    names = [t.name for t in regotest.discover(broken_set)]
    assert names.count("test_multi") == 1


def test_discover_ignores_functions_and_raw_strings(broken_set: PolicySet) -> None:
    names = {t.name for t in regotest.discover(broken_set)}
    assert "test_helper" not in names
    assert "test_inside_a_raw_string" not in names


def test_discover_dedupes_a_rule_split_over_files(tmp_path: Path) -> None:
    part = "package helpdesk.split_test\n\nimport rego.v1\n\ntest_split if {{\n\t{cond}\n}}\n"
    ps = PolicySet.load(_policy_dir(tmp_path, {
        "split_a_test.rego": part.format(cond="false"),
        "split_b_test.rego": part.format(cond="true"),
    }))
    split = [t for t in regotest.discover(ps) if t.package == "helpdesk.split_test"]
    assert [(t.file, t.name) for t in split] == [("helpdesk/split_a_test.rego", "test_split")]


def test_discover_stock_files() -> None:
    files = {t.file for t in STOCK_TESTS}
    assert "helpdesk/recovery_test.rego" in files
    assert "helpdesk/fixtures_test.rego" not in files  # helpers only, no tests
    recovery = next(t for t in STOCK_TESTS if t.file == "helpdesk/recovery_test.rego")
    assert recovery.package == "helpdesk.recovery_test"
    assert recovery.ref == f"data.helpdesk.recovery_test.{recovery.name}"


@pytest.mark.parametrize("evaluator", [pytest.param(e, marks=_needs(e)) for e in regotest.EVALUATORS])
def test_failures_are_reported_as_failures(evaluator: str, broken_set: PolicySet) -> None:
    results = regotest.run(broken_set, evaluator)
    assert len(results) == len(regotest.discover(broken_set))
    assert {r.evaluator for r in results} == {evaluator}
    broken = _by_name(results, "helpdesk/broken_test.rego")

    assert broken["test_passes"].passed and broken["test_passes"].error is None
    assert broken["test_multi"].passed

    for name in ("test_fails", "test_false", "test_undefined", "test_errors"):
        assert not broken[name].passed, f"{name} must fail under {evaluator}"
        assert broken[name].error, f"{name} failed without saying why"
    assert "undefined" in (broken["test_fails"].error or "")
    assert "undefined" in (broken["test_undefined"].error or "")
    assert "false" in (broken["test_false"].error or "")
    assert "error" in (broken["test_errors"].error or "")

    # The stock tests beside them are unaffected.
    levels = _by_name(results, "helpdesk/levels_test.rego")
    assert levels and all(r.passed for r in levels.values())
    assert all(r.duration_s >= 0 for r in results)


@pytest.mark.parametrize("evaluator", [pytest.param(e, marks=_needs(e)) for e in regotest.EVALUATORS])
def test_compile_error_is_a_load_error_naming_file_and_line(evaluator: str, syntax_error_set: PolicySet) -> None:
    """A broken test module fails the run with the compiler's message as file:line, never as test results."""
    with pytest.raises(PolicyLoadError, match="do not compile") as caught:
        regotest.run(syntax_error_set, evaluator)
    message = str(caught.value)
    assert "helpdesk/syntax_test.rego:5" in message, message
    assert "(rego-errorseq" not in message and "errormsg" not in message  # not rego-cpp's raw dump


def test_compile_error_in_a_policy_is_refused_at_load(tmp_path: Path) -> None:
    directory = _policy_dir(tmp_path, {})
    levels = directory / "helpdesk" / "levels.rego"
    text = levels.read_text(encoding="utf-8")
    levels.write_text(text + "\nbroken if {\n", encoding="utf-8")
    with pytest.raises(PolicyLoadError, match=r"helpdesk/levels\.rego:%d: '\{' opened here is never closed"
                       % (text.count("\n") + 2)):
        PolicySet.load(directory)


@pytest.mark.parametrize("evaluator", [pytest.param(e, marks=_needs(e)) for e in regotest.EVALUATORS])
def test_run_only_the_selected_tests(evaluator: str, broken_set: PolicySet) -> None:
    chosen = [t for t in regotest.discover(broken_set) if t.name in ("test_passes", "test_false")]
    missing = RegoTest("helpdesk/broken_test.rego", "helpdesk.broken_test", "test_not_there")
    results = regotest.run(broken_set, evaluator, [*chosen, missing])
    assert [(r.test.name, r.passed) for r in results] == [("test_passes", True), ("test_false", False), ("test_not_there", False)]
    assert "undefined" in (results[2].error or "")


def test_no_tests_no_results(tmp_path: Path) -> None:
    directory = _policy_dir(tmp_path, {})
    (directory / "helpdesk" / "levels_test.rego").unlink()
    ps = PolicySet.load(directory)
    assert regotest.discover(ps) == []
    assert regotest.run(ps, "regopy") == []


def test_unknown_evaluator() -> None:
    with pytest.raises(ValueError, match="unknown Rego test evaluator"):
        regotest.run(STOCK, "opa-wasm")


@pytest.fixture()
def without_opa_bindings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # A None entry makes `import opa_bindings` raise ImportError.
    monkeypatch.setitem(sys.modules, "opa_bindings", None)
    yield


def test_opa_go_without_bindings_says_how_to_install(without_opa_bindings: None) -> None:
    with pytest.raises(EngineUnavailableError, match=re.escape(regotest.OPA_INSTALL_HINT)):
        regotest.run(STOCK, "opa-go", STOCK_TESTS[:1])


def test_regopy_without_regopy_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "regopy", None)
    with pytest.raises(EngineUnavailableError, match="regopy"):
        regotest.run(STOCK, "regopy", STOCK_TESTS[:1])


@_needs("regopy")
def test_regopy_query_fallback_reports_the_same(broken_set: PolicySet, monkeypatch: pytest.MonkeyPatch) -> None:
    """When the test bundle cannot be built, each test is queried on its own, with the same verdicts."""
    import regopy

    bundled = {r.test: (r.passed, r.error) for r in regotest.run(broken_set, "regopy")}

    def no_bundle(self: object, query: object, entrypoints: object = ()) -> None:
        raise regopy.RegoError("bundles disabled for this test")

    monkeypatch.setattr(regopy.Interpreter, "build", no_bundle)
    # In this process: a worker would not see the monkeypatch.
    queried = {r.test: (r.passed, r.error) for r in regotest.run(broken_set, "regopy", limits=None)}
    assert {t: p for t, (p, _) in queried.items()} == {t: p for t, (p, _) in bundled.items()}
    names = {t.name: e for t, (_, e) in queried.items()}
    assert "undefined" in (names["test_fails"] or "")
    assert "false" in (names["test_false"] or "")
    assert "error" in (names["test_errors"] or "")


@_needs("regopy")
def test_regopy_unknown_function_fails_with_its_name(tmp_path: Path) -> None:
    """rego-cpp accepts an unknown function at compile time and fails at evaluation; OPA rejects it at compile time."""
    unknown = "package helpdesk.unknown_test\n\nimport rego.v1\n\ntest_unknown if {\n\tno_such.fn(1) == 1\n}\n"
    results = regotest.run(PolicySet.load(_policy_dir(tmp_path, {"unknown_test.rego": unknown})), "regopy")
    result = next(r for r in results if r.test.name == "test_unknown")
    assert not result.passed
    assert "no_such.fn" in (result.error or "")


# ------------------------------------------------------ failures explained

EXPLAIN_TEST = """\
package helpdesk.explain_test

import rego.v1

import data.helpdesk.levels as lv

field := input.request.channel

test_second_expression_fails if {
\tx := 1
\tx + 1 == 3
\tx == 1
}

test_not_fails if {
\tx := lv.raise(0, 1)
\tnot x == "step_up"
}

test_comparison_under_with if {
\tfield == "phone" with input.request.channel as "chat"
}

test_every_fails if {
\tevery n in [1, 2, 3] {
\t\tn < 3
\t}
}

test_some_binds_several if {
\tsome n in [1, 2]
\tn > 5
}

test_two_bodies if {
\tlv.raise(1, 1) == "callback"
}

test_two_bodies if {
\tfalse
}
"""


@pytest.fixture()
def explain_set(tmp_path: Path) -> PolicySet:
    return PolicySet.load(_policy_dir(tmp_path / "explain", {"explain_test.rego": EXPLAIN_TEST}))


@pytest.mark.parametrize("evaluator", [pytest.param(e, marks=_needs(e)) for e in regotest.EVALUATORS])
def test_an_undefined_test_names_the_expression_that_failed(evaluator: str, explain_set: PolicySet,
                                                            broken_set: PolicySet) -> None:
    f = "helpdesk/explain_test.rego"
    results = _by_name(regotest.run(explain_set, evaluator, limits=None), f)
    assert not any(r.passed for r in results.values())
    errors = {name: r.error or "" for name, r in results.items()}
    assert errors["test_second_expression_fails"].splitlines()[1:] == [
        f"  failed at {f}:11: x + 1 == 3", "    left:  2", "    right: 3"]
    assert errors["test_not_fails"].splitlines()[1:] == [f"  failed at {f}:17: not x == \"step_up\""]
    assert errors["test_comparison_under_with"].splitlines()[1:] == [
        f"  failed at {f}:21: field == \"phone\" with input.request.channel as \"chat\"",
        "    left:  \"chat\"", "    right: \"phone\""]
    assert errors["test_every_fails"].splitlines()[1] == f"  failed at {f}:25: every n in [1, 2, 3] {{ n < 3 }}"
    assert errors["test_some_binds_several"].splitlines()[1:] == [
        f"  failed at {f}:32: n > 5", "    left:  one of 1, 2", "    right: 5"]
    assert errors["test_two_bodies"].splitlines()[1:] == [
        f"  failed at {f}:36: lv.raise(1, 1) == \"callback\"", "    left:  \"manager_approval\"",
        "    right: \"callback\"", f"  failed at {f}:40: false"]
    # The plain failure messages are unchanged by the explanation, and other failures get none.
    assert all(e.startswith("test is undefined") for e in errors.values())
    broken = _by_name(regotest.run(broken_set, evaluator, limits=None), "helpdesk/broken_test.rego")
    assert (broken["test_fails"].error or "").splitlines()[1:] == [
        "  failed at helpdesk/broken_test.rego:12: levels.raise(0, 1) == \"callback\"",
        "    left:  \"step_up\"", "    right: \"callback\""]
    assert (broken["test_undefined"].error or "").splitlines()[1:] == [
        "  failed at helpdesk/broken_test.rego:18: input.no_such_field == 1", "    left:  undefined",
        "    right: 1"]
    assert "\n" not in (broken["test_false"].error or "") and "\n" not in (broken["test_errors"].error or "")


def test_explanation_can_be_turned_off(explain_set: PolicySet) -> None:
    results = regotest.run(explain_set, "regopy", limits=None, explain=False)
    assert all(r.error == regotest._UNDEFINED for r in results if not r.passed)


# ------------------------------------------------------------- recursion

RECURSIVE_POLICY = """\
package helpdesk.loop

import rego.v1

import data.helpdesk.loop_other as other

p if q

q if {
\tother.r
}
"""

RECURSIVE_OTHER = """\
package helpdesk.loop_other

import rego.v1

r if data.helpdesk.loop.p
"""


def test_recursive_rules_are_refused_before_anything_runs(tmp_path: Path) -> None:
    directory = _policy_dir(tmp_path, {})
    (directory / "helpdesk" / "loop.rego").write_text(RECURSIVE_POLICY, encoding="utf-8")
    (directory / "helpdesk" / "loop_other.rego").write_text(RECURSIVE_OTHER, encoding="utf-8")
    start = time.perf_counter()
    with pytest.raises(PolicyLoadError) as caught:
        PolicySet.load(directory)
    assert time.perf_counter() - start < 2
    message = str(caught.value)
    assert "recursion: data.helpdesk.loop.p -> data.helpdesk.loop.q -> data.helpdesk.loop_other.r -> " \
           "data.helpdesk.loop.p" in message, message
    for where in ("helpdesk/loop.rego:7: p refers to q", "helpdesk/loop.rego:10: q refers to r",
                  "helpdesk/loop_other.rego:5: r refers to p"):
        assert where in message, message
    # The same modules handed to the runner or the engine directly (not through load) are refused too.
    unchecked = PolicySet(directory=directory, config=PolicySet.load().config)
    with pytest.raises(PolicyLoadError, match="recursion"):
        regotest.run(unchecked, "regopy")


def test_recursion_in_a_test_module_is_refused_by_the_runner(tmp_path: Path) -> None:
    looping = "package helpdesk.looping_test\n\nimport rego.v1\n\ntest_loop if helper(1)\n\nhelper(n) := helper(n + 1)\n"
    ps = PolicySet.load(_policy_dir(tmp_path, {"looping_test.rego": looping}))  # policies alone are fine
    with pytest.raises(PolicyLoadError, match=r"looping_test\.rego:7: recursion: data\.helpdesk\.looping_test\.helper"):
        regotest.run(ps, "regopy")


@_needs("opa-go")
def test_opa_also_refuses_the_recursive_fixture() -> None:
    from opa_bindings import OpaEngine, OpaError

    engine = OpaEngine()
    try:
        engine.add_policy("helpdesk/loop.rego", RECURSIVE_POLICY)
        engine.add_policy("helpdesk/loop_other.rego", RECURSIVE_OTHER)
        with pytest.raises(OpaError, match="rego_recursion_error"):
            engine.eval_query("x = data.helpdesk.loop.p")
    finally:
        engine.close()


# ---------------------------------------------------------------- bounds

RUNAWAY_TEST = """\
package helpdesk.runaway_test

import rego.v1

test_allocates if {
\tcount(numbers.range(1, 100000000)) > 0
}

test_spins if {
\tcount({[i, j] | some i in numbers.range(1, 100000); some j in numbers.range(1, 100000)}) > 0
}
"""


@pytest.fixture()
def runaway_set(tmp_path: Path) -> PolicySet:
    return PolicySet.load(_policy_dir(tmp_path, {"runaway_test.rego": RUNAWAY_TEST}))


def _runaway(ps: PolicySet, name: str) -> list[RegoTest]:
    return [t for t in regotest.discover(ps) if t.name == name]


@_needs("regopy")
def test_a_run_that_grows_past_its_memory_bound_is_stopped(runaway_set: PolicySet) -> None:
    start = time.perf_counter()
    with pytest.raises(ResourceLimitError, match="grew past 256 MiB") as caught:
        regotest.run(runaway_set, "regopy", _runaway(runaway_set, "test_allocates"),
                     limits=regotest.RunLimits(timeout_s=20, memory_mb=256))
    assert caught.value.limit == "memory"
    assert time.perf_counter() - start < 10


@_needs("regopy")
def test_a_run_that_outlasts_its_time_bound_is_stopped(runaway_set: PolicySet) -> None:
    start = time.perf_counter()
    with pytest.raises(ResourceLimitError, match="longer than 1 s") as caught:
        regotest.run(runaway_set, "regopy", _runaway(runaway_set, "test_spins"),
                     limits=regotest.RunLimits(timeout_s=1, memory_mb=None))
    assert caught.value.limit == "time"
    assert time.perf_counter() - start < 5


def test_runs_are_bounded_by_default() -> None:
    assert regotest.DEFAULT_LIMITS.timeout_s and regotest.DEFAULT_LIMITS.memory_mb
    assert inspect.signature(regotest.run).parameters["limits"].default is regotest.DEFAULT_LIMITS
