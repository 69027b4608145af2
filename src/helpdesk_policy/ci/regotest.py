"""A small runner for Rego unit tests (``test_*`` rules in ``*_test.rego`` files).

regopy (rego-cpp) has no test runner and no AST API, so tests are found by
reading the source: the ``package`` line of each test module, and every rule
whose name starts with ``test_`` at column 0 (``test_x if {``, ``test_x := …``).
A rule with several bodies is one test. Each test is then evaluated as a
document, and **passes only when it evaluates to** ``true``: ``false``,
*undefined* and errors all fail, each with a message saying which.

Two evaluators:

* ``"regopy"`` — rego-cpp, the embedded engine. Policies, tests and config
  are compiled once into one bundle with every test as an entrypoint (a
  ``query()`` per test would recompile everything each time). Strict builtin
  errors are on, so a builtin error fails its test instead of reading as
  undefined.
* ``"opa-go"`` — OPA's own Go evaluator through ``opa_bindings``
  (``opa-golib-python-bindings``), a dev dependency imported only when asked
  for. Running the same tests under both proves the policies mean the same
  thing to rego-cpp and to real OPA.

Before anything is compiled, the policies and tests are checked
(:meth:`PolicySet.check`): recursion between rules, which rego-cpp would
evaluate without end, and broken sources raise
:class:`~helpdesk_policy.errors.PolicyLoadError` naming file and line, as
does a compile error (rego-cpp's dump turned into ``file:line:col: message``).
A broken policy is not a failed test: no test result is made up for it.

**Bounded.** By default the tests run in a worker process that is stopped
when it runs longer or grows larger (resident memory) than
:class:`RunLimits` allow, raising :class:`~helpdesk_policy.errors.ResourceLimitError`:
a runaway evaluation stops the run, not the machine.

**Failures explained.** A test that is undefined is re-evaluated expression
by expression (each prefix of its body as a rule of its own, in its own
package, with its imports): the message names the first expression that
fails, with its line, and for a comparison the values of both sides, much
as ``opa test --explain fails`` does::

    test is undefined (a condition in its body failed, or it reads something undefined)
      failed at helpdesk/broken_test.rego:12: levels.raise(0, 1) == "callback"
        left:  "step_up"
        right: "callback"

>>> from helpdesk_policy.policyset import PolicySet
>>> from helpdesk_policy.ci import regotest
>>> tests = regotest.discover(PolicySet.load())
>>> any(t.file == "helpdesk/recovery_test.rego" for t in tests)
True
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import EngineError, EngineUnavailableError, HelpdeskPolicyError, PolicyLoadError, ResourceLimitError
from ..regocheck import (
    RuleBody,
    captured_stdout,
    compile_error_message,
    describe_regocpp_error,
    module_imports,
    required_files,
    rule_bodies,
)

if TYPE_CHECKING:
    from ..policyset import PolicySet

__all__ = ["RegoTest", "RegoTestResult", "RunLimits", "DEFAULT_LIMITS", "discover", "run", "EVALUATORS"]

log = logging.getLogger(__name__)

#: The evaluators :func:`run` accepts.
EVALUATORS = ("regopy", "opa-go")

OPA_INSTALL_HINT = "pip install --ignore-requires-python --no-deps opa-golib-python-bindings==0.4.4"
REGOPY_INSTALL_HINT = "pip install 'helpdesk-policy[rego]'"

_PACKAGE_RE = re.compile(r"^package[ \t]+([^\s#]+)", re.MULTILINE)
# A test rule head at column 0; a `(` after the name would make it a function,
# which is not a test.
_TEST_RE = re.compile(r"^(test_[A-Za-z0-9_]*)(?=[ \t]*(?:if\b|:=|=|\{|contains\b|\[|#|$))", re.MULTILINE)
# Raw strings may span lines; their content must not be read as rule heads.
_RAW_STRING_RE = re.compile(r"`[^`]*`")
_ERRORMSG_RE = re.compile(r"\(errormsg \d+:([^\n]*?)\)?\n")

_UNDEFINED = "test is undefined (a condition in its body failed, or it reads something undefined)"


@dataclass(frozen=True)
class RunLimits:
    """Bounds on one Rego test run, enforced on the worker process that runs it.

    ``None`` leaves a bound off. Memory is the worker's resident set size,
    polled every ``poll_s`` seconds (Linux ``/proc``; elsewhere only the time
    bound applies): rego-cpp reserves hundreds of GB of address space up
    front, so an address-space limit (``RLIMIT_AS``) cannot bound it.
    """

    timeout_s: float | None = 600.0
    memory_mb: int | None = 4096
    poll_s: float = 0.05


#: The stock policies' 236 tests take ~20 s and ~1.3 GB resident under regopy.
DEFAULT_LIMITS = RunLimits()


@dataclass(frozen=True)
class RegoTest:
    """One Rego unit test: a ``test_*`` rule of a ``*_test.rego`` module."""

    file: str
    """Path of the test module, relative to the policy directory."""
    package: str
    """The module's package, e.g. ``helpdesk.recovery_test``."""
    name: str
    """The rule name, e.g. ``test_phone_reset_privileged_needs_callback``."""

    @property
    def ref(self) -> str:
        """The test's document, e.g. ``data.helpdesk.recovery_test.test_x``."""
        return f"data.{self.package}.{self.name}"


