"""The decision cache (issue 13, item 2): engine verdicts kept per policy revision and input digest.

What it must never do is the point: replay a degraded or fail-closed answer
after the outage, keep a decision (its id, its exceptions) rather than the
engines' verdict, or cache a policy whose answer depends on the clock, the
network or chance. What it must do: count hits and misses, stay bounded
(least recently used out first), give each decision its own id and log
record, and answer exactly what the engines would have.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import shutil
import threading
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from helpdesk_policy import HelpdeskPolicy
from helpdesk_policy.cache import (
    DEFAULT_CACHE_SIZE,
    NONDETERMINISTIC_BUILTINS,
    CacheInfo,
    DecisionCache,
    nondeterministic_calls,
)
from helpdesk_policy.engines.base import BaseEngine
from helpdesk_policy.engines.native import NativeEngine, decide_native
from helpdesk_policy.errors import InvalidConfigError
from helpdesk_policy.levels import Level
from helpdesk_policy.models import NO_ENGINE, Decision, Request, Verdict, parse_request
from helpdesk_policy.policy_exceptions import PolicyException, parse_exception
from helpdesk_policy.policyset import PolicySet
from helpdesk_policy.resources import stock_policy_dir

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "requests"


def _example(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / name).read_text(encoding="utf-8"))


PORTAL_RESET = _example("01-portal-password-reset.json")     # self_service
ADMIN_PHONE_RESET = _example("02-phone-mfa-reset-admin.json")  # callback (u-20417, mfa_reset by phone)
ADMIN_PHONE_RESET["context"]["risk_signals"] = []
OFFBOARDED_RESET = _example("13-password-reset-offboarded.json")  # deny


def _without_id(decision: Decision) -> dict[str, Any]:
    doc = decision.to_dict()
    doc.pop("decision_id")
    return doc


def _cached(**options: Any) -> HelpdeskPolicy:
    """The native engine with the cache on (it is off in front of native by default)."""
    return HelpdeskPolicy(engine="native", cache_size=options.pop("cache_size", 16), **options)


class _Broken:
    """Makes an engine instance fail until ``healed``."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.calls = 0

    def __call__(self, request: Request) -> Any:
        self.calls += 1
        raise RuntimeError("interpreter crashed")


# ----------------------------------------------------------------- the counts


def test_a_second_decision_of_the_same_request_is_a_hit() -> None:
    policy = _cached()
    first = policy.decide(PORTAL_RESET)
    assert policy.cache_info() == CacheInfo(hits=0, misses=1, maxsize=16, currsize=1, enabled=True, reason=None)
    second = policy.decide(dict(reversed(list(PORTAL_RESET.items()))))  # key order: the same request
    assert policy.cache_info() == CacheInfo(hits=1, misses=1, maxsize=16, currsize=1, enabled=True, reason=None)
    policy.decide(ADMIN_PHONE_RESET)
    assert policy.cache_info()[:4] == (1, 2, 16, 2)
    assert _without_id(second) == _without_id(first)
    assert (second.engine, second.degraded) == ("native", False)


def test_each_hit_gets_a_fresh_decision_id_and_its_own_log_record() -> None:
    records: list[dict[str, Any]] = []
    policy = _cached(log_sink=records.append)
    decisions = [policy.decide(PORTAL_RESET) for _ in range(3)]
    assert policy.cache_info()[:2] == (2, 1)
    ids = [d.decision_id for d in decisions]
    assert len(set(ids)) == 3 and all(uuid.UUID(i).version == 4 for i in ids)
    assert [r["decision_id"] for r in records] == ids
    assert len({r["input_digest"] for r in records}) == 1
    assert all(r["input_digest"] == d.input_digest for r, d in zip(records, decisions, strict=True))
    assert all(r["result"]["level"] == "self_service" and r["engine_errors"] == [] for r in records)


