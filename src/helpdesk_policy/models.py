"""Typed models of a helpdesk request and of a decision (SPEC §3 and §4).

Every vocabulary is a closed enum: an unknown action, channel or signal is a
validation error, never silently ignored. Unknown fields are errors too, so a
typo (``privilege_teir``) cannot quietly fall back to a default.

>>> from helpdesk_policy.models import parse_request
>>> req = parse_request({
...     "request": {"id": "INC-1", "action": "password_reset", "channel": "self_service_portal"},
...     "actor": {"id": "u-1", "type": "human", "relationship": "self",
...               "authenticated": True, "auth_strength": "mfa"},
...     "target": {"id": "u-1", "type": "human", "privileged": False,
...                "privilege_tier": 0, "vip": False, "status": "active"},
... })
>>> req.request.action
<Action.PASSWORD_RESET: 'password_reset'>
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Mapping
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from .errors import FieldError, InvalidRequestError, field_errors_from_pydantic
from .levels import Level

__all__ = [
    "Action",
    "Channel",
    "ActorType",
    "Relationship",
    "AuthStrength",
    "TargetType",
    "TargetStatus",
    "RiskSignal",
    "RequestInfo",
    "Actor",
    "Target",
    "Context",
    "Request",
    "Reason",
    "Obligation",
    "Verdict",
    "Decision",
    "parse_request",
    "cross_field_errors",
    "construct_trusted",
    "MAX_COUNT",
    "MAX_HOURS",
    "HOURS_DECIMALS",
    "CHANNEL_TRUST_ORDER",
    "AUTH_STRENGTH_ORDER",
]


class Action(str, enum.Enum):
    ACCOUNT_UNLOCK = "account_unlock"
    PASSWORD_RESET = "password_reset"
    MFA_RESET = "mfa_reset"
    MFA_ADD_FACTOR = "mfa_add_factor"
    ACCESS_GRANT = "access_grant"
    ROLE_CHANGE = "role_change"
    PRIVILEGE_ELEVATION = "privilege_elevation"
    DELEGATED_ADMIN = "delegated_admin"
    API_KEY_REISSUE = "api_key_reissue"
    SECRET_ROTATION = "secret_rotation"
    TOKEN_REVOKE = "token_revoke"
    CREDENTIAL_REVOKE = "credential_revoke"
    OAUTH_CONSENT = "oauth_consent"
    SERVICE_ACCOUNT_CREATE = "service_account_create"
    ACCOUNT_DISABLE = "account_disable"
    CONTACT_CHANGE = "contact_change"
    INFO_REQUEST = "info_request"


class Channel(str, enum.Enum):
    SELF_SERVICE_PORTAL = "self_service_portal"
    WALK_IN = "walk_in"
    API = "api"
    CHAT = "chat"
    EMAIL = "email"
    PHONE = "phone"


#: Channels from most to least trusted. The portal runs inside an authenticated
#: session; a walk-in can show ID; an API call carries its own credential; chat,
#: email and phone are impersonable, phone most of all (voice cloning, caller-ID
#: spoofing: CISA AA23-320A). Monotonicity (SPEC §5.2) is stated against this order.
CHANNEL_TRUST_ORDER: tuple[Channel, ...] = (
    Channel.SELF_SERVICE_PORTAL,
    Channel.WALK_IN,
    Channel.API,
    Channel.CHAT,
    Channel.EMAIL,
    Channel.PHONE,
)


class ActorType(str, enum.Enum):
    HUMAN = "human"
    AI_AGENT = "ai_agent"
    SERVICE = "service"


class Relationship(str, enum.Enum):
    SELF = "self"
    MANAGER = "manager"
    OWNER = "owner"
    HELPDESK_AGENT = "helpdesk_agent"
    ADMIN = "admin"
    OTHER = "other"


class AuthStrength(str, enum.Enum):
    NONE = "none"
    PASSWORD = "password"
    MFA = "mfa"
    PHISHING_RESISTANT = "phishing_resistant"


#: Authentication strengths from weakest to strongest.
AUTH_STRENGTH_ORDER: tuple[AuthStrength, ...] = (
    AuthStrength.NONE,
    AuthStrength.PASSWORD,
    AuthStrength.MFA,
    AuthStrength.PHISHING_RESISTANT,
)


class TargetType(str, enum.Enum):
    HUMAN = "human"
    SERVICE_ACCOUNT = "service_account"
    OAUTH_APP = "oauth_app"
    API_KEY = "api_key"
    AUTOMATION_TOKEN = "automation_token"
    WORKLOAD_IDENTITY = "workload_identity"
    AI_AGENT = "ai_agent"

    @property
    def is_nhi(self) -> bool:
        """Everything but a human is a non-human identity."""
        return self is not TargetType.HUMAN


class TargetStatus(str, enum.Enum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    OFFBOARDED = "offboarded"


class RiskSignal(str, enum.Enum):
    NEW_DEVICE = "new_device"
    UNFAMILIAR_LOCATION = "unfamiliar_location"
    IMPOSSIBLE_TRAVEL = "impossible_travel"
    RECENT_MFA_CHANGE = "recent_mfa_change"
    RECENT_PASSWORD_RESET = "recent_password_reset"
    LEAKED_CREDENTIAL = "leaked_credential"
    THREAT_INTEL_MATCH = "threat_intel_match"
    OFF_HOURS = "off_hours"
    CALLER_ID_MISMATCH = "caller_id_mismatch"
    URGENCY_PRESSURE = "urgency_pressure"


Identifier = Annotated[str, Field(min_length=1, max_length=256)]

#: The largest count a request (or a config threshold, see config.py) may
#: carry. Every engine must read a number exactly as Python does: rego-cpp keeps
#: integers as int64 and wraps silently above 2**63-1 (2**63 consumers read as
#: negative, so an NHI would lose "widely distributed"), and JSON consumers
#: such as OPA's clients are only exact up to 2**53. A billion is far above any
#: real count (consumers, days, failed attempts) and far below both limits.
MAX_COUNT = 10**9
Count = Annotated[int, Field(ge=0, le=MAX_COUNT, strict=True)]

#: The largest ``recent_credential_change_hours`` (about 114 years): beyond any
#: real window, and small enough that, with HOURS_DECIMALS decimals, every
#: value has at most 10 significant digits, which rego-cpp represents exactly.
MAX_HOURS = 10**6
#: rego-cpp keeps only 6 decimals of a float (72.0000001 reads as 72, inside a
#: 72 h window, while Python and OPA read it as outside). Hours are cut to 3
#: decimals (a 3.6 s resolution) before any engine sees them, so all engines
#: read the same number.
HOURS_DECIMALS = 3
_HOURS_QUANTUM = Decimal(1).scaleb(-HOURS_DECIMALS)


def _hours_resolution(value: float) -> float:
    # Rounded *down* (hours since the last change only ever get shorter), so
    # the cut can move a change into the chained-change window but never out
    # of it: fail closed. Decimal(repr) keeps what the caller wrote (1.001
    # stays 1.001, where floor(1.001 * 1000) would give 1.0), and the result
    # is monotone in the input (SPEC §5.2).
    return float(Decimal(repr(value)).quantize(_HOURS_QUANTUM, rounding=ROUND_FLOOR))


Hours = Annotated[
    float, Field(ge=0, le=MAX_HOURS, allow_inf_nan=False), AfterValidator(_hours_resolution)
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


_M = TypeVar("_M", bound=BaseModel)


class RequestInfo(_Strict):
    """What is being asked, through which channel."""

    id: Identifier
    action: Action
    channel: Channel
    justification: Annotated[str, Field(max_length=4000)] | None = None
    emergency: bool = False
    requested_at: datetime | None = None


class Actor(_Strict):
    """Who asks. ``relationship`` is the actor's relationship to the target."""

    id: Identifier
    type: ActorType
    relationship: Relationship
    authenticated: bool
    auth_strength: AuthStrength
    on_behalf_of: Identifier | None = None
    roles: list[Identifier] = Field(default_factory=list, max_length=256)


