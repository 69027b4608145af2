"""Typed models of a helpdesk request and of a decision (the request and decision contracts).

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
import hashlib
import json
import os
import threading
import unicodedata
from collections.abc import Mapping
from datetime import datetime, timezone
from decimal import ROUND_FLOOR, Decimal
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    FieldSerializationInfo,
    StrictBool,
    TypeAdapter,
    ValidationError,
    field_serializer,
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
    "ConsentScope",
    "Constraints",
    "ApproverConstraint",
    "CallbackConstraint",
    "Reason",
    "Obligation",
    "Verdict",
    "Decision",
    "ExceptionEffect",
    "ExceptionStatus",
    "ExceptionWhyNot",
    "EXCEPTION_ID_PATTERN",
    "EXCEPTION_APPLIED_CODE",
    "TIMESTAMP_FORMAT",
    "NO_ENGINE",
    "parse_request",
    "cross_field_errors",
    "construct_trusted",
    "canonical_identifier",
    "MAX_ID_LENGTH",
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
    #: A temporary access pass: a time-limited MFA bypass to sign in and enrol
    #: a new factor, the commonest helpdesk exception. Always time-bound.
    TEMPORARY_ACCESS_PASS = "temporary_access_pass"


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
#: spoofing: CISA AA23-320A). Monotonicity (guarantee 2) is stated against this order.
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


class ConsentScope(str, enum.Enum):
    """How much an OAuth app asks for: ``low`` (sign-in and basic profile,
    e.g. Entra's "low impact" permissions), ``medium`` (read the user's own
    data), ``high`` (write, or any organisation-wide or admin permission)."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


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


#: The longest identifier, as sent and in canonical form.
MAX_ID_LENGTH = 256

#: Unicode general categories no identifier (nor ``request.id`` or
#: ``target.environment``) may hold: controls (Cc: NUL, CR/LF, ESC…), format
#: characters (Cf: zero-width spaces and joiners, bidi controls, the BOM),
#: surrogates (Cs), private use (Co), unassigned code points and
#: noncharacters (Cn), line and paragraph separators (Zl, Zp). Why: rego-cpp
#: reads a string only up to a NUL (``"u-7\x00x"`` is ``"u-7"`` there and not
#: in Python or OPA), a lone surrogate is not UTF-8 that any engine can read,
#: and the rest are invisible or break lines, so two spellings that look the
#: same to a person could name different identities (or a newline could forge
#: a step in ``explain``). Every other character is one that Python, rego-cpp
#: and OPA compare identically, as long as identifiers are only compared with
#: each other (never with ``data`` strings: see config.py's environments).
#: What is unassigned depends on the Unicode version of the running Python.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def printable_problem(value: str) -> str | None:
    """What makes ``value`` unfit for an identifier-like field, or None. Never quotes it."""
    if value.isascii():
        # ASCII's only non-printable characters are its controls (Cc).
        if not value.isprintable():
            return "must hold printable characters only (no control or format characters)"
    elif any(unicodedata.category(ch) in _REFUSED_CATEGORIES for ch in value):
        return "must hold printable characters only (no control or format characters)"
    if value != value.strip():
        return "must not begin or end with whitespace"
    return None


def canonical_identifier(value: str) -> str:
    """The one spelling identifiers are stored and compared in: ``NFKC(casefold(NFKC(value)))``.

    ``AGENT-7``, ``agent-7`` and ``ａｇｅｎｔ-７`` (fullwidth) are one identity,
    so a requester cannot escape a rule about itself (``relationship: self``,
    ownership of an NHI) by spelling its own id differently.

    >>> canonical_identifier("ＡＧＥＮＴ-７"), canonical_identifier("Straße")
    ('agent-7', 'strasse')
    """
    if value.isascii():  # NFKC leaves ASCII alone, and casefold is lower() there
        return value.lower()
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", value).casefold())


def _printable(value: str) -> str:
    if value and value.isascii() and value.isprintable() and value[0] != " " and value[-1] != " ":
        return value  # the common case, decided without a call (hot path: every request)
    problem = printable_problem(value)
    if problem is not None:
        raise PydanticCustomError("printable", problem)
    return value


#: What an identifier may not hold beyond printable_problem: a decision echoes
#: identifiers (its constraints name approvers, the excluded requester and
#: the callback target), and rego-cpp prints '"' and '\\' inside strings
#: unescaped, so its output would no longer be JSON (or would read another id).
_UNECHOED = ('"', "\\")


def _echo_problem(value: str) -> str | None:
    if any(ch in value for ch in _UNECHOED):
        return "must not hold '\"' or '\\\\' (a decision echoes identifiers, and not every engine escapes them)"
    return None


def _identifier(value: str) -> str:
    if (value and value.isascii() and value.isprintable() and value[0] != " " and value[-1] != " "
            and '"' not in value and "\\" not in value):
        # The common case, decided inline (hot path: several per request).
        # In printable ASCII the only whitespace is the space, so this is
        # printable_problem and _echo_problem both finding nothing.
        return value.lower()
    problem = printable_problem(value) or _echo_problem(value)
    if problem is not None:
        raise PydanticCustomError("printable", problem)
    if value.isascii():
        # Lower-casing keeps printable ASCII printable, its length and its edges.
        return value.lower()
    canonical = canonical_identifier(value)
    # The canonical form obeys the same rules (NFKC can turn a leading
    # U+00A8 into a space, or expand one character into many), and is a fixed
    # point, so canonicalising a stored id again never changes it.
    if len(canonical) > MAX_ID_LENGTH:
        raise PydanticCustomError("identifier_length", f"is longer than {MAX_ID_LENGTH} characters once normalised")
    problem = printable_problem(canonical) or _echo_problem(canonical)  # fullwidth quotes become '"'
    if problem is not None:
        raise PydanticCustomError("printable", f"{problem} once normalised")
    if canonical_identifier(canonical) != canonical:
        raise PydanticCustomError("identifier_unstable", "has no stable normalised form")
    return canonical


