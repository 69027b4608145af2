"""The facade's own contract: engine loading and the chain's last resort, the decision
envelope, the log sink and what its records keep of identifiers, closing (sync and async)."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import sys
import time
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpdesk_policy import (
    EngineUnavailableError,
    HelpdeskPolicy,
    InvalidConfigError,
    InvalidRequestError,
    Level,
    PolicyConfig,
    load_config,
)
from helpdesk_policy import facade, testing
from helpdesk_policy.engines import ENGINES
from helpdesk_policy.engines.base import BaseEngine
from helpdesk_policy.engines.native import NativeEngine
from helpdesk_policy.models import Decision, Request, parse_request
from helpdesk_policy.policyset import PolicySet

DENIED = {  # someone unrelated asking for another person's access: deny
    "request": {"id": "INC-2", "action": "access_grant", "channel": "phone"},
    "actor": {"id": "u-9", "type": "human", "relationship": "other", "authenticated": True, "auth_strength": "mfa"},
    "target": {"id": "u-1", "type": "human", "privileged": False, "privilege_tier": 0, "vip": False,
               "status": "active"},
}

REQUEST = {
    "request": {"id": "INC-1", "action": "password_reset", "channel": "phone",
                "justification": "my password is hunter2, please reset it", "emergency": False},
    "actor": {"id": "u-1", "type": "human", "relationship": "self", "authenticated": True,
              "auth_strength": "password", "roles": ["employee"]},
    "target": {"id": "u-1", "type": "human", "privileged": False, "privilege_tier": 0,
               "vip": False, "status": "active"},
    # No recent credential change (a missing history reads as a recent one, a callback).
    "context": {"recent_credential_change_hours": 1000},
}


def test_missing_extra_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(ENGINES, "rego", ("helpdesk_policy_no_such_module", "RegoEngine", "rego"))
    with pytest.raises(EngineUnavailableError, match=r"helpdesk-policy\[rego\]"):
        HelpdeskPolicy(engine="rego")


def test_unknown_engine_is_refused() -> None:
    with pytest.raises(EngineUnavailableError, match="unknown engine 'cedar'"):
        HelpdeskPolicy(engine="cedar")


def test_auto_without_the_rego_extra_decides_with_native_not_degraded_and_warns_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A missing optional install is not a fault: ``degraded`` stays false (an
    alert on it would fire on every decision), and one warning per process
    names the extra to install."""
    monkeypatch.setitem(ENGINES, "rego", ("helpdesk_policy_no_such_module", "RegoEngine", "rego"))
    monkeypatch.setattr(facade, "_MISSING_WARNED", set())  # as in a fresh process
    with caplog.at_level(logging.WARNING, logger="helpdesk_policy"):
        policy = HelpdeskPolicy()
        HelpdeskPolicy()
        decision = policy.decide(REQUEST)
    assert policy.engine_names == ["native"]
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, caplog.text
    assert "engine 'rego' unavailable" in warnings[0].getMessage()
    assert "pip install 'helpdesk-policy[rego]'" in warnings[0].getMessage()
    assert (decision.engine, decision.degraded) == ("native", False)


def test_a_named_engine_failing_at_runtime_hands_over_to_native(monkeypatch: pytest.MonkeyPatch) -> None:
    """``engine="rego"`` alone still ends its chain with the native mirror
    (stock policy): a rego failure is a degraded native decision, not the
    strict answer."""
    policy = HelpdeskPolicy(engine="rego")
    assert policy.engine_names == ["rego", "native"]
    expected = HelpdeskPolicy(engine="native").decide(DENIED)

    def broken(request: object) -> object:
        raise RuntimeError("interpreter crashed")

    monkeypatch.setattr(policy.engines[0], "evaluate", broken)
    decision = policy.decide(DENIED)
    assert (decision.engine, decision.degraded) == ("native", True)
    assert decision.parity_key() == expected.parity_key() and decision.level is Level.DENY


def test_the_stock_strict_level_is_deny() -> None:
    assert load_config().strict_level is Level.DENY
    assert PolicyConfig.model_fields["strict_level"].default is Level.DENY
    assert HelpdeskPolicy(engine="native", config={"strict_level": "callback"}).config.strict_level is Level.CALLBACK


