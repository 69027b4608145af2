"""The deciding commands: ``helpdesk-policy decide``, ``explain`` and ``schema``.

Commands::

    helpdesk-policy decide FILE... | -     decisions as JSON (or --format text)
    helpdesk-policy explain FILE | -      the decision as numbered steps for a helpdesk agent
        [--audience requester]            ... or what to tell the requester (no reasons, no risk signals)
    helpdesk-policy schema request|decision|config   JSON Schema

A FILE holds one request object or a JSON array of them; ``-`` reads stdin.

Exit codes:

====  ===========================================================================
0     decided (a deny is a valid decision)
1     ``decide --fail-on-deny`` and at least one decision is deny
2     invalid input or usage: bad request fields (every path listed), unreadable
      file, bad JSON, bad config or policy directory, a bad ``--opa-url``
3     the engine cannot load (e.g. a missing extra; the message names it)
====  ===========================================================================

They are plain :class:`click.Command` objects, attached to the main group
(:mod:`helpdesk_policy.cli`) with ``main.add_command(decide)`` (and
``explain``, ``schema``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import click

from ..errors import (
    DocumentError,
    EngineConfigError,
    EngineUnavailableError,
    FieldError,
    InvalidConfigError,
    InvalidRequestError,
    PolicyLoadError,
)
from ..loading import load_json, read_text
from .errors import CliError

__all__ = ["decide", "explain", "schema", "EXIT_OK", "EXIT_DENY", "EXIT_INVALID", "EXIT_ENGINE"]

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK = 0
EXIT_DENY = 1
EXIT_INVALID = 2
EXIT_ENGINE = 3

ENGINE_CHOICES = ("auto", "native", "compiled", "rego", "opa")


@dataclass(frozen=True)
class _Item:
    """One request document read from a source, with a label for error paths."""

    source: str
    index: int | None  # position in a JSON array, None for a lone object
    document: Any

    @property
    def label(self) -> str:
        name = "<stdin>" if self.source == "-" else self.source
        return name if self.index is None else f"{name}[{self.index}]"


@dataclass(frozen=True)
class EngineSettings:
    """What the deciding commands' shared options say about the engine chain."""

    engine: str = "auto"
    fallback: tuple[str, ...] = ()
    config_file: Path | None = None
    policy_dir: Path | None = None
    opa_url: str | None = None
    opa_token: str | None = None


