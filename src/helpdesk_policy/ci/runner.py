"""``helpdesk-policy test``: everything that says a policy directory is fit to merge.

:func:`run_policy_tests` runs, for one policy directory and its config:

1. the Rego unit tests (``test_*`` rules in ``*_test.rego``), through
   :mod:`helpdesk_policy.ci.regotest`, reported per test with file and name as
   ``opa test -v`` does;
2. the expectation suites (:mod:`helpdesk_policy.ci.suites`) in ``<dir>/tests/``
   (subdirectories included) — or, when suites are named, only those —
   decided by the ``rego`` engine against *that* directory (the native engine
   only mirrors the stock policies);
3. rego/native parity on generated requests (and the suites' requests), but
   only when the directory's Rego is the stock Rego: otherwise there is no
   native mirror to compare with, and parity is reported as skipped, saying why;
4. OPA conformance on the same requests, for any Rego: rego-cpp and OPA's own
   Go evaluator must return the same whole decision
   (:mod:`helpdesk_policy.ci.conformance`); skipped, saying how to install it,
   when OPA's Go evaluator is missing, unless it is required;
5. the compiled policy (the Rego compiled to Python, what ``engine="auto"``
   runs for an edited policy) against regopy and against OPA's Go evaluator,
   whole decisions on the same requests. A policy the compiler refuses is
   not a failure (it runs on the interpreter): both are skipped, naming every
   refused construct with its file and line.

Under an organisation's config (``config=``), the suites and both checks use
that config, while the Rego unit tests keep the config they were written for
(the directory's ``config.yaml``, else the stock one): they pin its values,
and would fail under any tuning. The report names the config they used.

The report is ``ok`` only when nothing failed; it renders as text for people
and as a dict (JSON) for machines.

>>> from helpdesk_policy.ci.runner import run_policy_tests
>>> report = run_policy_tests(generate=20, rego_tests=False)
>>> report.ok, report.parity.status
(True, 'passed')
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import EngineUnavailableError, FieldError, HelpdeskPolicyError, PolicyLoadError, SuiteError
from ..policyset import PolicySet
from ..resources import stock_policy_dir
from .conformance import (
    COMPILED,
    OPA_GO,
    Comparison,
    EngineMismatch,
    check_compiled,
    check_conformance,
    compare_engines,
    require_opa_go,
    skipped_conformance,
)

if TYPE_CHECKING:
    from ..models import Request
    from .regotest import RegoTestResult
    from .suites import CaseResult, Suite

__all__ = ["ParityMismatch", "ParityResult", "PolicyTestReport", "check_parity", "is_stock_rego", "run_policy_tests"]

PARITY_ENGINES = ("rego", "native")


def is_stock_rego(policy_set: PolicySet) -> bool:
    """True when the set's Rego modules (tests excluded) are the stock ones, byte for byte.

    The config may differ: the native engine reads the same config, so parity
    holds (and is checked) for any valid config.
    """
    if policy_set.directory.resolve() == stock_policy_dir().resolve():
        return True
    return policy_set.modules == PolicySet(directory=stock_policy_dir(), config=policy_set.config).modules


#: The outcome of the rego/native check (the class both engine comparisons share).
ParityResult = Comparison
#: One request the two engines decided differently.
ParityMismatch = EngineMismatch


def _verdict_summary(verdict: Any) -> dict[str, Any]:
    return {
        "level": verdict.level.value,
        "requirements": list(verdict.requirements),
        "reasons": sorted(r.code for r in verdict.reasons),
        "obligations": [o.model_dump(mode="json", exclude_none=True) for o in verdict.obligations],
    }


def _skipped_parity(reason: str, seed: int = 0) -> Comparison:
    return Comparison("skipped", PARITY_ENGINES, seed=seed, reason=reason)


def check_parity(policy_set: PolicySet, cases: Sequence[tuple[str, Request]], *, seed: int = 0,
                 generated: int = 0) -> Comparison:
    """Decide every case with the rego and the native engine and compare what guarantee 3 binds.

    An engine error on a case is a mismatch (the other engine decided it).
    """
    from ..engines import load_engine

    start = time.perf_counter()
    rego = load_engine("rego", policy_set)
    native = load_engine("native", policy_set)
    try:
        mismatches = compare_engines(rego, native, cases, summary=_verdict_summary, key=lambda v: v.parity_key())
    finally:
        rego.close()
        native.close()
    return Comparison(
        status="failed" if mismatches else "passed", engines=PARITY_ENGINES,
        requests=len(cases), seed=seed, generated=generated, mismatches=tuple(mismatches),
        duration_s=time.perf_counter() - start,
    )


@dataclass
class PolicyTestReport:
    """What :func:`run_policy_tests` found. ``ok`` is False on any failure or error."""

    policy_dir: str
    revision: str
    rego_tests: list[RegoTestResult] = field(default_factory=list)
    rego_evaluator: str = "regopy"
    rego_skipped: str | None = None
    rego_config: str | None = None
    """Which config the Rego unit tests ran with, when it is not the one the suites ran with."""
    suites_skipped: str | None = None
    suite_files: list[str] = field(default_factory=list)
    suite_results: list[CaseResult] = field(default_factory=list)
    parity: Comparison = field(default_factory=lambda: _skipped_parity("not run"))
    conformance: Comparison = field(default_factory=lambda: skipped_conformance("not run"))
    compiled_rego: Comparison = field(default_factory=lambda: _skipped_compiled("rego", "not run"))
    compiled_opa: Comparison = field(default_factory=lambda: _skipped_compiled(OPA_GO, "not run"))
    errors: list[str] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def rego_failed(self) -> list[RegoTestResult]:
        return [t for t in self.rego_tests if not t.passed]

    @property
    def suite_failed(self) -> list[CaseResult]:
        return [r for r in self.suite_results if not r.passed]

    @property
    def ok(self) -> bool:
        return not (self.errors or self.rego_failed or self.suite_failed or self.parity.status == "failed"
                    or "failed" in (self.conformance.status, self.compiled_rego.status, self.compiled_opa.status))

    def per_suite(self) -> list[dict[str, Any]]:
        """Cases per suite file, in the order run: ``file``, ``suite``, ``cases``, ``passed``, ``failed``."""
        rows: dict[tuple[str | None, str], dict[str, Any]] = {}
        for r in self.suite_results:
            row = rows.setdefault((r.file, r.suite), {"file": r.file, "suite": r.suite, "cases": 0, "passed": 0,
                                                      "failed": 0})
            row["cases"] += 1
            row["passed" if r.passed else "failed"] += 1
        return list(rows.values())

    def counts(self) -> dict[str, Any]:
        return {
            "rego_tests": {"total": len(self.rego_tests), "passed": len(self.rego_tests) - len(self.rego_failed),
                           "failed": len(self.rego_failed)},
            "suite_cases": {"total": len(self.suite_results),
                            "passed": len(self.suite_results) - len(self.suite_failed),
                            "failed": len(self.suite_failed), "files": len(self.suite_files)},
            "parity": {"status": self.parity.status, "requests": self.parity.requests,
                       "mismatches": len(self.parity.mismatches)},
            "conformance": {"status": self.conformance.status, "requests": self.conformance.requests,
                            "mismatches": len(self.conformance.mismatches)},
            **{name: {"status": c.status, "requests": c.requests, "mismatches": len(c.mismatches)}
               for name, c in (("compiled_rego", self.compiled_rego), ("compiled_opa", self.compiled_opa))},
            "errors": len(self.errors),
        }

    def to_dict(self) -> dict[str, Any]:
        """The JSON report: ``ok``, counts, and every test, case and mismatch."""
        return {
            "policy_dir": self.policy_dir,
            "revision": self.revision,
            "ok": self.ok,
            "counts": self.counts(),
            "rego_tests": {
                "evaluator": self.rego_evaluator,
                "skipped": self.rego_skipped,
                "config": self.rego_config,
                "results": [
                    {"file": t.test.file, "package": t.test.package, "name": t.test.name,
                     "ref": f"data.{t.test.package}.{t.test.name}", "passed": t.passed, "error": t.error,
                     "duration_s": round(t.duration_s, 6)}
                    for t in self.rego_tests
                ],
            },
            "suites": {"files": list(self.suite_files), "skipped": self.suites_skipped,
                       "per_suite": self.per_suite(),
                       "results": [r.to_dict() for r in self.suite_results]},
            "parity": self.parity.to_dict(),
            "conformance": self.conformance.to_dict(),
            "compiled_rego": self.compiled_rego.to_dict(),
            "compiled_opa": self.compiled_opa.to_dict(),
            "errors": list(self.errors),
            "duration_s": round(self.duration_s, 6),
        }

    def render_text(self, *, verbose: bool = True) -> str:
        """People's report: one line per test and case (``verbose``), failures in detail, a summary."""
        out: list[str] = []
        out.append(f"Rego unit tests ({self.rego_evaluator}) in {self.policy_dir}")
        if self.rego_config and not self.rego_skipped:
            out.append(f"  config: {self.rego_config}")
        if self.rego_skipped:
            out.append(f"  skipped: {self.rego_skipped}")
        elif not self.rego_tests:
            out.append("  no test_* rules found in *_test.rego files")
        for t in self.rego_tests:
            if t.passed and not verbose:
                continue
            out.append(f"{'PASS' if t.passed else 'FAIL'} {t.test.file}: {t.test.name} ({_ms(t.duration_s)})")
            if not t.passed and t.error:
                out += [f"    {line}" for line in t.error.splitlines()]
        out.append("")
        if self.suites_skipped:
            out.append(f"Expectation suites: skipped ({self.suites_skipped})")
        else:
            out.append(f"Expectation suites ({len(self.suite_files)} file(s))" if self.suite_files
                       else "Expectation suites: none found")
        by_file: dict[tuple[str | None, str], list[CaseResult]] = {}
        for r in self.suite_results:
            by_file.setdefault((r.file, r.suite), []).append(r)
        for row, results in zip(self.per_suite(), by_file.values()):
            out.append(f"{row['file'] or row['suite']} (suite {row['suite']!r}): {row['cases']} case(s), "
                       f"{row['passed']} passed" + (f", {row['failed']} failed" if row["failed"] else ""))
            for r in results:
                if r.passed:
                    if verbose:
                        note = f" — {r.range_note}" if r.range_note else ""
                        out.append(f"PASS {r.label}{note} ({_ms(r.duration_s)})")
                else:
                    out.append(r.failure_text())
        out.append("")
        out += self.parity.render_text("Parity rego/native")
        out += self.conformance.render_text("Conformance rego-cpp/OPA")
        out += self.compiled_rego.render_text("Compiled policy/rego-cpp")
        if self.compiled_opa.reason != self.compiled_rego.reason or self.compiled_opa.status != "skipped":
            out += self.compiled_opa.render_text("Compiled policy/OPA")
        for e in self.errors:
            out += ["", f"ERROR {e}"]
        c = self.counts()
        out += ["", "-" * 72]
        parts = [
            "rego tests skipped" if self.rego_skipped
            else f"rego tests {c['rego_tests']['passed']}/{c['rego_tests']['total']} passed",
            "suites skipped" if self.suites_skipped
            else f"suite cases {c['suite_cases']['passed']}/{c['suite_cases']['total']} passed",
            f"parity {self.parity.status}",
            f"OPA conformance {self.conformance.status}",
            f"compiled {_compiled_status(self.compiled_rego, self.compiled_opa)}",
        ]
        if self.errors:
            parts.append(f"{len(self.errors)} error(s)")
        out.append(f"{'PASS' if self.ok else 'FAIL'}: " + "; ".join(parts) + f" ({self.duration_s:.2f}s)")
        return "\n".join(out)