def test_a_hit_answers_what_the_engines_would_have() -> None:
    plain = HelpdeskPolicy(engine="native", cache_size=0)
    policy = _cached()
    for doc in (PORTAL_RESET, ADMIN_PHONE_RESET, OFFBOARDED_RESET):
        miss, hit = policy.decide(doc), policy.decide(doc)
        assert _without_id(hit) == _without_id(miss) == _without_id(plain.decide(doc))
        assert hit.to_json().replace(hit.decision_id, "") == miss.to_json().replace(miss.decision_id, "")
    assert policy.cache_info()[:2] == (3, 3)


def test_lists_of_a_decision_are_its_own() -> None:
    """A caller that edits a decision's lists (a misuse: the model is frozen)
    must not change what the next hit answers."""
    policy = _cached()
    first = policy.decide(ADMIN_PHONE_RESET)
    expected = _without_id(first)
    first.reasons.clear()
    first.obligations.clear()
    first.requirements.append("nothing")
    again = policy.decide(ADMIN_PHONE_RESET)
    assert policy.cache_info().hits == 1
    assert _without_id(again) == expected


def test_the_cache_is_bounded_least_recently_used_first() -> None:
    policy = _cached(cache_size=2)
    policy.decide(PORTAL_RESET)        # miss: [portal]
    policy.decide(ADMIN_PHONE_RESET)   # miss: [portal, admin]
    policy.decide(PORTAL_RESET)        # hit:  [admin, portal]
    policy.decide(OFFBOARDED_RESET)    # miss: [portal, offboarded]; admin goes
    assert policy.cache_info()[:4] == (1, 3, 2, 2)
    policy.decide(PORTAL_RESET)        # hit
    policy.decide(ADMIN_PHONE_RESET)   # miss again
    assert policy.cache_info()[:4] == (2, 4, 2, 2)
    policy.cache_clear()
    assert policy.cache_info()[:4] == (0, 0, 2, 0)


def test_threads_deciding_at_once_count_every_lookup() -> None:
    policy = _cached(cache_size=2)
    docs = [PORTAL_RESET, ADMIN_PHONE_RESET, OFFBOARDED_RESET]
    expected = {json.dumps(d, sort_keys=True): _without_id(HelpdeskPolicy(engine="native", cache_size=0).decide(d))
                for d in docs}
    wrong: list[str] = []
    ids: list[str] = []
    lock = threading.Lock()

    def work(offset: int) -> None:
        for i in range(60):
            doc = docs[(i + offset) % 3]
            decision = policy.decide(doc)
            with lock:
                ids.append(decision.decision_id)
                if _without_id(decision) != expected[json.dumps(doc, sort_keys=True)]:
                    wrong.append(doc["request"]["id"])

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    info = policy.cache_info()
    assert not wrong
    assert info.hits + info.misses == 240 and info.currsize <= 2
    assert len(set(ids)) == 240


def test_adecide_uses_the_cache_too() -> None:
    policy = _cached()

    async def run() -> list[Decision]:
        return [await policy.adecide(PORTAL_RESET), await policy.adecide(PORTAL_RESET)]

    first, second = asyncio.run(run())
    assert policy.cache_info()[:2] == (1, 1)
    assert _without_id(first) == _without_id(second) and first.decision_id != second.decision_id


# ------------------------------------------------------- never a degraded answer


def test_a_fallbacks_answer_is_never_cached_and_the_outage_does_not_outlive_itself(
    monkeypatch: pytest.MonkeyPatch, policy_set: PolicySet,
) -> None:
    """The first engine fails: the second one's (degraded) answer is not kept,
    so once the first engine is back it decides, and only then is it cached."""
    policy = HelpdeskPolicy(engine="native", fallback=[NativeEngine(policy_set)], cache_size=16)
    assert len(policy.engines) == 2 and policy.cache_info().enabled
    broken = _Broken(policy.engines[0])
    monkeypatch.setattr(policy.engines[0], "evaluate", broken)
    during = [policy.decide(ADMIN_PHONE_RESET) for _ in range(2)]
    assert [d.degraded for d in during] == [True, True] and broken.calls == 2
    assert policy.cache_info()[:4] == (0, 2, 16, 0)
    monkeypatch.undo()
    after = policy.decide(ADMIN_PHONE_RESET)
    assert after.degraded is False  # asked again: the outage is not replayed
    assert policy.cache_info()[:4] == (0, 3, 16, 1)
    assert policy.decide(ADMIN_PHONE_RESET).degraded is False
    assert policy.cache_info()[:2] == (1, 3)


