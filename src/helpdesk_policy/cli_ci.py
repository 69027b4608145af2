"""CI commands: ``helpdesk-policy test`` and ``helpdesk-policy diff``.

They are plain :class:`click.Command` objects, attached to the main group with
``main.add_command(test_command)`` and ``main.add_command(diff_command)``.

``test [POLICY_DIR]`` exit codes: 0 everything passed; 1 a Rego test, a suite
case or the parity check failed, or a suite file or the policy is broken;
2 usage error; 3 the rego engine (regopy) is not installed.

``diff --base OLD --head NEW`` exit codes: 0 no decision got looser (or
``--allow-loosening``); 1 a decision got looser, or the head policy could not
decide a case; 2 usage error (bad ``--base``/``--head``, unreadable or invalid
cases, a policy that does not compile); 3 the rego engine is not installed.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .cli_errors import CliError

if TYPE_CHECKING:
    from .policies import PolicySet

__all__ = ["EXIT_ENGINE", "EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "diff_command", "test_command"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
#: Same code as ``helpdesk-policy decide`` uses for a missing engine.
EXIT_ENGINE = 3

#: ``helpdesk_policy.regotest.EVALUATORS``, spelled here so that building the
#: command does not import the test runner (a test checks they agree).
REGO_TEST_EVALUATORS = ("regopy", "opa-go")

#: ``diff`` without ``--cases`` or ``--generate`` compares this many generated requests.
DEFAULT_DIFF_GENERATE = 500


@click.command("test")
@click.argument("policy_dir", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Config merged over the stock one instead of POLICY_DIR/config.yaml.")
@click.option("--suite", "suites", multiple=True, type=click.Path(exists=True, path_type=Path),
              help="Extra expectation suite file or directory (repeatable); POLICY_DIR/tests/*.yaml always run.")
@click.option("--generate", type=click.IntRange(min=0), default=200, show_default=True,
              help="Generated requests for the rego/native parity check.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the generated requests.")
@click.option("--evaluator", type=click.Choice(REGO_TEST_EVALUATORS), default="regopy", show_default=True,
              help="Evaluator of the Rego unit tests: regopy (rego-cpp) or opa-go (OPA's Go evaluator, a dev extra).")
@click.option("--skip", "skip", multiple=True, type=click.Choice(["rego-tests", "suites", "parity"]),
              help="Leave a part out (repeatable), e.g. for a quick local loop; it is reported as skipped.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("-q", "--quiet", is_flag=True, help="Text: list failures only, not every passing test.")
def test_command(policy_dir: Path | None, config_file: Path | None, suites: tuple[Path, ...], generate: int,
                 seed: int, evaluator: str, skip: tuple[str, ...], fmt: str, quiet: bool) -> None:
    """Test the policies in POLICY_DIR (default: the stock policies).

    Runs the Rego unit tests (test_* rules in *_test.rego), the expectation
    suites in POLICY_DIR/tests/*.yaml (with the rego engine on POLICY_DIR), and,
    when POLICY_DIR's Rego is the stock Rego, the rego/native parity check on
    generated requests. Exit 1 on any failure.
    """
    from .errors import EngineUnavailableError, InvalidConfigError, PolicyLoadError
    from .policytest import run_policy_tests

    try:
        report = run_policy_tests(policy_dir, config=config_file, suites=suites, generate=generate, seed=seed,
                                  evaluator=evaluator, rego_tests="rego-tests" not in skip,
                                  run_suites="suites" not in skip, parity="parity" not in skip)
    except (InvalidConfigError, PolicyLoadError) as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    except EngineUnavailableError as exc:
        raise CliError(str(exc), EXIT_ENGINE) from None
    if fmt == "json":
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        click.echo(report.render_text(verbose=not quiet))
    click.get_current_context().exit(EXIT_OK if report.ok else EXIT_FAILED)


@click.command("diff")
@click.option("--base", required=True, metavar="OLD",
              help="Base policy: a directory, or git:<ref>[:<path>] (e.g. git:origin/main).")
@click.option("--head", required=True, metavar="NEW", help="Head policy: a directory, or git:<ref>[:<path>].")
@click.option("--cases", multiple=True, type=click.Path(exists=True, path_type=Path),
              help="Requests to compare (repeatable): request JSON, arrays, JSONL, suite YAML, "
                   "decision logs, or a directory of them.")
@click.option("--generate", type=click.IntRange(min=0), default=None,
              help=f"Also compare N generated requests (default {DEFAULT_DIFF_GENERATE} when no --cases).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the generated requests.")
@click.option("--format", "fmt", type=click.Choice(["markdown", "json"]), default="markdown", show_default=True)
@click.option("--allow-loosening", is_flag=True, help="Exit 0 even when decisions got looser (after review).")
@click.option("--max-examples", type=click.IntRange(min=1), default=10, show_default=True,
              help="Markdown: examples listed per kind of change.")
@click.option("--repo", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Git repository for git: versions (default: the one containing the current directory).")
def diff_command(base: str, head: str, cases: tuple[Path, ...], generate: int | None, seed: int, fmt: str,
                 allow_loosening: bool, max_examples: int, repo: Path | None) -> None:
    """Compare the decisions of two policy versions on the same requests.

    Every case is decided by the rego engine under OLD and NEW (each with its
    own config.yaml) and classified as looser, stricter, reasons changed,
    obligations changed or unchanged. Exit 1 when any decision got looser,
    unless --allow-loosening.
    """
    from .errors import EngineUnavailableError, HelpdeskPolicyError, InvalidConfigError, PolicyLoadError
    from .policydiff import DiffError, diff_policies, generated_cases, load_cases, resolve_policy_source

    if generate is None:
        generate = 0 if cases else DEFAULT_DIFF_GENERATE
    if generate == 0 and not cases:
        raise CliError("nothing to compare: give --cases and/or --generate N (N > 0)", EXIT_USAGE)
    try:
        file_cases = load_cases(cases)
        sources = [str(p) for p in cases]  # as the user spelled them
        all_cases = file_cases + generated_cases(generate, seed)
        if generate:
            sources.append(f"{generate} generated requests (seed {seed})")
        with tempfile.TemporaryDirectory(prefix="helpdesk-policy-diff-") as tmp:
            base_dir, base_desc = resolve_policy_source(base, Path(tmp) / "base", repo=repo, other=head)
            head_dir, head_desc = resolve_policy_source(head, Path(tmp) / "head", repo=repo, other=base)
            base_set = _load(base_dir, "base")
            head_set = _load(head_dir, "head")
            report = diff_policies(
                base_set, head_set, all_cases, base_label=base, head_label=head,
                base_description=base_desc, head_description=head_desc, sources=sources,
                allow_loosening=allow_loosening,
            )
    except (DiffError, InvalidConfigError, PolicyLoadError) as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    except EngineUnavailableError as exc:
        raise CliError(str(exc), EXIT_ENGINE) from None
    except HelpdeskPolicyError as exc:  # pragma: no cover - every known subclass is handled above
        raise CliError(str(exc), EXIT_USAGE) from None
    if fmt == "json":
        click.echo(report.to_json())
    else:
        click.echo(report.to_markdown(max_examples=max_examples), nl=False)
    click.get_current_context().exit(report.exit_code)


def _load(directory: Path, side: str) -> PolicySet:
    """Load one side's policy set; errors say which side."""
    from .errors import FieldError, InvalidConfigError, PolicyLoadError
    from .policies import PolicySet

    try:
        return PolicySet.load(directory)
    except PolicyLoadError as exc:
        raise PolicyLoadError(f"{side} policy: {exc}") from None
    except InvalidConfigError as exc:
        raise InvalidConfigError([FieldError(f"{side} config.yaml: {e.path}", e.message) for e in exc.errors]) from None

