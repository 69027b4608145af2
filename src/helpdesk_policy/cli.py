"""The ``helpdesk-policy`` command line.

Exit codes: 0 decided (a deny is a decision), 1 ``--fail-on-deny`` saw a deny,
2 invalid input or usage, 3 no engine could load.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from . import __version__
from .errors import EngineUnavailableError, HelpdeskPolicyError, InvalidConfigError, InvalidRequestError, PolicyLoadError

__all__ = ["main"]

F = TypeVar("F", bound=Callable[..., Any])

EXIT_DENY = 1
EXIT_INVALID = 2
EXIT_ENGINE = 3


def _engine_options(fn: F) -> F:
    fn = click.option("--policy-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                      help="Directory of Rego policies (default: the stock policies).")(fn)
    fn = click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
                      help="YAML/JSON config merged over the stock config.yaml.")(fn)
    fn = click.option("--engine", type=click.Choice(["auto", "rego", "native", "opa"]), default="auto",
                      show_default=True, help="Engine; auto = rego with native as fallback.")(fn)
    return fn


def _fail(message: str, code: int) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _read_requests(sources: tuple[str, ...]) -> list[Any]:
    items: list[Any] = []
    for src in sources or ("-",):
        try:
            text = sys.stdin.read() if src == "-" else Path(src).read_text(encoding="utf-8")
        except OSError as exc:
            _fail(f"cannot read {src}: {exc.strerror}", EXIT_INVALID)
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            _fail(f"{src} is not valid JSON: {exc}", EXIT_INVALID)
        items.extend(doc if isinstance(doc, list) else [doc])
    return items


def _policy(engine: str, config_file: Path | None, policy_dir: Path | None):  # type: ignore[no-untyped-def]
    from .facade import HelpdeskPolicy

    try:
        return HelpdeskPolicy(engine=engine, config=config_file, policy_dir=policy_dir)
    except InvalidConfigError as exc:
        _fail(str(exc), EXIT_INVALID)
    except PolicyLoadError as exc:
        _fail(str(exc), EXIT_INVALID)
    except EngineUnavailableError as exc:
        _fail(str(exc), EXIT_ENGINE)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="helpdesk-policy")
@click.option("-v", "--verbose", count=True, help="Log engine fallbacks (-v) and debug detail (-vv) to stderr.")
def main(verbose: int) -> None:
    """Decide how much identity assurance a helpdesk request needs, and why."""
    if verbose:
        # The CLI is an application: it may configure logging; the library never does.
        logging.basicConfig(level=logging.DEBUG if verbose > 1 else logging.INFO, stream=sys.stderr,
                            format="%(levelname)s %(name)s: %(message)s")


@main.command()
@click.argument("files", nargs=-1)
@_engine_options
@click.option("--format", "fmt", type=click.Choice(["json", "text"]), default="json", show_default=True)
@click.option("--fail-on-deny", is_flag=True, help="Exit 1 when any decision is deny.")
def decide(files: tuple[str, ...], engine: str, config_file: Path | None, policy_dir: Path | None,
           fmt: str, fail_on_deny: bool) -> None:
    """Decide the request(s) in FILES (JSON object or array; '-' reads stdin)."""
    requests = _read_requests(files)
    policy = _policy(engine, config_file, policy_dir)
    try:
        # One request reports bad fields without an index prefix.
        decisions = [policy.decide(requests[0])] if len(requests) == 1 else policy.decide_many(requests)
    except InvalidRequestError as exc:
        _fail(str(exc), EXIT_INVALID)
    finally:
        policy.close()
    if fmt == "json":
        docs = [d.to_dict() for d in decisions]
        click.echo(json.dumps(docs[0] if len(docs) == 1 else docs, indent=2))
    else:
        from .render import render_text

        names = _labels(files, requests)
        click.echo("\n\n".join(f"== {name}\n{render_text(d)}" for name, d in zip(names, decisions)))
    if fail_on_deny and any(not d.allowed for d in decisions):
        sys.exit(EXIT_DENY)


def _labels(files: tuple[str, ...], requests: list[Any]) -> list[str]:
    out = []
    for req in requests:
        rid = req.get("request", {}).get("id", "?") if isinstance(req, dict) else "?"
        out.append(str(rid))
    if len(files) == len(requests):
        out = [f"{Path(f).name} ({rid})" if f != "-" else rid for f, rid in zip(files, out)]
    return out


@main.command()
@click.argument("file", default="-")
@_engine_options
def explain(file: str, engine: str, config_file: Path | None, policy_dir: Path | None) -> None:
    """Explain the decision for FILE as numbered steps for a helpdesk agent."""
    from .models import parse_request
    from .render import render_explain

    requests = _read_requests((file,))
    policy = _policy(engine, config_file, policy_dir)
    try:
        parsed = [parse_request(r) for r in requests]
        texts = [render_explain(policy.decide(r), r) for r in parsed]
    except InvalidRequestError as exc:
        _fail(str(exc), EXIT_INVALID)
    finally:
        policy.close()
    click.echo("\n\n".join(texts))


@main.command()
@click.argument("what", type=click.Choice(["request", "decision", "config"]))
def schema(what: str) -> None:
    """Print the JSON Schema of a request, a decision, or the policy config."""
    from .config import PolicyConfig
    from .models import Decision, Request

    model = {"request": Request, "decision": Decision, "config": PolicyConfig}[what]
    mode = "serialization" if what == "decision" else "validation"
    click.echo(json.dumps(model.model_json_schema(mode=mode), indent=2))


def _register_optional_commands() -> None:
    """Subcommands from sibling modules, added when present."""
    import importlib

    for module_name, attr in (("helpdesk_policy.bundle", "bundle"), ("helpdesk_policy.cli_ci", "test_command"),
                              ("helpdesk_policy.cli_ci", "diff_command")):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        main.add_command(getattr(module, attr))


_register_optional_commands()


if __name__ == "__main__":  # pragma: no cover
    main()