def test_the_fail_closed_answer_is_never_cached(monkeypatch: pytest.MonkeyPatch, custom_policy_dir: Path) -> None:
    """No engine can decide (a custom policy set the native mirror refuses, its one engine failing)."""
    engine = NativeEngine(PolicySet.load())
    policy = HelpdeskPolicy(engine=engine, cache_size=16, policy_dir=custom_policy_dir)
    monkeypatch.setattr(engine, "evaluate", _Broken(engine))
    first = policy.decide(PORTAL_RESET)
    assert (first.engine, first.degraded, first.level) == (NO_ENGINE, True, Level.DENY)
    assert policy.cache_info()[:4] == (0, 1, 16, 0)
    monkeypatch.undo()
    second = policy.decide(PORTAL_RESET)
    assert (second.engine, second.degraded, second.level) == ("native", False, Level.SELF_SERVICE)
    assert policy.cache_info()[:4] == (0, 2, 16, 1)


# -------------------------------------------- exceptions: after the cache, always

NOW = datetime.now(timezone.utc)


def _exception() -> PolicyException:
    return parse_exception({
        "id": "EXC-2026-0042", "target_id": "u-20417", "action": "mfa_reset", "channels": ["phone"],
        "level": "manager_approval", "requested_by": "u-30001", "reason": "travel_no_callback_contact",
        "reference": "RISK-2026-117", "approved_by": "u-40002", "approver_type": "human",
        "approved_at": NOW - timedelta(hours=1), "expires_at": NOW + timedelta(hours=47),
    })


class _Switchable:
    """An exception source whose exception can be revoked between decisions."""

    def __init__(self) -> None:
        self.items = [_exception()]

    def exceptions_for(self, target_id: str, action: str) -> list[PolicyException]:
        return [e for e in self.items if e.target_id == target_id and e.action.value == action]


def test_only_the_engine_verdict_is_cached_and_exceptions_apply_on_every_decision() -> None:
    source = _Switchable()
    policy = _cached(exceptions=source)
    lowered = policy.decide(ADMIN_PHONE_RESET)
    assert lowered.level is Level.MANAGER_APPROVAL and [e.status for e in lowered.exceptions] == ["applied"]
    again = policy.decide(ADMIN_PHONE_RESET)  # a hit, the exception applied again
    assert policy.cache_info()[:2] == (1, 1)
    assert again.level is Level.MANAGER_APPROVAL and _without_id(again) == _without_id(lowered)
    source.items = []  # revoked: the next hit is the policy's own level
    revoked = policy.decide(ADMIN_PHONE_RESET)
    assert policy.cache_info()[:2] == (2, 1)
    assert revoked.level is Level.CALLBACK and revoked.exceptions == []
    assert not any(r.code == "policy_exception_applied" for r in revoked.reasons)
    assert _without_id(revoked) == _without_id(HelpdeskPolicy(engine="native", cache_size=0).decide(ADMIN_PHONE_RESET))


# ------------------------------------------------------ when the cache is off


def test_off_by_default_in_front_of_the_native_engine_and_on_for_rego() -> None:
    native = HelpdeskPolicy(engine="native")
    assert native.cache_info().enabled is False and "native" in (native.cache_info().reason or "")
    native.decide(PORTAL_RESET)
    native.decide(PORTAL_RESET)
    assert native.cache_info()[:4] == (0, 0, 0, 0)
    rego = HelpdeskPolicy(engine="rego")
    assert rego.cache_info() == CacheInfo(0, 0, DEFAULT_CACHE_SIZE, 0, True, None)
    first, second = rego.decide(ADMIN_PHONE_RESET), rego.decide(ADMIN_PHONE_RESET)
    assert rego.cache_info()[:2] == (1, 1)
    assert (second.engine, second.degraded) == ("rego", False) and _without_id(first) == _without_id(second)


