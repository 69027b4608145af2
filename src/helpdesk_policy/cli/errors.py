"""The one error type every ``helpdesk-policy`` command reports with.

Each command module (:mod:`~helpdesk_policy.cli.decide`, :mod:`~helpdesk_policy.cli.ci`,
:mod:`~helpdesk_policy.cli.bundle`) raises
:class:`CliError` with its own exit code, so every command prints its errors
the same way: ``error: …`` on stderr.
"""

from __future__ import annotations

from typing import IO, Any

import click

__all__ = ["CliError"]


class CliError(click.ClickException):
    """An error the CLI reports on stderr as ``error: …`` with a specific exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        # ClickException declares exit_code on the class; each of ours carries its own.
        self.exit_code = exit_code  # type: ignore[misc]

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)
