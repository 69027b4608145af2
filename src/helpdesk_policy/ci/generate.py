"""Deterministic generation of valid requests, for parity checks and policy diffs.

:func:`generate_requests` is runtime code (no hypothesis): ``helpdesk-policy test``
uses it for the rego/native parity check and ``helpdesk-policy diff`` to compare
two policy versions on the same cases. The same ``n`` and ``seed`` give the same
requests on every machine and Python version, so a diff in CI can be reproduced
on a laptop, and a "looser" example named ``GEN-1-00042`` is the same request
everywhere.

Why this is reproducible: the only source of randomness is
:meth:`random.Random.random` on a generator seeded with an ``int``; the Python
documentation guarantees that sequence never changes across versions (the
helper methods ``choice``/``sample``/``randrange`` carry no such guarantee, so
they are not used). Every choice is made from a tuple in a fixed order (enum
definition order), never from a set or a dict whose order could vary.

>>> from helpdesk_policy.ci.generate import generate_requests
>>> reqs = generate_requests(34, seed=7)
>>> len(reqs), reqs[0].request.id
(34, 'GEN-7-00000')
>>> sorted({r.request.action.value for r in reqs}) == sorted(a.value for a in __import__(
...     "helpdesk_policy.models", fromlist=["Action"]).Action)
True
>>> generate_requests(5, seed=7) == reqs[:5]
True
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

from ..models import (
    Action,
    ActorType,
    AuthStrength,
    Channel,
    ConsentScope,
    Relationship,
    Request,
    RiskSignal,
    TargetStatus,
    TargetType,
)

__all__ = ["generate_request_dicts", "generate_requests"]

_T = TypeVar("_T")

_ACTIONS: tuple[Action, ...] = tuple(Action)
_CHANNELS: tuple[Channel, ...] = tuple(Channel)
_NHI_TYPES: tuple[TargetType, ...] = tuple(t for t in TargetType if t.is_nhi)
_NON_SELF: tuple[Relationship, ...] = tuple(r for r in Relationship if r is not Relationship.SELF)
_STRONG: tuple[AuthStrength, ...] = tuple(s for s in AuthStrength if s is not AuthStrength.NONE)
_SIGNALS: tuple[RiskSignal, ...] = tuple(RiskSignal)
# Production in the spellings inventories use, and non-production ones in
# other cases and with padding (validation trims and case-folds them, so
# ``" Prod "`` is production and ``"Dev"`` is not): a config or rule change
# around environments shows up.
_ENVIRONMENTS: tuple[str, ...] = ("production", "prod", "PROD", " Prod ", "Production", "prd",
                                  "staging", "Staging", "dev", "Dev", "test", "qa")
#: The second role of a person: ordinary ones, and the security and helpdesk
#: roles of the stock config (which open containment and information requests).
_ROLES: tuple[str, ...] = ("employee", "contractor", "helpdesk", "admin", "network_admin",
                           "security", "service_desk", "incident_response")
_SCOPES: tuple[ConsentScope, ...] = tuple(ConsentScope)
_ACCESS: frozenset[Action] = frozenset(
    {Action.ACCESS_GRANT, Action.ROLE_CHANGE, Action.PRIVILEGE_ELEVATION, Action.DELEGATED_ADMIN}
)
_JUSTIFICATIONS: tuple[str, ...] = (
    "lost phone",
    "locked out after holiday",
    "new laptop",
    "project onboarding",
    "incident response",
    "quarterly rotation",
)
_EPOCH = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
#: The requester kind that can be the target itself (``relationship: self``).
_SELF_ACTOR: dict[TargetType, ActorType] = {
    t: ActorType.HUMAN if t is TargetType.HUMAN else ActorType.AI_AGENT if t is TargetType.AI_AGENT
    else ActorType.SERVICE
    for t in TargetType
}


class _Draw:
    """Choices built on ``Random.random()`` only (see the module docstring)."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def unit(self) -> float:
        return self._rng.random()

    def chance(self, p: float) -> bool:
        return self._rng.random() < p

    def below(self, n: int) -> int:
        # min(): random() < 1.0 always, but keep the index in range whatever floats do.
        return min(int(self._rng.random() * n), n - 1)

    def between(self, lo: int, hi: int) -> int:
        """An int in ``[lo, hi]``."""
        return lo + self.below(hi - lo + 1)

    def pick(self, seq: Sequence[_T]) -> _T:
        return seq[self.below(len(seq))]

    def subset(self, seq: Sequence[_T], k: int) -> list[_T]:
        """``k`` distinct items of ``seq``, kept in ``seq`` order (a partial Fisher-Yates)."""
        pool = list(range(len(seq)))
        chosen = [pool.pop(self.below(len(pool))) for _ in range(min(k, len(pool)))]
        return [seq[i] for i in sorted(chosen)]


