"""One decision, two audiences: the helpdesk agent who acts, and the requester who asked.

:func:`explain` renders a decision for one of them:

* ``audience="agent"``: the numbered steps a helpdesk agent follows
  (:func:`~helpdesk_policy.render.explain.render_explain`): the reasons,
  the risk signals behind them, the approver and callback of record, every
  identifier. It is for the people who verify and act, and for the ticket.
* ``audience="requester"``: what to tell the person asking (in a chat, an
  e-mail, on the phone, or through a chatbot's reply): what happens next
  (nothing: it can be done now; an identity check; an approval; a call
  back on contact details of record; or a refusal with the formal process
  to follow instead), and nothing else.

Why the requester's text says so little
---------------------------------------

Helpdesk social engineering is iterative: the caller who is told "the
caller ID does not match" or "your device is new" or "the account is
privileged" learns which signal to fake on the next call (CISA AA23-320A,
Scattered Spider: actors call again and again, adjusting their story to
what the helpdesk reveals). So the requester's text never holds a reason
code or a reason's message, a risk signal, the target's tier, VIP status,
privilege or status, an approver's or a callback's identity, or any
identifier from the request; a refusal names the formal process, never
which rule refused. By construction: the requester's text is a function of
the decision's level, whether an engine decided, and (for a refusal) the
action asked for, and of nothing else in the decision or the request, so no
value can reach it. ``tests/test_tools.py`` checks this as a property over
random requests decided by the stock policy.

It also tells the requester what the service desk will never do (ask for a
password or a one-time code; use a phone number, address or approver given
in the conversation), which is the guidance that makes a later impersonation
attempt easier to recognise (NIST SP 800-63B-4: verifiers never ask the
subscriber to disclose an authenticator's secret; CISA AA23-320A
mitigations).

>>> from helpdesk_policy import HelpdeskPolicy
>>> request = {
...     "request": {"id": "INC-9", "action": "mfa_reset", "channel": "phone"},
...     "actor": {"id": "u-9", "type": "human", "relationship": "self",
...               "authenticated": False, "auth_strength": "none"},
...     "target": {"id": "u-9", "type": "human", "privileged": True,
...                "privilege_tier": 2, "vip": False, "status": "active"},
... }
>>> decision = HelpdeskPolicy(engine="native").decide(request)
>>> print(explain(decision, audience="requester"))  # doctest: +NORMALIZE_WHITESPACE
This request cannot be completed yet. First, a member of the service desk will verify your identity with a
sign-in method already registered to you or an identity document check. Then the request needs approval from
someone responsible for the account, whom we contact directly. Then we will confirm the request by calling
back on contact details already on record. We will never ask you for a password, a one-time code or a
recovery code, and we never use a phone number, e-mail address or approver given in this conversation.
>>> explain(decision, request, audience="agent").splitlines()[2]
'Decision: CALLBACK (allowed), playbook mfa-reset-callback'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from ..levels import Level
from ..models import NO_ENGINE, Action, Decision, Request
from .explain import render_explain

__all__ = ["Audience", "AUDIENCES", "REQUESTER_TEXTS", "explain", "requester_text"]

#: Who a rendering is for.
Audience = Literal["requester", "agent"]
AUDIENCES: tuple[str, ...] = ("requester", "agent")

_NEVER_ASK = (
    "We will never ask you for a password, a one-time code or a recovery code, and we never use a phone number, "
    "e-mail address or approver given in this conversation."
)

_NOW = "Your request can be completed now."
_NOT_YET = "This request cannot be completed yet."
_VERIFY = ("a member of the service desk will verify your identity with a sign-in method already registered to you "
           "or an identity document check.")
_APPROVE = "the request needs approval from someone responsible for the account, whom we contact directly."
_CALL_BACK = "we will confirm the request by calling back on contact details already on record."
_UNAVAILABLE = ("We cannot complete this request right now. Please contact the service desk through its published "
                "contact details, not ones given in this conversation.")
_HANDOFF = ("A member of the service desk will handle this request and follow up with you through contact details "
            "already on record.")
_CLOSED = "This request has already been closed. If you still need something, please make a new request."
_REFUSED = "This request cannot be completed through this channel."
_NO_DETAILS = "For your protection we cannot share details about the account or about this decision."

#: What a refused request can do instead, per kind of action: the formal
#: process, never the rule that refused (which could name a risk signal).
_RECOVERY = ("If you still need this, contact the service desk in person or through its published contact details: "
             "they will take you through the formal account recovery process.")
_ACCESS = "Access changes go through the formal access request process, with approval by the owner of the access."
_NHI = ("Changes to service accounts, keys, tokens and other non-human identities go through their owners of record "
        "and the formal change process.")
_CONSENT = "Application consent goes through the formal application review by an application administrator."
_CONTAINMENT = "To report a suspected compromise, use the security incident process."
_INFO = "This question cannot be answered here."

_PROCESS: dict[Action, str] = {
    Action.ACCOUNT_UNLOCK: _RECOVERY,
    Action.PASSWORD_RESET: _RECOVERY,
    Action.MFA_RESET: _RECOVERY,
    Action.MFA_ADD_FACTOR: _RECOVERY,
    Action.TEMPORARY_ACCESS_PASS: _RECOVERY,
    Action.CONTACT_CHANGE: _RECOVERY,
    Action.ACCESS_GRANT: _ACCESS,
    Action.ROLE_CHANGE: _ACCESS,
    Action.PRIVILEGE_ELEVATION: _ACCESS,
    Action.DELEGATED_ADMIN: _ACCESS,
    Action.API_KEY_REISSUE: _NHI,
    Action.SECRET_ROTATION: _NHI,
    Action.SERVICE_ACCOUNT_CREATE: _NHI,
    Action.OAUTH_CONSENT: _CONSENT,
    Action.TOKEN_REVOKE: _CONTAINMENT,
    Action.CREDENTIAL_REVOKE: _CONTAINMENT,
    Action.ACCOUNT_DISABLE: _CONTAINMENT,
}
#: What to tell the requester when there is no decision to explain, by situation:
#: ``now`` (a permit was issued: the change goes ahead), ``unavailable`` (nothing
#: could be decided: fail closed), ``handoff`` (a person must look at it, e.g.
#: the identity asked about is not in the record: the text does not say so,
#: since whether an account exists is itself what an attacker probes for),
#: ``closed`` (the ticket already has an outcome).
REQUESTER_TEXTS: dict[str, str] = {
    "now": _NOW,
    "unavailable": _UNAVAILABLE,
    "handoff": f"{_HANDOFF} {_NEVER_ASK}",
    "closed": _CLOSED,
}

_GENERIC_PROCESS = ("If you still need this, contact the service desk through its published contact details: they "
                    "will tell you the formal process to follow.")


def requester_text(decision: Decision) -> str:
    """What to tell the requester about ``decision``: what happens next, and no more.

    A function of ``decision.level``, whether an engine decided
    (``decision.engine``) and, for a refusal, ``decision.action``: nothing
    else of the decision (reasons, constraints, obligations, ids) is read.

    >>> from helpdesk_policy import HelpdeskPolicy
    >>> d = HelpdeskPolicy(engine="native").decide({
    ...     "request": {"id": "INC-7", "action": "password_reset", "channel": "self_service_portal"},
    ...     "actor": {"id": "u-1", "type": "human", "relationship": "self",
    ...               "authenticated": True, "auth_strength": "mfa"},
    ...     "target": {"id": "u-1", "type": "human", "privileged": False,
    ...                "privilege_tier": 0, "vip": False, "status": "active"},
    ... })
    >>> requester_text(d)
    'Your request can be completed now.'
    """
    if not isinstance(decision, Decision):
        raise TypeError(f"expected a Decision, got {type(decision).__name__}")
    if decision.engine == NO_ENGINE:
        # The fail-closed answer: nothing was decided, so nothing is promised.
        return _UNAVAILABLE
    level = decision.level
    if level is Level.DENY:
        if decision.action is Action.INFO_REQUEST:
            return " ".join((_INFO, _NO_DETAILS))
        process = _PROCESS.get(decision.action, _GENERIC_PROCESS) if decision.action is not None else _GENERIC_PROCESS
        return " ".join((_REFUSED, process, _NO_DETAILS))
    if level is Level.SELF_SERVICE:
        return _NOW
    steps = [_VERIFY]
    if level >= Level.MANAGER_APPROVAL:
        steps.append(_APPROVE)
    if level >= Level.CALLBACK:
        steps.append(_CALL_BACK)
    if len(steps) == 1:
        sentences = ["Before it can be, " + _VERIFY]
    else:
        sentences = [lead + step for lead, step in zip(("First, ", "Then ", "Then "), steps)]
    return " ".join((_NOT_YET, *sentences, _NEVER_ASK))


def explain(
    decision: Decision,
    request: Request | Mapping[str, Any] | None = None,
    *,
    audience: Audience,
) -> str:
    """Render ``decision`` for ``audience``: ``"agent"`` or ``"requester"``.

    Args:
        decision: the decision.
        request: the request it was made for; required for ``"agent"`` (the
            steps name the people of record), ignored for ``"requester"``.
        audience: ``"agent"``: the helpdesk agent's numbered steps, with the
            reasons (:func:`~helpdesk_policy.render.explain.render_explain`);
            ``"requester"``: what to tell the requester
            (:func:`requester_text`), which never reveals a risk signal.
            No default: choose, since the two must never be swapped.

    Raises:
        ValueError: an unknown ``audience``, or ``"agent"`` without ``request``.
    """
    if audience == "requester":
        return requester_text(decision)
    if audience == "agent":
        if request is None:
            raise ValueError("explain(audience='agent') needs the request: the steps name the people of record")
        return render_explain(decision, request)
    raise ValueError(f"audience must be one of {list(AUDIENCES)}")