def _compiled_status(rego: Comparison, opa: Comparison) -> str:
    if "failed" in (rego.status, opa.status):
        return "failed"
    if rego.status == "skipped" and (rego.reason or "").startswith("the compiler refuses"):
        return "refused (runs on the interpreter)"
    if opa.status == "skipped":
        return f"{rego.status} (OPA skipped)" if rego.status == "passed" else rego.status
    return rego.status


def _skipped_compiled(against: str, reason: str, seed: int = 0) -> Comparison:
    return Comparison("skipped", (COMPILED, against), seed=seed, reason=reason)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}ms"


def run_policy_tests(
    policy_dir: str | Path | None = None,
    *,
    config: Any = None,
    suites: Iterable[str | Path] = (),
    dir_suites: bool | None = None,
    generate: int = 200,
    seed: int = 0,
    evaluator: str = "regopy",
    rego_tests: bool = True,
    run_suites: bool = True,
    parity: bool = True,
    conformance: bool = True,
    compiled: bool = True,
    require_opa: bool = False,
) -> PolicyTestReport:
    """Run the Rego unit tests, the expectation suites and the engine checks for one policy directory.

    Which config each part reads: the suites, the parity check and the OPA
    conformance check decide with ``config`` (an organisation's tuning is what
    they must hold under). The Rego unit tests pin the values of the config
    they were written for, so they keep the directory's own ``config.yaml``
    (the stock config when it has none) and the report says so.

    Args:
        policy_dir: the policy directory (default: the stock policies).
        config: a config overriding the directory's ``config.yaml`` (see :meth:`PolicySet.load`).
        suites: suite files or directories to run.
        dir_suites: also run ``<policy_dir>/tests/**/*.yaml``; by default only
            when no ``suites`` are given (an organisation's suites replace the
            directory's, which pin other values).
        generate: how many generated requests the parity and conformance checks use.
        seed: the generator's seed.
        evaluator: passed to :func:`helpdesk_policy.ci.regotest.run`.
        rego_tests: run the Rego unit tests.
        run_suites: run the expectation suites.
        parity: run the rego/native parity check (stock Rego only).
        conformance: decide the suites' and generated requests with OPA's Go
            evaluator too and compare (skipped, visibly, when it is not installed).
        compiled: decide them with the compiled policy too and compare it with
            regopy and with OPA's Go evaluator (skipped, naming the constructs,
            when the compiler refuses the policy).
        require_opa: fail (EngineUnavailableError) when OPA's Go evaluator is missing.

    Raises:
        PolicyLoadError: the directory is missing, has no ``.rego`` files, or the loader refuses them.
        InvalidConfigError: its config is invalid.
        SuiteError: a file named in ``suites`` is missing, unreadable or invalid
            (a broken suite in the directory's own ``tests/`` is a failed run instead).
        EngineUnavailableError: regopy is not installed, or OPA's Go evaluator
            is not and ``require_opa``.
    """
    start = time.perf_counter()
    policy_set = PolicySet.load(policy_dir, config)
    if (conformance or compiled) and require_opa:
        require_opa_go()  # before minutes of tests, not after
    report = PolicyTestReport(policy_dir=str(policy_set.directory), revision=policy_set.revision,
                              rego_evaluator=evaluator)
    if rego_tests:
        unit_set = policy_set
        if config is not None:
            unit_set = PolicySet.load(policy_dir)
            own = unit_set.directory / "config.yaml"
            report.rego_config = (f"{own} (the config the unit tests were written for; the suites and checks "
                                  "use the given config)" if policy_dir is not None and own.is_file()
                                  else "the stock config (the config the unit tests were written for; the suites "
                                       "and checks use the given config)")
        _rego_phase(report, unit_set, evaluator)
    else:
        report.rego_skipped = "disabled"
    loaded: list[Suite] = []
    if run_suites:
        suites = list(suites)
        loaded = _suite_phase(report, policy_set, suites, not suites if dir_suites is None else dir_suites)
    else:
        report.suites_skipped = "disabled"
    cases: list[tuple[str, Request]] = []
    if parity or conformance or compiled:
        from .generate import generate_requests

        cases = [(r.request.id, r) for r in generate_requests(generate, seed)]
        cases += [(f"{s.label}: {c.name}", c.request) for s in loaded for c in s.cases]
    if parity:
        _parity_phase(report, policy_set, cases, generate, seed)
    else:
        report.parity = _skipped_parity("disabled", seed)
    # Both checks ask rego-cpp and OPA about the same requests: each decides each once.
    rego, opa = _shared_interpreters(policy_set, cases) if conformance and compiled else (None, None)
    try:
        if conformance:
            _conformance_phase(report, policy_set, cases, generate, seed, require_opa, rego, opa)
        else:
            report.conformance = skipped_conformance("disabled", seed=seed)
        if compiled:
            _compiled_phase(report, policy_set, cases, generate, seed, require_opa, rego, opa)
        else:
            report.compiled_rego = _skipped_compiled("rego", "disabled", seed)
            report.compiled_opa = _skipped_compiled(OPA_GO, "disabled", seed)
    finally:
        for engine in (rego, opa):
            if engine is not None:
                engine.close()
    report.duration_s = time.perf_counter() - start
    return report


