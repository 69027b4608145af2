"""``helpdesk-policy serve``: the decision service over HTTP (:mod:`helpdesk_policy.service`).

::

    export HELPDESK_POLICY_SERVICE_TOKEN="$(python -c 'import secrets; print(secrets.token_urlsafe(32))')"
    helpdesk-policy serve --host 127.0.0.1 --port 8080 --engine auto
    helpdesk-policy serve --token-file /run/secrets/helpdesk-token --workers 4 --deadline-s 2

Needs the ``service`` extra: ``pip install 'helpdesk-policy[service]'``.

Tokens come from ``--token-file`` (one a line, ``#`` comments; several let a
token be rotated) or ``$HELPDESK_POLICY_SERVICE_TOKEN`` (comma-separated),
never from a command-line flag: the process list shows every argument to
every user of the host. Without a token the command refuses to start,
unless ``--insecure-no-auth`` says the service sits behind something else
that authenticates callers.

With ``--workers N`` uvicorn starts N processes, each building its own app
from the same settings (:func:`app_from_environment`); each keeps its own
metrics. Prefer one worker per container and scale out with replicas: the
service is stateless.

Exit status: 0 stopped cleanly, 2 invalid usage or configuration (a bad
token, config or policy directory), 3 a missing extra or an engine that
cannot load.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click

from ..errors import EngineConfigError, EngineUnavailableError, InvalidConfigError, PolicyLoadError
from ..loading import read_text
from .decide import EXIT_ENGINE, EXIT_INVALID, EngineSettings, engine_options
from .errors import CliError

__all__ = ["serve", "app_from_environment", "ServeSettings", "SETTINGS_ENV"]

log = logging.getLogger(__name__)

#: How ``serve --workers N`` hands its settings to the worker processes (JSON; no secret values).
SETTINGS_ENV = "HELPDESK_POLICY_SERVE_SETTINGS"


@dataclass(frozen=True)
class ServeSettings:
    """Everything a worker needs to build the app; paths, never secret values."""

    engine: str = "auto"
    fallback: tuple[str, ...] = ()
    config_file: str | None = None
    policy_dir: str | None = None
    opa_url: str | None = None
    token_file: str | None = None
    no_auth: bool = False
    max_body_bytes: int = 256 * 1024
    deadline_s: float = 2.0
    engine_timeout_s: float | None = None
    metrics_public: bool = False
    decision_key_file: str | None = None
    #: The inventory (YAML, JSON or CSV) the ticketing webhooks take identity facts from.
    facts_file: str | None = None
    #: The key permits are signed with (so executors elsewhere can check them); default: one per process.
    permit_key_file: str | None = None
    #: The most /v1/authorize permits without evidence a person's checks were done.
    authorize_max_level: str = "self_service"

    @property
    def effective_engine_timeout(self) -> float:
        """Each engine's deadline: a quarter of the request's (at most 1 s) unless set, so a
        hung engine is passed over for the next one well before the request runs out."""
        if self.engine_timeout_s is not None:
            return self.engine_timeout_s
        return min(1.0, self.deadline_s / 4)


def build_from_settings(settings: ServeSettings) -> Any:
    """The app for ``settings`` (the policy, tokens and key read now).

    Raises:
        CliError: exit 2 for bad configuration, 3 for a missing extra or engine.
    """
    from ..facade import HelpdeskPolicy
    from ..service import ServiceDependencyError, create_app, load_tokens

    tokens: list[str] | None = None
    if not settings.no_auth:
        try:
            tokens = load_tokens(settings.token_file)
        except InvalidConfigError as exc:
            raise CliError(str(exc), EXIT_INVALID) from None
        if not tokens:
            raise CliError("no bearer token: give --token-file or set $HELPDESK_POLICY_SERVICE_TOKEN "
                           "(or --insecure-no-auth behind something that authenticates)", EXIT_INVALID)
    key: str | None = None
    if settings.decision_key_file is not None:
        try:
            key = read_text(settings.decision_key_file).strip()
        except Exception as exc:  # noqa: BLE001 - DocumentError: unreadable
            raise CliError(f"--decision-key-file: {exc}", EXIT_INVALID) from None
    opa: dict[str, Any] = {}
    if settings.opa_url:
        opa["url"] = settings.opa_url
    opa_token = os.environ.get("HELPDESK_POLICY_OPA_TOKEN")
    if opa_token:
        opa["token"] = opa_token
    try:
        policy = HelpdeskPolicy(
            engine=settings.engine, fallback=list(settings.fallback), config=settings.config_file,
            policy_dir=settings.policy_dir, engine_options={"opa": opa} if opa else None,
            timeout=settings.effective_engine_timeout,
        )
    except (InvalidConfigError, PolicyLoadError) as exc:
        raise CliError(str(exc), EXIT_INVALID) from None
    except EngineConfigError as exc:
        raise CliError(f"invalid --opa-{exc.option}: {exc}" if exc.option in ("url", "token") else str(exc),
                       EXIT_INVALID) from None
    except EngineUnavailableError as exc:
        raise CliError(str(exc), EXIT_ENGINE) from None
    authorizer, webhooks = _integrations(policy, settings)
    try:
        return create_app(
            policy, token=tokens, max_body_bytes=settings.max_body_bytes, deadline_s=settings.deadline_s,
            authorizer=authorizer, webhooks=webhooks, metrics_auth=not settings.metrics_public,
            decision_key=key, own_policy=True,
        )
    except InvalidConfigError as exc:
        policy.close()
        raise CliError(str(exc), EXIT_INVALID) from None
    except ServiceDependencyError as exc:
        policy.close()
        raise CliError(str(exc), EXIT_ENGINE) from None


def _integrations(policy: Any, settings: ServeSettings) -> tuple[Any, dict[str, Any]]:
    """The authorizer (the guard) and the ticketing webhooks to serve.

    The wiring point for :mod:`helpdesk_policy.agents` and
    :mod:`helpdesk_policy.integrations` (the command line may import every
    room; the service may not): ``(guard, {system: handler})``. The guard
    serves ``/v1/authorize`` for the integrator's requests as sent (the bearer
    token authenticates the integrator, which takes the facts from its systems
    of record). The webhooks, one per shipped mapping under its name with
    ``-`` for ``_`` (``/v1/webhooks/servicenow-incident``), need ``--facts``:
    without a directory to take the identities' facts from, none is served.

    Raises:
        CliError: exit 2 for an unreadable facts or permit-key file.
    """
    from ..agents import FileFactsProvider, Guard
    from ..agents.errors import FactsError
    from ..integrations import SHIPPED_MAPPINGS, webhook_for

    key: str | None = None
    if settings.permit_key_file is not None:
        try:
            key = read_text(settings.permit_key_file).strip()
        except Exception as exc:  # noqa: BLE001 - DocumentError: unreadable
            raise CliError(f"--permit-key-file: {exc}", EXIT_INVALID) from None
    try:
        guard = Guard(policy, key=key, max_level=settings.authorize_max_level)
    except InvalidConfigError as exc:
        raise CliError(str(exc), EXIT_INVALID) from None
    authorizer = _GuardAuthorizer(guard)
    webhooks: dict[str, Any] = {}
    if settings.facts_file is not None:
        try:
            facts = FileFactsProvider(settings.facts_file)
        except (FactsError, OSError) as exc:
            raise CliError(f"--facts: {exc}", EXIT_INVALID) from None
        webhooks = {name.replace("_", "-"): webhook_for(name, facts) for name in SHIPPED_MAPPINGS}
    return authorizer, webhooks


class _Answer:
    """One guard outcome as ``/v1/authorize`` answers it: every answer says ``kind`` and ``instruction``."""

    def __init__(self, outcome: Any) -> None:
        self.outcome = outcome

    def to_dict(self) -> dict[str, Any]:
        from ..agents import Permit

        if isinstance(self.outcome, Permit):
            # The permit as issued (signed): the executor hands it back to PermitVerifier.consume.
            return {"kind": "permit", "instruction": "perform", "permit": self.outcome.to_dict()}
        return self.outcome.to_dict()


class _GuardAuthorizer:
    """The guard behind ``/v1/authorize`` (the service's Authorizer protocol)."""

    def __init__(self, guard: Any) -> None:
        self.guard = guard

    def authorize(self, request: Any, evidence: Any = None, **options: Any) -> _Answer:
        return _Answer(self.guard.authorize(request, evidence, **options))

    async def aauthorize(self, request: Any, evidence: Any = None, **options: Any) -> _Answer:
        return _Answer(await self.guard.aauthorize(request, evidence, **options))


def app_from_environment() -> Any:
    """The app a uvicorn worker builds (``--workers N``): settings from :data:`SETTINGS_ENV`."""
    raw = os.environ.get(SETTINGS_ENV)
    if not raw:
        raise RuntimeError(f"{SETTINGS_ENV} is not set: start the service with `helpdesk-policy serve`")
    doc = json.loads(raw)
    doc["fallback"] = tuple(doc.get("fallback", ()))
    return build_from_settings(ServeSettings(**doc))


@click.command("serve")
@engine_options
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0 for every interface, e.g. in a container).")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="Port to listen on.")
@click.option("--token-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File of accepted bearer tokens, one a line (default: $HELPDESK_POLICY_SERVICE_TOKEN).")
@click.option("--insecure-no-auth", "no_auth", is_flag=True,
              help="Serve without bearer tokens: only behind something that authenticates callers.")
