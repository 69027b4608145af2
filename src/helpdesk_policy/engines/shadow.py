"""Shadow mode: decide with two engines, log any disagreement, answer with the stricter.

Use it to roll out an engine (OPA servers next to the embedded Rego) or a
policy change (the new policy set as the shadow) while every decision stays
at least as strict as the one you trust today:

>>> from helpdesk_policy import HelpdeskPolicy
>>> from helpdesk_policy.engines import load_engine
>>> from helpdesk_policy.engines.shadow import ShadowEngine
>>> from helpdesk_policy.policyset import PolicySet
>>> ps = PolicySet.load()
>>> shadowed = ShadowEngine(load_engine("native", ps), load_engine("rego", ps))
>>> policy = HelpdeskPolicy(engine=shadowed, fallback=["native"])
>>> policy.engine_names
['native+rego', 'native']

Rules:

* The **primary** is authoritative for failure: if it fails, the wrapper
  fails (the engine chain then moves on as usual).
* If the **shadow** fails, the primary's verdict is used and a warning is
  logged; shadow failures never cost a decision.
* If both answer and their parity keys (guarantee 3: level, allowed,
  requirements, reason codes, obligations) differ, a WARNING is logged on the
  ``helpdesk_policy.shadow`` logger with both keys and the request's input
  digest (never the request itself), and the **stricter** verdict is
  returned: the higher level; at the same level, the shadow's if its
  obligations are a strict superset of the primary's; otherwise the primary's.
* ``evaluate`` runs the two one after the other; ``aevaluate`` runs them
  concurrently.

The decision's ``engine`` is the wrapper's name, ``"<primary>+<shadow>"``
by default.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
from collections.abc import Mapping
from typing import Any

from ..digest import input_digest
from ..errors import MalformedDecisionError
from ..models import Request, Verdict
from ..policyset import PolicySet
from .base import Engine, RawDecision, checked_verdict

__all__ = ["ShadowEngine"]

log = logging.getLogger("helpdesk_policy.shadow")


class ShadowEngine:
    """An engine that asks ``primary`` and ``shadow`` and answers with the stricter verdict.

    Args:
        primary: the engine you trust; its failures are the wrapper's failures.
        shadow: the engine under evaluation; its failures are only logged.
        name: the name decisions record (default ``"<primary>+<shadow>"``).

    Counters (for metrics): ``agreements``, ``disagreements``, ``shadow_failures``,
    ``shadow_won`` (disagreements where the shadow's stricter verdict was returned).
    """

    def __init__(self, primary: Engine, shadow: Engine, *, name: str | None = None) -> None:
        self.primary = primary
        self.shadow = shadow
        self.name = name or f"{primary.name}+{shadow.name}"
        self._lock = threading.Lock()
        self.agreements = 0
        self.disagreements = 0
        self.shadow_failures = 0
        self.shadow_won = 0

    @classmethod
    def load(
        cls, primary: str, shadow: str, policy_set: PolicySet | None = None,
        engine_options: Mapping[str, Mapping[str, Any]] | None = None, *, name: str | None = None,
    ) -> ShadowEngine:
        """Build both engines by name (see :func:`~helpdesk_policy.engines.load_engine`)."""
        from . import load_engine

        ps = policy_set if policy_set is not None else PolicySet.load()
        opts = engine_options or {}
        first = load_engine(primary, ps, **dict(opts.get(primary, {})))
        try:
            second = load_engine(shadow, ps, **dict(opts.get(shadow, {})))
        except BaseException:
            first.close()
            raise
        return cls(first, second, name=name)

    def __repr__(self) -> str:
        return f"<ShadowEngine {self.name} disagreements={self.disagreements}>"

    # ----------------------------------------------------------------- evaluate

    def evaluate(self, request: Request) -> RawDecision:
        primary_raw = self.primary.evaluate(request)
        primary = _verdict(self.primary, primary_raw)
        try:
            shadow_raw = self.shadow.evaluate(request)
            shadow = _verdict(self.shadow, shadow_raw)
        except Exception as exc:  # noqa: BLE001 - a shadow failure never costs a decision
            self._shadow_failed(exc)
            return primary_raw
        return self._pick(request, primary_raw, primary, shadow)

    async def aevaluate(self, request: Request) -> RawDecision:
        primary_result, shadow_result = await asyncio.gather(
            self.primary.aevaluate(request), self.shadow.aevaluate(request), return_exceptions=True
        )
        if isinstance(primary_result, BaseException):
            raise primary_result
        primary = _verdict(self.primary, primary_result)
        if isinstance(shadow_result, BaseException):
            if not isinstance(shadow_result, Exception):
                raise shadow_result  # cancellation and the like are not shadow failures
            self._shadow_failed(shadow_result)
            return primary_result
        try:
            shadow = _verdict(self.shadow, shadow_result)
        except MalformedDecisionError as exc:
            self._shadow_failed(exc)
            return primary_result
        return self._pick(request, primary_result, primary, shadow)

    def close(self) -> None:
        try:
            self.primary.close()
        finally:
            self.shadow.close()

    def __enter__(self) -> ShadowEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- internals

    def _shadow_failed(self, exc: BaseException) -> None:
        with self._lock:
            self.shadow_failures += 1
        log.warning("shadow engine %r failed (the primary %r answers): %s", self.shadow.name, self.primary.name, exc)

    def _pick(self, request: Request, primary_raw: RawDecision, primary: Verdict, shadow: Verdict) -> RawDecision | Verdict:
        p_key, s_key = primary.parity_key(), shadow.parity_key()
        if p_key == s_key:
            with self._lock:
                self.agreements += 1
            return primary_raw
        shadow_stricter = _stricter(shadow, primary)
        with self._lock:
            self.disagreements += 1
            if shadow_stricter:
                self.shadow_won += 1
        log.warning(
            "shadow disagreement on %s: primary %s=%s shadow %s=%s; answering with %s's (stricter) verdict",
            input_digest(request), self.primary.name, _show(p_key), self.shadow.name, _show(s_key),
            self.shadow.name if shadow_stricter else self.primary.name,
        )
        return shadow if shadow_stricter else primary_raw


def _verdict(engine: Engine, raw: Any) -> Verdict:
    # The engine chain's own check: the stricter-of-two choice is only as good as
    # the verdicts it compares (a custom engine's unvalidated Verdict could
    # claim a level its reasons do not support).
    if isinstance(raw, Mapping):
        raw = {k: v for k, v in raw.items() if k != "decision_id"}
    return checked_verdict(engine, raw)


def _stricter(candidate: Verdict, than: Verdict) -> bool:
    """True when ``candidate`` is strictly stricter than ``than``."""
    if candidate.level != than.level:
        return candidate.level > than.level
    mine = {o.code for o in candidate.obligations}
    theirs = {o.code for o in than.obligations}
    return mine > theirs


def _show(key: tuple[Any, ...]) -> dict[str, Any]:
    level, allowed, requirements, reasons, obligations, constraints = key
    return {
        "level": str(level), "allowed": allowed, "requirements": list(requirements),
        "reasons": list(reasons), "obligations": list(obligations),
        # The constraints name identities (approvers, callback targets): a digest
        # tells two verdicts apart without putting an identifier in the log.
        "constraints": None if constraints is None else "sha256:" + hashlib.sha256(constraints.encode()).hexdigest()[:16],
    }

