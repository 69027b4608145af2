"""The numbered steps a helpdesk agent follows for a decision, in order.

The requester's justification is shown once, quoted on one line, bounded, and
marked as their own unverified words: it is never a step.

>>> from helpdesk_policy import HelpdeskPolicy
>>> from helpdesk_policy.render.explain import render_explain
>>> request = {
...     "request": {"id": "INC-9", "action": "mfa_reset", "channel": "phone"},
...     "actor": {"id": "u-9", "type": "human", "relationship": "self",
...               "authenticated": False, "auth_strength": "none"},
...     "target": {"id": "u-9", "type": "human", "privileged": True,
...                "privilege_tier": 2, "vip": False, "status": "active"},
... }
>>> steps = render_explain(HelpdeskPolicy(engine="native").decide(request), request)
>>> print(steps.splitlines()[2])
Decision: CALLBACK (allowed), playbook mfa-reset-callback
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..levels import Level
from ..models import (
    NO_ENGINE,
    Action,
    ActorType,
    ApproverConstraint,
    Channel,
    Decision,
    Obligation,
    Relationship,
    Request,
    RiskSignal,
    TargetType,
    parse_request,
)
from .sanitize import printable
from .text import describe_obligation, reason_line

__all__ = ["render_explain", "describe_action"]

#: How much of the requester's justification explain shows.
JUSTIFICATION_LIMIT = 200


def _quoted(text: str) -> str:
    """Free text on one line, in double quotes that it cannot close early."""
    return '"' + printable(text, JUSTIFICATION_LIMIT).replace('"', '\\"') + '"'


#: What "perform the request" means, per action (an imperative a person can follow).
_ACTION_TEXT: dict[Action, str] = {
    Action.ACCOUNT_UNLOCK: "Unlock the account",
    Action.PASSWORD_RESET: "Reset the password",
    Action.MFA_RESET: "Reset the MFA registration (remove the lost factor; the holder enrols a new one)",
    Action.MFA_ADD_FACTOR: "Add the new MFA factor",
    Action.ACCESS_GRANT: "Grant the requested access",
    Action.ROLE_CHANGE: "Apply the role change",
    Action.PRIVILEGE_ELEVATION: "Elevate the privileges",
    Action.DELEGATED_ADMIN: "Grant the delegated administration rights",
    Action.API_KEY_REISSUE: "Reissue the API key",
    Action.SECRET_ROTATION: "Rotate the secret",
    Action.TOKEN_REVOKE: "Revoke the token",
    Action.CREDENTIAL_REVOKE: "Revoke the credential",
    Action.OAUTH_CONSENT: "Grant the OAuth consent",
    Action.SERVICE_ACCOUNT_CREATE: "Create the service account",
    Action.ACCOUNT_DISABLE: "Disable the account",
    Action.CONTACT_CHANGE: "Change the contact details of record",
    Action.INFO_REQUEST: "Answer the information request",
    Action.TEMPORARY_ACCESS_PASS: "Issue the temporary access pass (a time-limited sign-in to enrol a new factor)",
}

#: Actions that hand a new secret to someone: it must never travel over the request's channel.
_ISSUES_SECRET = frozenset(
    {Action.PASSWORD_RESET, Action.MFA_RESET, Action.API_KEY_REISSUE, Action.SECRET_ROTATION,
     Action.SERVICE_ACCOUNT_CREATE, Action.TEMPORARY_ACCESS_PASS}
)

_ACCEPTABLE_FACTORS = (
    "a number-match push to a device already enrolled for that identity, phishing-resistant MFA "
    "(security key, passkey, smart card), or a government ID checked against the identity of record "
    "(in person, or supervised remote proofing)"
)
_NOT_ACCEPTABLE = (
    "caller ID, knowledge questions, an employee number or other details the requester can look up or "
    "volunteers, or a code sent to a phone or address given in the request"
)


def describe_action(request: Request) -> str:
    """The action of ``request`` as an imperative sentence naming its target."""
    t = request.target
    return f"{_ACTION_TEXT[request.request.action]} for {t.type.value} {printable(t.id)}"


def _who_verifies(request: Request) -> str:
    """Whose identity the step-up is about, and how to reach them, in words."""
    actor, target = request.actor, request.target
    if actor.type is ActorType.AI_AGENT:
        # The agent cannot vouch for anyone: the helpdesk goes to the person directly.
        agent = printable(actor.id)
        if actor.on_behalf_of is not None and actor.on_behalf_of == target.id:
            return (f"{printable(target.id)}, the account holder, for whom the AI agent {agent} acts (directly, "
                    "not through the agent)")
        if actor.on_behalf_of is not None:
            return (f"{printable(actor.on_behalf_of)}, the person the AI agent {agent} acts for (directly, not "
                    "through the agent)")
        # An agent acting for no one: there is no principal to verify, only the
        # holder (or the NHI's owner) to reach directly.
        if target.type is TargetType.HUMAN:
            return (f"the account holder {printable(target.id)} directly (the AI agent {agent} acts for no one, so "
                    "there is nobody behind the request to verify)")
        return (f"an owner of record of {printable(target.id)} directly (the AI agent {agent} acts for no one, so "
                "there is nobody behind the request to verify)")
    if actor.type is ActorType.SERVICE:
        return (
            f"the human owner of record behind the calling service {printable(actor.id)} (and confirm the service's "
            "credential is the one of record)"
        )
    if actor.relationship is Relationship.SELF:
        return f"the requester {printable(actor.id)} (the account holder)"
    return f"the requester {printable(actor.id)} ({_relation_words(request)})"


def _relation_words(request: Request) -> str:
    """How the requester stands to the target, in words true of the records the request carries.

    A stated relationship the records contradict is shown as a claim: a
    "manager" who is not the manager of record, an "owner" of a person or of
    an NHI whose owners of record do not include them.
    """
    actor, target = request.actor, request.target
    target_id = printable(target.id)
    rel = actor.relationship
    if rel is Relationship.MANAGER:
        if target.manager is not None and target.manager != actor.id:
            return f"says they are {target_id}'s manager, but the manager of record is someone else"
        return f"{target_id}'s manager" + (" of record" if target.manager is not None else "")
    if rel is Relationship.OWNER:
        if target.type is TargetType.HUMAN:
            return f"says they own {target_id}'s account: a person has no owner of record"
        if actor.id not in target.owners:
            return f"says they own {target_id}, but is not an owner of record"
        return f"an owner of record of {target_id}"
    if rel is Relationship.HELPDESK_AGENT:
        return f"a helpdesk agent acting on {target_id}"
    if rel is Relationship.ADMIN:
        return f"an administrator acting on {target_id}"
    if rel is Relationship.OTHER:
        return f"no relationship of record to {target_id}"
    return f"{rel.value} of {target_id}"


def _excluded(approver: ApproverConstraint, request: Request) -> str:
    """The excluded ids, each with why it is excluded ("a, b or c")."""
    actor = request.actor
    named = []
    for ident in approver.exclude:
        if ident == actor.id:
            named.append(f"{printable(ident)} (the requester)")
        elif ident == actor.on_behalf_of:
            named.append(f"{printable(ident)} (the person the AI agent acts for)")
        elif ident == actor.runs_as:
            named.append(f"{printable(ident)} (the identity the requester runs as)")
        else:
            named.append(printable(ident))
    return named[0] if len(named) == 1 else ", ".join(named[:-1]) + " or " + named[-1]


def _approver_from_constraint(approver: ApproverConstraint, request: Request) -> str:
    target_id = printable(request.target.id)
    if approver.of_record == "application_admin":
        who = "an application administrator (the owner of the app-consent process of the identity platform)"
    elif approver.of_record == "owner":
        who = f"an owner of record of {target_id}"
    else:
        who = f"{target_id}'s manager of record"
    if approver.ids is None:
        text = f"Get approval from {who}, looked up in the directory or inventory"
    elif approver.ids:
        text = f"Get approval from {who}: {', '.join(map(printable, approver.ids))}, confirmed in the directory or inventory"
    else:
        # Everyone of record is excluded (the requester is the manager or the only owner).
        text = (f"No approver of record remains for {target_id} once the requester is excluded (the requester is "
                f"{who}): get the approval from another approver of record one level up, the requester's own "
                "manager, a co-owner, or security")
    text += " (never a name or contact supplied in the request)."
    if approver.exclude:
        text += f" The approver must not be {_excluded(approver, request)}."
    return text + " An AI agent never counts as an approver, even when it relays an approval."


def _approver_text(request: Request, decision: Decision | None = None) -> str:
    if decision is not None and decision.constraints is not None and decision.constraints.approver is not None:
        return _approver_from_constraint(decision.constraints.approver, request)
    actor, target = request.actor, request.target
    target_id = printable(target.id)
    if target.type is TargetType.HUMAN:
        who = f"{target_id}'s manager of record, looked up in the directory"
    else:
        who = f"an owner of record of {target_id} or that owner's manager, looked up in the NHI inventory"
    text = f"Get approval from {who} (never a name or contact supplied in the request)."
    text += f" The approver must not be the requester ({printable(actor.id)})"
    if actor.relationship in (Relationship.MANAGER, Relationship.OWNER) and actor.type is ActorType.HUMAN:
        # Separation of duties: the person of record is the requester here, so someone else approves.
        text += (
            f"; the requester is {target_id}'s {actor.relationship.value} of record, so the approval must come "
            "from another approver of record: their own manager, a co-owner, or the owner of the role or resource"
        )
    return text + ". An AI agent never counts as an approver, even when it relays an approval."


def _callback_text(request: Request, decision: Decision | None = None) -> str:
    target = request.target
    target_id = printable(target.id)
    callback = None if decision is None or decision.constraints is None else decision.constraints.callback
    if callback is not None and callback.to == "owners":
        holder = f"an owner of record of {target_id} ({', '.join(map(printable, callback.ids))})"
        if request.actor.id in callback.ids and len(callback.ids) > 1:
            # A callback the requester answers proves only that they answer their own phone.
            holder += f", preferably one other than the requester {printable(request.actor.id)},"
    elif callback is not None:
        holder = ", ".join(map(printable, callback.ids)) or target_id
    else:
        holder = target_id if target.type is TargetType.HUMAN else f"the owner of record of {target_id}"
    text = (
        f"Call back {holder} on a contact of record taken from the directory or inventory, never a phone number "
        "or address given in the request, the ticket or by the caller, and confirm they made or agree to this "
        "request."
    )
    if callback is not None:
        age = ("its age is unknown" if callback.contact_age_days is None
               else f"it was set {callback.contact_age_days} day{'' if callback.contact_age_days == 1 else 's'} ago")
        if callback.contact_usable:
            text += (f" Use it only if it is at least {callback.min_contact_age_days} days old ({age}).")
        else:
            # A contact changed shortly before routes the callback to whoever changed it.
            person = "the holder" if callback.to == "holder" else "the owner"
            text += (f" The contact of record is not usable for this callback ({age}; it must be at least "
                     f"{callback.min_contact_age_days} days old): instead call {person}'s manager of record on their "
                     f"own contact of record, or have {person} verified in person.")
        if callback.not_the_recovered_factor:
            text += " Never call the device or number being recovered."
    if request.request.action is Action.CONTACT_CHANGE:
        # The contact being changed is what an attacker controls after a takeover.
        text += " Use the contact of record as it was before this request, not the new one."
    return text + " An AI agent is never the callback target."


#: Work order for obligations in the steps: what is part of the action first,
#: then clean-up, then telling and recording. Unknown codes follow, by code.
_OBLIGATION_ORDER = (
    "move_to_secrets_manager",
    "time_bound_access",
    "terminate_sessions",
    "revoke_previous_credential",
    "rotate_stale_secret",
    "notify_previous_contact",
    "notify_identity_owner",
    "record_evidence",
    "post_incident_review",
)


def in_work_order(obligations: list[Obligation]) -> list[Obligation]:
    """``obligations`` in the order a helpdesk agent carries them out (unknown codes last, by code)."""
    known = {code: i for i, code in enumerate(_OBLIGATION_ORDER)}
    return sorted(obligations, key=lambda o: (known.get(o.code, len(known)), o.code))


def _requester_line(request: Request) -> str:
    a = request.actor
    detail = [a.relationship.value]
    if a.on_behalf_of is not None:
        detail.append(f"on behalf of {printable(a.on_behalf_of)}")
    detail.append(f"authenticated with {a.auth_strength.value}" if a.authenticated else "not authenticated")
    return f"Requester: {a.type.value} {printable(a.id)} ({', '.join(detail)})"


def _do_not(decision: Decision, request: Request) -> list[str]:
    """The "do not" list for an allowed decision, tailored to the request."""
    items: list[str] = []
    reqs = set(decision.requirements)
    signals = set(request.context.risk_signals)
    if "identity_step_up" in reqs:
        items.append(f"accept {_NOT_ACCEPTABLE} as proof of identity")
    if "manager_approval" in reqs or "out_of_band_callback" in reqs:
        items.append("use an approver, phone number or email address supplied in the request or by the caller")
    if request.actor.type is ActorType.AI_AGENT:
        items.append(
            f"treat the AI agent {printable(request.actor.id)} as verification, approval or callback target, or let "
            "it act before a human has completed the steps above"
        )
    if request.request.emergency or RiskSignal.URGENCY_PRESSURE in signals:
        items.append("skip or shorten a step because of urgency or pressure: an emergency never lowers the level")
    if request.request.action in _ISSUES_SECRET:
        items.append(
            "disclose a new password, key, secret or recovery code in the ticket, chat, email or over the phone"
        )
    who = _who_acts(request)
    if decision.level is Level.SELF_SERVICE and request.request.action is not Action.INFO_REQUEST:
        # The decision rests on the requester's own session or credential:
        # done for them through another channel, it would rest on nothing.
        if who in ("holder_portal", "requester_portal"):
            items.append(
                "perform it for the requester through another channel: if they cannot complete it in their own "
                "session, decide the request again for the channel they are actually using"
            )
        elif who in ("workload", "system"):
            items.append(
                "perform it by hand for the calling system: if its own call fails, decide the request again for "
                "the path actually used"
            )
    return items


def _who_acts(request: Request) -> str:
    """Who performs a request that needs no verification beyond what the requester already passed.

    ``holder_portal``: the holder, in their own portal session; ``requester_portal``:
    someone else, in their own portal session; ``workload``: a workload or
    agent on itself, over the API; ``system``: another calling identity over
    the API; ``helpdesk``: the helpdesk agent, for a requester who reached
    the desk (walk-in, phone, chat, email).
    """
    actor, channel = request.actor, request.request.channel
    if channel is Channel.SELF_SERVICE_PORTAL:
        if actor.type is ActorType.HUMAN and actor.relationship is Relationship.SELF:
            return "holder_portal"
        return "requester_portal"
    if channel is Channel.API:
        return "workload" if actor.relationship is Relationship.SELF and actor.type is not ActorType.HUMAN else "system"
    return "helpdesk"


def _requester_words(request: Request) -> str:
    """The requester in words that are true of them: the holder, someone else, an agent and whom it acts for."""
    actor, target = request.actor, request.target
    if actor.type is ActorType.AI_AGENT:
        agent = f"the AI agent {printable(actor.id)}"
        if actor.relationship is Relationship.SELF:
            return f"{agent}, acting on itself"
        if actor.on_behalf_of is None:
            return f"{agent}, acting for no one"
        if actor.on_behalf_of == target.id:
            return f"{agent}, acting for the holder {printable(target.id)}"
        return f"{agent}, acting for {printable(actor.on_behalf_of)}"
    if actor.relationship is Relationship.SELF:
        return f"the holder {printable(actor.id)}" if target.type is TargetType.HUMAN else \
            f"the {actor.type.value} {printable(actor.id)} itself"
    return f"the requester {printable(actor.id)} ({_relation_words(request)})"


def _no_verification_step(decision: Decision, request: Request) -> str:
    """The first step of a self_service decision: true for who asks and who acts."""
    actor, target = request.actor, request.target
    if request.request.action is Action.INFO_REQUEST:
        asks_for_self = (actor.relationship is Relationship.SELF
                         or (actor.type is ActorType.AI_AGENT and actor.on_behalf_of == target.id))
        if asks_for_self and target.type is TargetType.HUMAN:
            scope = "Share only what the holder may see about their own account"
        elif actor.relationship is Relationship.OWNER and target.type.is_nhi:
            scope = f"Share only what an owner of record may see about {printable(target.id)}"
        elif asks_for_self:
            scope = f"Share only what {printable(target.id)} may see about itself"
        else:
            # A support or security role of record asking about someone else.
            words = _requester_words(request)
            scope = (f"{words[0].upper()}{words[1:]} is not the identity asked about: share only what the support "
                     "or security task at hand needs")
        return (f"No identity verification is needed: the request changes nothing. {scope}, never a credential, a "
                "secret or details of another identity.")
    who = _who_acts(request)
    if who == "holder_portal":
        return (f"No helpdesk verification is needed: the holder {printable(actor.id)} does this themselves in their "
                "own self-service portal session, with the authentication they already hold.")
    if who == "requester_portal":
        holder = "; the holder does not act" if target.type is TargetType.HUMAN else ""
        return (f"No helpdesk verification is needed: {_requester_words(request)} does this in their own "
                f"authenticated portal session{holder}.")
    if who == "workload":
        return (f"No helpdesk verification is needed: the {actor.type.value} {printable(actor.id)} does this itself "
                f"over the API with its own authentication ({actor.auth_strength.value}).")
    if who == "system":
        return (f"No helpdesk verification is needed: {_requester_words(request)} does this over the API with its "
                "own credential.")
    words = _requester_words(request)
    if actor.type is ActorType.AI_AGENT:
        words += ","  # "the AI agent a-1, acting for the holder u-1, is ..."
    return (f"No further verification is needed: {words} is authenticated ({actor.auth_strength.value}) and may "
            "ask for this. The helpdesk performs it for them.")


def _action_step(decision: Decision, request: Request) -> str:
    info = request.request
    action = f"{describe_action(request)} ({info.action.value}, playbook {printable(decision.playbook)})."
    if decision.level is not Level.SELF_SERVICE or info.action is Action.INFO_REQUEST:
        return action
    lead = {
        "holder_portal": "The holder does it in their own self-service session: ",
        "requester_portal": "The requester does it in their own portal session: ",
        "workload": "The workload does it itself over the API: ",
        "system": "The requesting system does it over the API: ",
    }.get(_who_acts(request))
    return action if lead is None else lead + action[0].lower() + action[1:]


def _verify_step(decision: Decision, request: Request) -> str:
    who = _who_verifies(request)
    if any(r.code == "factor_recovery_unverifiable" for r in decision.reasons):
        # No factor still enrolled: a push cannot verify, only identity proofing can.
        return (
            f"Verify the identity of {who} by identity proofing: a government ID checked against the identity of "
            "record, in person or by supervised remote proofing. No factor still enrolled for the account is "
            "known to be usable, so a push or code to an enrolled device cannot verify this request."
        )
    return f"Verify the identity of {who}. Use a strong factor bound to the identity of record: {_ACCEPTABLE_FACTORS}."


def render_explain(decision: Decision, request: Request | Mapping[str, Any]) -> str:
    """The decision as numbered steps a helpdesk agent follows, in order.

    Allowed decisions: what to verify (step-up with the acceptable factors, or
    identity proofing when no enrolled factor can verify a factor recovery;
    approval by the approver of record the decision's constraints name, never
    the requester, the person an AI agent acts for or the identity it runs as;
    callback to a contact of record old enough to trust, never the device
    being recovered, with the fallback when it is not), what not to do, the
    action and who performs it, then each obligation. A self-service decision
    says who acts: the holder in their own session, a workload on itself, or
    the helpdesk for a requester entitled to ask. Deny: do not perform it (do
    not answer, for a question), the formal process named by the deny reasons,
    then the obligations (evidence, notification of the attempt).

    Args:
        decision: the decision for ``request``.
        request: the request it was made for (a :class:`Request` or a plain dict).

    Returns:
        Plain text with a header, the reasons ("Why") and numbered steps.
    """
    req = parse_request(request)
    info, target = req.request, req.target
    steps: list[str] = []
    if not decision.allowed and info.action is Action.INFO_REQUEST:
        steps.append(
            f"Do not answer this question (info_request about {target.type.value} {printable(target.id)}): nothing "
            "about its factors, approvers, contacts, recovery set-up or credentials, not partially and not to "
            "confirm a guess, whatever the urgency."
        )
    elif not decision.allowed:
        steps.append(
            f"Do not perform this request ({info.action.value} on {target.type.value} {printable(target.id)}): not "
            "through this channel, not partially, and not through a workaround (temporary password, shared "
            "credential, manual grant), whatever the urgency."
        )
    if not decision.allowed:
        seen: set[str] = set()
        for r in decision.reasons:
            if r.level is Level.DENY and r.message not in seen:
                seen.add(r.message)
                steps.append(f"Formal process instead ({printable(r.code)}): {printable(r.message)}")
        steps.append(
            "Tell the requester this cannot be done here and point them to that process; do not disclose details "
            "about the account, its owners or its credentials."
        )
    else:
        if req.actor.type is ActorType.AI_AGENT:
            steps.append(
                f"This request comes from the AI agent {printable(req.actor.id)}. It cannot vouch for anyone's "
                "identity, approve, or receive a callback: a human helpdesk agent does every step below with the "
                "people of record directly."
            )
        if decision.level is Level.SELF_SERVICE:
            steps.append(_no_verification_step(decision, req))
        if "identity_step_up" in decision.requirements:
            steps.append(_verify_step(decision, req))
        if "manager_approval" in decision.requirements:
            steps.append(_approver_text(req, decision))
        if "out_of_band_callback" in decision.requirements:
            steps.append(_callback_text(req, decision))
        do_not = _do_not(decision, req)
        if do_not:
            steps.append("\n".join(["Do not:", *(f"- {item[0].upper()}{item[1:]}." for item in do_not)]))
        if decision.requirements:
            steps.append(
                "If any check above fails or cannot be completed, stop: do not perform the request, record the "
                "attempt and escalate to security."
            )
        steps.append(_action_step(decision, req))
    steps.extend(describe_obligation(ob, action=info.action) for ob in in_work_order(decision.obligations))

    verdict = "allowed" if decision.allowed else "denied"
    lines = [
        f"{printable(info.id)}: {info.action.value} on {target.type.value} {printable(target.id)} via "
        f"{info.channel.value}",
        _requester_line(req),
    ]
    if info.justification is not None:
        # Shown so the agent knows what was claimed, never as a step: it is the
        # requester's text, and pressure ("security says skip the callback") lives there.
        lines.append(f"Requester's own words (unverified, not an instruction): {_quoted(info.justification)}")
    lines.append(f"Decision: {decision.level.value.upper()} ({verdict}), playbook {printable(decision.playbook)}")
    if decision.degraded and decision.engine == NO_ENGINE:
        lines.append("Warning: no policy engine could decide this (degraded); this is the fail-closed answer.")
    elif decision.degraded:
        lines.append("Warning: a fallback engine decided this (degraded); follow the steps exactly as written.")
    lines.append("Why:")
    lines += [reason_line(r) for r in decision.reasons]
    lines.append("Steps:")
    width = len(str(len(steps)))
    for i, step in enumerate(steps, 1):
        first, *rest = step.split("\n")
        lines.append(f"  {i:>{width}}. {first}")
        # Continuation lines (a step's sub-items) align under the step's text.
        lines += [f"  {'':>{width}}    {line}" for line in rest]
    lines.append(
        f"Decision id {printable(decision.decision_id)}; engine {printable(decision.engine)}; "
        f"policy {printable(decision.policy_revision)}"
    )
    return "\n".join(lines)
