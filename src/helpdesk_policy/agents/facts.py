"""Trusted facts versus claims: build a request from systems of record, not from a chatbot's word.

A decision is only as good as its facts. A chatbot, an LLM with tools or a
ticket form knows **what was asked and about whom**; it cannot know the
target's privilege tier, whether they are on the VIP list, who owns a
service account or how strongly the requester signed in, and a model can be
made to say anything (OWASP LLM01 prompt injection; CISA AA23-320A: helpdesk
social engineering works by asserting exactly these facts). So a request is
put together from three sources, and every field records which one it came
from:

* a :class:`Claim` (what the requester or the model says): the action, the
  target's identifier, the justification, a declared emergency, and
  anything else it cares to state under ``says``;
* a :class:`FactsProvider` (the directory, the CMDB, the NHI inventory):
  the target's type, status, tier, VIP status, owners, environment,
  consumers, secret age, manager, contact age; the actor's roles
  (:class:`~helpdesk_policy.agents.inventory.FileFactsProvider` for a YAML,
  JSON or CSV inventory, :class:`~helpdesk_policy.agents.scim.ScimFactsProvider`
  for a SCIM 2.0 directory, :class:`InMemoryFactsProvider` for tests);
* :class:`SessionFacts` (the integrator's authenticated session): who the
  actor is and how strongly they authenticated (NIST SP 800-63B-4: the
  verifier's record of the authentication, never the claimant's statement),
  whom an AI agent acts for, the risk signals the IdP observed.

:func:`build_request` merges them into a validated
:class:`~helpdesk_policy.models.Request` and a :class:`ProvenancedRequest`
that says, for every field, ``trusted`` or ``claimed``.

The rule: claims never lower a decision
---------------------------------------

``trusted`` means the value is of record: from the facts provider, the
session, or the integrator's own arguments (the channel the request arrived
on, the ticket id, the access catalogue, the clock). A record that does not
know a fact leaves it ``null``, which the stock policy reads at its riskiest
(README, "Facts from a system of record").

``claimed`` means the value is not of record. A claimed value is used only
where it cannot lower the decision; anywhere else the fact is read at its
riskiest value instead (for most facts: left unknown, which the policy reads
at its riskiest). In detail, a claimed (``says`` or :class:`Claim`) field is read as:

* ``request.action``, ``target.id``, ``request.justification``: as claimed,
  since they are what was asked for (and the justification never decides);
  ``request.emergency`` as claimed: it never lowers a decision.
* ``context.risk_signals``: added to the signals of record.
* ``context.failed_verifications_24h``, ``target.privilege_tier``,
  ``target.consumers``: the higher of record and claim.
* ``target.privileged``, ``target.vip``, ``target.holds_secret``: ``true``
  if either says so.
* ``target.contact_age_days``: the younger of record and claim.
* ``target.publisher_verified``, ``context.enrolled_factor_available``:
  ``false`` if either says so.
* ``request.channel``: the less trusted of the channel of record and the claim.
* ``actor.authenticated``, ``actor.auth_strength``: the weaker of the
  session and the claim.
* ``request.requested_privilege_tier``, ``consent_scope``,
  ``consent_tenant_wide``: with :class:`RequestFacts` (the access catalogue,
  the consent prompt), the riskier of record and claim; without, unknown
  (``null``: at least privileged, ``high``, tenant-wide).
* anything else (the actor's identity, ``relationship``, ``roles``,
  ``on_behalf_of``, ``runs_as``; the target's type, status, owners,
  manager, environment and secret facts;
  ``context.recent_credential_change_hours``): ignored. The record's value
  stands, or stays unknown.

Every "riskier" above is a direction the README's monotonicity guarantee
(§5.2) states and ``tests/test_properties.py`` checks. A required fact the
record does not know (a directory without tiers) is filled at its riskiest:
``privileged: true``, ``privilege_tier: 9``, ``vip: true``, ``status:
offboarded`` (no status of record gives a higher level: ``tests/test_facts.py``
checks it), listed in :attr:`ProvenancedRequest.assumed` and ``claimed``
(not of record). ``tests/test_facts.py`` checks the rule as properties: a
claim that lies in every field it may hold never makes any fact safer, nor
gets a lower level than the honest claim with the same facts of record.

Fail closed: a target the provider does not know raises
:class:`~helpdesk_policy.agents.errors.UnknownIdentityError`, a provider
that fails raises :class:`~helpdesk_policy.agents.errors.FactsUnavailableError`
(whatever it raised is wrapped), and an invalid claim, session or merged
request raises :class:`~helpdesk_policy.errors.InvalidRequestError` naming
every bad field. Nothing is ever decided from partial facts.

Who the actor is when a chatbot relays a user's request
-------------------------------------------------------

The actor is **who asks, in their own name**: the identity whose
authentication the session proves, and under whose credential the change is
requested or made. A chatbot is the actor only when it acts; when it only
carries words to a person, it is a channel.

* **A bot that relays** (it takes the request in chat and hands it to a
  human helpdesk agent, who verifies the user and makes the change under
  their own credentials): the actor is the **user**, ``type: human``,
  ``channel: chat``, authenticated as the chat platform's sign-in (its SSO
  session's authentication strength) says, never as the bot says. Use
  :func:`relayed_by_bot`. An anonymous chat is an unauthenticated actor:
  the identity the user gave is only what they said, exactly like a caller's
  on the phone.
* **A bot or agent that acts** (it calls the identity API itself, with its
  own service credential): the actor is the **agent**, ``type: ai_agent``,
  with ``on_behalf_of`` the user *only if* the chat session authenticated
  them, and ``runs_as`` the identity its credential belongs to. Use
  :func:`acting_agent`. The agent's limits then apply (OWASP LLM06 excessive
  agency), and an agent naming no authenticated principal is asked to
  confirm out of band (``ai_agent_no_principal``).

The test is: does software that a model steers hold the credential that
makes (or submits) the change? If it does, the agent is the actor.

The stock policy on ``examples/requests/06-chatbot-password-reset.json``
(a password reset in chat, new device, contact of record 512 days old):
relayed, with the user as an MFA-authenticated actor, it is ``step_up``
(``remote_channel_recovery``, ``risk_new_device``): the human helpdesk agent
re-verifies the user against the identity of record before resetting. With
the bot acting, it is ``manager_approval`` (``ai_agent_requester``), and
with no authenticated principal ``deny``. The stricter answer is the right
one for an acting agent: the step-up needs a verifier who judges whether
the person is who they say, and an agent cannot be that verifier; its only
view of the person is a conversation that the person (or an attacker, or
text injected into the conversation) controls (LLM01), and it would be
judging a check it has an interest in passing. NIST SP 800-63B-4 puts
re-authentication with the verifier, not with an intermediary; the policy's
separation of duties (an AI agent never verifies, approves or takes a
callback) follows. So a human verifies and approves, and the agent performs
the change only with the guard's permit (:mod:`helpdesk_policy.agents.guard`).
The cheap path for a bot that wants self-service is neither: hand the user a
link to the self-service portal, where they act as themselves in their own
strong session (``self_service_portal``, ``relationship: self``).

>>> provider = InMemoryFactsProvider([
...     IdentityFacts(id="u-51876", type="human", status="active", privileged=False,
...                   privilege_tier=0, vip=False, contact_age_days=512,
...                   recent_credential_change_hours=2150, enrolled_factor_available=True),
... ])
>>> session = relayed_by_bot(user_id="u-51876", auth_strength="mfa", risk_signals=["new_device"])
>>> built = build_request(
...     Claim(action="password_reset", says={"target.vip": False, "actor.auth_strength": "phishing_resistant"}),
...     facts=provider, session=session, channel="chat", request_id="CHAT-0088412")
>>> built.request.actor.id, built.request.actor.auth_strength.value, built.request.target.id
('u-51876', 'mfa', 'u-51876')
>>> built.provenance["actor.auth_strength"], built.provenance["request.action"], built.overridden
('trusted', 'claimed', ('actor.auth_strength',))
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import uuid
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Annotated, Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, model_validator

from ..errors import FieldError, InvalidRequestError, field_errors_from_pydantic
from ..models import (
    AUTH_STRENGTH_ORDER,
    CHANNEL_TRUST_ORDER,
    Action,
    Actor,
    ActorType,
    AuthStrength,
    Channel,
    ConsentScope,
    Context,
    Count,
    Hours,
    Identifier,
    Relationship,
    Request,
    RequestInfo,
    RiskSignal,
    Target,
    TargetStatus,
    TargetType,
    cross_field_error,
    field_adapter,
    parse_request,
)
from .errors import FactsError, FactsUnavailableError, UnknownIdentityError

__all__ = [
    "Provenance",
    "TRUSTED",
    "CLAIMED",
    "IdentityFacts",
    "SessionFacts",
    "RequestFacts",
    "FactsProvider",
    "InMemoryFactsProvider",
    "Claim",
    "ToolCall",
    "parse_claim",
    "ProvenancedRequest",
    "build_request",
    "abuild_request",
    "relayed_by_bot",
    "acting_agent",
    "claim_resolver",
    "REQUEST_PATHS",
    "SAYABLE_PATHS",
    "RISKIEST_TIER",
]

log = logging.getLogger(__name__)

#: Where a field's value came from: ``trusted`` (a system of record: the facts
#: provider, the authenticated session, the integrator's own arguments) or
#: ``claimed`` (not of record: the requester's or the agent's word, used only
#: where it cannot lower the decision, or the riskiest value put in its place).
Provenance = Literal["trusted", "claimed"]
TRUSTED: Provenance = "trusted"
CLAIMED: Provenance = "claimed"

#: The tier a target is read at when its record gives none (the top of the scale).
RISKIEST_TIER = 9


def _leaf_paths() -> tuple[str, ...]:
    sections = (("request", RequestInfo), ("actor", Actor), ("target", Target), ("context", Context))
    return tuple(f"{name}.{leaf}" for name, model in sections for leaf in model.model_fields)


#: Every field of a :class:`~helpdesk_policy.models.Request`, as a dotted path:
#: the keys of :attr:`ProvenancedRequest.provenance`.
REQUEST_PATHS: tuple[str, ...] = _leaf_paths()

#: The fields a :class:`Claim` names directly (``action``, ``target_id``…), not under ``says``.
_CLAIM_FIELDS: dict[str, str] = {
    "request.action": "action",
    "target.id": "target_id",
    "request.justification": "justification",
    "request.emergency": "emergency",
    "request.requested_privilege_tier": "requested_privilege_tier",
    "request.consent_scope": "consent_scope",
    "request.consent_tenant_wide": "consent_tenant_wide",
}

#: What :attr:`Claim.says` may state: every other field of a request. Each is
#: read as the module docstring's table says (most are simply ignored).
SAYABLE_PATHS: frozenset[str] = frozenset(p for p in REQUEST_PATHS if p not in _CLAIM_FIELDS)

_MODELS: dict[str, type[BaseModel]] = {"request": RequestInfo, "actor": Actor, "target": Target, "context": Context}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


def _target_field(name: str) -> Any:
    # A Target field's own type and constraints (the environment's canonical
    # form, the tier's range), so a fact of record is held to the request's rules.
    info = Target.model_fields[name]
    return Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation


_Environment = _target_field("environment")
_Tier = Annotated[int, Field(ge=0, le=9, strict=True)]


# --------------------------------------------------------------------------- facts of record


class IdentityFacts(_Strict):
    """What a system of record knows about one identity (a person, an NHI, an agent).

    One record serves both ends of a request: looked up as the target, it
    gives the ``target.*`` facts and the target's ``context`` (its IdP
    history); looked up as the actor, its ``roles`` and ``runs_as``. Every
    optional fact may be ``None``: the record does not know it, and the
    request carries it at its riskiest (see the module docstring).

    >>> IdentityFacts(id="SVC-Billing", type="service_account", status="active",
    ...               owners=["u-2"], environment=" PROD ").id
    'svc-billing'
    """

    id: Identifier
    """The identifier, canonical (the directory's userName, the inventory's key)."""
    type: TargetType
    """``human`` or the kind of non-human identity."""
    status: TargetStatus | None = None
    """Lifecycle state. Unknown: read as ``offboarded`` (the riskiest)."""
    privileged: StrictBool | None = None
    """Holds privileged access. Unknown: read as ``true``."""
    privilege_tier: _Tier | None = None
    """Privilege tier, 0..9. Unknown: read as 9."""
    vip: StrictBool | None = None
    """On the VIP list. Unknown: read as ``true``."""
    manager: Identifier | None = None
    """A person's manager of record."""
    contact_age_days: Count | None = None
    """Days since the phone or e-mail of record last changed."""
    owners: list[Identifier] = Field(default_factory=list, max_length=256)
    """An NHI's owners of record."""
    owner_active: StrictBool | None = None
    """Whether the NHI's owners are still active. Unknown: looked up (every owner's
    record active gives ``true``, one inactive ``false``), else left unknown."""
    environment: _Environment = None
    """An NHI's environment (canonical)."""
    consumers: Count | None = None
    """How many systems use the NHI's credential."""
    secret_age_days: Count | None = None
    """Age of the NHI's secret."""
    in_secrets_manager: StrictBool | None = None
    """Whether the NHI's secret is in a secrets manager."""
    publisher_verified: StrictBool | None = None
    """For an OAuth app: a verified publisher."""
    holds_secret: StrictBool | None = None
    """Whether the NHI holds a secret at all."""
    roles: list[Identifier] = Field(default_factory=list, max_length=256)
    """Role or group memberships (used when this identity is the actor)."""
    runs_as: Identifier | None = None
    """For an agent or automation: the identity it runs as (used when it is the actor)."""
    risk_signals: list[RiskSignal] = Field(default_factory=list, max_length=len(RiskSignal) * 4)
    """Detections about this identity (the IdP's: a leaked credential, a recent MFA change)."""
    failed_verifications_24h: Count | None = None
    """Failed identity verifications for this identity in the last 24 hours."""
    recent_credential_change_hours: Hours | None = None
    """Hours since the last password, factor or contact change (the IdP's audit log)."""
    enrolled_factor_available: StrictBool | None = None
    """Whether the account still has an enrolled, usable authenticator."""


