"""The checklist an agent must complete for a decision, for the ticket's internal notes.

One list, written into each system's own format (a ServiceNow work note, a
Jira task list, a Zendesk internal note): what to verify, who may approve,
whom to call back and how, what to do, and every obligation afterwards, in
the order an agent works. A deny lists what not to do and the formal process
instead. The decision alone is enough (it carries its request's id, action
and target); with the request, the steps name the AI agent a request came
from.

Everything is internal: the checklist may name the reasons and the approvers
and callback targets of record, so it goes only into notes the requester
cannot see (never a public comment: CISA AA23-320A, telling a caller which
checks will run coaches the next attempt). Every value from a request or an
engine is passed through :func:`~helpdesk_policy.render.printable`: no value
can add a line or forge a step. Each format escapes it again for its markup.

>>> from helpdesk_policy import HelpdeskPolicy
>>> from helpdesk_policy.integrations.checklist import checklist
>>> d = HelpdeskPolicy(engine="native").decide({
...     "request": {"id": "INC-7", "action": "password_reset", "channel": "phone"},
...     "actor": {"id": "u-1", "type": "human", "relationship": "self",
...               "authenticated": False, "auth_strength": "none"},
...     "target": {"id": "u-1", "type": "human", "privileged": False,
...                "privilege_tier": 0, "vip": False, "status": "active", "contact_age_days": 400},
...     "context": {"recent_credential_change_hours": 1000, "enrolled_factor_available": True},
... })
>>> [item.code for item in checklist(d)][:2]
['identity_step_up', 'stop_if_a_check_fails']
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ..levels import Level
from ..models import ActorType, Decision, Request, parse_request
from ..render import describe_approver, describe_callback, describe_obligation, printable
from ..render.explain import in_work_order

__all__ = ["ChecklistItem", "checklist", "headline", "provenance_line"]

#: How a checklist item is meant: a check before acting, the action itself,
#: something never to do (a deny), or an obligation after acting.
ItemKind = Literal["check", "action", "refusal", "obligation"]


@dataclass(frozen=True)
class ChecklistItem:
    """One step an agent must complete: ``code`` (a requirement, an obligation
    or a step name), ``kind`` and ``text``, one printable sentence."""

    code: str
    kind: ItemKind
    text: str


_STEP_UP = (
    "Verify the requester's identity with a strong factor bound to the identity of record: a number-match push "
    "to a device already enrolled for that identity, phishing-resistant MFA (security key, passkey, smart card), "
    "or a government ID checked against the identity of record. Never caller ID, knowledge questions, details "
    "the requester can look up or volunteers, or a code sent to a phone or address given in the request."
)
_PROOFING = (
    "Verify the requester's identity by identity proofing: a government ID checked against the identity of "
    "record, in person or by supervised remote proofing. No factor still enrolled for the account is known to "
    "be usable, so a push or code to an enrolled device cannot verify this request."
)
_APPROVAL = (
    "Get approval from the approver of record (a person's manager of record, a non-human identity's owner of "
    "record), looked up in the directory or inventory. Never the requester, never a name supplied in the "
    "request, never an AI agent."
)
_CALLBACK = (
    "Call back the account holder (for a non-human identity, an owner of record) on a contact of record from the "
    "directory or inventory, never a number or address given in the request, and confirm they made or agree to "
    "this request. Never an AI agent."
)


def checklist(decision: Decision, request: Request | Mapping[str, Any] | None = None) -> list[ChecklistItem]:
    """The steps an agent must complete for ``decision``, in order.

    Allowed: each check the level requires (step-up, approval by the
    approver of record the decision's constraints name, callback to a
    contact of record old enough to trust), "stop if a check fails", the
    action, then each obligation. Deny: do not perform it, the formal
    process each deny reason names, what to tell the requester, then the
    obligations (evidence, notification of the attempt).

    Args:
        decision: the decision; its ``action`` and ``target_id`` name what is asked.
        request: the request it was made for, optional (a :class:`Request`
            or a plain dict): with it, a request from an AI agent says that
            a person does every check.

    Returns:
        The items, each one printable sentence.
    """
    req = None if request is None else parse_request(request)
    what = _what(decision, req)
    items: list[ChecklistItem] = []
    if not decision.allowed:
        items.append(ChecklistItem("do_not_perform", "refusal", (
            f"Do not perform this request ({what}): not through this channel, not partially, and not through a "
            "workaround (temporary password, shared credential, manual grant), whatever the urgency.")))
        seen: set[str] = set()
        for r in decision.reasons:
            if r.level is Level.DENY and r.message not in seen:
                seen.add(r.message)
                items.append(ChecklistItem("formal_process", "refusal",
                                           f"Formal process instead ({printable(r.code)}): {printable(r.message)}"))
        items.append(ChecklistItem("tell_requester", "refusal", (
            "Tell the requester this cannot be done here and point them to that process; do not disclose details "
            "about the account, its owners or its credentials.")))
    else:
        if req is not None and req.actor.type is ActorType.AI_AGENT:
            items.append(ChecklistItem("human_performs_checks", "check", (
                f"This request comes from the AI agent {printable(req.actor.id)}: it cannot vouch for anyone's "
                "identity, approve, or receive a callback. A person does every check below with the people of "
                "record directly.")))
        constraints = decision.constraints
        if "identity_step_up" in decision.requirements:
            proofing = any(r.code == "factor_recovery_unverifiable" for r in decision.reasons)
            items.append(ChecklistItem("identity_step_up", "check", _PROOFING if proofing else _STEP_UP))
        if "manager_approval" in decision.requirements:
            text = _APPROVAL if constraints is None or constraints.approver is None else (
                describe_approver(constraints.approver) + " Record who approved.")
            items.append(ChecklistItem("manager_approval", "check", text))
        if "out_of_band_callback" in decision.requirements:
            text = _CALLBACK if constraints is None or constraints.callback is None else (
                describe_callback(constraints.callback) + " Confirm they made or agree to this request.")
            items.append(ChecklistItem("out_of_band_callback", "check", text))
        if decision.requirements:
            items.append(ChecklistItem("stop_if_a_check_fails", "check", (
                "If any check above fails or cannot be completed, stop: do not perform the request, record the "
                "attempt and escalate to security.")))
        lead = "No further verification is needed: perform" if decision.level is Level.SELF_SERVICE else "Perform"
        items.append(ChecklistItem("perform", "action",
                                   f"{lead} the request ({what}), following playbook {printable(decision.playbook)}."))
    items.extend(ChecklistItem(ob.code, "obligation", describe_obligation(ob, action=decision.action))
                 for ob in in_work_order(decision.obligations))
    return items


def headline(decision: Decision) -> str:
    """``Decision for INC-7: CALLBACK (allowed)``, with a warning when degraded."""
    ticket = f" for {printable(decision.request_id)}" if decision.request_id is not None else ""
    verdict = "allowed" if decision.allowed else "denied"
    text = f"helpdesk-policy decision{ticket}: {decision.level.value.upper()} ({verdict})"
    if decision.degraded:
        text += " - DEGRADED: a fallback answered; follow the checklist exactly"
    return text


def provenance_line(decision: Decision) -> str:
    """The decision's id, policy revision and engine: how to find it again in the decision log."""
    return (f"Decision id {printable(decision.decision_id)}; policy {printable(decision.policy_revision)}; "
            f"engine {printable(decision.engine)}; degraded: {'yes' if decision.degraded else 'no'}")


def _what(decision: Decision, request: Request | None) -> str:
    action = decision.action if decision.action is not None else (request.request.action if request else None)
    target = decision.target_id if decision.target_id is not None else (request.target.id if request else None)
    if action is None:
        return "the action asked for"
    return f"{action.value} on {printable(target)}" if target is not None else action.value
