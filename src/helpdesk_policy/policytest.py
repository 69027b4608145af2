"""``helpdesk-policy test``: everything that says a policy directory is fit to merge.

:func:`run_policy_tests` runs, for one policy directory and its config:

1. the Rego unit tests (``test_*`` rules in ``*_test.rego``), through
   :mod:`helpdesk_policy.regotest`, reported per test with file and name as
   ``opa test -v`` does;
2. the expectation suites (:mod:`helpdesk_policy.suites`) in ``<dir>/tests/*.yaml``
   plus any extra ones, decided by the ``rego`` engine against *that* directory
   (the native engine only mirrors the stock policies);
3. rego/native parity on generated requests (and the suites' requests), but
   only when the directory's Rego is the stock Rego: otherwise there is no
   native mirror to compare with, and parity is reported as skipped, saying why.

The report is ``ok`` only when nothing failed; it renders as text for people
and as a dict (JSON) for machines.

>>> from helpdesk_policy.policytest import run_policy_tests
>>> report = run_policy_tests(generate=20, rego_tests=False)
>>> report.ok, report.parity.status
(True, 'passed')
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .errors import EngineUnavailableError, HelpdeskPolicyError
from .policies import PolicySet, stock_policy_dir

if TYPE_CHECKING:
    from .models import Request
    from .regotest import RegoTestResult
    from .suites import CaseResult, Suite

__all__ = ["ParityMismatch", "ParityResult", "PolicyTestReport", "check_parity", "is_stock_rego", "run_policy_tests"]

ParityStatus = Literal["passed", "failed", "skipped"]


def is_stock_rego(policy_set: PolicySet) -> bool:
    """True when the set's Rego modules (tests excluded) are the stock ones, byte for byte.

    The config may differ: the native engine reads the same config, so parity
    holds (and is checked) for any valid config.
    """
    if policy_set.directory.resolve() == stock_policy_dir().resolve():
        return True
    return policy_set.modules == PolicySet(directory=stock_policy_dir(), config=policy_set.config).modules


@dataclass(frozen=True)
class ParityMismatch:
    """One request the two engines decided differently."""

    case: str
    rego: dict[str, Any]
    native: dict[str, Any]

    def describe(self) -> str:
        return f"{self.case}: rego {self.rego} != native {self.native}"


@dataclass(frozen=True)
class ParityResult:
    """The rego/native differential check."""

    status: ParityStatus
    requests: int = 0
    seed: int = 0
    generated: int = 0
    mismatches: tuple[ParityMismatch, ...] = ()
    reason: str | None = None
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "reason": self.reason,
            "requests": self.requests,
            "generated": self.generated,
            "seed": self.seed,
            "mismatches": [{"case": m.case, "rego": m.rego, "native": m.native} for m in self.mismatches],
            "duration_s": round(self.duration_s, 6),
        }


def _verdict_summary(verdict: Any) -> dict[str, Any]:
    return {
        "level": verdict.level.value,
        "requirements": list(verdict.requirements),
        "reasons": sorted(r.code for r in verdict.reasons),
        "obligations": [o.model_dump(mode="json", exclude_none=True) for o in verdict.obligations],
    }


def _decide(engine: Any, req: Request) -> tuple[Any, dict[str, Any]]:
    """(verdict, summary), or (None, the error) when the engine cannot decide."""
    from .facade import checked_verdict

    try:
        verdict = checked_verdict(engine, engine.evaluate(req))
    except Exception as exc:  # noqa: BLE001 - an engine's failure is this case's mismatch
        return None, {"error": f"{type(exc).__name__}: {exc}"}
    return verdict, _verdict_summary(verdict)


def check_parity(policy_set: PolicySet, cases: Sequence[tuple[str, Request]], *, seed: int = 0,
                 generated: int = 0) -> ParityResult:
    """Decide every case with the rego and the native engine and compare what SPEC §5.3 binds.

    An engine error on a case is a mismatch (the other engine decided it).
    """
    from .engines import load_engine

    start = time.perf_counter()
    rego = load_engine("rego", policy_set)
    native = load_engine("native", policy_set)
    mismatches: list[ParityMismatch] = []
    try:
        for name, req in cases:
            r, r_doc = _decide(rego, req)
            n, n_doc = _decide(native, req)
            if r is None or n is None or r.parity_key() != n.parity_key():
                mismatches.append(ParityMismatch(name, r_doc, n_doc))
    finally:
        rego.close()
        native.close()
    return ParityResult(
        status="failed" if mismatches else "passed",
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
    suites_skipped: str | None = None
    suite_files: list[str] = field(default_factory=list)
    suite_results: list[CaseResult] = field(default_factory=list)
    parity: ParityResult = field(default_factory=lambda: ParityResult("skipped", reason="not run"))
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
        return not (self.errors or self.rego_failed or self.suite_failed or self.parity.status == "failed")

    def counts(self) -> dict[str, Any]:
        return {
            "rego_tests": {"total": len(self.rego_tests), "passed": len(self.rego_tests) - len(self.rego_failed),
                           "failed": len(self.rego_failed)},
            "suite_cases": {"total": len(self.suite_results),
                            "passed": len(self.suite_results) - len(self.suite_failed),
                            "failed": len(self.suite_failed), "files": len(self.suite_files)},
            "parity": {"status": self.parity.status, "requests": self.parity.requests,
                       "mismatches": len(self.parity.mismatches)},
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
                "results": [
                    {"file": t.test.file, "package": t.test.package, "name": t.test.name,
                     "ref": f"data.{t.test.package}.{t.test.name}", "passed": t.passed, "error": t.error,
                     "duration_s": round(t.duration_s, 6)}
                    for t in self.rego_tests
                ],
            },
            "suites": {"files": list(self.suite_files), "skipped": self.suites_skipped,
                       "results": [r.to_dict() for r in self.suite_results]},
            "parity": self.parity.to_dict(),
            "errors": list(self.errors),
            "duration_s": round(self.duration_s, 6),
        }

    def render_text(self, *, verbose: bool = True) -> str:
        """People's report: one line per test and case (``verbose``), failures in detail, a summary."""
        out: list[str] = []
        out.append(f"Rego unit tests ({self.rego_evaluator}) in {self.policy_dir}")
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
        for r in self.suite_results:
            if r.passed:
                if verbose:
                    out.append(f"PASS {r.label} ({_ms(r.duration_s)})")
            else:
                out.append(r.failure_text())
        out.append("")
        p = self.parity
        if p.status == "skipped":
            out.append(f"Parity rego/native: SKIPPED ({p.reason})")
        else:
            what = f"{p.requests} requests ({p.generated} generated with seed {p.seed}, " \
                   f"{p.requests - p.generated} from suites)"
            verdict = "PASS" if p.status == "passed" else "FAIL"
            out.append(f"Parity rego/native: {verdict} on {what} ({_ms(p.duration_s)})")
            for m in p.mismatches[:20]:
                out.append(f"  MISMATCH {m.describe()}")
            if len(p.mismatches) > 20:
                out.append(f"  … and {len(p.mismatches) - 20} more")
        for e in self.errors:
            out += ["", f"ERROR {e}"]
        c = self.counts()
        out += ["", "-" * 72]
        parts = [
            "rego tests skipped" if self.rego_skipped
            else f"rego tests {c['rego_tests']['passed']}/{c['rego_tests']['total']} passed",
            "suites skipped" if self.suites_skipped
            else f"suite cases {c['suite_cases']['passed']}/{c['suite_cases']['total']} passed",
            f"parity {p.status}",
        ]
        if self.errors:
            parts.append(f"{len(self.errors)} error(s)")
        out.append(f"{'PASS' if self.ok else 'FAIL'}: " + "; ".join(parts) + f" ({self.duration_s:.2f}s)")
        return "\n".join(out)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}ms"


