"""The ``opa`` engine under faults: fallback within the deadline, retries, the circuit breaker.

Every fault the loopback OPA can inject must end in a decision from the next
engine (``rego``) within the deadline plus a bounded margin, marked
``degraded``, and never looser than the native engine's. Retries recover from
a single failure; the breaker opens after its threshold (the server's request
count stops growing), answers fast while open, probes once after the
cool-down and closes on success. A server that drips its answer, offers
an endless one, or writes hostile text into its errors is held to the same
deadline, read up to a bounded size, and never quoted raw. The resilience
primitives are tested on their own with a fake clock.
"""

from __future__ import annotations

import asyncio
import doctest
import json
import logging
import re
import statistics
import threading
import time
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opa_client", reason="the opa engine needs the 'opa' extra")
pytest.importorskip("opa_bindings", reason="the OPA test server needs opa-golib-python-bindings (make dev)")

from hypothesis import given, strategies as st  # noqa: E402
from opa_server import FAULTS, HOSTILE_MESSAGE, OpaTestServer, refusing_url  # noqa: E402

import helpdesk_policy.engines.resilience as resilience  # noqa: E402
from helpdesk_policy import EngineTimeoutError, EngineUnavailableError, HelpdeskPolicy, Level, parse_request  # noqa: E402
from helpdesk_policy.engines.native import NativeEngine  # noqa: E402
from helpdesk_policy.engines.opa import OpaEngine, OpaHTTPError  # noqa: E402
from helpdesk_policy.errors import EngineError, InvalidRequestError, MalformedDecisionError, UndefinedDecisionError  # noqa: E402
from helpdesk_policy.policyset import PolicySet  # noqa: E402
from helpdesk_policy.engines.resilience import (  # noqa: E402
    BreakerState,
    CircuitBreaker,
    CircuitOpenError,
    Deadline,
    RetryPolicy,
    acall,
    call,
)

ROOT = Path(__file__).resolve().parent.parent
DOCS = [json.loads(p.read_text(encoding="utf-8")) for p in sorted((ROOT / "examples" / "requests").glob("*.json"))][:4]

DEADLINE = 0.2
#: Time allowed on top of the deadline: the fallback evaluation plus scheduling noise.
MARGIN = 0.3

#: What each fault must raise from the engine itself.
EXPECTED_ERROR: dict[str, type[Exception]] = {
    "http_400": OpaHTTPError, "http_500": OpaHTTPError, "http_502": OpaHTTPError, "http_503": OpaHTTPError,
    "slow": EngineTimeoutError, "reset": EngineUnavailableError, "malformed_json": MalformedDecisionError,
    "undefined": UndefinedDecisionError, "wrong_shape": MalformedDecisionError, "inconsistent": MalformedDecisionError,
    # An answer dripped slower than the deadline, one too large to read (a
    # ResponseTooLargeError), an error whose text is hostile.
    "drip": EngineTimeoutError, "drip_headers": EngineTimeoutError, "huge": MalformedDecisionError,
    "hostile_error": OpaHTTPError,
}
#: "lying" answers a valid, consistent decision: no single engine can detect it (shadow mode can:
#: see test_opa_engine.py::test_shadow_disagreement_is_logged_and_the_stricter_verdict_wins).
DETECTABLE = [f for f in FAULTS if f != "lying"]
assert set(DETECTABLE) == set(EXPECTED_ERROR)


@pytest.fixture(scope="module")
def policy_set() -> PolicySet:
    return PolicySet.load()


@pytest.fixture(scope="module")
def server(policy_set: PolicySet) -> Iterator[OpaTestServer]:
    with OpaTestServer(policy_set) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _clean(server: OpaTestServer) -> Iterator[None]:
    server.clear_fault()
    server.reset_counts()
    yield
    server.clear_fault()


@pytest.fixture(scope="module")
def native(policy_set: PolicySet) -> NativeEngine:
    return NativeEngine(policy_set)


def _policy(url: str, **opa: Any) -> HelpdeskPolicy:
    options = {"url": url, "deadline": DEADLINE, "breaker_threshold": 1000, **opa}
    return HelpdeskPolicy(engine="opa", fallback=["rego", "native"], engine_options={"opa": options})


def _native_level(native: NativeEngine, doc: dict[str, Any]) -> Level:
    raw = native.evaluate(parse_request(doc))
    return raw.level if hasattr(raw, "level") else Level(raw["level"])  # type: ignore[union-attr]


