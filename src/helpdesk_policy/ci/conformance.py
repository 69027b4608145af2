"""Do two engines decide the same requests the same way? Parity and OPA conformance.

Two engine comparisons share this code:

* **parity** (``helpdesk-policy test``) — the ``rego`` engine against the
  ``native`` mirror, only for the stock Rego: level, requirements, reason
  codes and obligations, what every engine must agree on;
* **OPA conformance** (``test`` and ``diff``) — the ``rego`` engine (rego-cpp, through regopy) against
  **OPA's own Go evaluator** (:class:`OpaGoEngine`), for *any* Rego, comparing
  the whole verdict: level, requirements, every reason with its level, message
  and refs, obligations, playbook. rego-cpp and OPA do not read every
  expression alike (rego-cpp orders numbers as strings in ``min()`` over mixed
  values, for one), so a change can look harmless to the embedded engine while
  the OPA servers of a fleet, running the same bundle, decide more loosely.

OPA's Go evaluator comes from ``opa-golib-python-bindings`` (import name
``opa_bindings``), a development dependency: its wheel declares Python >= 3.14
but works on 3.10+, so install it with
``pip install --ignore-requires-python --no-deps opa-golib-python-bindings==0.4.4``.
When it is missing the conformance check is *skipped*, visibly, unless it is
required (then :class:`~helpdesk_policy.errors.EngineUnavailableError`).

>>> from helpdesk_policy.policyset import PolicySet
>>> from helpdesk_policy.ci.generate import generate_requests
>>> from helpdesk_policy.ci.conformance import check_conformance
>>> cases = [(r.request.id, r) for r in generate_requests(20, seed=1)]
>>> result = check_conformance(PolicySet.load(), cases)
>>> result.status, result.requests
('passed', 20)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ..engines.base import BaseEngine, checked_verdict
from ..errors import EngineError, EngineUnavailableError, PolicyLoadError, UndefinedDecisionError
from ..policyset import DECISION_PATH, PolicySet
# How a CI installs OPA's Go evaluator (its wheel's Requires-Python is wrong); the Rego
# test runner's ``--evaluator opa-go`` needs the same package.
from .regotest import OPA_INSTALL_HINT

if TYPE_CHECKING:
    from ..models import Request, Verdict

__all__ = [
    "COMPILED",
    "OPA_GO",
    "OPA_INSTALL_HINT",
    "Comparison",
    "EngineMismatch",
    "OpaGoEngine",
    "RememberingEngine",
    "check_compiled",
    "check_conformance",
    "compare_engines",
    "conformance_summary",
    "opa_go_missing",
    "require_opa_go",
    "skipped_conformance",
]

#: The name the conformance check gives OPA's Go evaluator.
OPA_GO = "opa-go"
#: The engine name of the Rego compiled to Python (:mod:`helpdesk_policy.engines.compiled`).
COMPILED = "compiled"


Status = Literal["passed", "failed", "skipped"]
Summary = Callable[["Verdict"], dict[str, Any]]


def opa_go_missing() -> str | None:
    """None when OPA's Go evaluator can be imported, else a sentence saying so, with the install command."""
    try:
        import opa_bindings  # noqa: F401
    except ImportError as exc:
        return f"OPA's Go evaluator is not installed ({exc}); install it with: {OPA_INSTALL_HINT}"
    return None


def require_opa_go() -> None:
    """Raise when OPA's Go evaluator is missing: for callers that must not skip the conformance check.

    Raises:
        EngineUnavailableError: naming the package and how to install it.
    """
    missing = opa_go_missing()
    if missing is not None:
        raise EngineUnavailableError(f"OPA conformance is required, but {missing}", engine=OPA_GO)