def run_policy_tests(
    policy_dir: str | Path | None = None,
    *,
    config: Any = None,
    suites: Iterable[str | Path] = (),
    dir_suites: bool = True,
    generate: int = 200,
    seed: int = 0,
    evaluator: str = "regopy",
    rego_tests: bool = True,
    run_suites: bool = True,
    parity: bool = True,
) -> PolicyTestReport:
    """Run the Rego unit tests, the expectation suites and the parity check for one policy directory.

    Args:
        policy_dir: the policy directory (default: the stock policies).
        config: a config overriding the directory's ``config.yaml`` (see :meth:`PolicySet.load`).
        suites: extra suite files or directories.
        dir_suites: also run ``<policy_dir>/tests/*.yaml``.
        generate: how many generated requests the parity check uses.
        seed: the generator's seed.
        evaluator: passed to :func:`helpdesk_policy.regotest.run`.
        rego_tests: run the Rego unit tests.
        run_suites: run the expectation suites.
        parity: run the parity check.

    Raises:
        PolicyLoadError: the directory is missing or has no ``.rego`` files.
        InvalidConfigError: its config is invalid.
        EngineUnavailableError: the rego engine (regopy) is not installed.
    """
    start = time.perf_counter()
    policy_set = PolicySet.load(policy_dir, config)
    report = PolicyTestReport(policy_dir=str(policy_set.directory), revision=policy_set.revision,
                              rego_evaluator=evaluator)
    if rego_tests:
        _rego_phase(report, policy_set, evaluator)
    else:
        report.rego_skipped = "disabled"
    loaded: list[Suite] = []
    if run_suites:
        loaded = _suite_phase(report, policy_set, suites, dir_suites)
    else:
        report.suites_skipped = "disabled"
    if parity:
        _parity_phase(report, policy_set, loaded, generate, seed)
    else:
        report.parity = ParityResult("skipped", seed=seed, reason="disabled")
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
    except EngineUnavailableError:
        raise
    except (HelpdeskPolicyError, ValueError) as exc:
        report.errors.append(f"Rego unit tests: {exc}")