def test_opa_is_cached_only_when_asked_and_a_hit_never_reaches_the_server(policy_set: PolicySet) -> None:
    """The OPA server logs each decision under the id the decision carries: by
    default every decision goes to it; with a cache, a hit has an id of its own."""
    from opa_server import OpaTestServer

    with OpaTestServer(policy_set) as server:
        opts = {"opa": {"url": server.url}}
        with HelpdeskPolicy(engine="opa", engine_options=opts) as policy:
            assert not policy.cache_info().enabled and "OPA server" in (policy.cache_info().reason or "")
            first = policy.decide(PORTAL_RESET)
            assert first.decision_id == server.last_decision_id  # OPA's own id, as before
            policy.decide(PORTAL_RESET)
            assert server.decisions == 2
        with HelpdeskPolicy(engine="opa", engine_options=opts, cache_size=8) as policy:
            miss, hit = policy.decide(PORTAL_RESET), policy.decide(PORTAL_RESET)
            assert server.decisions == 3 and policy.cache_info()[:2] == (1, 1)
            assert miss.decision_id == server.last_decision_id != hit.decision_id
            assert uuid.UUID(hit.decision_id).version == 4
            assert (hit.engine, hit.degraded) == ("opa", False) and _without_id(hit) == _without_id(miss)


def test_cache_size_zero_turns_it_off() -> None:
    policy = HelpdeskPolicy(engine="rego", cache_size=0)
    assert policy.cache_info() == CacheInfo(0, 0, 0, 0, False, "cache_size is 0")
    policy.decide(PORTAL_RESET)
    assert policy.cache_info().misses == 0


@pytest.mark.parametrize("size", [-1, True, 1.5, "10"])
def test_a_bad_cache_size_is_refused(size: Any) -> None:
    with pytest.raises(InvalidConfigError) as info:
        HelpdeskPolicy(engine="native", cache_size=size)
    assert [e.path for e in info.value.errors] == ["cache_size"]


def test_an_engine_of_your_own_is_not_cached(caplog: pytest.LogCaptureFixture, policy_set: PolicySet) -> None:
    class Mine(BaseEngine):
        name = "mine"

        def evaluate(self, request: Request) -> Verdict:
            return decide_native(request, policy_set.config)

    with caplog.at_level(logging.INFO, logger="helpdesk_policy"):
        policy = HelpdeskPolicy(engine=Mine(), cache_size=16)
    info = policy.cache_info()
    assert not info.enabled and "'mine'" in (info.reason or "") and "not one of the library's own" in (info.reason or "")
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("decision cache off")] == [
        f"decision cache off: {info.reason}"]
    policy.decide(PORTAL_RESET)
    assert policy.decide(PORTAL_RESET).engine == "mine" and policy.cache_info()[:2] == (0, 0)