class OpaGoEngine(BaseEngine):
    """``data.helpdesk.decision`` evaluated in-process by OPA's own Go evaluator.

    Not a runtime engine (its package is a development dependency); the
    reference a policy is checked against. Evaluations on one instance are
    serialised by the bindings, so use one per thread.

    Raises:
        EngineUnavailableError: ``opa_bindings`` is not installed.
        PolicyLoadError: OPA refuses a module (the message is OPA's, with file and line).
    """

    name = OPA_GO

    def __init__(self, policy_set: PolicySet) -> None:
        missing = opa_go_missing()
        if missing is not None:
            raise EngineUnavailableError(missing, engine=self.name)
        from opa_bindings import OpaEngine, OpaError, OpaUndefinedError

        self._errors = (OpaError, OpaUndefinedError)
        self._undefined = OpaUndefinedError
        self._document = DECISION_PATH.replace("/", ".")
        self._engine = OpaEngine()
        try:
            for name, source in policy_set.modules.items():
                self._engine.add_policy(name, source)
            for name, doc in policy_set.data()["helpdesk"].items():
                self._engine.add_data(doc, path=f"helpdesk.{name}")
        except OpaError as exc:
            self._engine.close()
            raise PolicyLoadError(f"OPA's Go evaluator refuses the policies in {policy_set.directory}: {exc}") from None

    def evaluate(self, request: Request) -> dict[str, Any]:
        return self.evaluate_input(request.to_input())

    def evaluate_input(self, document: dict[str, Any]) -> dict[str, Any]:
        """Evaluate a raw input document (validated by the caller), as ``RegoEngine.evaluate_input`` does."""
        try:
            result = self._engine.eval_document(self._document, document)
        except self._undefined as exc:
            raise UndefinedDecisionError(str(exc), engine=self.name) from None
        except self._errors as exc:
            raise EngineError(str(exc), engine=self.name) from None
        if not isinstance(result, dict):
            raise UndefinedDecisionError(f"decision is {type(result).__name__}, not an object", engine=self.name)
        return result

    def close(self) -> None:
        self._engine.close()


# ------------------------------------------------------------------ comparing


class _Absent:
    def __repr__(self) -> str:
        return "(absent)"


_ABSENT = _Absent()


def _leaves(doc: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in doc.items():
        if isinstance(value, Mapping) and value:
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


@dataclass(frozen=True)
class EngineMismatch:
    """One request two engines decided differently (or that one could not decide)."""

    case: str
    engines: tuple[str, str]
    left: dict[str, Any]
    right: dict[str, Any]

    def differences(self) -> list[str]:
        """``field: left != right`` for every leaf that differs (``error`` when one could not decide).

        Nested mappings are walked, so a reason that changed only its level reads
        ``reasons.<code>.level: rego 'deny' != opa-go 'step_up'``, not as two whole reason lists.
        """
        a, b = self.engines
        left, right = dict(_leaves(self.left)), dict(_leaves(self.right))
        out = []
        for key in dict.fromkeys([*left, *right]):
            lv, rv = left.get(key, _ABSENT), right.get(key, _ABSENT)
            if lv != rv:
                out.append(f"{key}: {a} {lv!r} != {b} {rv!r}")
        return out

    def describe(self) -> str:
        return f"{self.case}: " + "; ".join(self.differences())

    def to_dict(self) -> dict[str, Any]:
        a, b = self.engines
        return {"case": self.case, a: self.left, b: self.right}


@dataclass(frozen=True)
class Comparison:
    """The outcome of comparing two engines on a set of requests."""

    status: Status
    engines: tuple[str, str]
    requests: int = 0
    seed: int = 0
    generated: int = 0
    mismatches: tuple[EngineMismatch, ...] = ()
    reason: str | None = None
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "engines": list(self.engines),
            "reason": self.reason,
            "requests": self.requests,
            "generated": self.generated,
            "seed": self.seed,
            "mismatches": [m.to_dict() for m in self.mismatches],
            "duration_s": round(self.duration_s, 6),
        }

    def render_text(self, title: str, *, limit: int = 20) -> list[str]:
        """``<title>: PASS on …`` / ``FAIL`` with the mismatches / ``SKIPPED (why)``."""
        if self.status == "skipped":
            return [f"{title}: SKIPPED ({self.reason})"]
        what = f"{self.requests} requests ({self.generated} generated with seed {self.seed}, " \
               f"{self.requests - self.generated} from suites)"
        out = [f"{title}: {'PASS' if self.status == 'passed' else 'FAIL'} on {what} ({self.duration_s * 1000:.1f}ms)"]
        if self.reason and self.status == "failed":
            out.append(f"  {self.reason}")
        out += [f"  MISMATCH {m.describe()}" for m in self.mismatches[:limit]]
        if len(self.mismatches) > limit:
            out.append(f"  … and {len(self.mismatches) - limit} more")
        return out


