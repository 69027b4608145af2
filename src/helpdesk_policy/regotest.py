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

A compile error fails **every** test of the run with the compiler's message:
a test never passes, or silently disappears, because its policy is broken.
rego-cpp prints its readable compile errors to the C++ stdout, so file
descriptor 1 is captured around the compile (process-wide: anything another
thread writes to stdout meanwhile lands in the message too).

>>> from helpdesk_policy.policies import PolicySet
>>> from helpdesk_policy import regotest
>>> tests = regotest.discover(PolicySet.load())
>>> any(t.file == "helpdesk/recovery_test.rego" for t in tests)
True
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import EngineUnavailableError

if TYPE_CHECKING:
    from .policies import PolicySet

__all__ = ["RegoTest", "RegoTestResult", "discover", "run", "EVALUATORS"]

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
    """Evaluation time of this test (0.0 when compilation failed)."""


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
) -> list[RegoTestResult]:
    """Run Rego unit tests; every test gets a result, failures included.

    Args:
        policy_set: the policies, their test modules and config.
        evaluator: ``"regopy"`` (rego-cpp) or ``"opa-go"`` (OPA's Go evaluator).
        tests: the tests to run (default: everything :func:`discover` finds).

    Returns:
        One result per test, in the order given.

    Raises:
        ValueError: an unknown evaluator.
        EngineUnavailableError: the evaluator's package is not installed.
    """
    if evaluator not in EVALUATORS:
        raise ValueError(f"unknown Rego test evaluator {evaluator!r}; expected one of {', '.join(EVALUATORS)}")
    selected = discover(policy_set) if tests is None else list(tests)
    if not selected:
        return []
    if evaluator == "regopy":
        results = _run_regopy(policy_set, selected)
    else:
        results = _run_opa_go(policy_set, selected)
    failed = sum(not r.passed for r in results)
    log.info("%d Rego test(s) under %s: %d passed, %d failed", len(results), evaluator, len(results) - failed, failed)
    return results


# ------------------------------------------------------------------- helpers


def _modules(policy_set: PolicySet) -> dict[str, str]:
    return {**policy_set.modules, **policy_set.test_modules}


def _entrypoint(test: RegoTest) -> str:
    return f"{test.package.replace('.', '/')}/{test.name}"


def _all_failed(tests: Sequence[RegoTest], evaluator: str, message: str) -> list[RegoTestResult]:
    return [RegoTestResult(t, evaluator, False, message, 0.0) for t in tests]


def _verdict(value: Any, defined: bool) -> str | None:
    """None when a test's value means "passed", else why it failed."""
    if not defined:
        return "test is undefined (a condition in its body failed, or it reads something undefined)"
    if value is True:
        return None
    return f"test evaluated to {json.dumps(value, sort_keys=True)[:500]}, expected true"


@contextmanager
def _captured_stdout() -> Iterator[list[str]]:
    """Capture what native code writes to file descriptor 1 (appended to the yielded list on exit)."""
    sink: list[str] = []
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError, AttributeError):
        # No usable fd 1 (closed, or a replaced sys.stdout without one): run uncaptured.
        yield sink
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 1)
        try:
            yield sink
        finally:
            _flush_c_stdio()
            os.dup2(saved, 1)
            os.close(saved)
            tmp.seek(0)
            sink.append(tmp.read().decode("utf-8", errors="replace"))


def _flush_c_stdio() -> None:
    # C++ iostreams synced with stdio sit in libc's stdout buffer until flushed.
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):  # pragma: no cover - no libc (non-POSIX)
        pass


def _compile_error(exc: BaseException | None, printed: list[str]) -> str:
    text = "".join(printed).strip()
    detail = text or (str(exc) if exc is not None else "")
    return "compile error: " + (detail or "the policies do not compile (no message)")


# -------------------------------------------------------------------- regopy