@click.option("--max-body-bytes", type=click.IntRange(1), default=256 * 1024, show_default=True,
              help="Largest request body; larger is refused with 413 while reading.")
@click.option("--deadline-s", type=click.FloatRange(0, min_open=True), default=2.0, show_default=True,
              help="Per-request deadline in seconds; then 503 and no decision.")
@click.option("--engine-timeout", "engine_timeout_s", type=click.FloatRange(0, min_open=True), default=None,
              help="Each engine's deadline before the next engine is asked (default: deadline/4, at most 1 s).")
@click.option("--metrics-public", is_flag=True, help="Serve /metrics without the bearer token.")
@click.option("--decision-key-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Sign decisions (X-Decision-Signature) with this key; /v1/verify then needs the signature.")
@click.option("--facts", "facts_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Identity inventory (YAML, JSON or CSV) for the ticketing webhooks; without it none is served.")
@click.option("--permit-key-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Sign /v1/authorize permits with this key (32+ bytes), so executors elsewhere can check them.")
@click.option("--authorize-max-level", type=click.Choice(["self_service", "step_up", "manager_approval", "callback"]),
              default="self_service", show_default=True,
              help="The most /v1/authorize permits without evidence that a person did the checks.")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Worker processes (each with its own app and metrics).")
@click.option("--limit-concurrency", type=click.IntRange(1), default=None,
              help="Answer 503 beyond this many connections or tasks at once (uvicorn's limit).")