def generate_requests(n: int, seed: int = 0) -> list[Request]:
    """``n`` valid, varied requests, the same for the same ``n`` and ``seed`` everywhere.

    The mix covers the whole vocabulary: actions cycle through every action (so
    any ``n >= 18`` contains each one), and channels, requester kinds (human,
    AI agent, service), relationships, authentication strengths, target kinds
    (half human, half one of the six NHI kinds), statuses, privilege tiers,
    VIP flags, risk signals, failed verifications and recent credential changes
    are drawn at rates that make rare rules fire in a few hundred requests.
    The model's cross-field rules always hold: ``relationship`` is ``self``
    exactly when ``actor.id == target.id`` (and then the requester is of the
    target's kind: a person, an AI agent, or automation for any other NHI),
    ``authenticated`` is false exactly
    when ``auth_strength`` is ``none``, and ``service_account_create`` targets
    an NHI. Optional facts are sometimes ``None`` (read as riskiest): the NHI
    facts, and the facts of policy v2 (the requested privilege tier of an
    access change, an OAuth consent's scope, reach and publisher, the
    identity an agent runs as, often the target itself, the target's manager
    of record, often the requester, the age of its contact of record around
    the 30-day minimum, whether an NHI holds a secret, whether a factor is
    still enrolled). Environments come in inventory spellings (``PROD``,
    ``" Prod "``, ``Staging``, ``Dev``), and people sometimes hold a security
    or helpdesk role.

    Args:
        n: how many requests (``0`` gives an empty list).
        seed: any int; requests are ``GEN-<seed>-<index>``.

    Returns:
        Validated :class:`~helpdesk_policy.models.Request` objects.

    Raises:
        ValueError: ``n`` is negative.
    """
    return [Request.model_validate(doc) for doc in generate_request_dicts(n, seed)]


