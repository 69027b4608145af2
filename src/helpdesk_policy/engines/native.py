"""The native engine: a pure-Python mirror of the stock Rego policies.

It reads the same :class:`~helpdesk_policy.config.PolicyConfig` and the same
reason catalogue (``reasons.yaml``), produces the same reasons (codes, levels,
messages, refs), obligations, constraints and playbook, and is proven equal to
the Rego under regopy and under OPA's own evaluator by the differential tests
in ``tests/test_parity.py``. Each block below names the ``.rego`` file it
mirrors; change both together.

It is the fallback when the other engines fail and the fast path when a
process cannot afford an embedded interpreter. It only mirrors the *stock*
policies: pointed at a different policy directory it refuses to load rather
than silently deciding with rules that are not the ones on disk.

Speed: reasons and obligations are immutable, so every one whose text depends
only on the config, the catalogue and a small closed vocabulary is built once
per config in a :class:`_Book` (or on first use, and then kept); a decision
mostly appends prebuilt objects. Enum values are read as ``member._value_``
(a plain attribute; ``.value`` is a property costing several times more)
and levels are compared by rank, as ints.
"""

from __future__ import annotations

import operator
from typing import Any

from ..catalogue import ReasonCatalogue, load_catalogue
from ..config import PolicyConfig
from ..errors import EngineUnavailableError
from ..levels import REQUIREMENTS, Level
from ..models import (
    AUTH_STRENGTH_ORDER,
    Action,
    ActorType,
    ApproverConstraint,
    AuthStrength,
    CallbackConstraint,
    Channel,
    ConsentScope,
    Constraints,
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

__all__ = ["NativeEngine", "decide_native", "EVIDENCE_FIELDS"]

L = Level

# obligations.rego: evidence_fields (self_service without an information
# request; an answered question records INFO_EVIDENCE_FIELDS).
EVIDENCE_FIELDS: dict[Level, list[str]] = {
    L.SELF_SERVICE: ["requester", "authentication_event", "outcome"],
    L.STEP_UP: ["identity_proof", "verifier", "outcome"],
    L.MANAGER_APPROVAL: ["identity_proof", "verifier", "approver", "outcome"],
    L.CALLBACK: [
        "identity_proof", "verifier", "approver", "callback_contact", "callback_contact_source",
        "callback_answered_by", "outcome",
    ],
    L.DENY: ["requester", "channel", "caller_contact", "denial_reason", "outcome"],
}
INFO_EVIDENCE_FIELDS = ["requester", "outcome"]

_LEVELS = tuple(Level)
_RANK = {lvl: i for i, lvl in enumerate(_LEVELS)}
_AUTH_RANK = {s: i for i, s in enumerate(AUTH_STRENGTH_ORDER)}
_MANAGER_APPROVAL = _RANK[L.MANAGER_APPROVAL]
_CALLBACK = _RANK[L.CALLBACK]
_DENY = _RANK[L.DENY]

# access.rego grant_actions; obligations.rego privilege grants
_GRANTS = frozenset({Action.ACCESS_GRANT, Action.ROLE_CHANGE, Action.PRIVILEGE_ELEVATION, Action.DELEGATED_ADMIN})
_ELEVATIONS = frozenset({Action.PRIVILEGE_ELEVATION, Action.DELEGATED_ADMIN})
# common.rego workload_channels: the API or a channel more trusted than it
_WORKLOAD_CHANNELS = frozenset({Channel.API, Channel.WALK_IN, Channel.SELF_SERVICE_PORTAL})
_CONTAINMENT_ENTITLED = frozenset({Relationship.SELF, Relationship.OWNER, Relationship.MANAGER})
_NOT_THIRD_PARTY = frozenset({Relationship.SELF, Relationship.OTHER})
_INFO_ENTITLED = frozenset({Relationship.SELF, Relationship.OWNER})
_NO_VAULT = frozenset({Action.INFO_REQUEST, Action.OAUTH_CONSENT})


def _raise(base: int, steps: int) -> Level:
    # levels.rego raise(): n steps up, capped at callback
    return _LEVELS[min(_CALLBACK, base + steps)]


def _obligation(code: str, within_hours: int | None = None, fields: list[str] | None = None,
                to: str | None = None) -> Obligation:
    return construct_trusted(Obligation, {"code": code, "within_hours": within_hours, "fields": fields, "to": to})


class _Book:
    """Every reason and obligation of the stock policy for one config and
    catalogue, built once (or on first use) and then shared by every decision."""

    #: Reasons kept per book; the argument space is small except for counts
    #: (consumers, failures), whose rarer values are built each time.
    MAX_CACHED = 4096

    def __init__(self, cfg: PolicyConfig, catalogue: ReasonCatalogue | None = None) -> None:
        self.cfg = cfg
        self.catalogue = catalogue if catalogue is not None else load_catalogue()
        self._entries = self.catalogue.reasons
        self._cache: dict[tuple[Any, ...], Reason] = {}
        self.signals = {s: self.catalogue.signals[s] for s in RiskSignal}
        self.min_auth_rank = _AUTH_RANK[cfg.min_auth_strength]
        self.workload_rank = _AUTH_RANK[cfg.workload_min_auth_strength]
        self.strong_self_service_rank = _AUTH_RANK[cfg.strong_self_service_auth]
        # Prebuild what depends only on the config and closed vocabularies.
        #: common.rego's baseline of each action when no strong path lowers it.
        self.baseline = {
            a: self.reason("action_baseline.access" if a in cfg.access_actions else "action_baseline",
                           cfg.action_baseline[a], a.value, cfg.action_baseline[a].value)
            for a in Action
        }
        #: What common.rego says of each action: (containment, recovery, access, no credential, NHI credential).
        self.action_facts = {
            a: (a in cfg.containment_actions, a in cfg.recovery_actions, a in cfg.access_actions,
                a in cfg.no_credential_actions, a in cfg.nhi_credential_actions)
            for a in Action
        }
        #: The constraints of a level that needs neither an approver nor a callback (immutable: shared).
        self.no_constraints = construct_trusted(Constraints, {"approver": None, "callback": None})
        self.record_evidence = {lvl: _obligation("record_evidence", fields=EVIDENCE_FIELDS[lvl]) for lvl in _LEVELS}
        self.record_info = _obligation("record_evidence", fields=INFO_EVIDENCE_FIELDS)
        self.notify = {
            to: _obligation("notify_identity_owner", to=to) for to in ("holder", "owners", cfg.nhi_governance_contact)
        }
        self.notify_previous = _obligation("notify_previous_contact")
        self.revoke = _obligation("revoke_previous_credential", cfg.revoke_previous_within_hours)
        self.revoke_now = _obligation("revoke_previous_credential", cfg.revoke_compromised_within_hours)
        self.terminate = _obligation("terminate_sessions")
        self.rotate = _obligation("rotate_stale_secret")
        self.move = _obligation("move_to_secrets_manager")
        self.review = _obligation("post_incident_review", cfg.post_incident_review_within_hours)
        self._time_bound: dict[int, Obligation] = {}
        self.requirements = {lvl: list(REQUIREMENTS[lvl]) for lvl in _LEVELS}
        self.playbook = {
            (a, lvl): f"{a.value.replace('_', '-')}-{lvl.value.replace('_', '-')}" for a in Action for lvl in _LEVELS
        }

    def reason(self, key: str, level: Level, *args: str | int) -> Reason:
        """common.rego reason(key, level, args): the catalogue entry ``key`` with ``args`` in place."""
        cache_key = (key, level, *args)
        found = self._cache.get(cache_key)
        if found is not None:
            return found
        entry = self._entries[key]
        code = entry.code
        if "%v" in code:  # common.rego code_of(): risk_%v takes the signal, the first argument
            code = code.replace("%v", str(args[0]))
        built = construct_trusted(
            Reason, {"code": code, "level": level, "message": entry.render(args), "refs": entry.refs}
        )
        if len(self._cache) < self.MAX_CACHED:
            self._cache[cache_key] = built
        return built

    def time_bound(self, hours: int) -> Obligation:
        found = self._time_bound.get(hours)
        if found is None:
            found = self._time_bound[hours] = _obligation("time_bound_access", hours)
        return found


def _reason_key(r: Reason) -> tuple[int, str, str]:
    return (-_RANK[r.level], r.code, r.message)


_obligation_key = operator.attrgetter("code")
_level_of = operator.attrgetter("level")


def decide_native(req: Request, cfg: PolicyConfig, book: _Book | None = None) -> Verdict:
    """Evaluate the stock policy for one validated request."""
    b = book if book is not None else _book_for(cfg)
    R = b.reason
    r_info, actor, target, ctx = req.request, req.actor, req.target, req.context
    action = r_info.action
    channel = r_info.channel
    strength = actor.auth_strength

    # common.rego: the action
    is_containment, is_recovery, is_access, no_credential, nhi_credential = b.action_facts[action]
    routine = action is Action.INFO_REQUEST or is_containment
    guarded = not routine
    escalates = guarded and not no_credential

    # common.rego: who asks
    is_human = target.type is TargetType.HUMAN
    is_nhi = not is_human
    is_agent = actor.type is ActorType.AI_AGENT
    human_actor = actor.type is ActorType.HUMAN
    remote = channel in cfg.remote_channels
    authenticated = actor.authenticated and strength is not AuthStrength.NONE
    rank = _AUTH_RANK[strength]
    strong_auth = authenticated and rank >= b.min_auth_rank
    acts_on_itself = actor.id == target.id
    owners = target.owners
    principal = actor.on_behalf_of if is_agent else actor.id
    stated = actor.relationship
    if acts_on_itself:
        relationship = Relationship.SELF
    elif is_agent:
        if principal is None:
            relationship = Relationship.OTHER
        elif principal == target.id:
            relationship = Relationship.SELF
        elif principal in owners:
            relationship = Relationship.OWNER
        elif target.manager is not None and principal == target.manager:
            relationship = Relationship.MANAGER
        else:
            relationship = Relationship.OTHER
    elif stated is Relationship.MANAGER and target.manager is not None and actor.id != target.manager:
        relationship = Relationship.OTHER
    elif stated is Relationship.OWNER and (is_human or actor.id not in owners):
        relationship = Relationship.OTHER
    else:
        relationship = stated
    is_owner = is_nhi and (actor.id in owners or (is_agent and principal is not None and principal in owners))
    active_owner = bool(owners) and target.owner_active is True
    security_role = support_role = False
    if human_actor and strong_auth and actor.roles:
        roles = actor.roles
        security_role = not cfg.security_roles.isdisjoint(roles)
        support_role = security_role or not cfg.helpdesk_roles.isdisjoint(roles)
    elif (
        actor.type is ActorType.SERVICE and authenticated and channel in _WORKLOAD_CHANNELS
        and rank >= b.workload_rank and not cfg.security_roles.isdisjoint(actor.roles)
    ):
        security_role = support_role = True  # a security tool (scanner, SOAR) on a workload channel

    # common.rego: strong paths
    self_service_path = (
        human_actor and relationship is Relationship.SELF and channel is Channel.SELF_SERVICE_PORTAL and strong_auth
    )
    workload_self_path = (
        actor.type is ActorType.SERVICE and acts_on_itself and channel in _WORKLOAD_CHANNELS
        and rank >= b.workload_rank
    )
    owner_path = human_actor and is_owner and active_owner and strong_auth and not remote
    nhi_hygiene_path = nhi_credential and (owner_path or workload_self_path)
    strong_path = self_service_path or nhi_hygiene_path
    impersonable = not strong_path

    # common.rego: the baseline
    if self_service_path and action in cfg.strong_self_service_actions and rank >= b.strong_self_service_rank:
        baseline = R("action_baseline.strong_self_service", L.SELF_SERVICE, action._value_, strength._value_)
    elif workload_self_path and nhi_credential:
        baseline = R("action_baseline.workload_self", L.SELF_SERVICE, action._value_, strength._value_)
    elif owner_path and nhi_credential and rank >= b.strong_self_service_rank:
        baseline = R("action_baseline.owner_rotation", L.SELF_SERVICE, action._value_, strength._value_)
    else:
        baseline = b.baseline[action]
    base_rank = _RANK[baseline.level]

    # common.rego: the target
    tier = target.privilege_tier
    if target.privileged and tier < cfg.privileged_tier:
        tier = cfg.privileged_tier
    privileged = tier >= cfg.privileged_tier
    holds_secret = target.holds_secret is not False
    signals = ctx.risk_signals  # sorted and unique (models.Context)
    leaked = RiskSignal.LEAKED_CREDENTIAL in signals

    reasons: list[Reason] = [baseline]
    add = reasons.append

    # baseline.rego
    if not authenticated:
        add(R("requester_unauthenticated", L.STEP_UP))
    elif not strong_auth:
        add(R("weak_authentication", L.STEP_UP, strength._value_, cfg.min_auth_strength._value_))
    if target.status is TargetStatus.OFFBOARDED and not is_containment:
        add(R("target_offboarded", L.DENY))
    if target.status is TargetStatus.SUSPENDED and guarded:
        add(R("target_suspended", L.MANAGER_APPROVAL))
    if r_info.emergency:
        add(R("break_glass", L.SELF_SERVICE, cfg.post_incident_review_within_hours))

    # recovery.rego
    if is_recovery:
        if remote:
            add(R("remote_channel_recovery", L.STEP_UP, action._value_, channel._value_))
        if not no_credential:
            if remote:
                if privileged:
                    add(R("privileged_remote_recovery", L.CALLBACK, tier, channel._value_))
                if target.vip:
                    add(R("vip_remote_recovery", L.CALLBACK, channel._value_))
            if is_human and relationship not in _NOT_THIRD_PARTY:
                add(R("third_party_recovery", L.CALLBACK, relationship._value_))
    if (
        is_human and action in cfg.factor_recovery_actions
        and not (human_actor and relationship is Relationship.SELF and strong_auth)
        and ctx.enrolled_factor_available is not True
    ):
        if remote:
            add(R("factor_recovery_unverifiable", L.MANAGER_APPROVAL, action._value_))
        else:
            add(R("factor_recovery_unverifiable.proofing", L.STEP_UP, action._value_))
    if is_human and relationship is Relationship.OTHER and guarded:
        add(R("unrelated_requester.agent" if is_agent else "unrelated_requester", L.DENY))
    if remote and action in cfg.factor_change_actions:
        hours = ctx.recent_credential_change_hours
        if hours is None:
            add(R("chained_credential_change.unknown", L.CALLBACK, cfg.chained_change_window_hours))
        elif hours <= cfg.chained_change_window_hours:
            add(R("chained_credential_change", L.CALLBACK, cfg.chained_change_window_hours))

    # access.rego
    if escalates and impersonable:
        if privileged:
            add(R("privileged_target", L.CALLBACK if tier >= cfg.callback_tier else L.MANAGER_APPROVAL, tier))
        if target.vip:
            add(R("vip_target", cfg.vip_level))
    if action in _GRANTS:
        stated_tier = r_info.requested_privilege_tier
        if stated_tier is not None:
            requested, key = stated_tier, "requested_privilege"
        else:
            requested = tier if tier > cfg.privileged_tier else cfg.privileged_tier
            key = "requested_privilege.unknown"
        if requested >= cfg.privileged_tier:
            add(R(key, L.CALLBACK if requested >= cfg.callback_tier else L.MANAGER_APPROVAL, requested))

    # containment.rego
    if is_containment and not (
        relationship in _CONTAINMENT_ENTITLED or security_role
        or (support_role and not privileged and not target.vip)
    ):
        add(R(
            "containment_needs_approval.agent" if is_agent else "containment_needs_approval",
            L.CALLBACK if privileged or target.vip else L.MANAGER_APPROVAL, action._value_,
        ))

    # info.rego
    if action is Action.INFO_REQUEST and relationship not in _INFO_ENTITLED and not support_role:
        add(R("identity_info_disclosure", L.DENY))

    # nhi.rego
    issues_credential = nhi_credential or action is Action.SERVICE_ACCOUNT_CREATE
    stale = unmanaged = False
    if is_nhi:
        if guarded and action is not Action.OAUTH_CONSENT:  # rules_apply
            self_rotation = acts_on_itself and action in cfg.nhi_credential_actions
            if not is_owner and not self_rotation and action is not Action.SERVICE_ACCOUNT_CREATE:
                add(R("nhi_requester_not_owner", L.DENY))
            if not active_owner:
                add(R("nhi_no_active_owner", L.DENY))
            if not no_credential and not nhi_hygiene_path:  # escalates
                env = target.environment
                if env is None:
                    add(R("nhi_critical_environment.unknown", L.MANAGER_APPROVAL))
                elif env not in cfg.non_production_environments:
                    add(R("nhi_critical_environment", L.MANAGER_APPROVAL))
                consumers = target.consumers
                if consumers is None:
                    add(R("nhi_widely_distributed.unknown", L.CALLBACK))
                elif consumers >= cfg.nhi_wide_consumers:
                    add(R("nhi_widely_distributed", L.CALLBACK, consumers, cfg.nhi_wide_consumers))
            age = target.secret_age_days
            if holds_secret and not issues_credential and (age is None or age > cfg.max_secret_age_days):
                stale = True
                add(R("nhi_stale_secret", L.SELF_SERVICE, cfg.max_secret_age_days))
        if holds_secret and target.in_secrets_manager is not True and action not in _NO_VAULT and not is_containment:
            unmanaged = True
            add(R("nhi_secret_unmanaged" if issues_credential else "nhi_secret_unmanaged.existing", L.SELF_SERVICE))
    if action is Action.SERVICE_ACCOUNT_CREATE and not owners:
        add(R("nhi_create_without_owner", L.DENY))

    # consent.rego
    if action is Action.OAUTH_CONSENT:
        scope = r_info.consent_scope
        if scope is None:
            add(R("oauth_consent_scope.unknown", L.MANAGER_APPROVAL))
        elif scope is not ConsentScope.LOW:
            add(R("oauth_consent_scope", L.MANAGER_APPROVAL, scope._value_))
        if r_info.consent_tenant_wide is None:
            add(R("oauth_consent_tenant_wide.unknown", L.MANAGER_APPROVAL))
        elif r_info.consent_tenant_wide:
            add(R("oauth_consent_tenant_wide", L.MANAGER_APPROVAL))
        if target.publisher_verified is None:
            add(R("oauth_publisher_unverified.unknown", L.MANAGER_APPROVAL))
        elif not target.publisher_verified:
            add(R("oauth_publisher_unverified", L.MANAGER_APPROVAL))

    # agents.rego
    if is_agent:
        if is_access and (
            acts_on_itself or actor.id in owners or (actor.runs_as is not None and actor.runs_as == target.id)
        ):
            add(R("ai_agent_self_privilege", L.DENY))
        if guarded:
            add(R("ai_agent_requester", cfg.ai_agent_level))
            if actor.on_behalf_of is None:
                add(R("ai_agent_no_principal", L.CALLBACK))

    # risk.rego
    if guarded:
        if signals:
            strong_pr = strong_path and strength is AuthStrength.PHISHING_RESISTANT
            remediation = leaked and action in cfg.remediation_actions and strong_path
            medium = 0
            for s in signals:
                name = s._value_
                if s in cfg.high_risk_signals:
                    if remediation and s is RiskSignal.LEAKED_CREDENTIAL:
                        add(R("risk_leaked_remediation", L.SELF_SERVICE, name, action._value_))
                    elif strong_pr:
                        add(R("risk_high.strong", L.STEP_UP, name))
                    else:
                        add(R("risk_high", L.CALLBACK, name, b.signals[s]))
                else:
                    medium += 1
                    if strong_path:
                        add(R("risk_medium.strong", L.SELF_SERVICE, name, b.signals[s]))
                    else:
                        add(R("risk_medium", _raise(base_rank, 1), name, b.signals[s]))
            if medium >= 2 and impersonable:
                add(R("risk_compound", _raise(base_rank, medium), medium, medium))
        failed = ctx.failed_verifications_24h
        if failed > 0:
            if strong_path:
                add(R("failed_verifications.strong", L.STEP_UP, failed))
            else:
                add(R(
                    "failed_verifications",
                    L.CALLBACK if failed >= cfg.failed_verifications_callback else _raise(base_rank, 1),
                    failed, cfg.failed_verifications_callback,
                ))

    # decision.rego
    top = max(map(_RANK.__getitem__, map(_level_of, reasons)))
    level = _LEVELS[top]
    denied = top == _DENY

    # obligations.rego
    obligations = [b.record_info if level is L.SELF_SERVICE and action is Action.INFO_REQUEST
                   else b.record_evidence[level]]
    ob = obligations.append
    if action is not Action.INFO_REQUEST:
        ob(b.notify["holder" if is_human else "owners" if active_owner else cfg.nhi_governance_contact])
    if not denied:
        if action is Action.CONTACT_CHANGE:
            ob(b.notify_previous)
        if nhi_credential or action is Action.MFA_RESET:
            ob(b.revoke_now if action is Action.MFA_RESET or leaked else b.revoke)
        if action in cfg.terminate_sessions_after:
            ob(b.terminate)
        if stale:
            ob(b.rotate)
        if unmanaged:
            ob(b.move)
        limit: int | None = None
        if action in _ELEVATIONS or (is_access and (
            is_agent
            or (r_info.requested_privilege_tier is not None and r_info.requested_privilege_tier >= cfg.privileged_tier)
        )):
            limit = cfg.privileged_access_max_hours
        if r_info.emergency and is_access and (limit is None or cfg.break_glass_hours < limit):
            limit = cfg.break_glass_hours
        if action is Action.TEMPORARY_ACCESS_PASS and (limit is None or cfg.temporary_access_pass_max_hours < limit):
            limit = cfg.temporary_access_pass_max_hours
        if limit is not None:
            ob(b.time_bound(limit))
    if r_info.emergency:
        ob(b.review)

    # constraints.rego
    approver = callback = None
    if _MANAGER_APPROVAL <= top <= _CALLBACK:
        excluded = {actor.id}
        if actor.on_behalf_of is not None:
            excluded.add(actor.on_behalf_of)
        if actor.runs_as is not None:
            excluded.add(actor.runs_as)
        if action is Action.OAUTH_CONSENT:
            of_record, named = "application_admin", ()
        elif is_human:
            of_record, named = "manager", () if target.manager is None else (target.manager,)
        else:
            of_record, named = "owner", owners
        approver = construct_trusted(ApproverConstraint, {
            "of_record": of_record,
            "ids": sorted({i for i in named if i not in excluded}) if named else None,
            "exclude": sorted(excluded),
            "ai_agent": False,
        })
        if level is L.CALLBACK:
            age = target.contact_age_days
            callback = construct_trusted(CallbackConstraint, {
                "to": "holder" if is_human else "owners",
                "ids": [target.id] if is_human else sorted(set(owners)),
                "min_contact_age_days": cfg.callback_contact_min_age_days,
                "contact_age_days": age,
                "contact_usable": age is not None and age >= cfg.callback_contact_min_age_days,
                "fallback": "manager_of_record_or_in_person",
                "not_the_recovered_factor": action in cfg.factor_recovery_actions,
                "request_supplied": False,
                "ai_agent": False,
            })

    if len(reasons) > 1:
        reasons.sort(key=_reason_key)
    if len(obligations) > 1:
        obligations.sort(key=_obligation_key)
    return construct_trusted(Verdict, {
        "level": level,
        "allowed": not denied,
        "requirements": list(b.requirements[level]),  # the caller's own: the book's stays as it is
        "reasons": reasons,
        "obligations": obligations,
        "playbook": b.playbook[(action, level)],
        "constraints": b.no_constraints if approver is None else construct_trusted(
            Constraints, {"approver": approver, "callback": callback}),
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
        self._book = _Book(policy_set.config, policy_set.catalogue)

    def evaluate(self, request: Request) -> Verdict:
        return decide_native(request, self.config, self._book)

    async def aevaluate(self, request: Request) -> Verdict:
        # Pure CPU, a few microseconds: a thread hop would cost more than it saves.
        return self.evaluate(request)


def _same_rules(policy_set: PolicySet) -> bool:
    return policy_set.modules == PolicySet(directory=stock_policy_dir(), config=policy_set.config).modules
