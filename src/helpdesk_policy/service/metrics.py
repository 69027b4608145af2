"""Prometheus metrics of the decision service, in the text exposition format 0.0.4.

Written by hand (no client library, no global registry): each app has its
own :class:`ServiceMetrics`, so two apps in one process (tests, a host
application) never share counters. Every series a dashboard needs exists
from the start, at zero (one per level, per error kind), so a rate over it
is defined before the first decision.

Series (all prefixed ``helpdesk_policy_``):

==============================================  =========  ===========================================
``decisions_total{level}``                      counter    decisions made, by level (decide, explain, webhooks)
``decisions_degraded_total``                    counter    decisions not made by the first engine (or by none)
``decision_duration_seconds``                   histogram  time to decide one request (validation and engines)
``requests_total{endpoint,status}``             counter    HTTP requests answered, by route template and status
``errors_total{kind}``                          counter    requests refused or failed, by kind (see ERROR_KINDS)
``ready``                                       gauge      1 when the last readiness check could decide, else 0
``service_info{version,policy_revision}``       gauge      always 1: what runs
==============================================  =========  ===========================================

Each process keeps its own numbers: with ``--workers N`` a scrape reaches
one worker. Prefer one worker per container and scale out with replicas,
each scraped on its own (the Prometheus way).

>>> m = ServiceMetrics(version="0.1.0", policy_revision="sha256:ab")
>>> m.observe_decision("callback", degraded=False, seconds=0.003)
>>> 'helpdesk_policy_decisions_total{level="callback"} 1' in m.render()
True
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Iterable, Sequence

from ..levels import Level

__all__ = ["ServiceMetrics", "LATENCY_BUCKETS", "ERROR_KINDS", "CONTENT_TYPE"]

#: The ``Content-Type`` of the exposition.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Histogram buckets (seconds): an in-process decision takes well under a
#: millisecond to a few; an OPA round trip a few milliseconds; the top buckets
#: catch deadlines (the default is 2 s).
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)

#: Why a request was refused or failed: the ``kind`` label of ``errors_total``.
ERROR_KINDS: tuple[str, ...] = (
    "unauthorized",        # 401: no or wrong bearer token
    "too_large",           # 413: body over the limit
    "unsupported_media",   # 415: not application/json
    "bad_json",            # 400: unreadable, not UTF-8, duplicate keys, too deep
    "invalid",             # 422: fields named
    "not_found",           # 404: unknown webhook system, no authorizer
    "request_timeout",     # 408: the client did not send its body in time
    "disconnected",        # the client went away before sending its body (no answer reaches it)
    "deadline_exceeded",   # 503: no answer within the per-request deadline (no decision given)
    "upstream",            # 503: a webhook mapping's facts provider or the authorizer failed
    "internal",            # 500: a bug; logged with its traceback
)

_PREFIX = "helpdesk_policy_"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Sequence[tuple[str, str]]) -> str:
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) + "}"


def _number(value: float) -> str:
    if value == math.inf:
        return "+Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


class ServiceMetrics:
    """Counters, a histogram and gauges for one app; :meth:`render` writes them out.

    Thread-safe (one lock): handlers run on the event loop, but a host may
    read :meth:`render` from another thread.

    Args:
        version: the package version (``service_info``).
        policy_revision: the policy revision decided with (``service_info``).
        buckets: histogram upper bounds in seconds, ascending.
    """

    def __init__(self, *, version: str, policy_revision: str,
                 buckets: Iterable[float] = LATENCY_BUCKETS) -> None:
        self._lock = threading.Lock()
        self.buckets: tuple[float, ...] = tuple(sorted(buckets))
        self._info = (("version", version), ("policy_revision", policy_revision))
        self.decisions: dict[str, int] = {level.value: 0 for level in Level}
        self.degraded = 0
        self._bucket_counts = [0] * len(self.buckets)
        self._latency_sum = 0.0
        self._latency_count = 0
        self.requests: dict[tuple[str, int], int] = {}
        self.errors: dict[str, int] = dict.fromkeys(ERROR_KINDS, 0)
        self.ready = 0

    # ------------------------------------------------------------- recording

    def observe_decision(self, level: str, *, degraded: bool, seconds: float) -> None:
        """Count one decision and its time."""
        with self._lock:
            self.decisions[level] = self.decisions.get(level, 0) + 1
            if degraded:
                self.degraded += 1
            index = bisect.bisect_left(self.buckets, seconds)
            if index < len(self._bucket_counts):
                self._bucket_counts[index] += 1
            self._latency_sum += seconds
            self._latency_count += 1

    def observe_request(self, endpoint: str, status: int) -> None:
        """Count one HTTP request answered."""
        with self._lock:
            key = (endpoint, status)
            self.requests[key] = self.requests.get(key, 0) + 1

    def observe_error(self, kind: str) -> None:
        """Count one refused or failed request (``kind`` from :data:`ERROR_KINDS`)."""
        with self._lock:
            self.errors[kind] = self.errors.get(kind, 0) + 1

    def set_ready(self, ready: bool) -> None:
        with self._lock:
            self.ready = 1 if ready else 0

    # ------------------------------------------------------------- exposition

    def render(self) -> str:
        """Every series in the Prometheus text format (ends with a newline)."""
        with self._lock:
            lines: list[str] = []

            def family(name: str, kind: str, text: str) -> None:
                lines.append(f"# HELP {_PREFIX}{name} {text}")
                lines.append(f"# TYPE {_PREFIX}{name} {kind}")

            def sample(name: str, value: float, labels: Sequence[tuple[str, str]] = ()) -> None:
                lines.append(f"{_PREFIX}{name}{_labels(labels)} {_number(value)}")

            family("decisions_total", "counter", "Decisions made, by level.")
            for level, n in self.decisions.items():
                sample("decisions_total", n, (("level", level),))
            family("decisions_degraded_total", "counter",
                   "Decisions not made by the first engine of the chain (or by none: the fail-closed answer).")
            sample("decisions_degraded_total", self.degraded)
            family("decision_duration_seconds", "histogram", "Time to validate and decide one request, in seconds.")
            cumulative = 0
            for bound, n in zip(self.buckets, self._bucket_counts, strict=True):
                cumulative += n
                sample("decision_duration_seconds_bucket", cumulative, (("le", repr(float(bound))),))
            sample("decision_duration_seconds_bucket", self._latency_count, (("le", "+Inf"),))
            sample("decision_duration_seconds_sum", self._latency_sum)
            sample("decision_duration_seconds_count", self._latency_count)
            family("requests_total", "counter", "HTTP requests answered, by endpoint and status code.")
            for (endpoint, status), n in sorted(self.requests.items()):
                sample("requests_total", n, (("endpoint", endpoint), ("status", str(status))))
            family("errors_total", "counter", "Requests refused or failed, by kind.")
            for kind, n in self.errors.items():
                sample("errors_total", n, (("kind", kind),))
            family("ready", "gauge", "1 when the last readiness check could decide, else 0.")
            sample("ready", self.ready)
            family("service_info", "gauge", "What runs: the package version and the policy revision.")
            sample("service_info", 1, self._info)
            return "\n".join(lines) + "\n"