#: An identity identifier (``actor.id``, ``target.id``, owners, roles,
#: ``on_behalf_of``): printable, no surrounding whitespace, at most
#: MAX_ID_LENGTH characters as sent (so normalising it stays cheap) and once
#: normalised, and stored in canonical form, so every engine compares the same
#: string (guarantee 8).
Identifier = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH), AfterValidator(_identifier)]
#: A ticket number shown to people: the identifier rules, spelling kept.
TicketId = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH), AfterValidator(_printable)]


def canonical_environment(value: str) -> str:
    """The one spelling environments are compared in: trimmed, NFKC, case-folded.

    ``PROD``, `` Production `` and ``ｐｒｏｄ`` are one environment. Whatever is
    not recognised as non-production is production (the policy's rule), so
    an unknown spelling can only make a decision stricter.

    >>> canonical_environment(" Production "), canonical_environment("STAGING")
    ('production', 'staging')
    """
    return canonical_identifier(_trim_spaces(value))


def _trim_spaces(value: str) -> str:
    # Only space separators (Zs: a space, a no-break or ideographic space) are
    # padding; a newline or another control at either end is refused with the
    # identifier rules, not silently trimmed away.
    start, end = 0, len(value)
    while start < end and unicodedata.category(value[start]) == "Zs":
        start += 1
    while end > start and unicodedata.category(value[end - 1]) == "Zs":
        end -= 1
    return value[start:end]


def _environment(value: str) -> str:
    # Surrounding whitespace is trimmed (a directory export's padding is not a
    # different environment); the rest follows the identifier rules.
    if value and value.isascii() and value.isprintable() and value[0] != " " and value[-1] != " ":
        # The common case: nothing to trim, and canonical_identifier is lower() on ASCII.
        return value.lower()
    canonical = canonical_environment(value)
    if not canonical:
        raise PydanticCustomError("environment_empty", "must not be empty or whitespace only")
    problem = printable_problem(canonical)
    if problem is not None:
        raise PydanticCustomError("printable", problem)
    if canonical_identifier(canonical) != canonical:
        raise PydanticCustomError("identifier_unstable", "has no stable normalised form")
    return canonical


def _not_a_number(value: Any) -> Any:
    # Lax datetime parsing reads a number as a Unix time, and True as 1 (1970):
    # only a date-time (an RFC 3339 string, or a datetime object) is one.
    if isinstance(value, bool | int | float):
        raise PydanticCustomError("datetime_type", "must be an RFC 3339 date-time string")
    return value

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
    # is monotone in the input (guarantee 2).
    if float(value).is_integer():
        return float(value)  # whole hours (the common case): nothing to cut
    return float(Decimal(repr(value)).quantize(_HOURS_QUANTUM, rounding=ROUND_FLOOR))


Hours = Annotated[
    float, Field(ge=0, le=MAX_HOURS, allow_inf_nan=False, strict=True), AfterValidator(_hours_resolution)
]


class _Strict(BaseModel):
    # Field(description=...) becomes the JSON Schema's field description.
    # Not attribute docstrings (use_attribute_docstrings): pydantic finds
    # those by reading each class's source (tokenising and parsing it at
    # import), which cost about a tenth of a cold start. tests/test_models.py
    # checks that no model here has an attribute docstring left unread.
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


#: The output models (a verdict, a decision and their parts) build their
#: validators and serializers when first used, not at import: the hot path
#: assembles them with :func:`construct_trusted`, so a process that decides
#: without validating or serialising one (the first native decision of a
#: cold start) never pays for building them.
_OUTPUT_CONFIG = ConfigDict(defer_build=True)


_M = TypeVar("_M", bound=BaseModel)


class RequestInfo(_Strict):
    """What is being asked, through which channel."""

    id: TicketId = Field(description="The ticket or request id (kept as spelled; printable characters only).")
    action: Action = Field(description="What the helpdesk is asked to do.")
    channel: Channel = Field(description=(
        "The channel the request actually arrived on (from the ticketing system, not the caller's claim)."
    ))
    # Free text: anything (newlines, controls) but a lone surrogate, which is
    # not UTF-8 that any engine could read (pydantic refuses it in a string
    # with a length bound, as in every field here).
    justification: Annotated[str, Field(max_length=4000)] | None = Field(None, description=(
        "The requester's own words: never logged, never rendered raw, never decides anything."
    ))
    emergency: StrictBool = Field(False, description=(
        "A declared emergency (break-glass): never lowers a decision, adds time-bound access and a review."
    ))
    requested_at: Annotated[datetime, BeforeValidator(_not_a_number)] | None = Field(None, description=(
        "When the request was made (RFC 3339)."
    ))
    requested_privilege_tier: Annotated[int, Field(ge=0, le=9, strict=True)] | None = Field(None, description=(
        "For access changes: the privilege tier of what is asked for (0..9, the scale of\n"
        "``target.privilege_tier``), from the access catalogue. Missing: at least privileged, and at\n"
        "least the target's own tier."
    ))
    consent_scope: ConsentScope | None = Field(None, description=(
        "For ``oauth_consent``: how much the app asks for (``low``, ``medium``, ``high``), from the\n"
        "consent prompt. Missing: ``high``."
    ))
    consent_tenant_wide: StrictBool | None = Field(None, description=(
        "For ``oauth_consent``: consent for every user (admin consent) rather than the requester\n"
        "alone. Missing: tenant-wide."
    ))


