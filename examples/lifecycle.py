"""A ticket's life, end to end: decide -> collect evidence -> verify -> close -> obligations -> report.

Five tickets go through one ledger:

* INC-5101: a network admin's MFA reset by phone. The policy asks for a callback; the
  helpdesk proves identity by supervised remote proofing, the manager of record approves,
  the callback goes to a contact of record, the ticket closes compliantly, the
  obligations are carried out.
* INC-5102: a password reset by the holder in the portal, signed in with MFA:
  self-service, closed at first contact.
* INC-5103: a manager changes a report's role by phone. The first close is refused
  (no approval recorded: a verification failure), the ticket is escalated, approved and closed.
* INC-5104: a travelling VIP's MFA reset by phone, with no contact of record usable for a
  callback. Security grants a time-bound exception (manager approval in place of the
  callback); the decision shows it, and the ticket closes with the manager's approval.
* INC-5105: the ticketing system closes an MFA reset requested in chat without the evidence
  (recorded as non-compliant), and the user reopens it; its obligations are left undone.

Then the compliance report, judged 30 hours later (so undone obligations are overdue):
text on the terminal, the self-contained HTML page in a file.

    python examples/lifecycle.py                                   # SQLite, no server
    python examples/lifecycle.py --ledger 'postgresql://postgres@127.0.0.1:5432/test?schema=helpdesk_demo'

Use an empty ledger (a new file, or a new schema): the report counts everything in it.
"""

from __future__ import annotations

import argparse
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

from helpdesk_policy import HelpdeskPolicy
from helpdesk_policy.evidence import Approval, Callback, Evidence, IdentityProof, Outcome
from helpdesk_policy.ledger import (
    ExceptionRegistry,
    LedgerSink,
    NotClosableError,
    ObligationTracker,
    TicketLifecycle,
    open_ledger,
    render_html,
    render_text,
    report_from_ledger,
)

HUMAN = {"type": "human", "on_behalf_of": None, "runs_as": None}


def person(pid: str, *, privileged: bool = False, tier: int = 0, vip: bool = False, manager: str | None = None,
           contact_age_days: int | None = 900) -> dict[str, object]:
    """A person as the directory knows them (facts of record, not the caller's word)."""
    return {"id": pid, "type": "human", "privileged": privileged, "privilege_tier": tier, "vip": vip,
            "status": "active", "manager": manager, "contact_age_days": contact_age_days}


