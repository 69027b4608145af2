"""The native engine: a pure-Python mirror of the stock Rego policies.

It reads the same :class:`~helpdesk_policy.config.PolicyConfig`, produces the
same reasons (codes, levels, messages, refs) and obligations, and is proven
equal to the Rego under regopy and under OPA's own evaluator by the
differential tests in ``tests/test_parity.py``. Each block below names the
``.rego`` file it mirrors; change both together.

It is the fallback when the other engines fail and the fast path when a
process cannot afford an embedded interpreter. It only mirrors the *stock*
policies: pointed at a different policy directory it refuses to load rather
than silently deciding with rules that are not the ones on disk.

Speed: reasons and obligations are immutable, so every one whose text depends
only on the config (or on a small closed vocabulary) is built once per config
in a :class:`_Book`; a decision mostly appends prebuilt objects.
"""

from __future__ import annotations

from functools import lru_cache

from ..config import PolicyConfig
from ..errors import EngineUnavailableError
from ..levels import REQUIREMENTS, Level
from ..models import (
    AUTH_STRENGTH_ORDER,
    Action,
    ActorType,
    AuthStrength,
    Channel,
    Obligation,
    Reason,
    Relationship,
    Request,
    RiskSignal,
    TargetStatus,
    TargetType,
    Verdict,
    construct_trusted,
)
from ..policyset import PolicySet
from ..resources import stock_policy_dir
from .base import BaseEngine

__all__ = ["NativeEngine", "decide_native"]

L = Level

# Framework references (the Rego spells them as literals).
AA23 = "CISA-AA23-320A"
SP63B = "NIST-SP-800-63B-4"
AA01 = "NIST-CSF-2.0:PR.AA-01"
AA02 = "NIST-CSF-2.0:PR.AA-02"
AA03 = "NIST-CSF-2.0:PR.AA-03"
AA05 = "NIST-CSF-2.0:PR.AA-05"
AC1 = "NIST-CSF-1.1:PR.AC-1"
NHI1 = "OWASP-NHI-2025:NHI1"
NHI2 = "OWASP-NHI-2025:NHI2"
NHI5 = "OWASP-NHI-2025:NHI5"
NHI7 = "OWASP-NHI-2025:NHI7"
NHI10 = "OWASP-NHI-2025:NHI10"
LLM06 = "OWASP-LLM-2025:LLM06"
AIRMF = "NIST-AI-RMF-1.0"

# obligations.rego: evidence_fields
EVIDENCE_FIELDS: dict[Level, list[str]] = {
    L.SELF_SERVICE: ["requester", "outcome"],
    L.STEP_UP: ["identity_proof", "verifier", "outcome"],
    L.MANAGER_APPROVAL: ["identity_proof", "verifier", "approver", "outcome"],
    L.CALLBACK: ["identity_proof", "verifier", "approver", "outcome"],
    L.DENY: ["requester", "denial_reason", "outcome"],
}

_LEVELS = tuple(Level)
_RANK = {lvl: i for i, lvl in enumerate(_LEVELS)}
_AUTH_RANK = {s: i for i, s in enumerate(AUTH_STRENGTH_ORDER)}
_CALLBACK = _RANK[L.CALLBACK]
_DENY = _RANK[L.DENY]


def _reason(code: str, level: Level, message: str, refs: list[str]) -> Reason:
    # Built without re-validation: inputs are our own constants and enums.
    return Reason.model_construct(code=code, level=level, message=message, refs=refs)


def _obligation(code: str, within_hours: int | None = None, fields: list[str] | None = None) -> Obligation:
    return Obligation.model_construct(code=code, within_hours=within_hours, fields=fields)