class Actor(_Strict):
    """Who asks. ``relationship`` is the actor's relationship to the target."""

    id: Identifier = Field(description=(
        "The requester's identity (canonical form; from the session, not the caller's word)."
    ))
    type: ActorType = Field(description="``human``, ``ai_agent`` or ``service``.")
    relationship: Relationship = Field(description=(
        "The requester's relationship to the target as stated; the relationship of record\n"
        "(target.manager, target.owners, an AI agent's principal) decides where it exists."
    ))
    authenticated: StrictBool = Field(description=(
        "Whether the requester authenticated in this session (from the IdP or the IVR)."
    ))
    auth_strength: AuthStrength = Field(description=(
        "How strongly: ``none``, ``password``, ``mfa``, ``phishing_resistant``."
    ))
    on_behalf_of: Identifier | None = Field(None, description=(
        "For an AI agent: the person it acts for (from the chatbot's authenticated session).\n"
        "Missing: it acts for no one."
    ))
    roles: list[Identifier] = Field(default_factory=list, max_length=256, description=(
        "Role or group memberships of record (security and helpdesk roles count only with strong\n"
        "authentication)."
    ))
    runs_as: Identifier | None = Field(None, description=(
        "The identity an AI agent or automation runs as (its service account or workload\n"
        "identity): acting on it is acting on itself. Missing: only its own id is itself."
    ))


#: ``target.environment``: the identifier rules, trimmed and stored case-folded.
_Environment = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_environment)]


class Target(_Strict):
    """The identity the action is about.

    Target facts come from the directory or inventory of record. The NHI fields
    are optional, and a missing one is read as its riskiest value (unknown
    environment = production, unknown consumers = widely distributed, unknown
    secret age = stale), so leaving a field out never lowers a decision.
    """

    id: Identifier = Field(description="The target identity (canonical form).")
    type: TargetType = Field(description=(
        "``human``, or a non-human identity: ``service_account``, ``oauth_app``, ``api_key``,\n"
        "``automation_token``, ``ai_agent``, ``workload_identity``."
    ))
    privileged: StrictBool = Field(description="Holds privileged access (counts as at least the privileged tier).")
    privilege_tier: Annotated[int, Field(ge=0, le=9, strict=True)] = Field(description=(
        "Privilege tier of record, 0 (none) to 9."
    ))
    vip: StrictBool = Field(description="On the VIP list (executives and other favoured impersonation targets).")
    status: TargetStatus = Field(description="Lifecycle state of record: ``active``, ``suspended``, ``offboarded``.")
    # Stored in canonical form (trimmed, case-folded) and compared with the
    # config's non_production_environments; anything else is production.
    environment: _Environment | None = Field(None, description=(
        "An NHI's environment, compared trimmed and case-folded with the config's\n"
        "non-production environments. Missing or not listed: production."
    ))
    owners: list[Identifier] = Field(default_factory=list, max_length=256, description=(
        "An NHI's owners of record (the NHI inventory)."
    ))
    owner_active: StrictBool | None = Field(None, description=(
        "Whether the NHI's owners are still active (HR status). Missing: inactive."
    ))
    secret_age_days: Count | None = Field(None, description="Age of the NHI's secret. Missing: stale.")
    consumers: Count | None = Field(None, description=(
        "How many systems use the NHI's credential. Missing: widely distributed."
    ))
    in_secrets_manager: StrictBool | None = Field(None, description=(
        "Whether the NHI's secret lives in a secrets manager. Missing: it does not."
    ))
    manager: Identifier | None = Field(None, description=(
        "A human target's manager of record (the directory): who approves, and who counts as\n"
        "the manager when someone, or an AI agent acting for someone, asks. Missing:\n"
        "``actor.relationship`` (itself taken from the directory) is not cross-checked, and the\n"
        "approver is looked up."
    ))
    contact_age_days: Count | None = Field(None, description=(
        "Days since the contact of record (phone, e-mail) was set. A callback goes only to a\n"
        "contact older than the configured minimum. Missing: too new."
    ))
    publisher_verified: StrictBool | None = Field(None, description=(
        "For an OAuth app: its publisher is verified by the identity platform. Missing: not verified."
    ))
    holds_secret: StrictBool | None = Field(None, description=(
        "Whether the NHI holds a secret at all (a workload with federated, secretless\n"
        "credentials holds none). Missing: it holds one."
    ))


class Context(_Strict):
    """What was observed about this request: signals are observations, so an
    empty list means "none observed"."""

    risk_signals: list[RiskSignal] = Field(default_factory=list, max_length=len(RiskSignal) * 4, description=(
        "Detections from the IdP and telephony (observations: empty means none observed)."
    ))
    failed_verifications_24h: Count = Field(0, description=(
        "Failed identity verifications for this identity in the last 24 hours."
    ))
    recent_credential_change_hours: Hours | None = Field(None, description=(
        "Hours since the last password, factor or contact change (the IdP's audit log).\n"
        "Missing: a change within the chained-change window."
    ))
    enrolled_factor_available: StrictBool | None = Field(None, description=(
        "The account still has an enrolled authenticator the requester can use for a step-up\n"
        "(from the IdP, never the caller's word). Missing: it has none, so a push cannot verify a\n"
        "factor recovery."
    ))

    @field_validator("risk_signals")
    @classmethod
    def _as_sorted_set(cls, value: list[RiskSignal]) -> list[RiskSignal]:
        # Signals are a set; sorting makes digests and engine inputs canonical.
        if len(value) < 2:
            return value  # already a sorted set (the common case)
        return sorted(set(value), key=lambda s: s._value_)


