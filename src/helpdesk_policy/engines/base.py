"""The engine interface: one tiny method with a sync and an async twin.

An engine turns a validated :class:`~helpdesk_policy.models.Request` into the
raw decision document (``level``, ``allowed``, ``requirements``, ``reasons``,
``obligations``, ``playbook``) the stock Rego produces at
``data.helpdesk.decision``. The facade validates that document into a
:class:`~helpdesk_policy.models.Verdict`; an engine does not need to.

An engine signals failure only by raising :class:`~helpdesk_policy.errors.EngineError`
(or a subclass); anything else it raises is wrapped into one by the facade.

An engine holding resources bound to an event loop (the OPA engine's aiohttp
sessions) may also define ``async def aclose()`` (:class:`AsyncClosable`):
``HelpdeskPolicy.aclose()`` and ``async with HelpdeskPolicy(...)`` await it,
and call ``close()`` on engines without one.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from ..models import Request

__all__ = ["Engine", "AsyncClosable", "BaseEngine", "RawDecision"]

RawDecision = Mapping[str, Any]


@runtime_checkable
class Engine(Protocol):
    """What the facade needs from an engine."""

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
        return await asyncio.to_thread(self.evaluate, request)

    def close(self) -> None:
        return None

    def __enter__(self) -> BaseEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"