class Target(_Strict):
    """The identity the action is about.

    Target facts come from the directory or inventory of record. The NHI fields
    are optional, and a missing one is read as its riskiest value (unknown
    environment = production, unknown consumers = widely distributed, unknown
    secret age = stale), so leaving a field out never lowers a decision.
    """

    id: Identifier
    type: TargetType
    privileged: bool
    privilege_tier: Annotated[int, Field(ge=0, le=9, strict=True)]
    vip: bool
    status: TargetStatus
    environment: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    owners: list[Identifier] = Field(default_factory=list, max_length=256)
    owner_active: bool | None = None
    secret_age_days: Count | None = None
    consumers: Count | None = None
    in_secrets_manager: bool | None = None


class Context(_Strict):
    """What was observed about this request: signals are observations, so an
    empty list means "none observed"."""

    risk_signals: list[RiskSignal] = Field(default_factory=list, max_length=len(RiskSignal) * 4)
    failed_verifications_24h: Count = 0
    recent_credential_change_hours: Hours | None = None

    @field_validator("risk_signals")
    @classmethod
    def _as_sorted_set(cls, value: list[RiskSignal]) -> list[RiskSignal]:
        # Signals are a set; sorting makes digests and engine inputs canonical.
        return sorted(set(value), key=lambda s: s.value)