class SessionFacts(_Strict):
    """Who the actor is and how they authenticated: from the integrator's session, never the model.

    Build it from what your platform verified (the chat platform's SSO
    session, the ticketing system's signed-in agent, the agent platform's
    workload identity), or with :func:`relayed_by_bot` / :func:`acting_agent`.
    A tool-calling model must have no way to set it.
    """

    actor_id: Identifier
    """The requester's identity (the session's subject)."""
    actor_type: ActorType = ActorType.HUMAN
    """``human``, ``ai_agent`` or ``service``."""
    authenticated: StrictBool
    """Whether the session authenticated the actor."""
    auth_strength: AuthStrength
    """How strongly (``none`` exactly when not authenticated)."""
    on_behalf_of: Identifier | None = None
    """For an AI agent: the person it acts for, authenticated by the chat platform. Agents only."""
    runs_as: Identifier | None = None
    """For an agent or automation: the identity its credential belongs to. Missing: the
    actor's record's ``runs_as``."""
    relationship: Relationship | None = None
    """The capacity the actor acts in, when the session knows it (a helpdesk console:
    ``helpdesk_agent``). Missing: derived from the record (``manager`` of record,
    ``owner`` of record, else ``other``). Never ``self`` (the identifiers say that),
    never for an AI agent (its principal's relationship of record decides)."""
    roles: list[Identifier] | None = None
    """Roles from the session (an IdP token's groups). Missing: the actor's record's ``roles``."""
    risk_signals: list[RiskSignal] = Field(default_factory=list, max_length=len(RiskSignal) * 4)
    """What the IdP or telephony observed in this session (new device, caller-ID mismatch)."""

    @model_validator(mode="after")
    def _consistent(self) -> SessionFacts:
        errors: list[tuple[str, str]] = []
        if self.authenticated != (self.auth_strength is not AuthStrength.NONE):
            errors.append(("auth_strength", "must be 'none' exactly when authenticated is false"))
        if self.on_behalf_of is not None and self.actor_type is not ActorType.AI_AGENT:
            errors.append(("on_behalf_of", "is for an AI agent's principal only"))
        if self.relationship is Relationship.SELF:
            errors.append(("relationship", "is never 'self' in a session: it is derived from the identifiers"))
        elif self.relationship is not None and self.actor_type is ActorType.AI_AGENT:
            errors.append(("relationship", "is not set for an AI agent: its principal's relationship of record decides"))
        if errors:
            raise cross_field_error(type(self).__name__, errors)
        return self


