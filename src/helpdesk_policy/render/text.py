"""The summary of a decision for a person: level, reasons, obligations, constraints, provenance.

Obligations read as imperative sentences, a custom policy's with every parameter:

>>> from helpdesk_policy.models import Obligation
>>> from helpdesk_policy.render.text import describe_obligation
>>> describe_obligation(Obligation(code="revoke_previous_credential", within_hours=24))
'Revoke the previous credential within 24 hours.'
>>> describe_obligation(Obligation(code="revoke_previous_credential", within_hours=0))
'Revoke the previous credential immediately.'
>>> describe_obligation(Obligation(code="notify_identity_owner", to="nhi-governance"))
'Notify nhi-governance (the non-human identity has no active owner of record) through a contact of record, not the channel the request came from.'
>>> describe_obligation(Obligation(code="our_own_check", fields=["ticket", "approver"]))
'Fulfil obligation our_own_check (fields=ticket, approver).'
"""

from __future__ import annotations

from ..models import (
    NO_ENGINE,
    Action,
    ApproverConstraint,
    CallbackConstraint,
    Decision,
    Obligation,
    Reason,
)
from .sanitize import printable

__all__ = ["render_text", "describe_obligation", "describe_approver", "describe_callback", "reason_line"]


#: Actions that issue an NHI a new credential (move_to_secrets_manager words the new one).
_ISSUES_NHI_CREDENTIAL = frozenset({Action.API_KEY_REISSUE, Action.SECRET_ROTATION, Action.SERVICE_ACCOUNT_CREATE})


def _deadline(hours: int | None) -> str:
    """``within N hours``; ``0`` is ``immediately`` (at once, not "within 0 hours")."""
    if hours is None:
        return ""
    if hours == 0:
        return " immediately"
    return f" within {hours} hour" + ("" if hours == 1 else "s")


def _notify_whom(to: str | None) -> str:
    if to is None:
        return "the identity holder (for a non-human identity, its owner of record)"
    if to == "holder":
        return "the account holder"
    if to == "owners":
        return "the owners of record of the non-human identity"
    return f"{printable(to)} (the non-human identity has no active owner of record)"


def describe_obligation(ob: Obligation, *, action: Action | None = None) -> str:
    """One imperative sentence for an obligation, parameters included.

    ``within_hours: 0`` reads "immediately". ``action`` (the request's, when
    known) words an obligation for what was asked: a temporary access pass
    expires, other access is time-bound. Unknown obligation codes (a custom
    policy's) are rendered generically with every parameter, so nothing an
    engine returns is silently dropped.
    """
    code = ob.code
    if code == "record_evidence":
        return "Record evidence: " + ", ".join(map(printable, ob.fields or [])) + "."
    if code == "revoke_previous_credential" and ob.within_hours is not None:
        return f"Revoke the previous credential{_deadline(ob.within_hours)}."
    if code == "notify_identity_owner":
        return (
            f"Notify {_notify_whom(ob.to)} through a contact of record, not the channel the request came from."
        )
    if code == "notify_previous_contact":
        return (
            "Notify the previous contact of record (the phone number or email address being replaced) of the "
            "change, so the real holder learns of it if it was not them."
        )
    if code == "terminate_sessions":
        return "Terminate the identity's existing sessions and refresh tokens."
    if code == "rotate_stale_secret":
        return "Rotate the identity's stale secret (older than the maximum age, or of unknown age)."
    if code == "move_to_secrets_manager":
        if action in _ISSUES_NHI_CREDENTIAL:
            what = "Store the new credential in the secrets manager"
        elif action is None:
            what = "Keep the identity's secret in the secrets manager"
        else:
            what = "Move the identity's existing secret into the secrets manager"
        return f"{what}; never put it in code, the ticket, chat or email."
    if code == "time_bound_access" and ob.within_hours is not None:
        if action is Action.TEMPORARY_ACCESS_PASS:
            return f"Make the temporary access pass expire{_deadline(ob.within_hours)}, and single-use where possible."
        return f"Make the access time-bound: it must expire{_deadline(ob.within_hours)}."
    if code == "post_incident_review":
        return f"Open a post-incident review of this emergency request{_deadline(ob.within_hours)}."
    params = _obligation_params(ob)
    return f"Fulfil obligation {printable(code)}" + (f" ({params})." if params else ".")


