"""The decision service's ASGI app (Starlette): decide, explain, verify, authorize, webhooks.

Built by :func:`helpdesk_policy.service.create_app`; read that function's
docstring for the endpoints and their guarantees. This module needs the
``service`` extra (Starlette); :mod:`helpdesk_policy.service` imports it
only when an app is built, and names the extra when it is missing.

Every request goes through one wrapper (:meth:`_Service.endpoint`), in this
order:

1. the bearer token (401 before the body is read, so an unauthenticated
   client cannot make the service read or parse anything);
2. the per-request deadline, around everything that follows: reading the
   body (408 when the client is too slow) and answering (503
   ``deadline_exceeded`` and no decision when the service is: a 503 is
   never permission to act);
3. ``Content-Type: application/json`` (415), the body limit (413: a
   ``Content-Length`` over it is refused before reading, and a body without
   one is counted while it streams in and refused at the first byte over),
   strict JSON (400: :func:`helpdesk_policy.loading.load_json` refuses
   duplicate keys, NaN and deep nesting), validation (422 naming every bad
   field, as :class:`~helpdesk_policy.errors.InvalidRequestError` does);
4. the answer, counted in the metrics.

A bug is a 500 with no detail (logged with its traceback); nothing the
client sends is echoed in an error, so a credential pasted into a ticket
never comes back out of the service (guarantee 5).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import inspect
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.requests import Request as HTTPRequest
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from ..digest import mask_credentials
from ..errors import DocumentError, FieldError, HelpdeskPolicyError, InvalidRequestError, field_errors_from_pydantic
from ..evidence import Evidence
from ..facade import HelpdeskPolicy
from ..levels import Level
from ..loading import load_json
from ..models import Decision, Request, parse_request
from ..render import render_explain, requester_text
from ..render.audience import AUDIENCES
from .auth import BearerTokens
from .health import ReadinessCheck
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .metrics import ServiceMetrics
from .openapi import build_openapi, package_version
from .protocols import Authorizer, WebhookHandler

__all__ = ["build_app"]

log = logging.getLogger(__name__)

#: Headers on every answer: decisions are per request and must not be cached
#: by a proxy, and a JSON error must not be sniffed as HTML.
_SECURITY_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}

#: The header carrying a decision's HMAC when the service signs decisions.
SIGNATURE_HEADER = "X-Decision-Signature"

#: The most errors a 422 lists (all are counted in ``message``).
_MAX_LISTED = 100


class _Problem(Exception):
    """A refused or failed request: its status, stable code, message and the fields at fault."""

    def __init__(self, status: int, code: str, message: str, *, kind: str,
                 errors: Sequence[FieldError] = (), headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.kind = kind
        self.errors = tuple(errors)
        self.headers = dict(headers or {})

    @classmethod
    def invalid(cls, errors: Sequence[FieldError], what: str = "request") -> _Problem:
        return cls(422, f"invalid_{what}", f"invalid {what} ({len(errors)} error(s))", kind="invalid", errors=errors)

    def response(self) -> Response:
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.errors:
            body["errors"] = [{"path": e.path, "message": e.message} for e in self.errors[:_MAX_LISTED]]
        return JSONResponse(body, status_code=self.status, headers=self.headers)


class _Phase:
    """Where a request is, so a missed deadline can say whose fault it was."""

    __slots__ = ("reading",)

    def __init__(self) -> None:
        self.reading = False


def _prefixed(errors: Iterable[FieldError], prefix: str) -> list[FieldError]:
    return [FieldError(prefix if e.path == "(root)" else f"{prefix}.{e.path}", e.message) for e in errors]


class _VerifyBody(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    decision: Decision
    evidence: Evidence
    decision_signature: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    withdrawn_revisions: Annotated[list[Annotated[str, Field(min_length=1, max_length=128)]],
                                   Field(max_length=100)] = []


class _AuthorizeBody(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    # Validated with parse_request (cross-field rules included), not here.
    request: Any
    evidence: Evidence | None = None
    max_level: Level | None = None


def _body_errors(model: type[BaseModel], doc: Any) -> tuple[BaseModel | None, list[FieldError]]:
    if not isinstance(doc, Mapping):
        return None, [FieldError("(root)", "must be a JSON object")]
    try:
        return model.model_validate(doc), []
    except ValidationError as exc:
        return None, list(field_errors_from_pydantic(exc, model=model))


class _Service:
    """The state an app's handlers share: configuration, never per-client state."""

    def __init__(
        self,
        policy: HelpdeskPolicy,
        *,
        tokens: BearerTokens | None,
        max_body_bytes: int,
        deadline_s: float,
        authorizer: Authorizer | None,
        webhooks: Mapping[str, WebhookHandler],
        metrics_auth: bool,
        decision_key: bytes | None,
        ready_ttl_s: float,
    ) -> None:
        self.policy = policy
        self.tokens = tokens
        self.max_body_bytes = max_body_bytes
        self.deadline_s = deadline_s
        self.authorizer = authorizer
        self.webhooks = dict(webhooks)
        self.metrics_auth = metrics_auth
        self.decision_key = decision_key
        self.metrics = ServiceMetrics(version=package_version(), policy_revision=policy.policy_revision)
        self.readiness = ReadinessCheck(policy, deadline_s=deadline_s, ttl_s=ready_ttl_s)
        self.openapi = build_openapi(
            version=package_version(), webhooks=list(self.webhooks), authorizer=authorizer is not None,
            metrics_auth=metrics_auth, max_body_bytes=max_body_bytes, deadline_s=deadline_s,
        )

    # ----------------------------------------------------------------- wrapper

    def endpoint(
        self, name: str, handler: Callable[[HTTPRequest, _Phase], Awaitable[Response]], *,
        auth: bool = True, deadline: bool = True,
    ) -> Callable[[HTTPRequest], Awaitable[Response]]:
        """``handler`` behind the token check, the deadline, error mapping and the request counter."""

        async def run(request: HTTPRequest) -> Response:
            try:
                if auth:
                    self._authenticate(request)
                phase = _Phase()
                if not deadline:
                    response = await handler(request, phase)
                else:
                    try:
                        response = await asyncio.wait_for(handler(request, phase), self.deadline_s)
                    except asyncio.TimeoutError:
                        if phase.reading:
                            raise _Problem(408, "request_timeout",
                                           f"the body did not arrive within {self.deadline_s:g}s",
                                           kind="request_timeout", headers={"Connection": "close"}) from None
                        raise _Problem(503, "deadline_exceeded",
                                       f"no answer within the {self.deadline_s:g}s deadline: nothing was decided, "
                                       "do not act; retry later", kind="deadline_exceeded",
                                       headers={"Retry-After": "1"}) from None
            except _Problem as problem:
                self.metrics.observe_error(problem.kind)
                response = problem.response()
            except Exception:  # noqa: BLE001 - a bug: logged, answered without detail
                log.exception("the %s endpoint failed", name)
                self.metrics.observe_error("internal")
                response = _Problem(500, "internal_error", "internal error (logged); nothing was decided",
                                    kind="internal").response()
            response.headers.update(_SECURITY_HEADERS)
            self.metrics.observe_request(name, response.status_code)
            return response

        return run

    def _authenticate(self, request: HTTPRequest) -> None:
        if self.tokens is None:
            return
        result = self.tokens.check(request.headers.get("authorization"))
        if result == "ok":
            return
        challenge = 'Bearer realm="helpdesk-policy"'
        if result == "invalid":
            challenge += ', error="invalid_token"'
        raise _Problem(401, "unauthorized", "a valid bearer token is needed (Authorization: Bearer <token>)",
                       kind="unauthorized", headers={"WWW-Authenticate": challenge})

    async def _read_json(self, request: HTTPRequest, phase: _Phase) -> Any:
        """The body as JSON: media type, size limit while reading, strict parsing."""
        media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media != "application/json":
            raise _Problem(415, "unsupported_media_type", "the body must be application/json",
                           kind="unsupported_media")
        declared = request.headers.get("content-length")
        if declared is not None:
            if not (declared.isascii() and declared.isdigit()):
                raise _Problem(400, "bad_request", "Content-Length is not a number", kind="bad_json")
            if int(declared) > self.max_body_bytes:
                raise self._too_large()
        chunks: list[bytes] = []
        size = 0
        phase.reading = True
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > self.max_body_bytes:
                    raise self._too_large()
                chunks.append(chunk)
        except ClientDisconnect:
            raise _Problem(400, "client_disconnected", "the client went away before sending its body",
                           kind="disconnected") from None
        phase.reading = False
        raw = b"".join(chunks)
        if not raw.strip():
            raise _Problem(400, "bad_json", "the body is empty: expected a JSON object", kind="bad_json")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _Problem(400, "bad_json", f"the body is not UTF-8 (byte {exc.start})", kind="bad_json") from None
        try:
            return load_json(text, source="body")
        except DocumentError as exc:
            raise _Problem(400, "bad_json", str(exc), kind="bad_json") from None

    def _too_large(self) -> _Problem:
        # Connection: close, so the rest of an oversized body is never read.
        return _Problem(413, "payload_too_large", f"the body is larger than {self.max_body_bytes} bytes",
                        kind="too_large", headers={"Connection": "close"})

    # ---------------------------------------------------------------- deciding

    async def _decide(self, request: Request | Any, prefix: str = "") -> Decision:
        started = time.perf_counter()
        try:
            decision = await self.policy.adecide(request)
        except InvalidRequestError as exc:
            raise _Problem.invalid(_prefixed(exc.errors, prefix) if prefix else list(exc.errors)) from None
        self.metrics.observe_decision(decision.level.value, degraded=decision.degraded,
                                      seconds=time.perf_counter() - started)
        return decision

    def _signature(self, decision: Decision) -> dict[str, str]:
        if self.decision_key is None:
            return {}
        return {SIGNATURE_HEADER: sign_decision(self.decision_key, decision)}

    # ---------------------------------------------------------------- handlers

    async def decide(self, request: HTTPRequest, phase: _Phase) -> Response:
        doc = await self._read_json(request, phase)
        decision = await self._decide(doc)
        return JSONResponse(decision.to_dict(), headers=self._signature(decision))

    async def explain(self, request: HTTPRequest, phase: _Phase) -> Response:
        # Before the body: a bad query string costs no read and no decision.
        audience = request.query_params.get("audience", "agent")
        if audience not in AUDIENCES:
            raise _Problem.invalid([FieldError("audience", f"must be one of {list(AUDIENCES)}")])
        doc = await self._read_json(request, phase)
        try:
            req = parse_request(doc)
        except InvalidRequestError as exc:
            raise _Problem.invalid(exc.errors) from None
        decision = await self._decide(req)
        headers = {"X-Decision-Id": decision.decision_id, "X-Decision-Level": decision.level.value,
                   **self._signature(decision)}
        # The requester's text never carries a reason, a risk signal or an identifier
        # (helpdesk_policy.render.audience): nothing that would coach a social engineer.
        text = render_explain(decision, req) if audience == "agent" else requester_text(decision)
        return PlainTextResponse(text + "\n", headers=headers)

    async def verify(self, request: HTTPRequest, phase: _Phase) -> Response:
        doc = await self._read_json(request, phase)
        body, errors = _body_errors(_VerifyBody, doc)
        if body is None:
            raise _Problem.invalid(errors, "verification")
        assert isinstance(body, _VerifyBody)
        if self.decision_key is not None:
            if body.decision_signature is None:
                raise _Problem.invalid([FieldError(
                    "decision_signature", "is required: this service verifies only decisions it signed "
                                          f"(send the {SIGNATURE_HEADER} header the decision came with)")],
                    "verification")
            if not hmac.compare_digest(body.decision_signature.encode("utf-8", "replace"),
                                       sign_decision(self.decision_key, body.decision).encode("ascii")):
                raise _Problem.invalid([FieldError(
                    "decision_signature", "does not match the decision: verify only a decision this service "
                                          "made, unchanged")], "verification")
        result = self.policy.verify(body.decision, body.evidence, withdrawn_revisions=body.withdrawn_revisions)
        return JSONResponse({**result.model_dump(mode="json"), "ok": result.ok, "closable": result.closable})

    async def authorize(self, request: HTTPRequest, phase: _Phase) -> Response:
        if self.authorizer is None:
            raise _Problem(501, "not_configured", "no authorizer is configured on this service", kind="not_found")
        doc = await self._read_json(request, phase)
        body, errors = _body_errors(_AuthorizeBody, doc)
        req: Request | None = None
        if isinstance(doc, Mapping) and "request" in doc:
            try:
                req = parse_request(doc["request"])
            except InvalidRequestError as exc:
                errors = [e for e in errors if not (e.path == "request" or e.path.startswith("request."))]
                errors += _prefixed(exc.errors, "request")
        if errors or body is None or req is None:
            raise _Problem.invalid(errors or [FieldError("request", "Field required")], "authorization")
        assert isinstance(body, _AuthorizeBody)
        kwargs: dict[str, Any] = {} if body.max_level is None else {"max_level": body.max_level}
        try:
            result = await _call(self.authorizer, "authorize", req, body.evidence, **kwargs)
            answer = result.to_dict()
            if not isinstance(answer, Mapping):
                raise TypeError(f"to_dict() returned {type(answer).__name__}, not a mapping")
            encoded = json.dumps(dict(answer), ensure_ascii=False, allow_nan=False)
        except InvalidRequestError as exc:
            raise _Problem.invalid(exc.errors, "authorization") from None
        except Exception as exc:  # noqa: BLE001 - no permit when the authorizer fails (fail closed)
            log.warning("the authorizer failed: %s", mask_credentials(f"{type(exc).__name__}: {exc}"))
            raise _Problem(503, "authorizer_failed", "the authorizer failed: no permit was issued; "
                           "do not act; retry later", kind="upstream", headers={"Retry-After": "1"}) from None
        return Response(encoded, media_type="application/json")

    async def webhook(self, request: HTTPRequest, phase: _Phase) -> Response:
        system = request.path_params["system"]
        handler = self.webhooks.get(system)
        if handler is None:
            raise _Problem(404, "unknown_webhook", "no webhook is configured for this system here",
                           kind="not_found")
        payload = await self._read_json(request, phase)
        if not isinstance(payload, Mapping):
            raise _Problem.invalid([FieldError("(root)", "must be a JSON object (the webhook payload)")],
                                   "payload")
        try:
            mapped = await _call(handler, "to_request", payload)
        except Exception as exc:  # noqa: BLE001 - sorted below: the caller's fault or a dependency's
            errors = _field_errors_of(exc)
            if errors is not None:
                raise _Problem.invalid(errors, "payload") from None
            log.warning("the %s webhook mapping failed: %s", system,
                        mask_credentials(f"{type(exc).__name__}: {exc}"))
            raise _Problem(503, "mapping_failed", "the payload could not be mapped to a request (a facts provider "
                           "or directory failed): nothing was decided; retry later", kind="upstream",
                           headers={"Retry-After": "1"}) from None
        try:
            req = parse_request(mapped)
        except InvalidRequestError as exc:
            raise _Problem.invalid(_prefixed(exc.errors, "request"), "payload") from None
        decision = await self._decide(req)
        try:
            write_back = handler.write_back(decision, req)
            encoded = json.dumps({"decision": decision.to_dict(), "write_back": write_back},
                                 ensure_ascii=False, allow_nan=False)
        except Exception as exc:  # noqa: BLE001 - the decision stands; the caller gets none it cannot record
            log.warning("the %s write-back failed for decision %s: %s", system, decision.decision_id,
                        mask_credentials(f"{type(exc).__name__}: {exc}"))
            raise _Problem(503, "write_back_failed", "the decision could not be written in the system's format: "
                           "do not act; retry later", kind="upstream", headers={"Retry-After": "1"}) from None
        return Response(encoded, media_type="application/json", headers=self._signature(decision))

    async def health(self, request: HTTPRequest, phase: _Phase) -> Response:
        return JSONResponse({"status": "ok"})

    async def ready(self, request: HTTPRequest, phase: _Phase) -> Response:
        outcome = await self.readiness.check()
        self.metrics.set_ready(outcome.ready)
        return JSONResponse(outcome.to_dict(), status_code=200 if outcome.ready else 503)

    async def metrics_text(self, request: HTTPRequest, phase: _Phase) -> Response:
        return Response(self.metrics.render(), media_type=METRICS_CONTENT_TYPE)

    async def openapi_doc(self, request: HTTPRequest, phase: _Phase) -> Response:
        return JSONResponse(self.openapi)

    async def not_found(self, request: HTTPRequest, exc: Exception) -> Response:
        """Starlette's own 404 and 405 (an unknown path, a wrong method), as JSON errors."""
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        headers = dict(exc.headers or {}) if isinstance(exc, HTTPException) else {}
        code = {404: "not_found", 405: "method_not_allowed"}.get(status, "error")
        response = JSONResponse({"error": code, "message": code.replace("_", " ")}, status_code=status,
                                headers=headers)
        response.headers.update(_SECURITY_HEADERS)
        self.metrics.observe_request("other", status)
        return response


