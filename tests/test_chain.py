"""The engine chain alone: engines in order, deadlines, the fail-closed strict verdict.

No facade here: requests are validated by hand and the chain's answers are
read as they are (verdict, engine, position, errors, upstream decision id).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

from helpdesk_policy.chain import FORMAL_PROCESS, ChainAnswer, EngineChain
from helpdesk_policy.engines.base import BaseEngine
from helpdesk_policy.engines.native import NativeEngine
from helpdesk_policy.errors import EngineError
from helpdesk_policy.levels import Level
from helpdesk_policy.models import NO_ENGINE, Request, parse_request
from helpdesk_policy.policyset import PolicySet

REQUEST = parse_request({
    "request": {"id": "INC-1", "action": "mfa_reset", "channel": "phone"},
    "actor": {"id": "u-1", "type": "human", "relationship": "self", "authenticated": False, "auth_strength": "none"},
    "target": {"id": "u-1", "type": "human", "privileged": True, "privilege_tier": 2, "vip": False,
               "status": "active"},
})


@pytest.fixture(scope="module")
def native() -> NativeEngine:
    return NativeEngine(PolicySet.load())


class Fake(BaseEngine):
    """An engine that answers what ``answer(request)`` returns (or raises)."""

    def __init__(self, name: str, answer: Callable[[Request], Any]) -> None:
        self.name = name
        self.answer = answer
        self.closed = 0

    def evaluate(self, request: Request) -> Any:
        return self.answer(request)

    def close(self) -> None:
        self.closed += 1


def _raise(exc: BaseException) -> Callable[[Request], Any]:
    def answer(_: Request) -> Any:
        raise exc
    return answer


def _doc(native: NativeEngine, **changes: Any) -> dict[str, Any]:
    return {**native.evaluate(REQUEST).model_dump(mode="json"), **changes}


def _both(chain: EngineChain) -> list[ChainAnswer]:
    """The sync and the async answer for REQUEST."""
    return [chain.decide(REQUEST), asyncio.run(chain.adecide(REQUEST))]


def test_the_first_engine_that_answers_decides(native: NativeEngine) -> None:
    first = Fake("first", lambda _: _doc(native))
    chain = EngineChain([first, native])
    for answer in _both(chain):
        assert (answer.engine, answer.position, answer.degraded, answer.errors) == ("first", 0, False, [])
        assert answer.verdict == native.evaluate(REQUEST)
        assert answer.decision_id is None


@pytest.mark.parametrize(("failure", "error"), [
    (_raise(EngineError("down", engine="broken")), "broken: down"),
    (_raise(ZeroDivisionError("boom")), "broken: unexpected ZeroDivisionError: boom"),
    (lambda _: ["not", "a", "decision"], "broken: answer is list, not a decision object"),
    (lambda _: {"level": "self_service"}, "broken: answer is not a valid decision"),
])
def test_a_failing_engine_hands_over_to_the_next(native: NativeEngine, failure: Any, error: str) -> None:
    chain = EngineChain([Fake("broken", failure), native])
    for answer in _both(chain):
        assert (answer.engine, answer.position, answer.degraded) == ("native", 1, True)
        assert answer.verdict == native.evaluate(REQUEST)
        assert len(answer.errors) == 1 and answer.errors[0].startswith(error), answer.errors


def test_a_looser_unvalidated_verdict_is_malformed(native: NativeEngine) -> None:
    # A Verdict instance is trusted only from the native engine's own class.
    loose = native.evaluate(REQUEST).model_copy(update={"level": Level.SELF_SERVICE})

    class Subclass(NativeEngine):
        name = "subclass"

        def evaluate(self, request: Request) -> Any:
            return loose

    chain = EngineChain([Subclass(PolicySet.load()), native])
    answer = chain.decide(REQUEST)
    assert (answer.engine, answer.verdict.level) == ("native", Level.CALLBACK)
    assert "is not the maximum of the reasons" in answer.errors[0]


@pytest.mark.parametrize("strict_level", [Level.DENY, Level.CALLBACK])
def test_when_no_engine_decides_the_strict_verdict_answers(strict_level: Level) -> None:
    engines = [Fake("a", _raise(EngineError("down", engine="a"))), Fake("b", lambda _: None)]
    chain = EngineChain(engines, strict_level=strict_level)
    for answer in _both(chain):
        assert (answer.engine, answer.position, answer.degraded) == (NO_ENGINE, 2, True)
        assert answer.errors[0] == "a: down" and answer.errors[1].startswith("b: answer is NoneType")
        verdict = answer.verdict
        assert (verdict.level, verdict.allowed) == (strict_level, strict_level.allowed)
        codes = [r.code for r in verdict.reasons]
        if strict_level is Level.DENY:
            assert codes == ["engine_unavailable"]
        else:
            assert codes == ["engine_unavailable", "strict_level_may_be_looser"]
        assert FORMAL_PROCESS in verdict.reasons[-1].message
        assert "(2 failed)" in verdict.reasons[0].message
        assert verdict.playbook == f"engine-unavailable-{strict_level.value.replace('_', '-')}"


@pytest.mark.parametrize(("given", "kept"), [
    ("5f0c6a52-8d3e-4b8f-9f3a-2a0d1c7e9b11", "5f0c6a52-8d3e-4b8f-9f3a-2a0d1c7e9b11"),
    ("not an id\n", None),
    (42, None),
])
def test_an_engine_s_own_decision_id_is_taken_when_it_looks_like_one(
    native: NativeEngine, given: Any, kept: str | None,
) -> None:
    chain = EngineChain([Fake("opa-like", lambda _: _doc(native, decision_id=given))])
    for answer in _both(chain):
        assert (answer.engine, answer.decision_id) == ("opa-like", kept)
        assert answer.verdict == native.evaluate(REQUEST)


def test_a_hung_engine_costs_one_deadline_and_native_still_decides(native: NativeEngine) -> None:
    release = threading.Event()

    def hang(_: Request) -> Any:
        release.wait(timeout=10)
        raise EngineError("too late", engine="hung")

    # Five hung calls: more than the pool's four workers, so only an engine
    # running on the caller's thread (native) can still decide.
    chain = EngineChain([Fake("hung", hang), native], timeout=0.05)
    try:
        for _ in range(5):
            answer = chain.decide(REQUEST)
            assert (answer.engine, answer.position) == ("native", 1)
            assert answer.errors == ["hung: no answer within 0.05s"]
    finally:
        release.set()
        chain.close()


def test_the_async_twin_holds_the_deadline(native: NativeEngine) -> None:
    class Slow(BaseEngine):
        name = "slow"

        def evaluate(self, request: Request) -> Any:  # pragma: no cover - the async twin is used
            raise AssertionError

        async def aevaluate(self, request: Request) -> Any:
            await asyncio.sleep(30)

    answer = asyncio.run(EngineChain([Slow(), native], timeout=0.05).adecide(REQUEST))
    assert (answer.engine, answer.errors) == ("native", ["slow: no answer within 0.05s"])


def test_without_a_timeout_engines_run_on_the_caller_s_thread(native: NativeEngine) -> None:
    threads: list[threading.Thread] = []
    chain = EngineChain([Fake("here", lambda _: threads.append(threading.current_thread()) or _doc(native))])
    assert chain.decide(REQUEST).engine == "here"
    assert threads == [threading.current_thread()]
    chain.timeout = 1.0
    assert chain.decide(REQUEST).engine == "here"
    assert threads[1] is not threading.current_thread()  # a worker thread, under the deadline
    chain.close()


def test_close_and_aclose_close_every_engine_despite_failures() -> None:
    class Async(Fake):
        async def aclose(self) -> None:
            self.closed += 10

    def broken_close() -> None:
        raise OSError("cannot close")

    plain, asynchronous, broken = (Fake("plain", lambda _: None), Async("async", lambda _: None),
                                   Fake("broken", lambda _: None))
    broken.close = broken_close  # type: ignore[method-assign]
    chain = EngineChain([broken, plain, asynchronous])
    chain.close()
    assert (plain.closed, asynchronous.closed) == (1, 1)
    asyncio.run(chain.aclose())
    assert (plain.closed, asynchronous.closed) == (2, 11)
