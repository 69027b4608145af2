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

import functools
import inspect
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

# asyncio, importlib.metadata, the evidence checks and the policy exceptions
# are imported where they are used: a process that only decides (a cold
# start: import, build a policy, decide) never needs them.
from .cache import DEFAULT_CACHE_SIZE, CacheInfo, DecisionCache, nondeterministic_calls
from .chain import ChainAnswer, EngineChain
from .config import PolicyConfig
from .credentials import CREDENTIAL_MASK, ticket_id_looks_like_credential
from .digest import (
    LOG_IDENTIFIER_MODES,
    LogIdentifiers,
    LogMaskRule,
    apply_log_mask,
    input_digest,
    mask_credentials,
    parse_log_mask,
    redact,
    redact_decision,
)
from .engines import Engine, load_engine
from .engines.native import NativeEngine
from .errors import EngineUnavailableError, FieldError, InvalidConfigError, InvalidRequestError, PolicyLoadError
from .models import Decision, DigestOf, PendingDecisionId, Request, Verdict, construct_trusted, parse_request
from .policyset import PolicySet

if TYPE_CHECKING:
    import asyncio

    from .evidence import Evidence, Verification
    from .policy_exceptions import ExceptionSource, PolicyException

__all__ = ["HelpdeskPolicy", "DecisionSink", "AUTO_CHAIN"]

log = logging.getLogger("helpdesk_policy")