def _rego_phase(report: PolicyTestReport, policy_set: PolicySet, evaluator: str) -> None:
    """1. The Rego unit tests."""
    try:
        from . import regotest
    except ImportError as exc:  # pragma: no cover - shipped with the package
        report.errors.append(f"Rego unit tests cannot run: {exc}")
        return
    try:
        report.rego_tests = list(regotest.run(policy_set, evaluator=evaluator))
    except (EngineUnavailableError, PolicyLoadError):
        # Rego that does not load (bad encoding, syntax, recursion) is a usage
        # error like in decide and diff: exit 2 naming file and line.
        raise
    except (HelpdeskPolicyError, ValueError) as exc:
        report.errors.append(f"Rego unit tests: {exc}")


def _suite_phase(report: PolicyTestReport, policy_set: PolicySet, suites: Iterable[str | Path],
                 dir_suites: bool) -> list[Suite]:
    """2. The expectation suites, decided by the rego engine on this directory.

    No fallback engine: a fallback's answer is not this policy's answer. A
    suite named on the command line that cannot be loaded stops the run
    (SuiteError); one in the directory's ``tests/`` is reported as an error.
    """
    from ..facade import HelpdeskPolicy
    from .suites import labelled_suite_files, load_suite
    from .suites import run_suites as run_all

    tests_dir = policy_set.directory / "tests"
    own = labelled_suite_files([tests_dir]) if dir_suites and tests_dir.is_dir() else []
    given = labelled_suite_files(suites)
    loaded: list[Suite] = []
    problems: list[FieldError] = []
    seen: set[Path] = set()
    for (path, label), named in [*((f, False) for f in own), *((f, True) for f in given)]:
        if path.resolve() in seen:  # a file named twice runs once
            continue
        seen.add(path.resolve())
        report.suite_files.append(_shown(path, policy_set.directory))
        try:
            loaded.append(load_suite(path, display=label))
        except SuiteError as exc:
            if named:
                problems += exc.errors
            else:
                report.errors += [f"suite {e}" for e in exc.errors]
    if problems:
        raise SuiteError(problems)
    try:
        policy = HelpdeskPolicy(engine="rego", policy_dir=policy_set.directory, config=policy_set.config)
    except EngineUnavailableError:
        raise
    except HelpdeskPolicyError as exc:
        # A policy that does not compile is a failed test run, reported like one.
        report.errors.append(f"expectation suites: {exc}")
        return loaded
    with policy:
        report.suite_results = run_all(policy, loaded)
    return loaded


