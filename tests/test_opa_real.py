"""Integration tests against a real OPA server, when ``OPA_URL`` is set.

Start one with the policies as a bundle::

    helpdesk-policy bundle build -o bundle.tar.gz
    opa run --server --addr 127.0.0.1:8181 --bundle bundle.tar.gz
    OPA_URL=http://127.0.0.1:8181 pytest tests/test_opa_real.py

or start a plain ``opa run --server`` and let the tests push the policies
(``PUT /v1/policies`` + ``PUT /v1/data/helpdesk/config``). ``OPA_TOKEN`` is
sent as a bearer token when set; ``OPA_CA_FILE`` names a CA for https.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

OPA_URL = os.environ.get("OPA_URL")
if not OPA_URL:
    pytest.skip(
        "OPA_URL not set: start `opa run --server --bundle bundle.tar.gz` and export "
        "OPA_URL=http://localhost:8181 to run",
        allow_module_level=True,
    )
pytest.importorskip("opa_client", reason="the opa engine needs the 'opa' extra")

from helpdesk_policy import HelpdeskPolicy, Verdict, parse_request  # noqa: E402
from helpdesk_policy.engines.opa import OpaEngine  # noqa: E402
from helpdesk_policy.engines.rego import RegoEngine  # noqa: E402
from helpdesk_policy.errors import UndefinedDecisionError  # noqa: E402
from helpdesk_policy.policyset import PolicySet  # noqa: E402

pytestmark = pytest.mark.opa_server

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = [json.loads(p.read_text(encoding="utf-8")) for p in sorted((ROOT / "examples" / "requests").glob("*.json"))]


def _options() -> dict[str, Any]:
    opts: dict[str, Any] = {"url": OPA_URL, "deadline": 2.0}
    if os.environ.get("OPA_TOKEN"):
        opts["token"] = os.environ["OPA_TOKEN"]
    if os.environ.get("OPA_CA_FILE"):
        opts["ca_file"] = os.environ["OPA_CA_FILE"]
    return opts


def _verdict(raw: Any) -> dict[str, Any]:
    doc = {k: v for k, v in dict(raw).items() if k != "decision_id"}
    return Verdict.model_validate(doc).model_dump(mode="json")


@pytest.fixture(scope="module")
def engine() -> Any:
    ps = PolicySet.load()
    eng = OpaEngine(ps, **_options())
    assert eng.check_health(), f"OPA at {OPA_URL} is not healthy"
    try:
        eng.evaluate(parse_request(EXAMPLES[0]))
    except UndefinedDecisionError:
        eng.push_policies()  # a plain OPA without the bundle
    yield eng
    eng.close()


def test_real_opa_agrees_with_the_embedded_engine(engine: OpaEngine) -> None:
    rego = RegoEngine(PolicySet.load())
    for doc in EXAMPLES:
        req = parse_request(doc)
        assert _verdict(engine.evaluate(req)) == _verdict(rego.evaluate(req)), doc["request"]["id"]


def test_real_opa_async_and_through_the_facade(engine: OpaEngine) -> None:
    async def main() -> list[Any]:
        policy = HelpdeskPolicy(engine="opa", fallback=["native"], engine_options={"opa": _options()})
        try:
            return await policy.adecide_many(EXAMPLES)
        finally:
            await policy.engines[0].aclose()  # type: ignore[attr-defined]
            policy.close()

    decisions = asyncio.run(main())
    assert all(d.engine == "opa" and not d.degraded for d in decisions)
