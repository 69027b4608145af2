"""The decision service's OpenAPI 3.1 document, built from the library's own models.

Request, decision, evidence and verification schemas come from the pydantic
models (:class:`~helpdesk_policy.models.Request`,
:class:`~helpdesk_policy.models.Decision` as serialised,
:class:`~helpdesk_policy.evidence.Evidence`,
:class:`~helpdesk_policy.evidence.Verification`), so the document cannot
drift from what the service validates. OpenAPI 3.1 uses JSON Schema 2020-12,
which is what pydantic writes.

The document describes the app it is built for: the webhook systems
configured (``system`` is an enum of them), whether ``/metrics`` needs the
bearer token, the body limit and the deadline.

>>> doc = build_openapi(version="0.1.0", webhooks=["servicenow"], authorizer=False)
>>> doc["openapi"], sorted(doc["paths"])[:3]
('3.1.0', ['/health', '/metrics', '/openapi.json'])
"""

from __future__ import annotations

import copy
import functools
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _dist_version
from collections.abc import Sequence
from typing import Any

from pydantic.json_schema import models_json_schema

from ..evidence import Evidence, Verification
from ..models import Decision, Request

__all__ = ["build_openapi", "component_schemas", "package_version"]

_REF = "#/components/schemas/{model}"


@functools.cache
def package_version() -> str:
    """The installed package's version (``unknown`` from a source tree that is not installed)."""
    try:
        return _dist_version("helpdesk-policy")
    except PackageNotFoundError:
        return "unknown"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(model=name)}


def component_schemas() -> dict[str, Any]:
    """The JSON Schemas of the models, keyed by name, refs pointing into ``components.schemas``."""
    _, doc = models_json_schema(
        [(Request, "validation"), (Decision, "serialization"), (Evidence, "validation"),
         (Verification, "serialization")],
        ref_template=_REF,
    )
    schemas: dict[str, Any] = dict(doc["$defs"])
    # What /v1/verify answers: the Verification plus its two derived answers.
    result = copy.deepcopy(schemas["Verification"])
    result["title"] = "VerificationResult"
    result["description"] = ("The closure check: every requirement and obligation of the decision, satisfied, "
                             "missing or violated; `ok` when nothing is missing or violated, `closable` when the "
                             "ticket may be closed.")
    result["properties"]["ok"] = {"type": "boolean"}
    result["properties"]["closable"] = {"type": "boolean"}
    result["required"] = [*result["required"], "ok", "closable"]
    schemas["VerificationResult"] = result
    schemas["Error"] = {
        "title": "Error",
        "type": "object",
        "description": "Why a request was refused. `errors` names every bad field (validation errors, 422).",
        "properties": {
            "error": {"type": "string", "description": "A stable code: `invalid_request`, `bad_json`, "
                                                       "`payload_too_large`, `unauthorized`, `deadline_exceeded`…"},
            "message": {"type": "string"},
            "errors": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"path": {"type": "string"}, "message": {"type": "string"}},
                    "required": ["path", "message"],
                },
            },
        },
        "required": ["error", "message"],
    }
    schemas["VerifyBody"] = {
        "title": "VerifyBody",
        "type": "object",
        "additionalProperties": False,
        "description": "A decision this service made and the evidence recorded for it.",
        "properties": {
            "decision": _ref("Decision"),
            "evidence": _ref("Evidence"),
            "decision_signature": {
                "type": "string",
                "description": "The `X-Decision-Signature` header the decision came with. Required when the "
                               "service signs decisions: a decision it did not sign is refused (422).",
            },
            "withdrawn_revisions": {
                "type": "array", "maxItems": 100,
                "items": {"type": "string", "minLength": 1, "maxLength": 128},
                "description": "Policy revisions withdrawn since: a decision made on one is flagged.",
            },
        },
        "required": ["decision", "evidence"],
    }
    schemas["AuthorizeBody"] = {
        "title": "AuthorizeBody",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "request": _ref("Request"),
            "evidence": {"anyOf": [_ref("Evidence"), {"type": "null"}]},
            "max_level": {"anyOf": [_ref("Level"), {"type": "null"}],
                          "description": "The most friction the caller can handle itself; beyond it, escalate."},
        },
        "required": ["request"],
    }
    schemas["WebhookResult"] = {
        "title": "WebhookResult",
        "type": "object",
        "properties": {
            "decision": _ref("Decision"),
            "write_back": {"description": "The decision in the ticketing system's own format "
                                          "(ServiceNow work notes, a Jira ADF comment, Zendesk internal-note HTML)."},
        },
        "required": ["decision", "write_back"],
    }
    return schemas


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