@dataclass(frozen=True)
class RegoTestResult:
    """The outcome of one test under one evaluator."""

    test: RegoTest
    evaluator: str
    """``"regopy"`` or ``"opa-go"``."""
    passed: bool
    error: str | None
    """None when the test evaluated to true; otherwise why it failed."""
    duration_s: float
    """Evaluation time of this test."""


def discover(policy_set: PolicySet) -> list[RegoTest]:
    """Find the tests in ``policy_set.test_modules``, in file order.

    A rule defined by several bodies (or in several files of one package)
    is one test; a module without a ``package`` line is skipped with a warning
    (the compiler reports it when the tests run).
    """
    tests: list[RegoTest] = []
    seen: set[tuple[str, str]] = set()
    for file, source in sorted(policy_set.test_modules.items()):
        text = _RAW_STRING_RE.sub(lambda m: "\n" * m.group().count("\n"), source)
        match = _PACKAGE_RE.search(text)
        if match is None:
            log.warning("%s: no package line, no tests discovered in it", file)
            continue
        package = match.group(1).removeprefix("data.")
        for name in _TEST_RE.findall(text):
            if (package, name) not in seen:
                seen.add((package, name))
                tests.append(RegoTest(file=file, package=package, name=name))
    return tests


def run(
    policy_set: PolicySet,
    evaluator: str = "regopy",
    tests: list[RegoTest] | None = None,
    *,
    limits: RunLimits | None = DEFAULT_LIMITS,
    explain: bool = True,
) -> list[RegoTestResult]:
    """Run Rego unit tests; every test gets a result, failures included.

    Args:
        policy_set: the policies, their test modules and config.
        evaluator: ``"regopy"`` (rego-cpp) or ``"opa-go"`` (OPA's Go evaluator).
        tests: the tests to run (default: everything :func:`discover` finds).
        limits: run in a worker process stopped at these bounds; ``None``
            runs in this process, unbounded.
        explain: say which expression of an undefined test failed.

    Returns:
        One result per test, in the order given.

    Raises:
        ValueError: an unknown evaluator.
        PolicyLoadError: the policies or tests are broken, recursive, or do
            not compile (every file and line in the message).
        ResourceLimitError: the run exceeded ``limits``.
        EngineUnavailableError: the evaluator's package is not installed.
    """
    if evaluator not in EVALUATORS:
        raise ValueError(f"unknown Rego test evaluator {evaluator!r}; expected one of {', '.join(EVALUATORS)}")
    selected = discover(policy_set) if tests is None else list(tests)
    if not selected:
        return []
    policy_set.check(tests=True)
    _import_evaluator(evaluator)
    src = _Sources.of(policy_set)
    if limits is None:
        results = _run_here(src, evaluator, selected, explain)
    else:
        results = _run_isolated(src, evaluator, selected, explain, limits)
    failed = sum(not r.passed for r in results)
    log.info("%d Rego test(s) under %s: %d passed, %d failed", len(results), evaluator, len(results) - failed, failed)
    return results


