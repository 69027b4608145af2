"""The ``opa`` engine: decisions from an OPA server, over OPA's REST data API.

Install the extra: ``pip install 'helpdesk-policy[opa]'``. The engine POSTs
the validated request as ``{"input": …}`` to ``/v1/data/helpdesk/decision``
(or the configured ``path``) with `opa-python-client`_ and validates the
``result`` into a verdict. Serve the policies to OPA as a bundle
(``helpdesk-policy bundle build``) or push them with :meth:`OpaEngine.push_policies`.

>>> from helpdesk_policy import HelpdeskPolicy
>>> policy = HelpdeskPolicy(engine="opa", fallback=["rego", "native"],
...                         engine_options={"opa": {"url": "http://opa:8181", "deadline": 0.25}})
... # doctest: +SKIP

Resilience (see :mod:`helpdesk_policy.resilience`): every call has **one**
deadline (``deadline`` seconds, retries included); retryable failures
(connection refused/reset, HTTP 5xx, a timeout when budget remains) are
retried with jittered exponential backoff; a circuit breaker opens after
``breaker_threshold`` consecutive failed calls and refuses calls without
touching the network for ``breaker_cooldown`` seconds, then lets one probe
through. Sync and async calls share the breaker.

Errors, in :mod:`helpdesk_policy.errors` terms:

=====================================  ==========================================  =========
what happened                          raised                                      retried
=====================================  ==========================================  =========
connection refused / reset / closed    :class:`EngineUnavailableError`             yes
TLS handshake or certificate failure   :class:`EngineUnavailableError`             no
breaker open                           :class:`CircuitOpenError`                    no
deadline passed                        :class:`EngineTimeoutError`                 if budget remains
HTTP 4xx (OPA ``{"code","message"}``)  :class:`OpaHTTPError` (an ``EngineError``)   no
HTTP 5xx                               :class:`OpaHTTPError` (an ``EngineError``)   yes
200 without ``result`` (undefined)     :class:`UndefinedDecisionError`             no
not JSON / not a valid decision        :class:`MalformedDecisionError`             no
=====================================  ==========================================  =========

Only a 4xx does not count against the breaker: it is about this request,
not about the server's health.

Why the client is wrapped rather than used as is (opa-python-client 3.0.0):

* It retries by itself (urllib3 ``Retry`` in the sync client, a loop in the
  async one) outside any deadline; both are disabled (``retries=0``) and our
  own retry runs inside the call's deadline.
* Its timeout is one attribute per client, so a per-call deadline would race
  between threads: the sync client here reads its timeout from a
  thread-local, set for the duration of each call.
* ``requests`` applies a timeout per socket operation (connect, each read),
  not to the whole exchange; OPA answers are one small write, so in practice
  this bounds the call, and the facade's ``timeout=`` gives a hard cap for
  sync callers. Async calls are hard-capped with :func:`asyncio.wait_for`.
* The async client builds its TLS context from ``ssl``/``cert`` only (no CA
  file, no separate key file) and sets one session-wide timeout; the engine
  builds the aiohttp session itself, with the CA file, client certificate
  and key, and no session timeout.
* The async ``query_rule`` raises on an error status before reading the
  body, losing OPA's ``code``/``message``; the engine's subclass reads the
  body first. The sync client keeps it (``HTTPError.response``).
* The sync client's connection pool holds 10 connections; it is raised to
  ``pool_size`` so that many threads keep their keep-alive connections.

.. _opa-python-client: https://pypi.org/project/opa-python-client/
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

# Imported at module level on purpose: the engine registry imports this module
# only when the "opa" engine is asked for, and an ImportError here becomes an
# EngineUnavailableError naming the ``opa`` extra.
import aiohttp
import requests
from opa_client.errors import RegoParseError
from opa_client.opa import OpaClient
from opa_client.opa_async import AsyncOpaClient
from pydantic import ValidationError
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from ..errors import (
    EngineError,
    EngineTimeoutError,
    EngineUnavailableError,
    MalformedDecisionError,
    OpaHTTPError,
    PolicyRevisionMismatchError,
    PolicyLoadError,
    UndefinedDecisionError,
)
from ..models import Request, Verdict
from ..policies import DECISION_PATH, PolicySet
from ..resilience import CircuitBreaker, RetryPolicy, acall, call
from .base import RawDecision

__all__ = ["OpaEngine", "OpaHTTPError"]

log = logging.getLogger(__name__)

#: The longest error text kept from an OPA answer.
_MAX_MESSAGE = 300


class _Unavailable(EngineUnavailableError):
    """An unreachable server; ``retryable`` is False for TLS failures."""

    def __init__(self, message: str, *, engine: str, retryable: bool = True) -> None:
        super().__init__(message, engine=engine)
        self.retryable = retryable


# --------------------------------------------------------------------------- clients


class _Adapter(HTTPAdapter):
    """Applies a CA file (or verify=False) to every request.

    ``requests`` lets ``$REQUESTS_CA_BUNDLE``/``$CURL_CA_BUNDLE`` override a
    session's ``verify``, which would silently replace the configured CA file.
    """

    def __init__(self, verify: bool | str | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._forced_verify = verify

    def send(self, request: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        if self._forced_verify is not None:
            kwargs["verify"] = self._forced_verify
        return super().send(request, **kwargs)


class _SyncClient(OpaClient):
    """``OpaClient`` with a per-thread timeout, no own retries and a larger pool."""

    def __init__(self, *args: Any, verify: bool | str = True, pool_size: int = 32,
                 query_params: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self.query_params = query_params
        self._local = threading.local()
        self._pool_size = pool_size
        self._verify = verify
        super().__init__(*args, **kwargs)

    @property  # type: ignore[override]
    def timeout(self) -> Any:
        return getattr(self._local, "timeout", self._default_timeout)

    @timeout.setter
    def timeout(self, value: Any) -> None:
        self._default_timeout = value

    def _init_session(self) -> requests.Session:
        session = super()._init_session()
        # Replace the client's adapter: no retries of our own (ours run inside
        # the deadline), enough pooled connections for many threads, and the
        # configured verification (see _Adapter).
        adapter = _Adapter(None if self._verify is True else self._verify, max_retries=Retry(0, read=False),
                           pool_connections=1, pool_maxsize=self._pool_size)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.verify = self._verify
        return session

    def query(self, document: dict[str, Any], path: str, timeout: float) -> Any:
        self._local.timeout = timeout
        try:
            return self.query_rule(document, path, query_params=self.query_params)
        finally:
            del self._local.timeout


class _HTTPStatus(Exception):
    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


class _AsyncClient(AsyncOpaClient):
    """``AsyncOpaClient`` with our TLS context, no session timeout, and error bodies kept."""

    def __init__(self, *args: Any, ssl_context: ssl.SSLContext | bool | None, pool_size: int,
                 query_params: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.query_params = query_params
        self._ssl_context = ssl_context
        self._pool_size = pool_size

    def open_session(self) -> None:
        """Create the aiohttp session (must run inside the event loop that will use it)."""
        self._connector = aiohttp.TCPConnector(ssl=self._ssl_context, limit=self._pool_size)  # type: ignore[arg-type]
        self._session = aiohttp.ClientSession(
            headers=self.headers, connector=self._connector, timeout=aiohttp.ClientTimeout(total=None)
        )

    async def _init_session(self) -> None:
        self.open_session()

    async def query_rule(  # type: ignore[override]
        self, input_data: dict[str, Any], package_path: str, rule_name: str | None = None,
        query_params: dict[str, bool] | None = None,
    ) -> Any:
        # Same URL and payload as the client's own query_rule, but the body of
        # an error answer is read before raising, so OPA's code/message survive.
        path = package_path.replace(".", "/")
        if rule_name:
            path = f"{path}/{rule_name}"
        url = f"{self.root_url}/data/{path}"
        params = query_params or self.query_params
        if params:
            url = f"{url}?{urlencode(params)}"
        async with self._request("POST", url, json={"input": input_data}) as response:
            body = await response.read()
            if response.status >= 400:
                raise _HTTPStatus(response.status, body)
        return json.loads(body)

    def close_now(self) -> None:
        """Close the session without awaiting, from any thread, even after its loop closed."""
        session, self._session = self._session, None
        if session is None or session.closed:
            return
        connector = session.connector
        loop = session._loop  # noqa: SLF001 - the loop the session lives on
        session.detach()  # the session no longer owns a connector: closed, no warning
        if connector is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop.is_closed() or running is loop:
            connector._close(abort_ssl=True)  # noqa: SLF001 - sync close of transports
        elif loop.is_running():
            loop.call_soon_threadsafe(lambda: connector._close(abort_ssl=True))  # noqa: SLF001
        else:
            loop.run_until_complete(connector.close())


# ---------------------------------------------------------------------------- engine


class OpaEngine:
    """Evaluate ``data.helpdesk.decision`` on an OPA server.

    Args:
        policy_set: the policy set this engine stands for (its revision is
            what the facade reports; :meth:`push_policies` uploads it).
        url: the OPA server, ``http://host:port`` or ``https://host:port``.
        path: the document to evaluate, ``helpdesk/decision`` by default.
        token: a bearer token (OPA's ``--authentication=token``).
        ca_file: a PEM file of CAs that sign the server's certificate
            (default: the system trust store).
        verify: ``False`` skips certificate verification (never in production).
        client_cert, client_key: PEM files for mutual TLS.
        deadline: seconds a whole call may take, retries included.
        attempt_timeout: cap per attempt (see :class:`~helpdesk_policy.resilience.RetryPolicy`).
        retries: retries after the first attempt, for retryable failures.
        backoff, backoff_max: first and longest wait between attempts, seconds.
        breaker_threshold: consecutive failed calls that open the breaker.
        breaker_cooldown: seconds the open breaker refuses calls.
        breaker: share one :class:`~helpdesk_policy.resilience.CircuitBreaker`
            between engines that call the same server (overrides the two above).
        headers: extra HTTP headers.
        pool_size: keep-alive connections kept per client.
        check_revision: ask OPA for the provenance of each decision and refuse
            (:class:`~helpdesk_policy.errors.PolicyRevisionMismatchError`, so
            the chain falls back) a decision made by a bundle whose revision
            is not this policy set's revision: a decision must not carry the
            revision of a policy that did not make it. A server without
            bundles (policies pushed through the API) reports no revision and
            is accepted.
    """

    name = "opa"

    def __init__(
        self,
        policy_set: PolicySet,
        *,
        url: str = "http://localhost:8181",
        path: str = DECISION_PATH,
        token: str | None = None,
        ca_file: str | None = None,
        verify: bool = True,
        client_cert: str | None = None,
        client_key: str | None = None,
        deadline: float = 1.0,
        attempt_timeout: float | None = None,
        retries: int = 2,
        backoff: float = 0.05,
        backoff_max: float = 1.0,
        breaker_threshold: int = 5,
        breaker_cooldown: float = 30.0,
        breaker: CircuitBreaker | None = None,
        headers: Mapping[str, str] | None = None,
        pool_size: int = 32,
        check_revision: bool = True,
    ) -> None:
        if deadline <= 0:
            raise ValueError(f"opa: deadline must be positive, got {deadline!r}")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"opa: url must be http(s)://host[:port], got {url!r}")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(f"opa: url must not have a path or query (the client adds /v1/…), got {url!r}")
        if client_key and not client_cert:
            raise ValueError("opa: client_key needs client_cert")
        self.policy_set = policy_set
        self.url = url.rstrip("/")
        self.path = path.strip("/")
        self.deadline = deadline
        self.retry = RetryPolicy(retries=retries, base=backoff, cap=backoff_max, attempt_timeout=attempt_timeout)
        self.breaker = breaker or CircuitBreaker(breaker_threshold, breaker_cooldown, name=self.name)
        tls = parts.scheme == "https"
        host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        port = parts.port or (443 if tls else 80)
        cert: str | tuple[str, str] | None = (client_cert, client_key) if client_cert and client_key else client_cert
        self._client_args: dict[str, Any] = {
            "host": host, "port": port, "ssl": tls, "cert": cert, "token": token,
            "headers": dict(headers) if headers else None, "retries": 0, "timeout": deadline,
        }
        self._verify: bool | str = (ca_file or True) if verify else False
        if tls and not verify:
            log.warning("opa: TLS certificate verification is OFF for %s", self.url)
        self._ssl_context = _ssl_context(ca_file, verify, client_cert, client_key) if tls else None
        self._pool_size = pool_size
        self.check_revision = check_revision
        self._query_params = {"provenance": "true"} if check_revision else None
        self._lock = threading.Lock()
        self._sync: _SyncClient | None = None
        self._async: dict[asyncio.AbstractEventLoop, _AsyncClient] = {}

    def __repr__(self) -> str:
        return f"<OpaEngine {self.url}/v1/data/{self.path} breaker={self.breaker.state.value}>"

    # ----------------------------------------------------------------- evaluate

    def evaluate(self, request: Request) -> RawDecision:
        """Decide one request on the server (blocking)."""
        document = self._document(request)
        client = self._sync_client()
        return call(  # type: ignore[no-any-return]
            lambda timeout: self._answer(self._post(client, document, timeout)),
            deadline=self.deadline, retry=self.retry, breaker=self.breaker,
            counts_as_failure=_counts_as_failure, timeout_error=self._timeout_error,
        )

    async def aevaluate(self, request: Request) -> RawDecision:
        """Decide one request on the server without blocking the event loop (aiohttp)."""
        document = self._document(request)
        client = self._async_client()
        return await acall(  # type: ignore[no-any-return]
            lambda timeout: self._apost(client, document),
            deadline=self.deadline, retry=self.retry, breaker=self.breaker,
            counts_as_failure=_counts_as_failure, timeout_error=self._timeout_error,
        )

    def _document(self, request: Request) -> dict[str, Any]:
        document = request.to_input()
        try:
            json.dumps(document, allow_nan=False)
        except ValueError:
            # e.g. an infinite number of hours: valid for the model, not JSON.
            # Not the server's fault: no call, no retry, no breaker count.
            raise EngineError("the request cannot be sent as JSON (a non-finite number)", engine=self.name) from None
        return document

    def _post(self, client: _SyncClient, document: dict[str, Any], timeout: float) -> Any:
        try:
            return client.query(document, self.path, timeout)
        except requests.exceptions.Timeout:
            raise self._timeout_error(timeout) from None
        except requests.exceptions.SSLError as exc:
            raise _Unavailable(f"TLS failure talking to {self.url}: {_short(exc)}", engine=self.name, retryable=False) from None
        except requests.exceptions.ConnectionError as exc:
            raise _Unavailable(f"cannot reach {self.url}: {_short(exc)}", engine=self.name) from None
        except requests.exceptions.HTTPError as exc:
            response = exc.response
            raise self._http_error(response.status_code if response is not None else 0,
                                   response.content if response is not None else b"") from None
        except ValueError:  # requests.JSONDecodeError is a ValueError
            raise MalformedDecisionError("the server's answer is not JSON", engine=self.name) from None
        except requests.exceptions.RequestException as exc:
            raise _Unavailable(f"transport error from {self.url}: {_short(exc)}", engine=self.name) from None

    async def _apost(self, client: _AsyncClient, document: dict[str, Any]) -> RawDecision:
        try:
            body = await client.query_rule(document, self.path)
        except _HTTPStatus as exc:
            raise self._http_error(exc.status, exc.body) from None
        except ValueError:  # json.JSONDecodeError
            raise MalformedDecisionError("the server's answer is not JSON", engine=self.name) from None
        except asyncio.TimeoutError:  # aiohttp's own socket timeouts
            raise self._timeout_error(self.deadline) from None
        except aiohttp.ClientSSLError as exc:
            raise _Unavailable(f"TLS failure talking to {self.url}: {_short(exc)}", engine=self.name, retryable=False) from None
        except aiohttp.ClientConnectionError as exc:
            raise _Unavailable(f"cannot reach {self.url}: {_short(exc)}", engine=self.name) from None
        except aiohttp.ClientError as exc:
            raise _Unavailable(f"transport error from {self.url}: {_short(exc)}", engine=self.name) from None
        return self._answer(body)

    def _answer(self, body: Any) -> RawDecision:
        """Validate OPA's ``{"result": …, "decision_id": …}`` answer."""
        if not isinstance(body, dict):
            raise MalformedDecisionError(f"the server's answer is a JSON {type(body).__name__}, not an object", engine=self.name)
        if "result" not in body:
            raise UndefinedDecisionError(
                f"data.{self.path.replace('/', '.')} is undefined on {self.url} (are the policies loaded?)", engine=self.name
            )
        result = body["result"]
        if not isinstance(result, dict):
            raise MalformedDecisionError(f"result is a JSON {type(result).__name__}, not a decision object", engine=self.name)
        try:
            Verdict.model_validate(result)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}"
                for e in exc.errors(include_input=False, include_url=False)
            )
            raise MalformedDecisionError(f"result is not a valid decision: {problems[:_MAX_MESSAGE]}", engine=self.name) from None
        if self.check_revision:
            self._check_revision(body.get("provenance"))
        decision_id = body.get("decision_id")
        if isinstance(decision_id, str) and decision_id:
            # The facade uses OPA's decision id, so our decision log and OPA's correlate.
            return {**result, "decision_id": decision_id}
        return result

    def _check_revision(self, provenance: Any) -> None:
        """Refuse a decision made by a bundle of another policy revision.

        OPA's provenance lists ``bundles: {name: {revision}}`` (or, for the
        legacy single-bundle configuration, a top-level ``revision``); the
        decision is accepted when one of them is this policy set's revision,
        or when the server has no bundle to report.
        """
        if not isinstance(provenance, dict):
            return
        bundles = provenance.get("bundles")
        entries = list(bundles.values()) if isinstance(bundles, dict) else []
        if "revision" in provenance:
            entries.append(provenance)
        if not entries:
            return
        revisions = sorted({str(b.get("revision")) for b in entries if isinstance(b, dict)})
        if self.policy_set.revision in revisions:
            return
        raise PolicyRevisionMismatchError(
            f"{self.url} runs bundle revision(s) {', '.join(r[:19] for r in revisions) or '(none)'}, "
            f"not the configured policy revision {self.policy_set.revision[:19]}",
            engine=self.name,
        )

    def _http_error(self, status: int, body: bytes) -> OpaHTTPError:
        code = message = None
        errors: list[Any] = []
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        if isinstance(doc, dict):
            code = doc.get("code") if isinstance(doc.get("code"), str) else None
            message = doc.get("message") if isinstance(doc.get("message"), str) else None
            errors = doc.get("errors") if isinstance(doc.get("errors"), list) else []
        text = f"HTTP {status}"
        if code or message:
            text += f" {code or ''}: {(message or '')[:_MAX_MESSAGE]}"
        details = [_error_summary(e) for e in errors[:5]]
        if details:
            text += f" [{'; '.join(details)}]"
        return OpaHTTPError(text, engine=self.name, status=status, code=code, opa_message=message, errors=errors)

    def _timeout_error(self, seconds: float) -> EngineTimeoutError:
        return EngineTimeoutError(f"no answer from {self.url} within {seconds:.3g}s", engine=self.name)

    # ------------------------------------------------------------------ clients

    def _sync_client(self) -> _SyncClient:
        client = self._sync
        if client is None:
            with self._lock:
                if self._sync is None:
                    self._sync = _SyncClient(verify=self._verify, pool_size=self._pool_size, query_params=self._query_params,
                                             **self._client_args)
                client = self._sync
        return client

    def _async_client(self) -> _AsyncClient:
        # aiohttp sessions belong to one event loop: one client per loop,
        # created lazily inside it; clients of closed loops are dropped.
        loop = asyncio.get_running_loop()
        client = self._async.get(loop)
        if client is not None:
            return client
        with self._lock:
            for old in [lp for lp in self._async if lp.is_closed()]:
                self._async.pop(old).close_now()
            client = self._async.get(loop)
            if client is None:
                client = _AsyncClient(ssl_context=self._ssl_context, pool_size=self._pool_size,
                                      query_params=self._query_params, **self._client_args)
                client.open_session()
                self._async[loop] = client
        return client

    # ---------------------------------------------------------------- lifecycle

    def close(self) -> None:
        """Close every HTTP session (sync and async). Safe to call more than once;
        an engine used again after ``close`` opens new sessions.

        An aiohttp session belongs to the event loop it was made in: prefer
        ``await engine.aclose()`` inside that loop. ``close()`` called inside
        the loop closes its connections on the loop's next iteration; called
        from another thread it schedules that on the loop. A session whose loop
        was closed without either leaks its sockets (asyncio warns about them).
        """
        with self._lock:
            sync, self._sync = self._sync, None
            clients, self._async = list(self._async.values()), {}
        if sync is not None:
            sync.close_connection()
        for client in clients:
            client.close_now()

    async def aclose(self) -> None:
        """Close every session, awaiting the running loop's one properly."""
        loop = asyncio.get_running_loop()
        with self._lock:
            mine = self._async.pop(loop, None)
        if mine is not None:
            await mine.close_connection()
        self.close()

    def __enter__(self) -> OpaEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> OpaEngine:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ helpers

    def check_health(self, timeout: float | None = None) -> bool:
        """``GET /health``: True when the server answers 200. Bypasses the breaker."""
        client = self._sync_client()
        client._local.timeout = timeout or self.deadline  # noqa: SLF001
        try:
            return bool(client.check_health())
        finally:
            del client._local.timeout  # noqa: SLF001

    async def acheck_health(self, timeout: float | None = None) -> bool:
        """Async twin of :meth:`check_health`."""
        client = self._async_client()
        try:
            return bool(await asyncio.wait_for(client.check_health(), timeout or self.deadline))
        except asyncio.TimeoutError:
            return False

    def push_policies(self, policy_set: PolicySet | None = None, *, timeout: float = 10.0) -> list[str]:
        """Load the policy set into a plain OPA (one started without a bundle).

        ``PUT /v1/policies/<relative path>`` for every module, then
        ``PUT /v1/data/helpdesk/config`` with the config. Returns the policy
        ids. A server that got its policies from a bundle refuses writes
        under the bundle's roots; use the bundle there.

        Raises:
            PolicyLoadError: OPA refused a module (its compile errors are in the message).
            EngineUnavailableError: the server cannot be reached.
        """
        ps = policy_set or self.policy_set
        client = self._sync_client()
        client._local.timeout = timeout  # noqa: SLF001
        try:
            ids = []
            for name, source in sorted(ps.modules.items()):
                client.update_policy_from_string(source, name, rego_compat=False)
                ids.append(name)
            client.update_or_create_data(ps.config.to_data(), "helpdesk/config")
            return ids
        except RegoParseError as exc:
            raise PolicyLoadError(f"OPA at {self.url} refused the policies: {exc}") from None
        except requests.exceptions.RequestException as exc:
            raise EngineUnavailableError(f"cannot push policies to {self.url}: {_short(exc)}", engine=self.name) from None
        finally:
            del client._local.timeout  # noqa: SLF001


# ---------------------------------------------------------------------- functions


def _counts_as_failure(exc: BaseException) -> bool:
    # A 4xx is about the request, not the server's health.
    return not (isinstance(exc, OpaHTTPError) and exc.status < 500)


def _ssl_context(ca_file: str | None, verify: bool, client_cert: str | None, client_key: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca_file) if verify else ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if client_cert:
        ctx.load_cert_chain(client_cert, client_key)
    return ctx


def _error_summary(err: Any) -> str:
    if not isinstance(err, dict):
        return "error"
    code = err.get("code") if isinstance(err.get("code"), str) else "error"
    loc = err.get("location")
    if isinstance(loc, dict) and loc.get("file"):
        return f"{code} at {loc.get('file')}:{loc.get('row', '?')}"
    return str(code)


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"
