"""The ``opa`` engine: decisions from an OPA server, over OPA's REST data API.

Install the extra: ``pip install 'helpdesk-policy[opa]'``. The engine POSTs
the validated request as ``{"input": …}`` to ``/v1/data/helpdesk/decision``
(or the configured ``path``) with `opa-python-client`_'s sessions and
validates the ``result`` into a verdict. Serve the policies to OPA as a bundle
(``helpdesk-policy bundle build``) or push them with :meth:`OpaEngine.push_policies`.

>>> from helpdesk_policy import HelpdeskPolicy
>>> policy = HelpdeskPolicy(engine="opa", fallback=["rego", "native"],
...                         engine_options={"opa": {"url": "http://opa:8181", "deadline": 0.25}})
... # doctest: +SKIP

Resilience (see :mod:`helpdesk_policy.engines.resilience`): every call has **one**
deadline (``deadline`` seconds, retries included) that bounds the whole
exchange, the answer's body included, on the sync and the async path;
retryable failures (connection refused/reset, HTTP 5xx, a timeout when budget
remains) are retried with jittered exponential backoff; a circuit breaker
opens after ``breaker_threshold`` consecutive failed calls and refuses calls
without touching the network for ``breaker_cooldown`` seconds, then lets one
probe through. Sync and async calls share the breaker. An answer is read up
to ``max_response_bytes`` and no further.

Errors, in :mod:`helpdesk_policy.errors` terms:

=====================================  ==========================================  =========
what happened                          raised                                      retried
=====================================  ==========================================  =========
connection refused / reset / closed    :class:`EngineUnavailableError`             yes
TLS handshake or certificate failure   :class:`EngineUnavailableError`             no
breaker open                           :class:`CircuitOpenError`                    no
deadline passed (a slow or dripping    :class:`EngineTimeoutError`                 if budget remains
server included)
HTTP 4xx (OPA ``{"code","message"}``)  :class:`OpaHTTPError` (an ``EngineError``)   no
HTTP 5xx                               :class:`OpaHTTPError` (an ``EngineError``)   yes
200 without ``result`` (undefined)     :class:`UndefinedDecisionError`             no
not JSON / not a valid decision        :class:`MalformedDecisionError`             no
answer over ``max_response_bytes``     :class:`ResponseTooLargeError`              no
=====================================  ==========================================  =========

Only a 4xx does not count against the breaker: it is about this request,
not about the server's health.

Text from the server (OPA's error ``code`` and ``message``, revisions,
transport error texts) never reaches an exception or a log line as sent: a
``code`` must look like an identifier or is dropped, and any other text has
its control, format and line-separator characters (newlines, ESC, bidi
overrides) replaced and is cut to a couple of hundred characters, so a
hostile or proxied server cannot forge log lines or flood them.

Bad options (a URL that is not ``http(s)://host[:port]``, a CA, certificate
or key file that is missing or not PEM, a non-positive deadline…) raise
:class:`~helpdesk_policy.errors.EngineConfigError` naming the option when the
engine is built. A URL may carry ``user:password@``: it is sent as HTTP basic
authentication and never shown (``repr``, logs and error texts use the URL
without it).

Why the client is wrapped rather than used as is (opa-python-client 3.0.0):

* It retries by itself (urllib3 ``Retry`` in the sync client, a loop in the
  async one) outside any deadline; both are disabled (``retries=0``) and our
  own retry runs inside the call's deadline.
* ``requests`` applies a timeout per socket operation (connect, each read),
  so a server that sends one byte at a time holds a call for as long as it
  likes. Sync calls therefore run as an *exchange*: each request's socket is
  registered with a :class:`~helpdesk_policy.engines.resilience.Watchdog` that shuts
  it down when the deadline passes, which ends a blocked read at once; each
  request's own timeouts are what is left of the deadline, and the body is
  streamed with the deadline checked between chunks. Async calls are
  hard-capped with :func:`asyncio.wait_for`.
* Bodies are read in chunks up to ``max_response_bytes`` (a larger declared
  ``Content-Length`` is refused before reading), uncompressed: the engine
  asks for ``identity`` and refuses a compressed answer, whose size after
  decompression no header bounds.
* The async client builds its TLS context from ``ssl``/``cert`` only (no CA
  file, no separate key file) and sets one session-wide timeout; the engine
  builds the aiohttp session itself, with the CA file, client certificate
  and key, and no session timeout. Each event loop gets its own session,
  closed when that loop shuts down (``asyncio.run`` finalises async
  generators before closing the loop, and the engine ties each session to
  one), so an engine nobody closed leaves no "Unclosed client session"
  behind. :meth:`OpaEngine.close` and :meth:`OpaEngine.aclose` close them
  earlier.
* The library's ``query_rule`` raises on an error status before reading the
  body (async) or reads the body unbounded (sync); the engine POSTs itself
  and keeps OPA's ``code``/``message`` (sanitised, see above).
* Redirects are not followed: OPA never redirects a data API call, and a
  redirected POST would carry the request to another server.
* The sync client's connection pool holds 10 connections; it is raised to
  ``pool_size`` so that many threads keep their keep-alive connections.

.. _opa-python-client: https://pypi.org/project/opa-python-client/
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import json
import logging
import math
import os
import re
import socket
import ssl
import threading
import unicodedata
from collections.abc import AsyncGenerator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit

# Imported at module level on purpose: the engine registry imports this module
# only when the "opa" engine is asked for, and an ImportError here becomes an
# EngineUnavailableError naming the ``opa`` extra.
import aiohttp
import requests
import urllib3.connection
import urllib3.connectionpool
import urllib3.poolmanager
from opa_client.errors import RegoParseError
from opa_client.opa import OpaClient
from opa_client.opa_async import AsyncOpaClient
from pydantic import ValidationError
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from ..errors import (
    EngineConfigError,
    EngineError,
    EngineTimeoutError,
    EngineUnavailableError,
    MalformedDecisionError,
    OpaHTTPError,
    PolicyLoadError,
    PolicyRevisionMismatchError,
    ResponseTooLargeError,
    UndefinedDecisionError,
)
from ..models import Request, Verdict
from ..policyset import DECISION_PATH, PolicySet
from .base import RawDecision
from .resilience import CircuitBreaker, Deadline, RetryPolicy, Watchdog, acall, call

__all__ = ["OpaEngine", "OpaHTTPError", "DEFAULT_MAX_RESPONSE_BYTES"]

log = logging.getLogger(__name__)

#: The largest answer read by default: a decision is a few kilobytes.
DEFAULT_MAX_RESPONSE_BYTES = 4 * 1024 * 1024

#: The longest text kept from anything the server sent (a message, an error text).
_MAX_MESSAGE = 200
#: How many of OPA's detailed ``errors`` are kept on an OpaHTTPError.
_MAX_ERRORS = 20
#: Bytes read at a time from an answer's body.
_CHUNK = 64 * 1024
#: What OPA's error ``code`` looks like (``invalid_parameter``, ``rego_parse_error``).
_CODE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
#: A host name (or IPv4 address) as the engine accepts it; IPv6 goes through ipaddress.
_HOSTNAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,251}[A-Za-z0-9_.])?")


class _Unavailable(EngineUnavailableError):
    """An unreachable server; ``retryable`` is False for TLS failures."""

    def __init__(self, message: str, *, engine: str, retryable: bool = True) -> None:
        super().__init__(message, engine=engine)
        self.retryable = retryable


# ------------------------------------------------------------------ server text


def _server_text(value: str, limit: int = _MAX_MESSAGE) -> str:
    """``value`` (text a server chose) made safe for an exception or a log line.

    Control, format, surrogate, private-use, unassigned and line/paragraph
    separator characters (newlines, ESC, bidi overrides, zero-width
    characters) become spaces, runs of whitespace one space, and the result
    is at most ``limit`` characters, so the text can neither forge a log line
    nor drive a terminal nor flood a log.

    >>> _server_text("line 1\\n\\x1b[31mline 2\\u202e", 12)
    'line 1 [31m…'
    """
    value = value[: limit * 4]  # bound the work on a huge text before scanning it
    if not (value.isascii() and value.isprintable()):
        value = "".join(" " if _unsafe(ch) else ch for ch in value)
    value = " ".join(value.split())
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _unsafe(ch: str) -> bool:
    category = unicodedata.category(ch)
    return category[0] == "C" or category in ("Zl", "Zp")


def _server_code(value: Any) -> str | None:
    """OPA's error ``code`` when it looks like one (an identifier, at most 64 characters), else None."""
    return value if isinstance(value, str) and _CODE.fullmatch(value) else None


