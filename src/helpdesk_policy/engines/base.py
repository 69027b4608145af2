"""The engine interface: one tiny method with a sync and an async twin.

An engine turns a validated :class:`~helpdesk_policy.models.Request` into the
raw decision document (``level``, ``allowed``, ``requirements``, ``reasons``,
``obligations``, ``playbook``) the stock Rego produces at
``data.helpdesk.decision``. Whoever asks an engine (the engine chain, the
shadow engine, the CI checks) validates that document into a
:class:`~helpdesk_policy.models.Verdict` with :func:`checked_verdict`; an
engine does not need to.

An engine signals failure only by raising :class:`~helpdesk_policy.errors.EngineError`
(or a subclass); anything else it raises is wrapped into one by the engine chain.

An engine holding resources bound to an event loop (the OPA engine's aiohttp
sessions) may also define ``async def aclose()`` (:class:`AsyncClosable`):
``HelpdeskPolicy.aclose()`` and ``async with HelpdeskPolicy(...)`` await it,
and call ``close()`` on engines without one.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from pydantic import ValidationError

from ..errors import MalformedDecisionError, field_errors_from_pydantic
from ..models import Request, Verdict

__all__ = ["Engine", "AsyncClosable", "BaseEngine", "RawDecision", "checked_verdict"]

RawDecision = Mapping[str, Any]


@runtime_checkable
class Engine(Protocol):
    """What the engine chain needs from an engine."""

    #: Short name recorded in every decision (``"rego"``, ``"native"``, ``"opa"``).
    name: str

    def evaluate(self, request: Request) -> RawDecision:
        """Decide one request; raise ``EngineError`` when it cannot."""
        ...

    async def aevaluate(self, request: Request) -> RawDecision:
        """Async twin of :meth:`evaluate`; must not block the event loop."""
        ...

    def close(self) -> None:
        """Release resources (threads, sockets, interpreters)."""
        ...


@runtime_checkable
class AsyncClosable(Protocol):
    """The optional async twin of ``Engine.close``."""

    async def aclose(self) -> None:
        """Release resources from inside the running event loop."""
        ...


class BaseEngine(abc.ABC):
    """Convenience base: ``aevaluate`` runs the sync ``evaluate`` in a worker thread."""

    name: str = "base"

    @abc.abstractmethod
    def evaluate(self, request: Request) -> RawDecision:
        """Decide one request; raise ``EngineError`` when it cannot."""

    async def aevaluate(self, request: Request) -> RawDecision:
        import asyncio  # here, not at import: a process deciding synchronously never loads it

        return await asyncio.to_thread(self.evaluate, request)

    def close(self) -> None:
        return None

    def __enter__(self) -> BaseEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


#: The class attribute by which an engine class says its ``Verdict`` instances
#: are valid as built (only the native engine, whose verdicts
#: ``tests/test_parity.py`` proves valid). It counts only where a class defines
#: it itself: a subclass may override ``evaluate()`` and return anything, so it
#: does not inherit the trust.
TRUSTED_VERDICTS_MARKER = "_builds_valid_verdicts"


def checked_verdict(engine: Engine, raw: Any) -> Verdict:
    """Validate what ``engine`` answered into a :class:`Verdict`.

    Raises:
        MalformedDecisionError: the answer is not a consistent decision.
    """
    if isinstance(raw, Verdict):
        # Only our own native engine builds verdicts without validation
        # (construct_trusted, on the hot path; tests/test_parity.py proves
        # them valid). Any other engine's Verdict instance may come from
        # model_construct with a level looser than its reasons: revalidate it.
        if _trusted_verdicts(engine):
            return raw
        try:
            raw = raw.model_dump(include=set(Verdict.model_fields))
        except Exception as exc:  # noqa: BLE001 - an unserialisable verdict is malformed
            raise MalformedDecisionError(
                f"answer is a Verdict that cannot be read back ({type(exc).__name__})", engine=engine.name
            ) from None
    if not isinstance(raw, Mapping):
        raise MalformedDecisionError(f"answer is {type(raw).__name__}, not a decision object", engine=engine.name)
    try:
        return Verdict.model_validate(dict(raw))
    except ValidationError as exc:
        detail = "; ".join(str(e) for e in field_errors_from_pydantic(exc))
        raise MalformedDecisionError(f"answer is not a valid decision: {detail}", engine=engine.name) from None


def _trusted_verdicts(engine: Engine) -> bool:
    # The engine's own class must define the marker: a subclass of the native
    # engine may override evaluate() and return anything.
    return type(engine).__dict__.get(TRUSTED_VERDICTS_MARKER) is True