class Request(_Strict):
    """One helpdesk request about one identity (the request contract)."""

    request: RequestInfo
    actor: Actor
    target: Target
    context: Context = Field(default_factory=Context)

    @model_validator(mode="after")
    def _consistent(self) -> Request:
        a, t = self.actor, self.target
        is_self = a.relationship is Relationship.SELF
        if (
            is_self is (a.id == t.id)
            and (not is_self or self_kind_matches(a.type, t.type))
            and a.authenticated is (a.auth_strength is not AuthStrength.NONE)
            and not (self.request.action is Action.SERVICE_ACCOUNT_CREATE and t.type is TargetType.HUMAN)
        ):
            # Every rule of _consistency holds (hot path: every request); the
            # full check below names each one that does not.
            return self
        errors = _consistency(_cross_field_values(self))
        if errors:
            raise cross_field_error(type(self).__name__, errors)
        return self

    def to_input(self) -> dict[str, Any]:
        """The JSON document the engines evaluate (every field present, nulls kept)."""
        return self.model_dump(mode="json")


_CROSS_FIELD_ERROR = "inconsistent_fields"


def cross_field_error(title: str, errors: list[tuple[str, str]]) -> ValidationError:
    """A ValidationError for cross-field rule violations, each at its own field.

    Raised from a model validator, it keeps each error's location
    (``actor.relationship``, not the model root); pydantic merges it into the
    caller's error list, prefixed when the model is nested.
    """
    return ValidationError.from_exception_data(
        title,
        [
            InitErrorDetails(
                type=PydanticCustomError(_CROSS_FIELD_ERROR, message),
                loc=tuple(path.split(".")),
                input=None,  # never echo a value (guarantee 5)
            )
            for path, message in errors
        ],
    )


#: The fields the cross-field rules read, by section, with their models.
_CROSS_FIELD_INPUTS: tuple[tuple[str, str, type[BaseModel]], ...] = (
    ("request", "action", RequestInfo),
    ("actor", "id", Actor),
    ("actor", "type", Actor),
    ("actor", "relationship", Actor),
    ("actor", "authenticated", Actor),
    ("actor", "auth_strength", Actor),
    ("target", "id", Target),
    ("target", "type", Target),
)


def _cross_field_values(req: Request) -> dict[str, Any]:
    # Spelled out rather than looped over _CROSS_FIELD_INPUTS: this runs on every validation.
    a, t = req.actor, req.target
    return {
        "request.action": req.request.action, "actor.id": a.id, "actor.type": a.type,
        "actor.relationship": a.relationship, "actor.authenticated": a.authenticated,
        "actor.auth_strength": a.auth_strength, "target.id": t.id, "target.type": t.type,
    }


def self_kind_matches(actor_type: ActorType, target_type: TargetType) -> bool:
    """Whether an actor of ``actor_type`` can *be* a target of ``target_type``.

    A person is a human target, an AI agent an ai_agent target, and an
    automation (service) any other non-human identity. Without this an AI
    agent could claim ``self`` on a human target that carries its id and skip
    the rules about recovering someone else's account.
    """
    if actor_type is ActorType.HUMAN:
        return target_type is TargetType.HUMAN
    if actor_type is ActorType.AI_AGENT:
        return target_type is TargetType.AI_AGENT
    return target_type.is_nhi and target_type is not TargetType.AI_AGENT


