"""The decision service over real HTTP: uvicorn on a loopback port, requests through sockets.

Every test talks to a running server (:class:`LiveServer`: uvicorn in a
thread, bound to ``127.0.0.1`` on a free port) with httpx or a raw socket;
nothing goes through an in-process test client. The OpenAPI document is
checked against the OpenAPI 3.1 meta-schema and then fuzzed with
schemathesis against the same running server: no generated input may get a
500, and every answer must match the document.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from prometheus_client.parser import text_string_to_metric_families

from helpdesk_policy import HelpdeskPolicy
from helpdesk_policy.errors import EngineError, FieldError, InvalidConfigError, InvalidRequestError
from helpdesk_policy.models import Request
from helpdesk_policy.service import BearerTokens, Webhook, create_app, load_tokens
from helpdesk_policy.service.auth import TOKEN_ENV

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "svc-token-AAAAAAAAAAAAAAAAAAAAAAAA"
OLD_TOKEN = "svc-token-old-BBBBBBBBBBBBBBBBBBB"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LIMIT = 8192


def example(name: str) -> dict[str, Any]:
    return json.loads((ROOT / "examples" / "requests" / name).read_text(encoding="utf-8"))


PORTAL_RESET = example("01-portal-password-reset.json")  # self_service
PHONE_ADMIN_MFA = example("02-phone-mfa-reset-admin.json")  # callback


class LiveServer:
    """uvicorn serving ``app`` on 127.0.0.1 in a daemon thread, until :meth:`stop`."""

    def __init__(self, app: Any) -> None:
        # IPPROTO_TCP, so that asyncio sets TCP_NODELAY on each accepted socket (no 40 ms delayed-ACK stalls).
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        self.client = httpx.Client(base_url=self.url, timeout=10)

    def stop(self) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()

    def metric(self, name: str, **labels: str) -> float:
        """One sample of the server's /metrics, parsed by Prometheus's own parser."""
        text = self.client.get("/metrics", headers=AUTH).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    return sample.value
        raise AssertionError(f"no sample {name}{labels} in /metrics")


@pytest.fixture(scope="module")
def native() -> Iterator[HelpdeskPolicy]:
    policy = HelpdeskPolicy(engine="native")
    yield policy
    policy.close()


# ----------------------------------------------------------------- test doubles


class FakeResult:
    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc

    def to_dict(self) -> dict[str, Any]:
        return self.doc


class FakeAuthorizer:
    """Records its calls; escalates anything above max_level (default step_up)."""

    def __init__(self, policy: HelpdeskPolicy) -> None:
        self.policy = policy
        self.calls: list[tuple[str, bool, Any]] = []

    def authorize(self, request: Request, evidence: Any = None, *, max_level: Any = "step_up") -> FakeResult:
        if request.request.id == "BOOM":
            raise RuntimeError("permit store down")
        self.calls.append((request.request.id, evidence is not None, max_level))
        decision = self.policy.decide(request)
        outcome = "permit" if decision.level <= max_level else "escalate"
        return FakeResult({"outcome": outcome, "decision_id": decision.decision_id, "level": decision.level.value})


def _ticket_to_request(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A toy mapping: {"number", "caller", "contact_type"} onto the stock phone MFA reset."""
    if payload.get("contact_type") == "directory-down":
        raise ConnectionError("directory at ldap://10.0.0.1 password=hunter2 unreachable")
    errors = [FieldError(f"payload.{k} -> {v}", "missing") for k, v in (("number", "request.id"),
                                                                       ("caller", "actor.id")) if k not in payload]
    if errors:
        raise InvalidRequestError(errors)
    doc = json.loads(json.dumps(PHONE_ADMIN_MFA))
    doc["request"]["id"] = payload["number"]
    doc["actor"]["id"] = doc["target"]["id"] = payload["caller"]
    return doc


def _work_note(decision: Any, request: Request) -> dict[str, str]:
    return {"work_notes": f"[code]{request.request.id}: {decision.level.value}[/code]"}


class SlowEngine:
    """An engine that never answers in time (an async hang the deadline must cut)."""

    name = "slow"

    def evaluate(self, request: Request) -> Any:
        time.sleep(30)

    async def aevaluate(self, request: Request) -> Any:
        await asyncio.sleep(30)

    def close(self) -> None:
        pass


class BrokenEngine:
    name = "broken"

    def evaluate(self, request: Request) -> Any:
        raise EngineError("down", engine=self.name)

    async def aevaluate(self, request: Request) -> Any:
        raise EngineError("down", engine=self.name)

    def close(self) -> None:
        pass