def _import_evaluator(evaluator: str) -> Any:
    if evaluator == "regopy":
        try:
            from ..engines.regopy_import import import_regopy

            regopy = import_regopy()
        except ImportError as exc:
            raise EngineUnavailableError(
                f"the regopy evaluator needs regopy: {REGOPY_INSTALL_HINT} ({exc})", engine="regopy"
            ) from exc
        return regopy
    try:
        import opa_bindings
    except ImportError as exc:
        raise EngineUnavailableError(
            f"the opa-go evaluator needs OPA's Go bindings (a dev dependency): {OPA_INSTALL_HINT} ({exc})",
            engine="opa-go",
        ) from exc
    return opa_bindings


def _run_here(src: _Sources, evaluator: str, tests: list[RegoTest], explain: bool) -> list[RegoTestResult]:
    results = _run_regopy(src, tests) if evaluator == "regopy" else _run_opa_go(src, tests)
    if explain:
        results = _explain(src, evaluator, results)
    return results


# ------------------------------------------------------------------ isolation

#: Exceptions a worker may report, re-raised as themselves in the caller.
_WORKER_ERRORS: dict[str, type[HelpdeskPolicyError]] = {
    "PolicyLoadError": PolicyLoadError,
    "EngineUnavailableError": EngineUnavailableError,
}


#: The worker's program: this module's _worker_main, imported by name so that
#: what it pickles back names the classes the caller knows.
_WORKER = "import sys; from helpdesk_policy.ci.regotest import _worker_main; sys.exit(_worker_main(sys.argv[1]))"


def _run_isolated(src: _Sources, evaluator: str, tests: list[RegoTest], explain: bool,
                  limits: RunLimits) -> list[RegoTestResult]:
    """Run the tests in a worker process (a fresh interpreter), within ``limits``.

    The worker gets the sources and tests pickled on stdin and writes its
    outcome (pickled) to a file; its stdout (rego-cpp's ``print()`` output)
    is discarded, its stderr kept for the message if it dies.
    """
    payload = pickle.dumps({"src": src, "evaluator": evaluator, "tests": tests, "explain": explain})
    package_root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    # The worker imports this very copy of the package, however the caller found it.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    with tempfile.TemporaryDirectory(prefix="helpdesk-policy-regotest-") as tmp:
        outcome_path = Path(tmp) / "outcome.pickle"
        stderr_path = Path(tmp) / "stderr.txt"
        with stderr_path.open("wb") as stderr:
            try:
                proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                    [sys.executable, "-c", _WORKER, str(outcome_path)],
                    stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=stderr, env=env,
                )
            except OSError as exc:
                raise EngineError(f"cannot start the Rego test worker ({sys.executable}): {exc}",
                                  engine=evaluator) from None
            try:
                _feed(proc, payload)
                _watch(proc, limits, evaluator)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        if not outcome_path.is_file():
            tail = stderr_path.read_bytes()[-2000:].decode("utf-8", "replace").strip()
            raise EngineError(
                f"the Rego test worker stopped (exit status {proc.returncode}) without a result"
                + (f": {tail}" if tail else ""),
                engine=evaluator,
            )
        outcome = pickle.loads(outcome_path.read_bytes())  # noqa: S301 - written by our own worker
    if outcome["ok"]:
        return list(outcome["results"])
    error = _WORKER_ERRORS.get(outcome["type"])
    if error is EngineUnavailableError:
        raise EngineUnavailableError(outcome["message"], engine=evaluator)
    if error is not None:
        raise error(outcome["message"])
    raise EngineError(f"the Rego test run failed: {outcome['type']}: {outcome['message']}", engine=evaluator)


def _feed(proc: subprocess.Popen[bytes], payload: bytes) -> None:
    assert proc.stdin is not None
    try:
        proc.stdin.write(payload)
        proc.stdin.close()
    except BrokenPipeError:
        pass  # the worker died at once; _watch and the missing outcome say so