def _parity_phase(report: PolicyTestReport, policy_set: PolicySet, cases: list[tuple[str, Request]], generate: int,
                  seed: int) -> None:
    """3. Parity, only where a native mirror exists."""
    if not is_stock_rego(policy_set):
        report.parity = _skipped_parity(
            "the Rego differs from the stock policies, and the native engine mirrors the stock policies only", seed)
        return
    if not cases:
        report.parity = _skipped_parity("no requests (--generate 0 and no suites)", seed)
        return
    try:
        report.parity = check_parity(policy_set, cases, seed=seed, generated=generate)
    except EngineUnavailableError:
        raise
    except HelpdeskPolicyError as exc:
        report.errors.append(f"parity: {exc}")


def _shared_interpreters(policy_set: PolicySet, cases: list[tuple[str, Request]]) -> tuple[Any, Any]:
    """rego-cpp and OPA's Go evaluator, each remembering its answers, or None where one cannot be built
    here (the phases then build it themselves and report why it failed)."""
    from ..engines import load_engine
    from .conformance import OpaGoEngine, RememberingEngine, opa_go_missing

    if not cases:
        return None, None
    try:
        rego = RememberingEngine(load_engine("rego", policy_set))
    except HelpdeskPolicyError:
        return None, None
    opa = None
    if opa_go_missing() is None:
        try:
            opa = RememberingEngine(OpaGoEngine(policy_set))
        except HelpdeskPolicyError:
            opa = None
    return rego, opa