class RequestFacts(_Strict):
    """What will actually be granted: from the access catalogue and the consent prompt.

    Pass it to :func:`build_request` when your integration knows it; a
    requester's or model's description of it is only a claim.
    """

    requested_privilege_tier: _Tier | None = None
    """The privilege tier of the access asked for (the catalogue item's)."""
    consent_scope: ConsentScope | None = None
    """For an OAuth consent: the scope the consent prompt asks for."""
    consent_tenant_wide: StrictBool | None = None
    """For an OAuth consent: admin (tenant-wide) consent."""


@runtime_checkable
class FactsProvider(Protocol):
    """A system of record: the facts of one identity, by identifier.

    ``identity`` returns the :class:`IdentityFacts` of the identity whose
    canonical identifier is ``identifier``
    (:func:`~helpdesk_policy.models.canonical_identifier`), ``None`` when the
    record has no such identity, and raises
    :class:`~helpdesk_policy.agents.errors.FactsError` (usually
    :class:`~helpdesk_policy.agents.errors.FactsUnavailableError`) when it
    cannot tell. It must never answer from partial data: a directory that
    timed out half way raises.

    A provider may also define ``async def aidentity(identifier)``;
    :func:`abuild_request` awaits it, and otherwise runs ``identity`` in a
    worker thread.
    """

    def identity(self, identifier: str) -> IdentityFacts | None: ...