# ----------------------------------------------------------------------- faults


@pytest.mark.parametrize("fault", DETECTABLE)
def test_every_fault_falls_back_within_the_deadline(fault: str, server: OpaTestServer, native: NativeEngine) -> None:
    server.set_fault(fault, delay=5 * DEADLINE)
    with _policy(server.url) as policy:
        with pytest.raises(EXPECTED_ERROR[fault]):
            policy.engines[0].evaluate(parse_request(DOCS[0]))
        for doc in DOCS:
            started = time.perf_counter()
            decision = policy.decide(doc)
            elapsed = time.perf_counter() - started
            assert (decision.engine, decision.degraded) == ("rego", True)
            assert elapsed < DEADLINE + MARGIN, f"{fault}: {elapsed:.3f}s"
            assert decision.level >= _native_level(native, doc)  # never looser
    assert server.decisions > 0  # the faults were really served


@pytest.mark.asyncio
@pytest.mark.parametrize("fault", DETECTABLE)
async def test_every_fault_falls_back_within_the_deadline_async(fault: str, server: OpaTestServer, native: NativeEngine) -> None:
    server.set_fault(fault, delay=5 * DEADLINE)
    policy = _policy(server.url)
    try:
        started = time.perf_counter()
        decisions = await asyncio.gather(*(policy.adecide(doc) for doc in DOCS))
        elapsed = time.perf_counter() - started
    finally:
        policy.close()
    assert elapsed < DEADLINE + MARGIN, f"{fault}: {elapsed:.3f}s for {len(DOCS)} concurrent decisions"
    for doc, decision in zip(DOCS, decisions):
        assert (decision.engine, decision.degraded) == ("rego", True)
        assert decision.level >= _native_level(native, doc)


def test_connection_refused_falls_back_fast() -> None:
    with refusing_url() as url, _policy(url) as policy:
        for doc in DOCS:
            started = time.perf_counter()
            decision = policy.decide(doc)
            assert time.perf_counter() - started < DEADLINE + MARGIN
            assert (decision.engine, decision.degraded) == ("rego", True)
        with pytest.raises(EngineUnavailableError, match="cannot reach"):
            policy.engines[0].evaluate(parse_request(DOCS[0]))


def test_server_going_down_and_coming_back(policy_set: PolicySet) -> None:
    srv = OpaTestServer(policy_set).start()
    url = srv.url
    with _policy(url, retries=0) as policy:
        assert policy.decide(DOCS[0]).engine == "opa"
        srv.stop()  # keep-alive connections are dropped, the port refuses
        assert policy.decide(DOCS[0]).engine == "rego"


def test_when_every_engine_fails_the_decision_fails_closed(server: OpaTestServer, custom_policy_dir: Path) -> None:
    server.set_fault("http_503")
    opts = {"opa": {"url": server.url, "deadline": DEADLINE}}
    # The stock policy: the native mirror ends every chain, so the policy still decides.
    with HelpdeskPolicy(engine="opa", engine_options=opts) as policy:
        decision = policy.decide(DOCS[0])
    expected = NativeEngine(PolicySet.load()).evaluate(parse_request(DOCS[0]))
    assert (decision.engine, decision.degraded, decision.level) == ("native", True, expected.level)
    # A custom policy set has no native mirror: nobody decides, the answer is the strict level (deny).
    with HelpdeskPolicy(engine="opa", engine_options=opts, policy_dir=custom_policy_dir) as policy:
        decision = policy.decide(DOCS[0])
    assert (decision.engine, decision.degraded, decision.level, decision.allowed) == ("none", True, Level.DENY, False)


def test_a_request_json_cannot_carry_is_not_sent_and_not_counted(server: OpaTestServer, policy_set: PolicySet) -> None:
    """Validation refuses inf (InvalidRequestError); an engine handed one anyway
    (a request built without validation) must fail without sending it."""
    from helpdesk_policy.models import Context

    doc = json.loads(json.dumps(DOCS[0]))
    doc.setdefault("context", {})["recent_credential_change_hours"] = float("inf")
    with pytest.raises(InvalidRequestError, match="context.recent_credential_change_hours"):
        parse_request(doc)
    req = parse_request(DOCS[0])
    unchecked = req.model_copy(update={"context": Context.model_construct(
        risk_signals=[], failed_verifications_24h=0, recent_credential_change_hours=float("inf"),
    )})
    with OpaEngine(policy_set, url=server.url, breaker_threshold=1) as engine:
        with pytest.raises(EngineError, match="cannot be sent as JSON"):
            engine.evaluate(unchecked)
        assert engine.breaker.state is BreakerState.CLOSED
    assert server.decisions == 0


