"""``helpdesk-policy obligations due|done``: what is due or overdue; record one as done.

``due`` exit status: 0 the list was printed (overdue items are listed, not an
error), 2 the ledger cannot be opened or read (bad URL, unreadable file) or
bad usage, 3 a missing extra or an unreachable database.

``done`` exit status: 0 recorded, 1 refused (no such open item, already done,
or a review marked done by a service or an AI agent), 2 invalid (bad usage,
a bad ``--at``, a ``--by`` that looks like a credential, a ledger that cannot
be opened), 3 a missing extra or an unreachable database.
"""

from __future__ import annotations

import json

import click

from ..ledger.base import format_timestamp
from ..ledger.obligations import ObligationError, ObligationTracker
from .audit import EXIT_INVALID, EXIT_OK, EXIT_UNAVAILABLE, ledger_option, opened_ledger, parse_now
from .errors import CliError

__all__ = ["obligations", "EXIT_OK", "EXIT_REFUSED", "EXIT_INVALID", "EXIT_UNAVAILABLE"]

#: ``obligations done``: the item cannot be marked done (unknown, already done, a review by a non-person).
EXIT_REFUSED = 1


@click.group("obligations")
def obligations() -> None:
    """Obligations of decisions, tracked in the ledger to the end."""


@obligations.command("due")
@ledger_option
@click.option("--within-hours", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Also list what falls due within this many hours.")
@click.option("--json", "as_json", is_flag=True, help="Print the items as JSON.")
@click.option("--now", "now_text", default=None, help="The time to judge by (ISO 8601 with a zone; default: now).")
def due_command(url: str, within_hours: float, as_json: bool, now_text: str | None) -> None:
    """List the obligations not done whose deadline has passed (overdue) or falls within --within-hours.

    Exit status: 0 listed (overdue items too), 2 cannot open the ledger,
    3 a missing extra or an unreachable database.
    """
    now = parse_now(now_text)
    with opened_ledger(url) as store:
        items = ObligationTracker(store).due(now, within_hours=within_hours)
    if as_json:
        click.echo(json.dumps({
            "now": format_timestamp(now), "within_hours": within_hours,
            "overdue": sum(i.status == "overdue" for i in items),
            "items": [i.to_dict() for i in items],
        }, indent=2, ensure_ascii=False))
        return
    if not items:
        click.echo("nothing due")
        return
    for item in items:
        click.echo(f"{item.status.upper():<8} {format_timestamp(item.due_at)}  {item.chain}  {item.code}"
                   f"  (decision {item.decision_id})")
    overdue = sum(i.status == "overdue" for i in items)
    click.echo(f"{len(items)} due, {overdue} overdue")


@obligations.command("done")
@ledger_option
@click.argument("decision_id")
@click.argument("code")
@click.option("--by", "by", required=True, help="Who carried the obligation out (an id, never a secret).")
@click.option("--by-type", "by_type", type=click.Choice(["human", "service", "ai_agent"]), default="human",
              show_default=True, help="A person, a service (automation) or an AI agent. A review needs a person.")
@click.option("--at", "at_text", default=None, help="When it was done (ISO 8601 with a zone; default: now).")
def done_command(url: str, decision_id: str, code: str, by: str, by_type: str, at_text: str | None) -> None:
    """Record that obligation CODE of decision DECISION_ID was carried out, by whom and when.

    A review (post_incident_review, any *_review) must be done by a person:
    --by-type service or ai_agent is refused.

    Exit status: 0 recorded, 1 refused (no such open item, already done, a
    review by a service or an AI agent), 2 invalid, 3 a missing extra or an
    unreachable database.
    """
    at = parse_now(at_text, "--at")
    with opened_ledger(url) as store:
        try:
            item = ObligationTracker(store).mark_done(decision_id, code, by=by, at=at, by_type=by_type)  # type: ignore[arg-type]
        except ObligationError as exc:
            raise CliError(str(exc), EXIT_REFUSED) from None
        except ValueError as exc:
            raise CliError(str(exc), EXIT_INVALID) from None
    late = "  LATE (due " + format_timestamp(item.due_at) + ")" if item.late else ""
    click.echo(f"DONE     {format_timestamp(item.done_at)}  {item.chain}  {item.code}  by {item.done_by} "  # type: ignore[arg-type]
               f"({item.done_by_type})  (decision {item.decision_id}){late}")
