"""The facade's own contract: engine loading, the decision envelope, the log sink."""

from __future__ import annotations

import json
import logging
import sys
import uuid

import pytest

from helpdesk_policy import EngineUnavailableError, HelpdeskPolicy, InvalidRequestError, Level
from helpdesk_policy.engines import ENGINES
from helpdesk_policy.policies import PolicySet

REQUEST = {
    "request": {"id": "INC-1", "action": "password_reset", "channel": "phone",
                "justification": "my password is hunter2, please reset it", "emergency": False},
    "actor": {"id": "u-1", "type": "human", "relationship": "self", "authenticated": True,
              "auth_strength": "password", "roles": ["employee"]},
    "target": {"id": "u-1", "type": "human", "privileged": False, "privilege_tier": 0,
               "vip": False, "status": "active"},
}


def test_missing_extra_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(ENGINES, "rego", ("helpdesk_policy_no_such_module", "RegoEngine", "rego"))
    with pytest.raises(EngineUnavailableError, match=r"helpdesk-policy\[rego\]"):
        HelpdeskPolicy(engine="rego")


def test_unknown_engine_is_refused() -> None:
    with pytest.raises(EngineUnavailableError, match="unknown engine 'cedar'"):
        HelpdeskPolicy(engine="cedar")


def test_auto_without_regopy_falls_back_to_native_and_says_degraded(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(ENGINES, "rego", ("helpdesk_policy_no_such_module", "RegoEngine", "rego"))
    with caplog.at_level(logging.WARNING, logger="helpdesk_policy"):
        policy = HelpdeskPolicy()
    assert policy.engine_names == ["native"]
    assert "unavailable" in caplog.text
    decision = policy.decide(REQUEST)
    assert decision.engine == "native"
    assert decision.degraded is True  # the preferred engine could not be used


def test_auto_prefers_rego_and_is_not_degraded() -> None:
    policy = HelpdeskPolicy()
    assert policy.engine_names == ["rego", "native"]
    decision = policy.decide(REQUEST)
    assert (decision.engine, decision.degraded) == ("rego", False)


def test_importing_the_package_does_not_import_engines() -> None:
    import subprocess

    code = "import helpdesk_policy, sys; print(sorted(m for m in ('regopy', 'opa_client', 'requests', 'aiohttp', 'hypothesis') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_decision_envelope() -> None:
    policy = HelpdeskPolicy(engine="native")
    first, second = policy.decide(REQUEST), policy.decide(dict(reversed(list(REQUEST.items()))))
    assert first.policy_revision == PolicySet.load().revision
    assert first.policy_revision.startswith("sha256:") and len(first.policy_revision) == 71
    assert first.input_digest == second.input_digest  # canonical: key order does not matter
    assert first.decision_id != second.decision_id
    uuid.UUID(first.decision_id)
    assert first.level is Level.STEP_UP


def test_revision_changes_with_config() -> None:
    assert HelpdeskPolicy(engine="native", config={"callback_tier": 3}).policy_revision != (
        HelpdeskPolicy(engine="native").policy_revision
    )


def test_log_sink_gets_a_redacted_record_without_secrets() -> None:
    records: list[dict] = []
    policy = HelpdeskPolicy(engine="native", log_sink=records.append)
    decision = policy.decide(REQUEST)
    (record,) = records
    assert record["decision_id"] == decision.decision_id
    assert record["input_digest"] == decision.input_digest
    assert record["result"] == decision.to_dict()
    assert record["input"]["request"]["justification"] == "[redacted]"
    assert "hunter2" not in json.dumps(record)


def test_a_failing_log_sink_does_not_change_the_decision(caplog: pytest.LogCaptureFixture) -> None:
    def broken(_: dict) -> None:
        raise OSError("disk full")

    policy = HelpdeskPolicy(engine="native", log_sink=broken)
    with caplog.at_level(logging.ERROR, logger="helpdesk_policy"):
        decision = policy.decide(REQUEST)
    assert decision.level is Level.STEP_UP
    assert "sink failed" in caplog.text


def test_invalid_request_error_does_not_echo_values() -> None:
    bad = json.loads(json.dumps(REQUEST))
    bad["request"]["justification"] = 12345  # wrong type; value must not be echoed
    bad["target"]["privilege_tier"] = "hunter2"
    with pytest.raises(InvalidRequestError) as info:
        HelpdeskPolicy(engine="native").decide(bad)
    assert set(info.value.paths) == {"request.justification", "target.privilege_tier"}
    assert "hunter2" not in str(info.value) and "12345" not in str(info.value)


def test_decide_many_validates_everything_first() -> None:
    policy = HelpdeskPolicy(engine="native")
    bad = json.loads(json.dumps(REQUEST))
    bad["request"]["action"] = "format_disk"
    with pytest.raises(InvalidRequestError) as info:
        policy.decide_many([REQUEST, bad, REQUEST])
    assert info.value.paths == ["[1].request.action"]
    assert [d.level for d in policy.decide_many([REQUEST, REQUEST])] == [Level.STEP_UP, Level.STEP_UP]


def test_rego_engine_is_safe_across_threads() -> None:
    # One interpreter per thread over one compiled bundle (NOTES.md: a shared
    # interpreter corrupts results). 4 threads x 50 decisions must all agree.
    from concurrent.futures import ThreadPoolExecutor

    policy = HelpdeskPolicy(engine="rego")
    expected = HelpdeskPolicy(engine="native").decide(REQUEST).parity_key()
    with ThreadPoolExecutor(4) as pool:
        keys = list(pool.map(lambda _: policy.decide(REQUEST).parity_key(), range(200)))
    assert all(k == expected for k in keys)