@pytest.fixture(scope="module")
def clock_policy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stock policies plus one rule that reads the clock."""
    target = tmp_path_factory.mktemp("clock") / "policies"
    shutil.copytree(stock_policy_dir(), target)
    (target / "helpdesk" / "clock.rego").write_text(
        "package helpdesk\n\n# time.now_ns() in a comment does not count, nor \"uuid.rfc4122()\" in a string\n"
        "decided_at_ns := time.now_ns()\n", encoding="utf-8")
    return target


def test_a_policy_reading_the_clock_turns_the_cache_off_with_a_logged_reason(
    caplog: pytest.LogCaptureFixture, clock_policy_dir: Path,
) -> None:
    with caplog.at_level(logging.INFO, logger="helpdesk_policy"):
        policy = HelpdeskPolicy(engine="rego", policy_dir=clock_policy_dir, cache_size=16)
    info = policy.cache_info()
    assert (info.enabled, info.maxsize) == (False, 16)
    assert info.reason == ("the policy calls builtins whose answers change between calls: "
                           "helpdesk/clock.rego:4: time.now_ns")
    assert f"decision cache off: {info.reason}" in [r.getMessage() for r in caplog.records]
    first = policy.decide(PORTAL_RESET)
    policy.decide(PORTAL_RESET)
    assert first.engine == "rego" and policy.cache_info()[:2] == (0, 0)


# ------------------------------------------------------------- the Rego scan


@pytest.mark.parametrize("call", [
    "time.now_ns()", "time.parse_rfc3339_ns(input.x)", "time . now_ns()", "rand.intn(\"k\", 10)",
    "uuid.rfc4122(\"k\")", "http.send({\"method\": \"get\", \"url\": \"http://x\"})", "opa.runtime()",
    "net.lookup_ip_addr(\"example.com\")", "io.jwt.decode_verify(input.t, {})",
    "crypto.x509.parse_and_verify_certificates(input.c)",
])
def test_every_nondeterministic_builtin_is_found(call: str) -> None:
    name = call.split("(")[0].replace(" ", "")
    assert nondeterministic_calls({"p.rego": f"package p\n\nx := {call}\n"}) == [f"p.rego:3: {name}"]


@pytest.mark.parametrize("source", [
    "package p\n\n# time.now_ns() only in a comment\nx := 1\n",
    'package p\n\nx := "time.now_ns()"\n',
    "package p\n\nx := `rand.intn(\"k\", 1)\nuuid.rfc4122(\"k\")`\n",
    "package p\n\nx := input.time.now_ns\n",
    "package p\n\nx := data.rand.intn\n",
    "package p\n\nx := crypto.sha256(input.s)\ny := io.jwt.decode(input.t)\nz := http.status\n",
])
def test_look_alikes_are_not_calls(source: str) -> None:
    assert nondeterministic_calls({"p.rego": source}) == []


def test_lines_are_counted_past_multiline_raw_strings() -> None:
    source = 'package p\n\nx := `a\nb\nc`\n\ny := time.now_ns()\n'
    assert nondeterministic_calls({"a.rego": "package a\n", "p.rego": source}) == ["p.rego:7: time.now_ns"]


def test_the_stock_policies_call_no_nondeterministic_builtin(policy_set: PolicySet) -> None:
    assert nondeterministic_calls({**policy_set.modules, **policy_set.test_modules}) == []
    assert "time.*" in NONDETERMINISTIC_BUILTINS and "http.send" in NONDETERMINISTIC_BUILTINS


def test_the_cache_object() -> None:
    cache = DecisionCache(2)
    assert cache.get("a") is None
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1
    cache.put("c", 3)  # b was the least recently used
    assert (cache.get("b"), cache.get("c"), len(cache)) == (None, 3, 2)
    assert cache.info() == CacheInfo(hits=2, misses=2, maxsize=2, currsize=2, enabled=True, reason=None)
    off = DecisionCache(8, disabled_reason="not sound")
    off.put("a", 1)
    assert (off.get("a"), off.info()) == (None, CacheInfo(0, 0, 8, 0, False, "not sound"))
    with pytest.raises(ValueError):
        DecisionCache(-1)


def test_the_cache_key_is_the_revision_and_the_validated_requests_digest() -> None:
    policy = _cached()
    decision = policy.decide(PORTAL_RESET)
    (key,) = list(policy._cache._entries)
    canonical = parse_request(PORTAL_RESET).model_dump_json().encode()
    assert key == (policy.policy_revision, "sha256:" + hashlib.sha256(canonical).hexdigest())
    assert key[1] == decision.input_digest


def test_the_doctests_of_the_modules_issue_13_touched_run() -> None:
    import doctest

    from helpdesk_policy import cache, facade, models

    for module in (cache, models, facade):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0 and result.attempted > 0, module.__name__
