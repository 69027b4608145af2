"""Decisions rendered for people: a summary, and steps a helpdesk agent follows.

>>> from helpdesk_policy import HelpdeskPolicy
>>> from helpdesk_policy.render import render_text
>>> d = HelpdeskPolicy(engine="native").decide({
...     "request": {"id": "INC-7", "action": "info_request", "channel": "chat"},
...     "actor": {"id": "u-1", "type": "human", "relationship": "self",
...               "authenticated": True, "auth_strength": "mfa"},
...     "target": {"id": "u-1", "type": "human", "privileged": False,
...                "privilege_tier": 0, "vip": False, "status": "active"},
... })
>>> print(render_text(d).splitlines()[0])
SELF_SERVICE (allowed) — info-request-self-service
"""

from __future__ import annotations

from .levels import Level
from .models import ActorType, Decision, Obligation, Request

__all__ = ["render_text", "render_explain", "describe_obligation"]

_REQUIREMENT_TEXT = {
    "identity_step_up": (
        "Re-verify the requester with a strong factor bound to the identity of record: a number-match push "
        "to an enrolled device, phishing-resistant MFA, or a verified government ID. Knowledge questions, "
        "caller ID and details the caller volunteers do not count."
    ),
    "manager_approval": (
        "Get approval from the target's manager or owner of record, looked up in the directory. The approver "
        "must not be the requester, and an AI agent never counts as an approver."
    ),
    "out_of_band_callback": (
        "Call back (or message) a contact of record from the directory — never a number or address given in "
        "the request or by the caller — and confirm the request with the account holder or owner. An AI agent "
        "never counts as the callback target."
    ),
}


def describe_obligation(ob: Obligation) -> str:
    """One sentence for an obligation, with its parameters."""
    code = ob.code
    if code == "record_evidence":
        return "Record evidence in the ticket: " + ", ".join(ob.fields or []) + "."
    if code == "revoke_previous_credential":
        return f"Revoke the previous credential or factor within {ob.within_hours} hours."
    if code == "notify_identity_owner":
        return "Notify the identity (or the NHI's owner) through a channel of record, not the requesting one."
    if code == "terminate_sessions":
        return "Terminate the identity's existing sessions and refresh tokens."
    if code == "rotate_stale_secret":
        return "Rotate the identity's stale secret."
    if code == "move_to_secrets_manager":
        return "Store the new credential in the secrets manager; never paste it into the ticket or chat."
    if code == "time_bound_access":
        return f"Make the access time-bound: it must expire within {ob.within_hours} hours."
    if code == "post_incident_review":
        return "Open a post-incident review of this emergency change."
    params = ", ".join(f"{k}={v}" for k, v in ob.model_dump(exclude_none=True).items() if k != "code")
    return f"{code}" + (f" ({params})" if params else "")


def render_text(decision: Decision) -> str:
    """A readable summary: level, requirements, reasons, obligations, provenance."""
    lines = [f"{decision.level.value.upper()} ({'allowed' if decision.allowed else 'denied'}) — {decision.playbook}"]
    lines.append("requirements: " + (", ".join(decision.requirements) or "none"))
    lines.append("reasons:")
    for r in decision.reasons:
        refs = f" [{', '.join(r.refs)}]" if r.refs else ""
        lines.append(f"  - {r.level.value:<16} {r.code}: {r.message}{refs}")
    lines.append("obligations:")
    for ob in decision.obligations:
        lines.append(f"  - {ob.code}: {describe_obligation(ob)}")
    lines.append(
        f"engine: {decision.engine}{' (DEGRADED: fallback answered)' if decision.degraded else ''}  "
        f"revision: {decision.policy_revision[:19]}…  decision: {decision.decision_id}"
    )
    return "\n".join(lines)


def render_explain(decision: Decision, request: Request) -> str:
    """The decision as numbered steps a helpdesk agent follows."""
    steps: list[str] = []
    action = request.request.action.value
    target = f"{request.target.type.value} {request.target.id}"
    if not decision.allowed:
        steps.append(f"Do not perform this request ({action} on {target}) through this channel.")
        for r in decision.reasons:
            if r.level is Level.DENY:
                steps.append(f"Tell the requester why and which process to use: {r.message}")
        steps.append("Do not reveal whether the account exists or any detail about it beyond what the requester already knows.")
    else:
        if request.actor.type is ActorType.AI_AGENT:
            steps.append(
                "The request comes from an AI agent: every verification and approval below must be done by a "
                "human with the account holder or owner directly, not through the agent."
            )
        for req in decision.requirements:
            steps.append(_REQUIREMENT_TEXT.get(req, req))
        if decision.level is Level.SELF_SERVICE:
            steps.append("Point the requester to the self-service flow; no helpdesk verification is needed beyond it.")
        steps.append("If any verification fails or the requester pushes for urgency, stop and escalate; do not improvise.")
        steps.append(f"Perform the {action} on {target}.")
    for ob in decision.obligations:
        steps.append(describe_obligation(ob))
    header = (
        f"{decision.level.value.upper()}: {action} on {target} "
        f"(playbook {decision.playbook}, decision {decision.decision_id})"
    )
    why = "Why: " + "; ".join(f"{r.code} ({r.level.value})" for r in decision.reasons)
    return "\n".join([header, why, *(f"{i}. {s}" for i, s in enumerate(steps, 1))])