def _suite_phase(report: PolicyTestReport, policy_set: PolicySet, suites: Iterable[str | Path],
                 dir_suites: bool) -> list[Suite]:
    """2. The expectation suites, decided by the rego engine on this directory.

    No fallback engine: a fallback's answer is not this policy's answer.
    """
    from .facade import HelpdeskPolicy
    from .suites import SuiteError, find_suite_files, load_suite
    from .suites import run_suites as run_all

    paths: list[Path] = []
    tests_dir = policy_set.directory / "tests"
    try:
        if dir_suites and tests_dir.is_dir():
            paths += find_suite_files([tests_dir])
        paths += find_suite_files(suites)
    except SuiteError as exc:
        report.errors += [str(e) for e in exc.errors]
    loaded: list[Suite] = []
    for p in dict.fromkeys(paths):  # a file named twice runs once
        report.suite_files.append(_shown(p, policy_set.directory))
        try:
            loaded.append(load_suite(p))
        except SuiteError as exc:
            report.errors += [f"suite {e}" for e in exc.errors]
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


def _parity_phase(report: PolicyTestReport, policy_set: PolicySet, loaded: list[Suite], generate: int,
                  seed: int) -> None:
    """3. Parity, only where a native mirror exists."""
    from .generate import generate_requests

    if not is_stock_rego(policy_set):
        report.parity = ParityResult("skipped", seed=seed, reason=(
            "the Rego differs from the stock policies, and the native engine mirrors the stock policies only"))
        return
    cases: list[tuple[str, Request]] = [(r.request.id, r) for r in generate_requests(generate, seed)]
    cases += [(f"{s.label}: {c.name}", c.request) for s in loaded for c in s.cases]
    if not cases:
        report.parity = ParityResult("skipped", seed=seed, reason="no requests (--generate 0 and no suites)")
        return
    try:
        report.parity = check_parity(policy_set, cases, seed=seed, generated=generate)
    except EngineUnavailableError:
        raise
    except HelpdeskPolicyError as exc:
        report.errors.append(f"parity: {exc}")


def _shown(path: Path, policy_dir: Path) -> str:
    """Relative to the policy directory, else to the cwd, else as given."""
    for root in (policy_dir, Path.cwd()):
        try:
            return path.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            continue
    return str(path)