class _Book:
    """Every reason and obligation of the stock policy, prebuilt for one config."""

    def __init__(self, cfg: PolicyConfig) -> None:
        self.cfg = cfg
        R = _reason
        # baseline.rego
        self.baseline = {
            a: R(
                "action_baseline", cfg.action_baseline[a],
                f"{a.value} starts at {cfg.action_baseline[a].value} for an authenticated requester acting on "
                "their own account with no risk signal.",
                [AA05, AC1] if a in cfg.access_actions else [AA01, AC1],
            )
            for a in Action
        }
        self.unauthenticated = R(
            "requester_unauthenticated", L.STEP_UP,
            "The requester is not authenticated: verify them with a strong factor bound to the identity of record.",
            [AA03, SP63B, AA23],
        )
        self.weak_auth = {
            s: R(
                "weak_authentication", L.STEP_UP,
                f"The requester authenticated with {s.value}; "
                f"{cfg.min_auth_strength.value} or stronger is needed to act without a step-up.",
                [AA03, SP63B],
            )
            for s in AuthStrength
        }
        self.offboarded = R(
            "target_offboarded", L.DENY,
            "The target identity is offboarded: only revocation or disable is allowed here. "
            "Reactivation goes through the identity lifecycle (rehire) process.",
            [AA01, NHI1],
        )
        self.suspended = R(
            "target_suspended", L.MANAGER_APPROVAL,
            "The target identity is suspended: acting on it needs its manager or owner of record.",
            [AA01, AA05],
        )
        self.break_glass = R(
            "break_glass", L.SELF_SERVICE,
            "Emergency (break-glass) request: no level is lowered; access is time-bound and a post-incident "
            "review follows.",
            [AA05],
        )
        # recovery.rego
        self.remote_recovery = {
            c: R(
                "remote_channel_recovery", L.STEP_UP,
                f"Credential or factor recovery requested over {c.value}, an impersonable channel.",
                [AA23, SP63B],
            )
            for c in Channel
        }
        self.privileged_remote = {
            c: R(
                "privileged_remote_recovery", L.CALLBACK,
                f"Recovery of a privileged account requested over {c.value}: call back a contact of record "
                "before acting.",
                [AA23, AA05, SP63B],
            )
            for c in Channel
        }
        self.third_party = {
            rel: R(
                "third_party_recovery", L.CALLBACK,
                "Recovery requested by a requester other than the account holder "
                f"(relationship to the holder: {rel.value}): "
                "confirm with the holder through a callback to their contact of record.",
                [AA23, SP63B, AA02],
            )
            for rel in Relationship
        }
        self.unrelated = R(
            "unrelated_requester", L.DENY,
            "The requester has no relationship to the account holder: the helpdesk must not change another "
            "person's credentials or access. The holder, or their manager through the access-request process, "
            "must ask.",
            [AA23, AA05, AC1],
        )
        self.chained = R(
            "chained_credential_change", L.CALLBACK,
            f"A factor or contact change within {cfg.chained_change_window_hours} hours of another credential "
            "change fits a chained account-takeover pattern.",
            [AA23, SP63B],
        )
        # access.rego (tiers are 0..9, validated by models.Target)
        self.privileged = {
            tier: R(
                "privileged_target", L.CALLBACK if tier >= cfg.callback_tier else L.MANAGER_APPROVAL,
                f"The target holds privileged access (tier {tier}).",
                [AA05, AC1, AA23],
            )
            for tier in range(10)
        }
        self.vip = R(
            "vip_target", cfg.vip_level, "The target is a VIP, a favoured target of helpdesk impersonation.", [AA23]
        )
        # nhi.rego
        self.nhi_not_owner = R(
            "nhi_requester_not_owner", L.DENY,
            "Only an owner of record may request this for a non-human identity: human use of NHI credentials "
            "is not allowed. Ask the owner to request it, or transfer ownership first.",
            [NHI10, AA05],
        )
        self.nhi_no_owner = R(
            "nhi_no_active_owner", L.DENY,
            "The non-human identity has no active owner of record (improper offboarding): "
            "complete the ownership-transfer process first.",
            [NHI1, AA01],
        )
        self.nhi_create_no_owner = R(
            "nhi_create_without_owner", L.DENY,
            "A non-human identity cannot be created without an owner of record: name an accountable owner in "
            "the request.",
            [NHI1, AA01],
        )
        self.nhi_env_unknown = R(
            "nhi_critical_environment", L.MANAGER_APPROVAL,
            "No environment is recorded for the non-human identity: it is treated as production.",
            [NHI5, AA05],
        )
        self.nhi_env_critical = R(
            "nhi_critical_environment", L.MANAGER_APPROVAL,
            "The non-human identity runs in a critical environment: its owner's manager must approve.",
            [NHI5, AA05],
        )
        self.nhi_consumers_unknown = R(
            "nhi_widely_distributed", L.CALLBACK,
            "The number of consumers of this non-human identity is unknown: it is treated as widely distributed.",
            [NHI5, AA05],
        )
        self.nhi_stale = R(
            "nhi_stale_secret", L.SELF_SERVICE,
            f"The non-human identity's secret is older than {cfg.max_secret_age_days} days, "
            "or of unknown age: rotate it.",
            [NHI7],
        )
        self.nhi_unmanaged = R(
            "nhi_secret_unmanaged", L.SELF_SERVICE,
            "The new credential must live in a secrets manager, not in code, tickets or chat.",
            [NHI2, NHI7],
        )
        # agents.rego
        self.agent_self_privilege = R(
            "ai_agent_self_privilege", L.DENY,
            "An AI agent may not grant or elevate privileges for itself. A human owner must request the change "
            "through the access-request process.",
            [LLM06, AIRMF, AA05],
        )
        self.agent_requester = R(
            "ai_agent_requester", cfg.ai_agent_level,
            "The request comes from an AI agent, which cannot vouch for a person's identity or approve: "
            "a human must verify and approve.",
            [LLM06, AIRMF],
        )
        self.agent_no_principal = R(
            "ai_agent_no_principal", L.CALLBACK,
            "The AI agent names no person it acts for: confirm the request with the target's contact "
            "of record out of band.",
            [LLM06, AIRMF],
        )
        # risk.rego
        risk_refs = [AA03, AA23]
        self.risk_high = {
            s: R(f"risk_{s.value}", L.CALLBACK, f"High-risk signal: {s.value}.", risk_refs) for s in RiskSignal
        }
        self.risk_medium = {
            (s, lvl): R(f"risk_{s.value}", lvl, f"Risk signal: {s.value} raises the baseline one step.", risk_refs)
            for s in RiskSignal
            for lvl in _LEVELS[1:_CALLBACK + 1]
        }
        self.risk_refs = risk_refs
        # obligations.rego
        self.record_evidence = {lvl: _obligation("record_evidence", fields=EVIDENCE_FIELDS[lvl]) for lvl in _LEVELS}
        self.notify = _obligation("notify_identity_owner")
        self.revoke = _obligation("revoke_previous_credential", cfg.revoke_previous_within_hours)
        self.terminate = _obligation("terminate_sessions")
        self.rotate = _obligation("rotate_stale_secret")
        self.move = _obligation("move_to_secrets_manager")
        self.time_bound = _obligation("time_bound_access", cfg.break_glass_hours)
        self.review = _obligation("post_incident_review")
        self.requirements = {lvl: list(REQUIREMENTS[lvl]) for lvl in _LEVELS}
        self.playbook = {
            (a, lvl): f"{a.value.replace('_', '-')}-{lvl.value.replace('_', '-')}" for a in Action for lvl in _LEVELS
        }

    @lru_cache(maxsize=256)  # noqa: B019 - one book per config, kept for the engine's life
    def widely_distributed(self, consumers: int) -> Reason:
        return _reason(
            "nhi_widely_distributed", L.CALLBACK,
            f"The non-human identity has {consumers} consumers (widely distributed from "
            f"{self.cfg.nhi_wide_consumers}): confirm with its owner of record out of band.",
            [NHI5, AA05],
        )

    @lru_cache(maxsize=64)  # noqa: B019
    def compound(self, medium: int, level: Level) -> Reason:
        return _reason(
            "risk_compound", level,
            f"{medium} medium risk signals together raise the baseline {medium} steps.", self.risk_refs,
        )

    @lru_cache(maxsize=256)  # noqa: B019
    def failed(self, count: int, level: Level) -> Reason:
        return _reason(
            "failed_verifications", level,
            f"{count} failed verification attempt(s) in the last 24 hours "
            f"({self.cfg.failed_verifications_callback} or more go to callback).",
            [AA23, SP63B],
        )


