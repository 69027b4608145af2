"""The ``rego`` engine: the Rego policies evaluated in-process by regopy (rego-cpp).

The policies are compiled once into a regopy ``Bundle``; each thread gets its
own ``Interpreter`` over that bundle, because one interpreter shared between
threads corrupts results, while the C call releases the GIL so
threads do evaluate in parallel.

rego-cpp fails open if you let it: an unknown builtin, a type error or a rule
reading a missing field yields *undefined*. So strict builtin errors are on,
an error output raises :class:`~helpdesk_policy.errors.EngineError`, and an
undefined decision raises :class:`~helpdesk_policy.errors.UndefinedDecisionError`.
The input is validated before evaluation and always carries every field.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from typing import Any

import regopy

from ..errors import (
    EngineError,
    MalformedDecisionError,
    PolicyLoadError,
    UndefinedDecisionError,
)
from ..models import Request
from ..policyset import DECISION_PATH, PolicySet
from ..regocheck import captured_stdout, compile_error_message
from .base import BaseEngine, RawDecision

__all__ = ["RegoEngine", "compile_bundle"]

log = logging.getLogger(__name__)


def _interpreter() -> regopy.Interpreter:
    interp = regopy.Interpreter()
    interp.strict_built_in_errors = True
    return interp


def compile_bundle(policy_set: PolicySet, entrypoints: tuple[str, ...] = (DECISION_PATH,)) -> regopy.Bundle:
    """Compile the policy modules and config into a reusable regopy bundle.

    The sources are checked first (:meth:`PolicySet.check`): rego-cpp would
    accept recursive rules and then evaluate them without end.

    Raises:
        PolicyLoadError: the Rego is refused by the check or does not
            compile; the message names each file, line and column.
    """
    policy_set.check()
    interp = _interpreter()
    error: regopy.RegoError | None = None
    bundle = None
    # rego-cpp prints its compile errors to the C++ stdout, in the middle of
    # whatever the program writes there: keep them out, and use the exception.
    with captured_stdout() as printed:
        try:
            for name, source in policy_set.modules.items():
                interp.add_module(name, source)
            interp.add_data(policy_set.data())
            bundle = interp.build(None, list(entrypoints))
        except regopy.RegoError as exc:
            error = exc
    if error is not None or bundle is None or not bundle.ok():
        raise PolicyLoadError(
            compile_error_message(f"Rego policies in {policy_set.directory}", error, printed, policy_set.modules)
        ) from None
    _replay(printed)
    return bundle


def _replay(printed: list[str]) -> None:
    # What another thread wrote to stdout while the compile was captured.
    text = "".join(printed)
    if text:
        sys.stdout.write(text)
        sys.stdout.flush()


class RegoEngine(BaseEngine):
    """Evaluate ``data.helpdesk.decision`` with regopy.

    >>> from helpdesk_policy.engines.rego import RegoEngine
    >>> from helpdesk_policy.policyset import PolicySet
    >>> RegoEngine(PolicySet.load()).name
    'rego'
    """

    name = "rego"

    def __init__(self, policy_set: PolicySet, *, entrypoint: str = DECISION_PATH) -> None:
        self.policy_set = policy_set
        self.entrypoint = entrypoint
        self._bundle = compile_bundle(policy_set, (entrypoint,))
        self._local = threading.local()

    def _runner(self) -> regopy.Interpreter:
        interp = getattr(self._local, "interp", None)
        if interp is None:
            interp = self._local.interp = _interpreter()
        return interp

    def evaluate(self, request: Request) -> RawDecision:
        return self.evaluate_input(request.to_input())

    def evaluate_input(self, document: dict[str, Any]) -> RawDecision:
        """Evaluate a raw input document (already validated by the caller)."""
        interp = self._runner()
        try:
            interp.set_input(document)
            output = interp.query_bundle_entrypoint(self._bundle, self.entrypoint)
        except regopy.RegoError as exc:
            raise EngineError(f"evaluation failed: {exc}", engine=self.name) from exc
        except ValueError as exc:
            # regopy parses rego-cpp's JSON output while building the Output
            # object; some outputs are not JSON (rego-cpp prints the two
            # largest doubles as numbers Python cannot read back). Only the
            # parser's position goes in the message: the output may quote input.
            where = f" at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
            raise MalformedDecisionError(f"output is not valid JSON{where}", engine=self.name) from None
        if not output.ok():
            # rego-cpp reports builtin/type errors as an error output, not an exception.
            raise EngineError(f"evaluation error: {str(output)[:500]}", engine=self.name)
        if not output.results or not output.results[0].expressions:
            raise UndefinedDecisionError(f"data.{self.entrypoint.replace('/', '.')} is undefined", engine=self.name)
        value = output.results[0].expressions[0]
        if not isinstance(value, dict):
            raise UndefinedDecisionError(f"decision is not an object: {type(value).__name__}", engine=self.name)
        return value
