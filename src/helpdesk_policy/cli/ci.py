"""CI commands: ``helpdesk-policy test``, ``diff`` and ``init``.

They read options and report; the work is done in :mod:`helpdesk_policy.ci`.
They are plain :class:`click.Command` objects, attached to the main group with
``main.add_command(test_command)`` (and ``diff_command``, ``init_command``).

``test [POLICY_DIR]`` exit codes: 0 everything passed; 1 a Rego test, a suite
case, the parity or the OPA conformance check failed, the compiled policy
decided a request differently from regopy or OPA, or a suite file in
POLICY_DIR/tests is broken; 2 usage error (including Rego that the loader
refuses, a ``--suite`` file that is missing, unreadable or invalid, and a bad
``--config``); 3 the rego engine (regopy) is not installed, or OPA's Go
evaluator is not and ``--require-opa`` was given.

``diff --base OLD --head NEW`` exit codes: 0 no decision got looser (or
``--allow-loosening``); 1 a decision got looser, the head policy could not
decide a case, or rego-cpp and OPA's Go evaluator decide the head differently;
2 usage error (bad ``--base``/``--head``/config, unreadable or invalid cases, a
policy that does not compile, an unsafe git tree); 3 the rego engine is not
installed, or OPA's Go evaluator is not and ``--require-opa`` was given.

``init DIR`` copies the stock policies, their unit tests, config and suites
into DIR to start from: 0 done; 2 DIR is not empty (without ``--force``) or
cannot be written.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .errors import CliError

if TYPE_CHECKING:
    from ..policyset import PolicySet

__all__ = ["EXIT_ENGINE", "EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "diff_command", "init_command", "test_command"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
#: Same code as ``helpdesk-policy decide`` uses for a missing engine.
EXIT_ENGINE = 3

#: ``helpdesk_policy.ci.regotest.EVALUATORS``, spelled here so that building the
#: command does not import the test runner (a test checks they agree).
REGO_TEST_EVALUATORS = ("regopy", "opa-go")

#: ``diff`` without ``--cases`` or ``--generate`` compares this many generated requests.
DEFAULT_DIFF_GENERATE = 500


@click.command("test")
@click.argument("policy_dir", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Config merged over the stock one instead of POLICY_DIR/config.yaml, for the suites and the "
                   "engine checks (the Rego unit tests keep the config they were written for).")
@click.option("--suite", "suites", multiple=True, type=click.Path(exists=True, path_type=Path),
              help="Expectation suite file or directory (repeatable). When given, only these run: add "
                   "--with-dir-suites to run POLICY_DIR/tests too.")
@click.option("--with-dir-suites", is_flag=True,
              help="With --suite: also run the suites in POLICY_DIR/tests.")
@click.option("--generate", type=click.IntRange(min=0), default=200, show_default=True,
              help="Generated requests for the parity, OPA conformance and compiled-policy checks.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the generated requests.")
@click.option("--evaluator", type=click.Choice(REGO_TEST_EVALUATORS), default="regopy", show_default=True,
              help="Evaluator of the Rego unit tests: regopy (rego-cpp) or opa-go (OPA's Go evaluator, a dev extra).")
@click.option("--skip", "skip", multiple=True, type=click.Choice(["rego-tests", "suites", "parity", "conformance", "compiled"]),
              help="Leave a part out (repeatable), e.g. for a quick local loop; it is reported as skipped.")
@click.option("--require-opa", is_flag=True,
              help="Fail (exit 3) when OPA's Go evaluator is not installed, instead of skipping the conformance check.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("-q", "--quiet", is_flag=True, help="Text: list failures only, not every passing test.")
def test_command(policy_dir: Path | None, config_file: Path | None, suites: tuple[Path, ...], with_dir_suites: bool,
                 generate: int, seed: int, evaluator: str, skip: tuple[str, ...], require_opa: bool, fmt: str,
                 quiet: bool) -> None:
    """Test the policies in POLICY_DIR (default: the stock policies).

    Runs the Rego unit tests (test_* rules in *_test.rego), the expectation
    suites in POLICY_DIR/tests (or the --suite ones), decided by the rego engine
    on POLICY_DIR, the rego/native parity check when POLICY_DIR's Rego is the
    stock Rego, the OPA conformance check (rego-cpp against OPA's own Go
    evaluator, when installed) and the compiled-policy check (the Rego compiled
    to Python, which engine="auto" runs for an edited policy, against regopy
    and OPA's Go evaluator) on generated and suite requests. Exit 1 on any
    failure; a policy the compiler refuses is reported, not failed (it runs on
    the interpreter).
    """
    from ..ci.runner import run_policy_tests
    from ..errors import EngineUnavailableError, HelpdeskPolicyError

    if with_dir_suites and not suites:
        raise CliError("--with-dir-suites only makes sense with --suite (POLICY_DIR/tests runs by default)",
                       EXIT_USAGE)
    if require_opa and "conformance" in skip and "compiled" in skip:
        raise CliError("--require-opa contradicts --skip conformance --skip compiled", EXIT_USAGE)
    try:
        report = run_policy_tests(policy_dir, config=config_file, suites=suites,
                                  dir_suites=with_dir_suites or not suites, generate=generate, seed=seed,
                                  evaluator=evaluator, rego_tests="rego-tests" not in skip,
                                  run_suites="suites" not in skip, parity="parity" not in skip,
                                  conformance="conformance" not in skip, compiled="compiled" not in skip,
                                  require_opa=require_opa)
    except EngineUnavailableError as exc:
        raise CliError(str(exc), EXIT_ENGINE) from None
    except HelpdeskPolicyError as exc:
        # A bad --config or --suite file, a missing or empty policy directory:
        # the arguments, not the policy under test.
        raise CliError(str(exc), EXIT_USAGE) from None
    if fmt == "json":
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        click.echo(report.render_text(verbose=not quiet))
    click.get_current_context().exit(EXIT_OK if report.ok else EXIT_FAILED)


@click.command("diff")
@click.option("--base", required=True, metavar="OLD",
              help="Base policy: a directory, git:<ref>[:<path>] (e.g. git:origin/main), or 'recorded': the "
                   "decisions the --cases decision logs hold.")
@click.option("--head", default=None, metavar="NEW",
              help="Head policy: a directory, or git:<ref>[:<path>]. Default: OLD itself, for a config-only change "
                   "(give --config).")
@click.option("--config", "--head-config", "head_config", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Config for the head, merged over the stock one, instead of the head's config.yaml.")
@click.option("--base-config", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Config for the base, merged over the stock one, instead of the base's config.yaml.")
@click.option("--cases", multiple=True, type=click.Path(exists=True, path_type=Path),
              help="Requests to compare (repeatable): request JSON, arrays, JSONL, suite YAML, "
                   "decision logs, or a directory of them (subdirectories included).")
@click.option("--generate", type=click.IntRange(min=0), default=None,
              help=f"Also compare N generated requests (default {DEFAULT_DIFF_GENERATE} when no --cases).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the generated requests.")
@click.option("--format", "fmt", type=click.Choice(["markdown", "json"]), default="markdown", show_default=True)
@click.option("--allow-loosening", is_flag=True, help="Exit 0 even when decisions got looser (after review).")
@click.option("--require-opa", is_flag=True,
              help="Fail (exit 3) when OPA's Go evaluator is not installed, instead of skipping the conformance check.")
@click.option("--max-examples", type=click.IntRange(min=1), default=10, show_default=True,
              help="Markdown: examples listed per kind of change.")
@click.option("--repo", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Git repository for git: versions (default: the one containing the current directory).")
@click.option("--workers", type=click.IntRange(min=1), default=None, metavar="N",
              help="Processes deciding the cases, this one included (default: every CPU from 1000 cases on, "
                   "else 1). A progress bar shows on stderr when it is a terminal.")
def diff_command(base: str, head: str | None, head_config: Path | None, base_config: Path | None,
                 cases: tuple[Path, ...], generate: int | None, seed: int, fmt: str, allow_loosening: bool,
                 require_opa: bool, max_examples: int, repo: Path | None, workers: int | None) -> None:
    """Compare the decisions of two policy versions on the same requests.

    Every case is decided by the rego engine under OLD and NEW (each with its
    own config.yaml, or --base-config / --config) and classified as looser,
    stricter, reasons changed, playbook changed, obligations changed or
    unchanged. NEW is also decided by OPA's own Go evaluator when it is
    installed, and must agree. Exit 1 when any decision got looser (unless
    --allow-loosening), NEW cannot decide a case, or the evaluators disagree.

    A config-only change is one command: --base policies --config new.yaml
    compares policies/ under its config.yaml with the same Rego under new.yaml.

    --base recorded compares NEW with what was actually decided: the result
    each decision-log record in --cases holds (HelpdeskPolicy(log_sink=...)),
    whatever policy or library version made it.
    """
    from ..ci.diff import RECORDED, diff_policies, generated_cases, load_cases, resolve_policy_source
    from ..errors import EngineUnavailableError, HelpdeskPolicyError

    recorded = base == RECORDED
    if recorded and (head is None or base_config is not None or generate):
        raise CliError("--base recorded compares --head NEW with the decisions in --cases decision logs: give --head, "
                       "and no --base-config or --generate", EXIT_USAGE)
    if recorded and not cases:
        raise CliError("--base recorded needs --cases: decision logs holding the recorded decisions", EXIT_USAGE)
    if head is None:
        if head_config is None and base_config is None:
            raise CliError("give --head NEW, or --config (and/or --base-config) to compare configs on the same Rego",
                           EXIT_USAGE)
        head = base
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
            head_dir, head_desc = resolve_policy_source(head, Path(tmp) / "head", repo=repo,
                                                        other=None if recorded else base)
            head_set = _load(head_dir, "head", head_config)
            base_set, base_desc = None, RECORDED
            if not recorded:
                base_dir, base_desc = resolve_policy_source(base, Path(tmp) / "base", repo=repo, other=head)
                base_set = _load(base_dir, "base", base_config)
            report = diff_policies(
                base_set, head_set, all_cases, base_label=base, head_label=head,
                base_description=_with_config(base_desc, base_config),
                head_description=_with_config(head_desc, head_config), sources=sources,
                allow_loosening=allow_loosening, opa="require" if require_opa else "auto",
                workers=workers, progress=True,
            )
    except EngineUnavailableError as exc:
        raise CliError(str(exc), EXIT_ENGINE) from None
    except HelpdeskPolicyError as exc:
        # Bad cases, a bad version or config, Rego that does not compile, an unsafe git tree.
        raise CliError(str(exc), EXIT_USAGE) from None
    if fmt == "json":
        click.echo(report.to_json())
    else:
        click.echo(report.to_markdown(max_examples=max_examples), nl=False)
    click.get_current_context().exit(report.exit_code)


def _with_config(description: str, config: Path | None) -> str:
    return description if config is None else f"{description} with config {config}"


def _load(directory: Path, side: str, config: Path | None = None) -> PolicySet:
    """Load one side's policy set (``config`` instead of its config.yaml); errors say which side."""
    from ..errors import FieldError, InvalidConfigError, PolicyLoadError
    from ..policyset import PolicySet

    try:
        return PolicySet.load(directory, config)
    except PolicyLoadError as exc:
        raise PolicyLoadError(f"{side} policy: {exc}") from None
    except InvalidConfigError as exc:
        # The config loader names the file in each path already.
        raise InvalidConfigError([FieldError(f"{side} {e.path}", e.message) for e in exc.errors]) from None


@click.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Write into a non-empty DIRECTORY, replacing the stock files there.")
def init_command(directory: Path, force: bool) -> None:
    """Start a policy directory from the stock policies.

    Copies the stock Rego (helpdesk/*.rego, with its *_test.rego unit tests),
    config.yaml and the expectation suites (tests/*.yaml) into DIRECTORY, which
    must be empty or new unless --force.
    """
    from ..resources import stock_policy_dir

    stock = stock_policy_dir()
    try:
        if directory.exists() and not force and any(directory.iterdir()):
            raise CliError(f"{directory} is not empty: choose a new directory, or add --force to write the stock "
                           "files into it (files of the same name are replaced)", EXIT_USAGE)
        directory.mkdir(parents=True, exist_ok=True)
        copied = 0
        for src in sorted(stock.rglob("*")):
            rel = src.relative_to(stock)
            # Only what a policy directory holds: no caches a test run left in the package.
            if not src.is_file() or "__pycache__" in rel.parts or src.suffix not in (".rego", ".yaml", ".yml"):
                continue
            dest = directory / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
            copied += 1
    except OSError as exc:
        raise CliError(f"cannot write {directory}: {exc.strerror or exc}", EXIT_USAGE) from None
    click.echo(f"Copied {copied} stock files into {directory}:")
    click.echo("  helpdesk/*.rego   the policies, one file per concern, with their *_test.rego unit tests")
    click.echo("  config.yaml       the tunable parameters, documented key by key")
    click.echo("  tests/*.yaml      expectation suites; add yours beside them (subdirectories are run too)")
    click.echo("")
    click.echo("Next steps:")
    click.echo(f"  1. helpdesk-policy test {directory}    (passes as copied)")
    click.echo(f"  2. tune {directory / 'config.yaml'}, write suites for your decisions, run test again")
    click.echo(f"  3. commit, then on every change: helpdesk-policy diff --base git:origin/main --head {directory}")
    click.echo("     (examples/ci/ in the helpdesk-policy repository runs both in GitHub Actions or any CI)")
