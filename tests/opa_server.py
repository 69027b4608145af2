"""A loopback OPA server for tests: OPA's REST API in front of OPA's own Go evaluator.

No OPA binary installs on CI machines, so the test suite runs this instead.
It speaks OPA's REST API with OPA's response and error shapes (read from
``v1/server/server.go``, ``v1/server/types/types.go`` and
``v1/server/writer/writer.go`` in open-policy-agent/opa) and evaluates with
``opa_bindings`` (OPA's Go ``rego`` package, in-process), so it differs from
a real OPA only in transport:

============================  ============================================================
``POST /v1/data/{path}``      ``{"input": …}`` → 200 ``{"decision_id", "result"}``
                              (``?provenance``: plus ``provenance`` with the loaded
                              bundle's revision);
                              undefined → 200 ``{"decision_id"}``; no ``input`` key →
                              a ``warning``; bad JSON → 400 ``invalid_parameter``;
                              evaluation error → 500 ``internal_error`` with ``errors``
``GET /v1/data/{path}``       the document without input, same shapes
``PUT /v1/data/{path}``       JSON value → 204 (parents created); bad JSON → 400
``DELETE /v1/data/{path}``    204, or 404 ``resource_not_found``
``PUT /v1/policies/{id}``     Rego text → 200 ``{}``; parse/compile error → 400
                              ``invalid_parameter`` "error(s) occurred while compiling
                              module(s)" with ``errors`` [{code, message, location}]
``GET /v1/policies``          ``{"result": [{"id", "raw"}]}``
``DELETE /v1/policies/{id}``  200 ``{}``, or 404
``GET /health``               200 ``{}``
============================  ============================================================

Writes under a loaded bundle's roots are refused (400), as OPA does.

Transport: ``ThreadingHTTPServer`` on 127.0.0.1, port 0, HTTP/1.1 keep-alive,
TCP_NODELAY on every accepted socket (without it each call costs ~40 ms of
Nagle delay), daemon threads, optional TLS (and client-certificate checks).
Evaluation uses a pool of Go engines (an engine serializes its evaluations),
rebuilt whenever policies or data change.

Faults, settable at runtime (:meth:`OpaTestServer.set_fault`,
:meth:`OpaTestServer.fail_next`), applied by default to ``/v1/data`` only:

* ``http_500`` / ``http_502`` / ``http_503`` — an error status with an OPA-shaped body
* ``http_400`` — OPA's answer to a request it cannot parse (``invalid_parameter``)
* ``slow`` — answer correctly, but only after ``delay`` seconds
* ``reset`` — read the request, then close the socket with SO_LINGER 0 (a TCP RST)
* ``malformed_json`` — 200 with a body that is not JSON
* ``undefined`` — 200 without ``result``
* ``wrong_shape`` — 200 ``{"result": {"level": "self_service"}}``
* ``inconsistent`` — the real decision with its level lowered to ``self_service``
  (reasons kept; requirements contradicting the level when it already was
  ``self_service``), which fails the verdict's consistency checks
* ``lying`` — a complete, self-consistent ``self_service`` decision (only a
  second engine can tell it is wrong: shadow mode)
* ``drip`` — the real answer's status line and headers at once, then its body
  one byte every ``delay`` seconds (a slow-loris server: each read returns
  quickly, so a per-read timeout never fires)
* ``drip_headers`` — the same from the status line on: the headers drip too
* ``huge`` — 200 and a JSON-looking body of ``HUGE_BODY_BYTES`` (400 MiB),
  no ``Content-Length`` (so the client cannot refuse it up front), streamed
  from one reused buffer until the client hangs up
* ``hostile_error`` — 500 with an OPA-shaped body whose ``code`` is not an
  identifier and whose ``message`` holds newlines, ESC sequences, a bidi
  override and 1 MiB of text (its ``errors`` hold the same, shorter, and
  locations with newlines), behind a reason phrase with an ESC sequence

The headers of the last request are kept (:attr:`OpaTestServer.last_headers`),
so a test can check what a client sent (its ``Authorization``, say).

Every request is counted (:attr:`OpaTestServer.requests`, :meth:`OpaTestServer.count`),
so a test can prove that calls refused by an open breaker never reach the network.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as _dt
import json
import re
import socket
import ssl
import struct
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from opa_bindings import OpaEngine as GoEngine
from opa_bindings import OpaError, OpaUndefinedError

from helpdesk_policy.policyset import PolicySet

__all__ = ["OpaTestServer", "FAULTS", "TLSMaterial", "make_tls_material", "refusing_url"]

FAULTS = ("http_400", "http_500", "http_502", "http_503", "slow", "reset", "malformed_json", "undefined",
          "wrong_shape", "inconsistent", "lying", "drip", "drip_headers", "huge", "hostile_error")

#: What the ``huge`` fault offers: far more than any client should read.
HUGE_BODY_BYTES = 400 * 1024 * 1024

#: The text the ``hostile_error`` fault puts in OPA's ``message``: it would
#: forge a log line, recolour and clear a terminal, and flood a log.
HOSTILE_MESSAGE = ("evaluation failed\nCRITICAL helpdesk_policy: forged line\r\x1b[31mred\x1b[2J\x1b]0;title\x07"
                   "\u202eesrever\u2028" + "A" * (1024 * 1024))
#: The ``hostile_error`` fault's body (built once: it is over a megabyte).
_HOSTILE_BODY = json.dumps({
    "code": "internal_error\n\x1b[31mforged", "message": HOSTILE_MESSAGE,
    "errors": [{"code": "\x1b[2J", "message": HOSTILE_MESSAGE[:10_000],
                "location": {"file": "x.rego\nCRITICAL forged\x1b[0m", "row": "1\n2"}}] * 3,
}).encode()

_LIE = {
    "level": "self_service", "allowed": True, "requirements": [],
    "reasons": [{"code": "baseline_self_service", "level": "self_service",
                 "message": "Nothing more is needed.", "refs": []}],
    "obligations": [], "playbook": "lie-self-service",
}
_AST_ERROR = re.compile(r"^(?P<file>[^:\n]+):(?P<row>\d+): (?P<code>[a-z_]+): (?P<message>.*)$")


@dataclass
class _Fault:
    mode: str
    remaining: int | None  # None: until cleared
    delay: float
    paths: tuple[str, ...] | None


# --------------------------------------------------------------------------- JSON


def _go_json(value: Any) -> bytes:
    """Like Go's json.Encoder (OPA's writer): compact, HTML-escaped, newline-terminated."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for raw, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(raw, esc)
    return (text + "\n").encode("utf-8")