# ----------------------------------------------------------------- the server


@pytest.fixture(scope="module")
def live(native: HelpdeskPolicy) -> Iterator[LiveServer]:
    app = create_app(
        native, token=[TOKEN, OLD_TOKEN], max_body_bytes=LIMIT, deadline_s=2.0,
        authorizer=FakeAuthorizer(native),
        webhooks={"servicenow": Webhook(to_request=_ticket_to_request, write_back=_work_note)},
    )
    server = LiveServer(app)
    yield server
    server.stop()


def test_decide_returns_the_decision_contract(live: LiveServer, native: HelpdeskPolicy) -> None:
    r = live.client.post("/v1/decide", json=PHONE_ADMIN_MFA, headers=AUTH)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.headers["cache-control"] == "no-store"
    doc = r.json()
    assert (doc["level"], doc["allowed"], doc["engine"], doc["degraded"]) == ("callback", True, "native", False)
    assert doc["requirements"] == ["identity_step_up", "manager_approval", "out_of_band_callback"]
    # The same object `helpdesk-policy decide` prints, but for its decision id.
    expected = native.decide(PHONE_ADMIN_MFA).to_dict()
    assert {k: v for k, v in doc.items() if k != "decision_id"} == \
           {k: v for k, v in expected.items() if k != "decision_id"}


def test_explain_is_the_agents_steps(live: LiveServer) -> None:
    r = live.client.post("/v1/explain", json=PHONE_ADMIN_MFA, headers=AUTH)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert r.headers["x-decision-level"] == "callback"
    lines = r.text.splitlines()
    assert lines[0].startswith("INC0041388: mfa_reset")
    assert "Decision: CALLBACK (allowed), playbook mfa-reset-callback" in lines
    # The requester is told what happens next, and nothing a social engineer could use.
    r = live.client.post("/v1/explain", params={"audience": "requester"}, json=PHONE_ADMIN_MFA, headers=AUTH)
    assert r.status_code == 200 and r.headers["x-decision-level"] == "callback"
    assert r.text.startswith("This request cannot be completed yet.")
    assert "calling back on contact details already on record" in r.text
    for leak in ("u-20417", "INC0041388", "privileged", "tier", "caller_id", "caller ID", "urgen"):
        assert leak not in r.text
    r = live.client.post("/v1/explain", params={"audience": "attacker"}, json=PHONE_ADMIN_MFA, headers=AUTH)
    assert r.status_code == 422 and [e["path"] for e in r.json()["errors"]] == ["audience"]


def test_verify_says_whether_the_ticket_may_close(live: LiveServer) -> None:
    decision = live.client.post("/v1/decide", json=PORTAL_RESET, headers=AUTH).json()
    assert decision["level"] == "self_service"
    now = datetime.now(timezone.utc).isoformat()
    evidence = {"decision_id": decision["decision_id"], "input_digest": decision["input_digest"],
                "requester_id": "u-48213", "authentication_event": "idp-evt-1",
                "outcome": {"status": "completed", "at": now}, "recorded_at": now}
    r = live.client.post("/v1/verify", json={"decision": decision, "evidence": evidence}, headers=AUTH)
    assert r.status_code == 200
    assert (r.json()["ok"], r.json()["closable"]) == (True, True)
    del evidence["authentication_event"]
    r = live.client.post("/v1/verify", json={"decision": decision, "evidence": evidence}, headers=AUTH)
    body = r.json()
    assert (body["ok"], body["closable"]) == (False, False)
    assert [i["check"] for i in body["items"] if i["status"] == "missing"] == ["obligation:record_evidence"]


def test_verify_names_every_bad_field_of_decision_and_evidence(live: LiveServer) -> None:
    decision = live.client.post("/v1/decide", json=PORTAL_RESET, headers=AUTH).json()
    tampered = {**decision, "level": "sideways"}
    evidence = {"decision_id": decision["decision_id"], "input_digest": "md5:x", "requester_id": "u-1",
                "recorded_at": "yesterday"}
    r = live.client.post("/v1/verify", json={"decision": tampered, "evidence": evidence, "extra": 1}, headers=AUTH)
    assert r.status_code == 422
    paths = {e["path"] for e in r.json()["errors"]}
    assert {"decision.level", "evidence.input_digest", "evidence.recorded_at", "extra"} <= paths
    assert "sideways" not in r.text and "yesterday" not in r.text  # values are never echoed