# ---------------------------------------------------------------------- retries


@pytest.mark.parametrize("fault", ["http_500", "http_502", "http_503", "reset"])
def test_a_single_failure_is_retried_and_recovers(fault: str, server: OpaTestServer) -> None:
    server.fail_next(1, fault)
    with _policy(server.url) as policy:
        decision = policy.decide(DOCS[1])
    assert (decision.engine, decision.degraded) == ("opa", False)
    assert server.decisions == 2


@pytest.mark.asyncio
async def test_a_single_failure_is_retried_and_recovers_async(server: OpaTestServer) -> None:
    server.fail_next(1, "http_503")
    policy = _policy(server.url)
    try:
        decision = await policy.adecide(DOCS[1])
    finally:
        policy.close()
    assert (decision.engine, decision.degraded) == ("opa", False)
    assert server.decisions == 2


def test_retries_are_bounded_and_4xx_is_not_retried(server: OpaTestServer, policy_set: PolicySet) -> None:
    req = parse_request(DOCS[0])
    with OpaEngine(policy_set, url=server.url, deadline=1.0, retries=2, backoff=0.01) as engine:
        server.set_fault("http_500")
        with pytest.raises(OpaHTTPError, match="HTTP 500 internal_error"):
            engine.evaluate(req)
        assert server.decisions == 3  # 1 + 2 retries
        assert engine.breaker.failures == 1  # one failed call, not three
        server.reset_counts()
        server.set_fault("http_400")
        with pytest.raises(OpaHTTPError, match="HTTP 400 invalid_parameter") as info:
            engine.evaluate(req)
        assert info.value.code == "invalid_parameter" and info.value.status == 400
        assert server.decisions == 1  # not retried
        assert engine.breaker.failures == 0  # and not held against the server


def test_a_slow_attempt_is_retried_when_attempt_timeout_leaves_budget(server: OpaTestServer, policy_set: PolicySet) -> None:
    server.fail_next(1, "slow", delay=1.0)
    with OpaEngine(policy_set, url=server.url, deadline=0.6, attempt_timeout=0.15, backoff=0.01) as engine:
        started = time.perf_counter()
        raw = engine.evaluate(parse_request(DOCS[0]))
        assert time.perf_counter() - started < 0.6
    assert raw["level"] and server.decisions == 2


# ---------------------------------------------------------------------- breaker


def test_breaker_opens_answers_fast_half_opens_and_closes(server: OpaTestServer) -> None:
    cooldown = 0.3
    with _policy(server.url, breaker_threshold=3, breaker_cooldown=cooldown, backoff=0.01) as policy:
        engine = policy.engines[0]
        server.set_fault("http_500")
        for _ in range(3):
            assert policy.decide(DOCS[0]).engine == "rego"
        assert engine.breaker.state is BreakerState.OPEN
        seen = server.decisions
        assert seen == 9  # 3 calls x (1 + 2 retries)

        # Open: no network, fast (the median is the fallback's own cost; the
        # maximum allows for a GC pause but stays far from a deadline).
        times = []
        for doc in DOCS * 5:
            started = time.perf_counter()
            decision = policy.decide(doc)
            times.append(time.perf_counter() - started)
            assert (decision.engine, decision.degraded) == ("rego", True)
        assert statistics.median(times) < 0.01 and max(times) < DEADLINE, times
        with pytest.raises(CircuitOpenError, match="circuit open"):
            engine.evaluate(parse_request(DOCS[0]))
        assert server.decisions == seen

        # After the cool-down, one probe (no retries); it fails: open again.
        time.sleep(cooldown + 0.05)
        assert policy.decide(DOCS[0]).engine == "rego"
        assert server.decisions == seen + 1
        assert engine.breaker.state is BreakerState.OPEN
        policy.decide(DOCS[0])
        assert server.decisions == seen + 1

        # The server recovers; the next probe succeeds and closes the breaker.
        server.clear_fault()
        time.sleep(cooldown + 0.05)
        decision = policy.decide(DOCS[0])
        assert (decision.engine, decision.degraded) == ("opa", False)
        assert engine.breaker.state is BreakerState.CLOSED
        assert policy.decide(DOCS[1]).engine == "opa"
        assert server.decisions == seen + 3