def _watch(proc: subprocess.Popen[bytes], limits: RunLimits, evaluator: str) -> None:
    """Wait for the worker; stop it (and raise) at the time or memory bound."""
    deadline = None if limits.timeout_s is None else time.monotonic() + limits.timeout_s
    page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
    statm = Path(f"/proc/{proc.pid}/statm")
    while True:
        try:
            proc.wait(timeout=limits.poll_s)
            return
        except subprocess.TimeoutExpired:
            pass
        if limits.memory_mb is not None:
            try:
                rss = int(statm.read_text().split()[1]) * page
            except (OSError, IndexError, ValueError):
                rss = 0  # no /proc (or the worker just exited): only the time bound holds
            if rss > limits.memory_mb * 1024 * 1024:
                proc.kill()
                proc.wait()
                raise ResourceLimitError(
                    f"the Rego test run ({evaluator}) grew past {limits.memory_mb} MiB of memory and was stopped "
                    "(a runaway evaluation? look for huge comprehensions or numbers.range)",
                    limit="memory",
                )
        if deadline is not None and time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise ResourceLimitError(
                f"the Rego test run ({evaluator}) ran longer than {limits.timeout_s:g} s and was stopped",
                limit="time",
            )


def _worker_main(outcome_path: str) -> int:
    """The worker: read the job from stdin, run it here, write the outcome."""
    job = pickle.loads(sys.stdin.buffer.read())  # noqa: S301 - sent by our own parent process
    try:
        results = _run_here(job["src"], job["evaluator"], job["tests"], job["explain"])
        outcome: dict[str, Any] = {"ok": True, "results": results}
    except Exception as exc:  # noqa: BLE001 - every failure goes back to the caller, by name
        outcome = {"ok": False, "type": type(exc).__name__, "message": str(exc)}
    tmp = outcome_path + ".part"
    with open(tmp, "wb") as fh:
        pickle.dump(outcome, fh)
    os.replace(tmp, outcome_path)
    return 0


# ------------------------------------------------------------------- helpers


@dataclass(frozen=True)
class _Sources:
    """What a run compiles, as plain data (a worker unpickles it without importing the config model)."""

    directory: str
    #: Policy and test modules: file -> source.
    modules: dict[str, str]
    #: The base document (``{"helpdesk": {"config": …}}``).
    data: dict[str, Any]

    @classmethod
    def of(cls, policy_set: PolicySet) -> _Sources:
        return cls(str(policy_set.directory), {**policy_set.modules, **policy_set.test_modules}, policy_set.data())


def _modules(src: _Sources) -> dict[str, str]:
    return dict(src.modules)


def _entrypoint(test: RegoTest) -> str:
    return f"{test.package.replace('.', '/')}/{test.name}"


def _verdict(value: Any, defined: bool) -> str | None:
    """None when a test's value means "passed", else why it failed."""
    if not defined:
        return _UNDEFINED
    if value is True:
        return None
    return f"test evaluated to {json.dumps(value, sort_keys=True)[:500]}, expected true"


@dataclass(frozen=True)
class _Outcome:
    """One evaluated document: an error, or whether it is defined and its value."""

    error: str | None = None
    defined: bool = False
    value: Any = None

    def verdict(self) -> str | None:
        return self.error if self.error is not None else _verdict(self.value, self.defined)


# -------------------------------------------------------------------- regopy


def _run_regopy(src: _Sources, tests: list[RegoTest]) -> list[RegoTestResult]:
    regopy = _import_evaluator("regopy")
    start = time.perf_counter()
    modules = _modules(src)
    bundle = _regopy_build(regopy, src, modules, [_entrypoint(t) for t in tests], "Rego policies and tests")
    if bundle is None:
        return _run_regopy_queries(regopy, src, tests)
    log.debug("regopy compiled %d test(s) in %.2fs", len(tests), time.perf_counter() - start)

    runner = _regopy_interpreter(regopy)
    results = []
    for test in tests:
        t0 = time.perf_counter()
        try:
            error = _regopy_entrypoint(regopy, runner, bundle, _entrypoint(test)).verdict()
        except Exception as exc:  # noqa: BLE001 - whatever happens, the test fails and says why
            error = f"evaluation failed: {type(exc).__name__}: {exc}"
        results.append(RegoTestResult(test, "regopy", error is None, error, time.perf_counter() - t0))
    return results


