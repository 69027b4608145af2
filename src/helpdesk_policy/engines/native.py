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
"""

from __future__ import annotations

from ..config import PolicyConfig
from ..errors import EngineUnavailableError
from ..levels import REQUIREMENTS, Level
from ..models import (
    AUTH_STRENGTH_ORDER,
    Action,
    ActorType,
    AuthStrength,
    Obligation,
    Reason,
    Relationship,
    Request,
    TargetStatus,
    TargetType,
    Verdict,
)
from ..policies import PolicySet, stock_policy_dir
from .base import BaseEngine

__all__ = ["NativeEngine", "decide_native"]

L = Level

# common.rego: refs
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

_AUTH_RANK = {s: i for i, s in enumerate(AUTH_STRENGTH_ORDER)}
_CALLBACK_RANK = L.CALLBACK.rank


def _raise(base: int, n: int) -> Level:
    """levels.rego: raise(base, n) — n steps up, capped at callback."""
    return Level.from_rank(min(_CALLBACK_RANK, base + n))


def _reason(code: str, level: Level, message: str, refs: list[str]) -> Reason:
    # Built without re-validation: inputs are our own constants and enums.
    return Reason.model_construct(code=code, level=level, message=message, refs=refs)


def decide_native(req: Request, cfg: PolicyConfig) -> Verdict:
    """Evaluate the stock policy for one validated request."""
    r_info, actor, target, ctx = req.request, req.actor, req.target, req.context
    action = r_info.action
    a = action.value

    # common.rego
    is_containment = action in cfg.containment_actions
    routine = action is Action.INFO_REQUEST or is_containment
    guarded = not routine
    is_recovery = action in cfg.recovery_actions
    is_access = action in cfg.access_actions
    is_human = target.type is TargetType.HUMAN
    is_nhi = not is_human
    remote = r_info.channel in cfg.remote_channels
    authenticated = actor.authenticated and actor.auth_strength is not AuthStrength.NONE
    baseline = cfg.action_baseline[action]
    base_rank = baseline.rank
    tier = max(target.privilege_tier, cfg.privileged_tier) if target.privileged else target.privilege_tier
    privileged = tier >= cfg.privileged_tier
    is_owner = actor.id in target.owners
    relationship = actor.relationship

    reasons: list[Reason] = []
    add = reasons.append

    # baseline.rego
    add(_reason(
        "action_baseline", baseline,
        f"{a} starts at {baseline.value} for an authenticated requester acting on their own account with no risk signal.",
        [AA05, AC1] if is_access else [AA01, AC1],
    ))
    if action is not Action.INFO_REQUEST and not authenticated:
        add(_reason(
            "requester_unauthenticated", L.STEP_UP,
            "The requester is not authenticated: verify them with a strong factor bound to the identity of record.",
            [AA03, SP63B, AA23],
        ))
    if action is not Action.INFO_REQUEST and authenticated and _AUTH_RANK[actor.auth_strength] < cfg.min_auth_rank:
        add(_reason(
            "weak_authentication", L.STEP_UP,
            f"The requester authenticated with {actor.auth_strength.value}; "
            f"{cfg.min_auth_strength.value} or stronger is needed to act without a step-up.",
            [AA03, SP63B],
        ))
    if target.status is TargetStatus.OFFBOARDED and not is_containment:
        add(_reason(
            "target_offboarded", L.DENY,
            "The target identity is offboarded: only revocation or disable is allowed here. "
            "Reactivation goes through the identity lifecycle (rehire) process.",
            [AA01, NHI1],
        ))
    if target.status is TargetStatus.SUSPENDED and guarded:
        add(_reason(
            "target_suspended", L.MANAGER_APPROVAL,
            "The target identity is suspended: acting on it needs its manager or owner of record.",
            [AA01, AA05],
        ))
    if r_info.emergency:
        add(_reason(
            "break_glass", L.SELF_SERVICE,
            "Emergency (break-glass) request: no level is lowered; access is time-bound and a post-incident review follows.",
            [AA05],
        ))

    # recovery.rego
    channel = r_info.channel.value
    if is_recovery and remote:
        add(_reason(
            "remote_channel_recovery", L.STEP_UP,
            f"Credential or factor recovery requested over {channel}, an impersonable channel.",
            [AA23, SP63B],
        ))
        if privileged:
            add(_reason(
                "privileged_remote_recovery", L.CALLBACK,
                f"Recovery of a privileged account requested over {channel}: call back a contact of record before acting.",
                [AA23, AA05, SP63B],
            ))
    if is_recovery and is_human and relationship not in (Relationship.SELF, Relationship.OTHER):
        add(_reason(
            "third_party_recovery", L.CALLBACK,
            f"Recovery requested by the account holder's {relationship.value}, not the holder: "
            "confirm with the holder through a callback to their contact of record.",
            [AA23, SP63B, AA02],
        ))
    if is_human and relationship is Relationship.OTHER and (is_recovery or is_access):
        add(_reason(
            "unrelated_requester", L.DENY,
            "The requester has no relationship to the account holder: the helpdesk must not change another "
            "person's credentials or access. The holder, or their manager through the access-request process, must ask.",
            [AA23, AA05, AC1],
        ))
    hours = ctx.recent_credential_change_hours
    if action in cfg.factor_change_actions and hours is not None and hours <= cfg.chained_change_window_hours:
        add(_reason(
            "chained_credential_change", L.CALLBACK,
            f"A factor or contact change within {cfg.chained_change_window_hours} hours of another credential "
            "change fits a chained account-takeover pattern.",
            [AA23, SP63B],
        ))

    # access.rego
    if guarded and privileged:
        add(_reason(
            "privileged_target", L.CALLBACK if tier >= cfg.callback_tier else L.MANAGER_APPROVAL,
            f"The target holds privileged access (tier {tier}).",
            [AA05, AC1, AA23],
        ))
    if guarded and target.vip:
        add(_reason(
            "vip_target", cfg.vip_level,
            "The target is a VIP, a favoured target of helpdesk impersonation.",
            [AA23],
        ))

    # nhi.rego
    issues_credential = action in cfg.nhi_credential_actions
    if is_nhi and guarded:
        if not is_owner:
            add(_reason(
                "nhi_requester_not_owner", L.DENY,
                "Only an owner of record may request this for a non-human identity: human use of NHI credentials "
                "is not allowed. Ask the owner to request it, or transfer ownership first.",
                [NHI10, AA05],
            ))
        if not (target.owners and target.owner_active is True):
            add(_reason(
                "nhi_no_active_owner", L.DENY,
                "The non-human identity has no active owner of record (improper offboarding): "
                "complete the ownership-transfer process first.",
                [NHI1, AA01],
            ))
        if target.environment is None:
            add(_reason(
                "nhi_critical_environment", L.MANAGER_APPROVAL,
                "No environment is recorded for the non-human identity: it is treated as production.",
                [NHI5, AA05],
            ))
        elif target.environment in cfg.critical_environments:
            add(_reason(
                "nhi_critical_environment", L.MANAGER_APPROVAL,
                "The non-human identity runs in a critical environment: its owner's manager must approve.",
                [NHI5, AA05],
            ))
        if target.consumers is None:
            add(_reason(
                "nhi_widely_distributed", L.CALLBACK,
                "The number of consumers of this non-human identity is unknown: it is treated as widely distributed.",
                [NHI5, AA05],
            ))
        elif target.consumers >= cfg.nhi_wide_consumers:
            add(_reason(
                "nhi_widely_distributed", L.CALLBACK,
                f"The non-human identity has {target.consumers} consumers (widely distributed from "
                f"{cfg.nhi_wide_consumers}): confirm with its owner of record out of band.",
                [NHI5, AA05],
            ))
        fresh = target.secret_age_days is not None and target.secret_age_days <= cfg.max_secret_age_days
        if not issues_credential and not fresh:
            add(_reason(
                "nhi_stale_secret", L.SELF_SERVICE,
                f"The non-human identity's secret is older than {cfg.max_secret_age_days} days, "
                "or of unknown age: rotate it.",
                [NHI7],
            ))
    if action is Action.SERVICE_ACCOUNT_CREATE and not target.owners:
        add(_reason(
            "nhi_create_without_owner", L.DENY,
            "A non-human identity cannot be created without an owner of record: name an accountable owner in the request.",
            [NHI1, AA01],
        ))
    if (
        is_nhi
        and (issues_credential or action is Action.SERVICE_ACCOUNT_CREATE)
        and target.in_secrets_manager is not True
    ):
        add(_reason(
            "nhi_secret_unmanaged", L.SELF_SERVICE,
            "The new credential must live in a secrets manager, not in code, tickets or chat.",
            [NHI2, NHI7],
        ))

    # agents.rego
    if actor.type is ActorType.AI_AGENT:
        if relationship is Relationship.SELF and is_access:
            add(_reason(
                "ai_agent_self_privilege", L.DENY,
                "An AI agent may not grant or elevate privileges for itself. A human owner must request the change "
                "through the access-request process.",
                [LLM06, AIRMF, AA05],
            ))
        if guarded:
            add(_reason(
                "ai_agent_requester", cfg.ai_agent_level,
                "The request comes from an AI agent, which cannot vouch for a person's identity or approve: "
                "a human must verify and approve.",
                [LLM06, AIRMF],
            ))
            if actor.on_behalf_of is None:
                add(_reason(
                    "ai_agent_no_principal", L.CALLBACK,
                    "The AI agent names no person it acts for: confirm the request with the target's contact "
                    "of record out of band.",
                    [LLM06, AIRMF],
                ))

    # risk.rego
    if guarded:
        risk_refs = [AA03, AA23]
        medium = 0
        for s in ctx.risk_signals:  # sorted and unique (models.Context)
            if s in cfg.high_risk_signals:
                add(_reason(f"risk_{s.value}", L.CALLBACK, f"High-risk signal: {s.value}.", risk_refs))
            else:
                medium += 1
                add(_reason(
                    f"risk_{s.value}", _raise(base_rank, 1),
                    f"Risk signal: {s.value} raises the baseline one step.", risk_refs,
                ))
        if medium >= 2:
            add(_reason(
                "risk_compound", _raise(base_rank, medium),
                f"{medium} medium risk signals together raise the baseline {medium} steps.", risk_refs,
            ))
        failed = ctx.failed_verifications_24h
        if failed > 0:
            add(_reason(
                "failed_verifications",
                L.CALLBACK if failed >= cfg.failed_verifications_callback else _raise(base_rank, 1),
                f"{failed} failed verification attempt(s) in the last 24 hours "
                f"({cfg.failed_verifications_callback} or more go to callback).",
                [AA23, SP63B],
            ))

    # decision.rego
    level = max(r.level for r in reasons)
    denied = level is L.DENY

    # obligations.rego
    obligations = [Obligation.model_construct(code="record_evidence", within_hours=None, fields=EVIDENCE_FIELDS[level])]
    ob = obligations.append
    if action is not Action.INFO_REQUEST:
        ob(_obligation("notify_identity_owner"))
    if not denied:
        if issues_credential or action is Action.MFA_RESET:
            ob(_obligation("revoke_previous_credential", cfg.revoke_previous_within_hours))
        if action in cfg.terminate_sessions_after:
            ob(_obligation("terminate_sessions"))
        codes = {r.code for r in reasons}
        if "nhi_stale_secret" in codes:
            ob(_obligation("rotate_stale_secret"))
        if "nhi_secret_unmanaged" in codes:
            ob(_obligation("move_to_secrets_manager"))
        if r_info.emergency and is_access:
            ob(_obligation("time_bound_access", cfg.break_glass_hours))
    if r_info.emergency:
        ob(_obligation("post_incident_review"))

    reasons.sort(key=lambda r: (-r.level.rank, r.code, r.message))
    obligations.sort(key=lambda o: o.code)
    return Verdict.model_construct(
        level=level,
        allowed=not denied,
        requirements=list(REQUIREMENTS[level]),
        reasons=reasons,
        obligations=obligations,
        playbook=f"{a.replace('_', '-')}-{level.value.replace('_', '-')}",
    )


def _obligation(code: str, within_hours: int | None = None) -> Obligation:
    return Obligation.model_construct(code=code, within_hours=within_hours, fields=None)


class NativeEngine(BaseEngine):
    """Evaluate the stock policy in pure Python.

    >>> from helpdesk_policy.engines.native import NativeEngine
    >>> from helpdesk_policy.policies import PolicySet
    >>> engine = NativeEngine(PolicySet.load())
    >>> engine.name
    'native'
    """

    name = "native"

    def __init__(self, policy_set: PolicySet) -> None:
        if policy_set.directory.resolve() != stock_policy_dir().resolve() and not _same_rules(policy_set):
            raise EngineUnavailableError(
                f"the native engine mirrors the stock policies only; {policy_set.directory} holds different "
                "Rego files (use engine='rego' or 'opa' for custom policies)",
                engine=self.name,
            )
        self.policy_set = policy_set
        self.config = policy_set.config

    def evaluate(self, request: Request) -> Verdict:
        return decide_native(request, self.config)

    async def aevaluate(self, request: Request) -> Verdict:
        # Pure CPU, a few microseconds: a thread hop would cost more than it saves.
        return self.evaluate(request)


def _same_rules(policy_set: PolicySet) -> bool:
    return policy_set.modules == PolicySet(directory=stock_policy_dir(), config=policy_set.config).modules