def test_a_dead_server_costs_one_deadline_per_cooldown_not_per_call() -> None:
    calls = 40
    with refusing_url() as url, _policy(url, breaker_threshold=2, breaker_cooldown=60.0) as policy:
        started = time.perf_counter()
        decisions = [policy.decide(DOCS[i % len(DOCS)]) for i in range(calls)]
        elapsed = time.perf_counter() - started
        assert policy.engines[0].breaker.state is BreakerState.OPEN
    assert all(d.engine == "rego" and d.degraded for d in decisions)
    # Two failed calls (each at most one deadline), then the breaker answers.
    assert elapsed < 2 * DEADLINE + calls * 0.01, f"{elapsed:.3f}s"


@pytest.mark.asyncio
async def test_sync_and_async_callers_share_the_breaker(server: OpaTestServer, policy_set: PolicySet) -> None:
    server.set_fault("http_502")
    engine = OpaEngine(policy_set, url=server.url, deadline=DEADLINE, retries=0, breaker_threshold=2)
    try:
        req = parse_request(DOCS[0])
        for _ in range(2):
            with pytest.raises(OpaHTTPError):
                await asyncio.to_thread(engine.evaluate, req)  # sync, from threads
        seen = server.decisions
        with pytest.raises(CircuitOpenError):
            await engine.aevaluate(req)  # async: refused without a request
        assert server.decisions == seen == 2
    finally:
        await engine.aclose()


@pytest.mark.asyncio
async def test_async_deadline_is_a_hard_cap(server: OpaTestServer, policy_set: PolicySet) -> None:
    server.set_fault("slow", delay=2.0)
    engine = OpaEngine(policy_set, url=server.url, deadline=DEADLINE, retries=0)
    try:
        started = time.perf_counter()
        with pytest.raises(EngineTimeoutError, match="no answer"):
            await engine.aevaluate(parse_request(DOCS[0]))
        assert time.perf_counter() - started < DEADLINE + 0.1
    finally:
        await engine.aclose()


# ------------------------------------------------- slow, huge and hostile answers

#: The drip fault's pause between bytes: far below any deadline, so a timeout
#: applied per socket read never fires, while the whole answer (a decision is
#: over a kilobyte) would take tens of seconds.
DRIP = 0.02
#: Scheduling noise allowed on top of a deadline (no fallback evaluation here).
SLACK = 0.15


