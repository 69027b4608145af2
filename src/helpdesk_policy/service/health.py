"""Readiness: can the policy engines decide? A cached self-check decision.

``/health`` says only that the process answers. ``/ready`` says that it can
decide: :class:`ReadinessCheck` asks the policy's engine chain to decide a
fixed, harmless request (an information request on chat) and caches the
answer for ``ttl_s`` seconds, so a load balancer probing every second costs
one decision every few seconds, and concurrent probes share one check.

Ready means an engine answered within the deadline. A degraded answer (the
first engine failed and a fallback decided) is still ready, and says so: the
fallback decides correctly (the native mirror of the stock policy). Not ready
means no engine could decide (the chain's fail-closed answer, engine
``none``) or the check missed its deadline: every decision would then be the
strict level, so the load balancer should send requests elsewhere.

The check goes to the chain (:attr:`HelpdeskPolicy.chain`), not through
:meth:`HelpdeskPolicy.adecide`, so it writes no decision-log record and is
not counted as a decision.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ..facade import HelpdeskPolicy
from ..models import NO_ENGINE, Request, parse_request

__all__ = ["ReadinessCheck", "Readiness", "SELF_CHECK_REQUEST"]

log = logging.getLogger(__name__)

#: The request the readiness check decides: valid under any policy set.
SELF_CHECK_REQUEST: dict[str, Any] = {
    "request": {"id": "readiness-self-check", "action": "info_request", "channel": "chat"},
    "actor": {"id": "readiness-probe", "type": "human", "relationship": "self",
              "authenticated": True, "auth_strength": "mfa"},
    "target": {"id": "readiness-probe", "type": "human", "privileged": False,
               "privilege_tier": 0, "vip": False, "status": "active"},
}


@dataclass(frozen=True)
class Readiness:
    """The outcome of one readiness check."""

    ready: bool
    engine: str
    degraded: bool
    policy_revision: str
    checked_at: str
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"ready": self.ready, "engine": self.engine, "degraded": self.degraded,
                               "policy_revision": self.policy_revision, "checked_at": self.checked_at}
        if self.reason:
            doc["reason"] = self.reason
        return doc


class ReadinessCheck:
    """Decide :data:`SELF_CHECK_REQUEST` at most once per ``ttl_s``; remember the outcome.

    Args:
        policy: the policy whose engine chain is checked.
        deadline_s: how long the check may take before it counts as not ready.
        ttl_s: how long an outcome is reused.
    """

    def __init__(self, policy: HelpdeskPolicy, *, deadline_s: float, ttl_s: float = 5.0) -> None:
        self.policy = policy
        self.deadline_s = deadline_s
        self.ttl_s = ttl_s
        self._request: Request = parse_request(SELF_CHECK_REQUEST)
        self._last: Readiness | None = None
        self._at = 0.0
        self._lock: asyncio.Lock | None = None

    async def check(self) -> Readiness:
        """The cached outcome, or a fresh one when it is older than ``ttl_s``."""
        if self._fresh():
            return self._last  # type: ignore[return-value]
        if self._lock is None:
            self._lock = asyncio.Lock()  # made on the serving loop
        async with self._lock:
            if not self._fresh():  # another probe may have refreshed it while we waited
                self._last = await self._run()
                self._at = time.monotonic()
        return self._last  # type: ignore[return-value]

    def _fresh(self) -> bool:
        return self._last is not None and time.monotonic() - self._at < self.ttl_s

    async def _run(self) -> Readiness:
        now = datetime.now(timezone.utc).isoformat()
        revision = self.policy.policy_revision
        try:
            answer = await asyncio.wait_for(self.policy.chain.adecide(self._request), self.deadline_s)
        except asyncio.TimeoutError:
            log.warning("readiness self-check missed its %ss deadline", self.deadline_s)
            return Readiness(False, NO_ENGINE, True, revision, now, f"no answer within {self.deadline_s:g}s")
        except Exception as exc:  # noqa: BLE001 - whatever failed, the service cannot decide
            log.exception("readiness self-check failed")
            return Readiness(False, NO_ENGINE, True, revision, now, f"self-check failed ({type(exc).__name__})")
        if answer.engine == NO_ENGINE:
            return Readiness(False, NO_ENGINE, True, revision, now,
                             f"no engine could decide ({len(answer.errors)} failed)")
        return Readiness(True, answer.engine, answer.degraded, revision, now)
