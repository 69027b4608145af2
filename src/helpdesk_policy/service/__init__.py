"""A decision service for systems that cannot import Python: HTTP and JSON over ASGI.

Install the extra: ``pip install 'helpdesk-policy[service]'`` (Starlette and
uvicorn). Run it with ``helpdesk-policy serve`` or build the app yourself::

    from helpdesk_policy import HelpdeskPolicy
    from helpdesk_policy.service import create_app

    app = create_app(HelpdeskPolicy(engine="auto", timeout=0.5), token=["<a random token>"])
    # uvicorn.run(app, host="127.0.0.1", port=8080)

Endpoints (JSON unless said; every one but ``/health``, ``/ready``,
``/openapi.json`` and, when ``metrics_auth=False``, ``/metrics`` needs
``Authorization: Bearer <token>``):

==============================  ===============================================================
``POST /v1/decide``             a request -> its decision (the ``helpdesk-policy decide`` contract)
``POST /v1/explain``            a request -> the numbered steps for a helpdesk agent (text/plain)
``POST /v1/verify``             ``{decision, evidence}`` -> every check, ``ok``, ``closable``
``POST /v1/authorize``          ``{request, evidence?, max_level?}`` -> a permit, an escalation or
                                a refusal (the configured authorizer; 501 without one)
``POST /v1/webhooks/{system}``  a ticketing system's payload -> ``{decision, write_back}``
``GET /health``                 the process answers
``GET /ready``                  the engines can decide (a cached self-check decision; 503 if not)
``GET /metrics``                Prometheus text format (:mod:`~helpdesk_policy.service.metrics`)
``GET /openapi.json``           the OpenAPI 3.1 document of this app
==============================  ===============================================================

Fail closed (CISA AA23-320A; NIST CSF 2.0 PR.AA): no error becomes a looser
decision. Invalid input is a 422 naming every bad field, never a guess. An
engine failure gives the engine chain's degraded decision, as the library
gives it (the next engine, or the strict level). A missed per-request
deadline, a failing authorizer or facts provider are a 503 with no decision
and no permit: nothing to act on. Bearer tokens are compared in constant
time (:mod:`~helpdesk_policy.service.auth`), the body limit is enforced while
the body is read, and JSON is parsed strictly (:mod:`helpdesk_policy.loading`).

Stateless: an app keeps no state between requests but its counters and the
cached readiness outcome, so replicas behind a load balancer are
interchangeable. What must be shared lives elsewhere: the decision log
(``log_sink``), policy exceptions (``exceptions=``), and the authorizer's
permit store (a permit is single-use across every replica, so its store
must be shared, e.g. the ledger).

The guard (:mod:`helpdesk_policy.agents`) and the ticketing adapters
(:mod:`helpdesk_policy.integrations`) are wired in by whoever builds the app,
through :class:`~helpdesk_policy.service.protocols.Authorizer` and
:class:`~helpdesk_policy.service.protocols.WebhookHandler`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import FieldError, InvalidConfigError
from ..facade import HelpdeskPolicy
from .auth import TOKEN_ENV, BearerTokens, load_tokens
from .errors import EXTRA_HINT, ServiceDependencyError, ServiceError
from .protocols import AuthorizationResult, Authorizer, Webhook, WebhookHandler

if TYPE_CHECKING:
    from starlette.applications import Starlette

__all__ = [
    "create_app",
    "Authorizer",
    "AuthorizationResult",
    "WebhookHandler",
    "Webhook",
    "BearerTokens",
    "load_tokens",
    "ServiceError",
    "ServiceDependencyError",
    "TOKEN_ENV",
    "EXTRA_HINT",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_DEADLINE_S",
]

#: The default body limit: a request is under 2 KB; a ticketing system's
#: webhook payload (an incident with its fields) a few tens of KB.
DEFAULT_MAX_BODY_BYTES = 256 * 1024

#: The default per-request deadline, in seconds. In-process engines answer in
#: milliseconds; give the policy's per-engine ``timeout`` less than this so a
#: slow engine is passed over for the next one before the request runs out.
DEFAULT_DEADLINE_S = 2.0

#: What a webhook system may be called (it is a URL path segment and a label).
_SYSTEM_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")

#: Packages of the extra; an ImportError naming another is a real bug, not a missing extra.
_EXTRA_PACKAGES = frozenset({"starlette", "anyio", "uvicorn"})


def create_app(
    policy: HelpdeskPolicy,
    *,
    token: str | Sequence[str] | BearerTokens | None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    deadline_s: float = DEFAULT_DEADLINE_S,
    authorizer: Authorizer | None = None,
    webhooks: Mapping[str, WebhookHandler] | None = None,
    metrics_auth: bool = True,
    decision_key: bytes | str | None = None,
    ready_ttl_s: float = 5.0,
    own_policy: bool = False,
) -> Starlette:
    """The decision service as an ASGI app (Starlette), for uvicorn or any ASGI server.

    Args:
        policy: the :class:`~helpdesk_policy.facade.HelpdeskPolicy` that
            decides. Its decision-log sink, exceptions source and engine
            ``timeout`` apply as they do in-process.
        token: the accepted bearer token(s). Required, so that no service
            starts open by omission; ``None`` turns authentication off (only
            behind something that authenticates, e.g. a mesh with mTLS).
            Read them with :func:`load_tokens` (a file or the environment).
        max_body_bytes: the largest request body; larger is a 413, refused
            from ``Content-Length`` before reading and counted while reading.
        deadline_s: how long a request may take, body included; then 503
            ``deadline_exceeded`` (408 while the body is still arriving) and
            no decision.
        authorizer: what answers ``/v1/authorize`` (the guard); without
            one that endpoint answers 501.
        webhooks: ``{system: handler}`` for ``/v1/webhooks/{system}``
            (``servicenow``, ``jira``, ``zendesk``…; lower-case letters,
            digits, ``-`` and ``_``).
        metrics_auth: whether ``/metrics`` needs the bearer token (a
            Prometheus scrape job can send one: ``authorization:
            credentials_file``).
        decision_key: when set, every decision the service returns carries
            ``X-Decision-Signature`` (HMAC-SHA256 of the decision with this
            key) and ``/v1/verify`` accepts only a decision whose signature
            matches, so a caller cannot have evidence checked against a
            decision it wrote itself. Give every replica the same key.
        ready_ttl_s: how long a readiness outcome is reused.
        own_policy: close ``policy`` when the app shuts down.

    Raises:
        InvalidConfigError: naming every bad argument (never a token's value).
        ServiceDependencyError: the ``service`` extra is not installed.
    """
    problems: list[FieldError] = []
    tokens: BearerTokens | None = None
    if not isinstance(policy, HelpdeskPolicy):
        problems.append(FieldError("policy", "must be a HelpdeskPolicy"))
    if isinstance(token, BearerTokens):
        tokens = token
    elif token is not None:
        try:
            tokens = BearerTokens([token] if isinstance(token, str) else list(token))
        except InvalidConfigError as exc:
            problems.extend(exc.errors)
    if isinstance(max_body_bytes, bool) or not isinstance(max_body_bytes, int) or max_body_bytes < 1:
        problems.append(FieldError("max_body_bytes", "must be a positive integer (bytes)"))
    if not _positive_seconds(deadline_s):
        problems.append(FieldError("deadline_s", "must be a positive, finite number of seconds"))
    if not _positive_seconds(ready_ttl_s):
        problems.append(FieldError("ready_ttl_s", "must be a positive, finite number of seconds"))
    if authorizer is not None and not callable(getattr(authorizer, "authorize", None)):
        problems.append(FieldError("authorizer", "must have an authorize(request, evidence, *, max_level) method"))
    hooks = dict(webhooks or {})
    for name, handler in hooks.items():
        where = f"webhooks.{name}" if isinstance(name, str) and name.isprintable() else "webhooks"
        if not isinstance(name, str) or not _SYSTEM_NAME.match(name):
            problems.append(FieldError(where, "a system name is 1-32 lower-case letters, digits, - and _"))
        elif not (callable(getattr(handler, "to_request", None)) and callable(getattr(handler, "write_back", None))):
            problems.append(FieldError(where, "must have to_request(payload) and write_back(decision, request)"))
    key = decision_key.encode("utf-8") if isinstance(decision_key, str) else decision_key
    if key is not None and (not isinstance(key, bytes) or len(key) < 16):
        problems.append(FieldError("decision_key", "must be at least 16 bytes (str or bytes)"))
    if problems:
        raise InvalidConfigError(problems)
    try:
        from .app import build_app
    except ImportError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing in _EXTRA_PACKAGES:
            raise ServiceDependencyError(missing) from exc
        raise
    return build_app(
        policy, tokens=tokens, max_body_bytes=max_body_bytes, deadline_s=float(deadline_s),
        authorizer=authorizer, webhooks=hooks, metrics_auth=metrics_auth, decision_key=key,
        ready_ttl_s=float(ready_ttl_s), own_policy=own_policy,
    )


def _positive_seconds(value: Any) -> bool:
    return (not isinstance(value, bool) and isinstance(value, int | float)
            and math.isfinite(value) and value > 0)