def _rss() -> int:
    """This process's resident memory, in bytes (Linux)."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


class _PeakRSS:
    """Samples the resident memory every few milliseconds while the block runs."""

    def __enter__(self) -> _PeakRSS:
        self.baseline = self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


def _evaluate(engine: OpaEngine, doc: dict[str, Any], path: str) -> Any:
    req = parse_request(doc)
    if path == "sync":
        return engine.evaluate(req)

    async def run() -> Any:
        try:
            return await engine.aevaluate(req)
        finally:
            await engine.aclose()

    return asyncio.run(run())


@pytest.mark.parametrize("fault", ["drip", "drip_headers"])
@pytest.mark.parametrize("path", ["sync", "async"])
def test_a_dripping_server_cannot_hold_a_call_past_its_deadline(path: str, fault: str, server: OpaTestServer,
                                                                policy_set: PolicySet) -> None:
    """One byte every 20 ms, of the body or of the headers too: each read is
    quick, the whole is not. The deadline bounds the whole exchange, and the
    breaker counts the timeouts."""
    server.set_fault(fault, delay=DRIP)
    deadline = 0.25
    with OpaEngine(policy_set, url=server.url, deadline=deadline, retries=0, breaker_threshold=2) as engine:
        for _ in range(2):
            started = time.perf_counter()
            with pytest.raises(EngineTimeoutError):
                _evaluate(engine, DOCS[0], path)
            elapsed = time.perf_counter() - started
            assert elapsed < deadline + SLACK, f"{path}: {elapsed:.3f}s for a {deadline}s deadline"
        assert engine.breaker.state is BreakerState.OPEN
        seen = server.decisions
        with pytest.raises(CircuitOpenError):
            _evaluate(engine, DOCS[0], path)
        assert server.decisions == seen == 2


@pytest.mark.parametrize("path", ["sync", "async"])
def test_a_huge_answer_is_refused_at_the_limit_without_growing_memory(path: str, server: OpaTestServer,
                                                                      policy_set: PolicySet) -> None:
    """400 MiB offered without a Content-Length: reading stops at max_response_bytes,
    memory stays flat, nothing is retried, and the breaker counts it."""
    server.set_fault("huge")
    with OpaEngine(policy_set, url=server.url, deadline=5.0, retries=2, breaker_threshold=2) as engine:
        for n in range(1, 3):
            started = time.perf_counter()
            with _PeakRSS() as rss, pytest.raises(MalformedDecisionError) as info:
                _evaluate(engine, DOCS[0], path)
            elapsed = time.perf_counter() - started
            assert rss.growth < 50 * 1024 * 1024, f"{path}: RSS grew by {rss.growth / 2**20:.0f} MiB"
            assert elapsed < 1.0, f"{path}: {elapsed:.3f}s"
            assert server.decisions == n  # not retried into more memory
        from helpdesk_policy.engines.opa import DEFAULT_MAX_RESPONSE_BYTES
        from helpdesk_policy.errors import ResponseTooLargeError

        assert f"larger than {DEFAULT_MAX_RESPONSE_BYTES} bytes (max_response_bytes)" in str(info.value)
        assert isinstance(info.value, ResponseTooLargeError) and info.value.retryable is False
        assert engine.breaker.state is BreakerState.OPEN


@pytest.mark.parametrize("path", ["sync", "async"])
def test_a_declared_length_over_the_limit_is_refused_before_reading(path: str, server: OpaTestServer,
                                                                    policy_set: PolicySet) -> None:
    with OpaEngine(policy_set, url=server.url, max_response_bytes=64) as engine:
        with pytest.raises(MalformedDecisionError, match="larger than 64 bytes"):
            _evaluate(engine, DOCS[0], path)
    with OpaEngine(policy_set, url=server.url, max_response_bytes=64 * 1024) as engine:
        assert _evaluate(engine, DOCS[0], path)["level"]  # a real answer is far below the default


def test_the_facade_falls_back_from_a_dripping_server_in_time_and_never_looser(
    server: OpaTestServer, native: NativeEngine
) -> None:
    """With a facade timeout, calls that ended at their deadline free their
    worker threads: more decisions than workers, each within the deadline."""
    server.set_fault("drip", delay=DRIP)
    opts = {"opa": {"url": server.url, "deadline": DEADLINE, "breaker_threshold": 1000}}
    with HelpdeskPolicy(engine="opa", fallback=["rego", "native"], timeout=2.0, engine_options=opts) as policy:
        for doc in DOCS * 2:  # 8 decisions, the pool has 4 workers
            started = time.perf_counter()
            decision = policy.decide(doc)
            elapsed = time.perf_counter() - started
            assert elapsed < DEADLINE + MARGIN, f"{elapsed:.3f}s"
            assert (decision.engine, decision.degraded) == ("rego", True)
            assert decision.level >= _native_level(native, doc)


def _safe(text: str) -> bool:
    """No character that could forge a log line or drive a terminal."""
    return not any(unicodedata.category(ch)[0] == "C" or unicodedata.category(ch) in ("Zl", "Zp") for ch in text)


@pytest.mark.parametrize("path", ["sync", "async"])
def test_a_hostile_error_text_is_sanitised_and_bounded(path: str, server: OpaTestServer, policy_set: PolicySet,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    """A 500 whose message holds newlines, ESC sequences, a bidi override and
    1 MiB of text: a bad code is dropped, the message is cleaned and cut, and
    no exception text or log line carries any of it raw."""
    server.set_fault("hostile_error")
    with OpaEngine(policy_set, url=server.url, retries=0) as engine:
        with pytest.raises(OpaHTTPError) as info:
            _evaluate(engine, DOCS[0], path)
    err = info.value
    assert err.status == 500 and err.code is None  # "internal_error\n\x1b[31mforged" is no identifier
    assert err.opa_message is not None and len(err.opa_message) <= 200 and _safe(err.opa_message)
    assert err.opa_message.startswith("evaluation failed CRITICAL helpdesk_policy: forged line [31mred")
    assert len(str(err)) < 2000 and _safe(str(err))
    assert len(err.errors) == 3
    for detail in err.errors:
        assert detail["code"] is None and len(detail["message"]) <= 200 and _safe(detail["message"])
        assert detail["location"] == {"file": "x.rego CRITICAL forged [0m", "row": None, "col": None}

    opts = {"opa": {"url": server.url, "retries": 0}}
    with caplog.at_level(logging.DEBUG), HelpdeskPolicy(engine="opa", fallback=["native"], engine_options=opts) as policy:
        decision = policy.decide(DOCS[0])
    assert (decision.engine, decision.degraded) == ("native", True)
    assert caplog.records, "the fallback is logged"
    for record in caplog.records:
        message = record.getMessage()
        assert _safe(message) and len(message) < 5000 and HOSTILE_MESSAGE[:300] not in message


@given(status=st.sampled_from([400, 404, 500, 502, 503]),
       code=st.one_of(st.none(), st.from_regex(r"[a-z_]{1,20}", fullmatch=True), st.text(max_size=80), st.integers()),
       message=st.one_of(st.none(), st.text(max_size=600), st.integers()))
def test_any_error_body_gives_a_bounded_clean_exception(status: int, code: Any, message: Any,
                                                        policy_set: PolicySet) -> None:
    """Whatever OPA's code and message hold: the code is kept exactly when it is
    an identifier-like token, the message is at most 200 safe characters, and
    so is the exception's text."""
    engine = OpaEngine(policy_set, url="http://127.0.0.1:1")
    body = json.dumps({"code": code, "message": message, "errors": [{"code": code, "message": message}]}).encode()
    err = engine._http_error(status, body)
    token = isinstance(code, str) and re.fullmatch(r"[A-Za-z][A-Za-z0-9_.-]{0,63}", code) is not None
    assert err.status == status and err.code == (code if token else None)
    if err.opa_message is not None:
        assert len(err.opa_message) <= 200 and _safe(err.opa_message)
    assert _safe(str(err)) and len(str(err)) < 1000