def request(ticket: str, action: str, channel: str, actor: dict[str, object], target: dict[str, object],
            **context: object) -> dict[str, object]:
    return {
        "request": {"id": ticket, "action": action, "channel": channel},
        "actor": actor,
        "target": target,
        # From the identity provider's history: nothing changed on the account lately,
        # and the factor being replaced is lost (the realistic MFA-reset case).
        "context": {"recent_credential_change_hours": 2000, "enrolled_factor_available": False, **context},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ledger", help="the ledger URL (default: a new SQLite file in a temporary directory)")
    parser.add_argument("--html", help="where to write the HTML report (default: beside a SQLite ledger)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="helpdesk-lifecycle-"))
    url = args.ledger or f"sqlite:///{workdir / 'ledger.db'}"
    html_path = Path(args.html) if args.html else workdir / "report.html"

    store = open_ledger(url)
    now = datetime.now(timezone.utc)
    tracker = ObligationTracker(store)
    exceptions = ExceptionRegistry(store)
    lifecycle = TicketLifecycle(store)
    # Every decision is logged into its ticket's chain, and its obligations are opened
    # as items there, from a background thread: the ledger never holds a decision up.
    sink = LedgerSink(store, chain=LedgerSink.BY_TICKET, track_obligations=tracker)
    policy = HelpdeskPolicy(log_sink=sink, log_labels={"team": "servicedesk-emea"}, exceptions=exceptions)

    def proof(by: str = "hd-311") -> IdentityProof:
        return IdentityProof(method="supervised_remote_proofing", verified_by=by, verified_by_type="human", at=now)

    def evidence(decision, requester: str, **parts) -> Evidence:  # noqa: ANN001 - an example
        return Evidence(decision_id=decision.decision_id, input_digest=decision.input_digest,
                        requester_id=requester, outcome=Outcome(status="completed", at=now), recorded_at=now,
                        **parts)

    # INC-5101: a network admin's MFA reset by phone -> callback.
    admin = person("u-20417", privileged=True, tier=2, manager="u-30112")
    d1 = policy.decide(request("INC-5101", "mfa_reset", "phone",
                               {"id": "u-20417", **HUMAN, "relationship": "self", "authenticated": False,
                                "auth_strength": "none"}, admin))
    print(f"INC-5101 {d1.level.value}: {', '.join(d1.requirements)}")
    e1 = evidence(d1, "u-20417", identity_proof=proof(),
                  approval=Approval(approver_id="u-30112", approver_type="human",
                                    relationship_of_record="manager", at=now),
                  callback=Callback(contact="+44 20 7946 0018", contact_source="directory", contact_age_days=900,
                                    answered_by="u-20417", answered_by_type="human", at=now))
    check = lifecycle.close(d1, e1, ticket="INC-5101", by="hd-311")
    print(f"INC-5101 closed: closable={check.closable}")

    # INC-5102: the holder resets their own password in the portal, signed in with MFA.
    d2 = policy.decide(request("INC-5102", "password_reset", "self_service_portal",
                               {"id": "u-41877", **HUMAN, "relationship": "self", "authenticated": True,
                                "auth_strength": "mfa"}, person("u-41877", manager="u-30112")))
    lifecycle.close(d2, evidence(d2, "u-41877", authentication_event="idp-evt-99812"), ticket="INC-5102",
                    by="portal")
    print(f"INC-5102 {d2.level.value}: closed at first contact")

    # INC-5103: a manager asks by phone for a role change of a report -> the close without
    # the approval recorded is refused, the ticket escalated, then closed with it.
    d3 = policy.decide(request("INC-5103", "role_change", "phone",
                               {"id": "u-30112", **HUMAN, "relationship": "manager", "authenticated": True,
                                "auth_strength": "mfa"}, person("u-41877", manager="u-30112"),
                               enrolled_factor_available=True))
    print(f"INC-5103 {d3.level.value}: {', '.join(d3.requirements)}")
    partial = evidence(d3, "u-30112", identity_proof=IdentityProof(
        method="enrolled_factor_push", verified_by="hd-207", verified_by_type="human", at=now))
    try:
        lifecycle.close(d3, partial, ticket="INC-5103", by="hd-207")
    except NotClosableError as refused:
        print(f"INC-5103 close refused: {refused.verification.problems[0].reason}")
    lifecycle.escalate("INC-5103", by="hd-207", to="servicedesk-tier2")
    approved = partial.model_copy(update={"approval": Approval(
        approver_id="u-10001", approver_type="human", relationship_of_record="manager", at=now)})
    print(f"INC-5103 closed after escalation: closable="
          f"{lifecycle.close(d3, approved, ticket='INC-5103', by='hd-512').closable}")

    # INC-5104: a travelling VIP, no usable contact of record for a callback: security grants
    # a 48-hour exception (manager approval instead), approved by someone other than the requester.
    vip = person("u-77001", vip=True, manager="u-10001", contact_age_days=3)
    exceptions.grant({
        "id": f"EXC-{now:%Y%m%d%H%M%S}", "target_id": "u-77001", "action": "mfa_reset", "channels": ["phone"],
        "level": "manager_approval", "requested_by": "hd-311", "reason": "travel_no_callback_contact",
        "reference": "RISK-2026-117", "approved_by": "sec-4410", "approver_type": "human",
        "approved_at": now, "expires_at": now + timedelta(hours=48),
    })
    d4 = policy.decide(request("INC-5104", "mfa_reset", "phone",
                               {"id": "u-77001", **HUMAN, "relationship": "self", "authenticated": False,
                                "auth_strength": "none"}, vip))
    (effect,) = d4.exceptions
    print(f"INC-5104 {d4.level.value}: exception {effect.id} {effect.status} "
          f"({effect.level_before.value} -> {effect.level_after.value})")
    e4 = evidence(d4, "u-77001", identity_proof=proof(),
                  approval=Approval(approver_id="u-10001", approver_type="human",
                                    relationship_of_record="manager", at=now))
    lifecycle.close(d4, e4, ticket="INC-5104", by="hd-311")

    # INC-5105: the ticketing system closed it without evidence; the user reopens it.
    d5 = policy.decide(request("INC-5105", "mfa_reset", "chat",
                               {"id": "u-52210", **HUMAN, "relationship": "self", "authenticated": True,
                                "auth_strength": "password"}, person("u-52210", manager="u-30112")))
    lifecycle.close(d5, evidence(d5, "u-52210"), ticket="INC-5105", by="snow-automation", allow_incomplete=True)
    lifecycle.reopen("INC-5105", by="u-52210", reason="still_locked_out")
    print(f"INC-5105 {d5.level.value}: closed without evidence (non-compliant), reopened")

    sink.close()  # store what is queued
    # The obligations carried out (by a person, or the identity provider's automation),
    # except those of INC-5105, left undone: the report shows them overdue.
    for item in tracker.items():
        if item.chain != "ticket:INC-5105":
            by, by_type = ("idp-automation", "service") if item.code == "terminate_sessions" else ("hd-311", "human")
            tracker.mark_done(item.decision_id, item.code, by=by, by_type=by_type)
    print(f"obligations: {len(tracker.due(now + timedelta(hours=30)))} not done by the report's time")

    report = report_from_ledger(store, now=now + timedelta(hours=30))
    print()
    print(render_text(report))
    html_path.write_text(render_html(report), encoding="utf-8")
    print(f"\nHTML report: {html_path}")
    print(store.verify())
    policy.close()
    store.close()


if __name__ == "__main__":
    main()