def _short(exc: BaseException) -> str:
    """A transport error's text: it can quote what the server sent (a bad status line)."""
    return _server_text(str(exc) or type(exc).__name__)


# -------------------------------------------------------------------- options


def _config_error(option: str, message: str) -> EngineConfigError:
    return EngineConfigError(f"{option} {message}", engine="opa", option=option)


def _redacted(url: str) -> str:
    """``url`` with any ``user:password@`` shown as ``***@``, however malformed the rest is.

    >>> _redacted("http://alice:s3cret@opa:8181"), _redacted("alice:s3cret@opa:8181/x@y")
    ('http://***@opa:8181', '***@opa:8181/x@y')
    """
    scheme, sep, rest = url.partition("//")
    if not sep:
        scheme, rest = "", url
    else:
        scheme += sep
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    if "@" in authority:
        authority = "***@" + authority.rpartition("@")[2]
    return scheme + authority + tail


@dataclass(frozen=True)
class _Endpoint:
    """Where the server is, from the ``url`` option."""

    url: str  #: as given, without credentials or a trailing slash: safe to show
    tls: bool
    host: str  #: as the client libraries want it (an IPv6 address in brackets)
    port: int
    authorization: str | None  #: HTTP basic authentication from ``user:password@``


def _endpoint(url: object) -> _Endpoint:
    """Validate the ``url`` option.

    Raises:
        EngineConfigError: not ``http(s)://host[:port]`` (the message shows
            the URL with any password replaced by ``***``).
    """
    if not isinstance(url, str):
        raise _config_error("url", f"must be a string such as 'http://localhost:8181', not {type(url).__name__}")
    shown = repr(_redacted(url))
    if not url.isprintable() or any(ch.isspace() for ch in url):
        # urlsplit would silently drop a tab or newline and read another URL.
        raise _config_error("url", f"{shown} holds whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise _config_error("url", f"{shown} is not a valid URL: expected http(s)://host[:port] "
                                   "with a port from 1 to 65535") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not url[len(scheme) + 1:].startswith("//"):
        raise _config_error("url", f"{shown} must start with http:// or https:// (expected http(s)://host[:port])")
    host = parts.hostname
    if not host:
        raise _config_error("url", f"{shown} names no host (expected http(s)://host[:port])")
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise _config_error("url", f"{shown} has an invalid IPv6 address") from None
        client_host = f"[{host}]"
    elif _HOSTNAME.fullmatch(host):
        client_host = host
    else:
        raise _config_error("url", f"{shown} has an invalid host name (letters, digits, '.', '-' and '_' only)")
    if port == 0:
        raise _config_error("url", f"{shown} has port 0 (expected a port from 1 to 65535)")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise _config_error("url", f"{shown} must not have a path, query or fragment (the engine adds /v1/data/…)")
    authorization = None
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, netloc = netloc.rpartition("@")
        user, _, password = userinfo.partition(":")
        user, password = unquote(user), unquote(password)
        if ":" in user:
            raise _config_error("url", f"{shown} has a user name with ':', which HTTP basic authentication cannot carry")
        authorization = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    tls = scheme == "https"
    return _Endpoint(f"{scheme}://{netloc}", tls, client_host, port or (443 if tls else 80), authorization)