class Request(_Strict):
    """One helpdesk request about one identity (SPEC §3)."""

    request: RequestInfo
    actor: Actor
    target: Target
    context: Context = Field(default_factory=Context)

    @model_validator(mode="after")
    def _consistent(self) -> Request:
        a, t = self.actor, self.target
        errors = _consistency(a.relationship, a.id, t.id, a.authenticated, a.auth_strength, self.request.action, t.type)
        if errors:
            # A ValidationError raised here keeps each error's own location
            # (actor.relationship, not the model root); pydantic merges it
            # into the caller's error list, prefixed when Request is nested.
            raise ValidationError.from_exception_data(
                type(self).__name__,
                [
                    InitErrorDetails(
                        type=PydanticCustomError(_CROSS_FIELD_ERROR, message),
                        loc=tuple(path.split(".")),
                        input=None,  # never echo a value (SPEC §5.5)
                    )
                    for path, message in errors
                ],
            )
        return self

    def to_input(self) -> dict[str, Any]:
        """The JSON document the engines evaluate (every field present, nulls kept)."""
        return self.model_dump(mode="json")


_CROSS_FIELD_ERROR = "inconsistent_fields"


def _consistency(
    relationship: Relationship | None,
    actor_id: str | None,
    target_id: str | None,
    authenticated: bool | None,
    auth_strength: AuthStrength | None,
    action: Action | None,
    target_type: TargetType | None,
) -> list[tuple[str, str]]:
    """The cross-field rules of a request, as ``(field path, message)`` pairs.

    ``None`` means the field is missing or invalid on its own (already reported
    as a field error): a rule that needs it is not checked. Messages name the
    fields and the vocabulary, never a value the caller sent.
    """
    errors: list[tuple[str, str]] = []
    if relationship is not None and actor_id is not None and target_id is not None:
        is_self = relationship is Relationship.SELF
        same_id = actor_id == target_id
        if is_self and not same_id:
            errors.append(("actor.relationship", "is 'self' but actor.id differs from target.id"))
        if same_id and not is_self:
            errors.append(("actor.relationship", "actor.id equals target.id, so relationship must be 'self'"))
    if authenticated is not None and auth_strength is not None:
        if authenticated and auth_strength is AuthStrength.NONE:
            errors.append(("actor.auth_strength", "is 'none' but actor.authenticated is true"))
        if not authenticated and auth_strength is not AuthStrength.NONE:
            errors.append(("actor.auth_strength", "must be 'none' when actor.authenticated is false"))
    if action is Action.SERVICE_ACCOUNT_CREATE and target_type is TargetType.HUMAN:
        errors.append(("target.type", "service_account_create needs a non-human target"))
    return errors


@functools.cache
def _field_adapter(model: type[BaseModel], name: str) -> TypeAdapter[Any]:
    info = model.model_fields[name]
    if not info.metadata:
        return TypeAdapter(info.annotation)
    return TypeAdapter(Annotated[(info.annotation, *info.metadata)])  # type: ignore[valid-type]


def _raw_field(data: Mapping[str, Any], model: type[BaseModel], section: str, name: str) -> Any:
    """The value of ``section.name`` in a raw request, validated alone; None if missing or invalid."""
    part = data.get(section)
    if isinstance(part, BaseModel):
        part = part.__dict__
    if not isinstance(part, Mapping) or name not in part:
        return None
    try:
        return _field_adapter(model, name).validate_python(part[name])
    except ValidationError:
        return None


def cross_field_errors(data: Request | Mapping[str, Any]) -> list[tuple[str, str]]:
    """Every cross-field inconsistency of a request, as ``(field path, message)``.

    Works on a raw mapping whose other fields may be invalid, so that
    :func:`parse_request` can report cross-field errors together with field
    errors (pydantic skips model validators once a field fails).
    """
    if isinstance(data, Request):
        a, t = data.actor, data.target
        return _consistency(a.relationship, a.id, t.id, a.authenticated, a.auth_strength, data.request.action, t.type)
    if not isinstance(data, Mapping):
        return []
    return _consistency(
        _raw_field(data, Actor, "actor", "relationship"),
        _raw_field(data, Actor, "actor", "id"),
        _raw_field(data, Target, "target", "id"),
        _raw_field(data, Actor, "actor", "authenticated"),
        _raw_field(data, Actor, "actor", "auth_strength"),
        _raw_field(data, RequestInfo, "request", "action"),
        _raw_field(data, Target, "target", "type"),
    )


def parse_request(data: Request | Mapping[str, Any]) -> Request:
    """Validate ``data`` into a :class:`Request`, or raise :class:`InvalidRequestError`.

    The error lists every bad field path at once, never just the first:
    field errors and cross-field errors (``actor.relationship`` vs the ids…)
    together, each under the path of the field concerned.
    """
    if isinstance(data, Request):
        return data
    if not isinstance(data, Mapping):
        raise InvalidRequestError.from_pydantic(_type_error(data))  # type: ignore[return-value]
    try:
        return Request.model_validate(data)
    except ValidationError as exc:
        errors = list(field_errors_from_pydantic(exc))
        # When a field fails, pydantic never runs Request._consistent: check
        # the cross-field rules on the raw data (each field validated alone).
        seen = {(e.path, e.message) for e in errors}
        errors += [FieldError(p, m) for p, m in cross_field_errors(data) if (p, m) not in seen]
        raise InvalidRequestError(errors) from None