def sign_decision(key: bytes, decision: Decision) -> str:
    """``v1=`` + the hex HMAC-SHA256 of the decision's canonical JSON (sorted keys, no spaces).

    A decision read back (``Decision.model_validate(doc)``) signs the same as
    the one the service returned, whatever the key order or spacing it came in.
    """
    canonical = json.dumps(decision.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "v1=" + hmac.new(key, canonical.encode("utf-8"), hashlib.sha256).hexdigest()


def _field_errors_of(exc: BaseException) -> list[FieldError] | None:
    """The fields a mapping error names (an error with ``errors`` of FieldError), else None."""
    errors = getattr(exc, "errors", None)
    if not isinstance(exc, HelpdeskPolicyError) or errors is None or callable(errors):
        return None
    try:
        found = [e for e in errors if isinstance(e, FieldError)]
    except TypeError:
        return None
    return found or None


async def _call(obj: Any, method: str, *args: Any, **kwargs: Any) -> Any:
    """``obj.a<method>(...)`` awaited when it is async, else ``obj.<method>(...)`` in a worker thread."""
    async_method = getattr(obj, "a" + method, None)
    if async_method is not None and inspect.iscoroutinefunction(async_method):
        return await async_method(*args, **kwargs)
    fn = getattr(obj, method)
    if inspect.iscoroutinefunction(fn):
        return await fn(*args, **kwargs)
    result = await asyncio.to_thread(fn, *args, **kwargs)
    if inspect.isawaitable(result):
        result = await result
    return result


def build_app(
    policy: HelpdeskPolicy,
    *,
    tokens: BearerTokens | None,
    max_body_bytes: int,
    deadline_s: float,
    authorizer: Authorizer | None,
    webhooks: Mapping[str, WebhookHandler],
    metrics_auth: bool,
    decision_key: bytes | None,
    ready_ttl_s: float,
    own_policy: bool,
) -> Starlette:
    """The Starlette app (arguments checked by :func:`helpdesk_policy.service.create_app`)."""
    service = _Service(
        policy, tokens=tokens, max_body_bytes=max_body_bytes, deadline_s=deadline_s, authorizer=authorizer,
        webhooks=webhooks, metrics_auth=metrics_auth, decision_key=decision_key, ready_ttl_s=ready_ttl_s,
    )
    ep = service.endpoint
    routes = [
        Route("/v1/decide", ep("decide", service.decide), methods=["POST"]),
        Route("/v1/explain", ep("explain", service.explain), methods=["POST"]),
        Route("/v1/verify", ep("verify", service.verify), methods=["POST"]),
        Route("/v1/authorize", ep("authorize", service.authorize), methods=["POST"]),
        Route("/v1/webhooks/{system}", ep("webhook", service.webhook), methods=["POST"]),
        Route("/health", ep("health", service.health, auth=False, deadline=False), methods=["GET"]),
        Route("/ready", ep("ready", service.ready, auth=False, deadline=False), methods=["GET"]),
        Route("/metrics", ep("metrics", service.metrics_text, auth=metrics_auth, deadline=False), methods=["GET"]),
        Route("/openapi.json", ep("openapi", service.openapi_doc, auth=False, deadline=False), methods=["GET"]),
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # A first check at start-up: warms the engines (the Rego interpreter of
        # a worker thread) and sets the ready gauge before the first probe.
        outcome = await service.readiness.check()
        service.metrics.set_ready(outcome.ready)
        if not outcome.ready:
            log.error("the decision service starts NOT ready: %s", outcome.reason)
        try:
            yield
        finally:
            if own_policy:
                await policy.aclose()

    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={HTTPException: service.not_found})
    app.state.service = service
    return app
