"""Policy exceptions: explicit, approved, time-bound overrides of a decision that never disappear silently.

Sometimes the policy's answer is right in general and wrong for one person
for a few days: an administrator abroad whose phone MFA reset would need a
callback to a contact they cannot reach, say. A :class:`PolicyException`
records such an override as data, never as an edit of the policy:

* its **scope**: one identity (``target_id``), one action, optionally some channels;
* what the decision **becomes** (``level``): ``step_up`` or ``manager_approval``,
  never ``self_service`` (someone always verifies the requester), and never
  a lift of a ``deny``;
* **who asked** (``requested_by``), **why** (``reason``, a code, and
  ``reference``, the risk-acceptance or change ticket), **who approved**
  (``approved_by``, ``approver_type``) under the separation-of-duty rules of
  every approval (SPEC rule 4: an approver is never the requester, nor the
  identity the exception is about, and an AI agent never satisfies an
  approval; NIST CSF 2.0 PR.AA-05, OWASP LLM06 excessive agency);
* its **window** (``starts_at`` .. ``expires_at``), capped by the policy's
  ``exception_max_hours`` (NIST CSF 2.0 ID.RA-07: accepted risks are tracked
  and time-bound).

:func:`apply_exceptions` is the one place they take effect, after the engines
decided (so no engine, Rego or remote, can fake one). Every exception whose
scope the request matches is listed in the decision's ``exceptions``:
``applied``, ``expired``, ``revoked`` or ``not_applicable`` with a
``why_not``. An expired one is therefore reported on every decision it would
have changed, and the decision log carries it. An exception never applies to:

* a ``deny`` (``deny_not_overridable``): the reasons name the formal process;
* a degraded decision (``degraded_decision``): an engine failed, fail closed;
* a request made by an AI agent (``ai_agent_actor``): an agent never acts
  under a loosened decision (OWASP LLM06, excessive agency);
* a request carrying a high-risk signal of the policy (``high_risk_signal``):
  caller-ID mismatch, threat-intelligence match, leaked credential,
  impossible travel, or as many failed verifications as send a request to
  callback, are what a social-engineering attack looks like (CISA
  AA23-320A), and an exception granted for the real person must not serve the
  impersonator;
* a decision at or below its level (``not_lower``), before its start
  (``not_started``), or once the policy's cap is shorter than its window
  (``exceeds_policy_max``). When several are in force, the one that loosens
  least (the highest level, then the smallest id) decides; the others are
  ``superseded`` (so the decision is never below the level of any exception
  in force: when the strictest one is at or above the policy's level,
  nothing applies).

>>> from datetime import datetime, timedelta, timezone
>>> approved = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)
>>> exc = PolicyException(
...     id="EXC-2026-0042", target_id="u-20417", action="mfa_reset", channels=["phone"],
...     level="manager_approval", requested_by="u-30001", reason="travel_no_callback_contact",
...     reference="RISK-2026-117", approved_by="u-40002", approver_type="human",
...     approved_at=approved, expires_at=approved + timedelta(hours=48))
>>> exc.starts_at == approved, exc.duration_hours
(True, 48.0)
>>> PolicyException(**{**exc.model_dump(), "approved_by": "U-30001"})
Traceback (most recent call last):
...
pydantic_core._pydantic_core.ValidationError: 1 validation error for PolicyException
approved_by
  must not be the requester (requested_by): an approver never approves their own request [type=separation_of_duties, input_value=None, input_type=NoneType]
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Annotated, Any, Literal, Protocol, runtime_checkable

from pydantic import AfterValidator, BeforeValidator, Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from .credentials import not_a_credential
from .errors import FieldError, _ValidationFailure, field_errors_from_pydantic
from .levels import Level
from .models import (
    EXCEPTION_APPLIED_CODE,
    EXCEPTION_ID_PATTERN,
    TIMESTAMP_FORMAT,
    Action,
    ActorType,
    Channel,
    Constraints,
    Decision,
    ExceptionEffect,
    ExceptionWhyNot,
    Identifier,
    Reason,
    Request,
    RiskSignal,
    _not_a_number,
    _Strict,
    field_adapter,
)

__all__ = [
    "PolicyException",
    "RevokedException",
    "ExceptionSource",
    "InvalidExceptionError",
    "apply_exceptions",
    "parse_exception",
    "exception_payload",
    "EXCEPTION_LEVELS",
    "EXCEPTION_REFS",
    "EXCEPTION_APPLIED_CODE",
]

#: What an exception may make a decision: someone always verifies the requester.
EXCEPTION_LEVELS: tuple[Level, ...] = (Level.STEP_UP, Level.MANAGER_APPROVAL)

#: The guidance the ``policy_exception_applied`` reason cites: a tracked,
#: time-bound risk acceptance (NIST CSF 2.0 ID.RA-07), approved by someone
#: other than the requester (PR.AA-05), for a helpdesk that social engineers
#: target (CISA AA23-320A), still at or above an authenticated step-up
#: (NIST SP 800-63B-4).
EXCEPTION_REFS: tuple[str, ...] = (
    "NIST-CSF-2.0:ID.RA-07", "NIST-CSF-2.0:PR.AA-05", "CISA-AA23-320A", "NIST-SP-800-63B-4",
)

#: A code, never free text: nothing secret can be typed into an exception.
Code = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
#: The id of a risk-acceptance or change ticket (``RISK-2026-117``, ``CHG0012345``).
Reference = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:#-]{0,127}$"), BeforeValidator(not_a_credential)]
ExceptionId = Annotated[str, Field(pattern=EXCEPTION_ID_PATTERN), BeforeValidator(not_a_credential)]
#: An identifier a person gives (who asked, who approved, about whom): never credential-shaped.
PartyId = Annotated[Identifier, BeforeValidator(not_a_credential)]


def _aware_utc(value: datetime) -> datetime:
    # A time without a zone is ambiguous by hours: refused, never read as local time.
    if value.tzinfo is None or value.utcoffset() is None:
        raise PydanticCustomError("timezone_aware", "must carry a time zone (Z or +hh:mm)")
    return value.astimezone(timezone.utc)


Moment = Annotated[datetime, BeforeValidator(_not_a_number), AfterValidator(_aware_utc)]

_SOD = "separation_of_duties"


class InvalidExceptionError(_ValidationFailure, ValueError):
    """A policy exception is not valid; ``errors`` names every bad field (never its value)."""

    what = "policy exception"


class PolicyException(_Strict):
    """An approved, time-bound override of the decision for one identity and action.

    Validation names every bad field and never echoes a value. The
    separation-of-duty rules (``approved_by`` is neither ``requested_by`` nor
    ``target_id``; ``approver_type`` is ``human``) are checked on canonical
    identifiers, so ``U-1`` and ``u-1`` are one person. The duration cap is not
    the model's: it is the policy's (``exception_max_hours``), checked when the
    exception is granted and again on every decision it touches.
    """

    id: ExceptionId
    """Stable id (its ledger chain is ``exception:<id>``)."""
    target_id: PartyId
    """The identity whose decisions it changes (canonical form)."""
    action: Action
    """The one action it is about."""
    channels: list[Channel] | None = Field(default=None, min_length=1, max_length=len(Channel))
    """The channels it covers; ``null`` means any channel."""
    level: Literal["step_up", "manager_approval"]
    """What the decision becomes: never ``self_service``, and a ``deny`` is never lifted."""
    requested_by: PartyId
    """Who asked for the exception."""
    reason: Code
    """Why, as a code (``travel_no_callback_contact``): no free text, so nothing secret is typed in."""
    reference: Reference
    """The risk-acceptance or change ticket that records the decision to accept the risk."""
    approved_by: PartyId
    """Who approved: never the requester, never the identity it is about."""
    approver_type: Literal["human", "ai_agent"]
    """``human``; ``ai_agent`` is refused (an AI agent never satisfies an approval)."""
    approved_at: Moment
    """When it was approved (UTC)."""
    starts_at: Moment | None = None
    """When it starts applying (UTC); default ``approved_at``. Never before the approval."""
    expires_at: Moment
    """When it stops applying (UTC), after ``starts_at``."""

    @model_validator(mode="after")
    def _duties(self) -> PolicyException:
        problems = _problems(self.__dict__)
        if problems:
            raise _cross_field_error(type(self).__name__, problems)
        if self.starts_at is None:
            # Frozen: filled in place, once, while the model is being built.
            self.__dict__["starts_at"] = self.approved_at
        return self

    @property
    def start(self) -> datetime:
        """``starts_at`` (always set once validated)."""
        return self.starts_at or self.approved_at

    @property
    def duration_hours(self) -> float:
        """From start to expiry, in hours."""
        return (self.expires_at - self.start).total_seconds() / 3600

    def covers(self, target_id: str, action: Action | str, channel: Channel | str) -> bool:
        """Whether the scope names this (canonical) identity, action and channel."""
        return (self.target_id == target_id and self.action.value == _value(action)
                and (self.channels is None or _value(channel) in {c.value for c in self.channels}))


class RevokedException(PolicyException):
    """A policy exception revoked before its expiry: it never applies again.

    Revocation is not timed against the decision: once revoked, an exception
    is reported ``revoked`` on every decision it touches, even one decided at
    an earlier ``now`` (a clock behind the revoker's never revives it).
    """

    revoked_at: Moment
    """When it was revoked (UTC)."""
    revoked_by: PartyId
    """Who revoked it (anyone may: revoking only makes decisions stricter)."""
    revoke_reason: Code
    """Why, as a code."""


@runtime_checkable
class ExceptionSource(Protocol):
    """Where the facade finds the exceptions that may touch a decision.

    :class:`~helpdesk_policy.ledger.ExceptionRegistry` is the stock one (the
    ledger). A source returns every exception, in any state (active, expired,
    revoked, not started), whose scope names this identity and action;
    :func:`apply_exceptions` judges the state and the channel. It is called on
    every decision, so it should answer from memory; if it raises, the
    decision stands as the policy made it (stricter), and the failure is
    logged and counted.
    """

    def exceptions_for(self, target_id: str, action: str) -> Sequence[PolicyException]:
        """Every exception for ``target_id`` (canonical form) and ``action``."""
        ...


def _value(x: Any) -> str:
    return x.value if hasattr(x, "value") else str(x)


def _problems(v: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The cross-field rules, as ``(field, message)``; a missing value skips the rules that need it.

    Messages name fields, never values (an id may be a person's e-mail address).
    """
    problems: list[tuple[str, str]] = []
    approver = v.get("approved_by")
    if approver is not None:
        # Identifier values are canonical already (models.canonical_identifier).
        if approver == v.get("requested_by"):
            problems.append(("approved_by", "must not be the requester (requested_by): "
                                            "an approver never approves their own request"))
        if approver == v.get("target_id"):
            problems.append(("approved_by", "must not be the identity the exception is about (target_id)"))
    if v.get("approver_type") == "ai_agent":
        problems.append(("approver_type", "an AI agent never satisfies an approval: a person must approve"))
    approved, expires = v.get("approved_at"), v.get("expires_at")
    starts = v.get("starts_at") or approved
    if starts is not None and approved is not None and starts < approved:
        problems.append(("starts_at", "must not be before approved_at (no back-dated exception)"))
    if starts is not None and expires is not None and expires <= starts:
        problems.append(("expires_at", "must be after starts_at"))
    channels = v.get("channels")
    if channels is not None and len(set(channels)) != len(channels):
        problems.append(("channels", "lists a channel twice"))
    return problems


def _cross_field_error(title: str, problems: list[tuple[str, str]]) -> ValidationError:
    return ValidationError.from_exception_data(title, [
        InitErrorDetails(type=PydanticCustomError(_SOD, message), loc=(path,), input=None)
        for path, message in problems
    ])


def parse_exception(data: PolicyException | Mapping[str, Any]) -> PolicyException:
    """Validate ``data`` into a :class:`PolicyException` (or a :class:`RevokedException`).

    Every problem is listed at once, field errors and the separation-of-duty
    rules together (pydantic skips the model's rules once a field fails, so
    they are checked here on the fields valid alone). A model instance is
    dumped and validated again: one built with ``model_construct`` or
    ``model_copy(update=…)`` never was.

    Raises:
        InvalidExceptionError: naming every bad field, never a value.
    """
    if isinstance(data, PolicyException):
        data = data.model_dump(warnings=False)
    if not isinstance(data, Mapping):
        raise InvalidExceptionError([FieldError("(root)", "must be a mapping of the exception's fields")])
    model = RevokedException if "revoked_at" in data else PolicyException
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        errors = list(field_errors_from_pydantic(exc, model=model))
    valid: dict[str, Any] = {}
    for name, value in data.items():
        if name in model.model_fields:
            try:
                valid[name] = field_adapter(model, name).validate_python(value)
            except ValidationError:
                pass
    seen = {(e.path, e.message) for e in errors}
    errors += [FieldError(p, m) for p, m in _problems(valid) if (p, m) not in seen]
    raise InvalidExceptionError(errors)


def exception_payload(exception: PolicyException) -> dict[str, Any]:
    """The exception as the ledger's ``granted`` event holds it: the grant's fields only,
    times as the ledger writes them (UTC, microseconds, ``Z``)."""
    doc = exception.model_dump(mode="json", include=set(PolicyException.model_fields))
    for key, value in (("approved_at", exception.approved_at), ("starts_at", exception.start),
                       ("expires_at", exception.expires_at)):
        doc[key] = value.strftime(TIMESTAMP_FORMAT)
    return doc


# --------------------------------------------------------------------------- applying

#: Evidence fields a ``record_evidence`` obligation asks for because of one
#: requirement (obligations.rego's evidence_fields): an exception that drops
#: the requirement drops them, so the evidence check asks for what the final
#: level requires (and still everything else the policy asked for).
_REQUIREMENT_EVIDENCE: dict[str, tuple[str, ...]] = {
    "manager_approval": ("approver",),
    "out_of_band_callback": ("callback_contact", "callback_contact_source", "callback_answered_by"),
}


def apply_exceptions(
    decision: Decision,
    request: Request,
    candidates: Iterable[PolicyException],
    *,
    now: datetime,
    max_hours: int,
    high_risk_signals: Collection[RiskSignal | str] = (),
    failed_verifications_limit: int | None = None,
) -> Decision:
    """The decision once the policy exceptions among ``candidates`` are taken into account. Pure.

    Each candidate whose scope matches the request (its canonical target id,
    its action, and its channel when the exception names channels) is listed
    in the result's ``exceptions`` with what it did. At most one applies: of
    those in force, the one with the highest level (the least loosening),
    then the smallest id, and only if that level is below the decision's.
    When one applies, the decision's level becomes the exception's, with that
    level's requirements; its approver constraint stays only when the new
    level needs a manager's approval, the callback constraint goes; the
    ``record_evidence`` obligation stops asking for the evidence of the
    dropped checks; every other obligation stays (revoking a replaced
    credential, ending sessions, notifying the holder all still apply). The
    reasons the policy gave stay, plus ``policy_exception_applied`` naming
    the exception, its reason code, its reference and expiry (no person).

    Args:
        decision: what the engines decided (its ``exceptions`` empty).
        request: the request decided.
        candidates: exceptions for this identity and action, in any state
            (:meth:`ExceptionSource.exceptions_for`).
        now: the time to judge the windows by (aware).
        max_hours: the policy's current cap (``exception_max_hours``): an
            exception whose window is longer does not apply.
        high_risk_signals: the policy's high-risk signals
            (``config.high_risk_signals``): a request carrying one gets no
            exception (CISA AA23-320A: what an impersonation attempt looks like).
        failed_verifications_limit: the policy's
            ``failed_verifications_callback``: a request for an identity with
            this many failed verifications in 24 hours gets no exception
            either (``why_not: high_risk_signal``); ``None``: not checked.

    Raises:
        ValueError: ``now`` has no time zone.
        InvalidExceptionError: a matching candidate is not a valid exception
            (the facade then keeps the decision as the policy made it).
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must carry a time zone")
    req, target = request.request, request.target
    # Validated again: a source may hand over a model built without validation
    # (model_construct), and only a valid exception may touch a decision.
    matching = [parse_exception(c) for c in candidates if c.covers(target.id, req.action, req.channel)]
    if not matching:
        return decision
    before = decision.level
    signals = {_value(s) for s in high_risk_signals}
    blocked: ExceptionWhyNot | None = None
    if before is Level.DENY:
        blocked = "deny_not_overridable"
    elif decision.degraded:
        blocked = "degraded_decision"
    elif request.actor.type is ActorType.AI_AGENT:
        blocked = "ai_agent_actor"
    elif any(s.value in signals for s in request.context.risk_signals) or (
            failed_verifications_limit is not None
            and request.context.failed_verifications_24h >= failed_verifications_limit):
        blocked = "high_risk_signal"

    effects: dict[str, ExceptionEffect] = {}
    in_force: list[PolicyException] = []
    seen: set[str] = set()
    for exc in sorted(matching, key=lambda c: c.id):
        if exc.id in seen:
            continue  # one id once (a source listing it twice changes nothing)
        seen.add(exc.id)
        status, why_not = _state(exc, now, max_hours, blocked)
        if status == "in_force":
            in_force.append(exc)
        else:
            effects[exc.id] = _effect(exc, status, before, before, why_not)
    chosen: PolicyException | None = None
    if in_force:
        # The least loosening exception in force decides: the highest level,
        # then the smallest id. At or above the policy's level it changes
        # nothing, and a lower one in force beside it does not apply either.
        best = min(in_force, key=lambda c: (-Level(c.level).rank, c.id))
        chosen = best if Level(best.level) < before else None
        for exc in in_force:
            if exc is chosen:
                effects[exc.id] = _effect(exc, "applied", before, Level(exc.level), None)
            elif Level(exc.level) >= before:
                effects[exc.id] = _effect(exc, "not_applicable", before, before, "not_lower")
            else:
                effects[exc.id] = _effect(exc, "not_applicable", before, before, "superseded")
    listed = sorted(effects.values(), key=lambda e: (e.status != "applied", e.id))
    if chosen is None:
        return decision.model_copy(update={"exceptions": listed})
    return _lowered(decision, chosen, listed)


def _state(exc: PolicyException, now: datetime, max_hours: int,
           blocked: ExceptionWhyNot | None) -> tuple[str, ExceptionWhyNot | None]:
    """``(status, why_not)`` of one matching exception; ``in_force`` if it could apply."""
    if isinstance(exc, RevokedException):
        return "revoked", None
    if now >= exc.expires_at:
        return "expired", None
    if now < exc.start:
        return "not_applicable", "not_started"
    if blocked is not None:
        return "not_applicable", blocked
    if exc.duration_hours > max_hours:
        return "not_applicable", "exceeds_policy_max"
    return "in_force", None


def _effect(exc: PolicyException, status: str, before: Level, after: Level,
            why_not: ExceptionWhyNot | None) -> ExceptionEffect:
    return ExceptionEffect(id=exc.id, status=status, level_before=before, level_after=after,  # type: ignore[arg-type]
                           expires_at=exc.expires_at, why_not=why_not)


def _lowered(decision: Decision, exc: PolicyException, effects: list[ExceptionEffect]) -> Decision:
    before, after = decision.level, Level(exc.level)
    requirements = after.requirements
    constraints = decision.constraints
    if constraints is not None:
        constraints = Constraints(
            approver=constraints.approver if "manager_approval" in requirements else None, callback=None)
    dropped = {f for req in before.requirements if req not in requirements for f in _REQUIREMENT_EVIDENCE.get(req, ())}
    obligations = [
        o.model_copy(update={"fields": [f for f in o.fields if f not in dropped]})
        if o.code == "record_evidence" and o.fields else o
        for o in decision.obligations
    ]
    expires = exc.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")  # to the second: for a person
    reason = Reason(
        code=EXCEPTION_APPLIED_CODE, level=after, refs=list(EXCEPTION_REFS),
        message=(f"Policy exception {exc.id} ({exc.reason}, reference {exc.reference}) lowers this decision "
                 f"from {before.value} to {after.value} until {expires}, approved under separation of duties "
                 f"(never by whoever asked for it, nor by the account it is about). The policy's other reasons still describe the risk: complete "
                 f"every {after.value} check, and if anything is unclear, refuse and escalate to security."),
    )
    slug = "-" + before.value.replace("_", "-")
    playbook = decision.playbook.removesuffix(slug) + "-" + after.value.replace("_", "-")
    # Validated, not constructed: a lowered decision must pass every consistency rule.
    return Decision.model_validate({
        **decision.__dict__,
        "level": after,
        "allowed": after.allowed,
        "requirements": requirements,
        "reasons": [*decision.reasons, reason],
        "obligations": obligations,
        "playbook": playbook,
        "constraints": constraints,
        "exceptions": effects,
    })

