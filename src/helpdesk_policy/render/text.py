"""The summary of a decision for a person: level, reasons, obligations, provenance.

Obligations read as imperative sentences, a custom policy's with every parameter:

>>> from helpdesk_policy.models import Obligation
>>> from helpdesk_policy.render.text import describe_obligation
>>> describe_obligation(Obligation(code="revoke_previous_credential", within_hours=24))
'Revoke the previous credential within 24 hours.'
>>> describe_obligation(Obligation(code="our_own_check", fields=["ticket", "approver"]))
'Fulfil obligation our_own_check (fields=ticket, approver).'
"""

from __future__ import annotations

from ..models import NO_ENGINE, Decision, Obligation, Reason
from .sanitize import printable

__all__ = ["render_text", "describe_obligation", "reason_line"]


def describe_obligation(ob: Obligation) -> str:
    """One imperative sentence for an obligation, parameters included.

    Unknown obligation codes (a custom policy's) are rendered generically with
    every parameter, so nothing an engine returns is silently dropped.
    """
    code = ob.code
    if code == "record_evidence":
        return "Record evidence: " + ", ".join(map(printable, ob.fields or [])) + "."
    if code == "revoke_previous_credential":
        return f"Revoke the previous credential within {ob.within_hours} hours."
    if code == "notify_identity_owner":
        return (
            "Notify the identity holder (for a non-human identity, its owner of record) through a contact of "
            "record, not the channel the request came from."
        )
    if code == "terminate_sessions":
        return "Terminate the identity's existing sessions and refresh tokens."
    if code == "rotate_stale_secret":
        return "Rotate the identity's stale secret (older than the maximum age, or of unknown age)."
    if code == "move_to_secrets_manager":
        return (
            "Store the new credential in the secrets manager; never put it in code, the ticket, chat or email."
        )
    if code == "time_bound_access":
        return f"Make the access time-bound: it must expire within {ob.within_hours} hours."
    if code == "post_incident_review":
        return "Open a post-incident review of this emergency request."
    params = _obligation_params(ob)
    return f"Fulfil obligation {printable(code)}" + (f" ({params})." if params else ".")


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
        (level, code, message, refs), every obligation with its parameters, and
        the provenance (engine, degraded, policy revision, decision id, input digest).
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

