"""Load-test the decision service: decisions/s and p50/p99 latency over real HTTP.

Run on demand (not a test)::

    python benchmarks/bench_service.py [--seconds 20] [--clients 16] [--engines native rego] [--workers 1]

For each engine, ``helpdesk-policy serve`` starts in its own process on a
loopback port (a random token in its environment, access log off), and
``--clients`` concurrent keep-alive clients (one connection each, asyncio
streams in this process: :class:`RawClient`) POST the example requests to
``/v1/decide`` in turn for ``--seconds`` seconds, after a short warm-up.
Latency is measured per request at the client: connection reuse, HTTP
parsing, authentication, validation, the engine and the JSON answer. Every
answer must be a 200 with a decision; anything else is counted as an error.
The run is bounded: it stops after ``--seconds`` whatever happens.

The load generator shares the machine with the server: on a 2-core machine
the client's own cost caps the numbers, so they are a floor for what the
service does with a separate load generator.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples" / "requests").glob("*.json"))


def load_requests() -> list[bytes]:
    out: list[bytes] = []
    for path in EXAMPLES:
        doc = json.loads(path.read_text(encoding="utf-8"))
        out.extend(json.dumps(d).encode() for d in (doc if isinstance(doc, list) else [doc]))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(engine: str, port: int, token: str, workers: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "HELPDESK_POLICY_SERVICE_TOKEN": token}
    proc = subprocess.Popen(
        [sys.executable, "-m", "helpdesk_policy", "serve", "--engine", engine, "--port", str(port),
         "--workers", str(workers), "--no-access-log", "--log-level", "warning"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the server did not become ready in 60 s")


class RawClient:
    """A minimal keep-alive HTTP/1.1 client on asyncio streams.

    httpx costs more CPU per request than the service itself does; on a small
    machine the load generator, not the server, would be measured. This
    client writes a request and reads the status line, the headers and a
    ``Content-Length`` body: all the service sends.
    """

    def __init__(self, host: str, port: int, token: str) -> None:
        self.host, self.port = host, port
        self.head = (f"POST /v1/decide HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
                     "Content-Type: application/json\r\nContent-Length: ").encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(self.head + str(len(body)).encode() + b"\r\n\r\n" + body)
        status_line = await self.reader.readline()
        length = 0
        close = False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value.strip())
            elif name.lower() == "connection" and value.strip().lower() == "close":
                close = True
        payload = await self.reader.readexactly(length)
        if close:
            await self.close()
        return int(status_line.split()[1]), payload

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


async def load(url: str, token: str, bodies: list[bytes], clients: int, seconds: float,
               warmup: float) -> dict[str, Any]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    latencies: list[float] = []
    errors = 0
    levels: dict[str, int] = {}
    measuring_from = time.perf_counter() + warmup
    stop = measuring_from + seconds

    async def client(k: int) -> None:
        nonlocal errors
        http = RawClient(host, int(port), token)
        i = k
        try:
            while True:
                started = time.perf_counter()
                if started >= stop:
                    return
                try:
                    status, payload = await asyncio.wait_for(http.post(bodies[i % len(bodies)]), 10)
                    level = json.loads(payload).get("level") if status == 200 else None
                except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError):
                    await http.close()
                    level = None
                ended = time.perf_counter()
                i += 1
                if started < measuring_from:
                    continue
                if level is None:
                    errors += 1
                    continue
                latencies.append(ended - started)
                levels[level] = levels.get(level, 0) + 1
        finally:
            await http.close()

    began = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(clients)))
    elapsed = time.perf_counter() - max(began, measuring_from)
    latencies.sort()
    n = len(latencies)

    def pct(p: float) -> float:
        return latencies[min(n - 1, int(n * p))] * 1e3 if n else float("nan")

    return {
        "decisions": n, "errors": errors, "seconds": round(elapsed, 2),
        "decisions_per_s": round(n / elapsed, 1) if elapsed > 0 else 0.0,
        "p50_ms": round(pct(0.50), 2), "p90_ms": round(pct(0.90), 2), "p99_ms": round(pct(0.99), 2),
        "max_ms": round(latencies[-1] * 1e3, 2) if n else float("nan"),
        "mean_ms": round(statistics.fmean(latencies) * 1e3, 2) if n else float("nan"),
        "levels": dict(sorted(levels.items())),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="measuring time per engine")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up time per engine (not measured)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent keep-alive clients")
    parser.add_argument("--engines", nargs="+", default=["native", "rego"])
    parser.add_argument("--workers", type=int, default=1, help="server worker processes")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()

    bodies = load_requests()
    results: dict[str, Any] = {}
    print(f"{len(bodies)} example requests, {args.clients} keep-alive clients, {args.seconds:g} s per engine, "
          f"{args.workers} server worker(s), {os.cpu_count()} CPUs", file=sys.stderr)
    for engine in args.engines:
        token = secrets.token_urlsafe(32)
        port = free_port()
        proc = start_server(engine, port, token, args.workers)
        try:
            result = asyncio.run(load(f"http://127.0.0.1:{port}", token, bodies, args.clients, args.seconds,
                                      args.warmup))
        finally:
            proc.terminate()
            proc.wait(timeout=15)
        results[engine] = result
        print(f"{engine:7s} {result['decisions_per_s']:>9,.1f} decisions/s  p50 {result['p50_ms']:7.2f} ms  "
              f"p90 {result['p90_ms']:7.2f} ms  p99 {result['p99_ms']:7.2f} ms  max {result['max_ms']:7.2f} ms  "
              f"(n={result['decisions']:,}, errors {result['errors']})", file=sys.stderr)
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