def _reason_key(r: Reason) -> tuple[int, str, str]:
    return (-_RANK[r.level], r.code, r.message)


def _obligation_key(o: Obligation) -> str:
    return o.code


def decide_native(req: Request, cfg: PolicyConfig, book: _Book | None = None) -> Verdict:
    """Evaluate the stock policy for one validated request."""
    b = book if book is not None else _book_for(cfg)
    r_info, actor, target, ctx = req.request, req.actor, req.target, req.context
    action = r_info.action

    # common.rego
    is_containment = action in cfg.containment_actions
    guarded = not (action is Action.INFO_REQUEST or is_containment)
    is_recovery = action in cfg.recovery_actions
    is_access = action in cfg.access_actions
    is_human = target.type is TargetType.HUMAN
    remote = r_info.channel in cfg.remote_channels
    authenticated = actor.authenticated and actor.auth_strength is not AuthStrength.NONE
    baseline = b.baseline[action]
    base_rank = _RANK[baseline.level]
    tier = max(target.privilege_tier, cfg.privileged_tier) if target.privileged else target.privilege_tier
    privileged = tier >= cfg.privileged_tier
    relationship = actor.relationship

    reasons: list[Reason] = [baseline]
    add = reasons.append

    # baseline.rego
    if action is not Action.INFO_REQUEST:
        if not authenticated:
            add(b.unauthenticated)
        elif _AUTH_RANK[actor.auth_strength] < cfg.min_auth_rank:
            add(b.weak_auth[actor.auth_strength])
    if target.status is TargetStatus.OFFBOARDED and not is_containment:
        add(b.offboarded)
    if target.status is TargetStatus.SUSPENDED and guarded:
        add(b.suspended)
    if r_info.emergency:
        add(b.break_glass)

    # recovery.rego
    if is_recovery:
        if remote:
            add(b.remote_recovery[r_info.channel])
            if privileged:
                add(b.privileged_remote[r_info.channel])
        if is_human and relationship is not Relationship.SELF and relationship is not Relationship.OTHER:
            add(b.third_party[relationship])
    if is_human and relationship is Relationship.OTHER and (is_recovery or is_access):
        add(b.unrelated)
    hours = ctx.recent_credential_change_hours
    if hours is not None and hours <= cfg.chained_change_window_hours and action in cfg.factor_change_actions:
        add(b.chained)

    # access.rego
    if guarded:
        if privileged:
            add(b.privileged[tier])
        if target.vip:
            add(b.vip)

    # nhi.rego: issues_credential (creating an account issues its first credential)
    revokes_previous = action in cfg.nhi_credential_actions
    issues_credential = revokes_previous or action is Action.SERVICE_ACCOUNT_CREATE
    if not is_human:
        if guarded:
            if actor.id not in target.owners:
                add(b.nhi_not_owner)
            if not (target.owners and target.owner_active is True):
                add(b.nhi_no_owner)
            if target.environment is None:
                add(b.nhi_env_unknown)
            elif target.environment in cfg.critical_environments:
                add(b.nhi_env_critical)
            if target.consumers is None:
                add(b.nhi_consumers_unknown)
            elif target.consumers >= cfg.nhi_wide_consumers:
                add(b.widely_distributed(target.consumers))
            age = target.secret_age_days
            if not issues_credential and (age is None or age > cfg.max_secret_age_days):
                add(b.nhi_stale)
        if issues_credential and target.in_secrets_manager is not True:
            add(b.nhi_unmanaged)
    if action is Action.SERVICE_ACCOUNT_CREATE and not target.owners:
        add(b.nhi_create_no_owner)

    # agents.rego
    if actor.type is ActorType.AI_AGENT:
        if relationship is Relationship.SELF and is_access:
            add(b.agent_self_privilege)
        if guarded:
            add(b.agent_requester)
            if actor.on_behalf_of is None:
                add(b.agent_no_principal)

    # risk.rego
    if guarded:
        signals = ctx.risk_signals  # sorted and unique (models.Context)
        if signals:
            one_up = _LEVELS[min(_CALLBACK, base_rank + 1)]
            medium = 0
            high = cfg.high_risk_signals
            for s in signals:
                if s in high:
                    add(b.risk_high[s])
                else:
                    medium += 1
                    add(b.risk_medium[(s, one_up)])
            if medium >= 2:
                add(b.compound(medium, _LEVELS[min(_CALLBACK, base_rank + medium)]))
        failed = ctx.failed_verifications_24h
        if failed > 0:
            level = (
                L.CALLBACK if failed >= cfg.failed_verifications_callback else _LEVELS[min(_CALLBACK, base_rank + 1)]
            )
            add(b.failed(failed, level))

    # decision.rego
    top = max(_RANK[r.level] for r in reasons)
    level = _LEVELS[top]
    denied = top == _DENY

    # obligations.rego
    obligations = [b.record_evidence[level]]
    ob = obligations.append
    if action is not Action.INFO_REQUEST:
        ob(b.notify)
    if not denied:
        # obligations.rego revokes_previous: a new account has no previous credential
        if revokes_previous or action is Action.MFA_RESET:
            ob(b.revoke)
        if action in cfg.terminate_sessions_after:
            ob(b.terminate)
        for r in reasons:
            if r is b.nhi_stale:
                ob(b.rotate)
            elif r is b.nhi_unmanaged:
                ob(b.move)
        if r_info.emergency and is_access:
            ob(b.time_bound)
    if r_info.emergency:
        ob(b.review)

    if len(reasons) > 1:
        reasons.sort(key=_reason_key)
    obligations.sort(key=_obligation_key)
    return construct_trusted(Verdict, {
        "level": level,
        "allowed": not denied,
        "requirements": b.requirements[level],
        "reasons": reasons,
        "obligations": obligations,
        "playbook": b.playbook[(action, level)],
    })