class InMemoryFactsProvider:
    """A facts provider over identities held in memory (tests, small fixed inventories).

    Identifiers are compared in canonical form (``U-1`` and ``u-1`` are one
    identity); two records for one identity are refused.

    Raises:
        ValueError: a duplicated identity (in canonical form).
    """

    source = "memory"

    def __init__(self, identities: Iterable[IdentityFacts] = ()) -> None:
        table: dict[str, IdentityFacts] = {}
        for facts in identities:
            if not isinstance(facts, IdentityFacts):
                raise TypeError(f"expected IdentityFacts, got {type(facts).__name__}")
            if facts.id in table:
                raise ValueError("an identity is listed twice (identifiers are compared in canonical form)")
            table[facts.id] = facts
        self._table = table

    def identity(self, identifier: str) -> IdentityFacts | None:
        """The identity's facts, or ``None`` when there is no such identity."""
        key = _canonical_or_none(identifier)
        return None if key is None else self._table.get(key)

    async def aidentity(self, identifier: str) -> IdentityFacts | None:
        """:meth:`identity`, for :func:`abuild_request` (no I/O, so no thread)."""
        return self.identity(identifier)

    def __len__(self) -> int:
        return len(self._table)

    def __iter__(self) -> Iterator[IdentityFacts]:
        return iter(list(self._table.values()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self._table)} identities)"


_IDENTIFIER = field_adapter(Actor, "id")


def _canonical_or_none(identifier: object) -> str | None:
    # A string that is no valid identifier names no identity of record.
    try:
        return _IDENTIFIER.validate_python(identifier)
    except ValidationError:
        return None


# --------------------------------------------------------------------------- the claim


def _says_errors(says: object) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """``says`` validated field by field: the normalised values and ``(path, message)`` errors."""
    if not isinstance(says, Mapping):
        return {}, [("says", "must be a mapping of request field paths to values")]
    values: dict[str, Any] = {}
    errors: list[tuple[str, str]] = []
    for path, value in says.items():
        where = f"says.{path}"
        if not isinstance(path, str) or path not in REQUEST_PATHS:
            errors.append(("says", "holds a key that is not a request field path (e.g. 'target.vip')"))
            continue
        if path in _CLAIM_FIELDS:
            errors.append((where, f"is stated as the claim's own field {_CLAIM_FIELDS[path]!r}"))
            continue
        if value is None:  # "I do not know" is no statement
            continue
        section, name = path.split(".", 1)
        try:
            values[path] = field_adapter(_MODELS[section], name).validate_python(value)
        except ValidationError as exc:
            errors.extend((where, e.message) for e in field_errors_from_pydantic(exc))
    return values, errors


class Claim(_Strict):
    """What the requester or a model says: what is asked, about whom, and why.

    Only ``action`` is required. ``target_id`` missing means the requester
    themself (the session's actor, or the person an agent acts for).
    ``says`` holds anything else the caller states about the request, by
    dotted path (``{"target.vip": False, "actor.auth_strength":
    "phishing_resistant"}``): each is validated like the request field and
    read at its riskiest (module docstring), so a naive tool call that fills
    in facts it cannot know is harmless rather than refused.

    :data:`ToolCall` is the same model: a tool call's arguments are a claim.

    >>> Claim(action="mfa_reset", target_id="ADMIN-7", says={"target.privileged": False}).target_id
    'admin-7'
    """

    action: Action
    """What the requester asked for."""
    target_id: Identifier | None = None
    """Whom it is about (canonical). Missing: the requester themself."""
    justification: Annotated[str, Field(max_length=4000)] | None = None
    """The requester's own words: never decides anything."""
    emergency: StrictBool = False
    """A declared emergency: never lowers a decision."""
    requested_privilege_tier: _Tier | None = None
    """The tier of the access asked for, as described: a claim."""
    consent_scope: ConsentScope | None = None
    """An OAuth consent's scope, as described: a claim."""
    consent_tenant_wide: StrictBool | None = None
    """An OAuth consent's reach, as described: a claim."""
    says: dict[str, Any] = Field(default_factory=dict, max_length=len(REQUEST_PATHS))
    """Anything else stated, by request field path; each read at its riskiest."""

    @model_validator(mode="after")
    def _validated_says(self) -> Claim:
        values, errors = _says_errors(self.says)
        if errors:
            raise cross_field_error(type(self).__name__, errors)
        # Canonical values (enums, identifiers) in place of what was sent; the
        # model is frozen, and this runs once, at validation.
        object.__setattr__(self, "says", values)
        return self

    @classmethod
    def from_request(cls, request: Request | Mapping[str, Any]) -> Claim:
        """Read a whole request as a claim: what a naive tool schema makes a model fill in.

        ``request.action``, ``target.id``, the justification, the emergency
        flag and the request facts become the claim's fields; every other
        non-null field goes under ``says``, to be read at its riskiest.

        Raises:
            InvalidRequestError: ``request`` is not a valid request (every bad field named).
        """
        doc = parse_request(request).to_input()
        direct = {attr: doc[p.split(".")[0]][p.split(".")[1]] for p, attr in _CLAIM_FIELDS.items()}
        says = {
            f"{section}.{name}": value
            for section in _MODELS
            for name, value in doc[section].items()
            if f"{section}.{name}" in SAYABLE_PATHS and value is not None and value != []
        }
        return cls.model_validate({**direct, "says": says})


#: A tool call's arguments: a :class:`Claim`.
ToolCall = Claim


def parse_claim(data: Claim | Mapping[str, Any]) -> Claim:
    """Validate ``data`` into a :class:`Claim`, or raise ``InvalidRequestError`` naming every bad field.

    Field errors and ``says`` errors are reported together, each under
    ``claim.<path>`` (``claim.action``, ``claim.says.target.vip``).
    """
    if isinstance(data, Claim):
        data = data.model_dump(mode="python")
    if not isinstance(data, Mapping):
        raise InvalidRequestError([FieldError("claim", "must be a mapping (a tool call's arguments)")])
    try:
        return Claim.model_validate(data)
    except ValidationError as exc:
        errors = list(field_errors_from_pydantic(exc, "claim", Claim))
        if not any(e.path.startswith("claim.says") for e in errors) and "says" in data:
            # pydantic skips the model validator once a field fails: check says on its own.
            errors += [FieldError(f"claim.{p}", m) for p, m in _says_errors(data["says"])[1]]
        raise InvalidRequestError(errors) from None


# --------------------------------------------------------------------------- the result