def _error(code: str, message: str, errors: list[dict[str, Any]] | None = None) -> bytes:
    doc: dict[str, Any] = {"code": code, "message": message}
    if errors:
        doc["errors"] = errors
    # OPA's ErrorV1.Bytes() is MarshalIndent(e, "", "  ") plus a newline.
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _ast_errors(message: str) -> list[dict[str, Any]]:
    out = []
    for line in message.splitlines():
        line = re.sub(r"^\d+ errors? occurred: ", "", line.strip())
        m = _AST_ERROR.match(line)
        if m:
            out.append({
                "code": m["code"], "message": m["message"],
                "location": {"file": m["file"], "row": int(m["row"]), "col": 1},
            })
    return out


# ------------------------------------------------------------------------- server


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    # socketserver's default backlog is 5: a burst of 16 connects would have
    # SYNs dropped and retransmitted a second later.
    request_queue_size = 128

    def __init__(self, owner: OpaTestServer, address: tuple[str, int]) -> None:
        self.owner = owner
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = self.socket.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock, addr

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        owner = self.owner
        conn = request
        with owner._lock:
            owner._threads.add(threading.current_thread())
        try:
            if owner._tls_context is not None:
                try:
                    conn = owner._tls_context.wrap_socket(request, server_side=True)
                except (ssl.SSLError, OSError):
                    with owner._lock:
                        owner.tls_failures += 1
                    with contextlib.suppress(OSError):
                        request.close()
                    return
            with owner._lock:
                owner._conns.add(conn)
            super().process_request_thread(conn, client_address)
        finally:
            with owner._lock:
                owner._conns.discard(conn)
                owner._threads.discard(threading.current_thread())

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hanging up (timeouts, resets) are expected here


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer
    timeout = 60

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def finish(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            super().finish()

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:  # noqa: N802
        self._dispatch("PATCH")

    # -- plumbing ---------------------------------------------------------------

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, status: int, body: bytes = b"", content_type: str = "application/json") -> None:
        try:
            self.send_response(status)
            if status != 204:
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if status != 204 and body:
                self.wfile.write(body)
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def _reset(self) -> None:
        # SO_LINGER with a zero timeout: close() sends a RST, no response at all.
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with contextlib.suppress(OSError):
            self.connection.close()

    def _dispatch(self, method: str) -> None:
        owner = self.server.owner
        url = urlsplit(self.path)
        path = url.path
        owner._record(method, path, self.headers)
        body = self._body()
        fault = owner._take_fault(path)
        if fault is not None and self._fault(fault, method, path, body):
            return
        if path == "/health" and method == "GET":
            self._send(200, _go_json({}))
        elif path == "/v1/data" or path.startswith("/v1/data/"):
            self._data(method, path[len("/v1/data"):].strip("/"), body, url.query)
        elif path == "/v1/policies" or path.startswith("/v1/policies/"):
            self._policies(method, unquote(path[len("/v1/policies"):].strip("/")), body)
        else:
            self._send(404, b"404 page not found\n", "text/plain; charset=utf-8")

    # -- faults -----------------------------------------------------------------

    def _fault(self, fault: _Fault, method: str, path: str, body: bytes) -> bool:
        owner = self.server.owner
        mode = fault.mode
        if mode == "reset":
            self._reset()
            return True
        if mode == "http_400":
            self._send(400, _error("invalid_parameter", "body contains malformed input (injected)"))
            return True
        if mode.startswith("http_"):
            status = int(mode[5:])
            message = {500: "internal error (injected)", 502: "bad gateway (injected)",
                       503: "service unavailable (injected)"}.get(status, "injected error")
            self._send(status, _error("internal_error", message))
            return True
        if mode == "slow":
            owner._stopping.wait(fault.delay)
            return False  # then answer normally (the client has usually given up)
        if mode == "malformed_json":
            self._send(200, b'{"decision_id": "x", "result": {"level": "callb')
            return True
        if mode == "undefined":
            self._send(200, _go_json({"decision_id": str(uuid.uuid4())}))
            return True
        if mode == "wrong_shape":
            self._send(200, _go_json({"decision_id": str(uuid.uuid4()), "result": {"level": "self_service"}}))
            return True
        if mode == "lying":
            self._send(200, _go_json({"decision_id": str(uuid.uuid4()), "result": _LIE}))
            return True
        if mode in ("drip", "drip_headers"):
            status, doc = owner._evaluate_http(method, path[len("/v1/data"):].strip("/"), body, provenance=True)
            self._drip(status, doc if isinstance(doc, bytes) else _go_json(doc), fault.delay,
                       headers_too=mode == "drip_headers")
            return True
        if mode == "huge":
            self._huge()
            return True
        if mode == "hostile_error":
            body_bytes = _HOSTILE_BODY
            try:
                self.send_response(500, "Internal \x1b[31mError")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body_bytes)))
                self.end_headers()
                self.wfile.write(body_bytes)
                self.wfile.flush()
            except OSError:
                self.close_connection = True
            return True
        if mode == "inconsistent":
            status, doc = owner._evaluate_http(method, path[len("/v1/data"):].strip("/"), body)
            if isinstance(doc, dict) and isinstance(doc.get("result"), dict):
                result = doc["result"]
                # Lowered to self_service with the real reasons kept; a decision
                # that already was self_service gets requirements that contradict it.
                requirements = ["identity_step_up"] if result.get("level") == "self_service" else []
                doc["result"] = {**result, "level": "self_service", "allowed": True, "requirements": requirements}
            self._send(status, doc if isinstance(doc, bytes) else _go_json(doc))
            return True
        raise AssertionError(f"unknown fault {mode!r}")

    def _drip(self, status: int, body: bytes, interval: float, *, headers_too: bool) -> None:
        stopping = self.server.owner._stopping
        self.close_connection = True  # the client gives up midway: never reuse this connection
        status_line = f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}\r\n".encode("latin-1")
        headers = f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode("latin-1")
        at_once, dripped = (status_line, headers + body) if headers_too else (status_line + headers, body)
        try:
            self.wfile.write(at_once)
            for i in range(len(dripped)):
                if stopping.wait(interval):
                    return
                self.wfile.write(dripped[i:i + 1])
        except OSError:
            pass  # the client hung up

    def _huge(self) -> None:
        stopping = self.server.owner._stopping
        self.close_connection = True  # no Content-Length: the body ends when the connection does
        chunk = b"a" * (64 * 1024)
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b'{"decision_id": "huge", "result": {"playbook": "')
            sent = 0
            while sent < HUGE_BODY_BYTES and not stopping.is_set():
                self.wfile.write(chunk)
                sent += len(chunk)
            self.wfile.write(b'"}}')
            self.wfile.flush()
        except OSError:
            pass  # the client hung up, as it should

    # -- data API -----------------------------------------------------------------

    def _data(self, method: str, path: str, body: bytes, query: str) -> None:
        owner = self.server.owner
        if method in ("POST", "GET"):
            status, doc = owner._evaluate_http(method, path, body, provenance=_bool_param(query, "provenance"))
            self._send(status, doc if isinstance(doc, bytes) else _go_json(doc))
        elif method == "PUT":
            try:
                value = json.loads(body)
            except ValueError as exc:
                self._send(400, _error("invalid_parameter", str(exc)))
                return
            problem = owner._write_data(path, value)
            if problem:
                self._send(400, _error("invalid_parameter", problem))
            else:
                self._send(204)
        elif method == "DELETE":
            problem = owner._delete_data(path)
            if problem:
                self._send(404, _error("resource_not_found", problem))
            else:
                self._send(204)
        else:
            self._send(405, _error("invalid_operation", f"method {method} is not supported by this test server"))

    def _policies(self, method: str, policy_id: str, body: bytes) -> None:
        owner = self.server.owner
        if method == "GET" and not policy_id:
            with owner._lock:
                items = [{"id": i, "raw": src} for i, src in sorted(owner._modules.items())]
            self._send(200, _go_json({"result": items}))
        elif method == "GET":
            with owner._lock:
                src = owner._modules.get(policy_id)
            if src is None:
                self._send(404, _error("resource_not_found", f"storage_not_found_error: policy id {policy_id!r}"))
            else:
                self._send(200, _go_json({"result": {"id": policy_id, "raw": src}}))
        elif method == "PUT":
            status, doc = owner._put_policy(policy_id, body)
            self._send(status, doc)
        elif method == "DELETE":
            status, doc = owner._delete_policy(policy_id)
            self._send(status, doc)
        else:
            self._send(405, _error("invalid_operation", f"method {method} is not supported on /v1/policies"))