def test_a_signing_service_verifies_only_its_own_decisions(native: HelpdeskPolicy) -> None:
    server = LiveServer(create_app(native, token=TOKEN, decision_key="k" * 32))
    try:
        r = server.client.post("/v1/decide", json=PHONE_ADMIN_MFA, headers=AUTH)
        decision, signature = r.json(), r.headers["x-decision-signature"]
        assert signature.startswith("v1=") and len(signature) == 3 + 64
        now = datetime.now(timezone.utc).isoformat()
        evidence = {"decision_id": decision["decision_id"], "input_digest": decision["input_digest"],
                    "requester_id": "u-20417", "recorded_at": now}
        ok = server.client.post("/v1/verify", headers=AUTH, json={
            "decision": decision, "evidence": evidence, "decision_signature": signature})
        assert ok.status_code == 200 and ok.json()["closable"] is False  # nothing done yet: not closable
        # Lowering the decision to self_service (consistently: level, requirements, reasons,
        # playbook) would let a step-up-free closure through: the signature no longer matches.
        forged = native.decide(PORTAL_RESET).to_dict()
        forged.update(decision_id=decision["decision_id"], input_digest=decision["input_digest"])
        for body in ({"decision": forged, "evidence": evidence, "decision_signature": signature},
                     {"decision": decision, "evidence": evidence}):
            r = server.client.post("/v1/verify", json=body, headers=AUTH)
            assert r.status_code == 422
            assert [e["path"] for e in r.json()["errors"]] == ["decision_signature"]
    finally:
        server.stop()


def test_auth_is_required_and_constant_time_compared(live: LiveServer) -> None:
    r = live.client.post("/v1/decide", json=PHONE_ADMIN_MFA)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Bearer realm="helpdesk-policy"'
    r = live.client.post("/v1/decide", json=PHONE_ADMIN_MFA, headers={"Authorization": f"Bearer {TOKEN}x"})
    assert r.status_code == 401
    assert r.headers["www-authenticate"].endswith('error="invalid_token"')
    assert TOKEN not in r.text
    r = live.client.post("/v1/decide", json=PHONE_ADMIN_MFA, headers={"Authorization": f"Basic {TOKEN}"})
    assert r.status_code == 401
    # Both tokens of a rotation are accepted.
    assert live.client.post("/v1/decide", json=PHONE_ADMIN_MFA,
                            headers={"Authorization": f"bearer {OLD_TOKEN}"}).status_code == 200
    # Health, readiness and the OpenAPI document are open; metrics are not (by default).
    assert live.client.get("/health").json() == {"status": "ok"}
    assert live.client.get("/ready").status_code == 200
    assert live.client.get("/openapi.json").status_code == 200
    assert live.client.get("/metrics").status_code == 401


def test_unauthenticated_requests_are_refused_before_the_body_is_read(live: LiveServer) -> None:
    # A body far over the limit, and no token: 401, not 413 (nothing was read).
    r = live.client.post("/v1/decide", content=b"x" * (LIMIT * 4), headers={"Content-Type": "application/json"})
    assert r.status_code == 401


def test_a_body_over_the_limit_is_413_from_content_length(live: LiveServer) -> None:
    big = {**PHONE_ADMIN_MFA, "pad": "x" * LIMIT}
    r = live.client.post("/v1/decide", json=big, headers=AUTH)
    assert r.status_code == 413
    assert r.json()["error"] == "payload_too_large"