def _regopy_build(regopy: Any, src: _Sources, modules: dict[str, str], entrypoints: list[str], what: str) -> Any:
    """A bundle of ``modules`` with ``entrypoints``; None when rego-cpp cannot build one for another reason.

    Raises:
        PolicyLoadError: the modules do not compile (rego-cpp's located errors).
    """
    interp = _regopy_loaded(regopy, src, modules, what)
    error: BaseException | None = None
    bundle = None
    with captured_stdout() as printed:
        try:
            bundle = interp.build(None, entrypoints)
        except regopy.RegoError as exc:
            if not describe_regocpp_error(str(exc), modules):
                log.warning("regopy could not build the test bundle (%s); querying test by test", exc)
                return None
            error = exc
    if error is not None or bundle is None or not bundle.ok():
        raise PolicyLoadError(compile_error_message(f"{what} in {src.directory}", error, printed, modules))
    return bundle


def _regopy_loaded(regopy: Any, src: _Sources, modules: dict[str, str], what: str) -> Any:
    """An interpreter holding ``modules`` and the data; PolicyLoadError when rego-cpp refuses a module."""
    interp = _regopy_interpreter(regopy)
    with captured_stdout() as printed:
        try:
            for name, source in modules.items():
                interp.add_module(name, source)
            interp.add_data(src.data)
        except regopy.RegoError as exc:
            error: BaseException | None = exc
        else:
            error = None
    if error is not None:
        raise PolicyLoadError(compile_error_message(f"{what} in {src.directory}", error, printed, modules))
    return interp


def _regopy_interpreter(regopy: Any) -> Any:
    interp = regopy.Interpreter()
    # Without this, a builtin error reads as undefined: a failing test would
    # still fail, but with a misleading message.
    interp.strict_built_in_errors = True
    return interp


def _regopy_entrypoint(regopy: Any, runner: Any, bundle: Any, entrypoint: str) -> _Outcome:
    """Evaluate one bundle entrypoint."""
    rs = regopy.rego_shared
    return _regopy_output(rs, rs.rego_bundle_query_entrypoint(runner._impl, bundle._impl, entrypoint), None)


def _regopy_output(rs: Any, impl: Any, binding: str | None) -> _Outcome:
    """Read (and free) a regopy output.

    The regopy ``Output`` wrapper loses error details (and raises a bare
    JSONDecodeError on some of them), so the output is read through the C
    API functions regopy itself wraps. ``binding`` names the query variable
    holding the value; None reads the first expression (a bundle entrypoint).
    """
    try:
        ok = rs.rego_output_ok(impl)
        text = rs.rego_output_string(impl)
        if not ok:
            detail = _regopy_error_detail(rs, rs.rego_output_node(impl))
            return _Outcome(error=f"evaluation error: {detail or text}")
    finally:
        rs.rego_free_output(impl)
    return _regopy_text(text, binding)


def _regopy_text(text: str, binding: str | None = None) -> _Outcome:
    stripped = text.strip()
    if stripped == "undefined":
        return _Outcome(defined=False)
    if stripped.startswith("(error"):
        messages = _ERRORMSG_RE.findall(stripped + "\n")
        return _Outcome(error="evaluation error: " + ("; ".join(m.strip() for m in messages) or stripped[:500]))
    try:
        output = json.loads(stripped)
    except ValueError:
        return _Outcome(error=f"evaluation error: unreadable regopy output: {stripped[:500]}")
    results = output if isinstance(output, list) else [output]
    if len(results) > 1:
        return _Outcome(error=f"test has {len(results)} results, expected exactly one true")
    if binding is not None:
        bindings = results[0].get("bindings", {}) if results else {}
        return _Outcome(defined=binding in bindings, value=bindings.get(binding))
    if not results or not results[0].get("expressions"):
        return _Outcome(defined=False)
    return _Outcome(defined=True, value=results[0]["expressions"][0])


def _regopy_error_detail(rs: Any, node: Any) -> str:
    """``code: message`` pairs from an error output's node tree."""
    from regopy import NodeKind

    parts: list[str] = []

    def walk(n: Any, depth: int) -> None:
        if depth > 8:
            return
        kind = rs.rego_node_type(n)
        if kind == NodeKind.Error:
            msg = code = ""
            for i in range(rs.rego_node_size(n)):
                child = rs.rego_node_get(n, i)
                child_kind = rs.rego_node_type(child)
                if child_kind == NodeKind.ErrorMessage:
                    msg = rs.rego_node_value(child)
                elif child_kind == NodeKind.ErrorCode:
                    code = rs.rego_node_value(child)
            parts.append(f"{code}: {msg}" if code else msg)
            return
        for i in range(rs.rego_node_size(n)):
            walk(rs.rego_node_get(n, i), depth + 1)

    try:
        walk(node, 0)
    except Exception:  # noqa: BLE001 - the detail is a nicety; the failure stands without it
        log.debug("could not read regopy error node", exc_info=True)
    return "; ".join(dict.fromkeys(p for p in parts if p))