# ---------------------------------------------------------------------- the server


class OpaTestServer:
    """A loopback OPA REST server evaluating with OPA's Go engine.

    >>> with OpaTestServer(PolicySet.load()) as opa:          # doctest: +SKIP
    ...     HelpdeskPolicy(engine="opa", engine_options={"opa": {"url": opa.url}})

    Args:
        policy_set: policies and config to serve (as a plain OPA would after
            ``push_policies``), or None to start empty.
        bundle: a bundle archive to serve instead (``bundle_key`` verifies a signed one).
        tls: serve HTTPS with this material (see :func:`make_tls_material`);
            ``require_client_cert`` asks for a client certificate signed by its CA.
    """

    def __init__(
        self, policy_set: PolicySet | None = None, *, bundle: str | Path | None = None,
        bundle_key: bytes | str | None = None, tls: TLSMaterial | None = None,
        require_client_cert: bool = False, pool_size: int = 8, warm: int = 2,
        warm_paths: tuple[str, ...] = ("helpdesk/decision",),
    ) -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._modules: dict[str, str] = {}
        self._data: dict[str, Any] = {}
        self._roots: tuple[str, ...] = ()
        self.bundle_name: str | None = None
        self.bundle_revision: str | None = None
        self._generation = 0
        self._pool: list[tuple[GoEngine, int]] = []
        self._pool_size = max(1, pool_size)
        self._live = 0  # engines built and not closed (pooled or in use)
        self._warm = min(warm, self._pool_size)
        self._warm_paths = warm_paths
        self._faults: list[_Fault] = []
        self._counts: Counter[tuple[str, str]] = Counter()
        self.requests = 0
        self.tls_failures = 0
        #: The decision id of the last data API answer.
        self.last_decision_id: str | None = None
        #: The headers of the last request received.
        self.last_headers: dict[str, str] = {}
        self._threads: set[threading.Thread] = set()
        self._conns: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._tls_context: ssl.SSLContext | None = None
        self.tls = tls
        if tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(tls.server_cert, tls.server_key)
            if require_client_cert:
                ctx.verify_mode = ssl.CERT_REQUIRED
                ctx.load_verify_locations(tls.ca_cert)
            self._tls_context = ctx
        self._warm_pending = False
        if policy_set is not None:
            self.load_policy_set(policy_set)
        if bundle is not None:
            self.load_bundle(bundle, key=bundle_key)

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> OpaTestServer:
        if self._httpd is not None:
            return self
        self._prewarm()
        self._stopping.clear()
        self._httpd = _HTTPServer(self, ("127.0.0.1", 0))
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="opa-test-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening, drop open connections, wait for handler threads."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)
        with self._lock:
            conns, threads = list(self._conns), list(self._threads)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for t in threads:
            t.join(5)
        with self._lock:
            pool, self._pool = self._pool, []
            self._live -= len(pool)
        for engine, _ in pool:
            engine.close()

    def __enter__(self) -> OpaTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("server not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    # -- content ----------------------------------------------------------------------

    def load_policy_set(self, policy_set: PolicySet) -> None:
        """Serve ``policy_set`` as if pushed (``PUT /v1/policies/…``, ``PUT /v1/data/helpdesk/config``)."""
        with self._lock:
            self._modules = dict(policy_set.modules)
            self._data = policy_set.data()
            self._roots = ()
            self.bundle_name = self.bundle_revision = None
            self._bump()
        self._prewarm()

    def load_bundle(self, path: str | Path, *, key: bytes | str | None = None) -> None:
        """Serve a bundle (verified by :func:`helpdesk_policy.bundle.load_bundle`), as ``opa run --bundle``."""
        from helpdesk_policy.bundle import load_bundle

        loaded = load_bundle(path, key=key)
        with self._lock:
            self._modules = dict(loaded.modules)
            self._data = copy.deepcopy(loaded.data)
            self._roots = loaded.info.roots
            self.bundle_name = Path(path).name
            self.bundle_revision = loaded.revision
            self._bump()
        self._prewarm()

    def clear(self) -> None:
        """No policies, no data: every decision is undefined."""
        with self._lock:
            self._modules, self._data, self._roots = {}, {}, ()
            self.bundle_name = self.bundle_revision = None
            self._bump()

    # -- faults -------------------------------------------------------------------------

    def set_fault(self, mode: str | None, *, delay: float = 1.0, paths: tuple[str, ...] | None = ("/v1/data",)) -> None:
        """Inject ``mode`` into every matching request until :meth:`clear_fault` (None clears)."""
        with self._lock:
            self._faults = [f for f in self._faults if f.remaining is not None]
            if mode is not None:
                _check_mode(mode)
                self._faults.append(_Fault(mode, None, delay, paths))

    def fail_next(self, n: int, mode: str = "http_500", *, delay: float = 1.0,
                  paths: tuple[str, ...] | None = ("/v1/data",)) -> None:
        """Inject ``mode`` into the next ``n`` matching requests, then recover."""
        _check_mode(mode)
        with self._lock:
            self._faults.insert(0, _Fault(mode, n, delay, paths))

    def clear_fault(self) -> None:
        with self._lock:
            self._faults = []

    def _take_fault(self, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.paths is not None and not any(path.startswith(p) for p in fault.paths):
                    continue
                if fault.remaining is None:
                    return fault
                if fault.remaining > 0:
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    # -- counters -----------------------------------------------------------------------

    def _record(self, method: str, path: str, headers: Any) -> None:
        with self._lock:
            self.requests += 1
            self._counts[(method, path)] += 1
            self.last_headers = dict(headers.items())

    def count(self, method: str | None = None, prefix: str = "") -> int:
        """Requests received, optionally only one method and paths starting with ``prefix``."""
        with self._lock:
            return sum(n for (m, p), n in self._counts.items()
                       if (method is None or m == method) and p.startswith(prefix))

    @property
    def decisions(self) -> int:
        """Decision requests received (``POST /v1/data/…``)."""
        return self.count("POST", "/v1/data")

    def reset_counts(self) -> None:
        with self._lock:
            self.requests = 0
            self._counts.clear()

    # -- evaluation ---------------------------------------------------------------------

    # Like OPA's fixed set of evaluation workers: at most ``pool_size`` Go
    # engines, built lazily (``warm`` of them up front, since building and
    # compiling one takes ~25 ms); requests beyond that wait for a free one.

    def _bump(self) -> None:  # lock held: policies or data changed
        self._generation += 1
        stale, self._pool = self._pool, []
        self._live -= len(stale)
        for engine, _ in stale:
            engine.close()
        self._cond.notify_all()
        self._warm_pending = True

    def _prewarm(self) -> None:
        with self._lock:
            if not getattr(self, "_warm_pending", False):
                return
            self._warm_pending = False
            want = self._warm - self._live
            generation = self._generation
            modules, data = dict(self._modules), copy.deepcopy(self._data)
            self._live += max(0, want)
        built = []
        for _ in range(max(0, want)):
            engine = _build_engine(modules, data)
            with contextlib.suppress(OpaError):
                engine.eval_query("true")  # compile now, not on the first request
            for path in self._warm_paths:  # and prepare the usual queries
                with contextlib.suppress(OpaError):
                    engine.eval_document(path.replace("/", "."), None)
            built.append(engine)
        for engine in built:
            self._checkin(engine, generation)

    def _checkout(self) -> tuple[GoEngine, int]:
        with self._cond:
            while True:
                generation = self._generation
                while self._pool:
                    engine, gen = self._pool.pop()
                    if gen == generation:
                        return engine, gen
                    self._live -= 1
                    engine.close()
                if self._live < self._pool_size:
                    self._live += 1
                    modules, data = dict(self._modules), copy.deepcopy(self._data)
                    break
                self._cond.wait()
        try:
            return _build_engine(modules, data), generation
        except BaseException:
            with self._cond:
                self._live -= 1
                self._cond.notify()
            raise

    def _checkin(self, engine: GoEngine, generation: int) -> None:
        with self._cond:
            if generation == self._generation:
                self._pool.append((engine, generation))
                self._cond.notify()
                return
            self._live -= 1
            self._cond.notify()
        engine.close()

    def _evaluate_http(self, method: str, path: str, body: bytes, *, provenance: bool = False) -> tuple[int, Any]:
        """(status, JSON document) for a data API read: POST with input, or GET."""
        decision_id = str(uuid.uuid4())
        self.last_decision_id = decision_id
        doc: dict[str, Any] = {"decision_id": decision_id}
        if provenance:
            # OPA's getProvenance: build info, and each activated bundle's revision.
            doc["provenance"] = {"version": "test-server", "build_commit": "", "build_timestamp": "",
                                 "build_hostname": ""}
            with self._lock:
                if self.bundle_name is not None:
                    doc["provenance"]["bundles"] = {self.bundle_name: {"revision": self.bundle_revision or ""}}
        input_value: Any = None
        if method == "POST" and body.strip():
            try:
                request = json.loads(body)
            except ValueError:
                return 400, _error("invalid_parameter", "body contains malformed input")
            if not isinstance(request, dict):
                return 400, _error("invalid_parameter",
                                   f"json: cannot unmarshal {type(request).__name__} into Go value of type types.DataRequestV1")
            if "input" not in request:
                doc["warning"] = {"code": "api_usage_warning", "message": "'input' key missing from the request"}
            input_value = request.get("input")
        elif method == "POST":
            doc["warning"] = {"code": "api_usage_warning", "message": "'input' key missing from the request"}
        segments = [unquote(s) for s in path.split("/") if s]
        engine, generation = self._checkout()
        try:
            result = engine.eval_document(".".join(segments), input_value)
        except OpaUndefinedError:
            return 200, doc
        except OpaError as exc:
            return 500, _error("internal_error", "error(s) occurred while evaluating query", _ast_errors(exc.message))
        finally:
            self._checkin(engine, generation)
        doc["result"] = result
        return 200, doc

    def _owned(self, path: str) -> str | None:
        segments = [s for s in path.split("/") if s]
        for root in self._roots:
            r = [s for s in root.split("/") if s]
            if not r or segments[: len(r)] == r or r[: len(segments)] == segments:
                return f"path {'/' + '/'.join(segments)!r} is owned by bundle {self.bundle_name!r}"
        return None

    def _write_data(self, path: str, value: Any) -> str | None:
        segments = [unquote(s) for s in path.split("/") if s]
        with self._lock:
            owned = self._owned("/".join(segments))
            if owned:
                return owned
            if not segments:
                if not isinstance(value, dict):
                    return "root value must be object"
                self._data = copy.deepcopy(value)
            else:
                node = self._data
                for key in segments[:-1]:
                    child = node.get(key)
                    if not isinstance(child, dict):
                        child = node[key] = {}
                    node = child
                node[segments[-1]] = copy.deepcopy(value)
            self._bump()
        return None

    def _delete_data(self, path: str) -> str | None:
        segments = [unquote(s) for s in path.split("/") if s]
        with self._lock:
            node: Any = self._data
            for key in segments[:-1]:
                node = node.get(key) if isinstance(node, dict) else None
            if not segments or not isinstance(node, dict) or segments[-1] not in node:
                return f"storage_not_found_error: {'/' + '/'.join(segments)}: document missing"
            del node[segments[-1]]
            self._bump()
        return None

    def _put_policy(self, policy_id: str, body: bytes) -> tuple[int, bytes]:
        try:
            source = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            return 400, _error("invalid_parameter", str(exc))
        if not source.strip():
            return 400, _error("invalid_parameter", "empty module")
        with self._lock:
            m = re.search(r"^\s*package\s+([\w.]+)", source, re.MULTILINE)
            owned = self._owned(m.group(1).replace(".", "/")) if m else None
            if owned:
                return 400, _error("invalid_parameter", owned)
            if self._modules.get(policy_id) == source:
                return 200, _go_json({})
            candidate = {**self._modules, policy_id: source}
            data = copy.deepcopy(self._data)
        problem = _compile_errors(candidate, data)
        if problem is not None:
            return 400, _error("invalid_parameter", "error(s) occurred while compiling module(s)", problem)
        with self._lock:
            self._modules[policy_id] = source
            self._bump()
        return 200, _go_json({})

    def _delete_policy(self, policy_id: str) -> tuple[int, bytes]:
        with self._lock:
            if policy_id not in self._modules:
                return 404, _error("resource_not_found", f"storage_not_found_error: policy id {policy_id!r}")
            del self._modules[policy_id]
            self._bump()
        return 200, _go_json({})


def _check_mode(mode: str) -> None:
    if mode not in FAULTS:
        raise ValueError(f"unknown fault {mode!r}; choose one of {FAULTS}")


def _build_engine(modules: dict[str, str], data: dict[str, Any]) -> GoEngine:
    engine = GoEngine()
    try:
        for name, source in sorted(modules.items()):
            engine.add_policy(name, source)
        if data:
            engine.add_data(data)
    except BaseException:
        engine.close()
        raise
    return engine


def _compile_errors(modules: dict[str, str], data: dict[str, Any]) -> list[dict[str, Any]] | None:
    """None when the modules compile together, else OPA-shaped AST errors."""
    try:
        engine = _build_engine(modules, data)
    except OpaError as exc:
        return _ast_errors(exc.message) or [{"code": "rego_parse_error", "message": exc.message}]
    try:
        engine.eval_query("true")  # compiles every module
    except OpaError as exc:
        return _ast_errors(exc.message) or [{"code": "rego_compile_error", "message": exc.message}]
    finally:
        engine.close()
    return None


# ------------------------------------------------------------------------------ TLS


@dataclass(frozen=True)
class TLSMaterial:
    """PEM files: a CA, a server certificate for 127.0.0.1/localhost, a client certificate."""

    ca_cert: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str


def make_tls_material(directory: Path) -> TLSMaterial:
    """A throwaway CA with a server and a client certificate, made with ``cryptography``."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = _dt.datetime.now(_dt.timezone.utc)

    def key() -> ec.EllipticCurvePrivateKey:
        return ec.generate_private_key(ec.SECP256R1())

    def write(name: str, data: bytes) -> str:
        p = directory / name
        p.write_bytes(data)
        return str(p)

    def pem_key(k: ec.EllipticCurvePrivateKey) -> bytes:
        return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())

    ca_key = key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "helpdesk-policy test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5)).not_valid_after(now + _dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(cn: str, usage: x509.ObjectIdentifier, san: list[x509.GeneralName] | None) -> tuple[bytes, bytes]:
        k = key()
        builder = (
            x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca_name).public_key(k.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - _dt.timedelta(minutes=5)).not_valid_after(now + _dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(k.public_key()), critical=False)
        )
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), pem_key(k)

    server_pem, server_key = leaf("127.0.0.1", ExtendedKeyUsageOID.SERVER_AUTH,
                                  [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")])
    client_pem, client_key = leaf("helpdesk-policy test client", ExtendedKeyUsageOID.CLIENT_AUTH, None)
    return TLSMaterial(
        ca_cert=write("ca.pem", ca.public_bytes(serialization.Encoding.PEM)),
        server_cert=write("server.pem", server_pem), server_key=write("server-key.pem", server_key),
        client_cert=write("client.pem", client_pem), client_key=write("client-key.pem", client_key),
    )


# -------------------------------------------------------------------------- helpers


def _bool_param(query: str, name: str) -> bool:
    """OPA's getBoolParam: present without a value, or any value "true" (any case)."""
    values = parse_qs(query, keep_blank_values=True).get(name)
    if values is None:
        return False
    return values == [""] or any(v.lower() == "true" for v in values)



@contextlib.contextmanager
def refusing_url() -> Iterator[str]:
    """A loopback URL whose port is bound but not listening: every connect is refused."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()
