"""The decision facade: validate, decide along an engine chain that fails closed, log.

:class:`HelpdeskPolicy` is the public surface: it loads the policy set and
its engines, validates requests, asks its :class:`~helpdesk_policy.chain.EngineChain`
(engines in order, deadlines, the fail-closed strict verdict), and turns the
answer into a :class:`~helpdesk_policy.models.Decision` with its provenance
and an optional decision-log record.

>>> from helpdesk_policy import HelpdeskPolicy
>>> policy = HelpdeskPolicy(engine="native")
>>> decision = policy.decide({
...     "request": {"id": "INC-7", "action": "password_reset", "channel": "self_service_portal"},
...     "actor": {"id": "u-1", "type": "human", "relationship": "self",
...               "authenticated": True, "auth_strength": "mfa"},
...     "target": {"id": "u-1", "type": "human", "privileged": False,
...                "privilege_tier": 0, "vip": False, "status": "active"},
... })
>>> decision.level, decision.allowed, decision.engine
(<Level.SELF_SERVICE: 'self_service'>, True, 'native')
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _dist_version
from pathlib import Path
from typing import Any

from .chain import ChainAnswer, EngineChain
from .config import PolicyConfig
from .digest import LOG_IDENTIFIER_MODES, LogIdentifiers, input_digest, redact, redact_decision
from .engines import Engine, load_engine
from .evidence import DEFAULT_WINDOW_HOURS, Evidence, Verification
from .evidence import verify as verify_evidence
from .engines.native import NativeEngine
from .errors import EngineUnavailableError, FieldError, InvalidConfigError, InvalidRequestError
from .models import Decision, Request, construct_trusted, parse_request
from .policyset import PolicySet

__all__ = ["HelpdeskPolicy", "DecisionSink", "AUTO_CHAIN"]

log = logging.getLogger("helpdesk_policy")

#: ``engine="auto"``: the embedded Rego first, the native mirror if it fails.
AUTO_CHAIN = ("rego", "native")

# Optional extras missing under engine="auto" are logged once per process at
# WARNING (later at DEBUG): a missing install is not a fault, and an alert on
# every HelpdeskPolicy() would be noise.
_MISSING_WARNED: set[str] = set()
_MISSING_LOCK = threading.Lock()

#: Called with one decision-log record per decision (see :meth:`HelpdeskPolicy.decide`).
DecisionSink = Callable[[dict[str, Any]], None | Awaitable[None]]

#: The bundle name a record's ``bundles`` names (OPA's decision-log shape).
LOG_BUNDLE = "helpdesk"
#: The ``metrics`` key of the engine chain's time, in nanoseconds.
LOG_TIMER = "timer_helpdesk_decide_ns"
#: Labels every record carries; ``ticket`` is set per decision and cannot be given.
_RESERVED_LABELS = frozenset({"ticket"})

EngineSpec = str | Engine


class HelpdeskPolicy:
    """Decide helpdesk requests with a chain of engines that fails closed.

    Engine chain: the engine you name, then ``fallback`` in order. When the
    policy set is the stock one (the native mirror loads for it), the chain
    always ends with the native engine, even if you named only ``"rego"`` or
    ``"opa"``: it runs on the caller's thread and cannot hang, so a request the
    policy denies is still denied when every other engine fails. A decision
    says which ``engine`` answered and ``degraded: true`` when it was not the
    first one. Only when no engine can decide (a custom policy set, every
    engine failing) is the answer the config's ``strict_level``:
    ``deny`` by default, with ``degraded: true`` and the reason
    ``engine_unavailable`` naming the formal process to use instead
    (:data:`~helpdesk_policy.chain.FORMAL_PROCESS`). With ``strict_level:
    callback`` the decision also carries ``strict_level_may_be_looser``: the
    policy itself might have denied the request. The chain itself is
    :attr:`chain`, an :class:`~helpdesk_policy.chain.EngineChain`.

    Args:
        engine: ``"auto"`` (rego, then native), an engine name (``"rego"``,
            ``"native"``, ``"opa"``) or an :class:`~helpdesk_policy.engines.Engine`.
        fallback: engines tried, in order, when the one before fails.
        config: a :class:`PolicyConfig`, a mapping, or a YAML/JSON file merged
            over the stock config.
        policy_dir: a directory of Rego policies (default: the stock policies).
        timeout: seconds each in-process engine may take; ``None`` = no deadline
            (in-process engines then run on the caller's thread, the fast path).
            The native engine always runs on the caller's thread: it is pure
            Python with no I/O and cannot hang, and it must stay able to
            decide when other engines' hung calls occupy the worker threads.
        log_sink: called with one decision-log record per decision (below):
            a plain callable or an ``async def`` one. :meth:`adecide` awaits
            an async sink and runs a plain one in a worker thread, so a slow
            sink never stalls the event loop; :meth:`decide` runs an async
            sink to completion (or schedules it when called inside a running
            event loop). A failing sink is logged and never changes a decision.
        log_identifiers: what a record keeps of the identity identifiers in
            the request (``actor.id``, ``actor.on_behalf_of``, ``actor.roles``
            other than the config's security and helpdesk roles,
            ``actor.runs_as``, ``target.id``, ``target.owners``,
            ``target.manager``) and in the decision's ``constraints``
            (``approver.ids``, ``approver.exclude``, ``callback.ids``):

            * ``"pseudonymize"`` (default): each becomes ``"pid:"`` + 16 hex
              digits of HMAC-SHA256(``log_pseudonym_key``, identifier). The
              same identifier gives the same pseudonym, so relations stay
              visible (the requester is the target, or one of its owners) and
              the record's input is still a valid request that ``diff``
              replays to the same decision under the stock policy (its
              constraints naming the same pseudonyms).
            * ``"keep"``: verbatim.
            * ``"drop"``: the fields that name someone are removed; the input
              is then not a complete request and cannot be replayed.
        log_pseudonym_key: the HMAC key (bytes, or str encoded as UTF-8). Without
            one the pseudonym is plain SHA-256, which anyone who can guess an
            identifier (``u-1042``, an e-mail address) can reverse by trying
            it: set a key, kept out of the logs' reach, when that matters.
        engine_options: keyword options per engine name, e.g.
            ``{"opa": {"url": "http://opa:8181"}}``.
        log_labels: labels every decision-log record carries, merged over
            ``{"app": "helpdesk-policy", "version": <package version>}`` (as
            OPA's ``labels``): printable str keys and values; ``ticket`` is
            reserved (each record's ``labels.ticket`` is its ``request.id``).

    A decision-log record is a dict with the keys ``decision_id``,
    ``timestamp`` (UTC, ISO 8601), ``path`` (``"helpdesk/decision"``),
    ``policy_revision``, ``input_digest`` (sha256 of the full, unmasked
    request: a correlation key, not a secret), ``input`` (the request as
    JSON: ``request.justification`` is always ``"[redacted]"``, identifiers as
    ``log_identifiers`` says; ``request.id``, the ticket, and
    ``target.environment`` are kept), ``masked`` and ``erased`` (JSON pointers
    of the input and result values replaced or removed, as in OPA's decision
    logs), ``result`` (the decision, its constraints' identifiers as
    ``log_identifiers`` says) and ``engine_errors`` (why engines before the
    one that answered failed). In OPA's decision-log shape it also carries
    ``bundles`` (``{"helpdesk": {"revision": <policy_revision>}}``), ``labels``
    (``app``, ``version``, ``log_labels`` and ``ticket``: the request's id)
    and ``metrics`` (``{"timer_helpdesk_decide_ns": <int>}``: the engine
    chain's time for this decision).

    Use it as a context manager (``with`` / ``async with``) or call
    :meth:`close` / :meth:`aclose`; inside an event loop prefer ``aclose``,
    which closes async HTTP sessions on their own loop.

    Raises:
        EngineUnavailableError: an engine you named cannot load (the message
            names the extra to install). With ``"auto"``, an engine that cannot
            load is skipped with one warning per process naming the extra; the
            native engine then decides and decisions say ``engine: "native"``,
            ``degraded: false`` (a missing optional install is not a fault).
        InvalidConfigError: ``log_identifiers``, ``log_pseudonym_key`` or
            ``log_labels`` is invalid.
    """

    def __init__(
        self,
        engine: EngineSpec = "auto",
        *,
        fallback: Sequence[EngineSpec] = (),
        config: PolicyConfig | Mapping[str, Any] | str | Path | None = None,
        policy_dir: str | Path | None = None,
        timeout: float | None = None,
        log_sink: DecisionSink | None = None,
        log_identifiers: LogIdentifiers = "pseudonymize",
        log_pseudonym_key: bytes | str | None = None,
        engine_options: Mapping[str, Mapping[str, Any]] | None = None,
        log_labels: Mapping[str, str] | None = None,
    ) -> None:
        self._log_identifiers, self._log_key = _log_masking(log_identifiers, log_pseudonym_key)
        self._log_labels = {"app": "helpdesk-policy", "version": _package_version(), **_log_labels(log_labels)}
        self.policy_set = PolicySet.load(policy_dir, config)
        self.config = self.policy_set.config
        self._revision = self.policy_set.revision
        self.log_sink = log_sink
        # Tasks of async sinks scheduled from decide() inside a running loop (kept referenced until done).
        self._sink_tasks: set[asyncio.Task[Any]] = set()
        options = {k: dict(v) for k, v in (engine_options or {}).items()}
        tolerant = engine == "auto"
        specs: list[EngineSpec] = list(AUTO_CHAIN) if tolerant else [engine]
        specs += [f for f in fallback if f not in specs]
        engines: list[Engine] = []
        for spec in specs:
            if not isinstance(spec, str):
                engines.append(spec)
                continue
            try:
                engines.append(load_engine(spec, self.policy_set, **options.get(spec, {})))
            except EngineUnavailableError as exc:
                if not tolerant:
                    raise
                _warn_missing_once(spec, exc)
        self._add_native_last_resort(engines)
        if not engines:
            raise EngineUnavailableError("no engine could be loaded", engine=str(engine))
        self.chain = EngineChain(engines, timeout=timeout, strict_level=self.config.strict_level)

    # ------------------------------------------------------------------ public

    @property
    def engines(self) -> list[Engine]:
        """The engines, in the order the chain asks them."""
        return self.chain.engines

    @property
    def timeout(self) -> float | None:
        """Seconds each engine may take (``None``: no deadline); see :class:`~helpdesk_policy.chain.EngineChain`."""
        return self.chain.timeout

    @timeout.setter
    def timeout(self, value: float | None) -> None:
        self.chain.timeout = value

    @property
    def policy_revision(self) -> str:
        return self.policy_set.revision

    @property
    def engine_names(self) -> list[str]:
        return [e.name for e in self.engines]

    def decide(self, request: Request | Mapping[str, Any]) -> Decision:
        """Decide one request (a :class:`Request` or a plain dict).

        Raises:
            InvalidRequestError: the request is invalid; every bad field is listed.
        """
        req = parse_request(request)
        started = time.perf_counter_ns()
        answer = self.chain.decide(req)
        elapsed = time.perf_counter_ns() - started
        decision = self._finish(req, answer)
        if self.log_sink is not None:
            self._deliver(self._record(req, decision, answer.errors, elapsed))
        return decision

    def decide_many(self, requests: Iterable[Request | Mapping[str, Any]]) -> list[Decision]:
        """Decide several requests. All are validated first: one invalid request
        raises :class:`InvalidRequestError` listing bad fields as ``[i].path``."""
        return [self.decide(r) for r in _parse_all(requests)]

    async def adecide(self, request: Request | Mapping[str, Any]) -> Decision:
        """Async twin of :meth:`decide`: engines run without blocking the event loop.

        An ``async def`` log sink is awaited; a plain one runs in a worker
        thread, so a slow sink never stalls the event loop.
        """
        req = parse_request(request)
        started = time.perf_counter_ns()
        answer = await self.chain.adecide(req)
        elapsed = time.perf_counter_ns() - started
        decision = self._finish(req, answer)
        if self.log_sink is not None:
            await self._adeliver(self._record(req, decision, answer.errors, elapsed))
        return decision

    async def adecide_many(self, requests: Iterable[Request | Mapping[str, Any]]) -> list[Decision]:
        """Async twin of :meth:`decide_many`; requests are decided concurrently."""
        return list(await asyncio.gather(*(self.adecide(r) for r in _parse_all(requests))))

    def verify(
        self,
        decision: Decision,
        evidence: Evidence,
        *,
        now: datetime | None = None,
        window_hours: int = DEFAULT_WINDOW_HOURS,
        withdrawn_revisions: Collection[str] = (),
    ) -> Verification:
        """Check the evidence recorded for ``decision``: may the ticket be closed?

        Every requirement and the ``record_evidence`` obligation come out
        ``satisfied``, ``missing`` or ``violated`` with a reason; see
        :func:`helpdesk_policy.evidence.verify`. ``.closable`` is the answer.

        Args:
            decision: The decision acted on.
            evidence: What the helpdesk recorded.
            now: The time to check the window against (default: now, UTC).
            window_hours: How old evidence may be.
            withdrawn_revisions: Policy revisions withdrawn since.
        """
        return verify_evidence(decision, evidence, now=now, window_hours=window_hours,
                               withdrawn_revisions=withdrawn_revisions)

    def close(self) -> None:
        """Close every engine and the worker threads. Safe to call more than once."""
        self.chain.close()

    async def aclose(self) -> None:
        """Close every engine from inside the event loop: an engine's own
        ``aclose()`` is awaited where it has one (the OPA engine closes its
        aiohttp session on this loop), else its ``close()`` is called."""
        await self.chain.aclose()

    def __enter__(self) -> HelpdeskPolicy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> HelpdeskPolicy:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<HelpdeskPolicy engines={self.engine_names} revision={self.policy_revision[:19]}…>"

    # ---------------------------------------------------------------- internals

    def _add_native_last_resort(self, engines: list[Engine]) -> None:
        """End the chain with the native mirror when it can decide for this policy set.

        It runs inline and cannot hang, so it decides even when hung calls
        fill the worker pool; the strict level is reserved for policy sets
        nothing else can evaluate. A custom policy set makes it refuse to load.
        """
        if any(type(e) is NativeEngine for e in engines):
            return
        try:
            engines.append(load_engine("native", self.policy_set))
        except EngineUnavailableError as exc:
            log.debug("no native last resort for this policy set: %s", exc)

    def _finish(self, req: Request, answer: ChainAnswer) -> Decision:
        decision = construct_trusted(Decision, {
            **answer.verdict.__dict__,
            "engine": answer.engine,
            "degraded": answer.degraded,
            "policy_revision": self._revision,
            "decision_id": answer.decision_id or str(uuid.uuid4()),
            "input_digest": input_digest(req),
        })
        return decision

    def _record(self, req: Request, decision: Decision, errors: list[str], elapsed_ns: int = 0) -> dict[str, Any]:
        masked: list[str] = []
        erased: list[str] = []
        doc = redact(req, identifiers=self._log_identifiers, key=self._log_key, masked=masked, erased=erased,
                     keep_roles=self.config.security_roles | self.config.helpdesk_roles)
        # The decision's constraints echo the request's identifiers (approvers,
        # exclusions, callback targets): masked alike, never verbatim.
        result_masked: list[str] = []
        result_erased: list[str] = []
        result = redact_decision(decision, identifiers=self._log_identifiers, key=self._log_key,
                                 masked=result_masked, erased=result_erased)
        record = {
            "decision_id": decision.decision_id,
            "timestamp": datetime.now(timezone.utc).isoformat(),
            "path": "helpdesk/decision",
            "policy_revision": decision.policy_revision,
            "input_digest": decision.input_digest,
            "input": doc,
            "masked": ["/input" + p for p in masked] + ["/result" + p for p in result_masked],
            "erased": ["/input" + p for p in erased] + ["/result" + p for p in result_erased],
            "result": result,
            "engine_errors": errors,
            # OPA's decision-log shape, additively.
            "bundles": {LOG_BUNDLE: {"revision": decision.policy_revision}},
            "labels": {**self._log_labels, "ticket": req.request.id},
            # At least 1 ns: a coarse clock must not log a decision as free.
            "metrics": {LOG_TIMER: max(1, int(elapsed_ns))},
        }
        return record

    def _deliver(self, record: dict[str, Any]) -> None:
        """Hand a record to the sink from :meth:`decide`; a failing sink never changes the decision.

        An ``async def`` sink's coroutine is run to completion here when no
        event loop runs in this thread, else scheduled on that loop (never
        dropped unawaited).
        """
        try:
            result = self.log_sink(record)  # type: ignore[misc]
            if inspect.isawaitable(result):
                try:
                    loop = asyncio.get_running_loop()
                except RuntimeError:
                    asyncio.run(_awaited(result))
                else:
                    task = loop.create_task(_awaited(result))
                    self._sink_tasks.add(task)
                    task.add_done_callback(self._sink_task_done)
        except Exception:  # noqa: BLE001 - a failing sink must not change the decision
            log.exception("decision log sink failed for %s", record["decision_id"])

    async def _adeliver(self, record: dict[str, Any]) -> None:
        """Hand a record to the sink from :meth:`adecide`, off the event loop's thread unless it is async."""
        try:
            if _is_async_callable(self.log_sink):
                await self.log_sink(record)  # type: ignore[misc]
                return
            result = await asyncio.to_thread(self.log_sink, record)  # type: ignore[arg-type]
            if inspect.isawaitable(result):
                await result
        except Exception:  # noqa: BLE001 - a failing sink must not change the decision
            log.exception("decision log sink failed for %s", record["decision_id"])

    def _sink_task_done(self, task: asyncio.Task[Any]) -> None:
        self._sink_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("decision log sink failed", exc_info=task.exception())


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def _is_async_callable(fn: Any) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))


def _log_masking(mode: Any, key: Any) -> tuple[LogIdentifiers, bytes | None]:
    """Check ``log_identifiers`` and ``log_pseudonym_key``; the key as bytes.

    Raises:
        InvalidConfigError: naming each bad argument (never the key's value).
    """
    problems: list[FieldError] = []
    if mode not in LOG_IDENTIFIER_MODES:
        problems.append(FieldError("log_identifiers", f"must be one of {list(LOG_IDENTIFIER_MODES)}"))
    if isinstance(key, str):
        key = key.encode("utf-8", "surrogatepass")
    if key is not None and (not isinstance(key, bytes) or not key):
        problems.append(FieldError("log_pseudonym_key", "must be non-empty bytes or str, or None"))
    if problems:
        raise InvalidConfigError(problems)
    return mode, key


def _log_labels(labels: Any) -> dict[str, str]:
    """Check ``log_labels``: a mapping of printable, non-empty str keys to printable str values.

    Raises:
        InvalidConfigError: naming each bad key.
    """
    if labels is None:
        return {}
    if not isinstance(labels, Mapping):
        raise InvalidConfigError([FieldError("log_labels", "must be a mapping of str to str")])
    problems: list[FieldError] = []
    for key, value in labels.items():
        name = f"log_labels.{key!r}" if not isinstance(key, str) or not key.isprintable() else f"log_labels.{key}"
        if not isinstance(key, str) or not key or not key.isprintable():
            problems.append(FieldError(name, "a label key must be a non-empty printable str"))
        elif key in _RESERVED_LABELS:
            problems.append(FieldError(name, "is reserved: each record's labels.ticket is its request.id"))
        elif not isinstance(value, str) or not value.isprintable():
            problems.append(FieldError(name, "a label value must be a printable str"))
    if problems:
        raise InvalidConfigError(problems)
    return dict(labels)


@functools.cache
def _package_version() -> str:
    # Read once per process: the distribution's metadata is files on disk.
    try:
        return _dist_version("helpdesk-policy")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


def _warn_missing_once(name: str, exc: EngineUnavailableError) -> None:
    with _MISSING_LOCK:
        first = name not in _MISSING_WARNED
        _MISSING_WARNED.add(name)
    log.log(logging.WARNING if first else logging.DEBUG,
            "engine %r unavailable, deciding without it (not degraded): %s", name, exc)


def _parse_all(requests: Iterable[Request | Mapping[str, Any]]) -> list[Request]:
    parsed: list[Request] = []
    bad: list[FieldError] = []
    for i, item in enumerate(requests):
        try:
            parsed.append(parse_request(item))
        except InvalidRequestError as exc:
            bad.extend(FieldError(f"[{i}].{e.path}", e.message) for e in exc.errors)
    if bad:
        raise InvalidRequestError(bad)
    return parsed
