"""``helpdesk-policy obligations due``: what is due or overdue, for a scheduler or a daily report.

Exit status: 0 the list was printed (overdue items are listed, not an error),
2 the ledger cannot be opened or read (bad URL, unreadable file) or bad
usage, 3 a missing extra or an unreachable database.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import click

from ..ledger.base import format_timestamp
from ..ledger.obligations import ObligationTracker
from .audit import EXIT_INVALID, EXIT_OK, EXIT_UNAVAILABLE, ledger_option, opened_ledger
from .errors import CliError

__all__ = ["obligations", "EXIT_OK", "EXIT_INVALID", "EXIT_UNAVAILABLE"]


def _parse_now(value: str | None) -> datetime:
    if value is None:
        return datetime.now(timezone.utc)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise CliError(f"--now {value!r} is not an ISO 8601 time such as 2026-11-24T09:00:00Z", EXIT_INVALID) from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise CliError(f"--now {value!r} needs a time zone (Z or +hh:mm)", EXIT_INVALID)
    return parsed


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
    now = _parse_now(now_text)
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
