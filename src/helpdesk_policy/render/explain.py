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
}

#: Actions that hand a new secret to someone: it must never travel over the request's channel.
_ISSUES_SECRET = frozenset(
    {Action.PASSWORD_RESET, Action.MFA_RESET, Action.API_KEY_REISSUE, Action.SECRET_ROTATION,
     Action.SERVICE_ACCOUNT_CREATE}
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
        person = actor.on_behalf_of or (target.id if target.type is TargetType.HUMAN else None)
        if person is not None:
            return (f"{printable(person)}, the person the AI agent {printable(actor.id)} acts for (directly, not "
                    "through the agent)")
        return (f"the owner of record of {printable(target.id)} (directly, not through the AI agent "
                f"{printable(actor.id)})")
    if actor.type is ActorType.SERVICE:
        return (
            f"the human owner of record behind the calling service {printable(actor.id)} (and confirm the service's "
            "credential is the one of record)"
        )
    if actor.relationship is Relationship.SELF:
        return f"the requester {printable(actor.id)} (the account holder)"
    return f"the requester {printable(actor.id)} ({actor.relationship.value} of {printable(target.id)})"


def _approver_text(request: Request) -> str:
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


def _callback_text(request: Request) -> str:
    target = request.target
    target_id = printable(target.id)
    holder = target_id if target.type is TargetType.HUMAN else f"the owner of record of {target_id}"
    text = (
        f"Call back {holder} on a contact of record taken from the directory or inventory, never a phone number "
        "or address given in the request, the ticket or by the caller, and confirm they made or agree to this "
        "request."
    )
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
    "notify_identity_owner",
    "record_evidence",
    "post_incident_review",
)


def _in_work_order(obligations: list[Obligation]) -> list[Obligation]:
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
    if (
        decision.level is Level.SELF_SERVICE
        and request.request.channel is not Channel.SELF_SERVICE_PORTAL
        and request.request.action is not Action.INFO_REQUEST
    ):
        items.append(
            "perform it on the requester's behalf outside their own authenticated flow: if they cannot use it, "
            "decide the request again for the channel they are actually using"
        )
    return items


def render_explain(decision: Decision, request: Request | Mapping[str, Any]) -> str:
    """The decision as numbered steps a helpdesk agent follows, in order.

    Allowed decisions: what to verify (step-up with the acceptable factors,
    approval by the manager/owner of record who is not the requester, callback
    to a contact of record), what not to do, the action, then each obligation.
    Deny: do not perform it, the formal process named by the deny reasons, then
    the obligations (evidence, notification of the attempt).

    Args:
        decision: the decision for ``request``.
        request: the request it was made for (a :class:`Request` or a plain dict).

    Returns:
        Plain text with a header, the reasons ("Why") and numbered steps.
    """
    req = parse_request(request)
    info, target = req.request, req.target
    steps: list[str] = []
    if not decision.allowed:
        steps.append(
            f"Do not perform this request ({info.action.value} on {target.type.value} {printable(target.id)}): not "
            "through this channel, not partially, and not through a workaround (temporary password, shared "
            "credential, manual grant), whatever the urgency."
        )
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
        is_info = info.action is Action.INFO_REQUEST
        if decision.level is Level.SELF_SERVICE and is_info:
            steps.append(
                "No identity verification is needed: the request changes nothing. Share only what the requester "
                "may see about their own account, never a credential or details of another identity."
            )
        elif decision.level is Level.SELF_SERVICE:
            steps.append(
                "No helpdesk verification is needed: the requester completes this themselves in the self-service "
                "flow (portal or API) with the authentication they already hold."
            )
        if "identity_step_up" in decision.requirements:
            steps.append(
                f"Verify the identity of {_who_verifies(req)}. Use a strong factor bound to the identity of "
                f"record: {_ACCEPTABLE_FACTORS}."
            )
        if "manager_approval" in decision.requirements:
            steps.append(_approver_text(req))
        if "out_of_band_callback" in decision.requirements:
            steps.append(_callback_text(req))
        do_not = _do_not(decision, req)
        if do_not:
            steps.append("\n".join(["Do not:", *(f"- {item[0].upper()}{item[1:]}." for item in do_not)]))
        if decision.requirements:
            steps.append(
                "If any check above fails or cannot be completed, stop: do not perform the request, record the "
                "attempt and escalate to security."
            )
        action = f"{describe_action(req)} ({info.action.value}, playbook {printable(decision.playbook)})."
        if decision.level is Level.SELF_SERVICE and not is_info:
            action = f"The requester does it in the self-service flow: {action[0].lower()}{action[1:]}"
        steps.append(action)
    steps.extend(describe_obligation(ob) for ob in _in_work_order(decision.obligations))

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