_OF_RECORD = {
    "manager": "the target's manager of record",
    "owner": "an owner of record of the non-human identity",
    "application_admin": "an application administrator",
}


def describe_approver(approver: ApproverConstraint) -> str:
    """Who may approve, as one sentence (the approver constraint)."""
    who = _OF_RECORD.get(approver.of_record, printable(approver.of_record))
    if approver.ids is None:
        named = f"{who}, looked up in the directory or inventory of record"
    elif approver.ids:
        named = f"{who}: {', '.join(map(printable, approver.ids))}"
    else:
        named = (f"{who}, but none of record remains once the requester is excluded: escalate one level up "
                 "(the approver's own manager, or security)")
    text = f"Approval by {named}."
    if approver.exclude:
        text += f" Never by {', '.join(map(printable, approver.exclude))}."
    return text + " Never by an AI agent."


def describe_callback(callback: CallbackConstraint) -> str:
    """Whom to call back and on which contact, as one sentence (the callback constraint)."""
    whom = "the account holder" if callback.to == "holder" else "an owner of record"
    text = f"Callback to {whom} ({', '.join(map(printable, callback.ids))}) on a contact of record"
    age = ("of unknown age" if callback.contact_age_days is None
           else f"set {callback.contact_age_days} day{'' if callback.contact_age_days == 1 else 's'} ago")
    if callback.contact_usable:
        text += f" ({age}; at least {callback.min_contact_age_days} days old required)."
    else:
        text += (f", but the one on record is {age}, under the {callback.min_contact_age_days}-day minimum: "
                 "call the manager of record instead, or verify in person.")
    if callback.not_the_recovered_factor:
        text += " Never the device or number being recovered."
    return text + " Never a number or address from the request; never an AI agent."


def _obligation_params(ob: Obligation) -> str:
    parts = []
    for key, value in ob.model_dump(mode="json", exclude_none=True).items():
        if key == "code":
            continue
        shown = ", ".join(map(printable, value)) if isinstance(value, list) else printable(value)
        parts.append(f"{printable(key)}={shown}")
    return "; ".join(parts)


def render_text(decision: Decision) -> str:
    """A readable summary of ``decision`` for a person.

    Args:
        decision: the decision to render.

    Returns:
        Plain text: level and verdict, playbook, requirements, every reason
        (level, code, message, refs), every obligation with its parameters,
        the constraints on the approver and the callback, and the provenance
        (engine, degraded, policy revision, decision id, input digest).
    """
    verdict = "allowed" if decision.allowed else "denied"
    lines = [
        f"Decision: {decision.level.value.upper()} ({verdict})",
        f"Playbook: {printable(decision.playbook)}",
        "Requirements: " + (", ".join(map(printable, decision.requirements)) or "none"),
        "Reasons:",
    ]
    for r in decision.reasons:
        lines.append(reason_line(r))
        if r.refs:
            lines.append(f"      refs: {', '.join(map(printable, r.refs))}")
    lines.append("Obligations:" if decision.obligations else "Obligations: none")
    for ob in decision.obligations:
        params = _obligation_params(ob)
        lines.append(f"  - {printable(ob.code)}" + (f" ({params})" if params else "") + f": {describe_obligation(ob)}")
    constraints = decision.constraints
    parts = [] if constraints is None else [
        (name, text) for name, text in (
            ("approver", None if constraints.approver is None else describe_approver(constraints.approver)),
            ("callback", None if constraints.callback is None else describe_callback(constraints.callback)),
        ) if text is not None
    ]
    lines.append("Constraints:" if parts else "Constraints: none")
    lines += [f"  - {name}: {text}" for name, text in parts]
    # Degraded decisions are flagged loudly: a fallback engine answered.
    degraded = "no"
    if decision.degraded:
        degraded = ("yes (no engine could decide: the fail-closed answer)" if decision.engine == NO_ENGINE
                    else "yes (a fallback answered; the preferred engine failed)")
    lines += [
        f"Engine: {printable(decision.engine)} (degraded: {degraded})",
        f"Policy revision: {printable(decision.policy_revision)}",
        f"Decision id: {printable(decision.decision_id)}",
        f"Input digest: {printable(decision.input_digest)}",
    ]
    return "\n".join(lines)


def reason_line(r: Reason) -> str:
    return f"  - [{r.level.value}] {printable(r.code)}: {printable(r.message)}"