_ERROR = _json(_ref("Error"))


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "The body is not valid JSON (unreadable, not UTF-8, a duplicated key, NaN, nested too deep).",
        401: "No bearer token, or not an accepted one.",
        404: "Not configured here.",
        408: "The body did not arrive within the deadline.",
        413: "The body is larger than the limit (checked while reading, before parsing).",
        415: "The body is not `application/json`.",
        422: "Invalid fields: `errors` names every one, with its path.",
        501: "No authorizer is configured on this service.",
        503: "No answer within the per-request deadline, or a dependency failed: nothing was decided, "
             "so there is nothing to act on (fail closed). Retry later.",
    }
    return {str(c): {"description": text[c], "content": _ERROR} for c in codes}


_BODY_ERRORS = (400, 401, 408, 413, 415, 422, 503)
_DECISION_HEADERS = {
    "X-Decision-Signature": {
        "description": "HMAC-SHA256 of the decision, present when the service signs decisions: "
                       "send it back with the decision to /v1/verify.",
        "schema": {"type": "string"},
    },
}


def build_openapi(
    *,
    version: str,
    webhooks: Sequence[str] = (),
    authorizer: bool = False,
    metrics_auth: bool = True,
    max_body_bytes: int | None = None,
    deadline_s: float | None = None,
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of a service app.

    Args:
        version: the package version (``info.version``).
        webhooks: the webhook systems configured (``/v1/webhooks/{system}``).
        authorizer: whether ``/v1/authorize`` has an authorizer (else it answers 501).
        metrics_auth: whether ``/metrics`` needs the bearer token.
        max_body_bytes: the body limit, stated in the description.
        deadline_s: the per-request deadline, stated in the description.
    """
    limits = []
    if max_body_bytes is not None:
        limits.append(f"bodies up to {max_body_bytes} bytes")
    if deadline_s is not None:
        limits.append(f"an answer within {deadline_s:g} s or 503")
    open_ = {"security": []}
    paths: dict[str, Any] = {
        "/v1/decide": {"post": {
            "operationId": "decide",
            "summary": "Decide one request",
            "description": "The same contract as `helpdesk-policy decide` for one request object: the decision "
                           "JSON. An engine failure gives the degraded decision of the engine chain (never a "
                           "looser one); a missed deadline gives 503 and no decision.",
            "requestBody": {"required": True, "content": _json(_ref("Request"))},
            "responses": {"200": {"description": "The decision.", "headers": _DECISION_HEADERS,
                                  "content": _json(_ref("Decision"))}, **_errors(*_BODY_ERRORS)},
        }},
        "/v1/explain": {"post": {
            "operationId": "explain",
            "summary": "Decide one request and explain it to a helpdesk agent or to the requester",
            "description": "Plain text. `audience=agent` (the default): the numbered steps a helpdesk agent "
                           "follows, the same as `helpdesk-policy explain`. `audience=requester`: what to tell "
                           "the person asking (what happens next), never a reason, a risk signal or an "
                           "identifier that would coach a social engineer. The decision's id and level are in "
                           "the `X-Decision-Id` and `X-Decision-Level` headers.",
            "parameters": [{"name": "audience", "in": "query", "required": False,
                            "schema": {"type": "string", "enum": ["agent", "requester"], "default": "agent"}}],
            "requestBody": {"required": True, "content": _json(_ref("Request"))},
            "responses": {"200": {
                "description": "The steps, as plain text.",
                "headers": {"X-Decision-Id": {"schema": {"type": "string"}},
                            "X-Decision-Level": {"schema": _ref("Level")}, **_DECISION_HEADERS},
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }, **_errors(*_BODY_ERRORS)},
        }},
        "/v1/verify": {"post": {
            "operationId": "verify",
            "summary": "Check the evidence recorded for a decision: may the ticket be closed?",
            "requestBody": {"required": True, "content": _json(_ref("VerifyBody"))},
            "responses": {"200": {"description": "Every check, `ok` and `closable`.",
                                  "content": _json(_ref("VerificationResult"))},
                          **_errors(*_BODY_ERRORS)},
        }},
        "/v1/authorize": {"post": {
            "operationId": "authorize",
            "summary": "Authorize an agent's action: a permit, an escalation or a refusal",
            "description": ("Answered by the configured authorizer (the enforcing guard). "
                            if authorizer else "No authorizer is configured on this service: always 501. ")
                           + "An authorizer failure is a 503 and no permit (fail closed).",
            "requestBody": {"required": True, "content": _json(_ref("AuthorizeBody"))},
            "responses": {
                "200": {"description": "The guard's answer (`to_dict()` of a Permit, an Escalation or a Refusal).",
                        "content": _json({"type": "object"})},
                **_errors(*_BODY_ERRORS, 501),
            },
        }},
        "/health": {"get": {
            "operationId": "health", "summary": "The process is alive", **open_,
            "responses": {"200": {"description": "Alive.", "content": _json({
                "type": "object", "properties": {"status": {"const": "ok"}}, "required": ["status"]})}},
        }},
        "/ready": {"get": {
            "operationId": "ready", "summary": "The policy engines can decide (a cached self-check decision)",
            **open_,
            "responses": {
                "200": {"description": "Ready.", "content": _json(_ref("Readiness"))},
                "503": {"description": "Not ready: no engine could decide the self-check request in time.",
                        "content": _json(_ref("Readiness"))},
            },
        }},
        "/metrics": {"get": {
            "operationId": "metrics", "summary": "Prometheus metrics (text exposition format 0.0.4)",
            **({} if metrics_auth else open_),
            "responses": {"200": {"description": "The metrics.", "content": {"text/plain": {"schema": {"type": "string"}}}},
                          **(_errors(401) if metrics_auth else {})},
        }},
        "/openapi.json": {"get": {
            "operationId": "openapi", "summary": "This document", **open_,
            "responses": {"200": {"description": "The OpenAPI document.", "content": _json({"type": "object"})}},
        }},
    }
    system: dict[str, Any] = {"type": "string"}
    if webhooks:
        system["enum"] = sorted(webhooks)
    paths["/v1/webhooks/{system}"] = {"post": {
        "operationId": "webhook",
        "summary": "A ticketing system's webhook: its payload mapped to a request, decided, and the decision "
                   "in the system's own format",
        "description": ("Systems configured: " + ", ".join(sorted(webhooks)) + ". "
                        if webhooks else "No webhook is configured on this service: always 404. ")
                       + "A payload that cannot be mapped is a 422 naming the payload path and the request field; "
                         "a facts-provider failure is a 503: never a decision from partial facts.",
        "parameters": [{"name": "system", "in": "path", "required": True, "schema": system}],
        "requestBody": {"required": True, "content": _json({"type": "object"})},
        "responses": {"200": {"description": "The decision and its write-back.", "headers": _DECISION_HEADERS,
                              "content": _json(_ref("WebhookResult"))},
                      **_errors(*_BODY_ERRORS, 404)},
    }}
    schemas = component_schemas()
    schemas["Readiness"] = {
        "title": "Readiness",
        "type": "object",
        "properties": {
            "ready": {"type": "boolean"},
            "engine": {"type": "string", "description": "The engine that decided the self-check (`none`: no engine could)."},
            "degraded": {"type": "boolean"},
            "policy_revision": {"type": "string"},
            "checked_at": {"type": "string"},
            "reason": {"type": "string"},
        },
        "required": ["ready"],
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "helpdesk-policy decision service",
            "version": version,
            "description": "How much identity assurance a helpdesk request needs, and why, for systems that "
                           "cannot import Python. Every endpoint but /health, /ready, /openapi.json"
                           + ("" if metrics_auth else " and /metrics")
                           + " needs `Authorization: Bearer <token>`. Stateless: run as many replicas as needed "
                             "behind a load balancer."
                           + (f" Limits: {', '.join(limits)}." if limits else ""),
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer",
                                               "description": "A token from the service's --token-file or "
                                                              "$HELPDESK_POLICY_SERVICE_TOKEN."}},
        },
    }