@dataclass(frozen=True)
class ProvenancedRequest:
    """A validated request and where each of its facts came from.

    Attributes:
        request: the :class:`~helpdesk_policy.models.Request` to decide.
        provenance: every field's dotted path (:data:`REQUEST_PATHS`) ->
            ``trusted`` or ``claimed``.
        overridden: the fields the claim stated whose stated value was not
            used (the record said otherwise, or the claim could have lowered
            the decision). Tell the agent, never the requester: it is a list
            of what did not work.
        assumed: the required facts the record did not know, filled at their
            riskiest (``target.privilege_tier`` read as 9…). Fix the record.
    """

    request: Request
    provenance: dict[str, Provenance]
    overridden: tuple[str, ...] = ()
    assumed: tuple[str, ...] = ()

    @property
    def trusted_paths(self) -> list[str]:
        """The fields of record, in request order."""
        return [p for p in REQUEST_PATHS if self.provenance[p] == TRUSTED]

    @property
    def claimed_paths(self) -> list[str]:
        """The fields not of record, in request order."""
        return [p for p in REQUEST_PATHS if self.provenance[p] == CLAIMED]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``request`` (the request contract), ``provenance``, ``overridden``, ``assumed``."""
        return {
            "request": self.request.to_input(),
            "provenance": dict(self.provenance),
            "overridden": list(self.overridden),
            "assumed": list(self.assumed),
        }


# --------------------------------------------------------------------------- who the actor is


def relayed_by_bot(
    *,
    user_id: str,
    auth_strength: AuthStrength | str,
    relationship: Relationship | str | None = None,
    roles: Sequence[str] | None = None,
    risk_signals: Iterable[RiskSignal | str] = (),
) -> SessionFacts:
    """The session of a request a chatbot relays to people: the **user** is the actor.

    The bot carries the user's words to a human helpdesk agent who verifies
    the user and makes the change under their own credentials, so the bot
    is a channel (pass ``channel="chat"`` to :func:`build_request`), not a
    party. ``auth_strength`` is the chat platform's sign-in of the user (its
    SSO session: ``mfa`` when the token says MFA, ``none`` for an anonymous
    chat, where ``user_id`` is only the name the user gave), never what the
    bot or the user says about it.

    Args:
        user_id: the chat session's user (its SSO subject), or for an
            anonymous chat the identity the user gave.
        auth_strength: how the chat platform authenticated them (``none``:
            not at all).
        relationship: when a console, not a chat, relays for someone acting
            in a capacity (``helpdesk_agent``); usually left out.
        roles: the session token's groups; left out, the directory's.
        risk_signals: what the IdP or the chat platform observed.

    >>> relayed_by_bot(user_id="u-51876", auth_strength="mfa").actor_type.value
    'human'

    Raises:
        InvalidRequestError: an invalid identifier or strength (every bad field named).
    """
    strength = _strength(auth_strength)
    return _session({
        "actor_id": user_id, "actor_type": ActorType.HUMAN,
        "authenticated": strength is not None and strength is not AuthStrength.NONE,
        "auth_strength": auth_strength, "relationship": relationship, "roles": roles,
        "risk_signals": list(risk_signals),
    })


def acting_agent(
    *,
    agent_id: str,
    auth_strength: AuthStrength | str,
    user: SessionFacts | None = None,
    runs_as: str | None = None,
    risk_signals: Iterable[RiskSignal | str] = (),
) -> SessionFacts:
    """The session of an AI agent that makes the change itself: the **agent** is the actor.

    ``auth_strength`` is how the agent authenticated to the identity API
    (its workload credential: ``phishing_resistant`` for a certificate or
    federated workload identity, ``password`` for a static API key).
    ``user`` is the chat session of the person it acts for: they become
    ``on_behalf_of`` only if that session authenticated a person; an
    anonymous chat names no principal, and the policy then has the request
    confirmed out of band (``ai_agent_no_principal``). The user session's
    risk signals carry over.

    Args:
        agent_id: the agent's own identity (its identity of record).
        auth_strength: how the agent's credential authenticated it.
        user: the chat session of the person it acts for (:func:`relayed_by_bot`).
        runs_as: the identity its credential belongs to (its service account
            or workload identity); left out, the agent's record's ``runs_as``.
        risk_signals: what the agent platform observed.

    >>> user = relayed_by_bot(user_id="u-51876", auth_strength="mfa")
    >>> s = acting_agent(agent_id="agent-helpdesk-assistant", auth_strength="phishing_resistant",
    ...                  user=user, runs_as="svc-helpdesk-bot")
    >>> s.actor_type.value, s.on_behalf_of, s.runs_as
    ('ai_agent', 'u-51876', 'svc-helpdesk-bot')

    Raises:
        InvalidRequestError: an invalid identifier or strength (every bad field named).
    """
    principal = None
    signals = list(risk_signals)
    if user is not None:
        if not isinstance(user, SessionFacts):
            raise InvalidRequestError([FieldError("user", "must be the user's SessionFacts (relayed_by_bot)")])
        if user.actor_type is ActorType.HUMAN and user.authenticated:
            principal = user.actor_id
        signals += user.risk_signals
    strength = _strength(auth_strength)
    return _session({
        "actor_id": agent_id, "actor_type": ActorType.AI_AGENT,
        "authenticated": strength is not None and strength is not AuthStrength.NONE,
        "auth_strength": auth_strength, "on_behalf_of": principal, "runs_as": runs_as,
        "risk_signals": signals,
    })


def _strength(value: object) -> AuthStrength | None:
    try:
        return AuthStrength(value)
    except ValueError:
        return None  # validation reports it


def _session(values: dict[str, Any]) -> SessionFacts:
    try:
        return SessionFacts.model_validate(values)
    except ValidationError as exc:
        raise InvalidRequestError(list(field_errors_from_pydantic(exc, "session", SessionFacts))) from None


# --------------------------------------------------------------------------- building the request


@dataclass
class _Inputs:
    """The validated arguments of one build."""

    claim: Claim
    session: SessionFacts
    channel: Channel
    request_id: str
    request_facts: RequestFacts | None
    new_identity: IdentityFacts | None
    now: datetime
    target_id: str
    target_from_claim: bool


@dataclass
class _Fetched:
    target: IdentityFacts
    actor: IdentityFacts | None
    owner_active: bool | None
    target_is_new: bool = False


# A plan yields the identifiers it needs and is sent each one's facts (or
# None), so the same look-up logic runs under build_request and abuild_request.
_Plan = Generator[str, "IdentityFacts | None", _Fetched]


def _plan(inputs: _Inputs) -> _Plan:
    session = inputs.session
    target = yield inputs.target_id
    is_new = False
    if target is None:
        if inputs.new_identity is None:
            raise UnknownIdentityError(inputs.target_id)
        target, is_new = inputs.new_identity, True
    actor: IdentityFacts | None = None
    needs_actor = session.roles is None or (session.actor_type is not ActorType.HUMAN and session.runs_as is None)
    if needs_actor:
        actor = target if session.actor_id == target.id and not is_new else (yield session.actor_id)
    owner_active = target.owner_active
    if owner_active is None and target.owners:
        owner_active = True
        for owner in dict.fromkeys(target.owners):
            record = yield owner
            if record is not None and record.status is TargetStatus.ACTIVE:
                continue
            if record is not None and record.status is not None:
                owner_active = False  # one inactive owner of record: the ownership is broken
                break
            owner_active = None  # unknown: read at its riskiest by the policy
    return _Fetched(target=target, actor=actor, owner_active=owner_active, target_is_new=is_new)


def _provider_name(provider: object) -> str:
    return str(getattr(provider, "source", "") or type(provider).__name__)


def _checked(provider: object, identifier: str, answer: object) -> IdentityFacts | None:
    if answer is None:
        return None
    if not isinstance(answer, IdentityFacts):
        raise FactsUnavailableError(
            f"answered {type(answer).__name__}, not IdentityFacts or None", source=_provider_name(provider))
    if answer.id != identifier:
        # Never decide about one identity with another's facts.
        raise FactsUnavailableError("answered for another identity than the one asked for",
                                    source=_provider_name(provider))
    return answer


def _lookup(provider: FactsProvider, identifier: str) -> IdentityFacts | None:
    try:
        answer = provider.identity(identifier)
    except FactsError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of the record is "unavailable", never partial facts
        raise FactsUnavailableError(f"the look-up failed ({type(exc).__name__})",
                                    source=_provider_name(provider)) from exc
    return _checked(provider, identifier, answer)


async def _alookup(provider: FactsProvider, identifier: str) -> IdentityFacts | None:
    try:
        method = getattr(provider, "aidentity", None)
        if method is not None and inspect.iscoroutinefunction(method):
            answer = await method(identifier)
        else:
            answer = await asyncio.to_thread(provider.identity, identifier)
    except FactsError:
        raise
    except Exception as exc:  # noqa: BLE001 - as _lookup
        raise FactsUnavailableError(f"the look-up failed ({type(exc).__name__})",
                                    source=_provider_name(provider)) from exc
    return _checked(provider, identifier, answer)


def _validated_inputs(
    claim: object, session: object, channel: object, request_id: object,
    request_facts: object, new_identity: object, now: object,
) -> _Inputs:
    errors: list[FieldError] = []
    parsed_claim: Claim | None = None
    try:
        parsed_claim = parse_claim(claim)  # type: ignore[arg-type]
    except InvalidRequestError as exc:
        errors += exc.errors
    parsed_session = _model_arg(SessionFacts, session, "session", errors)
    parsed_facts = _model_arg(RequestFacts, request_facts, "request_facts", errors) if request_facts is not None else None
    parsed_new = _model_arg(IdentityFacts, new_identity, "new_identity", errors) if new_identity is not None else None
    try:
        parsed_channel = Channel(channel)
    except ValueError:
        parsed_channel = None
        errors.append(FieldError("channel", f"must be one of {[c.value for c in Channel]}"))
    if request_id is None:
        request_id = f"req-{uuid.uuid4().hex}"
    try:
        field_adapter(RequestInfo, "id").validate_python(request_id)
    except ValidationError as exc:
        errors += field_errors_from_pydantic(exc, "request_id")
    if now is None:
        now = datetime.now(timezone.utc)
    elif not isinstance(now, datetime) or now.tzinfo is None or now.utcoffset() is None:
        errors.append(FieldError("now", "must be a timezone-aware datetime"))
    if parsed_new is not None and parsed_claim is not None and parsed_claim.action is not Action.SERVICE_ACCOUNT_CREATE:
        errors.append(FieldError("new_identity", "is for service_account_create only (an identity not yet in the record)"))
    target_id = None
    if parsed_claim is not None and parsed_session is not None:
        target_id = parsed_claim.target_id
        if parsed_new is not None and target_id is not None and parsed_new.id != target_id:
            errors.append(FieldError("new_identity.id", "must be the claim's target_id"))
        if target_id is None:
            if parsed_new is not None:
                target_id = parsed_new.id
            elif parsed_session.actor_type is ActorType.AI_AGENT:
                # "Me" from an agent means its principal, and none is authenticated.
                target_id = parsed_session.on_behalf_of
                if target_id is None:
                    errors.append(FieldError("claim.target_id", "is required: the session names no person the agent acts for"))
            else:
                target_id = parsed_session.actor_id
    if errors:
        raise InvalidRequestError(errors)
    assert parsed_claim is not None and parsed_session is not None and parsed_channel is not None and target_id is not None
    return _Inputs(
        claim=parsed_claim, session=parsed_session, channel=parsed_channel, request_id=str(request_id),
        request_facts=parsed_facts, new_identity=parsed_new, now=now,  # type: ignore[arg-type]
        target_id=target_id, target_from_claim=parsed_claim.target_id is not None,
    )


def _model_arg(model: type[BaseModel], value: object, name: str, errors: list[FieldError]) -> Any:
    if isinstance(value, model):
        value = value.model_dump(mode="python")
    if not isinstance(value, Mapping):
        errors.append(FieldError(name, f"must be a {model.__name__} or a mapping"))
        return None
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        errors.extend(field_errors_from_pydantic(exc, name, model))
        return None


def build_request(
    claim: Claim | Mapping[str, Any],
    *,
    facts: FactsProvider,
    session: SessionFacts | Mapping[str, Any],
    channel: Channel | str,
    request_id: str | None = None,
    request_facts: RequestFacts | Mapping[str, Any] | None = None,
    new_identity: IdentityFacts | Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> ProvenancedRequest:
    """Build the request to decide from a claim, the facts of record and the session.

    Args:
        claim: what the requester or the model says (a :class:`Claim`, or a
            tool call's arguments as a mapping).
        facts: the system of record for identities.
        session: who the actor is and how they authenticated, from your
            authenticated session (:func:`relayed_by_bot`, :func:`acting_agent`).
        channel: the channel the request actually arrived on (your
            ticketing or chat platform's, not the claim's).
        request_id: the ticket id (default: a new ``req-<uuid>``).
        request_facts: what will actually be granted, from the access
            catalogue or the consent prompt (:class:`RequestFacts`).
        new_identity: for ``service_account_create`` only: the facts of the
            identity to be created (type, environment, owners), from your
            provisioning record, since the directory cannot know it yet.
        now: the time of the request (default: now, UTC).

    Returns:
        The validated request with each field's provenance.

    Raises:
        InvalidRequestError: the claim, the session or another argument is
            invalid, or the merged request is (e.g. ``service_account_create``
            on a person): every bad field named.
        UnknownIdentityError: the target is not in the record.
        FactsUnavailableError: the provider failed or answered for another identity.
        InvalidFactsError: the provider read invalid facts (e.g. a bad inventory row).
    """
    inputs = _validated_inputs(claim, session, channel, request_id, request_facts, new_identity, now)
    plan = _plan(inputs)
    try:
        identifier = next(plan)
        while True:
            identifier = plan.send(_lookup(facts, identifier))
    except StopIteration as stop:
        fetched: _Fetched = stop.value
    return _merge(inputs, fetched)


async def abuild_request(
    claim: Claim | Mapping[str, Any],
    *,
    facts: FactsProvider,
    session: SessionFacts | Mapping[str, Any],
    channel: Channel | str,
    request_id: str | None = None,
    request_facts: RequestFacts | Mapping[str, Any] | None = None,
    new_identity: IdentityFacts | Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> ProvenancedRequest:
    """:func:`build_request` for asyncio: awaits the provider's ``aidentity`` when it has
    one, else runs its ``identity`` in a worker thread, so the event loop never blocks."""
    inputs = _validated_inputs(claim, session, channel, request_id, request_facts, new_identity, now)
    plan = _plan(inputs)
    try:
        identifier = next(plan)
        while True:
            identifier = plan.send(await _alookup(facts, identifier))
    except StopIteration as stop:
        fetched: _Fetched = stop.value
    return _merge(inputs, fetched)


def claim_resolver(
    *, facts: FactsProvider, session: SessionFacts, channel: Channel | str,
    request_facts: RequestFacts | Mapping[str, Any] | None = None,
) -> Callable[[Request], Request]:
    """A ``resolve`` hook for :class:`~helpdesk_policy.agents.guard.Guard`, bound to one session.

    It reads the request it is given as a claim (:meth:`Claim.from_request`:
    only the action, target and justification are taken as asked; every
    other field is read at its riskiest) and rebuilds it from ``facts`` and
    ``session``, keeping the request's id and its ``requested_at`` (stamped
    now only when the request has none, or one without a time zone, which
    names no instant). Keeping the time makes the rebuild a function of the
    request and the records: the same request rebuilt twice has one
    ``input_digest``, so a permit and evidence bound to it stay bound. Make
    one per authenticated session; never let the model choose ``session``
    or ``channel``.
    """

    def resolve(request: Request) -> Request:
        req = parse_request(request)
        at = req.request.requested_at
        if at is not None and (at.tzinfo is None or at.utcoffset() is None):
            at = None
        return build_request(Claim.from_request(req), facts=facts, session=session, channel=channel,
                             request_id=req.request.id, request_facts=request_facts, now=at).request

    return resolve


# --------------------------------------------------------------------------- the merge


class _Merge:
    """Collects each field's value, provenance, and the claims not used."""

    def __init__(self, says: Mapping[str, Any]) -> None:
        self.says = says
        self.values: dict[str, Any] = {}
        self.provenance: dict[str, Provenance] = {}
        self.overridden: list[str] = []
        self.assumed: list[str] = []

    def set(self, path: str, value: Any, provenance: Provenance) -> None:
        self.values[path] = value
        self.provenance[path] = provenance

    def record(self, path: str, value: Any) -> None:
        """A fact of record: a claim of it is ignored (and listed when it differs)."""
        self.set(path, value, TRUSTED)
        if path in self.says and not _same(self.says[path], value):
            self.overridden.append(path)

    def riskier(self, path: str, value: Any, riskier: Callable[[Any, Any], bool]) -> None:
        """The record's value, or the claim's where ``riskier(claim, record)``.

        A record that does not know (``None``) stays unknown: unknown is the
        riskiest reading of every field this is used for.
        """
        if path in self.says:
            stated = self.says[path]
            if value is not None and riskier(stated, value):
                self.set(path, stated, CLAIMED)
                return
            if not _same(stated, value):
                self.overridden.append(path)
        self.set(path, value, TRUSTED)

    def required(self, path: str, value: Any, riskiest: Any, riskier: Callable[[Any, Any], bool]) -> None:
        """A required fact: unknown in the record is filled at its riskiest (and listed)."""
        if value is None:
            self.assumed.append(path)
            if path in self.says and not _same(self.says[path], riskiest):
                self.overridden.append(path)
            self.set(path, riskiest, CLAIMED)
            return
        self.riskier(path, value, riskier)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, list) and isinstance(b, list):
        return set(a) == set(b)
    return a == b


