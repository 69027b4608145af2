"""``helpdesk-policy compile [POLICY_DIR]``: what of a policy compiles to Python, and what is refused.

``engine="auto"`` runs an edited policy compiled to Python when the compiler
translates every construct of it, and on the interpreter (rego-cpp)
otherwise. This command shows which it will be, before a deployment does:
each rule that compiles, and each construct that is refused, with its file
and line. ``--emit FILE`` writes the generated Python (``-``: stdout) for
review.

Exit codes: 0 the whole policy compiles; 1 something is refused (the policy
still runs, on the interpreter); 2 usage error (a missing directory, a syntax
error, a bad config); 3 the compiler's parser (lark, the ``rego`` extra) is
not installed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from .decide import EXIT_ENGINE, EXIT_INVALID, EXIT_OK
from .errors import CliError

__all__ = ["compile_command", "EXIT_REFUSED"]

#: Something in the policy is refused by the compiler.
EXIT_REFUSED = 1


@click.command("compile")
@click.argument("policy_dir", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--emit", type=click.Path(dir_okay=False, allow_dash=True), default=None, metavar="FILE",
              help="Write the generated Python to FILE ('-': stdout); only when the whole policy compiles.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("-v", "--verbose", is_flag=True, help="Text: list every rule, not only what is refused.")
def compile_command(policy_dir: Path | None, emit: str | None, fmt: str, verbose: bool) -> None:
    """Show what of the policy in POLICY_DIR (default: the stock policies) compiles to Python.

    Lists every rule with its file and line, and every construct the compiler
    refuses (it then runs on the interpreter, never as a partial translation).
    Exit 0 when all of it compiles, 1 when something is refused.
    """
    from ..compiler import analyze_policy_set, compile_policy_set
    from ..errors import EngineUnavailableError, HelpdeskPolicyError
    from ..policyset import PolicySet

    try:
        policy_set = PolicySet.load(policy_dir)
        report = analyze_policy_set(policy_set)
        source = compile_policy_set(policy_set).source if emit is not None and report.compiles else None
    except EngineUnavailableError as exc:
        raise CliError(str(exc), EXIT_ENGINE) from None
    except HelpdeskPolicyError as exc:
        raise CliError(str(exc), EXIT_INVALID) from None
    from ..ci.runner import is_stock_rego

    doc = {**_report_dict(report, policy_set.directory), "stock_rules": is_stock_rego(policy_set)}
    if fmt == "json":
        click.echo(json.dumps(doc, indent=2))
    else:
        click.echo(_render_text(doc, verbose=verbose))
    if emit is not None:
        if source is None:
            click.echo("Nothing emitted: the policy does not compile whole.", err=True)
        elif emit == "-":
            click.echo(source)
        else:
            Path(emit).write_text(source, encoding="utf-8")
            click.echo(f"Generated Python written to {emit} ({len(source.splitlines())} lines).", err=fmt == "json")
    click.get_current_context().exit(EXIT_OK if report.compiles else EXIT_REFUSED)


def _report_dict(report: Any, directory: Path) -> dict[str, Any]:
    return {
        "policy_dir": str(directory),
        "compiles": bool(report.compiles),
        "rules": [{"rule": r.name, "file": r.file, "line": r.line, "compiles": r.compiles} for r in report.rules],
        "refusals": [{"file": r.file, "line": r.line, "construct": r.construct, "detail": r.detail}
                     for r in report.refusals],
    }


def _render_text(doc: dict[str, Any], *, verbose: bool = False) -> str:
    rules, refusals = doc["rules"], doc["refusals"]
    ok = sum(r["compiles"] for r in rules)
    out = [f"Compiling the Rego in {doc['policy_dir']} to Python: {ok} of {len(rules)} rules compile, "
           f"{len(refusals)} refused construct(s)"]
    for r in refusals:
        out.append(f"  REFUSED {r['file']}:{r['line']}: {r['construct']}: {r['detail']}")
    for r in rules:
        if verbose or not r["compiles"]:
            out.append(f"  {'compiles' if r['compiles'] else 'REFUSED '} {r['rule']} ({r['file']}:{r['line']})")
    if doc["compiles"] and doc["stock_rules"]:
        out.append('The whole policy compiles. These are the stock rules: engine="auto" runs the hand-written '
                   'native mirror (faster still); engine="compiled" runs them compiled.')
    elif doc["compiles"]:
        out.append('The whole policy compiles: engine="auto" runs it compiled (engine "compiled"), with the '
                   "interpreter behind it.")
    else:
        out.append('Refused: engine="auto" runs this policy on the interpreter (engine "rego"), never a partial '
                   "translation. Rewrite the refused constructs to run it compiled.")
    return "\n".join(out)