def _run_regopy_queries(regopy: Any, src: _Sources, tests: list[RegoTest]) -> list[RegoTestResult]:
    """Fallback: one ``query()`` per test (each recompiles, so it is slow)."""
    modules = _modules(src)
    interp = _regopy_loaded(regopy, src, modules, "Rego policies and tests")
    rs = regopy.rego_shared
    results: list[RegoTestResult] = []
    for test in tests:
        t0 = time.perf_counter()
        with captured_stdout() as printed:
            try:
                impl = rs.rego_query(interp._impl, f"x = {test.ref}")
            except regopy.RegoError as exc:
                query_error: regopy.RegoError | None = exc
            else:
                query_error = None
        if query_error is not None:
            # query() compiles everything: its error is the policies'.
            raise PolicyLoadError(compile_error_message(
                f"Rego policies and tests in {src.directory}", query_error, printed, modules))
        try:
            error = _regopy_output(rs, impl, "x").verdict()
        except Exception as exc:  # noqa: BLE001 - whatever happens, the test fails and says why
            error = f"evaluation failed: {type(exc).__name__}: {exc}"
        results.append(RegoTestResult(test, "regopy", error is None, error, time.perf_counter() - t0))
    return results


# -------------------------------------------------------------------- opa-go


def _opa_engine(src: _Sources, modules: dict[str, str], what: str) -> Any:
    """An ``OpaEngine`` holding ``modules`` and the config; PolicyLoadError when OPA refuses them."""
    from opa_bindings import OpaEngine, OpaError

    engine = OpaEngine()
    try:
        for name, source in modules.items():
            engine.add_policy(name, source)
        for name, doc in src.data["helpdesk"].items():
            engine.add_data(doc, path=f"helpdesk.{name}")
    except OpaError as exc:
        engine.close()
        raise PolicyLoadError(f"{what} in {src.directory} do not compile (OPA): {exc}") from None
    return engine


def _run_opa_go(src: _Sources, tests: list[RegoTest]) -> list[RegoTestResult]:
    from opa_bindings import OpaError

    what = "Rego policies and tests"
    engine = _opa_engine(src, _modules(src), what)
    try:
        # Each distinct query is compiled on its own (~50 ms), so evaluate a
        # whole test package as one document, and only query test by test
        # when that fails (an error in one test must not hide the others).
        by_package: dict[str, dict[str, Any]] = {}
        for package in dict.fromkeys(t.package for t in tests):
            t0 = time.perf_counter()
            try:
                rows = engine.eval_query(f"x = data.{package}")
            except OpaError as exc:
                _raise_if_compile_error(exc, src, what)
                log.debug("opa-go: data.%s fails as a whole (%s); querying its tests one by one", package, exc)
                continue
            doc = rows[0].get("x") if len(rows) == 1 else None
            if isinstance(doc, dict):
                count = sum(t.package == package for t in tests)
                by_package[package] = {"doc": doc, "each_s": (time.perf_counter() - t0) / max(count, 1)}

        results: list[RegoTestResult] = []
        for test in tests:
            batch = by_package.get(test.package)
            if batch is not None:
                doc = batch["doc"]
                error = _verdict(doc.get(test.name), defined=test.name in doc)
                results.append(RegoTestResult(test, "opa-go", error is None, error, batch["each_s"]))
                continue
            t0 = time.perf_counter()
            outcome = _opa_query(engine, test.ref, src, what)
            error = outcome.verdict()
            results.append(RegoTestResult(test, "opa-go", error is None, error, time.perf_counter() - t0))
        return results
    finally:
        engine.close()