def engine_options(fn: F) -> F:
    """Options shared by the commands that decide, gathered into one ``settings: EngineSettings``."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        kwargs["settings"] = EngineSettings(**{f.name: kwargs.pop(f.name) for f in dataclasses.fields(EngineSettings)})
        return fn(*args, **kwargs)

    decorated: Any = wrapper
    decorated = click.option(
        "--opa-token", envvar="HELPDESK_POLICY_OPA_TOKEN", default=None,
        help="Bearer token for the OPA server (also $HELPDESK_POLICY_OPA_TOKEN).",
    )(decorated)
    decorated = click.option(
        "--opa-url", envvar="HELPDESK_POLICY_OPA_URL", default=None,
        help="OPA server for --engine opa, e.g. http://localhost:8181 (also $HELPDESK_POLICY_OPA_URL).",
    )(decorated)
    decorated = click.option(
        "--fallback", multiple=True, type=click.Choice([c for c in ENGINE_CHOICES if c != "auto"]),
        help="Engine to try when the previous one fails (repeatable), e.g. --engine opa --fallback rego.",
    )(decorated)
    decorated = click.option(
        "--policy-dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
        help="Directory of Rego policies (default: the stock policies shipped with the package).",
    )(decorated)
    decorated = click.option(
        "--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
        help="YAML/JSON policy config; its keys are merged over the stock config.yaml.",
    )(decorated)
    decorated = click.option(
        "--engine", type=click.Choice(ENGINE_CHOICES), default="auto", show_default=True,
        help="Policy engine; auto = the fastest proven for the policy (native for the stock rules, compiled for "
             "an edited policy), the embedded Rego interpreter behind it.",
    )(decorated)
    return decorated  # type: ignore[no-any-return]


def _read_source(src: str) -> Any:
    """Read and parse one source; every failure is a usage error (exit 2) naming the source.

    Parsing is strict (:mod:`helpdesk_policy.loading`): a duplicated key is an
    error rather than "the last one wins", and deep nesting, NaN or Infinity
    are refused.
    """
    name = "<stdin>" if src == "-" else src
    try:
        text = _read_stdin() if src == "-" else read_text(src)
        if not text.strip():
            raise CliError(f"{name} is empty: expected a request object or an array of them", EXIT_INVALID)
        doc = load_json(text, source=name)
    except DocumentError as exc:
        raise CliError(str(exc), EXIT_INVALID) from None
    if isinstance(doc, list) and not doc:
        # Deciding nothing and exiting 0 would let a script believe a batch was decided.
        raise CliError(f"{name} holds an empty array: expected a request object or a non-empty array of them",
                       EXIT_INVALID)
    return doc


def _read_stdin() -> str:
    try:
        return sys.stdin.read()
    except UnicodeDecodeError as exc:
        raise DocumentError("<stdin>", f"not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise DocumentError("<stdin>", f"cannot read: {exc.strerror or exc}") from None


def _read_items(sources: Sequence[str]) -> tuple[list[_Item], bool]:
    """Read every source. Returns the items and whether the output should be a single object
    (one source holding one object) rather than an array."""
    if list(sources).count("-") > 1:
        raise CliError("'-' (stdin) may be given only once", EXIT_INVALID)
    items: list[_Item] = []
    single = len(sources) == 1
    for src in sources:
        doc = _read_source(src)
        if isinstance(doc, list):
            single = False
            items.extend(_Item(src, i, d) for i, d in enumerate(doc))
        else:
            items.append(_Item(src, None, doc))
    return items, single


def _parse(items: Sequence[_Item], single: bool) -> list[Any]:
    """Validate every item before deciding any, so bad input yields no partial output.

    Raises:
        CliError: exit 2, listing every bad field path of every item.
    """
    from ..models import parse_request

    parsed = []
    bad: list[FieldError] = []
    for item in items:
        try:
            parsed.append(parse_request(item.document))
        except InvalidRequestError as exc:
            # A lone request keeps the plain paths; several are prefixed with their source.
            bad.extend(exc.errors if single else (FieldError(f"{item.label}: {e.path}", e.message) for e in exc.errors))
    if bad:
        raise CliError(str(InvalidRequestError(bad)), EXIT_INVALID)
    return parsed


#: The OPA engine options the CLI sets, by the flag that sets them.
_OPA_FLAGS = {"url": "--opa-url", "token": "--opa-token"}


@contextmanager
def _policy(settings: EngineSettings) -> Iterator[Any]:
    from ..facade import HelpdeskPolicy

    opa: dict[str, Any] = {}
    if settings.opa_url:
        opa["url"] = settings.opa_url
    if settings.opa_token:
        opa["token"] = settings.opa_token
    try:
        policy = HelpdeskPolicy(
            engine=settings.engine, fallback=list(settings.fallback), config=settings.config_file,
            policy_dir=settings.policy_dir, engine_options={"opa": opa} if opa else None,
        )
    except (InvalidConfigError, PolicyLoadError) as exc:
        raise CliError(str(exc), EXIT_INVALID) from None
    except EngineConfigError as exc:
        # e.g. --opa-url ftp://x: a usage error, named by the flag that set it.
        flag = _OPA_FLAGS.get(exc.option)
        raise CliError(f"invalid {flag}: {exc}" if flag else str(exc), EXIT_INVALID) from None
    except EngineUnavailableError as exc:
        raise CliError(str(exc), EXIT_ENGINE) from None
    try:
        yield policy
    finally:
        policy.close()


@click.command("decide")
@click.argument("files", nargs=-1, required=True)
@engine_options
@click.option("--format", "fmt", type=click.Choice(["json", "text"]), default="json", show_default=True,
              help="json: exactly the documented decision shape; text: a summary for people.")
@click.option("--fail-on-deny", is_flag=True, help="Exit 1 when any decision is deny (for scripts).")
def decide(files: tuple[str, ...], settings: EngineSettings, fmt: str, fail_on_deny: bool) -> None:
    """Decide the request(s) in FILES; '-' reads stdin.

    A file holds one request object or a JSON array of them. JSON output is one
    decision object for one request object, otherwise an array in input order.
    """
    items, single = _read_items(files)
    requests = _parse(items, single)
    with _policy(settings) as policy:
        decisions = [policy.decide(r) for r in requests]
    if fmt == "json":
        docs = [d.to_dict() for d in decisions]
        click.echo(json.dumps(docs[0] if single else docs, indent=2))
    else:
        from ..render import printable, render_text

        blocks = [f"== {printable(item.label)} ({printable(req.request.id)})\n{render_text(d)}"
                  for item, req, d in zip(items, requests, decisions, strict=True)]
        click.echo("\n\n".join(blocks))
    if fail_on_deny and any(not d.allowed for d in decisions):
        click.get_current_context().exit(EXIT_DENY)


@click.command("explain")
@click.argument("file")
@click.option("--audience", type=click.Choice(["agent", "requester"]), default="agent", show_default=True,
              help="agent: the helpdesk agent's numbered steps, with the reasons; requester: what to tell the "
                   "person asking (what happens next, never a reason or risk signal).")
@engine_options
def explain(file: str, audience: str, settings: EngineSettings) -> None:
    """Explain the decision for the request in FILE: numbered steps for a helpdesk agent,
    or with --audience requester what to tell the requester.

    Takes exactly one FILE ('-' reads stdin) holding one request object; a JSON
    array of requests is explained one after the other.
    """
    from ..render import explain as render_for

    items, single = _read_items((file,))
    requests = _parse(items, single)
    with _policy(settings) as policy:
        texts = [render_for(policy.decide(r), r, audience=audience) for r in requests]  # type: ignore[arg-type]
    click.echo("\n\n".join(texts))


@click.command("schema")
@click.argument("what", type=click.Choice(["request", "decision", "config"]))
def schema(what: str) -> None:
    """Print the JSON Schema of a request, a decision, or the policy config."""
    from pydantic import BaseModel

    from ..config import PolicyConfig
    from ..models import Decision, Request

    models: dict[str, type[BaseModel]] = {"request": Request, "decision": Decision, "config": PolicyConfig}
    model = models[what]
    # A decision is something we emit, so its schema describes the serialised form.
    mode: Literal["validation", "serialization"] = "serialization" if what == "decision" else "validation"
    doc = model.model_json_schema(mode=mode)
    doc = {"$schema": "https://json-schema.org/draft/2020-12/schema", **doc}
    click.echo(json.dumps(doc, indent=2))