def test_auto_decides_the_stock_rules_with_native_and_the_interpreter_behind_it() -> None:
    """The fastest evaluator proven for the policy first: the native mirror for
    the stock rules (not the compiled Rego, which is slower for them), rego-cpp
    as its fallback."""
    policy = HelpdeskPolicy()
    assert policy.engine_names == ["native", "rego"]
    decision = policy.decide(REQUEST)
    assert (decision.engine, decision.degraded) == ("native", False)


def test_importing_the_package_does_not_import_engines() -> None:
    import subprocess

    code = "import helpdesk_policy, sys; print(sorted(m for m in ('regopy', 'opa_client', 'requests', 'aiohttp', 'hypothesis') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_cold_start_loads_only_what_deciding_needs() -> None:
    """Importing the package, building a native policy and deciding once
    (issue 13: the cold start) load no asyncio, no PyYAML (the stock config
    and catalogue come from their JSON copy), no thread pool, and neither the
    evidence checks nor the policy exceptions; a decision log loads the
    package metadata (its version label) only then."""
    import subprocess

    code = (
        "import sys, json; from helpdesk_policy import HelpdeskPolicy;"
        f"p = HelpdeskPolicy(engine='native'); d = p.decide(json.loads({json.dumps(json.dumps(REQUEST))}));"
        "print(sorted(m for m in ('asyncio', 'yaml', 'concurrent.futures', 'helpdesk_policy.evidence',"
        " 'helpdesk_policy.policy_exceptions', 'helpdesk_policy.regocheck', 'helpdesk_policy.replay')"
        " if m in sys.modules)); print(d.level.value)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "step_up"]


def test_a_policy_without_a_log_sink_reads_no_package_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    facade._package_version.cache_clear()
    calls: list[str] = []
    real = facade._package_version.__wrapped__

    def counted() -> str:
        calls.append("read")
        return real()

    monkeypatch.setattr(facade, "_package_version", functools.cache(counted))
    policy = HelpdeskPolicy(engine="native")
    policy.decide(REQUEST)
    assert calls == []
    records: list[dict[str, Any]] = []
    policy.log_sink = records.append
    policy.decide(REQUEST)
    policy.decide(REQUEST)
    assert calls == ["read"] and records[0]["labels"]["version"] == real() == records[1]["labels"]["version"]


def test_decision_envelope() -> None:
    policy = HelpdeskPolicy(engine="native")
    first, second = policy.decide(REQUEST), policy.decide(dict(reversed(list(REQUEST.items()))))
    assert first.policy_revision == PolicySet.load().revision
    assert first.policy_revision.startswith("sha256:") and len(first.policy_revision) == 71
    assert first.input_digest == second.input_digest  # canonical: key order does not matter
    assert first.decision_id != second.decision_id
    uuid.UUID(first.decision_id)
    assert first.level is Level.STEP_UP


def test_revision_changes_with_config() -> None:
    assert HelpdeskPolicy(engine="native", config={"callback_tier": 3}).policy_revision != (
        HelpdeskPolicy(engine="native").policy_revision
    )


def test_log_sink_gets_a_redacted_record_without_secrets() -> None:
    records: list[dict] = []
    policy = HelpdeskPolicy(engine="native", log_sink=records.append)
    decision = policy.decide(REQUEST)
    (record,) = records
    assert record["decision_id"] == decision.decision_id
    assert record["input_digest"] == decision.input_digest
    # The result is the decision, its target (an identifier) pseudonymized like the input's.
    assert record["result"] == {**decision.to_dict(), "target_id": record["input"]["target"]["id"]}
    assert record["result"]["target_id"].startswith("pid:")
    assert record["input"]["request"]["justification"] == "[redacted]"
    assert "hunter2" not in json.dumps(record)


def test_a_failing_log_sink_does_not_change_the_decision(caplog: pytest.LogCaptureFixture) -> None:
    def broken(_: dict) -> None:
        raise OSError("disk full")

    policy = HelpdeskPolicy(engine="native", log_sink=broken)
    with caplog.at_level(logging.ERROR, logger="helpdesk_policy"):
        decision = policy.decide(REQUEST)
    assert decision.level is Level.STEP_UP
    assert "sink failed" in caplog.text


# ---------------------------------------------------------------- async-safe sinks


@pytest.mark.asyncio
async def test_an_async_sink_is_awaited_in_adecide() -> None:
    records: list[dict[str, Any]] = []

    async def sink(record: dict[str, Any]) -> None:
        await asyncio.sleep(0)
        records.append(record)

    decision = await HelpdeskPolicy(engine="native", log_sink=sink).adecide(REQUEST)
    assert [r["decision_id"] for r in records] == [decision.decision_id]


def test_an_async_sink_is_run_by_decide_too() -> None:
    # Outside any event loop: the coroutine is run to completion, never dropped unawaited.
    records: list[str] = []

    async def sink(record: dict[str, Any]) -> None:
        records.append(record["decision_id"])

    decision = HelpdeskPolicy(engine="native", log_sink=sink).decide(REQUEST)
    assert records == [decision.decision_id]


@pytest.mark.asyncio
async def test_an_async_sink_given_to_decide_inside_a_running_loop_is_scheduled() -> None:
    records: list[str] = []

    async def sink(record: dict[str, Any]) -> None:
        records.append(record["decision_id"])

    policy = HelpdeskPolicy(engine="native", log_sink=sink)
    decision = policy.decide(REQUEST)  # a sync call from async code: cannot block on the loop
    for _ in range(5):
        await asyncio.sleep(0)
    assert records == [decision.decision_id] and not policy._sink_tasks


@pytest.mark.asyncio
async def test_a_slow_plain_sink_never_stalls_the_event_loop() -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    def slow_sink(record: dict[str, Any]) -> None:
        time.sleep(0.3)  # blocking I/O in a user's sink

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    before = ticks
    await HelpdeskPolicy(engine="native", log_sink=slow_sink).adecide(REQUEST)
    task.cancel()
    assert ticks - before >= 10  # the loop kept running while the sink slept in a worker thread


@pytest.mark.asyncio
async def test_a_failing_async_sink_does_not_change_the_decision(caplog: pytest.LogCaptureFixture) -> None:
    async def broken(record: dict[str, Any]) -> None:
        raise RuntimeError("disk full")

    expected = HelpdeskPolicy(engine="native").decide(REQUEST)
    with caplog.at_level(logging.ERROR, "helpdesk_policy"):
        decision = await HelpdeskPolicy(engine="native", log_sink=broken).adecide(REQUEST)
    assert decision.parity_key() == expected.parity_key()
    assert "decision log sink failed" in caplog.text


def test_invalid_request_error_does_not_echo_values() -> None:
    bad = json.loads(json.dumps(REQUEST))
    bad["request"]["justification"] = 12345  # wrong type; value must not be echoed
    bad["target"]["privilege_tier"] = "hunter2"
    with pytest.raises(InvalidRequestError) as info:
        HelpdeskPolicy(engine="native").decide(bad)
    assert set(info.value.paths) == {"request.justification", "target.privilege_tier"}
    assert "hunter2" not in str(info.value) and "12345" not in str(info.value)


def test_decide_many_validates_everything_first() -> None:
    policy = HelpdeskPolicy(engine="native")
    bad = json.loads(json.dumps(REQUEST))
    bad["request"]["action"] = "format_disk"
    with pytest.raises(InvalidRequestError) as info:
        policy.decide_many([REQUEST, bad, REQUEST])
    assert info.value.paths == ["[1].request.action"]
    assert [d.level for d in policy.decide_many([REQUEST, REQUEST])] == [Level.STEP_UP, Level.STEP_UP]


def test_rego_engine_is_safe_across_threads() -> None:
    # One interpreter per thread over one compiled bundle (measured: a shared
    # interpreter corrupts results). 4 threads x 50 decisions must all agree.
    from concurrent.futures import ThreadPoolExecutor

    policy = HelpdeskPolicy(engine="rego")
    expected = HelpdeskPolicy(engine="native").decide(REQUEST).parity_key()
    with ThreadPoolExecutor(4) as pool:
        keys = list(pool.map(lambda _: policy.decide(REQUEST).parity_key(), range(200)))
    assert all(k == expected for k in keys)


# ------------------------------------------------------------ decision-log masking

#: An AI agent asking, for a person, to reissue an NHI's key: every identifier field an
#: NHI target can have is set. Its callback decision names the owners and the excluded
#: requesters in its constraints, which echo those identifiers.
IDENTIFIED = {
    "request": {"id": "INC-77", "action": "api_key_reissue", "channel": "api",
                "justification": "the old key is sk-live-hunter2", "emergency": False},
    "actor": {"id": "bot-helper", "type": "ai_agent", "relationship": "owner", "authenticated": True,
              "auth_strength": "mfa", "on_behalf_of": "alice.smith", "roles": ["helpdesk_bot", "reader"],
              "runs_as": "svc-helper-7"},
    "target": {"id": "key-prod-17", "type": "api_key", "privileged": False, "privilege_tier": 0, "vip": False,
               "status": "active", "environment": "production", "owners": ["alice.smith", "bot-helper"],
               "owner_active": True},
}
_ID_VALUES = ["bot-helper", "alice.smith", "helpdesk_bot", "reader", "key-prod-17", "svc-helper-7"]

#: A person asking by phone to reset their MFA with no enrolled factor left: their
#: manager of record must approve, and the decision's approver constraint names them.
MANAGED = {
    "request": {"id": "INC-78", "action": "mfa_reset", "channel": "phone"},
    "actor": {"id": "carol.jones", "type": "human", "relationship": "self", "authenticated": True,
              "auth_strength": "password"},
    "target": {"id": "carol.jones", "type": "human", "privileged": False, "privilege_tier": 0, "vip": False,
               "status": "active", "manager": "dave.boss"},
    "context": {"recent_credential_change_hours": 1000, "enrolled_factor_available": False},
}

#: The decision a record's result holds, without the envelope (engine, digest, ids).
_VERDICT_KEYS = ("level", "allowed", "requirements", "reasons", "obligations", "playbook", "constraints")


def _verdict_part(doc: dict) -> dict:
    return {k: doc[k] for k in _VERDICT_KEYS}


def _record(request: dict = IDENTIFIED, **options: object) -> dict:
    records: list[dict] = []
    HelpdeskPolicy(engine="native", log_sink=records.append, **options).decide(request)  # type: ignore[arg-type]
    (record,) = records
    return record


def _sha_pid(value: str, key: bytes | None = None) -> str:
    import hashlib
    import hmac

    mac = hmac.new(key, value.encode(), hashlib.sha256) if key else hashlib.sha256(value.encode())
    return "pid:" + mac.hexdigest()[:16]


def test_log_record_pseudonymizes_identifiers_by_default() -> None:
    record = _record()
    actor, target = record["input"]["actor"], record["input"]["target"]
    assert actor["id"] == _sha_pid("bot-helper") and actor["on_behalf_of"] == _sha_pid("alice.smith")
    assert actor["roles"] == [_sha_pid("helpdesk_bot"), _sha_pid("reader")]
    assert actor["runs_as"] == _sha_pid("svc-helper-7")
    assert target["id"] == _sha_pid("key-prod-17")
    # One identifier, one pseudonym: "the requester is an owner" stays visible.
    assert target["owners"] == [_sha_pid("alice.smith"), _sha_pid("bot-helper")] and actor["id"] in target["owners"]
    assert record["input"]["request"]["id"] == "INC-77" and target["environment"] == "production"
    assert record["input"]["request"]["justification"] == "[redacted]"
    # The decision's constraints name the same people: the same pseudonyms, in the engines' (sorted) order.
    constraints = record["result"]["constraints"]
    assert record["result"]["level"] == "callback" and constraints["approver"]["ids"] == []
    excluded = ("bot-helper", "alice.smith", "svc-helper-7")  # the agent, its principal, what it runs as
    assert constraints["approver"]["exclude"] == sorted(_sha_pid(v) for v in excluded)
    assert constraints["callback"]["ids"] == sorted(_sha_pid(v) for v in ("alice.smith", "bot-helper"))
    assert sorted(record["masked"]) == [
        "/input/actor/id", "/input/actor/on_behalf_of", "/input/actor/roles", "/input/actor/runs_as",
        "/input/request/justification", "/input/target/id", "/input/target/owners",
        "/result/constraints/approver/exclude", "/result/constraints/callback/ids", "/result/target_id",
    ]
    assert record["erased"] == []
    # The decision names its target: the same pseudonym as the input's target.id; its ticket is kept.
    assert record["result"]["target_id"] == target["id"] and record["result"]["request_id"] == "INC-77"
    text = json.dumps(record)
    assert not [v for v in _ID_VALUES if v in text] and "hunter2" not in text
    # Still a valid request, which decides as the original did (diff can replay it),
    # constraints and all.
    native = HelpdeskPolicy(engine="native")
    replayed, original = native.decide(record["input"]), native.decide(IDENTIFIED)
    assert _verdict_part(replayed.to_dict()) == _verdict_part(record["result"])
    assert replayed.parity_key()[:-1] == original.parity_key()[:-1]  # all but the constraints' identifiers


def test_log_record_pseudonyms_are_keyed_when_a_key_is_given() -> None:
    for key in (b"k" * 32, "a passphrase"):
        record = _record(log_pseudonym_key=key)
        raw = key.encode() if isinstance(key, str) else key
        assert record["input"]["actor"]["id"] == _sha_pid("bot-helper", raw) != _sha_pid("bot-helper")
        assert "passphrase" not in json.dumps(record)


def test_log_record_keeps_identifiers_when_asked() -> None:
    record = _record(log_identifiers="keep")
    expected = parse_request(IDENTIFIED).to_input()
    expected["request"]["justification"] = "[redacted]"  # free text is never kept
    assert record["input"] == expected
    assert record["input"]["actor"]["id"] == "bot-helper" and record["input"]["target"]["owners"] == [
        "alice.smith", "bot-helper"]
    assert (record["masked"], record["erased"]) == (["/input/request/justification"], [])
    decision = HelpdeskPolicy(engine="native").decide(IDENTIFIED)
    assert _verdict_part(record["result"]) == _verdict_part(decision.to_dict())  # constraints verbatim
    assert record["result"]["constraints"]["callback"]["ids"] == ["alice.smith", "bot-helper"]


def test_log_record_drops_identifiers_when_asked() -> None:
    record = _record(log_identifiers="drop")
    assert "id" not in record["input"]["actor"] and "id" not in record["input"]["target"]
    for section, key in (("actor", "on_behalf_of"), ("actor", "roles"), ("actor", "runs_as"), ("target", "owners")):
        assert key not in record["input"][section]
    constraints = record["result"]["constraints"]
    assert "exclude" not in constraints["approver"] and "ids" not in constraints["callback"]
    assert constraints["approver"]["ids"] == []  # names no one: kept
    assert sorted(record["erased"]) == [
        "/input/actor/id", "/input/actor/on_behalf_of", "/input/actor/roles", "/input/actor/runs_as",
        "/input/target/id", "/input/target/owners",
        "/result/constraints/approver/exclude", "/result/constraints/callback/ids", "/result/target_id",
    ]
    assert "target_id" not in record["result"] and record["result"]["request_id"] == "INC-77"
    assert record["masked"] == ["/input/request/justification"]
    assert record["input"]["request"]["id"] == "INC-77" and record["input"]["target"]["environment"] == "production"
    text = json.dumps(record)
    assert not [v for v in _ID_VALUES if v in text] and "hunter2" not in text


@pytest.mark.parametrize("mode", ["pseudonymize", "drop", "keep"])
def test_a_target_manager_is_masked_in_the_input_and_in_the_approver_constraint(mode: str) -> None:
    record = _record(MANAGED, log_identifiers=mode)
    approver = record["result"]["constraints"]["approver"]
    assert record["result"]["level"] == "manager_approval" and approver["of_record"] == "manager"
    text = json.dumps(record)
    if mode == "keep":
        assert record["input"]["target"]["manager"] == "dave.boss"
        assert (approver["ids"], approver["exclude"]) == (["dave.boss"], ["carol.jones"])
        return
    assert "dave.boss" not in text and "carol.jones" not in text
    if mode == "pseudonymize":
        assert record["input"]["target"]["manager"] == _sha_pid("dave.boss")
        assert (approver["ids"], approver["exclude"]) == ([_sha_pid("dave.boss")], [_sha_pid("carol.jones")])
        assert {"/input/target/manager", "/result/constraints/approver/ids",
                "/result/constraints/approver/exclude"} <= set(record["masked"])
        replayed = HelpdeskPolicy(engine="native").decide(record["input"])
        assert _verdict_part(replayed.to_dict()) == _verdict_part(record["result"])
    else:
        assert "manager" not in record["input"]["target"] and set(approver) == {"of_record", "ai_agent"}
        assert {"/input/target/manager", "/result/constraints/approver/ids",
                "/result/constraints/approver/exclude"} <= set(record["erased"])


def test_log_masking_options_are_checked_without_echoing_the_key() -> None:
    with pytest.raises(InvalidConfigError) as info:
        HelpdeskPolicy(engine="native", log_identifiers="hash", log_pseudonym_key=12345)  # type: ignore[arg-type]
    assert set(info.value.paths) == {"log_identifiers", "log_pseudonym_key"}
    assert "12345" not in str(info.value)
    with pytest.raises(InvalidConfigError, match="log_pseudonym_key"):
        HelpdeskPolicy(engine="native", log_pseudonym_key=b"")


_MARKED_IDS = st.one_of(
    st.sampled_from(["Qx-alice", "Qx-bob", "Qx-svc"]),  # a small pool, so ids collide (actor = owner, …)
    st.text(st.characters(categories=("L", "N")), min_size=3, max_size=12).map(lambda s: "Qx§" + s),
)


@pytest.mark.parametrize("mode", ["pseudonymize", "drop"])
@settings(max_examples=150)
@given(req=testing.requests(
    actor_id=_MARKED_IDS, target_id=_MARKED_IDS, on_behalf_of=st.one_of(st.none(), _MARKED_IDS),
    runs_as=st.one_of(st.none(), _MARKED_IDS), manager=st.one_of(st.none(), _MARKED_IDS),
    owners=st.lists(_MARKED_IDS, max_size=3, unique=True), roles=st.lists(_MARKED_IDS, max_size=3),
    justification=st.one_of(st.none(), st.text(max_size=40).map(lambda s: "Jx§" + s)),
    request_id=st.integers(1, 10**6).map(lambda n: f"INC-{n}"),
), key=st.one_of(st.none(), st.binary(min_size=1, max_size=16)))
def test_no_identifier_or_free_text_reaches_a_masked_record(mode: str, req: Request, key: bytes | None) -> None:
    """Guarantee 5: whatever the request, a pseudonymized or dropped record holds
    none of its identifier values (in its input, or echoed in the decision's
    constraints) and never its justification."""
    records: list[dict] = []
    policy = HelpdeskPolicy(engine="native", log_sink=records.append, log_identifiers=mode,  # type: ignore[arg-type]
                            log_pseudonym_key=key)
    decision = policy.decide(req)
    (record,) = records
    secrets = [req.actor.id, req.target.id, *req.actor.roles, *req.target.owners]
    secrets += [v for v in (req.actor.on_behalf_of, req.actor.runs_as, req.target.manager, req.request.justification)
                if v is not None]
    for text in (json.dumps(record), json.dumps(record, ensure_ascii=False)):
        leaked = [v for v in secrets if v in text or json.dumps(v)[1:-1] in text]
        assert not leaked, leaked
    if mode == "pseudonymize":  # and the record still replays to the decision it records
        replayed = HelpdeskPolicy(engine="native").decide(record["input"])
        assert _verdict_part(replayed.to_dict()) == _verdict_part(record["result"])
        assert replayed.parity_key()[:-1] == decision.parity_key()[:-1]


# ----------------------------------------------------------------------- closing


class _Closable(BaseEngine):
    """Delegates to native; records how it was closed."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.closed: list[str] = []
        self._native = NativeEngine(PolicySet.load())

    def evaluate(self, request: Request) -> object:
        return self._native.evaluate(request)

    def close(self) -> None:
        self.closed.append("close")


class _AsyncClosable(_Closable):
    async def aclose(self) -> None:
        await asyncio.sleep(0)
        self.closed.append("aclose")


def test_async_with_awaits_aclose_where_an_engine_has_one() -> None:
    first, second = _AsyncClosable("first"), _Closable("second")

    async def main() -> Decision:
        async with HelpdeskPolicy(engine=first, fallback=[second]) as policy:
            return await policy.adecide(REQUEST)

    assert asyncio.run(main()).engine == "first"
    assert (first.closed, second.closed) == (["aclose"], ["close"])


def test_async_with_an_opa_engine_leaves_no_unclosed_session(caplog: pytest.LogCaptureFixture) -> None:
    """``async with HelpdeskPolicy(engine="opa", …)`` closes the aiohttp session
    on its own loop: aiohttp never reports an "Unclosed client session"."""
    import gc
    import warnings

    pytest.importorskip("opa_client", reason="the opa engine needs the 'opa' extra")
    pytest.importorskip("opa_bindings", reason="the OPA test server needs opa-golib-python-bindings (make dev)")
    from opa_server import OpaTestServer

    async def main(url: str) -> Decision:
        async with HelpdeskPolicy(engine="opa", engine_options={"opa": {"url": url}}) as policy:
            return await policy.adecide(REQUEST)

    with OpaTestServer(PolicySet.load()) as server, warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with caplog.at_level(logging.DEBUG, logger="asyncio"):
            decision = asyncio.run(main(server.url))
            gc.collect()
    assert (decision.engine, decision.degraded) == ("opa", False)
    assert "Unclosed" not in caplog.text
    assert not [w for w in seen if "Unclosed" in str(w.message)]