def _opa_query(engine: Any, ref: str, src: _Sources, what: str) -> _Outcome:
    from opa_bindings import OpaError

    try:
        rows = engine.eval_query(f"x = {ref}")
    except OpaError as exc:
        _raise_if_compile_error(exc, src, what)
        return _Outcome(error=f"evaluation error: {exc}")
    if len(rows) > 1:
        return _Outcome(error=f"test has {len(rows)} results, expected exactly one true")
    return _Outcome(defined=bool(rows) and "x" in rows[0], value=rows[0].get("x") if rows else None)


def _raise_if_compile_error(exc: Any, src: _Sources, what: str) -> None:
    if getattr(exc, "code", None) in ("prepare_error", "parse_error", "compile_error"):
        raise PolicyLoadError(f"{what} in {src.directory} do not compile (OPA): {exc}") from None


# ---------------------------------------------------------------- explaining

#: The rule names an explanation adds to a test's package (a partial set each).
_EXPLAIN_RULE = "helpdesk_policy_explain"
#: At most this many failing tests are explained per run, each body at most
#: this many expressions long, and the explanation rules copy at most this
#: many ``with`` sites (rego-cpp compiles each copy, at up to ~0.5 s each).
_MAX_EXPLAINED = 25
_MAX_EXPRESSIONS = 40
_MAX_WITH_COPIES = 24
_MAX_SHOWN = 300


@dataclass(frozen=True)
class _Probe:
    """One body of one failing test, and the key its prefixes are recorded under."""

    test: RegoTest
    body: RuleBody
    key: str


def _explain(src: _Sources, evaluator: str, results: list[RegoTestResult]) -> list[RegoTestResult]:
    """Add, to each undefined test's message, which expression of its body failed."""
    failing = [r for r in results if not r.passed and r.error == _UNDEFINED][:_MAX_EXPLAINED]
    if not failing:
        return results
    modules = _modules(src)
    probes, extra = _explanation_modules(modules, [r.test for r in failing])
    if not probes:
        return results
    try:
        defined, sides = _evaluate_explanation(src, evaluator, {**modules, **extra})
    except Exception as exc:  # noqa: BLE001 - an explanation is a nicety: the failure stands without it
        log.info("could not explain the failing Rego tests: %s", exc)
        return results
    notes: dict[RegoTest, list[str]] = {}
    for probe in probes:
        note = _describe(probe, defined, sides)
        if note:
            notes.setdefault(probe.test, []).append(note)
    return [replace(r, error=f"{r.error}\n" + "\n".join(notes[r.test])) if r.test in notes else r for r in results]


def _explanation_modules(modules: dict[str, str], tests: Sequence[RegoTest]) -> tuple[list[_Probe], dict[str, str]]:
    """One extra module per failing test's file: same package and imports, one rule per body prefix.

    For body ``e1 … en`` of a test: ``EXPLAIN contains "<key>_<k>" if { e1 … ek }``
    for each k, and for each comparison ``ek`` = ``l OP r``:
    ``EXPLAIN_sides contains ["<key>_<k>", "left", v] if { e1 … ek-1; v := l <with …> }``
    (and ``right``). The first undefined prefix is the failing expression.
    """
    probes: list[_Probe] = []
    extra: dict[str, str] = {}
    budget = _MAX_WITH_COPIES
    by_file: dict[str, list[RegoTest]] = {}
    for t in tests:
        by_file.setdefault(t.file, []).append(t)
    for n, (file, file_tests) in enumerate(sorted(by_file.items())):
        source = modules.get(file)
        if source is None:
            continue
        rule = f"{_EXPLAIN_RULE}_{n}"
        lines = [f"package {file_tests[0].package}", "", *module_imports(file, source), ""]
        for t_index, test in enumerate(file_tests):
            for b_index, body in enumerate(rule_bodies(file, source, test.name)):
                exprs = body.expressions
                copies = sum(e.with_sites * (3 * (len(exprs) - i)) for i, e in enumerate(exprs))
                if not exprs or len(exprs) > _MAX_EXPRESSIONS or copies > budget:
                    continue
                budget -= copies
                key = f"{t_index}_{b_index}"
                probes.append(_Probe(test, body, f"{n}/{key}"))
                for k in range(1, len(exprs) + 1):
                    lines += [f'{rule} contains "{key}_{k}" if {{', *(e.text for e in exprs[:k]), "}", ""]
                    comparison = exprs[k - 1].comparison
                    if comparison is None:
                        continue
                    for side, text in (("left", comparison[0]), ("right", comparison[2])):
                        lines += [f'{rule}_sides contains ["{key}_{k}", "{side}", helpdesk_policy_value] if {{',
                                  *(e.text for e in exprs[: k - 1]),
                                  f"helpdesk_policy_value := ({text}) {exprs[k - 1].modifiers}".rstrip(), "}", ""]
        if len(lines) > 4:
            extra[f"{file}.{_EXPLAIN_RULE}.rego"] = "\n".join(lines)
    return probes, extra


