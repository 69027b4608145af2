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
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import InvalidRequestError
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
    "construct_trusted",
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
Count = Annotated[int, Field(ge=0, strict=True)]


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
    recent_credential_change_hours: Annotated[float, Field(ge=0)] | None = None

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
        errors: list[tuple[str, str]] = []
        is_self = self.actor.relationship is Relationship.SELF
        same_id = self.actor.id == self.target.id
        if is_self and not same_id:
            errors.append(("actor.relationship", "is 'self' but actor.id differs from target.id"))
        if same_id and not is_self:
            errors.append(("actor.relationship", "actor.id equals target.id, so relationship must be 'self'"))
        if self.actor.authenticated and self.actor.auth_strength is AuthStrength.NONE:
            errors.append(("actor.auth_strength", "is 'none' but actor.authenticated is true"))
        if not self.actor.authenticated and self.actor.auth_strength is not AuthStrength.NONE:
            errors.append(("actor.auth_strength", "must be 'none' when actor.authenticated is false"))
        if self.request.action is Action.SERVICE_ACCOUNT_CREATE and not self.target.type.is_nhi:
            errors.append(("target.type", "service_account_create needs a non-human target"))
        if errors:
            # Raised as ValueError so pydantic folds it into the same error list.
            raise ValueError("; ".join(f"{p} {m}" for p, m in errors))
        return self

    def to_input(self) -> dict[str, Any]:
        """The JSON document the engines evaluate (every field present, nulls kept)."""
        return self.model_dump(mode="json")


def parse_request(data: Request | Mapping[str, Any]) -> Request:
    """Validate ``data`` into a :class:`Request`, or raise :class:`InvalidRequestError`.

    The error lists every bad field path at once, never just the first.
    """
    if isinstance(data, Request):
        return data
    if not isinstance(data, Mapping):
        raise InvalidRequestError.from_pydantic(_type_error(data))  # type: ignore[return-value]
    try:
        return Request.model_validate(data)
    except ValidationError as exc:
        raise InvalidRequestError.from_pydantic(exc) from None


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