def generate_request_dicts(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """The requests of :func:`generate_requests` as JSON-ready dicts (not yet validated)."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    draw = _Draw(seed)
    # Rotate the action cycle by the seed so different seeds do not all start
    # with the same action; the rotation is plain arithmetic, not hashing.
    offset = seed % len(_ACTIONS)
    return [_one(draw, seed, i, _ACTIONS[(i + offset) % len(_ACTIONS)]) for i in range(n)]


def _one(draw: _Draw, seed: int, index: int, action: Action) -> dict[str, Any]:
    # --- target
    # Half human, half one of the six NHI kinds; service_account_create needs an NHI.
    if action is Action.SERVICE_ACCOUNT_CREATE or draw.chance(0.5):
        target_type = draw.pick(_NHI_TYPES)
    else:
        target_type = TargetType.HUMAN
    is_nhi = target_type.is_nhi

    # --- requester: mostly people, agents and automation often enough to exercise their rules
    u = draw.unit()
    actor_type = ActorType.HUMAN if u < 0.6 else ActorType.AI_AGENT if u < 0.85 else ActorType.SERVICE

    # An NHI acting on itself is rarer than a person acting on their own account.
    relationship = Relationship.SELF if draw.chance(0.15 if is_nhi else 0.35) else draw.pick(_NON_SELF)
    if relationship is Relationship.SELF:
        # Only an identity of the target's own kind can be it: a person a human
        # target, an AI agent an ai_agent target, an automation any other NHI.
        actor_type = _SELF_ACTOR[target_type]
    target_prefix = "u" if not is_nhi else {
        TargetType.SERVICE_ACCOUNT: "svc",
        TargetType.OAUTH_APP: "app",
        TargetType.API_KEY: "key",
        TargetType.AUTOMATION_TOKEN: "tok",
        TargetType.WORKLOAD_IDENTITY: "wl",
        TargetType.AI_AGENT: "agent",
    }[target_type]
    target_id = f"{target_prefix}-{draw.between(1, 40)}"
    if relationship is Relationship.SELF:
        actor_id = target_id
    else:
        actor_prefix = {ActorType.HUMAN: "u", ActorType.AI_AGENT: "bot", ActorType.SERVICE: "svc"}[actor_type]
        actor_id = f"{actor_prefix}-{draw.between(41, 80)}"  # disjoint from target ids: never 'self'

    if draw.chance(0.8):
        authenticated, strength = True, draw.pick(_STRONG)
    else:
        authenticated, strength = False, AuthStrength.NONE

    on_behalf_of: str | None = None
    if actor_type is ActorType.AI_AGENT and draw.chance(0.6):
        on_behalf_of = target_id if (not is_nhi and draw.chance(0.5)) else f"u-{draw.between(1, 80)}"

    roles = [_ROLES[0]] if actor_type is ActorType.HUMAN else []
    if actor_type is ActorType.HUMAN and draw.chance(0.4):
        roles.append(draw.pick(_ROLES[1:]))

    # The identity an agent or automation runs as: sometimes the target itself
    # (an agent changing the access of its own service account).
    runs_as: str | None = None
    if actor_type is not ActorType.HUMAN and draw.chance(0.4):
        runs_as = target_id if draw.chance(0.5) else f"svc-{draw.between(41, 80)}"

    # --- target facts
    privileged = draw.chance(0.3)
    if privileged:
        tier = draw.between(0, 4)  # tier 0 with the flag set: the flag alone must count
    else:
        tier = draw.between(1, 3) if draw.chance(0.1) else 0  # a tier without the flag
    vip = (not is_nhi) and draw.chance(0.12)
    s = draw.unit()
    status = TargetStatus.ACTIVE if s < 0.8 else TargetStatus.SUSPENDED if s < 0.9 else TargetStatus.OFFBOARDED

    owners: list[str] = []
    environment: str | None = None
    owner_active: bool | None = None
    secret_age: int | None = None
    consumers: int | None = None
    in_manager: bool | None = None
    if is_nhi:
        k = draw.between(0, 2)
        owners = [f"u-{draw.between(1, 80)}" for _ in range(k)]
        # Mostly requested by an owner of record (the routine case), often enough
        # not, so the ownership denials fire too.
        if relationship is Relationship.OWNER or (relationship is not Relationship.SELF and draw.chance(0.6)):
            owners.insert(0, actor_id)  # the requester owns the NHI
        if on_behalf_of is not None and draw.chance(0.5):
            owners.append(on_behalf_of)  # an agent acting for an owner
        owners = list(dict.fromkeys(owners))  # ordered de-duplication
        environment = None if draw.chance(0.2) else draw.pick(_ENVIRONMENTS)
        o = draw.unit()
        owner_active = None if o < 0.1 else (o < 0.85)
        secret_age = None if draw.chance(0.2) else draw.between(0, 200)
        consumers = None if draw.chance(0.2) else draw.between(0, 25)
        m = draw.unit()
        in_manager = None if m < 0.2 else (m < 0.6)

    # --- v2 facts: each sometimes missing (read as its riskiest value)
    # The manager of record of a person: often the requester (or the person an
    # agent acts for), so "manager" is a relationship of record; sometimes someone else.
    manager: str | None = None
    if not is_nhi and not draw.chance(0.3):
        u = draw.unit()
        principal = on_behalf_of if actor_type is ActorType.AI_AGENT else actor_id
        manager = principal if (u < 0.5 and principal is not None and principal != target_id) \
            else f"u-{draw.between(81, 99)}"
    # Around the stock 30-day minimum for a contact of record used in a callback.
    contact_age = None if draw.chance(0.3) else draw.pick((0, 3, 29, 30, 31, 90, 400))
    holds_secret = None if not is_nhi or draw.chance(0.5) else draw.chance(0.6)
    publisher_verified = None
    if target_type is TargetType.OAUTH_APP and not draw.chance(0.3):
        publisher_verified = draw.chance(0.6)
    enrolled = None if draw.chance(0.4) else draw.chance(0.6)
    requested_tier = None
    if action in _ACCESS and not draw.chance(0.4):
        requested_tier = draw.between(0, 3)
    scope: ConsentScope | None = None
    tenant_wide: bool | None = None
    if action is Action.OAUTH_CONSENT:
        scope = None if draw.chance(0.3) else draw.pick(_SCOPES)
        tenant_wide = None if draw.chance(0.3) else draw.chance(0.4)

    # --- context
    # Most tickets carry no signal; when some do, usually one or two.
    k = 0 if draw.chance(0.55) else draw.pick((1, 1, 1, 2, 2, 3))
    signals = [sig.value for sig in draw.subset(_SIGNALS, k)]
    failed = 0 if draw.chance(0.8) else draw.between(1, 5)
    # Missing history reads as a change within the window wherever the chained rule applies.
    recent = None if draw.chance(0.5) else float(draw.between(0, 200))

    return {
        "request": {
            "id": f"GEN-{seed}-{index:05d}",
            "action": action.value,
            "channel": draw.pick(_CHANNELS).value,
            "justification": None if draw.chance(0.3) else draw.pick(_JUSTIFICATIONS),
            "emergency": draw.chance(0.06),
            "requested_at": (_EPOCH + timedelta(minutes=37 * index)).isoformat().replace("+00:00", "Z"),
            "requested_privilege_tier": requested_tier,
            "consent_scope": None if scope is None else scope.value,
            "consent_tenant_wide": tenant_wide,
        },
        "actor": {
            "id": actor_id,
            "type": actor_type.value,
            "relationship": relationship.value,
            "authenticated": authenticated,
            "auth_strength": strength.value,
            "on_behalf_of": on_behalf_of,
            "roles": roles,
            "runs_as": runs_as,
        },
        "target": {
            "id": target_id,
            "type": target_type.value,
            "privileged": privileged,
            "privilege_tier": tier,
            "vip": vip,
            "status": status.value,
            "environment": environment,
            "owners": owners,
            "owner_active": owner_active,
            "secret_age_days": secret_age,
            "consumers": consumers,
            "in_secrets_manager": in_manager,
            "manager": manager,
            "contact_age_days": contact_age,
            "publisher_verified": publisher_verified,
            "holds_secret": holds_secret,
        },
        "context": {
            "risk_signals": signals,
            "failed_verifications_24h": failed,
            "recent_credential_change_hours": recent,
            "enrolled_factor_available": enrolled,
        },
    }