def _run_regopy(policy_set: PolicySet, tests: list[RegoTest]) -> list[RegoTestResult]:
    try:
        import regopy
    except ImportError as exc:
        raise EngineUnavailableError(
            f"the regopy evaluator needs regopy: {REGOPY_INSTALL_HINT} ({exc})", engine="regopy"
        ) from exc

    start = time.perf_counter()
    interp = _regopy_interpreter(regopy)
    bundle = None
    with _captured_stdout() as printed:
        load_error = _regopy_load(regopy, interp, policy_set)
        if load_error is None:
            try:
                bundle = interp.build(None, [_entrypoint(t) for t in tests])
            except regopy.RegoError as exc:
                log.warning("regopy could not build the test bundle (%s); querying test by test", exc)
    if load_error is not None:
        return _all_failed(tests, "regopy", _compile_error(load_error, printed))
    if bundle is None or not bundle.ok():
        return _run_regopy_queries(regopy, policy_set, tests)
    log.debug("regopy compiled %d test(s) in %.2fs", len(tests), time.perf_counter() - start)

    runner = _regopy_interpreter(regopy)
    results = []
    for test in tests:
        t0 = time.perf_counter()
        try:
            error = _regopy_entrypoint(regopy, runner, bundle, _entrypoint(test))
        except Exception as exc:  # noqa: BLE001 - whatever happens, the test fails and says why
            error = f"evaluation failed: {type(exc).__name__}: {exc}"
        results.append(RegoTestResult(test, "regopy", error is None, error, time.perf_counter() - t0))
    return results


def _regopy_load(regopy: Any, interp: Any, policy_set: PolicySet) -> BaseException | None:
    """Add the modules and data to ``interp``; the load error, if any."""
    try:
        for name, source in _modules(policy_set).items():
            interp.add_module(name, source)
        interp.add_data(policy_set.data())
    except regopy.RegoError as exc:
        return exc
    return None


def _regopy_interpreter(regopy: Any) -> Any:
    interp = regopy.Interpreter()
    # Without this, a builtin error reads as undefined: a failing test would
    # still fail, but with a misleading message.
    interp.strict_built_in_errors = True
    return interp


def _regopy_entrypoint(regopy: Any, runner: Any, bundle: Any, entrypoint: str) -> str | None:
    """Evaluate one bundle entrypoint; None when it is ``true``, else why not."""
    rs = regopy.rego_shared
    return _regopy_output_verdict(rs, rs.rego_bundle_query_entrypoint(runner._impl, bundle._impl, entrypoint), None)


