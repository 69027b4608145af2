"""``helpdesk-policy audit verify``: check the ledger's hash chains.

Exit status: 0 every chain intact, 1 a chain is broken (the first bad event
is named), 2 the ledger cannot be opened (bad URL, unreadable file), 3 a
missing extra or an unreachable database.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone

import click

from ..errors import LedgerError, LedgerUnavailableError
from ..ledger import LedgerStore, open_ledger
from .errors import CliError

__all__ = ["audit", "ledger_option", "opened_ledger", "parse_time", "parse_now", "EXIT_OK", "EXIT_BROKEN", "EXIT_INVALID", "EXIT_UNAVAILABLE"]

EXIT_OK = 0
EXIT_BROKEN = 1
EXIT_INVALID = 2
EXIT_UNAVAILABLE = 3

#: ``--ledger URL`` for every command that reads the ledger.
ledger_option = click.option(
    "--ledger", "url", required=True, envvar="HELPDESK_POLICY_LEDGER",
    help="The ledger: sqlite:///path/to/ledger.db or postgresql://user@host/db[?schema=name] "
         "(env HELPDESK_POLICY_LEDGER).")


def parse_time(value: str | None, option: str) -> datetime | None:
    """An ISO 8601 time with a zone given to ``option`` (None when not given); exit 2 otherwise."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise CliError(f"{option} {value!r} is not an ISO 8601 time such as 2026-11-24T09:00:00Z",
                       EXIT_INVALID) from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise CliError(f"{option} {value!r} needs a time zone (Z or +hh:mm)", EXIT_INVALID)
    return parsed


def parse_now(value: str | None, option: str = "--now") -> datetime:
    """:func:`parse_time`, the current time when not given: the time a ledger command judges by."""
    parsed = parse_time(value, option)
    return datetime.now(timezone.utc) if parsed is None else parsed


@contextmanager
def _ledger_errors() -> Iterator[None]:
    try:
        yield
    except LedgerUnavailableError as exc:
        raise CliError(str(exc), EXIT_UNAVAILABLE) from None
    except LedgerError as exc:
        raise CliError(str(exc), EXIT_INVALID) from None


@contextmanager
def opened_ledger(url: str) -> Iterator[LedgerStore]:
    """The ledger at ``url``, closed afterwards; ledger errors, opening or
    reading, become exit 3 (a missing extra, an unreachable database) or 2."""
    with _ledger_errors():
        store = open_ledger(url)
    try:
        with _ledger_errors():
            yield store
    finally:
        store.close()


@click.group("audit")
def audit() -> None:
    """Check the tamper-evident ledger."""


@audit.command("verify")
@ledger_option
@click.option("--chain", default=None, help="Check only this chain (default: every chain).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def verify_command(url: str, chain: str | None, as_json: bool) -> None:
    """Check every event's hash and its link to the one before; name the first bad event.

    Exit status: 0 intact, 1 broken, 2 cannot open the ledger, 3 a missing
    extra or an unreachable database.
    """
    with opened_ledger(url) as store:
        report = store.verify(chain)
    if as_json:
        bad = report.first_bad
        click.echo(json.dumps({
            "ok": report.ok, "chains": report.chains, "events": report.events,
            "first_bad": None if bad is None else {"chain": bad.chain, "seq": bad.seq, "problem": bad.problem},
        }, indent=2))
    else:
        click.echo(str(report))
    if not report.ok:
        raise SystemExit(EXIT_BROKEN)