def _type_error(data: object) -> ValidationError:
    try:
        Request.model_validate(data)
    except ValidationError as exc:
        return exc
    raise AssertionError("unreachable")  # pragma: no cover


# --------------------------------------------------------------------------- output


class Reason(_Strict):
    """Why a level is needed: a stable machine ``code``, the ``level`` it demands,
    a sentence for a person, and framework references."""

    code: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
    level: Level
    message: Annotated[str, Field(min_length=1, max_length=1000)]
    refs: list[str] = Field(default_factory=list)


class Obligation(_Strict):
    """What must happen as part of, or after, acting on the decision."""

    code: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
    within_hours: Annotated[int, Field(ge=0, strict=True)] | None = None
    fields: list[str] | None = None


def construct_trusted(cls: type[_M], values: dict[str, Any]) -> _M:
    """Build a model from values already known to be valid, skipping validation.

    For the hot path only (the native engine's prebuilt reasons, the facade's
    decision assembly): it is ``model_construct`` without its per-field default
    handling, so ``values`` must name every field. ``tests/test_models.py``
    checks the result equals a validated model, which guards this against
    pydantic internals changing.
    """
    obj = cls.__new__(cls)
    object.__setattr__(obj, "__dict__", values)
    object.__setattr__(obj, "__pydantic_fields_set__", set(values))
    object.__setattr__(obj, "__pydantic_extra__", None)
    object.__setattr__(obj, "__pydantic_private__", None)
    return obj


def _reason_order(r: Reason) -> tuple[int, str, str]:
    return (-r.level.rank, r.code, r.message)


class Verdict(_Strict):
    """What a policy engine decides: the part of a :class:`Decision` that every
    engine must agree on (SPEC §5.3). Validation checks its internal consistency
    so a malformed engine answer is rejected rather than trusted."""

    level: Level
    allowed: bool
    requirements: list[str]
    reasons: list[Reason] = Field(min_length=1)
    obligations: list[Obligation]
    playbook: Annotated[str, Field(min_length=1, max_length=128)]

    @model_validator(mode="before")
    @classmethod
    def _canonical_order(cls, data: Any) -> Any:
        # Rego sets have no order a client may rely on; sort for stable output.
        if isinstance(data, dict):
            data = dict(data)
            reasons = data.get("reasons")
            if isinstance(reasons, list | tuple):
                try:
                    parsed = [r if isinstance(r, Reason) else Reason.model_validate(r) for r in reasons]
                    data["reasons"] = sorted(parsed, key=_reason_order)
                except ValidationError:
                    pass  # the field validation below reports it
            obligations = data.get("obligations")
            if isinstance(obligations, list | tuple):
                try:
                    parsed_o = [o if isinstance(o, Obligation) else Obligation.model_validate(o) for o in obligations]
                    data["obligations"] = sorted(parsed_o, key=lambda o: o.code)
                except ValidationError:
                    pass
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Verdict:
        top = max(r.level for r in self.reasons)
        if self.level != top:
            raise ValueError(f"level {self.level.value!r} is not the maximum of the reasons ({top.value!r})")
        if self.allowed != self.level.allowed:
            raise ValueError(f"allowed={self.allowed} contradicts level {self.level.value!r}")
        if self.requirements != self.level.requirements:
            raise ValueError(f"requirements {self.requirements} do not match level {self.level.value!r}")
        codes = [o.code for o in self.obligations]
        if len(codes) != len(set(codes)):
            raise ValueError("obligation codes must be unique")
        return self

    def parity_key(self) -> tuple[Any, ...]:
        """What SPEC §5.3 says every engine must agree on."""
        return (
            self.level,
            self.allowed,
            tuple(self.requirements),
            tuple(sorted(r.code for r in self.reasons)),
            tuple(o.model_dump_json(exclude_none=True) for o in self.obligations),
        )


class Decision(Verdict):
    """A decision for one request (SPEC §4), with its provenance.

    ``to_dict()`` / ``to_json()`` give exactly the SPEC §4 shape.
    """

    engine: str
    degraded: bool
    policy_revision: str
    decision_id: str
    input_digest: str

    def to_dict(self) -> dict[str, Any]:
        """The SPEC §4 JSON object (obligation parameters that do not apply are left out)."""
        return self.model_dump(mode="json", exclude_none=True)

    def to_json(self, *, indent: int | None = 2) -> str:
        return self.model_dump_json(exclude_none=True, indent=indent)