def _decide(engine: Any, request: Request, summary: Summary) -> tuple[Verdict | None, dict[str, Any]]:
    """(verdict, its summary), or (None, the error) when the engine cannot decide."""
    try:
        verdict = checked_verdict(engine, engine.evaluate(request))
    except Exception as exc:  # noqa: BLE001 - an engine's failure is this case's mismatch
        return None, {"error": f"{type(exc).__name__}: {exc}"}
    return verdict, summary(verdict)


def compare_engines(left: Any, right: Any, cases: Sequence[tuple[str, Request]], *, summary: Summary,
                    key: Callable[[Verdict], Any] | None = None) -> list[EngineMismatch]:
    """Decide every case with both engines; the cases they decide differently.

    ``key`` says what must be equal (default: the ``summary``). A case that
    either engine cannot decide is a mismatch too: a check that passed while
    one side errored would vouch for decisions nobody made.
    """
    compare = key or summary
    out: list[EngineMismatch] = []
    for name, request in cases:
        lv, l_doc = _decide(left, request, summary)
        rv, r_doc = _decide(right, request, summary)
        if lv is None or rv is None or compare(lv) != compare(rv):
            out.append(EngineMismatch(name, (left.name, right.name), l_doc, r_doc))
    return out


def conformance_summary(verdict: Verdict) -> dict[str, Any]:
    """Everything a decision tells an agent (conformance compares all of it), reasons
    and obligations keyed by code so a difference names the reason it is in."""
    doc = verdict.model_dump(mode="json", exclude_none=True)
    for section in ("reasons", "obligations"):
        keyed: dict[str, Any] = {}
        for item in doc[section]:
            code = item.pop("code")
            key, n = code, 1
            while key in keyed:  # a code given twice stays two entries
                n += 1
                key = f"{code}#{n}"
            keyed[key] = item
        doc[section] = keyed
    return doc


def skipped_conformance(reason: str, *, seed: int = 0) -> Comparison:
    """A conformance check that did not run, saying why."""
    return Comparison("skipped", ("rego", OPA_GO), seed=seed, reason=reason)


class RememberingEngine:
    """An engine whose answers (or failures) are kept per request object.

    ``helpdesk-policy test`` compares rego-cpp with OPA, then the compiled
    policy with both, on the same requests: with this, each interpreter
    decides each request once (rego-cpp costs milliseconds a request).
    Requests are told apart by identity and kept referenced, so a key is
    never reused.
    """

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.name: str = engine.name
        self._answers: dict[int, tuple[bool, Any, Any]] = {}

    def evaluate(self, request: Request) -> Any:
        kept = self._answers.get(id(request))
        if kept is None:
            try:
                kept = (True, self.engine.evaluate(request), request)
            except Exception as exc:  # noqa: BLE001 - kept and raised again, as the engine raised it
                kept = (False, exc, request)
            self._answers[id(request)] = kept
        ok, answer, _ = kept
        if ok:
            return answer
        raise answer

    def close(self) -> None:
        self.engine.close()


