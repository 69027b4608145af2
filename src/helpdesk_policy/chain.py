"""The engine chain: engines in order, each under a deadline; the first valid verdict wins, else fail closed.

An :class:`EngineChain` asks its engines one after the other for a validated
request's verdict. An engine that raises, answers something that is not a
consistent decision (:func:`~helpdesk_policy.engines.base.checked_verdict`)
or, with a ``timeout``, does not answer in time, is recorded and the next one
is asked. When none can decide, the answer is the *strict verdict*: the
configured strict level (``deny`` by default, naming the manual process to
use instead, :data:`FORMAL_PROCESS`), answered by :data:`NO_ENGINE`.

With a ``timeout`` the engines run on a small pool of worker threads (a hung
call keeps its thread; Python cannot kill it), except the native engine: it is
pure Python with no I/O, cannot hang, and always runs on the caller's thread,
so it still decides when hung calls fill the pool. :meth:`EngineChain.adecide`
is the async twin: engines are awaited, each under the same deadline.

The chain knows nothing of requests' validation, decision ids, policy
revisions or decision logs: :class:`~helpdesk_policy.facade.HelpdeskPolicy`
builds a chain and turns what it answers into a
:class:`~helpdesk_policy.models.Decision`.

>>> from helpdesk_policy.chain import EngineChain
>>> from helpdesk_policy.engines import load_engine
>>> from helpdesk_policy.models import parse_request
>>> chain = EngineChain([load_engine("native")], timeout=0.5)
>>> answer = chain.decide(parse_request({
...     "request": {"id": "INC-7", "action": "info_request", "channel": "chat"},
...     "actor": {"id": "u-1", "type": "human", "relationship": "self",
...               "authenticated": True, "auth_strength": "mfa"},
...     "target": {"id": "u-1", "type": "human", "privileged": False,
...                "privilege_tier": 0, "vip": False, "status": "active"},
... }))
>>> answer.engine, answer.degraded, answer.verdict.level
('native', False, <Level.SELF_SERVICE: 'self_service'>)
>>> chain.close()
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from .digest import mask_credentials
from .engines.base import Engine, _trusted_verdicts, checked_verdict
from .engines.native import EVIDENCE_FIELDS, NativeEngine
from .errors import EngineError, EngineTimeoutError
from .levels import Level
from .models import NO_ENGINE, Request, Verdict

if TYPE_CHECKING:
    # asyncio and the thread pool are imported when first needed (adecide, a
    # timeout): a process that decides synchronously never loads them.
    import concurrent.futures

__all__ = ["EngineChain", "ChainAnswer", "FORMAL_PROCESS"]

log = logging.getLogger("helpdesk_policy")

#: What to do instead when no policy engine can decide (the fail-closed answer names it).
FORMAL_PROCESS = (
    "handle the request through the documented manual identity-verification process with the security team; "
    "do not act on this channel until a policy engine decides"
)


class ChainAnswer(NamedTuple):
    """What the chain decided for one request, and how it got there.

    Immutable (a named tuple: built once per decision, on the hot path).
    """

    verdict: Verdict
    #: The name of the engine that answered, or :data:`NO_ENGINE` for the strict verdict.
    engine: str
    #: That engine's place in the chain; ``len(engines)`` for the strict verdict.
    position: int
    #: Why each engine before it failed, one line each (``"<engine>: <error>"``).
    errors: list[str]
    #: The answering engine's own decision id (OPA's), when it gave one that looks like one.
    decision_id: str | None = None

    @property
    def degraded(self) -> bool:
        """True when the first engine did not answer."""
        return self.position > 0


class EngineChain:
    """Ask ``engines`` in order; the first valid verdict wins, else the strict verdict.

    Args:
        engines: the engines, in the order they are asked.
        timeout: seconds each engine may take (the native engine excepted,
            see the module docstring); ``None`` = no deadline, and every
            engine runs on the caller's thread.
        strict_level: the level of the fail-closed answer when no engine
            can decide (a config's ``strict_level``).
    """

    def __init__(
        self, engines: Sequence[Engine], *, timeout: float | None = None, strict_level: Level = Level.DENY,
    ) -> None:
        self.engines: list[Engine] = list(engines)
        self.timeout = timeout
        self.strict_level = strict_level
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    def decide(self, req: Request) -> ChainAnswer:
        """Ask each engine in turn for ``req``'s verdict."""
        errors: list[str] = []
        for position, engine in enumerate(self.engines):
            try:
                raw = self._run(engine, req)
                if type(raw) is Verdict and _trusted_verdicts(engine):
                    # The native engine's own verdict (the hot path): what the two calls below
                    # would find, without their checks (a Verdict carries no decision id).
                    upstream_id, verdict = None, raw
                else:
                    upstream_id, raw = _upstream_decision_id(raw)
                    verdict = checked_verdict(engine, raw)
            except Exception as exc:  # noqa: BLE001 - any engine failure moves down the chain
                errors.append(self._failed(engine, exc))
                continue
            return ChainAnswer(verdict, engine.name, position, errors, upstream_id)
        return self._fail_closed(errors)

    async def adecide(self, req: Request) -> ChainAnswer:
        """Async twin of :meth:`decide`: engines run without blocking the event loop."""
        import asyncio

        errors: list[str] = []
        for position, engine in enumerate(self.engines):
            try:
                coro = engine.aevaluate(req)
                # The native engine answers inline (no await point): no deadline needed, none risked.
                deadline = None if _runs_inline(engine) else self.timeout
                raw = await (asyncio.wait_for(coro, deadline) if deadline is not None else coro)
                upstream_id, raw = _upstream_decision_id(raw)
                verdict = checked_verdict(engine, raw)
            except asyncio.TimeoutError:
                errors.append(self._failed(engine, EngineTimeoutError(f"no answer within {self.timeout}s", engine=engine.name)))
                continue
            except Exception as exc:  # noqa: BLE001
                errors.append(self._failed(engine, exc))
                continue
            return ChainAnswer(verdict, engine.name, position, errors, upstream_id)
        return self._fail_closed(errors)

    def close(self) -> None:
        """Close every engine and the worker threads. Safe to call more than once."""
        for engine in self.engines:
            try:
                engine.close()
            except Exception:  # noqa: BLE001 - closing must not mask the caller's own error
                log.exception("closing engine %r failed", engine.name)
        self._shutdown_pool()

    async def aclose(self) -> None:
        """Close every engine from inside the event loop: an engine's own
        ``aclose()`` is awaited where it has one (the OPA engine closes its
        aiohttp session on this loop), else its ``close()`` is called."""
        for engine in self.engines:
            try:
                closer = getattr(engine, "aclose", None)  # optional (engines.base.AsyncClosable)
                if inspect.iscoroutinefunction(closer):
                    await closer()
                else:
                    engine.close()
            except Exception:  # noqa: BLE001 - closing must not mask the caller's own error
                log.exception("closing engine %r failed", engine.name)
        self._shutdown_pool()

    # ---------------------------------------------------------------- internals

    def _run(self, engine: Engine, req: Request) -> Any:
        # The native engine never goes through the pool: a hung call keeps its
        # worker thread (Python cannot kill it), so after a few hangs a queued
        # native fallback would time out behind them and a request the policy
        # denies would fail "closed" at the strict level instead (BUG-4).
        if self.timeout is None or _runs_inline(engine):
            return engine.evaluate(req)
        import concurrent.futures

        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="helpdesk-policy")
        future = self._pool.submit(engine.evaluate, req)
        try:
            return future.result(timeout=self.timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise EngineTimeoutError(f"no answer within {self.timeout}s", engine=engine.name) from None

    @staticmethod
    def _failed(engine: Engine, exc: BaseException) -> str:
        if not isinstance(exc, EngineError):
            exc = EngineError(f"unexpected {type(exc).__name__}: {exc}", engine=engine.name)
        # An engine's message may quote a URL with its password: masked, as in the decision log.
        log.warning("engine %r failed, trying the next one: %s", engine.name, mask_credentials(str(exc)))
        return str(exc) if str(exc).startswith(engine.name) else f"{engine.name}: {exc}"

    def _fail_closed(self, errors: list[str]) -> ChainAnswer:
        return ChainAnswer(self._strict_verdict(errors), NO_ENGINE, len(self.engines), errors)

    def _strict_verdict(self, errors: list[str]) -> Verdict:
        """The fail-closed answer when no engine could decide (guarantee 1)."""
        level = self.strict_level
        log.error("no engine could decide; failing closed at %s: %s", level.value,
                  "; ".join(mask_credentials(e) for e in errors))
        failed = f"No policy engine could decide this request ({len(errors)} failed)"
        refs = ["NIST-CSF-2.0:PR.AA-05", "NIST-SP-800-63B-4"]
        if level is Level.DENY:
            reasons = [{
                "code": "engine_unavailable", "level": level, "refs": refs,
                "message": f"{failed}: do not perform it; {FORMAL_PROCESS}.",
            }]
        else:
            reasons = [
                {
                    "code": "engine_unavailable", "level": level, "refs": refs,
                    "message": f"{failed}; the configured strict level is {level.value}: complete every "
                               f"{level.value} check before acting.",
                },
                {
                    "code": "strict_level_may_be_looser", "level": level, "refs": refs,
                    "message": f"The configured strict level ({level.value}) stands in for the policy, which may "
                               f"have denied this request: if any check fails or anything is unclear, "
                               f"{FORMAL_PROCESS}.",
                },
            ]
        # Validated, not constructed: the fail-closed answer must itself be a consistent decision.
        return Verdict.model_validate({
            "level": level,
            "allowed": level.allowed,
            "requirements": level.requirements,
            "reasons": reasons,
            "obligations": [{"code": "record_evidence", "fields": EVIDENCE_FIELDS[level]}],
            "playbook": f"engine-unavailable-{level.value.replace('_', '-')}",
        })

    def _shutdown_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def _runs_inline(engine: Engine) -> bool:
    # Exactly NativeEngine: a subclass may override evaluate() with code that blocks.
    return type(engine) is NativeEngine


#: What an engine-supplied decision id may look like (OPA's are UUIDs).
_UPSTREAM_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


def _upstream_decision_id(raw: Any) -> tuple[str | None, Any]:
    """Take an engine's own ``decision_id`` (OPA's) out of a raw decision.

    The decision then carries that id, so this library's decision log and the
    OPA server's correlate; an id that does not look like one is dropped (a
    fresh UUID is used).
    """
    if isinstance(raw, Mapping) and "decision_id" in raw:
        raw = dict(raw)
        upstream = raw.pop("decision_id")
        return (upstream if isinstance(upstream, str) and _UPSTREAM_ID.match(upstream) else None), raw
    return None, raw