# ------------------------------------------------------------ resilience, alone


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_resilience_doctests() -> None:
    result = doctest.testmod(resilience, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_breaker_state_machine() -> None:
    clock = FakeClock()
    b = CircuitBreaker(threshold=3, cooldown=10, clock=clock, name="x")
    b.failure(b.acquire())
    b.success(b.acquire())  # a success resets the consecutive count
    assert b.failures == 0
    for _ in range(3):
        b.failure(b.acquire())
    assert b.state is BreakerState.OPEN and b.opened == 1
    with pytest.raises(CircuitOpenError) as info:
        b.acquire()
    assert info.value.retry_after == pytest.approx(10) and info.value.engine == "x"
    clock.now = 10
    probe = b.acquire()
    assert probe.probe and b.state is BreakerState.HALF_OPEN
    with pytest.raises(CircuitOpenError, match="probe call is in flight"):
        b.acquire()  # exactly one probe
    b.failure(probe)
    assert b.state is BreakerState.OPEN and b.opened == 2
    clock.now = 15
    with pytest.raises(CircuitOpenError):
        b.acquire()  # the cool-down restarted at the failed probe
    clock.now = 20
    probe = b.acquire()
    b.abandon(probe)  # a cancelled probe frees the slot, nothing counted
    assert b.state is BreakerState.HALF_OPEN
    probe = b.acquire()
    b.success(probe)
    assert b.state is BreakerState.CLOSED and b.failures == 0
    assert b.rejected == 3


def test_breaker_ignores_results_from_before_a_state_change() -> None:
    clock = FakeClock()
    b = CircuitBreaker(threshold=1, cooldown=5, clock=clock)
    slow = b.acquire()  # started while closed
    b.failure(b.acquire())  # opens
    b.success(slow)  # a straggler's success must not close it
    assert b.state is BreakerState.OPEN
    clock.now = 5
    probe = b.acquire()
    b.failure(slow)  # nor a straggler's failure re-arm the cool-down
    b.success(probe)
    assert b.state is BreakerState.CLOSED


def test_breaker_is_thread_safe() -> None:
    clock = FakeClock()
    b = CircuitBreaker(threshold=5, cooldown=1, clock=clock)
    barrier = threading.Barrier(16)
    permits: list[Any] = []
    lock = threading.Lock()

    def fail() -> None:
        barrier.wait()
        try:
            b.failure(b.acquire())
        except CircuitOpenError:
            pass

    threads = [threading.Thread(target=fail) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert b.state is BreakerState.OPEN and b.opened == 1
    clock.now = 1

    def probe() -> None:
        barrier.wait()
        try:
            permit = b.acquire()
        except CircuitOpenError:
            return
        with lock:
            permits.append(permit)

    threads = [threading.Thread(target=probe) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(permits) == 1 and permits[0].probe


def test_retry_policy_backoff_is_jittered_and_capped() -> None:
    p = RetryPolicy(retries=5, base=0.1, cap=0.4, jitter=0.5)
    for n, hi in enumerate([0.1, 0.2, 0.4, 0.4, 0.4]):
        samples = {p.backoff(n) for _ in range(50)}
        assert all(hi / 2 <= s <= hi for s in samples)
        assert len(samples) > 1  # jittered
    assert RetryPolicy(jitter=0).backoff(0) == 0.05
    for bad in ({"retries": -1}, {"jitter": 2}, {"attempt_timeout": 0}):
        with pytest.raises(ValueError):
            RetryPolicy(**bad)


def test_call_retries_within_one_deadline() -> None:
    attempts: list[float] = []
    sleeps: list[float] = []

    def attempt(timeout: float) -> str:
        attempts.append(timeout)
        raise EngineUnavailableError("down")

    # Backoff (0.5-1.0 s) would overrun a 0.3 s deadline: one attempt only.
    with pytest.raises(EngineUnavailableError):
        call(attempt, deadline=0.3, retry=RetryPolicy(retries=5, base=1.0), sleep=sleeps.append)
    assert len(attempts) == 1 and sleeps == []
    attempts.clear()
    with pytest.raises(EngineUnavailableError):
        call(attempt, deadline=5.0, retry=RetryPolicy(retries=2, base=0.01), sleep=sleeps.append)
    assert len(attempts) == 3 and len(sleeps) == 2
    assert all(t <= 5.0 for t in attempts)


def test_call_does_not_retry_what_is_not_retryable() -> None:
    n = 0

    def attempt(timeout: float) -> str:
        nonlocal n
        n += 1
        raise MalformedDecisionError("garbage")

    breaker = CircuitBreaker(threshold=1)
    with pytest.raises(MalformedDecisionError):
        call(attempt, deadline=1.0, retry=RetryPolicy(retries=3), breaker=breaker)
    assert n == 1 and breaker.state is BreakerState.OPEN


def test_call_counts_as_failure_hook() -> None:
    breaker = CircuitBreaker(threshold=1)

    def attempt(timeout: float) -> str:
        raise ValueError("the request's fault")

    with pytest.raises(ValueError):
        call(attempt, deadline=1.0, breaker=breaker, counts_as_failure=lambda exc: False)
    assert breaker.state is BreakerState.CLOSED


def test_acall_hard_timeout_and_retry() -> None:
    async def hang(timeout: float) -> str:
        await asyncio.sleep(10)
        return "late"

    async def main() -> None:
        started = time.perf_counter()
        with pytest.raises(EngineTimeoutError):
            await acall(hang, deadline=0.1, retry=RetryPolicy(retries=3))
        assert time.perf_counter() - started < 0.3
        tries = 0

        async def flaky(timeout: float) -> str:
            nonlocal tries
            tries += 1
            if tries == 1:
                raise EngineUnavailableError("blip")
            return "ok"

        assert await acall(flaky, deadline=1.0, retry=RetryPolicy(retries=1, base=0.01)) == "ok"

    asyncio.run(main())


def test_watchdog_fires_in_order_skips_disarmed_and_survives_a_raising_callback() -> None:
    from helpdesk_policy.engines.resilience import Watchdog

    dog = Watchdog(name="test-watchdog")
    fired: list[str] = []
    done = threading.Event()

    def boom() -> None:
        fired.append("boom")
        raise RuntimeError("a bad callback")

    late = dog.arm(0.08, lambda: (fired.append("late"), done.set()))
    dog.arm(0.02, boom)
    dropped = dog.arm(0.01, lambda: fired.append("dropped"))
    early = dog.arm(0.04, lambda: fired.append("early"))
    assert dropped.disarm() is False  # disarmed before its time: never runs
    assert done.wait(5)
    assert fired == ["boom", "early", "late"]
    assert early.fired and late.disarm() is True and not dropped.fired


def test_deadline() -> None:
    clock = FakeClock()
    d = Deadline(2.0, clock=clock)
    assert d.remaining() == 2.0 and not d.expired
    clock.now = 3.0
    assert d.remaining() == 0.0 and d.expired
    with pytest.raises(ValueError):
        Deadline(0)