def check_conformance(policy_set: PolicySet, cases: Sequence[tuple[str, Request]], *, require: bool = False,
                      seed: int = 0, generated: int = 0, rego: Any = None, opa: Any = None) -> Comparison:
    """Decide ``cases`` with rego-cpp (the ``rego`` engine) and with OPA's Go evaluator; compare whole verdicts.

    Args:
        policy_set: the policies (any Rego, not only the stock Rego) and config.
        cases: ``(name, request)`` pairs.
        require: raise instead of skipping when OPA's Go evaluator is missing.
        seed: recorded in the result (the seed of the generated cases).
        generated: how many of ``cases`` were generated, recorded in the result.
        rego: a ``rego`` engine already built for ``policy_set`` (left open);
            by default one is built, and closed, here.
        opa: OPA's Go evaluator already built for ``policy_set`` (left open), likewise.

    Returns:
        ``passed``, ``failed`` (with every mismatch, or why OPA refuses the
        policy) or ``skipped`` (OPA's Go evaluator is not installed, or no cases).

    Raises:
        EngineUnavailableError: regopy is missing, or OPA's Go evaluator is and ``require``.
        PolicyLoadError: rego-cpp cannot compile the policy.
    """
    from ..engines import load_engine

    if require:
        require_opa_go()
    if opa_go_missing() is not None:
        return skipped_conformance(f"install OPA's Go evaluator to check OPA conformance: {OPA_INSTALL_HINT}",
                                   seed=seed)
    if not cases:
        return skipped_conformance("no requests", seed=seed)
    start = time.perf_counter()
    own = rego is None
    engine = load_engine("rego", policy_set) if own else rego
    engines = (engine.name, OPA_GO)
    own_opa = opa is None
    try:
        try:
            if own_opa:
                opa = OpaGoEngine(policy_set)
        except PolicyLoadError as exc:
            # rego-cpp compiled it and OPA does not: the fleet could not even load this bundle.
            return Comparison("failed", engines, requests=len(cases), seed=seed, generated=generated,
                              reason=str(exc), duration_s=time.perf_counter() - start)
        try:
            mismatches = compare_engines(engine, opa, cases, summary=conformance_summary)
        finally:
            if own_opa:
                opa.close()
    finally:
        if own:
            engine.close()
    return Comparison("failed" if mismatches else "passed", engines, requests=len(cases), seed=seed,
                      generated=generated, mismatches=tuple(mismatches), duration_s=time.perf_counter() - start)


def check_compiled(policy_set: PolicySet, cases: Sequence[tuple[str, Request]], *, seed: int = 0,
                   generated: int = 0, require_opa: bool = False, rego: Any = None,
                   opa: Any = None) -> tuple[Comparison, Comparison]:
    """The Rego compiled to Python (the ``compiled`` engine) against regopy and against OPA's Go evaluator.

    Both compare whole verdicts (:func:`conformance_summary`) on ``cases``. A
    policy the compiler refuses is not a failure: it runs on the interpreter,
    and both comparisons are ``skipped``, their reason naming every refused
    construct with its file and line.

    ``rego`` and ``opa``: those engines already built for ``policy_set``
    (left open; a :class:`RememberingEngine` answers from what it decided
    before); by default each is built, and closed, here.

    Returns:
        ``(compiled against rego, compiled against OPA's Go evaluator)``; the
        second is skipped, visibly, when OPA's Go evaluator is not installed.

    Raises:
        EngineUnavailableError: regopy or lark is missing, or OPA's Go evaluator is and ``require_opa``.
    """
    from ..engines import load_engine

    def skipped(against: str, reason: str) -> Comparison:
        return Comparison("skipped", (COMPILED, against), seed=seed, reason=reason)

    if require_opa:
        require_opa_go()
    if not cases:
        return skipped("rego", "no requests"), skipped(OPA_GO, "no requests")
    try:
        compiled = load_engine(COMPILED, policy_set)
    except EngineUnavailableError:
        raise
    except PolicyLoadError as exc:
        why = f"the compiler refuses this policy, which runs on the interpreter instead: {exc}"
        return skipped("rego", why), skipped(OPA_GO, why)
    results: list[Comparison] = []
    for against in ("rego", OPA_GO):
        if against == OPA_GO and opa_go_missing() is not None:
            results.append(skipped(OPA_GO, f"install OPA's Go evaluator to check the compiled policy against "
                                            f"OPA: {OPA_INSTALL_HINT}"))
            continue
        start = time.perf_counter()
        given = rego if against == "rego" else opa
        try:
            other: Any = given if given is not None else (
                load_engine("rego", policy_set) if against == "rego" else OpaGoEngine(policy_set))
        except PolicyLoadError as exc:
            results.append(Comparison("failed", (COMPILED, against), requests=len(cases), seed=seed,
                                      generated=generated, reason=str(exc), duration_s=time.perf_counter() - start))
            continue
        try:
            mismatches = compare_engines(compiled, other, cases, summary=conformance_summary)
        finally:
            if given is None:
                other.close()
        results.append(Comparison("failed" if mismatches else "passed", (COMPILED, against), requests=len(cases),
                                  seed=seed, generated=generated, mismatches=tuple(mismatches),
                                  duration_s=time.perf_counter() - start))
    compiled.close()
    return results[0], results[1]