_last_book: _Book | None = None


def _book_for(cfg: PolicyConfig) -> _Book:
    # PolicyConfig is unhashable (it holds a dict); reuse the last book by identity.
    global _last_book
    book = _last_book
    if book is None or book.cfg is not cfg:
        book = _last_book = _Book(cfg)
    return book


class NativeEngine(BaseEngine):
    """Evaluate the stock policy in pure Python.

    >>> from helpdesk_policy.engines.native import NativeEngine
    >>> from helpdesk_policy.policyset import PolicySet
    >>> engine = NativeEngine(PolicySet.load())
    >>> engine.name
    'native'
    """

    name = "native"
    #: Its verdicts are valid as built (:func:`~helpdesk_policy.engines.base.checked_verdict`
    #: trusts them); a subclass does not inherit this.
    _builds_valid_verdicts = True

    def __init__(self, policy_set: PolicySet) -> None:
        if policy_set.directory.resolve() != stock_policy_dir().resolve() and not _same_rules(policy_set):
            raise EngineUnavailableError(
                f"the native engine mirrors the stock policies only; {policy_set.directory} holds different "
                "Rego files (use engine='rego' or 'opa' for custom policies)",
                engine=self.name,
            )
        self.policy_set = policy_set
        self.config = policy_set.config
        self._book = _Book(policy_set.config)

    def evaluate(self, request: Request) -> Verdict:
        return decide_native(request, self.config, self._book)

    async def aevaluate(self, request: Request) -> Verdict:
        # Pure CPU, a few microseconds: a thread hop would cost more than it saves.
        return self.evaluate(request)


def _same_rules(policy_set: PolicySet) -> bool:
    return policy_set.modules == PolicySet(directory=stock_policy_dir(), config=policy_set.config).modules