def test_a_chunked_body_is_cut_off_at_the_limit_while_reading(live: LiveServer) -> None:
    """No Content-Length: the server counts while reading and answers 413 without
    waiting for the end of a body that, here, never ends."""
    with socket.create_connection(("127.0.0.1", live.port), timeout=5) as s:
        s.sendall(b"POST /v1/decide HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Authorization: Bearer " + TOKEN.encode() + b"\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"x" * 1024
        for _ in range(LIMIT // 1024 + 2):  # just over the limit; no terminating chunk is ever sent
            s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        head = s.recv(4096).decode("latin-1")
    assert head.startswith("HTTP/1.1 413"), head[:80]
    assert "connection: close" in head.lower()


def test_bad_json_is_400_naming_the_problem(live: LiveServer) -> None:
    for body, detail in ((b'{"request": ', "not valid JSON"), (b'{"a": 1, "a": 2}', "duplicate key 'a'"),
                         (b'{"a": NaN}', "NaN"), (b"\xff\xfe{}", "not UTF-8"), (b"  ", "empty"),
                         (b"[" * 100 + b"]" * 100, "nested deeper than 64")):
        r = live.client.post("/v1/decide", content=body, headers={**AUTH, "Content-Type": "application/json"})
        assert r.status_code == 400, body
        assert r.json()["error"] == "bad_json"
        assert detail in r.json()["message"], (body, r.json())


def test_a_body_that_is_not_json_is_415(live: LiveServer) -> None:
    r = live.client.post("/v1/decide", content=json.dumps(PHONE_ADMIN_MFA),
                         headers={**AUTH, "Content-Type": "text/plain"})
    assert r.status_code == 415


def test_an_invalid_request_is_422_naming_every_bad_field(live: LiveServer) -> None:
    bad = json.loads(json.dumps(PHONE_ADMIN_MFA))
    bad["request"]["channel"] = "fax"
    bad["target"]["privilege_tier"] = 10
    bad["actor"]["colour"] = "blue"
    r = live.client.post("/v1/decide", json=bad, headers=AUTH)
    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "invalid_request"
    assert {e["path"] for e in body["errors"]} == {"request.channel", "target.privilege_tier", "actor.colour"}
    assert "blue" not in r.text


def test_metrics_count_decisions_by_level_and_their_latency(live: LiveServer) -> None:
    before_callback = live.metric("helpdesk_policy_decisions_total", level="callback")
    before_self = live.metric("helpdesk_policy_decisions_total", level="self_service")
    before_count = live.metric("helpdesk_policy_decision_duration_seconds_count")
    before_invalid = live.metric("helpdesk_policy_errors_total", kind="invalid")
    before_deny = live.metric("helpdesk_policy_decisions_total", level="deny")
    for _ in range(3):
        assert live.client.post("/v1/decide", json=PHONE_ADMIN_MFA, headers=AUTH).status_code == 200
    assert live.client.post("/v1/decide", json=PORTAL_RESET, headers=AUTH).status_code == 200
    assert live.client.post("/v1/decide", json={"request": {}}, headers=AUTH).status_code == 422
    assert live.metric("helpdesk_policy_decisions_total", level="callback") == before_callback + 3
    assert live.metric("helpdesk_policy_decisions_total", level="self_service") == before_self + 1
    assert live.metric("helpdesk_policy_decision_duration_seconds_count") == before_count + 4
    assert live.metric("helpdesk_policy_errors_total", kind="invalid") == before_invalid + 1
    assert live.metric("helpdesk_policy_decisions_total", level="deny") == before_deny
    assert live.metric("helpdesk_policy_decisions_degraded_total") == 0
    assert live.metric("helpdesk_policy_requests_total", endpoint="decide", status="200") >= 4
    # Every decision of a native engine takes well under a second: all in the le=1.0 bucket.
    assert live.metric("helpdesk_policy_decision_duration_seconds_bucket", le="1.0") == \
           live.metric("helpdesk_policy_decision_duration_seconds_count")
    assert live.metric("helpdesk_policy_ready") == 1


def test_webhook_maps_decides_and_writes_back(live: LiveServer) -> None:
    payload = {"number": "INC0099", "caller": "u-777", "contact_type": "phone"}
    r = live.client.post("/v1/webhooks/servicenow", json=payload, headers=AUTH)
    assert r.status_code == 200
    body = r.json()
    assert body["decision"]["level"] == "callback"
    assert body["write_back"] == {"work_notes": "[code]INC0099: callback[/code]"}


def test_webhook_errors_fail_closed(live: LiveServer, caplog: pytest.LogCaptureFixture) -> None:
    r = live.client.post("/v1/webhooks/servicenow", json={"contact_type": "phone"}, headers=AUTH)
    assert r.status_code == 422
    assert [e["path"] for e in r.json()["errors"]] == ["payload.number -> request.id", "payload.caller -> actor.id"]
    # A facts provider that fails: 503 and no decision, and its message (a password) stays in the log.
    before = live.metric("helpdesk_policy_decision_duration_seconds_count")
    r = live.client.post("/v1/webhooks/servicenow", headers=AUTH,
                         json={"number": "INC1", "caller": "u-1", "contact_type": "directory-down"})
    assert r.status_code == 503 and r.json()["error"] == "mapping_failed" and "decision" not in r.json()
    assert "hunter2" not in r.text
    assert "mapping failed" in caplog.text and "hunter2" not in caplog.text
    assert live.metric("helpdesk_policy_decision_duration_seconds_count") == before
    assert live.client.post("/v1/webhooks/jira", json={}, headers=AUTH).status_code == 404
    assert live.client.post("/v1/webhooks/servicenow", json=[1], headers=AUTH).status_code == 422


def test_authorize_goes_to_the_authorizer(live: LiveServer) -> None:
    r = live.client.post("/v1/authorize", json={"request": PORTAL_RESET}, headers=AUTH)
    assert r.status_code == 200 and r.json()["outcome"] == "permit"
    r = live.client.post("/v1/authorize", json={"request": PHONE_ADMIN_MFA, "max_level": "manager_approval"},
                         headers=AUTH)
    assert r.status_code == 200 and r.json()["outcome"] == "escalate"
    bad = {"request": {**PORTAL_RESET, "target": {**PORTAL_RESET["target"], "vip": "maybe"}}, "max_level": "lots"}
    r = live.client.post("/v1/authorize", json=bad, headers=AUTH)
    assert r.status_code == 422
    assert {e["path"] for e in r.json()["errors"]} == {"request.target.vip", "max_level"}
    # An authorizer that fails is a 503 and no permit, never a permit by default.
    boom = {"request": {**PORTAL_RESET, "request": {**PORTAL_RESET["request"], "id": "BOOM"}}}
    r = live.client.post("/v1/authorize", json=boom, headers=AUTH)
    assert r.status_code == 503 and r.json()["error"] == "authorizer_failed"


def test_authorize_without_an_authorizer_is_501(native: HelpdeskPolicy) -> None:
    server = LiveServer(create_app(native, token=TOKEN))
    try:
        r = server.client.post("/v1/authorize", json={"request": PORTAL_RESET}, headers=AUTH)
        assert r.status_code == 501 and r.json()["error"] == "not_configured"
        assert server.client.post("/v1/authorize", json={}).status_code == 401
        doc = server.client.get("/openapi.json").json()
        assert "501" in doc["paths"]["/v1/authorize"]["post"]["responses"]
    finally:
        server.stop()


def test_a_missed_deadline_is_503_and_no_decision() -> None:
    # The slow engine is the only one: a custom Engine, so no native mirror stands in.
    policy = HelpdeskPolicy(engine=SlowEngine())
    server = LiveServer(create_app(policy, token=TOKEN, deadline_s=0.3, ready_ttl_s=60))
    try:
        started = time.monotonic()
        r = server.client.post("/v1/decide", json=PHONE_ADMIN_MFA, headers=AUTH)
        assert time.monotonic() - started < 2
        assert r.status_code == 503
        assert r.headers["retry-after"] == "1"
        body = r.json()
        assert body["error"] == "deadline_exceeded" and "level" not in body and "allowed" not in body
        assert server.metric("helpdesk_policy_errors_total", kind="deadline_exceeded") == 1
        assert server.metric("helpdesk_policy_decision_duration_seconds_count") == 0
        # A client too slow to send its body gets 408 at the same deadline, and the connection closes.
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(b"POST /v1/decide HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Authorization: Bearer " + TOKEN.encode() + b"\r\nContent-Length: 100\r\n\r\n{\"request\"")
            head = s.recv(4096).decode("latin-1")
        assert head.startswith("HTTP/1.1 408"), head[:80]
        assert server.metric("helpdesk_policy_errors_total", kind="request_timeout") == 1
        # Nothing can decide in time: not ready, so a load balancer sends requests elsewhere.
        ready = server.client.get("/ready")
        assert ready.status_code == 503 and ready.json()["ready"] is False
        assert server.metric("helpdesk_policy_ready") == 0
    finally:
        server.stop()
        policy.close()


def test_an_engine_failure_is_the_degraded_decision_never_looser(custom_policy_dir: Path) -> None:
    # Stock policy: the native mirror answers for the broken engine, degraded.
    policy = HelpdeskPolicy(engine=BrokenEngine())
    server = LiveServer(create_app(policy, token=TOKEN))
    try:
        doc = server.client.post("/v1/decide", json=PHONE_ADMIN_MFA, headers=AUTH).json()
        assert (doc["level"], doc["engine"], doc["degraded"]) == ("callback", "native", True)
        assert server.metric("helpdesk_policy_decisions_degraded_total") == 1
        ready = server.client.get("/ready").json()
        assert (ready["ready"], ready["engine"], ready["degraded"]) == (True, "native", True)
    finally:
        server.stop()
        policy.close()
    # A custom policy nothing else can evaluate: the strict level (deny), and not ready.
    policy = HelpdeskPolicy(engine=BrokenEngine(), policy_dir=custom_policy_dir)
    server = LiveServer(create_app(policy, token=TOKEN))
    try:
        doc = server.client.post("/v1/decide", json=PORTAL_RESET, headers=AUTH).json()
        assert (doc["level"], doc["allowed"], doc["engine"], doc["degraded"]) == ("deny", False, "none", True)
        assert [r["code"] for r in doc["reasons"]] == ["engine_unavailable"]
        assert server.client.get("/ready").status_code == 503
        assert server.metric("helpdesk_policy_decisions_total", level="deny") == 1
    finally:
        server.stop()
        policy.close()


# ----------------------------------------------------------------- configuration


def test_the_module_doctests_run() -> None:
    import doctest

    from helpdesk_policy.service import auth, metrics, openapi, protocols

    for module in (auth, metrics, openapi, protocols):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__


def test_create_app_names_every_bad_argument(native: HelpdeskPolicy) -> None:
    with pytest.raises(InvalidConfigError) as info:
        create_app(native, token=["short", "has space in it 0123456789"], max_body_bytes=0, deadline_s=float("nan"),
                   webhooks={"Service Now": Webhook(_ticket_to_request, _work_note), "jira": object()},  # type: ignore[dict-item]
                   decision_key=b"k")
    assert info.value.paths == ["token[0]", "token[1]", "max_body_bytes", "deadline_s", "webhooks.Service Now",
                                "webhooks.jira", "decision_key"]
    assert "has space" not in str(info.value)
    with pytest.raises(TypeError):
        create_app(native)  # type: ignore[call-arg]  # the token is never left out by accident


def test_a_missing_extra_is_named(monkeypatch: pytest.MonkeyPatch, native: HelpdeskPolicy) -> None:
    import sys

    from helpdesk_policy.service import ServiceDependencyError

    for name in ["starlette", *(m for m in sys.modules if m.startswith("starlette."))]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "helpdesk_policy.service.app", raising=False)
    with pytest.raises(ServiceDependencyError, match=r"needs starlette.*pip install 'helpdesk-policy\[service\]'"):
        create_app(native, token=TOKEN)


def test_tokens_load_from_a_file_or_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"# rotated 2026-11\n{TOKEN}\n\n{OLD_TOKEN}\n", encoding="utf-8")
    path.chmod(0o600)
    assert load_tokens(path) == [TOKEN, OLD_TOKEN]
    assert load_tokens(environ={TOKEN_ENV: f" {TOKEN} ,{OLD_TOKEN}"}) == [TOKEN, OLD_TOKEN]
    assert load_tokens(environ={}) == []
    with pytest.raises(InvalidConfigError) as info:
        load_tokens(tmp_path / "missing")
    assert info.value.paths == ["token_file"]
    tokens = BearerTokens([TOKEN])
    assert TOKEN not in repr(tokens)
    assert [tokens.check(h) for h in (f"Bearer {TOKEN}", f"Bearer  {TOKEN} ", "Bearer", "", f"Token {TOKEN}")] == \
           ["ok", "ok", "invalid", "missing", "missing"]