def _positive(option: str, value: Any, *, whole: bool = False) -> None:
    kind = (int,) if whole else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value) or value <= 0:
        raise _config_error(option, f"must be a positive {'whole ' if whole else ''}number, got {value!r}")


def _readable(option: str, path: Any) -> str:
    """``path`` when it names a readable file, else an EngineConfigError naming ``option``."""
    try:
        path = os.fspath(path)
    except TypeError:
        raise _config_error(option, f"must be a file path, not {type(path).__name__}") from None
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as exc:
        raise _config_error(option, f"{path!r} cannot be read: {exc.strerror or type(exc).__name__}") from None
    return str(path)


def _tls_context(ca_file: str | None, verify: bool, client_cert: str | None, client_key: str | None) -> ssl.SSLContext:
    """The TLS context of the async client; also proves the files usable before any call.

    Raises:
        EngineConfigError: a file is missing, unreadable, not PEM, a key that
            does not match its certificate, or an encrypted key.
    """
    try:
        ctx = ssl.create_default_context(cafile=ca_file if verify else None)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise _config_error("ca_file", f"{ca_file!r} holds no usable PEM CA certificate ({_ssl_reason(exc)})") from None
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if client_cert:
        asked = []

        def no_passphrase() -> bytes:
            # Without a callback OpenSSL would prompt on the terminal.
            asked.append(True)
            return b""

        try:
            ctx.load_cert_chain(client_cert, client_key, password=no_passphrase)
        except (ssl.SSLError, OSError, ValueError) as exc:
            if asked:
                raise _config_error("client_key", f"{client_key or client_cert!r} is encrypted: give an unencrypted "
                                                  "key (no passphrase can be asked for)") from None
            files = f"client_cert {client_cert!r}" + (f" with client_key {client_key!r}" if client_key else "")
            raise EngineConfigError(f"{files} cannot be used: not a PEM certificate and its matching key "
                                    f"({_ssl_reason(exc)})", engine="opa", option="client_cert") from None
    return ctx


def _ssl_reason(exc: BaseException) -> str:
    return str(getattr(exc, "reason", None) or getattr(exc, "strerror", None) or type(exc).__name__)


# --------------------------------------------------------------- reading answers


class _BadAnswer(requests.exceptions.RequestException):
    """An answer the engine will not read: too large, or compressed though not asked to be."""

    def __init__(self, message: str, *, too_large: bool) -> None:
        super().__init__(message)
        self.too_large = too_large

    def engine_error(self, engine: str) -> MalformedDecisionError:
        cls = ResponseTooLargeError if self.too_large else MalformedDecisionError
        return cls(str(self), engine=engine)


def _too_large(limit: int) -> _BadAnswer:
    return _BadAnswer(f"the server's answer is larger than {limit} bytes (max_response_bytes)", too_large=True)


def _check_answer_headers(headers: Mapping[str, str], limit: int) -> None:
    """Refuse, before reading the body, an answer declared too large or compressed."""
    encoding = headers.get("Content-Encoding", "").strip().lower()
    if encoding not in ("", "identity"):
        raise _BadAnswer(f"the server's answer is compressed ({_server_text(encoding, 40)}) though identity "
                         "was asked for", too_large=False)
    length = headers.get("Content-Length", "").strip()
    # A length of more digits than any limit cannot be within it (and int()
    # refuses strings of thousands of digits).
    if length.isdigit() and (len(length) > 18 or int(length) > limit):
        raise _too_large(limit)


