"""The ``compiled`` engine: the policy set's own Rego, compiled to Python.

For an *edited* policy (a rule family added, a threshold that is not config,
a reason reworded in Rego) this is the fast path: the Rego is parsed and
translated once, at load (:mod:`helpdesk_policy.compiler`), and each decision
is a call into the generated Python, tens of microseconds where the
interpreter takes milliseconds. For the unmodified stock policy the
hand-written ``native`` mirror is faster still, and ``engine="auto"`` picks it.

It loads only what it can translate faithfully: a construct the compiler does
not support (``with``, an unknown or non-deterministic builtin, …) makes the
engine refuse to load, naming the file, line and construct, so a facade with
``engine="auto"`` runs that policy on the interpreter instead; it never runs a
partial or approximate translation. The compiler is proven equal to OPA's own
evaluator by this project's differential tests, and an organisation proves
its own policy with ``helpdesk-policy test DIR`` (the compiled policy against
regopy and OPA's Go evaluator, on its suites and generated requests).

It fails closed like the other engines: an undefined decision raises
:class:`~helpdesk_policy.errors.UndefinedDecisionError`, an evaluation error
(a builtin's type error, conflicting rule values) raises
:class:`~helpdesk_policy.errors.EngineError`, where OPA would error too, and
whoever asks it validates the answer (:func:`~.base.checked_verdict`).

>>> from helpdesk_policy.engines.compiled import CompiledEngine
>>> from helpdesk_policy.policyset import PolicySet
>>> engine = CompiledEngine(PolicySet.load())
>>> engine.name
'compiled'
"""

from __future__ import annotations

from typing import Any

from ..compiler import compile_policy_set
from ..errors import EngineError
from ..models import Request
from ..policyset import DECISION_PATH, PolicySet
from .base import BaseEngine, RawDecision

__all__ = ["CompiledEngine"]


class CompiledEngine(BaseEngine):
    """Decide with the policy set's Rego compiled to Python.

    Args:
        policy_set: any policy set whose Rego the compiler supports.

    Raises:
        EngineUnavailableError: the parser's dependency (lark, the ``rego``
            extra) is not installed.
        PolicyLoadError: a syntax error, or a construct the compiler refuses
            (every one named with its file and line).
    """

    name = "compiled"

    def __init__(self, policy_set: PolicySet) -> None:
        self.policy_set = policy_set
        self.compiled = compile_policy_set(policy_set, entrypoint=DECISION_PATH.replace("/", "."))
        self._evaluate = self.compiled.evaluate

    def evaluate(self, request: Request) -> RawDecision:
        return self.evaluate_input(request.to_input())

    def evaluate_input(self, document: dict[str, Any]) -> RawDecision:
        """Evaluate a raw input document (validated by the caller), as ``RegoEngine.evaluate_input`` does."""
        try:
            return self._evaluate(document)  # type: ignore[no-any-return]
        except EngineError:
            raise
        except RecursionError:
            raise EngineError("evaluation nested too deeply", engine=self.name) from None
        except Exception as exc:  # noqa: BLE001 - a fault in generated code is an engine failure, never an answer
            raise EngineError(f"compiled policy failed: {type(exc).__name__}: {exc}", engine=self.name) from None

    async def aevaluate(self, request: Request) -> RawDecision:
        # Pure CPU, tens of microseconds: a thread hop would cost more than it saves.
        return self.evaluate(request)