def _never(claim: Any, record: Any) -> bool:
    return False


def _greater(claim: Any, record: Any) -> bool:
    return claim > record


def _less(claim: Any, record: Any) -> bool:
    return claim < record


def _true_over_false(claim: Any, record: Any) -> bool:
    return claim is True and record is False


def _false_over_true(claim: Any, record: Any) -> bool:
    return claim is False and record is True


_SCOPES = (ConsentScope.LOW, ConsentScope.MEDIUM, ConsentScope.HIGH)


def _broader_scope(claim: Any, record: Any) -> bool:
    return _SCOPES.index(claim) > _SCOPES.index(record)


def _derived_relationship(session: SessionFacts, target: IdentityFacts) -> Relationship:
    """The actor's relationship of record to the target, never a claim's."""
    if session.actor_id == target.id:
        return Relationship.SELF
    if session.actor_type is ActorType.AI_AGENT:
        # Stated for the record only: the policy reads an agent's relationship
        # from its principal. "other" is the riskiest statement a custom policy could read.
        principal = session.on_behalf_of
        if principal is not None and target.type is not TargetType.HUMAN and principal in target.owners:
            return Relationship.OWNER
        if principal is not None and target.manager is not None and principal == target.manager:
            return Relationship.MANAGER
        return Relationship.OTHER
    if session.relationship is not None:
        return session.relationship
    if target.manager is not None and target.manager == session.actor_id:
        return Relationship.MANAGER
    if target.type is not TargetType.HUMAN and session.actor_id in target.owners:
        return Relationship.OWNER
    return Relationship.OTHER


