"""``helpdesk-policy exceptions grant|list|show|revoke``: policy exceptions in the ledger.

A policy exception is an approved, time-bound override of the decision for
one identity and action (:mod:`helpdesk_policy.policy_exceptions`); the
ledger keeps it (:mod:`helpdesk_policy.ledger.exceptions`). ``list`` shows
the active ones; ``list --all`` every one with its state, expired ones
flagged ``EXPIRED`` so that none disappears silently.

Exit status: 0 done (expired exceptions are listed, not an error), 2 invalid
input (every bad field is named: a separation-of-duty breach, a window over
the cap, a reused id, an unknown or already revoked exception) or a ledger
that cannot be opened, 3 a missing extra or an unreachable database.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import click

from ..config import load_config
from ..ledger.base import format_timestamp
from ..ledger.exceptions import ExceptionError, ExceptionItem, ExceptionRegistry
from .audit import EXIT_INVALID, EXIT_OK, EXIT_UNAVAILABLE, ledger_option, opened_ledger, parse_now, parse_time
from .errors import CliError

__all__ = ["exceptions", "EXIT_OK", "EXIT_INVALID", "EXIT_UNAVAILABLE"]

#: The command-line option of each exception field, to name it in errors.
_OPTIONS = {
    "id": "--id", "target_id": "--target", "action": "--action", "channels": "--channel", "level": "--level",
    "requested_by": "--requested-by", "reason": "--reason", "reference": "--reference",
    "approved_by": "--approved-by", "approver_type": "--approver-type", "approved_at": "--approved-at",
    "starts_at": "--starts", "expires_at": "--expires/--hours",
}


def _refused(exc: ExceptionError, options: dict[str, str]) -> CliError:
    """Exit 2 naming each bad field, and the option that set it."""
    first = str(exc).split("\n", 1)[0]
    lines = []
    for e in exc.errors:
        field = e.path.split(".")[0]
        option = f" ({options[field]})" if field in options else ""
        lines.append(f"\n  - {e.path}{option}: {e.message}")
    return CliError(first + "".join(lines), EXIT_INVALID)


def _line(item: ExceptionItem) -> str:
    exc = item.exception
    channels = ",".join(c.value for c in exc.channels) if exc.channels else "any channel"
    flag = "  OVER-CAP" if item.exceeds_max_hours and item.status == "active" else ""
    return (f"{item.status.upper():<11} {exc.id}  {exc.target_id}  {exc.action.value} ({channels}) -> {exc.level}"
            f"  until {format_timestamp(exc.expires_at)}  ({exc.reason}, {exc.reference}){flag}")


@click.group("exceptions")
def exceptions() -> None:
    """Policy exceptions: approved, time-bound overrides of a decision, kept in the ledger."""


@exceptions.command("grant")
@ledger_option
@click.option("--id", "exception_id", required=True, help="The exception's id (e.g. EXC-2026-0042); never reused.")
@click.option("--target", required=True, help="The identity whose decisions it changes.")
@click.option("--action", required=True, help="The one action it covers (e.g. mfa_reset).")
@click.option("--channel", "channels", multiple=True, help="A channel it covers (repeat; default: any channel).")
@click.option("--level", required=True, help="What the decision becomes: step_up or manager_approval.")
@click.option("--requested-by", required=True, help="Who asked for it.")
@click.option("--reason", required=True, help="Why, as a code (e.g. travel_no_callback_contact): no free text.")
@click.option("--reference", required=True, help="The risk-acceptance or change ticket (e.g. RISK-2026-117).")
@click.option("--approved-by", required=True, help="Who approved: never the requester nor the target.")
@click.option("--approver-type", default="human", show_default=True,
              help="human (an AI agent never satisfies an approval).")
@click.option("--approved-at", default=None, help="When it was approved (ISO 8601 with a zone; default: now).")
@click.option("--starts", default=None, help="When it starts (ISO 8601 with a zone; default: --approved-at).")
@click.option("--expires", default=None, help="When it expires (ISO 8601 with a zone).")
@click.option("--hours", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Or: how long it lasts from its start, in hours.")
@click.option("--max-hours", type=click.IntRange(1, 24 * 30), default=None,
              help="The cap on its duration (default: exception_max_hours of the stock config).")
@click.option("--json", "as_json", is_flag=True, help="Print the exception as JSON.")
def grant_command(url: str, exception_id: str, target: str, action: str, channels: tuple[str, ...], level: str,
                  requested_by: str, reason: str, reference: str, approved_by: str, approver_type: str,
                  approved_at: str | None, starts: str | None, expires: str | None, hours: float | None,
                  max_hours: int | None, as_json: bool) -> None:
    """Record an approved, time-bound exception for one identity and action.

    Exit status: 0 granted, 2 refused (each bad field named) or cannot open
    the ledger, 3 a missing extra or an unreachable database.
    """
    if (expires is None) == (hours is None):
        raise CliError("give exactly one of --expires and --hours", EXIT_INVALID)
    approved = parse_time(approved_at, "--approved-at") or datetime.now(timezone.utc)
    start = parse_time(starts, "--starts") or approved
    end = parse_time(expires, "--expires") or start + timedelta(hours=hours or 0)
    doc: dict[str, Any] = {
        "id": exception_id, "target_id": target, "action": action, "channels": list(channels) or None,
        "level": level, "requested_by": requested_by, "reason": reason, "reference": reference,
        "approved_by": approved_by, "approver_type": approver_type, "approved_at": approved,
        "starts_at": start, "expires_at": end,
    }
    cap = max_hours if max_hours is not None else load_config().exception_max_hours
    with opened_ledger(url) as store:
        try:
            granted = ExceptionRegistry(store, max_hours=cap).grant(doc)
        except ExceptionError as exc:
            raise _refused(exc, _OPTIONS) from None
        item = ExceptionRegistry(store, max_hours=cap).get(granted.id)
    assert item is not None  # just granted
    if as_json:
        click.echo(json.dumps(item.to_dict(), indent=2, ensure_ascii=False))
    else:
        click.echo(f"granted {granted.id}: {granted.action.value} for {granted.target_id} at {granted.level} "
                   f"until {format_timestamp(granted.expires_at)}")


@exceptions.command("list")
@ledger_option
@click.option("--all", "show_all", is_flag=True, help="Every exception with its state (expired, revoked, not started).")
@click.option("--json", "as_json", is_flag=True, help="Print the exceptions as JSON.")
@click.option("--now", "now_text", default=None, help="The time to judge by (ISO 8601 with a zone; default: now).")
def list_command(url: str, show_all: bool, as_json: bool, now_text: str | None) -> None:
    """List the active exceptions; with --all every one, expired ones flagged EXPIRED.

    Exit status: 0 listed (expired ones too), 2 cannot open the ledger, 3 a
    missing extra or an unreachable database.
    """
    now = parse_now(now_text)
    with opened_ledger(url) as store:
        items = ExceptionRegistry(store).list(now, include_inactive=show_all)
    expired = sum(i.status == "expired" for i in items)
    if as_json:
        click.echo(json.dumps({
            "now": format_timestamp(now), "all": show_all, "expired": expired,
            "exceptions": [i.to_dict() for i in items],
        }, indent=2, ensure_ascii=False))
        return
    if not items:
        click.echo("no exceptions" if show_all else "no active exceptions")
        return
    for item in items:
        click.echo(_line(item))
    click.echo(f"{len(items)} listed, {expired} expired")


@exceptions.command("show")
@ledger_option
@click.argument("exception_id")
@click.option("--json", "as_json", is_flag=True, help="Print the exception as JSON.")
@click.option("--now", "now_text", default=None, help="The time to judge by (ISO 8601 with a zone; default: now).")
def show_command(url: str, exception_id: str, as_json: bool, now_text: str | None) -> None:
    """Show one exception: its scope, who asked and approved, its window, its state.

    Exit status: 0 shown, 2 no such exception or cannot open the ledger, 3 a
    missing extra or an unreachable database.
    """
    now = parse_now(now_text)
    with opened_ledger(url) as store:
        item = ExceptionRegistry(store).get(exception_id, now)
    if item is None:
        raise CliError(f"no policy exception {exception_id!r} in the ledger", EXIT_INVALID)
    doc = item.to_dict()
    if as_json:
        click.echo(json.dumps(doc, indent=2, ensure_ascii=False))
        return
    status = doc.pop("status")
    click.echo(f"{exception_id}: {status.upper()}")
    for key, value in doc.items():
        if key == "id" or value is None:
            continue
        shown = ", ".join(value) if isinstance(value, list) else value
        click.echo(f"  {key}: {shown}")


@exceptions.command("revoke")
@ledger_option
@click.argument("exception_id")
@click.option("--by", "revoked_by", required=True, help="Who revokes it.")
@click.option("--reason", required=True, help="Why, as a code (e.g. traveller_back).")
@click.option("--json", "as_json", is_flag=True, help="Print the revoked exception as JSON.")
def revoke_command(url: str, exception_id: str, revoked_by: str, reason: str, as_json: bool) -> None:
    """Revoke an exception before its expiry: no decision applies it again.

    Exit status: 0 revoked, 2 unknown or already revoked (or a bad --by or
    --reason) or cannot open the ledger, 3 a missing extra or an unreachable
    database.
    """
    with opened_ledger(url) as store:
        registry = ExceptionRegistry(store)
        try:
            revoked = registry.revoke(exception_id, by=revoked_by, reason=reason)
        except ExceptionError as exc:
            raise _refused(exc, {"id": "EXCEPTION_ID", "by": "--by", "reason": "--reason"}) from None
        item = registry.get(exception_id)
    if as_json and item is not None:
        click.echo(json.dumps(item.to_dict(), indent=2, ensure_ascii=False))
    else:
        click.echo(f"revoked {revoked.id} at {format_timestamp(revoked.revoked_at)} ({reason})")