def _evaluate_explanation(src: _Sources, evaluator: str,
                          modules: dict[str, str]) -> tuple[set[str], dict[str, dict[str, list[Any]]]]:
    """Evaluate every explanation rule: the defined prefix keys, and the values of comparison sides."""
    roots = {f for f in modules if f.endswith(f".{_EXPLAIN_RULE}.rego")}
    # Compile only what the explanations need: rego-cpp compiles all it is given.
    needed = {f: modules[f] for f in sorted(required_files(modules, roots))}
    refs: dict[str, str] = {}
    for f in sorted(roots):
        n = re.search(rf"^{_EXPLAIN_RULE}_(\d+) contains", modules[f], re.MULTILINE)
        package = re.match(r"package (\S+)", modules[f])
        if n and package:
            for suffix in ("", "_sides"):
                refs[f"{n.group(1)}{suffix}"] = f"data.{package.group(1)}.{_EXPLAIN_RULE}_{n.group(1)}{suffix}"
    values = _evaluate_refs(src, evaluator, needed, refs)
    defined: set[str] = set()
    sides: dict[str, dict[str, list[Any]]] = {}
    for name, outcome in values.items():
        if outcome.error is not None or not outcome.defined or not isinstance(outcome.value, list):
            continue
        n = name.removesuffix("_sides")
        for item in outcome.value:
            if name.endswith("_sides") and isinstance(item, list) and len(item) == 3:
                sides.setdefault(f"{n}/{item[0]}", {}).setdefault(str(item[1]), []).append(item[2])
            elif isinstance(item, str):
                defined.add(f"{n}/{item}")
    return defined, sides


def _evaluate_refs(src: _Sources, evaluator: str, modules: dict[str, str],
                   refs: dict[str, str]) -> dict[str, _Outcome]:
    what = "Rego test explanations"
    if evaluator == "regopy":
        regopy = _import_evaluator("regopy")
        entrypoints = {name: ref.removeprefix("data.").replace(".", "/") for name, ref in refs.items()}
        bundle = _regopy_build(regopy, src, modules, list(entrypoints.values()), what)
        if bundle is None:
            return {}
        runner = _regopy_interpreter(regopy)
        return {name: _regopy_entrypoint(regopy, runner, bundle, ep) for name, ep in entrypoints.items()}
    engine = _opa_engine(src, modules, what)
    try:
        return {name: _opa_query(engine, ref, src, what) for name, ref in refs.items()}
    finally:
        engine.close()


def _describe(probe: _Probe, defined: set[str], sides: dict[str, dict[str, list[Any]]]) -> str:
    """``failed at file:line: expression`` (and both sides of a comparison), or "" when unknown."""
    exprs = probe.body.expressions
    failed = next((k for k in range(1, len(exprs) + 1) if f"{probe.key}_{k}" not in defined), None)
    if failed is None:
        return ""
    expr = exprs[failed - 1]
    text = _shown(" ".join(line.strip() for line in expr.text.splitlines()))
    out = [f"  failed at {probe.body.file}:{expr.line}: {text}"]
    if expr.comparison is not None:
        values = sides.get(f"{probe.key}_{failed}", {})
        for side in ("left", "right"):
            out.append(f"    {side + ':':6} {_values(values.get(side))}")
    return "\n".join(out)


def _values(values: list[Any] | None) -> str:
    if not values:
        return "undefined"
    shown = [_shown(json.dumps(v, sort_keys=True)) for v in values]
    return shown[0] if len(shown) == 1 else f"one of {', '.join(shown[:5])}" + (" …" if len(shown) > 5 else "")


def _shown(text: str) -> str:
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 1] + "…"