class _Body:
    """An answer's body, gathered chunk by chunk up to a limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._data = bytearray()

    def add(self, chunk: bytes) -> None:
        self._data += chunk
        if len(self._data) > self.limit:
            raise _too_large(self.limit)

    def bytes(self) -> bytes:
        return bytes(self._data)


def _data_url(root_url: str, path: str, params: Mapping[str, str] | None) -> str:
    url = f"{root_url}/data/{path.replace('.', '/')}"
    return f"{url}?{urlencode(params)}" if params else url


# ------------------------------------------------------------------ sync client

_local = threading.local()
_WATCHDOG = Watchdog(name="helpdesk-policy-opa-deadline")


class _DeadlinePassed(requests.exceptions.Timeout):
    """An exchange outlived its deadline (the watchdog cut it, or a chunk came too late)."""


class _Exchange:
    """The HTTP requests one thread makes within one deadline (an attempt, a
    health check, a push): their sockets are shut down when it passes."""

    __slots__ = ("deadline", "expired", "_lock", "_sockets")

    def __init__(self, seconds: float) -> None:
        self.deadline = Deadline(seconds)
        self.expired = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            if not self.expired:
                self._sockets.append(sock)
                return
        _cut(sock)

    def expire(self) -> None:
        # On the watchdog's thread. A call that completed a moment before the
        # deadline may already have handed its connection back to the pool:
        # cutting it then costs the next user of that connection one retryable
        # connection error, never a wrong answer.
        with self._lock:
            self.expired = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _cut(sock)


def _cut(sock: socket.socket) -> None:
    # socket.socket.shutdown, not SSLSocket.shutdown, which also drops the SSL
    # object another thread is reading with. A shutdown (not a close) wakes
    # the blocked read at once and leaves the descriptor to its owner.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


@contextlib.contextmanager
def _exchange(seconds: float) -> Iterator[_Exchange]:
    """Bound every request this thread makes inside to ``seconds`` in all, bodies included.

    Raises:
        _DeadlinePassed: the deadline passed while a request was under way.
    """
    exchange = _Exchange(seconds)
    outer = getattr(_local, "exchange", None)
    _local.exchange = exchange
    alarm = _WATCHDOG.arm(seconds, exchange.expire)
    try:
        yield exchange
    except Exception:
        if exchange.expired or exchange.deadline.expired:
            # Whatever the cut socket made the client raise (a reset, an
            # incomplete read), the cause is the deadline.
            raise _DeadlinePassed(f"no answer within {seconds:.3g}s") from None
        raise
    finally:
        cut = alarm.disarm()
        _local.exchange = outer
    if cut:
        # The sockets were shut down under the client: what it read may be
        # cut short without an error (headers or a body that end with the
        # connection look whole).
        raise _DeadlinePassed(f"no answer within {seconds:.3g}s")


class _WatchedConnection:
    """Connection mixin: hands its socket to the thread's exchange before waiting for the answer."""

    sock: socket.socket | None

    def getresponse(self) -> Any:
        exchange = getattr(_local, "exchange", None)
        if exchange is not None and self.sock is not None:
            exchange.watch(self.sock)
        return super().getresponse()  # type: ignore[misc]


class _HTTPConnection(_WatchedConnection, urllib3.connection.HTTPConnection):
    pass


class _HTTPSConnection(_WatchedConnection, urllib3.connection.HTTPSConnection):
    pass


