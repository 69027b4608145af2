"""``helpdesk-policy report``: the compliance report over the ledger or decision-log files.

::

    helpdesk-policy report --ledger sqlite:///ledger.db --format html -o report.html
    helpdesk-policy report --jsonl decisions.jsonl decisions.jsonl.1 --format json

Exit status: 0 the report was written, 2 the ledger or a file cannot be
opened or read (bad URL, missing file), a bad ``--now`` or bad usage, 3 a
missing extra or an unreachable database.
"""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import LedgerError
from ..ledger.report import ComplianceReport, render_text, report_from_jsonl, report_from_ledger
from ..ledger.report_html import render_html
from .audit import EXIT_INVALID, EXIT_OK, EXIT_UNAVAILABLE, opened_ledger, parse_now
from .errors import CliError

__all__ = ["report", "EXIT_OK", "EXIT_INVALID", "EXIT_UNAVAILABLE"]


def _render(report_: ComplianceReport, fmt: str) -> str:
    if fmt == "json":
        return report_.to_json() + "\n"
    if fmt == "html":
        return render_html(report_)
    return render_text(report_)


@click.command("report")
@click.option("--ledger", "url", default=None, envvar="HELPDESK_POLICY_LEDGER",
              help="The ledger: sqlite:///path/to/ledger.db or postgresql://user@host/db[?schema=name] "
                   "(env HELPDESK_POLICY_LEDGER).")
@click.option("--jsonl", "jsonl", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="A decision-log file (JsonlSink); repeat it, or list more files after it, rotated ones too.")
@click.argument("more_files", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["text", "json", "html"]), default="text", show_default=True,
              help="text: aligned tables; json: every number; html: one self-contained page with charts.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True, path_type=Path), default=None,
              help="Write the report to this file (default: standard output).")
@click.option("--now", "now_text", default=None,
              help="The time deadlines and expiries are judged at (ISO 8601 with a zone; default: now).")
@click.pass_context
def report(ctx: click.Context, url: str | None, jsonl: tuple[Path, ...], more_files: tuple[Path, ...], fmt: str,
           output: Path | None, now_text: str | None) -> None:
    """Decisions by level, first-contact resolution, compliance, exceptions, degraded decisions,
    overdue obligations and verification failures, per action, channel, target type and team.

    Read from the ledger (--ledger) or from decision-log files (--jsonl FILE [FILE...], decision
    metrics only). Exit status: 0 written, 2 cannot read the source or bad usage, 3 a missing
    extra or an unreachable database.
    """
    files = (*jsonl, *more_files)
    if more_files and not jsonl:
        raise CliError(f"unexpected argument(s) {', '.join(map(str, more_files))}: decision-log files follow --jsonl",
                       EXIT_INVALID)
    url_given = ctx.get_parameter_source("url") is click.core.ParameterSource.COMMANDLINE
    if files and url_given:
        raise CliError("give either --ledger or --jsonl, not both", EXIT_INVALID)
    if not files and not url:
        raise CliError("say what to report on: --ledger URL (or env HELPDESK_POLICY_LEDGER) or --jsonl FILE...",
                       EXIT_INVALID)
    now = parse_now(now_text)
    if files:
        try:
            result = report_from_jsonl(files, now=now)
        except LedgerError as exc:
            raise CliError(str(exc), EXIT_INVALID) from None
    else:
        assert url is not None
        with opened_ledger(url) as store:
            result = report_from_ledger(store, now=now)
    text = _render(result, fmt)
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot write {output}: {exc.strerror or exc}", EXIT_INVALID) from None
