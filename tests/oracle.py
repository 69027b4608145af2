"""OPA's own Go evaluator (opa-golib-python-bindings), used as the conformance oracle.

It is a pinned dev dependency, not a runtime one: the Rego must give the same
answers under real OPA as under regopy. One ``OpaOracle`` wraps one Go engine;
evaluations on it are serialized by the bindings' lock, so give each thread its own.
"""

from __future__ import annotations

from typing import Any

from opa_bindings import OpaEngine as _GoEngine
from opa_bindings import OpaError, OpaUndefinedError

from helpdesk_policy.engines.base import BaseEngine
from helpdesk_policy.errors import EngineError, UndefinedDecisionError
from helpdesk_policy.models import Request
from helpdesk_policy.policies import PolicySet

__all__ = ["OpaOracle", "OpaError", "OpaUndefinedError", "load_go_engine"]


def load_go_engine(policy_set: PolicySet, *, include_tests: bool = False) -> _GoEngine:
    """A Go OPA engine with the policy set's modules (and tests) and config loaded."""
    engine = _GoEngine()
    modules = dict(policy_set.modules)
    if include_tests:
        modules.update(policy_set.test_modules)
    for name, source in modules.items():
        engine.add_policy(name, source)
    engine.add_data(policy_set.config.to_data(), path="helpdesk.config")
    return engine


class OpaOracle(BaseEngine):
    """An engine evaluating ``data.helpdesk.decision`` with real OPA, in-process."""

    name = "opa-go"

    def __init__(self, policy_set: PolicySet) -> None:
        self.policy_set = policy_set
        self._engine = load_go_engine(policy_set)

    def evaluate(self, request: Request) -> dict[str, Any]:
        return self.evaluate_input(request.to_input())

    def evaluate_input(self, document: dict[str, Any]) -> dict[str, Any]:
        try:
            result = self._engine.eval_document("helpdesk.decision", document)
        except OpaUndefinedError as exc:
            raise UndefinedDecisionError(str(exc), engine=self.name) from exc
        except OpaError as exc:
            raise EngineError(str(exc), engine=self.name) from exc
        if not isinstance(result, dict):
            raise UndefinedDecisionError(f"decision is {type(result).__name__}", engine=self.name)
        return result

    def close(self) -> None:
        self._engine.close()
