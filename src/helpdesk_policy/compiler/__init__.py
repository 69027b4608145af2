"""Rego compiled to Python: an organisation's own policy at compiled speed, proven equal to OPA.

The stock policy has a hand-written Python mirror (the ``native`` engine); an
edited policy used to run only on an interpreter (rego-cpp, about 2 ms a
decision). This package translates the Rego itself:

* :mod:`.parser` — a pure-Python parser (Lark) for the Rego v1 subset
  policies use, whose AST is the one OPA's own ``rego.parse_module`` returns
  (checked against OPA in the tests), with file, row and column on every
  rule, expression and term;
* :mod:`.codegen` — the compiler: one Python function per rule, with Rego's
  semantics (undefined is not false, OPA's total order, set equality where
  ``true != 1``, ``sprintf`` printing numbers as OPA does, type errors that
  halt, conflicting values that are errors). Whatever it does not support it
  *refuses*, naming the file, the line and the construct; a refused policy
  runs on the interpreter, never as a wrong translation;
* :mod:`.values` and :mod:`.builtins` — Rego values in Python and the
  builtins, pinned to the OPA version the conformance oracle embeds.

The ``compiled`` engine (:mod:`helpdesk_policy.engines.compiled`) decides
with it; ``helpdesk-policy compile DIR`` shows what compiles and what is
refused, and ``helpdesk-policy test DIR`` proves the compiled policy equal to
regopy and to OPA's Go evaluator on the organisation's suites and generated
requests.

Importing this package imports nothing heavy: Lark (the ``rego`` extra) is
imported by the first parse.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..policyset import PolicySet
    from .codegen import CompiledPolicy, CompileReport

__all__ = ["compile_policy_set", "analyze_policy_set", "parse_policy_set", "LARK_HINT"]

#: How to install the parser's one dependency.
LARK_HINT = "pip install 'helpdesk-policy[rego]' (the Rego parser needs lark)"

# Compiling the stock policy takes tens of milliseconds; a process building
# several facades over one policy set (a service, a test run) compiles it once.
_CACHE: dict[tuple[str, str], Any] = {}
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 16


def parse_policy_set(policy_set: PolicySet) -> dict[str, dict[str, Any]]:
    """Every policy module of ``policy_set`` (tests excluded) parsed: path -> OPA-shaped AST.

    Raises:
        EngineUnavailableError: lark is not installed (the ``rego`` extra).
        PolicyLoadError: a syntax error, as ``file:row:col: message``.
    """
    try:
        from .parser import parse_module

        return {path: parse_module(source, path) for path, source in sorted(policy_set.modules.items())}
    except ModuleNotFoundError as exc:
        if exc.name != "lark":
            raise
        from ..errors import EngineUnavailableError

        raise EngineUnavailableError(f"the Rego compiler cannot parse without lark; {LARK_HINT}",
                                     engine="compiled") from None


def compile_policy_set(policy_set: PolicySet, *, entrypoint: str = "helpdesk.decision") -> CompiledPolicy:
    """The policy set compiled to Python, with its config and catalogue folded in.

    Compiled once per (policy revision, entrypoint) in a process.

    Raises:
        EngineUnavailableError: lark is not installed.
        PolicyLoadError: a syntax error; :class:`~.codegen.CompileRefused` (a
            ``PolicyLoadError``) when a construct is not supported, naming
            every one with its file and line.
    """
    key = (policy_set.revision, entrypoint)
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
    if hit is not None:
        return hit  # type: ignore[no-any-return]
    from .codegen import compile_policy

    compiled = compile_policy(parse_policy_set(policy_set), data=policy_set.data(), entrypoint=entrypoint)
    with _CACHE_LOCK:
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = compiled
    return compiled


def analyze_policy_set(policy_set: PolicySet) -> CompileReport:
    """What of ``policy_set`` compiles and what is refused (file, line, construct); never raises for
    an unsupported construct (a syntax error still raises ``PolicyLoadError``)."""
    from .codegen import analyze

    return analyze(parse_policy_set(policy_set))
