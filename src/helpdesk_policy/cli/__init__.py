"""The ``helpdesk-policy`` command line (also ``python -m helpdesk_policy``).

Commands, and the module that defines them:

* ``decide``, ``explain``, ``schema`` — :mod:`helpdesk_policy.cli.decide`:
  decisions as JSON or text, the steps for a helpdesk agent, JSON Schemas;
* ``test``, ``diff``, ``init`` — :mod:`helpdesk_policy.cli.ci`: CI for policy
  changes (:mod:`helpdesk_policy.ci` does the work);
* ``bundle build``, ``bundle verify`` — :mod:`helpdesk_policy.cli.bundle`:
  OPA bundles (:mod:`helpdesk_policy.bundle` does the work);
* ``audit verify`` — :mod:`helpdesk_policy.cli.audit`: check the ledger's
  hash chains (:mod:`helpdesk_policy.ledger` does the work);
* ``obligations due|done`` — :mod:`helpdesk_policy.cli.obligations`: obligations
  due or overdue, and recording one as done (:mod:`helpdesk_policy.ledger.obligations`
  does the work);
* ``exceptions grant|list|show|revoke`` — :mod:`helpdesk_policy.cli.exceptions`:
  policy exceptions in the ledger (:mod:`helpdesk_policy.ledger.exceptions`);
* ``report`` — :mod:`helpdesk_policy.cli.report`: the compliance report over the
  ledger or a JSON-lines decision log (:mod:`helpdesk_policy.ledger.report`);
* ``serve`` — :mod:`helpdesk_policy.cli.serve`: the HTTP decision service
  (:mod:`helpdesk_policy.service`), wired to the guard and the ticketing webhooks.

Exit codes of the deciding commands (``EXIT_*`` here): 0 decided (a deny is a
decision), 1 ``--fail-on-deny`` saw a deny, 2 invalid input or usage, 3 an
engine cannot load. Each command module documents its own; every command
reports errors the same way (:class:`~helpdesk_policy.cli.errors.CliError`).

``main`` is a plain :class:`click.Group` and the console script's entry point
(``helpdesk_policy.cli:main``): other modules' commands are attached with
``main.add_command(command)``.
"""

from __future__ import annotations

import logging
import sys

import click

from .. import __version__
from .audit import audit
from .bundle import bundle
from .ci import diff_command, init_command, test_command
from .compile import compile_command
from .decide import EXIT_DENY, EXIT_ENGINE, EXIT_INVALID, EXIT_OK, decide, explain, schema
from .obligations import obligations
from .exceptions import exceptions
from .report import report
from .serve import serve

__all__ = ["main", "EXIT_OK", "EXIT_DENY", "EXIT_INVALID", "EXIT_ENGINE"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="helpdesk-policy")
@click.option("-v", "--verbose", count=True,
              help="More log detail on stderr: -v info, -vv debug (warnings such as engine fallbacks always show).")
@click.pass_context
def main(ctx: click.Context, verbose: int) -> None:
    """Decide how much identity assurance a helpdesk request needs, and why.

    Exit codes: 0 decided (a deny is a decision), 1 --fail-on-deny saw a deny,
    2 invalid input, 3 engine unavailable.
    """
    _log_to_stderr(ctx, logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)


def _log_to_stderr(ctx: click.Context, level: int) -> None:
    """Show the library's log records on stderr for the duration of this command.

    The CLI is an application, so it may configure logging; the library never
    does. Only the ``helpdesk_policy`` logger is touched, and it is restored when
    the command ends, so calling ``main`` from another program (or a test) leaves
    that program's logging as it was.
    """
    logger = logging.getLogger("helpdesk_policy")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    saved_level, saved_propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(level)
    # Not propagated: a host application's root handlers would print every record twice.
    logger.propagate = False

    def restore() -> None:
        logger.removeHandler(handler)
        logger.setLevel(saved_level)
        logger.propagate = saved_propagate

    ctx.call_on_close(restore)


main.add_command(decide)
main.add_command(explain)
main.add_command(schema)
main.add_command(bundle)
main.add_command(test_command)
main.add_command(diff_command)
main.add_command(init_command)
main.add_command(compile_command)
main.add_command(audit)
main.add_command(obligations)
main.add_command(exceptions)
main.add_command(report)
main.add_command(serve)