def _regopy_output_verdict(rs: Any, impl: Any, binding: str | None) -> str | None:
    """Read (and free) a regopy output: None when the test is ``true``, else why not.

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
            return f"evaluation error: {detail or text}"
    finally:
        rs.rego_free_output(impl)
    return _regopy_text_verdict(text, binding)


def _regopy_text_verdict(text: str, binding: str | None = None) -> str | None:
    stripped = text.strip()
    if stripped == "undefined":
        return _verdict(None, defined=False)
    if stripped.startswith("(error"):
        messages = _ERRORMSG_RE.findall(stripped + "\n")
        return "evaluation error: " + ("; ".join(m.strip() for m in messages) or stripped[:500])
    try:
        output = json.loads(stripped)
    except ValueError:
        return f"evaluation error: unreadable regopy output: {stripped[:500]}"
    results = output if isinstance(output, list) else [output]
    if len(results) > 1:
        return f"test has {len(results)} results, expected exactly one true"
    if binding is not None:
        bindings = results[0].get("bindings", {}) if results else {}
        return _verdict(bindings.get(binding), defined=binding in bindings)
    if not results or not results[0].get("expressions"):
        return _verdict(None, defined=False)
    return _verdict(results[0]["expressions"][0], defined=True)


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


def _run_regopy_queries(regopy: Any, policy_set: PolicySet, tests: list[RegoTest]) -> list[RegoTestResult]:
    """Fallback: one ``query()`` per test (each recompiles, so it is slow)."""
    interp = _regopy_interpreter(regopy)
    with _captured_stdout() as printed:
        load_error = _regopy_load(regopy, interp, policy_set)
    if load_error is not None:
        return _all_failed(tests, "regopy", _compile_error(load_error, printed))
    rs = regopy.rego_shared
    results: list[RegoTestResult] = []
    for i, test in enumerate(tests):
        t0 = time.perf_counter()
        with _captured_stdout() as printed:
            try:
                impl = rs.rego_query(interp._impl, f"x = {test.ref}")
            except regopy.RegoError as exc:
                query_error: regopy.RegoError | None = exc
            else:
                query_error = None
        if query_error is not None:
            # query() compiles everything: its error is the policies', and
            # every later query would take as long to fail the same way.
            return results + _all_failed(tests[i:], "regopy", _compile_error(query_error, printed))
        try:
            error = _regopy_output_verdict(rs, impl, "x")
        except Exception as exc:  # noqa: BLE001 - whatever happens, the test fails and says why
            error = f"evaluation failed: {type(exc).__name__}: {exc}"
        results.append(RegoTestResult(test, "regopy", error is None, error, time.perf_counter() - t0))
    return results


# -------------------------------------------------------------------- opa-go


def _run_opa_go(policy_set: PolicySet, tests: list[RegoTest]) -> list[RegoTestResult]:
    try:
        from opa_bindings import OpaEngine, OpaError
    except ImportError as exc:
        raise EngineUnavailableError(
            f"the opa-go evaluator needs OPA's Go bindings (a dev dependency): {OPA_INSTALL_HINT} ({exc})",
            engine="opa-go",
        ) from exc

    engine = OpaEngine()
    try:
        try:
            for name, source in _modules(policy_set).items():
                engine.add_policy(name, source)
            engine.add_data(policy_set.config.to_data(), path="helpdesk.config")
        except OpaError as exc:
            return _all_failed(tests, "opa-go", f"compile error: {exc}")
        # Each distinct query is compiled on its own (~50 ms), so evaluate a
        # whole test package as one document, and only query test by test
        # when that fails (an error in one test must not hide the others).
        by_package: dict[str, dict[str, Any]] = {}
        for package in dict.fromkeys(t.package for t in tests):
            t0 = time.perf_counter()
            try:
                rows = engine.eval_query(f"x = data.{package}")
            except OpaError as exc:
                if _is_compile_error(exc):
                    return _all_failed(tests, "opa-go", f"compile error: {exc}")
                log.debug("opa-go: data.%s fails as a whole (%s); querying its tests one by one", package, exc)
                continue
            doc = rows[0].get("x") if len(rows) == 1 else None
            if isinstance(doc, dict):
                count = sum(t.package == package for t in tests)
                by_package[package] = {"doc": doc, "each_s": (time.perf_counter() - t0) / max(count, 1)}

        results: list[RegoTestResult] = []
        for i, test in enumerate(tests):
            batch = by_package.get(test.package)
            if batch is not None:
                doc = batch["doc"]
                error = _verdict(doc.get(test.name), defined=test.name in doc)
                results.append(RegoTestResult(test, "opa-go", error is None, error, batch["each_s"]))
                continue
            t0 = time.perf_counter()
            try:
                rows = engine.eval_query(f"x = {test.ref}")
            except OpaError as exc:
                if _is_compile_error(exc):
                    # The modules do not compile: every query would fail the same way.
                    return results + _all_failed(tests[i:], "opa-go", f"compile error: {exc}")
                error = f"evaluation error: {exc}"
            else:
                error = _verdict(rows[0].get("x") if rows else None, defined=bool(rows) and "x" in rows[0])
                if len(rows) > 1:
                    error = f"test has {len(rows)} results, expected exactly one true"
            results.append(RegoTestResult(test, "opa-go", error is None, error, time.perf_counter() - t0))
        return results
    finally:
        engine.close()


def _is_compile_error(exc: Any) -> bool:
    return getattr(exc, "code", None) in ("prepare_error", "parse_error", "compile_error")
