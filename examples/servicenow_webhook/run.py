"""A ServiceNow incident webhook through the decision service, end to end.

Starts ``helpdesk-policy serve`` on a free loopback port with a bearer token and this
directory's inventory, waits until it is ready, posts the sample incident
(``examples/ticketing/servicenow_incident.json``: a tier-2 admin phoning for an MFA reset)
to ``/v1/webhooks/servicenow-incident`` as ServiceNow's outbound REST message would, and
prints the decision and the work note to write back to the incident. Then stops the service.

    python examples/servicenow_webhook/run.py

In ServiceNow: a Business Rule (after insert, on incidents of the identity category) posts
``current`` as JSON with ``Authorization: Bearer <token>``; the response's ``write_back`` is
the body of ``PATCH /api/now/table/incident/{sys_id}``.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
PAYLOAD = HERE.parent / "ticketing" / "servicenow_incident.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(url: str, token: str | None = None, body: bytes | None = None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=body, headers=headers, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def main() -> None:
    token = secrets.token_urlsafe(32)
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        token_file = Path(tmp) / "token"
        token_file.write_text(token + "\n", encoding="utf-8")
        token_file.chmod(0o600)
        server = subprocess.Popen(
            [sys.executable, "-m", "helpdesk_policy", "serve", "--port", str(port), "--engine", "native",
             "--token-file", str(token_file), "--facts", str(HERE / "inventory.yaml"), "--log-level", "warning"],
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(200):
                try:
                    if call(f"{base}/ready")[0] == 200:
                        break
                except OSError:
                    pass
                time.sleep(0.05)
            else:
                raise SystemExit("the service did not become ready")
            status, answer = call(f"{base}/v1/webhooks/servicenow-incident", token, PAYLOAD.read_bytes())
            print(f"HTTP {status}")
            decision = answer["decision"]
            print(f"{decision['request_id']}: {decision['level']} ({', '.join(decision['requirements'])})")
            print("work note to write back:")
            print(answer["write_back"]["work_notes"])
            status, _ = call(f"{base}/v1/webhooks/servicenow-incident", None, PAYLOAD.read_bytes())
            print(f"without the token: HTTP {status}")
        finally:
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    main()