def _conformance_phase(report: PolicyTestReport, policy_set: PolicySet, cases: list[tuple[str, Request]],
                       generate: int, seed: int, require: bool, rego: Any = None, opa: Any = None) -> None:
    """4. rego-cpp against OPA's Go evaluator, for any Rego."""
    try:
        report.conformance = check_conformance(policy_set, cases, require=require, seed=seed, generated=generate,
                                               rego=rego, opa=opa)
    except EngineUnavailableError:
        raise
    except HelpdeskPolicyError as exc:
        report.errors.append(f"OPA conformance: {exc}")


def _compiled_phase(report: PolicyTestReport, policy_set: PolicySet, cases: list[tuple[str, Request]],
                    generate: int, seed: int, require_opa: bool, rego: Any = None, opa: Any = None) -> None:
    """5. The compiled policy against regopy and OPA's Go evaluator."""
    try:
        report.compiled_rego, report.compiled_opa = check_compiled(
            policy_set, cases, seed=seed, generated=generate, require_opa=require_opa, rego=rego, opa=opa)
    except EngineUnavailableError:
        raise
    except HelpdeskPolicyError as exc:
        report.errors.append(f"compiled policy: {exc}")


def _shown(path: Path, policy_dir: Path) -> str:
    """Relative to the policy directory, else to the cwd, else as given."""
    for root in (policy_dir, Path.cwd()):
        try:
            return path.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            continue
    return str(path)