def _consistency(values: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The cross-field rules of a request, as ``(field path, message)`` pairs.

    ``values`` maps the dotted paths of ``_CROSS_FIELD_INPUTS`` to validated
    values; a missing or ``None`` one is missing or invalid on its own (already
    reported as a field error), and a rule that needs it is not checked.
    Identifiers are in canonical form, so they are compared as one spelling.
    Messages name the fields and the vocabulary, never a value the caller sent.
    """
    v = values.get
    errors: list[tuple[str, str]] = []
    relationship, actor_id, target_id = v("actor.relationship"), v("actor.id"), v("target.id")
    if relationship is not None and actor_id is not None and target_id is not None:
        is_self = relationship is Relationship.SELF
        same_id = actor_id == target_id
        if is_self and not same_id:
            errors.append(("actor.relationship", "is 'self' but actor.id differs from target.id"))
        if same_id and not is_self:
            errors.append(("actor.relationship", "actor.id equals target.id, so relationship must be 'self'"))
    actor_type, target_type = v("actor.type"), v("target.type")
    if relationship is Relationship.SELF and actor_type is not None and target_type is not None:
        if not self_kind_matches(actor_type, target_type):
            errors.append((
                "actor.relationship",
                "is 'self' but actor.type and target.type are not the same kind of identity "
                "(human and human, ai_agent and ai_agent, service and a non-human target other than ai_agent)",
            ))
    authenticated, auth_strength, action = v("actor.authenticated"), v("actor.auth_strength"), v("request.action")
    if authenticated is not None and auth_strength is not None:
        if authenticated and auth_strength is AuthStrength.NONE:
            errors.append(("actor.auth_strength", "is 'none' but actor.authenticated is true"))
        if not authenticated and auth_strength is not AuthStrength.NONE:
            errors.append(("actor.auth_strength", "must be 'none' when actor.authenticated is false"))
    if action is Action.SERVICE_ACCOUNT_CREATE and target_type is TargetType.HUMAN:
        errors.append(("target.type", "service_account_create needs a non-human target"))
    return errors


@functools.cache
def field_adapter(model: type[BaseModel], name: str) -> TypeAdapter[Any]:
    """A validator for one field of ``model`` alone, with the constraints the model declares.

    Used to check cross-field rules on raw data whose other fields may be
    invalid (pydantic skips model validators once a field fails).
    """
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
        return field_adapter(model, name).validate_python(part[name])
    except ValidationError:
        return None


def cross_field_errors(data: Request | Mapping[str, Any]) -> list[tuple[str, str]]:
    """Every cross-field inconsistency of a request, as ``(field path, message)``.

    Works on a raw mapping whose other fields may be invalid, so that
    :func:`parse_request` can report cross-field errors together with field
    errors (pydantic skips model validators once a field fails).
    """
    if isinstance(data, Request):
        return _consistency(_cross_field_values(data))
    if not isinstance(data, Mapping):
        return []
    return _consistency({
        f"{section}.{name}": _raw_field(data, model, section, name) for section, name, model in _CROSS_FIELD_INPUTS
    })


def parse_request(data: Request | Mapping[str, Any]) -> Request:
    """Validate ``data`` into a :class:`Request`, or raise :class:`InvalidRequestError`.

    The error lists every bad field path at once, never just the first:
    field errors and cross-field errors (``actor.relationship`` vs the ids…)
    together, each under the path of the field concerned.

    A model instance is validated again, like a dict: one built by
    ``model_copy(update=…)``, ``model_construct`` or a subclass (frozen models
    invite the first) was never validated, and could carry a plain string
    where an enum belongs, a tier of 99, or an id in another spelling. It is
    dumped and the dump validated with exactly :class:`Request`, so nothing a
    subclass adds (fields, validators) reaches a decision unchecked.
    """
    if type(data) is not dict or not _plain_sections(data):
        # The hot path (a JSON object whose sections are JSON objects) skips this.
        if isinstance(data, BaseModel):
            data = _dumped(data)
        elif isinstance(data, Mapping):
            data = {k: _dumped(v, str(k)) if isinstance(v, BaseModel) else v for k, v in data.items()}
        if not isinstance(data, Mapping):
            raise InvalidRequestError.from_pydantic(_type_error(data))  # type: ignore[return-value]
    try:
        return Request.__pydantic_validator__.validate_python(data)  # type: ignore[no-any-return]
    except ValidationError as exc:
        errors = list(field_errors_from_pydantic(exc, model=Request))
        # When a field fails, pydantic never runs Request._consistent: check
        # the cross-field rules on the raw data (each field validated alone).
        seen = {(e.path, e.message) for e in errors}
        errors += [FieldError(p, m) for p, m in cross_field_errors(data) if (p, m) not in seen]
        raise InvalidRequestError(errors) from None


def _plain_sections(data: dict[str, Any]) -> bool:
    """Whether every value of ``data`` is a plain dict (so no model instance sits where a section goes)."""
    for value in data.values():
        if type(value) is not dict:
            return False
    return True


def _dumped(model: BaseModel, path: str = "(root)") -> Any:
    """``model`` as plain data to validate again (see :func:`parse_request`).

    Serialisation warnings are off: a model built without validation holds
    values of the wrong type by definition, and validation reports them.
    """
    try:
        return model.model_dump(mode="python", warnings=False)
    except Exception as exc:  # noqa: BLE001 - whatever an unvalidated model holds, the answer is "invalid"
        raise InvalidRequestError([FieldError(path, f"cannot be read back ({type(exc).__name__})")]) from None


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

    model_config = _OUTPUT_CONFIG

    code: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
    level: Level
    message: Annotated[str, Field(min_length=1, max_length=1000)]
    refs: list[str] = Field(default_factory=list)


class Obligation(_Strict):
    """What must happen as part of, or after, acting on the decision."""

    model_config = _OUTPUT_CONFIG

    code: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
    #: A deadline in hours; ``0`` means at once.
    within_hours: Annotated[int, Field(ge=0, strict=True)] | None = None
    fields: list[str] | None = None
    #: Who is told or acted for: ``holder``, ``owners``, or a configured contact
    #: (the NHI-governance team for an identity with no active owner).
    to: Annotated[str, Field(min_length=1, max_length=128), AfterValidator(_printable)] | None = None


class ApproverConstraint(_Strict):
    """Who may give the approval a ``manager_approval`` level requires.

    Machine-readable so that an integration (and the evidence check) can
    enforce it: the approver is of record, never the requester, never an AI agent.
    """

    model_config = _OUTPUT_CONFIG

    #: ``manager`` (a person's manager of record), ``owner`` (an NHI's owner of
    #: record) or ``application_admin`` (an OAuth consent).
    of_record: Literal["manager", "owner", "application_admin"]
    #: The approvers of record the request names (``target.manager``, or the
    #: owners), the excluded ones removed. ``None``: look them up in the
    #: directory or inventory. ``[]``: none of record remains once the requester
    #: is excluded, so the approval goes one level up (their manager, or security).
    ids: list[str] | None
    #: Never the approver: the requester, the person an AI agent acts for, the
    #: identity it runs as.
    exclude: list[str]
    ai_agent: Literal[False] = False


class CallbackConstraint(_Strict):
    """Where the out-of-band callback a ``callback`` level requires may go."""

    model_config = _OUTPUT_CONFIG

    #: Whose contact of record is called: the account ``holder`` or the NHI's ``owners``.
    to: Literal["holder", "owners"]
    ids: list[str]
    #: A contact of record younger than this is not used (a SIM swap or a
    #: contact change shortly before would route the callback to the attacker).
    min_contact_age_days: Annotated[int, Field(ge=0, strict=True)]
    contact_age_days: Annotated[int, Field(ge=0, strict=True)] | None
    #: ``contact_age_days`` is known and at least the minimum.
    contact_usable: bool
    #: What to do when the contact is not usable.
    fallback: Literal["manager_of_record_or_in_person"] = "manager_of_record_or_in_person"
    #: A factor recovery: never call the device or number being recovered.
    not_the_recovered_factor: bool
    #: Never a number or address supplied in the request.
    request_supplied: Literal[False] = False
    ai_agent: Literal[False] = False


class Constraints(_Strict):
    """Constraints on who may approve and whom to call back (each present when
    the level requires it)."""

    model_config = _OUTPUT_CONFIG

    approver: ApproverConstraint | None = None
    callback: CallbackConstraint | None = None


def construct_trusted(cls: type[_M], values: dict[str, Any]) -> _M:
    """Build a model from values already known to be valid, skipping validation.

    For the hot path only (the native engine's prebuilt reasons, the facade's
    decision assembly): it is ``model_construct`` without its per-field default
    handling, so ``values`` must name every field. ``tests/test_models.py``
    checks the result equals a validated model, which guards this against
    pydantic internals changing.
    """
    obj = cls.__new__(cls)
    _setattr(obj, "__dict__", values)
    _setattr(obj, "__pydantic_fields_set__", set(values))
    _setattr(obj, "__pydantic_extra__", None)
    _setattr(obj, "__pydantic_private__", None)
    return obj


# A global, not ``object.__setattr__`` looked up four times per model built.
_setattr = object.__setattr__


def _reason_order(r: Reason) -> tuple[int, str, str]:
    return (-r.level.rank, r.code, r.message)


#: What a policy exception's id looks like (it names a ledger chain, ``exception:<id>``).
EXCEPTION_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
#: The reason code a decision lowered by a policy exception carries.
EXCEPTION_APPLIED_CODE = "policy_exception_applied"

#: What a policy exception did to a decision it touched.
ExceptionStatus = Literal["applied", "expired", "revoked", "not_applicable"]
#: Why an exception in force did not apply (``status: not_applicable``); see
#: :func:`helpdesk_policy.policy_exceptions.apply_exceptions`.
ExceptionWhyNot = Literal[
    "not_started",
    "deny_not_overridable",
    "degraded_decision",
    "ai_agent_actor",
    "high_risk_signal",
    "not_lower",
    "exceeds_policy_max",
    "superseded",
]


#: How a decision writes an exception's expiry: the ledger's timestamp form.
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def _utc(value: datetime) -> datetime:
    # A time without a zone is ambiguous by hours: refused, never read as local time.
    if value.tzinfo is None or value.utcoffset() is None:
        raise PydanticCustomError("timezone_aware", "must carry a time zone (Z or +hh:mm)")
    return value.astimezone(timezone.utc)


class ExceptionEffect(_Strict):
    """One policy exception whose scope (identity, action, channel) a decision touched.

    Every matching exception is listed, applied or not, so an expired or
    revoked one is reported on each decision it would have changed (it never
    disappears silently). No person is named: the id leads to the exception's
    record in the ledger (who asked, who approved).

    ``level_before`` is the level the policy decided; ``level_after`` the
    decision's level once this exception is taken into account: lower only
    when ``status`` is ``applied``, else the same.
    """

    model_config = _OUTPUT_CONFIG

    id: Annotated[str, Field(pattern=EXCEPTION_ID_PATTERN)] = Field(description=(
        "The exception's id (its ledger chain is ``exception:<id>``)."
    ))
    status: ExceptionStatus = Field(description=(
        "``applied``, ``expired``, ``revoked`` or ``not_applicable`` (then ``why_not`` says why)."
    ))
    level_before: Level = Field(description="The level the policy decided.")
    level_after: Level = Field(description=(
        "The level the decision ends with because of this exception (``level_before`` unless applied)."
    ))
    expires_at: Annotated[datetime, BeforeValidator(_not_a_number), AfterValidator(_utc)] = Field(description=(
        "When the exception stops applying (UTC)."
    ))
    why_not: ExceptionWhyNot | None = Field(None, description=(
        "Why an exception in force did not apply; ``null`` unless ``status`` is ``not_applicable``."
    ))

    @field_serializer("expires_at", when_used="json")
    def _timestamp(self, value: datetime) -> str:
        # The ledger's one text form of a time (UTC, microseconds, Z), so a
        # decision and the exception's ledger events spell an expiry alike.
        return value.strftime(TIMESTAMP_FORMAT)

    @model_validator(mode="after")
    def _consistent(self) -> ExceptionEffect:
        if (self.why_not is None) != (self.status != "not_applicable"):
            raise ValueError("why_not is given exactly when status is 'not_applicable'")
        if self.status == "applied":
            # An exception never lifts a deny and never makes anything self-service.
            if not (Level.STEP_UP <= self.level_after < self.level_before < Level.DENY):
                raise ValueError("an applied exception lowers a level below deny to step_up or manager_approval")
        elif self.level_after != self.level_before:
            raise ValueError("an exception that did not apply leaves the level as it was")
        return self


def _lowered_by_exception(verdict: Verdict, top: Level) -> bool:
    """Whether ``verdict`` is below its reasons only because one policy exception applied.

    Only a :class:`Decision` carries ``exceptions``: engines answer
    :class:`Verdict` documents, so no engine can claim an exception.
    """
    applied = [e for e in getattr(verdict, "exceptions", ()) if e.status == "applied"]
    return len(applied) == 1 and applied[0].level_after == verdict.level and applied[0].level_before == top


class Verdict(_Strict):
    """What a policy engine decides: the part of a :class:`Decision` that every
    engine must agree on (guarantee 3). Validation checks its internal consistency
    so a malformed engine answer is rejected rather than trusted."""

    model_config = _OUTPUT_CONFIG

    level: Level
    allowed: bool
    requirements: list[str]
    reasons: list[Reason] = Field(min_length=1)
    obligations: list[Obligation]
    playbook: Annotated[str, Field(min_length=1, max_length=128)]
    #: Who may approve and whom to call back. The stock policy always states
    #: them; a custom policy that does not leaves this ``None``.
    constraints: Constraints | None = None

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
        if self.level != top and not _lowered_by_exception(self, top):
            raise ValueError(f"level {self.level.value!r} is not the maximum of the reasons ({top.value!r})")
        if self.allowed != self.level.allowed:
            raise ValueError(f"allowed={self.allowed} contradicts level {self.level.value!r}")
        if self.requirements != self.level.requirements:
            raise ValueError(f"requirements {self.requirements} do not match level {self.level.value!r}")
        codes = [o.code for o in self.obligations]
        if len(codes) != len(set(codes)):
            raise ValueError("obligation codes must be unique")
        # The playbook is what an agent opens: one named for a lower level
        # (``mfa-reset-self-service`` on a callback) would walk them through
        # less than the decision requires.
        slug = "-" + self.level.value.replace("_", "-")
        if not self.playbook.endswith(slug):
            raise ValueError(f"playbook does not end with {slug!r}, the slug of level {self.level.value!r}")
        if self.constraints is not None:
            # A constraint for a check the level does not require, or none for
            # one it does, would leave an integration enforcing the wrong thing.
            needs_approver = "manager_approval" in self.requirements
            needs_callback = "out_of_band_callback" in self.requirements
            if (self.constraints.approver is not None) != needs_approver:
                raise ValueError(f"constraints.approver must be given exactly when level {self.level.value!r} needs approval")
            if (self.constraints.callback is not None) != needs_callback:
                raise ValueError(f"constraints.callback must be given exactly when level {self.level.value!r} needs a callback")
        return self

    def parity_key(self) -> tuple[Any, ...]:
        """What guarantee 3 says every engine must agree on."""
        return (
            self.level,
            self.allowed,
            tuple(self.requirements),
            tuple(sorted(r.code for r in self.reasons)),
            tuple(o.model_dump_json(exclude_none=True) for o in self.obligations),
            None if self.constraints is None else self.constraints.model_dump_json(exclude_none=False),
        )


#: The ``engine`` of a decision no engine could make: the fail-closed answer
#: (see :class:`~helpdesk_policy.chain.EngineChain`).
NO_ENGINE = "none"


def input_digest(request: Request) -> str:
    """``sha256:<hex>`` of the request's canonical JSON (field order is the model's).

    >>> req = parse_request({
    ...     "request": {"id": "INC-1", "action": "info_request", "channel": "chat"},
    ...     "actor": {"id": "u-1", "type": "human", "relationship": "self",
    ...               "authenticated": True, "auth_strength": "mfa"},
    ...     "target": {"id": "u-1", "type": "human", "privileged": False,
    ...                "privilege_tier": 0, "vip": False, "status": "active"},
    ... })
    >>> input_digest(req)[:7], len(input_digest(req))
    ('sha256:', 71)
    """
    # The serializer's bytes output skips a str round trip.
    return "sha256:" + hashlib.sha256(request.__pydantic_serializer__.to_json(request)).hexdigest()


def new_decision_id() -> str:
    """A fresh decision id: a random (version 4) UUID in its canonical text form.

    Built from ``os.urandom(16)`` as :func:`uuid.uuid4` is, without the cost
    of a :class:`uuid.UUID` object (or of importing :mod:`uuid`).

    >>> import uuid
    >>> uuid.UUID(new_decision_id()).version
    4
    """
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40  # version 4
    b[8] = (b[8] & 0x3F) | 0x80  # the RFC 4122 variant
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


#: Only one thread works out a pending value, so every reader sees the same
#: id (two threads drawing two ids for one decision would log one and
#: return the other).
_PENDING_LOCK = threading.Lock()


class _Pending:
    """A :class:`Decision` field value worked out when first read (see :class:`_LazyField`).

    One per decision, and it keeps its value once worked out: whatever holds
    it (the decision, or a model built from the decision's ``__dict__``)
    reads the same value.
    """

    # No __init__ setting it: one is built per decision, on the hot path,
    # and an unset slot reads as "not worked out yet".
    __slots__ = ("_value",)

    def value(self) -> str:
        with _PENDING_LOCK:
            try:
                return self._value
            except AttributeError:
                self._value: str = self._work_out()
                return self._value

    def _work_out(self) -> str:
        raise NotImplementedError


class PendingDecisionId(_Pending):
    """``decision_id`` of a decision: a fresh :func:`new_decision_id`, drawn when first read."""

    __slots__ = ()

    def _work_out(self) -> str:
        return new_decision_id()

    def __repr__(self) -> str:
        return "<a decision id, drawn when first read>"


class DigestOf(_Pending):
    """``input_digest`` of a decision: the digest of ``request``, computed when first read.

    ``request`` must be the validated request the decision was made for
    (validated requests are frozen; the facade's is never handed out).
    """

    __slots__ = ("request",)

    def __init__(self, request: Request) -> None:
        self.request = request

    def _work_out(self) -> str:
        return input_digest(self.request)

    def __repr__(self) -> str:
        return "<the input digest, computed when first read>"


def _settled(value: Any) -> Any:
    # A pending value given to validation (``Decision.model_validate({**decision.__dict__, ...})``)
    # is the value it stands for: the same one the decision it came from reads.
    return value.value() if isinstance(value, _Pending) else value


#: A field that may be pending in a decision built without validation.
_MaybePending = Annotated[str, BeforeValidator(_settled)]

#: The decision fields that may be pending.
_LAZY_FIELDS = ("decision_id", "input_digest")


def _resolved(values: dict[str, Any], name: str) -> Any:
    """``values[name]``, worked out and stored in place first when it is pending."""
    value = values[name]
    if isinstance(value, _Pending):
        # Assigning an existing key keeps its place: dumps keep the field order.
        value = values[name] = value.value()
    return value


class _LazyField:
    """The attribute of a :class:`Decision` field that may be pending.

    A data descriptor (it comes before the instance's ``__dict__``): reading
    works out a pending value once and stores it in the instance's
    ``__dict__``, where pydantic keeps every field value, so later reads,
    dumps, copies, pickles and comparisons all see the one value.
    """

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            # pydantic reads a class attribute as a field's default (a
            # subclass of Decision would get this descriptor as one): none.
            raise AttributeError(self.name)
        values = obj.__dict__
        try:
            value = values[self.name]
        except KeyError:  # model_construct() without it: as pydantic says it
            raise AttributeError(f"{type(obj).__name__!r} object has no attribute {self.name!r}") from None
        if isinstance(value, _Pending):
            value = _resolved(values, self.name)
        return value

    def __set__(self, obj: Any, value: Any) -> None:
        # Reached only past pydantic's frozen check (object.__setattr__), as before.
        obj.__dict__[self.name] = value

    def __delete__(self, obj: Any) -> None:
        try:
            del obj.__dict__[self.name]
        except KeyError:
            raise AttributeError(self.name) from None


class Decision(Verdict):
    """A decision for one request (the decision contract), with its provenance.

    ``to_dict()`` / ``to_json()`` give exactly the decision contract's shape.
    """

    # (Not in the docstring, which is the JSON Schema's description.)
    # ``decision_id`` and ``input_digest`` may be worked out when first read
    # rather than when the decision is made (the facade's hot path:
    # PendingDecisionId, DigestOf): reading either attribute, dumping, copying,
    # pickling, comparing or printing the decision fixes them, once, and
    # nothing but ``__dict__`` can tell the difference.

    engine: str
    degraded: bool
    policy_revision: str
    decision_id: _MaybePending
    input_digest: _MaybePending
    #: What the decision is about, copied from the request it was made for, so
    #: that a caller (a ticketing write-back, a guard) need not keep the
    #: request beside it. Additive (SPEC §6): ``None`` only on a decision
    #: built by hand without them, and then left out of ``to_dict()``.
    request_id: TicketId | None = Field(None, description="The request's ``request.id`` (the ticket), as spelled.")
    action: Action | None = Field(None, description="The request's ``request.action``.")
    target_id: Identifier | None = Field(None, description=(
        "The request's ``target.id`` (canonical form). An identifier: the decision log masks it like ``target.id``."))
    #: The policy exceptions whose scope this decision touched (see
    #: :mod:`helpdesk_policy.policy_exceptions`); at most one ``applied``.
    exceptions: list[ExceptionEffect] = Field(default_factory=list)

    @model_validator(mode="after")
    def _exceptions_consistent(self) -> Decision:
        ids = [e.id for e in self.exceptions]
        if len(ids) != len(set(ids)):
            raise ValueError("exceptions lists each exception once")
        applied = [e for e in self.exceptions if e.status == "applied"]
        states_it = any(r.code == EXCEPTION_APPLIED_CODE for r in self.reasons)
        if len(applied) > 1:
            raise ValueError("at most one exception applies to a decision")
        if applied:
            # Fail closed: an engine failure's answer is never loosened.
            if self.degraded:
                raise ValueError("a degraded decision is never lowered by an exception")
            if not any(r.code == EXCEPTION_APPLIED_CODE and r.level == applied[0].level_after for r in self.reasons):
                raise ValueError(f"a decision an exception lowered gives the reason {EXCEPTION_APPLIED_CODE!r}")
        elif states_it:
            raise ValueError(f"the reason {EXCEPTION_APPLIED_CODE!r} needs an applied exception")
        return self

    # ----------------------------------------------------- pending fields

    def _settle(self) -> None:
        """Work out every pending field (before anything reads ``__dict__`` whole)."""
        values = self.__dict__
        for name in _LAZY_FIELDS:
            if isinstance(values.get(name), _Pending):
                _resolved(values, name)

    @field_serializer("decision_id", "input_digest")
    def _serialise_pending(self, value: Any, info: FieldSerializationInfo) -> str:
        # Every dump goes through here, a decision nested in another model's included.
        return _resolved(self.__dict__, info.field_name) if isinstance(value, _Pending) else value

    def __eq__(self, other: object) -> bool:
        self._settle()
        if isinstance(other, Decision):
            other._settle()
        return super().__eq__(other)

    def __copy__(self) -> Decision:
        self._settle()  # a copy is the same decision: one id
        return super().__copy__()

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Decision:
        self._settle()
        return super().__deepcopy__(memo)

    def __getstate__(self) -> dict[Any, Any]:
        self._settle()  # an unpickled decision is the same decision
        return super().__getstate__()

    def __iter__(self) -> Any:
        self._settle()
        return super().__iter__()

    def __repr_args__(self) -> Any:
        self._settle()
        return super().__repr_args__()

    def to_dict(self) -> dict[str, Any]:
        """The decision contract's JSON object.

        Obligation parameters that do not apply are left out; ``constraints``
        lists the approver and callback constraints the level needs, each in
        full (an approver ``ids`` of ``null`` means "look them up", which is
        not the same as ``[]``). ``exceptions`` is there only when a policy
        exception touched the decision (each effect in full, ``why_not:
        null`` included), so a decision no exception touched reads as before.
        """
        doc = self.model_dump(mode="json", exclude_none=True, exclude={"constraints", "exceptions"})
        if self.exceptions:
            doc["exceptions"] = [e.model_dump(mode="json") for e in self.exceptions]
        if self.constraints is None:
            return doc
        constraints = {
            name: part.model_dump(mode="json")
            for name, part in (("approver", self.constraints.approver), ("callback", self.constraints.callback))
            if part is not None
        }
        # In field order: the constraints right after the playbook.
        return {k: (constraints if k == "constraints" else doc[k]) for k in type(self).model_fields if k in doc or k == "constraints"}

    def to_json(self, *, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)


for _name in _LAZY_FIELDS:
    # Installed once the class is built: pydantic would read a class attribute as a default.
    type.__setattr__(Decision, _name, _LazyField(_name))
del _name