class _HTTPPool(urllib3.connectionpool.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(urllib3.connectionpool.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_WATCHED_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


class _Adapter(HTTPAdapter):
    """Watched connections, the configured verification, bodies read within limits.

    ``requests`` lets ``$REQUESTS_CA_BUNDLE``/``$CURL_CA_BUNDLE`` override a
    session's ``verify``, which would silently replace the configured CA
    file: the adapter applies it to every request. Every answer's body is
    read here, in chunks, up to ``max_bytes`` and within the thread's
    exchange, before ``requests`` (which would read it whole) sees it.
    """

    def __init__(self, verify: bool | str | None, max_bytes: int, **kwargs: Any) -> None:
        self._forced_verify = verify
        self._max_bytes = max_bytes
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _WATCHED_POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if manager.pool_classes_by_scheme is urllib3.poolmanager.pool_classes_by_scheme:  # not a SOCKS manager
            manager.pool_classes_by_scheme = _WATCHED_POOLS
        return manager

    def send(self, request: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        if self._forced_verify is not None:
            kwargs["verify"] = self._forced_verify
        kwargs["stream"] = True
        response = super().send(request, **kwargs)
        try:
            response._content = self._read(response)  # noqa: SLF001 - what Response.content returns
        except BaseException:
            response.close()
            raise
        return response

    def _read(self, response: requests.Response) -> bytes:
        _check_answer_headers(response.headers, self._max_bytes)
        exchange: _Exchange | None = getattr(_local, "exchange", None)
        body = _Body(self._max_bytes)
        # No Content-Encoding was accepted above, so iter_content decodes nothing.
        for chunk in response.iter_content(_CHUNK):
            body.add(chunk)
            if exchange is not None and exchange.deadline.expired:
                raise _DeadlinePassed("the answer outlived the deadline")
        return body.bytes()


class _SyncClient(OpaClient):
    """``OpaClient`` whose requests run within the thread's exchange, with no own retries and a larger pool."""

    def __init__(self, *args: Any, verify: bool | str = True, pool_size: int = 32, max_bytes: int,
                 query_params: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self.query_params = query_params
        self._pool_size = pool_size
        self._verify = verify
        self._max_bytes = max_bytes
        super().__init__(*args, **kwargs)

    @property  # type: ignore[override]
    def timeout(self) -> Any:
        # The library passes this to every request: inside an exchange, each
        # request may wait (connect, each read) as long as the deadline has
        # left; the watchdog bounds the total.
        exchange = getattr(_local, "exchange", None)
        if exchange is None:
            return self._default_timeout
        return max(exchange.deadline.remaining(), 0.001)

    @timeout.setter
    def timeout(self, value: Any) -> None:
        self._default_timeout = value

    def _init_session(self) -> requests.Session:
        session = super()._init_session()
        # Replace the client's adapter: no retries of our own (ours run inside
        # the deadline), enough pooled connections for many threads, the
        # configured verification and bounded bodies (see _Adapter).
        adapter = _Adapter(None if self._verify is True else self._verify, self._max_bytes,
                           max_retries=Retry(0, read=False), pool_connections=1, pool_maxsize=self._pool_size)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.verify = self._verify
        return session

    def query(self, document: dict[str, Any], path: str, timeout: float) -> tuple[int, bytes]:
        """POST ``{"input": document}`` to the data API; (status, body) within ``timeout`` seconds."""
        url = _data_url(self.root_url, path, self.query_params)
        with _exchange(timeout):
            response = self._session.post(url, json={"input": document}, timeout=self.timeout, allow_redirects=False)
        return response.status_code, response.content


# ----------------------------------------------------------------- async client


class _AsyncClient(AsyncOpaClient):
    """``AsyncOpaClient`` with our TLS context, no session timeout, and bounded, uncompressed bodies."""

    def __init__(self, *args: Any, ssl_context: ssl.SSLContext | bool | None, pool_size: int, max_bytes: int,
                 query_params: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.query_params = query_params
        self._ssl_context = ssl_context
        self._pool_size = pool_size
        self._max_bytes = max_bytes

    def open_session(self) -> None:
        """Create the aiohttp session (must run inside the event loop that will use it)."""
        self._connector = aiohttp.TCPConnector(ssl=self._ssl_context, limit=self._pool_size)  # type: ignore[arg-type]
        self._session = aiohttp.ClientSession(
            headers=self.headers, connector=self._connector, timeout=aiohttp.ClientTimeout(total=None),
            auto_decompress=False,
        )

    async def _init_session(self) -> None:
        self.open_session()

    async def query(self, document: dict[str, Any], path: str) -> tuple[int, bytes]:
        """POST ``{"input": document}`` to the data API; (status, body). The caller bounds the time."""
        assert self._session is not None
        url = _data_url(self.root_url, path, self.query_params)
        async with self._session.post(url, json={"input": document}, allow_redirects=False) as response:
            _check_answer_headers(response.headers, self._max_bytes)
            body = _Body(self._max_bytes)
            async for chunk in response.content.iter_chunked(_CHUNK):
                body.add(chunk)
            return response.status, body.bytes()

    def close_now(self) -> None:
        """Close the session without awaiting, from any thread.

        A session whose loop was closed without finalising its async
        generators (``asyncio.run`` does) can only drop its connections:
        their sockets are left to the garbage collector.
        """
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


async def _closed_with_its_loop(client: _AsyncClient) -> AsyncGenerator[None, None]:
    """Stays suspended while ``client``'s event loop lives, then closes the client.

    Started inside the loop, an async generator is finalised by the loop:
    ``loop.shutdown_asyncgens()`` (which ``asyncio.run`` and the usual test
    runners await before closing it) closes this one, and so the session,
    properly, in its own loop; one dropped earlier (its engine closed or
    collected) is closed by the loop's finaliser hook.
    """
    try:
        yield
    finally:
        await client.close_connection()


# ---------------------------------------------------------------------------- engine


class OpaEngine:
    """Evaluate ``data.helpdesk.decision`` on an OPA server.

    Args:
        policy_set: the policy set this engine stands for (its revision is
            what the facade reports; :meth:`push_policies` uploads it).
        url: the OPA server, ``http://host:port`` or ``https://host:port``.
            ``http://user:password@host:port`` sends HTTP basic
            authentication (for a proxy in front of OPA); the password is
            never shown.
        path: the document to evaluate, ``helpdesk/decision`` by default.
        token: a bearer token (OPA's ``--authentication=token``).
        ca_file: a PEM file of CAs that sign the server's certificate
            (default: the system trust store).
        verify: ``False`` skips certificate verification (never in production).
        client_cert, client_key: PEM files for mutual TLS (the key unencrypted).
        deadline: seconds a whole call may take, retries and the answer's
            body included.
        attempt_timeout: cap per attempt (see :class:`~helpdesk_policy.engines.resilience.RetryPolicy`).
        retries: retries after the first attempt, for retryable failures.
        backoff, backoff_max: first and longest wait between attempts, seconds.
        breaker_threshold: consecutive failed calls that open the breaker.
        breaker_cooldown: seconds the open breaker refuses calls.
        breaker: share one :class:`~helpdesk_policy.engines.resilience.CircuitBreaker`
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
        max_response_bytes: the largest answer read; a larger one is a
            :class:`~helpdesk_policy.errors.ResponseTooLargeError`, and
            reading stops there.

    Raises:
        EngineConfigError: an option is invalid (a bad ``url``, a CA,
            certificate or key file that cannot be used, a non-positive
            number); the message names the option.
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
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        endpoint = _endpoint(url)
        _positive("deadline", deadline)
        if attempt_timeout is not None:
            _positive("attempt_timeout", attempt_timeout)
        _positive("max_response_bytes", max_response_bytes, whole=True)
        _positive("pool_size", pool_size, whole=True)
        if client_key and not client_cert:
            raise _config_error("client_key", "needs client_cert")
        extra = dict(headers) if headers else {}
        if endpoint.authorization is not None:
            if token or any(k.lower() == "authorization" for k in extra):
                raise _config_error("url", f"{endpoint.url!r} carries a user and password, and "
                                           f"{'token' if token else 'headers'} sets Authorization too: give one")
            extra["Authorization"] = endpoint.authorization
        # Uncompressed answers only: _check_answer_headers refuses others.
        extra["Accept-Encoding"] = "identity"
        files = {"ca_file": ca_file, "client_cert": client_cert, "client_key": client_key}
        files = {option: _readable(option, path) for option, path in files.items() if path is not None}
        ca_file, client_cert, client_key = files.get("ca_file"), files.get("client_cert"), files.get("client_key")
        try:
            self.retry = RetryPolicy(retries=retries, base=backoff, cap=backoff_max, attempt_timeout=attempt_timeout)
            self.breaker = breaker or CircuitBreaker(breaker_threshold, breaker_cooldown, name=self.name)
        except ValueError as exc:
            raise EngineConfigError(str(exc), engine=self.name) from None
        self.policy_set = policy_set
        self.url = endpoint.url
        self.path = path.strip("/")
        self.deadline = deadline
        self.max_response_bytes = max_response_bytes
        cert: str | tuple[str, str] | None = (client_cert, client_key) if client_cert and client_key else client_cert
        self._client_args: dict[str, Any] = {
            "host": endpoint.host, "port": endpoint.port, "ssl": endpoint.tls, "cert": cert, "token": token,
            "headers": extra, "retries": 0, "timeout": deadline,
        }
        self._verify: bool | str = (ca_file or True) if verify else False
        if endpoint.tls and not verify:
            log.warning("opa: TLS certificate verification is OFF for %s", self.url)
        # Built for http too when files are given: they are checked now, not at the first https call.
        context = _tls_context(ca_file, verify, client_cert, client_key) if endpoint.tls or files else None
        self._ssl_context = context if endpoint.tls else None
        self._pool_size = pool_size
        self.check_revision = check_revision
        self._query_params = {"provenance": "true"} if check_revision else None
        self._lock = threading.Lock()
        self._sync: _SyncClient | None = None
        # One aiohttp client per event loop, with the generator that closes it with its loop.
        self._async: dict[asyncio.AbstractEventLoop, tuple[_AsyncClient, AsyncGenerator[None, None]]] = {}

    def __repr__(self) -> str:
        return f"<OpaEngine {self.url}/v1/data/{self.path} breaker={self.breaker.state.value}>"

    # ----------------------------------------------------------------- evaluate

    def evaluate(self, request: Request) -> RawDecision:
        """Decide one request on the server (blocking)."""
        document = self._document(request)
        client = self._sync_client()
        return call(  # type: ignore[no-any-return]
            lambda timeout: self._post(client, document, timeout),
            deadline=self.deadline, retry=self.retry, breaker=self.breaker,
            counts_as_failure=_counts_as_failure, timeout_error=self._timeout_error,
        )

    async def aevaluate(self, request: Request) -> RawDecision:
        """Decide one request on the server without blocking the event loop (aiohttp)."""
        document = self._document(request)
        client = await self._async_client()
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

    def _post(self, client: _SyncClient, document: dict[str, Any], timeout: float) -> RawDecision:
        try:
            status, body = client.query(document, self.path, timeout)
        except _BadAnswer as exc:
            raise exc.engine_error(self.name) from None
        except requests.exceptions.Timeout:
            raise self._timeout_error(timeout) from None
        except requests.exceptions.SSLError as exc:
            raise _Unavailable(f"TLS failure talking to {self.url}: {_short(exc)}", engine=self.name, retryable=False) from None
        except requests.exceptions.ConnectionError as exc:
            raise _Unavailable(f"cannot reach {self.url}: {_short(exc)}", engine=self.name) from None
        except requests.exceptions.RequestException as exc:
            raise _Unavailable(f"transport error from {self.url}: {_short(exc)}", engine=self.name) from None
        return self._decode(status, body)

    async def _apost(self, client: _AsyncClient, document: dict[str, Any]) -> RawDecision:
        try:
            status, body = await client.query(document, self.path)
        except _BadAnswer as exc:
            raise exc.engine_error(self.name) from None
        except asyncio.TimeoutError:  # aiohttp's own socket timeouts
            raise self._timeout_error(self.deadline) from None
        except aiohttp.ClientSSLError as exc:
            raise _Unavailable(f"TLS failure talking to {self.url}: {_short(exc)}", engine=self.name, retryable=False) from None
        except aiohttp.ClientConnectionError as exc:
            raise _Unavailable(f"cannot reach {self.url}: {_short(exc)}", engine=self.name) from None
        except aiohttp.ClientError as exc:
            raise _Unavailable(f"transport error from {self.url}: {_short(exc)}", engine=self.name) from None
        return self._decode(status, body)

    def _decode(self, status: int, body: bytes) -> RawDecision:
        """An answer's status and body as a decision, or the error it stands for."""
        if not 200 <= status < 300:
            raise self._http_error(status, body)
        try:
            doc = _json(body)
        except ValueError:
            raise MalformedDecisionError("the server's answer is not JSON", engine=self.name) from None
        return self._answer(doc)

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
            # Locations can hold keys the server chose.
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}"
                for e in exc.errors(include_input=False, include_url=False)
            )
            raise MalformedDecisionError(f"result is not a valid decision: {_server_text(problems, 300)}",
                                         engine=self.name) from None
        if self.check_revision:
            self._check_revision(body.get("provenance"))
        decision_id = body.get("decision_id")
        if isinstance(decision_id, str) and decision_id:
            # The decision carries OPA's decision id, so our decision log and OPA's correlate.
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
        shown = ", ".join(_server_text(r[:19], 19) for r in revisions[:5]) or "(none)"
        raise PolicyRevisionMismatchError(
            f"{self.url} runs bundle revision(s) {shown}, not the configured policy revision "
            f"{self.policy_set.revision[:19]}",
            engine=self.name,
        )

    def _http_error(self, status: int, body: bytes) -> OpaHTTPError:
        """OPA's error answer as an exception; what the server wrote is validated or sanitised."""
        code = message = None
        errors: list[dict[str, Any]] = []
        try:
            doc = _json(body)
        except ValueError:
            doc = None  # a proxy's HTML page, say: not quoted at all
        if isinstance(doc, dict):
            code = _server_code(doc.get("code"))
            message = _server_text(doc["message"]) if isinstance(doc.get("message"), str) else None
            if isinstance(doc.get("errors"), list):
                errors = [_error_detail(e) for e in doc["errors"][:_MAX_ERRORS]]
        text = f"HTTP {status}"
        if code or message:
            text += f" {code or ''}: {message or ''}"
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
                    self._sync = _SyncClient(verify=self._verify, pool_size=self._pool_size, max_bytes=self.max_response_bytes,
                                             query_params=self._query_params, **self._client_args)
                client = self._sync
        return client

    async def _async_client(self) -> _AsyncClient:
        # aiohttp sessions belong to one event loop: one client per loop,
        # created lazily inside it and closed with it; clients of closed
        # loops are dropped.
        loop = asyncio.get_running_loop()
        entry = self._async.get(loop)
        if entry is not None:
            return entry[0]
        with self._lock:
            stale = [self._async.pop(lp) for lp in [lp for lp in self._async if lp.is_closed()]]
            entry = self._async.get(loop)
            created = entry is None
            if entry is None:
                client = _AsyncClient(ssl_context=self._ssl_context, pool_size=self._pool_size,
                                      max_bytes=self.max_response_bytes, query_params=self._query_params,
                                      **self._client_args)
                client.open_session()
                entry = self._async[loop] = (client, _closed_with_its_loop(client))
        for old, _ in stale:
            old.close_now()
        if created:
            # The first step registers the generator with the loop and stops
            # at its yield, without suspending: no other task sees it half made.
            await entry[1].__anext__()
        return entry[0]

    # ---------------------------------------------------------------- lifecycle

    def close(self) -> None:
        """Close every HTTP session (sync and async). Safe to call more than once;
        an engine used again after ``close`` opens new sessions.

        An aiohttp session belongs to the event loop it was made in: prefer
        ``await engine.aclose()`` inside that loop. ``close()`` called inside
        the loop closes its connections on the loop's next iteration; called
        from another thread it schedules that on the loop. A session whose
        loop has ended was closed when the loop shut down.
        """
        with self._lock:
            sync, self._sync = self._sync, None
            entries, self._async = list(self._async.values()), {}
        if sync is not None:
            sync.close_connection()
        for client, _ in entries:
            client.close_now()

    async def aclose(self) -> None:
        """Close every session, awaiting the running loop's one properly."""
        loop = asyncio.get_running_loop()
        with self._lock:
            mine = self._async.pop(loop, None)
        if mine is not None:
            await mine[1].aclose()  # runs its finally: the session closes in this loop
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
        """``GET /health``: True when the server answers 200 within ``timeout`` (default: the deadline).
        Bypasses the breaker."""
        client = self._sync_client()
        try:
            with _exchange(timeout or self.deadline):
                return bool(client.check_health())
        except requests.exceptions.RequestException:
            return False

    async def acheck_health(self, timeout: float | None = None) -> bool:
        """Async twin of :meth:`check_health`."""
        client = await self._async_client()
        try:
            return bool(await asyncio.wait_for(client.check_health(), timeout or self.deadline))
        except asyncio.TimeoutError:
            return False

    def push_policies(self, policy_set: PolicySet | None = None, *, timeout: float = 10.0) -> list[str]:
        """Load the policy set into a plain OPA (one started without a bundle).

        ``PUT /v1/policies/<relative path>`` for every module (imported packages
        first: OPA compiles each module as it arrives, and a call to a function
        it has not seen yet is a compile error), then
        ``PUT /v1/data/helpdesk/config`` with the config and
        ``PUT /v1/data/helpdesk/catalogue`` with the reason catalogue, all within
        ``timeout`` seconds. Returns the policy ids. A server that got its
        policies from a bundle refuses writes under the bundle's roots; use
        the bundle there.

        Raises:
            PolicyLoadError: OPA refused a module (its compile errors are in the message).
            EngineUnavailableError: the server cannot be reached, or did not answer in time.
        """
        ps = policy_set or self.policy_set
        client = self._sync_client()
        try:
            with _exchange(timeout):
                ids = []
                for name in _push_order(ps.modules):
                    client.update_policy_from_string(ps.modules[name], name, rego_compat=False)
                    ids.append(name)
                client.update_or_create_data(ps.config.to_data(), "helpdesk/config")
                client.update_or_create_data(ps.catalogue.to_data(), "helpdesk/catalogue")
                return ids
        except RegoParseError as exc:
            raise PolicyLoadError(f"OPA at {self.url} refused the policies: {_server_text(str(exc), 2000)}") from None
        except requests.exceptions.RequestException as exc:
            raise EngineUnavailableError(f"cannot push policies to {self.url}: {_short(exc)}", engine=self.name) from None
        except (ValueError, RecursionError):
            raise EngineUnavailableError(f"cannot push policies to {self.url}: its answer is not JSON",
                                         engine=self.name) from None


# ---------------------------------------------------------------------- functions


_PACKAGE = re.compile(r"^package\s+([\w.]+)", re.M)
_FUNCTION_HEAD = re.compile(r"^(\w+)\(", re.M)


def _push_order(modules: Mapping[str, str]) -> list[str]:
    """Module names, each after the modules whose functions it calls (then by name).

    OPA compiles each pushed module against those already loaded: a reference
    to a rule it has not seen yet is fine (data may come later), a call to an
    unknown function is a compile error. A call reads ``<package's last
    segment>.<function>(``, as the stock Rego writes it after ``import``.
    """
    called: dict[str, set[str]] = {}
    for name, source in modules.items():
        package = m.group(1) if (m := _PACKAGE.search(source)) else ""
        alias = package.rsplit(".", 1)[-1]
        called[name] = {f"{alias}.{fn}(" for fn in _FUNCTION_HEAD.findall(source)}
    needs = {name: {other for other, calls in called.items()
                    if other != name and any(c in source for c in calls)}
             for name, source in modules.items()}
    pending, done = sorted(modules), []
    while pending:
        ready = [n for n in pending if needs[n] <= set(done)]
        name = ready[0] if ready else pending[0]  # a cycle: OPA will name it
        pending.remove(name)
        done.append(name)
    return done


def _counts_as_failure(exc: BaseException) -> bool:
    # A 4xx is about the request, not the server's health.
    return not (isinstance(exc, OpaHTTPError) and 400 <= exc.status < 500)


def _json(body: bytes) -> Any:
    """Parse an answer. Raises ValueError for anything that is not JSON, too
    deep a nesting included (a RecursionError otherwise)."""
    try:
        return json.loads(body)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _error_detail(err: Any) -> dict[str, Any]:
    """One of OPA's detailed ``errors``, kept with sanitised, bounded fields."""
    if not isinstance(err, dict):
        return {"code": None}
    detail: dict[str, Any] = {"code": _server_code(err.get("code"))}
    if isinstance(err.get("message"), str):
        detail["message"] = _server_text(err["message"])
    loc = err.get("location")
    if isinstance(loc, dict):
        detail["location"] = {
            "file": _server_text(loc["file"], 100) if isinstance(loc.get("file"), str) else None,
            "row": loc.get("row") if type(loc.get("row")) is int else None,
            "col": loc.get("col") if type(loc.get("col")) is int else None,
        }
    return detail


def _error_summary(err: dict[str, Any]) -> str:
    code = err.get("code") or "error"
    loc = err.get("location")
    if isinstance(loc, dict) and loc.get("file"):
        return f"{code} at {loc['file']}:{loc['row'] if loc.get('row') is not None else '?'}"
    return str(code)