def test_serve_refuses_to_start_without_a_token(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from helpdesk_policy.cli import main

    monkeypatch.delenv(TOKEN_ENV, raising=False)
    result = CliRunner().invoke(main, ["serve", "--engine", "native"])
    assert result.exit_code == 2
    assert "no bearer token" in result.output
    weak = tmp_path / "weak"
    weak.write_text("password\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["serve", "--engine", "native", "--token-file", str(weak)])
    assert result.exit_code == 2 and "token: is shorter than 16" in result.output
    assert "password" not in result.output.replace("--token-file", "")


def test_serve_workers_listen_with_tcp_nodelay() -> None:
    """``--workers N``: uvicorn binds the listener itself, without TCP_NODELAY (uvicorn #3149);
    serve sets it on the listener, which Linux copies to every accepted socket."""
    from helpdesk_policy.cli.serve import _nodelay_listener

    config = uvicorn.Config("x:y", host="127.0.0.1", port=0)
    with _nodelay_listener(uvicorn.Config):
        listener = config.bind_socket()
    plain = config.bind_socket()  # the patch is gone again
    try:
        assert listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        assert plain.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
        listener.listen()
        with socket.create_connection(listener.getsockname()):
            accepted, _ = listener.accept()
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        listener.close()
        plain.close()


def test_serve_runs_a_real_server(tmp_path: Path) -> None:
    """``helpdesk-policy serve`` in a subprocess: a token file, a decision over HTTP, a clean stop."""
    import signal
    import subprocess
    import sys

    path = tmp_path / "token"
    path.write_text(TOKEN + "\n", encoding="utf-8")
    path.chmod(0o600)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "helpdesk_policy", "serve", "--engine", "native", "--port", str(port),
         "--token-file", str(path), "--deadline-s", "1.5", "--max-body-bytes", "4096", "--no-access-log"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(url + "/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.stdout else ""
            time.sleep(0.1)
        r = httpx.post(url + "/v1/decide", json=PHONE_ADMIN_MFA, headers=AUTH, timeout=5)
        assert r.status_code == 200 and r.json()["level"] == "callback"
        big = httpx.post(url + "/v1/decide", json={"pad": "x" * 5000}, headers=AUTH, timeout=5)
        assert big.status_code == 413
        doc = httpx.get(url + "/openapi.json", timeout=5).json()
        assert "4096 bytes" in doc["info"]["description"]
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0, out
    assert TOKEN not in out


# ----------------------------------------------------------------- OpenAPI


def test_the_openapi_document_is_valid_openapi_3_1(live: LiveServer) -> None:
    import jsonschema_rs
    from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR

    doc = live.client.get("/openapi.json").json()
    OPENAPI_31_VALIDATOR.validate(doc)
    assert doc["openapi"] == "3.1.0"
    for name, schema in doc["components"]["schemas"].items():
        assert jsonschema_rs.meta.is_valid(schema), name
    operations = {(path, method) for path, item in doc["paths"].items() for method in item}
    assert operations == {("/v1/decide", "post"), ("/v1/explain", "post"), ("/v1/verify", "post"),
                          ("/v1/authorize", "post"), ("/v1/webhooks/{system}", "post"), ("/health", "get"),
                          ("/ready", "get"), ("/metrics", "get"), ("/openapi.json", "get")}
    assert doc["paths"]["/v1/webhooks/{system}"]["post"]["parameters"][0]["schema"]["enum"] == ["servicenow"]
    assert doc["paths"]["/health"]["get"]["security"] == []
    assert "security" not in doc["paths"]["/v1/decide"]["post"]  # the global bearer requirement applies
    # The decision the service returns matches the document's Decision schema.
    registry = jsonschema_rs.Registry([("urn:doc", {"components": doc["components"]})])
    validator = jsonschema_rs.validator_for({"$ref": "urn:doc#/components/schemas/Decision"}, registry=registry)
    validator.validate(live.client.post("/v1/decide", json=PHONE_ADMIN_MFA, headers=AUTH).json())


OPERATIONS = [("/v1/decide", "POST"), ("/v1/explain", "POST"), ("/v1/verify", "POST"), ("/v1/authorize", "POST"),
              ("/v1/webhooks/{system}", "POST"), ("/health", "GET"), ("/ready", "GET"), ("/metrics", "GET"),
              ("/openapi.json", "GET")]


@pytest.fixture(scope="module")
def openapi_schema(live: LiveServer) -> Any:
    return schemathesis.openapi.from_url(f"{live.url}/openapi.json")


#: Negative data needs something to make invalid: the GET endpoints take no input.
FUZZ = [(path, method, mode) for path, method in OPERATIONS
        for mode in (("positive", "negative") if method == "POST" else ("positive",))]


@pytest.mark.parametrize(("path", "method", "mode"), FUZZ)
def test_schemathesis_finds_no_server_error_and_no_undocumented_answer(
    openapi_schema: Any, path: str, method: str, mode: str,
) -> None:
    """Schemathesis generates bodies, parameters and headers from the document (valid ones,
    then invalid ones) and runs its default checks on each answer: never a 500, only
    documented status codes, content types and headers, bodies matching their schemas,
    invalid data refused with a 4xx, and a 2xx answer refused once the token is dropped.

    One check is left out: "schema-valid data is accepted". A request has cross-field
    rules no JSON Schema states (``auth_strength`` must be ``none`` when not
    authenticated, ``relationship: self`` needs the same actor and target id…), so a
    schema-valid request may rightly be a 422 naming the field.
    """
    from schemathesis.generation import GenerationMode
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    operation = openapi_schema[path][method]
    generation = GenerationMode.POSITIVE if mode == "positive" else GenerationMode.NEGATIVE
    statuses: list[int] = []

    @given(case=operation.as_strategy(generation_mode=generation))
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(case: Any) -> None:
        response = case.call(headers=AUTH)
        statuses.append(response.status_code)
        if response.status_code == 413:
            # A generated body over the size limit is refused before it is read: a rejection,
            # though not one schemathesis's "invalid data is rejected" check lists.
            assert response.json()["error"] == "payload_too_large"
            return
        case.validate_response(response, excluded_checks=[positive_data_acceptance])

    run()
    assert statuses and 500 not in statuses


def _valid_bodies(path: str, native: HelpdeskPolicy) -> Any:
    """Valid bodies for an operation: requests from :func:`helpdesk_policy.testing.request_dicts`
    (which keep the cross-field rules), real decisions, evidence bound to them."""
    from hypothesis import strategies as st

    from helpdesk_policy.testing import request_dicts

    if path in ("/v1/decide", "/v1/explain"):
        return request_dicts()
    if path == "/v1/authorize":
        return st.fixed_dictionaries({"request": request_dicts()},
                                     optional={"max_level": st.sampled_from(["self_service", "callback", "deny"])})
    if path == "/v1/webhooks/{system}":
        ids = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,15}\Z")
        return st.fixed_dictionaries({"number": ids, "caller": ids, "contact_type": st.just("phone")})

    def verify_body(doc: dict[str, Any], outcome: str, auth_event: bool) -> dict[str, Any]:
        decision = native.decide(doc).to_dict()
        now = datetime.now(timezone.utc).isoformat()
        evidence: dict[str, Any] = {"decision_id": decision["decision_id"], "input_digest": decision["input_digest"],
                                    "requester_id": "u-1", "outcome": {"status": outcome, "at": now},
                                    "recorded_at": now}
        if auth_event:
            evidence["authentication_event"] = "idp-evt-1"
        return {"decision": decision, "evidence": evidence}

    return st.builds(verify_body, request_dicts(), st.sampled_from(["completed", "refused", "abandoned"]),
                     st.booleans())


@pytest.mark.parametrize("path", ["/v1/decide", "/v1/explain", "/v1/verify", "/v1/authorize",
                                  "/v1/webhooks/{system}"])
def test_schemathesis_checks_every_answer_to_valid_requests(
    openapi_schema: Any, native: HelpdeskPolicy, path: str,
) -> None:
    """Valid bodies (the cross-field rules kept) sent as schemathesis cases, every default
    check on, "schema-valid data is accepted" included: each answer is a 200 whose
    body matches the document's schema (Decision, VerificationResult, WebhookResult)."""
    operation = openapi_schema[path]["POST"]
    statuses: list[int] = []
    system = {"system": "servicenow"} if "{system}" in path else None

    @given(body=_valid_bodies(path, native))
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(body: Any) -> None:
        case = operation.Case(body=body, media_type="application/json", path_parameters=system)
        statuses.append(case.call_and_validate(headers=AUTH).status_code)

    run()
    assert set(statuses) == {200}


def test_the_servicenow_webhook_example_runs_through_the_service() -> None:
    """examples/servicenow_webhook: `serve` with --facts, the sample incident posted, the work note back."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, str(root / "examples" / "servicenow_webhook" / "run.py")],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "HTTP 200" in proc.stdout
    assert "INC0010234: callback (identity_step_up, manager_approval, out_of_band_callback)" in proc.stdout
    assert "Checklist (complete every step" in proc.stdout
    assert "without the token: HTTP 401" in proc.stdout


def test_serve_wires_the_guard_and_the_shipped_webhooks(tmp_path: Path) -> None:
    """`serve`'s app: /v1/authorize is the real Guard, each shipped mapping a webhook (with --facts)."""
    from helpdesk_policy.agents import Permit, PermitVerifier
    from helpdesk_policy.cli.serve import ServeSettings, build_from_settings

    root = Path(__file__).resolve().parents[1]
    key = tmp_path / "permit.key"
    key.write_text("k" * 40, encoding="utf-8")
    app = build_from_settings(ServeSettings(engine="native", no_auth=True, permit_key_file=str(key),
                                            facts_file=str(root / "examples" / "servicenow_webhook" / "inventory.yaml")))
    server = LiveServer(app)
    try:
        r = server.client.post("/v1/authorize", json={"request": PORTAL_RESET})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["instruction"] == "perform"
        # An executor elsewhere, with the same key, checks and consumes the permit once.
        permit = Permit.from_dict(body["permit"])
        verifier = PermitVerifier(key="k" * 40)
        verifier.consume(permit)
        r = server.client.post("/v1/authorize", json={"request": PHONE_ADMIN_MFA})
        assert r.json()["instruction"] == "escalate"
        payload = (root / "examples" / "ticketing" / "servicenow_incident.json").read_bytes()
        r = server.client.post("/v1/webhooks/servicenow-incident", content=payload,
                               headers={"Content-Type": "application/json"})
        assert r.status_code == 200, r.text
        assert r.json()["decision"]["level"] == "callback"
        assert server.client.post("/v1/webhooks/zendesk", content=b"{}",
                                  headers={"Content-Type": "application/json"}).status_code == 422
    finally:
        server.stop()
        app.state.service.policy.close()