@click.option("--log-level", type=click.Choice(["critical", "error", "warning", "info", "debug"]), default="info",
              show_default=True, help="uvicorn's log level.")
@click.option("--access-log/--no-access-log", default=True, show_default=True,
              help="uvicorn's access log (method, path, status: never a body or a header).")
def serve(settings: EngineSettings, host: str, port: int, token_file: Path | None, no_auth: bool,
          max_body_bytes: int, deadline_s: float, engine_timeout_s: float | None, metrics_public: bool,
          decision_key_file: Path | None, facts_file: Path | None, permit_key_file: Path | None,
          authorize_max_level: str, workers: int, limit_concurrency: int | None, log_level: str,
          access_log: bool) -> None:
    """Serve decisions over HTTP: /v1/decide, /v1/explain, /v1/verify, /v1/authorize, webhooks,
    /health, /ready, /metrics and /openapi.json.

    Bearer tokens come from --token-file or $HELPDESK_POLICY_SERVICE_TOKEN. Exit status:
    0 stopped, 2 bad configuration, 3 a missing extra or engine.
    """
    try:
        import uvicorn
    except ImportError:
        raise CliError("the decision service needs uvicorn: pip install 'helpdesk-policy[service]'",
                       EXIT_ENGINE) from None
    if settings.opa_token:
        # The flag's value would be handed to workers through the environment anyway.
        os.environ["HELPDESK_POLICY_OPA_TOKEN"] = settings.opa_token
    serve_settings = ServeSettings(
        engine=settings.engine, fallback=settings.fallback,
        config_file=None if settings.config_file is None else str(settings.config_file),
        policy_dir=None if settings.policy_dir is None else str(settings.policy_dir),
        opa_url=settings.opa_url, token_file=None if token_file is None else str(token_file), no_auth=no_auth,
        max_body_bytes=max_body_bytes, deadline_s=deadline_s, engine_timeout_s=engine_timeout_s,
        metrics_public=metrics_public, decision_key_file=None if decision_key_file is None else str(decision_key_file),
        facts_file=None if facts_file is None else str(facts_file),
        permit_key_file=None if permit_key_file is None else str(permit_key_file),
        authorize_max_level=authorize_max_level,
    )
    # Built here even with workers: a bad token, config or engine fails now, with exit 2 or 3.
    app = build_from_settings(serve_settings)
    if no_auth:
        log.warning("serving WITHOUT bearer-token authentication (--insecure-no-auth)")
    options: dict[str, Any] = {
        "host": host, "port": port, "log_level": log_level, "access_log": access_log, "lifespan": "on",
        "server_header": False, "limit_concurrency": limit_concurrency,
    }
    if workers == 1:
        uvicorn.run(app, **options)
        return
    # The workers build their own apps; this one only checked the settings.
    app.state.service.policy.close()
    os.environ[SETTINGS_ENV] = json.dumps(asdict(serve_settings))
    with _nodelay_listener(uvicorn.Config):
        uvicorn.run("helpdesk_policy.cli.serve:app_from_environment", factory=True, workers=workers, **options)


@contextmanager
def _nodelay_listener(config_class: Any) -> Iterator[None]:
    """Give the listening socket that ``--workers N`` binds ``TCP_NODELAY``.

    uvicorn's supervisor binds the socket itself with ``proto`` 0, and asyncio
    sets ``TCP_NODELAY`` only on accepted sockets that say ``IPPROTO_TCP``, so
    every keep-alive answer after the first waits ~40 ms for the client's
    delayed ACK (uvicorn issue #3149; measured with two workers: 330
    decisions/s without, 1,230 with). Linux copies the option from the listener to each accepted
    socket; elsewhere it does nothing harmful.
    """
    original = config_class.bind_socket

    def bind_socket(self: Any) -> socket.socket:
        sock = original(self)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    config_class.bind_socket = bind_socket
    try:
        yield
    finally:
        config_class.bind_socket = original
