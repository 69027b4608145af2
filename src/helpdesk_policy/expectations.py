"""What a decision must say: expectations, how a decision is checked against one, ``assert_decision``.

An :class:`Expectation` pins a decision's level (or accepts a range of the
ladder), ``allowed``, reasons and obligations that must be present or absent;
:func:`check_decision` lists every way a decision differs from it, and
:func:`assert_decision` raises with expected vs actual. This is the part of
testing a policy that users' own tests need (:mod:`helpdesk_policy.testing`,
the pytest plugin) and that the expectation suites of ``helpdesk-policy test``
(:mod:`helpdesk_policy.ci.suites`) are written in; it needs neither
hypothesis nor the CI runner.

>>> from helpdesk_policy.expectations import Expectation
>>> e = Expectation(level_at_least="step_up",
...                 reasons=["privileged_target", {"code": "vip_target", "level": "callback"}])
>>> e.level_text(), e.reason_codes
('[step_up, deny]', ['privileged_target', 'vip_target'])
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import field_errors_from_pydantic
from .levels import Level
from .models import Decision

__all__ = [
    "Code",
    "Expectation",
    "ObligationExpectation",
    "ReasonExpectation",
    "assert_decision",
    "check_decision",
    "describe_decision",
]

#: A reason or obligation code, as the decision contract spells them.
Code = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReasonExpectation(_Strict):
    """A reason that must be present, optionally at a given level."""

    code: Code
    level: Level | None = None


class ObligationExpectation(_Strict):
    """An obligation that must be present, optionally with given parameters."""

    code: Code
    within_hours: Annotated[int, Field(ge=0)] | None = None
    fields: list[str] | None = None


class Expectation(_Strict):
    """What a decision must say. Unset fields are not checked.

    ``level`` pins the level; ``level_at_least`` and ``level_at_most`` (both
    inclusive, alone or together) accept a range instead.
    """

    level: Level | None = None
    level_at_least: Level | None = None
    level_at_most: Level | None = None
    allowed: bool | None = None
    reasons: list[ReasonExpectation] = Field(default_factory=list)
    reasons_absent: list[Code] = Field(default_factory=list)
    obligations: list[ObligationExpectation] = Field(default_factory=list)
    obligations_absent: list[Code] = Field(default_factory=list)

    @field_validator("reasons", "obligations", mode="before")
    @classmethod
    def _codes_as_objects(cls, value: Any) -> Any:
        # A bare code is shorthand for {code: ...}; expanding it here (rather
        # than a ``str | Model`` union) keeps error paths free of union-branch noise.
        if isinstance(value, list):
            return [{"code": v} if isinstance(v, str) else v for v in value]
        return value

    @model_validator(mode="after")
    def _meaningful(self) -> Expectation:
        if (self.level is None and self.level_range is None and self.allowed is None and not self.reasons
                and not self.reasons_absent and not self.obligations and not self.obligations_absent):
            raise ValueError("states nothing to check: give level (or level_at_least/level_at_most), allowed, "
                             "reasons or obligations")
        problems = []
        if self.level is not None and self.level_range is not None:
            problems.append("give either level or level_at_least/level_at_most, not both")
        lo, hi = self.level_at_least, self.level_at_most
        if lo is not None and hi is not None and lo > hi:
            problems.append(f"level_at_least {lo.value!r} is above level_at_most {hi.value!r}")
        if self.level is not None and self.allowed is not None and self.allowed != self.level.allowed:
            problems.append(f"allowed={self.allowed} contradicts level {self.level.value!r}")
        if self.allowed is True and lo is Level.DENY:
            problems.append("allowed=True contradicts level_at_least 'deny'")
        if self.allowed is False and hi is not None and hi < Level.DENY:
            problems.append(f"allowed=False contradicts level_at_most {hi.value!r}")
        both = sorted(set(self.reason_codes) & set(self.reasons_absent))
        if both:
            problems.append(f"reasons {both} are both required and absent")
        both = sorted(set(self.obligation_codes) & set(self.obligations_absent))
        if both:
            problems.append(f"obligations {both} are both required and absent")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def level_range(self) -> tuple[Level, Level] | None:
        """``(lowest, highest)`` accepted level when a range is given (the open end filled in), else None."""
        if self.level_at_least is None and self.level_at_most is None:
            return None
        return (self.level_at_least or Level.SELF_SERVICE, self.level_at_most or Level.DENY)

    def level_text(self) -> str | None:
        """The level expectation as people read it: ``callback`` or ``[step_up, manager_approval]``."""
        if self.level is not None:
            return self.level.value
        bounds = self.level_range
        return None if bounds is None else f"[{bounds[0].value}, {bounds[1].value}]"

    @property
    def reason_codes(self) -> list[str]:
        return [r.code for r in self.reasons]

    @property
    def obligation_codes(self) -> list[str]:
        return [o.code for o in self.obligations]


def _reason_line(code: str, decision: Decision) -> str:
    for r in decision.reasons:
        if r.code == code:
            return f"{r.code} [{r.level.value}]: {r.message}"
    return code


def _obligation_text(o: Any) -> str:
    params = []
    if o.within_hours is not None:
        params.append(f"within_hours={o.within_hours}")
    if o.fields is not None:
        params.append(f"fields={','.join(o.fields)}")
    return f"{o.code}({'; '.join(params)})" if params else o.code


def describe_decision(decision: Decision) -> list[str]:
    """The decision as a few readable lines: level, reasons with messages, obligations."""
    lines = [f"level: {decision.level.value} ({'allowed' if decision.allowed else 'denied'})"
             + (" [degraded]" if decision.degraded else "")]
    lines += [f"reason {r.code} [{r.level.value}]: {r.message}" for r in decision.reasons]
    lines.append("obligations: " + (", ".join(_obligation_text(o) for o in decision.obligations) or "(none)"))
    return lines


def check_decision(decision: Decision, expect: Expectation) -> list[str]:
    """Every way ``decision`` differs from ``expect``, one readable line each (empty = match)."""
    out: list[str] = []
    if expect.level is not None and decision.level != expect.level:
        out.append(f"level: expected {expect.level.value}, got {decision.level.value}")
    bounds = expect.level_range
    if bounds is not None and not bounds[0] <= decision.level <= bounds[1]:
        out.append(f"level: expected in {expect.level_text()}, got {decision.level.value}")
    if expect.allowed is not None and decision.allowed != expect.allowed:
        out.append(f"allowed: expected {expect.allowed}, got {decision.allowed}")
    actual_reasons = {r.code: r for r in decision.reasons}
    for spec in expect.reasons:
        code = spec.code
        if code not in actual_reasons:
            out.append(f"reason missing: {code}")
        elif spec.level is not None and actual_reasons[code].level != spec.level:
            out.append(f"reason {code}: expected level {spec.level.value}, got {actual_reasons[code].level.value}")
    for code in expect.reasons_absent:
        if code in actual_reasons:
            out.append(f"reason unexpected: {_reason_line(code, decision)}")
    actual_obligations = {o.code: o for o in decision.obligations}
    for ospec in expect.obligations:
        code = ospec.code
        actual = actual_obligations.get(code)
        if actual is None:
            out.append(f"obligation missing: {code}")
            continue
        if ospec.within_hours is not None and actual.within_hours != ospec.within_hours:
            out.append(f"obligation {code}: expected within_hours={ospec.within_hours}, got {actual.within_hours}")
        if ospec.fields is not None and sorted(actual.fields or []) != sorted(ospec.fields):
            out.append(f"obligation {code}: expected fields {sorted(ospec.fields)}, got {sorted(actual.fields or [])}")
    for code in expect.obligations_absent:
        if code in actual_obligations:
            out.append(f"obligation unexpected: {_obligation_text(actual_obligations[code])}")
    return out


def assert_decision(
    decision: Decision,
    *,
    level: Level | str | None = None,
    allowed: bool | None = None,
    reasons: Iterable[str | Mapping[str, Any]] = (),
    reasons_absent: Iterable[str] = (),
    obligations: Iterable[str | Mapping[str, Any]] = (),
    obligations_absent: Iterable[str] = (),
    level_at_least: Level | str | None = None,
    level_at_most: Level | str | None = None,
) -> None:
    """Assert ``decision`` says what you expect; on mismatch, show expected vs actual.

    ``level`` pins the level; ``level_at_least`` / ``level_at_most`` (inclusive,
    alone or together, not with ``level``) accept a range of the ladder.
    ``reasons`` / ``obligations`` must be present (codes, or mappings that also
    pin a reason's ``level`` or an obligation's ``within_hours``/``fields``);
    ``*_absent`` must not be. Unset arguments are not checked.

    Raises:
        AssertionError: listing the level mismatch, missing and unexpected reason
            codes (with their messages) and obligations, then the whole actual decision.
        ValueError: the expectation itself is invalid (unknown level, bad code).

    Example:
        >>> from helpdesk_policy import HelpdeskPolicy
        >>> from helpdesk_policy.expectations import assert_decision
        >>> d = HelpdeskPolicy(engine="native").decide({
        ...     "request": {"id": "T-1", "action": "mfa_reset", "channel": "walk_in"},
        ...     "actor": {"id": "u-1", "type": "human", "relationship": "self",
        ...               "authenticated": True, "auth_strength": "mfa"},
        ...     "target": {"id": "u-1", "type": "human", "privileged": False,
        ...                "privilege_tier": 0, "vip": False, "status": "active"}})
        >>> assert_decision(d, level="step_up", obligations=["terminate_sessions"])
        >>> assert_decision(d, level_at_least="step_up", level_at_most="callback")
        >>> assert_decision(d, level_at_least="manager_approval")
        Traceback (most recent call last):
          ...
        AssertionError: decision does not match the expectation:
          level: expected in [manager_approval, deny], got step_up
        ...
        >>> assert_decision(d, level="callback", reasons_absent=["action_baseline"])
        Traceback (most recent call last):
          ...
        AssertionError: decision does not match the expectation:
          level: expected callback, got step_up
          reason unexpected: action_baseline [step_up]: mfa_reset starts at step_up...
        ...
    """
    __tracebackhide__ = True  # pytest shows the caller's line, not this helper's
    try:
        expect = Expectation.model_validate({
            "level": level, "level_at_least": level_at_least, "level_at_most": level_at_most, "allowed": allowed,
            "reasons": list(reasons), "reasons_absent": list(reasons_absent),
            "obligations": list(obligations), "obligations_absent": list(obligations_absent),
        })
    except ValidationError as exc:
        detail = "; ".join(str(e) for e in field_errors_from_pydantic(exc))
        raise ValueError(f"assert_decision(): invalid expectation: {detail}") from None
    mismatches = check_decision(decision, expect)
    if mismatches:
        lines = ["decision does not match the expectation:", *(f"  {m}" for m in mismatches),
                 "actual decision:", *(f"  {line}" for line in describe_decision(decision))]
        raise AssertionError("\n".join(lines))