def _merge(inputs: _Inputs, fetched: _Fetched) -> ProvenancedRequest:
    claim, session, target, actor = inputs.claim, inputs.session, fetched.target, fetched.actor
    m = _Merge(claim.says)

    # request
    m.record("request.id", inputs.request_id)
    m.set("request.action", claim.action, CLAIMED)
    m.riskier("request.channel", inputs.channel,
              lambda c, r: CHANNEL_TRUST_ORDER.index(c) > CHANNEL_TRUST_ORDER.index(r))
    m.set("request.justification", claim.justification, CLAIMED)
    m.set("request.emergency", claim.emergency, CLAIMED)
    m.record("request.requested_at", inputs.now)
    rf = inputs.request_facts
    for path, attr, riskier in (
        ("request.requested_privilege_tier", "requested_privilege_tier", _greater),
        ("request.consent_scope", "consent_scope", _broader_scope),
        ("request.consent_tenant_wide", "consent_tenant_wide", _true_over_false),
    ):
        stated = getattr(claim, attr)
        if rf is None:
            # No catalogue: the description is only a claim, and unknown is the
            # policy's riskiest reading (at least privileged; high; tenant-wide).
            m.set(path, None, CLAIMED)
            if stated is not None:
                m.overridden.append(path)
            continue
        record = getattr(rf, attr)
        if stated is not None and record is not None and riskier(stated, record):
            m.set(path, stated, CLAIMED)
        else:
            m.set(path, record, TRUSTED)
            if stated is not None and stated != record:
                m.overridden.append(path)

    # actor
    m.record("actor.id", session.actor_id)
    m.record("actor.type", session.actor_type)
    m.record("actor.relationship", _derived_relationship(session, target))
    _merge_authentication(m, session)
    m.record("actor.on_behalf_of", session.on_behalf_of)
    roles = session.roles if session.roles is not None else (actor.roles if actor is not None else [])
    m.record("actor.roles", list(roles))
    runs_as = session.runs_as if session.runs_as is not None else (actor.runs_as if actor is not None else None)
    m.record("actor.runs_as", runs_as)

    # target
    if inputs.target_from_claim:
        m.set("target.id", target.id, CLAIMED)
    else:
        m.set("target.id", target.id, TRUSTED)
    m.record("target.type", target.type)
    m.required("target.privileged", target.privileged, True, _true_over_false)
    m.required("target.privilege_tier", target.privilege_tier, RISKIEST_TIER, _greater)
    m.required("target.vip", target.vip, True, _true_over_false)
    # Unknown is offboarded (active < suspended < offboarded never lowers a
    # level); a claimed status is ignored.
    if target.status is None:
        m.required("target.status", None, TargetStatus.OFFBOARDED, _never)
    else:
        m.record("target.status", target.status)
    m.record("target.environment", target.environment)
    m.record("target.owners", list(target.owners))
    m.record("target.owner_active", fetched.owner_active)
    m.record("target.secret_age_days", target.secret_age_days)
    m.riskier("target.consumers", target.consumers, _greater)
    m.record("target.in_secrets_manager", target.in_secrets_manager)
    m.record("target.manager", target.manager)
    m.riskier("target.contact_age_days", target.contact_age_days, _less)
    m.riskier("target.publisher_verified", target.publisher_verified, _false_over_true)
    m.riskier("target.holds_secret", target.holds_secret, _true_over_false)

    # context: the session's observations and the target's IdP history
    signals = set(session.risk_signals) | set(target.risk_signals)
    extra = set(claim.says.get("context.risk_signals", ())) - signals
    m.set("context.risk_signals", sorted(signals | extra, key=lambda s: s.value), CLAIMED if extra else TRUSTED)
    # Observations: a record that observed nothing counts none.
    m.riskier("context.failed_verifications_24h", target.failed_verifications_24h or 0, _greater)
    m.record("context.recent_credential_change_hours", target.recent_credential_change_hours)
    m.riskier("context.enrolled_factor_available", target.enrolled_factor_available, _false_over_true)

    missing = [p for p in REQUEST_PATHS if p not in m.values]
    assert not missing, missing  # every field has a provenance
    doc: dict[str, dict[str, Any]] = {section: {} for section in _MODELS}
    for path, value in m.values.items():
        section, name = path.split(".", 1)
        doc[section][name] = value
    request = parse_request(doc)
    if m.overridden:
        log.debug("claim read at its riskiest: %d stated field(s) not used", len(m.overridden))
    order = {p: i for i, p in enumerate(REQUEST_PATHS)}
    return ProvenancedRequest(
        request=request,
        provenance={p: m.provenance[p] for p in REQUEST_PATHS},
        overridden=tuple(sorted(set(m.overridden), key=order.__getitem__)),
        assumed=tuple(sorted(set(m.assumed), key=order.__getitem__)),
    )


def _merge_authentication(m: _Merge, session: SessionFacts) -> None:
    """The weaker of the session's authentication and the claim's (a claim can only weaken it)."""
    says = m.says
    stated: AuthStrength | None = None
    if says.get("actor.authenticated") is False:
        stated = AuthStrength.NONE
    elif "actor.auth_strength" in says:
        stated = says["actor.auth_strength"]
    rank = AUTH_STRENGTH_ORDER.index
    if stated is not None and rank(stated) < rank(session.auth_strength):
        m.set("actor.auth_strength", stated, CLAIMED)
        m.set("actor.authenticated", stated is not AuthStrength.NONE, CLAIMED)
        return
    m.record("actor.authenticated", session.authenticated)
    m.record("actor.auth_strength", session.auth_strength)