#: ``engine="auto"``: the fastest evaluator proven for the policy set at hand
#: first, the interpreter behind it. The native mirror when the policy's rules
#: are the stock ones (``tests/test_parity.py`` proves it equal to the Rego);
#: else the Rego compiled to Python when the compiler supports every construct
#: of it (proven equal to OPA by this project's differential tests, and on an
#: organisation's own cases by ``helpdesk-policy test``); then the embedded
#: interpreter (rego-cpp), which runs any Rego.
AUTO_CHAIN = ("native", "compiled", "rego")

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
        engine: ``"auto"`` (the fastest evaluator proven for the policy set:
            ``native`` for the stock rules, else ``compiled`` when the compiler
            supports every construct, then the ``rego`` interpreter behind it;
            see :data:`AUTO_CHAIN`), an engine name (``"native"``,
            ``"compiled"``, ``"rego"``, ``"opa"``) or an
            :class:`~helpdesk_policy.engines.Engine`.
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
        exceptions: where the policy exceptions live (an
            :class:`~helpdesk_policy.policy_exceptions.ExceptionSource`, such
            as :class:`~helpdesk_policy.ledger.ExceptionRegistry`). After the
            engines decide, the exceptions for the request's identity and
            action are applied (:func:`~helpdesk_policy.policy_exceptions.apply_exceptions`,
            capped by the config's ``exception_max_hours``): each one the
            request's scope matches is listed in the decision's
            ``exceptions`` (and so in the decision log's ``result``), at most
            one lowers the level, and a deny, a degraded decision, an AI
            agent's request or a request with a high-risk signal (or the
            callback count of failed verifications) is never lowered. A
            source that raises is logged and counted in
            :attr:`exception_lookup_failures`; the decision then stands as
            the policy made it.
        log_mask: mask rules applied to every decision-log record, in order,
            as OPA's ``system.log.mask`` states them: a JSON pointer under
            ``/input`` or ``/result`` erases that value (its pointer is
            listed in ``erased``; a value that is not there is left alone),
            ``{"op": "remove", "path": ...}`` does the same, and ``{"op":
            "upsert", "path": ..., "value": ...}`` sets it, creating missing
            objects on the way (listed in ``masked``). For example
            ``log_mask=["/input/target/manager", {"op": "upsert", "path":
            "/input/request/id", "value": "[ticket]"}]``. A rule that is not
            one of these raises :class:`InvalidConfigError` naming it
            (``log_mask[1]``). Two masks always apply, whatever the rules:
            ``request.justification`` is ``"[redacted]"``, and, after the
            rules, every string in the input, the result and
            ``engine_errors`` that looks like a credential
            (:func:`~helpdesk_policy.credentials.looks_like_credential`: an
            API key, a token, a one-time or recovery code, ``password=…``)
            becomes ``"[masked:credential]"`` with its pointer in ``masked``.
        cache_size: how many engine verdicts the decision cache keeps
            (:mod:`helpdesk_policy.cache`; least recently used dropped
            first); ``0`` turns it off. A request decided again under the
            same policy revision (a ticket decided when opened, updated and
            closed) gets the verdict its first decision's engine gave,
            without asking the engines; each decision still has its own
            ``decision_id`` and decision-log record, and the policy
            exceptions are applied to every one. Only a verdict the first
            engine of the chain gave is kept (never a degraded or fail-closed
            answer). ``None`` (the default):
            :data:`~helpdesk_policy.cache.DEFAULT_CACHE_SIZE` in front of the
            ``rego`` engine (``"auto"`` included), where a hit takes tens of
            microseconds and a miss milliseconds; off in front of the native
            engine, which decides in about the time a lookup takes (the key
            is the request's digest: it pays when most requests repeat, or
            when a ``log_sink`` needs the digest anyway), and in front of
            ``opa``, whose server logs each decision under the id the
            decision carries (a hit would never reach it). Give a size to
            turn it on there. The cache is off, with the reason logged at
            INFO and given by :meth:`cache_info`, when the policy set's Rego
            calls a builtin whose answer is not a function of the request
            (the clock, the network, a random source, ``opa.runtime``: see
            :data:`~helpdesk_policy.cache.NONDETERMINISTIC_BUILTINS`), or when
            the first engine is not one of the library's own (``rego``,
            ``native``, ``opa``).

    A decision-log record is a dict with the keys ``decision_id``,
    ``timestamp`` (UTC, ISO 8601), ``path`` (``"helpdesk/decision"``),
    ``policy_revision``, ``input_digest`` (sha256 of the full, unmasked
    request: a correlation key, not a secret), ``input`` (the request as
    JSON: ``request.justification`` is always ``"[redacted]"``, identifiers as
    ``log_identifiers`` says; ``request.id``, the ticket, and
    ``target.environment`` are kept), ``masked`` and ``erased`` (JSON pointers
    of the input and result values replaced or removed, as in OPA's decision
    logs), ``result`` (the decision, its ``target_id`` and its constraints' identifiers as
    ``log_identifiers`` says) and ``engine_errors`` (why engines before the
    one that answered failed). In OPA's decision-log shape it also carries
    ``bundles`` (``{"helpdesk": {"revision": <policy_revision>}}``), ``labels``
    (``app``, ``version``, ``log_labels`` and ``ticket``: the request's id
    as the record's input shows it after masking, absent when erased) and
    ``metrics`` (``{"timer_helpdesk_decide_ns": <int>}``: the engine chain's
    time for this decision).

    Use it as a context manager (``with`` / ``async with``) or call
    :meth:`close` / :meth:`aclose`; inside an event loop prefer ``aclose``,
    which closes async HTTP sessions on their own loop.

    Raises:
        EngineUnavailableError: an engine you named cannot load (the message
            names the extra to install). With ``"auto"``, an engine that cannot
            load is skipped with one warning per process naming the extra; the
            native engine then decides and decisions say ``engine: "native"``,
            ``degraded: false`` (a missing optional install is not a fault).
        InvalidConfigError: ``log_identifiers``, ``log_pseudonym_key``,
            ``log_labels``, a ``log_mask`` rule or ``cache_size`` is invalid.
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
        exceptions: ExceptionSource | None = None,
        log_mask: Sequence[str | Mapping[str, Any]] | None = None,
        cache_size: int | None = None,
    ) -> None:
        if cache_size is not None and (isinstance(cache_size, bool) or not isinstance(cache_size, int)
                                       or cache_size < 0):
            raise InvalidConfigError([FieldError("cache_size", "must be None or a whole number of at least 0 "
                                                               "(0 turns the decision cache off)")])
        self._log_identifiers, self._log_key = _log_masking(log_identifiers, log_pseudonym_key)
        if exceptions is not None and not callable(getattr(exceptions, "exceptions_for", None)):
            raise InvalidConfigError([FieldError("exceptions", "must have an exceptions_for(target_id, action) method "
                                                               "(an ExceptionSource such as ExceptionRegistry)")])
        # The version label is read from the distribution's metadata when a
        # record first needs it (the _log_labels property), not here.
        self._given_log_labels = _log_labels(log_labels)
        self._log_mask: tuple[LogMaskRule, ...] = parse_log_mask(log_mask)
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
            if tolerant and spec == "compiled" and any(type(e) is NativeEngine for e in engines):
                continue  # the stock rules: the hand-written mirror is faster, and proven for them
            try:
                engines.append(load_engine(spec, self.policy_set, **options.get(spec, {})))
            except EngineUnavailableError as exc:
                if not tolerant:
                    raise
                if spec == "native" and not _extra_missing(exc):
                    log.debug("engine 'native' does not mirror this policy set: %s", exc)
                else:
                    _warn_missing_once(spec, exc)
            except PolicyLoadError as exc:
                if not (tolerant and spec == "compiled"):
                    raise
                # A construct the compiler does not translate: the interpreter runs this policy.
                log.info("engine 'compiled' refuses this policy set, the interpreter decides: %s", exc)
        self._add_native_last_resort(engines)
        if not engines:
            raise EngineUnavailableError("no engine could be loaded", engine=str(engine))
        self.chain = EngineChain(engines, timeout=timeout, strict_level=self.config.strict_level)
        self.exceptions = exceptions
        #: How many times the exception source failed (each decision then stood as the policy made it).
        self.exception_lookup_failures = 0
        self._failures_lock = threading.Lock()
        self._cache = self._decision_cache(cache_size)

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

    @functools.cached_property
    def _log_labels(self) -> dict[str, str]:
        """The labels every decision-log record carries but ``ticket`` (read when a record first needs them)."""
        return {"app": "helpdesk-policy", "version": _package_version(), **self._given_log_labels}

    @property
    def engine_names(self) -> list[str]:
        return [e.name for e in self.engines]

    def decide(self, request: Request | Mapping[str, Any]) -> Decision:
        """Decide one request (a :class:`Request` or a plain dict).

        Raises:
            InvalidRequestError: the request is invalid; every bad field is listed.
        """
        req = parse_request(request)
        cache = self._cache
        if cache.enabled:
            digest: str | DigestOf = input_digest(req)
            key = (self._revision, digest)
            started = time.perf_counter_ns()
            answer = self._cached(cache.get(key))
            if answer is None:
                answer = self.chain.decide(req)
                self._keep(key, answer)
        else:
            # Worked out only if something reads it (the decision log does).
            digest = DigestOf(req)
            started = time.perf_counter_ns()
            answer = self.chain.decide(req)
        elapsed = time.perf_counter_ns() - started
        decision = self._finish(req, answer, digest=digest)
        if self.log_sink is not None:
            self._deliver(self._record(req, decision, answer.errors, elapsed))
        return decision

    def decide_many(self, requests: Iterable[Request | Mapping[str, Any]], *, workers: int | None = None,
                    progress: bool = False) -> list[Decision]:
        """Decide several requests; the decisions come in the requests' order.

        All are validated first: one invalid request raises
        :class:`InvalidRequestError` listing bad fields as ``[i].path``, and
        nothing is decided or logged.

        Args:
            requests: :class:`Request` objects or plain dicts.
            workers: processes that decide them, this one included (see
                :mod:`helpdesk_policy.replay`): ``None`` (the default) uses
                every CPU from :data:`~helpdesk_policy.replay.AUTO_MIN_REQUESTS`
                requests on, and this process alone below; ``1`` always this
                process alone; ``N`` starts ``N - 1`` worker processes. With
                workers, each decision is the same apart from its
                ``decision_id``, and the ``log_sink`` gets the records in the
                requests' order, in this process, once every request is
                decided. A policy that cannot be rebuilt in a worker (an
                ``opa`` engine, an engine or exception source that cannot be
                pickled) decides here, with the reason logged.
            progress: draw a progress bar on stderr when it is a terminal.

        Raises:
            InvalidRequestError: a request is invalid; every bad field is listed.
            InvalidConfigError: ``workers`` is not a positive int or None.
        """
        from .replay import decide_here, replay_decisions  # multiprocessing only when replaying

        items = requests if isinstance(requests, list) else list(requests)
        replayed = replay_decisions(self, items, workers=workers, progress=progress)
        if replayed is None:
            return decide_here(self, items, progress=progress)
        decisions, records = replayed
        if self.log_sink is not None:
            for record in records:
                self._deliver(record)
        return decisions

    async def adecide(self, request: Request | Mapping[str, Any]) -> Decision:
        """Async twin of :meth:`decide`: engines run without blocking the event loop.

        An ``async def`` log sink is awaited; a plain one runs in a worker
        thread, so a slow sink never stalls the event loop.
        """
        import asyncio

        req = parse_request(request)
        cache = self._cache
        if cache.enabled:
            digest: str | DigestOf = input_digest(req)
            key = (self._revision, digest)
            started = time.perf_counter_ns()
            answer = self._cached(cache.get(key))
            if answer is None:
                answer = await self.chain.adecide(req)
                self._keep(key, answer)
        else:
            digest = DigestOf(req)
            started = time.perf_counter_ns()
            answer = await self.chain.adecide(req)
        elapsed = time.perf_counter_ns() - started
        # The source may read its store (a refresh): off the event loop's thread.
        found = None if self.exceptions is None else await asyncio.to_thread(self._lookup_exceptions, req)
        decision = self._finish(req, answer, found, digest=digest)
        if self.log_sink is not None:
            await self._adeliver(self._record(req, decision, answer.errors, elapsed))
        return decision

    async def adecide_many(self, requests: Iterable[Request | Mapping[str, Any]], *, workers: int | None = None,
                           progress: bool = False) -> list[Decision]:
        """Async twin of :meth:`decide_many`: in this process the requests are
        decided concurrently; with worker processes (``workers``, as for
        :meth:`decide_many`) the event loop awaits them from a thread, and an
        async ``log_sink`` is awaited on the records, in order."""
        import asyncio

        from .replay import ProgressBar, plan_workers, replay_decisions  # multiprocessing only when replaying

        items = requests if isinstance(requests, list) else list(requests)
        if plan_workers(len(items), workers) > 1:
            replayed = await asyncio.to_thread(replay_decisions, self, items, workers=workers, progress=progress)
            if replayed is not None:
                decisions, records = replayed
                if self.log_sink is not None:
                    for record in records:
                        await self._adeliver(record)
                return decisions
        parsed = _parse_all(items)
        if not progress:
            return list(await asyncio.gather(*(self.adecide(r) for r in parsed)))
        bar = ProgressBar(len(parsed), "decided")

        async def counted(request: Request) -> Decision:
            decision = await self.adecide(request)
            bar.advance()
            return decision

        try:
            return list(await asyncio.gather(*(counted(r) for r in parsed)))
        finally:
            bar.close()

    def verify(
        self,
        decision: Decision,
        evidence: Evidence,
        *,
        now: datetime | None = None,
        window_hours: int | None = None,
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
            window_hours: How old evidence may be (default: the config's
                ``evidence_window_hours``).
            withdrawn_revisions: Policy revisions withdrawn since.
        """
        from .evidence import verify as verify_evidence

        if window_hours is None:
            window_hours = self.config.evidence_window_hours
        return verify_evidence(decision, evidence, now=now, window_hours=window_hours,
                               withdrawn_revisions=withdrawn_revisions)

    def cache_info(self) -> CacheInfo:
        """The decision cache's hits, misses, size, and whether it is on (and why not).

        >>> policy = HelpdeskPolicy(engine="native", cache_size=128)
        >>> policy.cache_info()
        CacheInfo(hits=0, misses=0, maxsize=128, currsize=0, enabled=True, reason=None)
        >>> HelpdeskPolicy(engine="native", cache_size=0).cache_info().reason
        'cache_size is 0'
        >>> HelpdeskPolicy(engine="native").cache_info().enabled  # see cache_size
        False
        """
        return self._cache.info()

    def cache_clear(self) -> None:
        """Empty the decision cache and reset its counts."""
        self._cache.clear()

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

    def _decision_cache(self, size: int | None) -> DecisionCache:
        """The decision cache, off (with the reason logged) when it would not be sound."""
        first = self.chain.engines[0]
        if size is None:
            off_by_default = _OFF_BY_DEFAULT.get(_qualified_name(type(first)))
            if off_by_default is not None:
                log.debug("decision cache off: %s", off_by_default)
                return DecisionCache(0, disabled_reason=off_by_default)
            size = DEFAULT_CACHE_SIZE
        reason = None if size == 0 else _cache_unsound(first, self.policy_set)
        if reason is not None:
            log.info("decision cache off: %s", reason)
        return DecisionCache(size, disabled_reason=reason)

    def _cached(self, verdict: Any) -> ChainAnswer | None:
        """What the first engine answered for this key before, as the chain's answer; None on a miss."""
        if verdict is None:
            return None
        return ChainAnswer(_own_lists(verdict), self.chain.engines[0].name, 0, [])

    def _keep(self, key: tuple[str, str], answer: ChainAnswer) -> None:
        # Only the first engine's verdict: never a degraded (a fallback's) or the fail-closed answer,
        # and never the decision (each has its own id; exceptions are applied every time).
        if answer.position == 0:
            self._cache.put(key, _own_lists(answer.verdict))

    def _finish(self, req: Request, answer: ChainAnswer,
                found: Sequence[PolicyException] | None = None, *, digest: str | DigestOf | None = None) -> Decision:
        """The engines' answer as a :class:`Decision`, with the policy exceptions that touch it.

        ``found``: the exceptions already looked up (:meth:`adecide` looks
        them up off the event loop); ``None`` looks them up here.
        ``digest``: the request's input digest when already known, or a
        :class:`~helpdesk_policy.models.DigestOf` it (worked out when first
        read); ``None`` stands for ``DigestOf(req)``. The decision id, unless
        the engine gave one, is drawn when first read.
        """
        decision = construct_trusted(Decision, {
            **answer.verdict.__dict__,
            "engine": answer.engine,
            "degraded": answer.position > 0,
            "policy_revision": self._revision,
            "decision_id": answer.decision_id or PendingDecisionId(),
            "input_digest": DigestOf(req) if digest is None else digest,
            "request_id": req.request.id,
            "action": req.request.action,
            "target_id": req.target.id,
            "exceptions": [],
        })
        if self.exceptions is None:
            return decision
        if found is None:
            found = self._lookup_exceptions(req)
        if not found:
            return decision
        from .policy_exceptions import apply_exceptions

        try:
            decision = apply_exceptions(decision, req, found, now=datetime.now(timezone.utc),
                                        max_hours=self.config.exception_max_hours,
                                        high_risk_signals=self.config.high_risk_signals,
                                        failed_verifications_limit=self.config.failed_verifications_callback)
        except Exception:  # noqa: BLE001 - a bad exception record never loosens a decision
            self._exception_failed("cannot apply the policy exceptions for %s: deciding without them",
                                   req.request.id)
            return decision
        applied = [e for e in decision.exceptions if e.status == "applied"]
        if applied:
            log.info("policy exception %s applied to %s: %s -> %s", applied[0].id, _loggable_ticket(req.request.id),
                     applied[0].level_before.value, applied[0].level_after.value)
        return decision

    def _lookup_exceptions(self, req: Request) -> Sequence[PolicyException]:
        """The exceptions for the request's identity and action; none (stricter) when the source fails."""
        try:
            return list(self.exceptions.exceptions_for(req.target.id, req.request.action.value))  # type: ignore[union-attr]
        except Exception:  # noqa: BLE001 - a failing source never changes a decision but to keep it strict
            self._exception_failed("policy exception source failed for %s: deciding without exceptions",
                                   req.request.id)
            return ()

    def _exception_failed(self, message: str, ticket: str) -> None:
        with self._failures_lock:
            self.exception_lookup_failures += 1
        log.warning(message, _loggable_ticket(ticket), exc_info=True)

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
        return _masked_record(record, self._log_mask)

    def _deliver(self, record: dict[str, Any]) -> None:
        """Hand a record to the sink from :meth:`decide`; a failing sink never changes the decision.

        An ``async def`` sink's coroutine is run to completion here when no
        event loop runs in this thread, else scheduled on that loop (never
        dropped unawaited).
        """
        try:
            result = self.log_sink(record)  # type: ignore[misc]
            if inspect.isawaitable(result):
                import asyncio

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
        import asyncio

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


def _masked_record(record: dict[str, Any], rules: Sequence[LogMaskRule]) -> dict[str, Any]:
    """Apply the ``log_mask`` rules, then mask every credential-shaped string left.

    The credential pass runs last so that nothing a rule upserts escapes it.
    It covers the input, the result and the engines' error messages (an
    engine's URL may carry a password); ``labels.ticket`` and the result's
    ``request_id`` follow what became of ``input.request.id``.
    """
    ticket = record["labels"]["ticket"]
    if rules:
        apply_log_mask(record, rules)
    # A rule about the result's own copy of the ticket wins over following the input's.
    result_ticket_ruled = _RESULT_TICKET in record["masked"] or _RESULT_TICKET in record["erased"]
    masked = record["masked"]
    request = record.get("input")
    request = request.get("request") if isinstance(request, dict) else None
    before = request.get("id") if isinstance(request, dict) else None
    for part in ("input", "result", "engine_errors"):
        if part in record:
            record[part] = mask_credentials(record[part], "/" + part, masked)
    if isinstance(before, str) and not ticket_id_looks_like_credential(before) and request["id"] != before:
        # A ticket number (Zendesk's are runs of digits) is the ticketing system's, not a code.
        request["id"] = before
        masked.remove("/input/request/id")
    now = request.get("id") if isinstance(request, dict) else None
    if not result_ticket_ruled:
        _result_ticket_follows(record, ticket, now)
    if now != ticket:
        if isinstance(now, str) and now:
            record["labels"]["ticket"] = now
        else:
            del record["labels"]["ticket"]  # erased with the request's id
    # A pointer listed twice (a rule and a default masking one value) is listed once.
    record["masked"] = list(dict.fromkeys(masked))
    record["erased"] = list(dict.fromkeys(record["erased"]))
    return record


#: Where a record's result holds the ticket (the decision's ``request_id``).
_RESULT_TICKET = "/result/request_id"


def _result_ticket_follows(record: dict[str, Any], ticket: str, now: Any) -> None:
    """Make ``result.request_id`` say what ``input.request.id`` says once masked.

    The decision carries its request's id: a rule that erases or replaces the
    input's ticket, or the credential pass, treats both copies alike, and a
    ticket number (a run of digits) kept in the input is kept in the result.
    """
    result = record.get("result")
    if not isinstance(result, dict) or "request_id" not in result or result["request_id"] == now:
        return
    masked, erased = record["masked"], record["erased"]
    if _RESULT_TICKET in masked:
        masked.remove(_RESULT_TICKET)
    if isinstance(now, str) and now:
        result["request_id"] = now
        if now != ticket:
            masked.append(_RESULT_TICKET)
    else:
        del result["request_id"]
        erased.append(_RESULT_TICKET)


def _own_lists(verdict: Verdict) -> Verdict:
    """``verdict`` with lists of its own: what the cache keeps and what each hit gets.

    A decision is frozen but its lists are plain lists: a caller that edits
    one must not change the cached verdict, nor another decision made from it.
    """
    values = verdict.__dict__
    return construct_trusted(type(verdict), {
        **values,
        "requirements": list(values["requirements"]),
        "reasons": list(values["reasons"]),
        "obligations": list(values["obligations"]),
    })


def _loggable_ticket(ticket: str) -> str:
    """The ticket id for a log message: masked when it is credential-shaped (never log a code)."""
    return CREDENTIAL_MASK if ticket_id_looks_like_credential(ticket) else ticket


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
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("helpdesk-policy")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


#: Why the cache is off by default in front of these engines (``cache_size=N`` turns it on).
_OFF_BY_DEFAULT = {
    # Measured: a native decision costs about what the cache key (the input digest) does, so a
    # miss costs ~40% more than no cache and a hit saves ~15%: a loss unless most requests repeat.
    "helpdesk_policy.engines.native.NativeEngine":
        "the first engine is the native one, which decides about as fast as a cache lookup "
        "(give cache_size to cache anyway)",
    # The OPA server is the decision point: its own decision log records each decision under the
    # id the decision carries (they correlate), which a hit, never sent, would not be.
    "helpdesk_policy.engines.opa.OpaEngine":
        "the first engine is an OPA server, whose own decision log records every decision under its id "
        "(give cache_size to cache anyway)",
}

#: The engine classes whose answer depends on the request and the policy set
#: alone (exactly these classes: a subclass may override ``evaluate``).
_DETERMINISTIC_ENGINES = frozenset({
    "helpdesk_policy.engines.native.NativeEngine",
    "helpdesk_policy.engines.compiled.CompiledEngine",
    "helpdesk_policy.engines.rego.RegoEngine",
    "helpdesk_policy.engines.opa.OpaEngine",
})


def _qualified_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _cache_unsound(engine: Engine, policy_set: PolicySet) -> str | None:
    """Why caching what ``engine`` answers would not be sound, or None.

    Only the first engine's answers are cached. Its class must be one of the
    library's own (not read by name: that would import regopy or aiohttp),
    and the policy set it evaluates must call no builtin whose answer is not
    a function of the request (:func:`~helpdesk_policy.cache.nondeterministic_calls`).
    """
    cls = type(engine)
    if _qualified_name(cls) not in _DETERMINISTIC_ENGINES:
        return (f"the first engine ({engine.name!r}, a {cls.__qualname__}) is not one of the library's own: "
                "its answers may not depend on the request alone")
    own = getattr(engine, "policy_set", None)
    modules = (own if isinstance(own, PolicySet) else policy_set).modules
    calls = nondeterministic_calls(modules)
    if calls:
        more = f" and {len(calls) - 3} more" if len(calls) > 3 else ""
        return f"the policy calls builtins whose answers change between calls: {', '.join(calls[:3])}{more}"
    return None


def _extra_missing(exc: EngineUnavailableError) -> bool:
    """Whether an engine could not load for want of an install (not because it refuses the policy)."""
    return isinstance(exc.__cause__, ImportError)


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
