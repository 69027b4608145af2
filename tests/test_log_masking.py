"""Masking decision-log records like OPA's ``system.log.mask`` (issue 11, item 5 loose ends).

``log_mask=`` rules erase (``remove``) or replace (``upsert``) values under
``/input`` and ``/result``; whatever the rules, the justification is
redacted and every credential-shaped string is masked.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from helpdesk_policy import HelpdeskPolicy, InvalidConfigError
from helpdesk_policy.cli.ci import diff_command
from helpdesk_policy.credentials import CREDENTIAL_MASK
from helpdesk_policy.digest import LogMaskRule, apply_log_mask, parse_log_mask
from helpdesk_policy.ledger import JsonlSink
from helpdesk_policy.resources import stock_policy_dir

ROOT = Path(__file__).resolve().parents[1]
REQUEST = json.loads((ROOT / "examples" / "requests" / "02-phone-mfa-reset-admin.json").read_text(encoding="utf-8"))
# Assembled from parts: no scanner should mistake this file for a leak.
GITHUB_TOKEN = "ghp_" + "1a2B3c4D5e6F7g8H9i0JkLmNoPqRsTuVwXyZ"


def _with(section: str, **changes: Any) -> dict[str, Any]:
    return {**REQUEST, section: {**REQUEST[section], **changes}}


def _record(request: dict[str, Any], **options: Any) -> dict[str, Any]:
    records: list[dict[str, Any]] = []
    with HelpdeskPolicy(engine="native", log_sink=records.append, **options) as policy:
        policy.decide(request)
    (record,) = records
    json.dumps(record)  # still JSON
    return record


# ------------------------------------------------------------------ the defaults


def test_by_default_the_justification_is_redacted_and_nothing_else_is_masked_for_credentials() -> None:
    record = _record(REQUEST)
    assert record["input"]["request"]["justification"] == "[redacted]"
    assert "/input/request/justification" in record["masked"]
    assert CREDENTIAL_MASK not in json.dumps(record)
    assert record["erased"] == []
    assert record["labels"]["ticket"] == "INC0041388"


def test_a_credential_shaped_ticket_id_is_masked_in_the_input_and_the_labels() -> None:
    record = _record(_with("request", id="AKIAIOSFODNN7EXAMPLE"), log_identifiers="keep")
    assert record["input"]["request"]["id"] == CREDENTIAL_MASK
    assert record["labels"]["ticket"] == CREDENTIAL_MASK
    assert "/input/request/id" in record["masked"]
    assert "AKIAIOSFODNN7EXAMPLE" not in json.dumps(record)


def test_a_ticket_number_of_digits_is_kept() -> None:
    # The ticketing system assigns ticket ids (Zendesk numbers them 1, 2, ... 123456):
    # a run of digits there is a ticket number, not a one-time code.
    record = _record(_with("request", id="123456"), log_identifiers="keep")
    assert record["input"]["request"]["id"] == "123456"
    assert record["labels"]["ticket"] == "123456"
    assert "/input/request/id" not in record["masked"]


def test_a_count_in_a_reason_is_not_a_code_but_a_quoted_code_is_masked() -> None:
    from helpdesk_policy.digest import mask_credentials

    count = "100000 failed verification attempt(s) in 24 hours"
    assert mask_credentials({"m": count}) == {"m": count}
    quoted = "the approver 'u-2' is not among the approvers of record ['493817']"
    assert mask_credentials({"m": quoted}) == {"m": CREDENTIAL_MASK}
    assert mask_credentials({"m": f"reach me with token {GITHUB_TOKEN} now"}) == {"m": CREDENTIAL_MASK}


def test_credential_shaped_identifiers_kept_verbatim_are_masked_with_their_pointers() -> None:
    record = _record(_with("actor", roles=["helpdesk", GITHUB_TOKEN]), log_identifiers="keep")
    assert record["input"]["actor"]["roles"] == ["helpdesk", CREDENTIAL_MASK]
    assert record["masked"] == ["/input/request/justification", "/input/actor/roles/1"]
    assert GITHUB_TOKEN not in json.dumps(record)


def test_a_credential_in_an_engine_error_is_masked() -> None:
    from helpdesk_policy.engines.base import BaseEngine

    class Broken(BaseEngine):
        name = "broken"

        def evaluate(self, request: Any) -> Any:
            raise RuntimeError("cannot reach https://svc:" + "hunter2@opa.internal:8181")

    records: list[dict[str, Any]] = []
    with HelpdeskPolicy(engine=Broken(), log_sink=records.append) as policy:
        decision = policy.decide(REQUEST)
    assert decision.degraded
    (record,) = records
    assert record["engine_errors"] and all(e == CREDENTIAL_MASK for e in record["engine_errors"])
    assert "/engine_errors/0" in record["masked"]
    assert "hunter2" not in json.dumps(record)


# ------------------------------------------------------------------ the rules


def test_a_pointer_erases_and_an_upsert_replaces() -> None:
    record = _record(REQUEST, log_identifiers="keep", log_mask=[
        "/input/context/risk_signals",
        {"op": "remove", "path": "/result/reasons/0/message"},
        {"op": "upsert", "path": "/input/actor/id", "value": "someone"},
        {"op": "upsert", "path": "/input/extra/note", "value": {"kept": [1, 2]}},  # created on the way
    ])
    assert "risk_signals" not in record["input"]["context"]
    assert "message" not in record["result"]["reasons"][0]
    assert record["input"]["actor"]["id"] == "someone"
    assert record["input"]["extra"] == {"note": {"kept": [1, 2]}}
    assert record["erased"] == ["/input/context/risk_signals", "/result/reasons/0/message"]
    assert record["masked"] == ["/input/request/justification", "/input/actor/id", "/input/extra/note"]


def test_rules_on_absent_values_do_nothing_and_are_not_listed() -> None:
    record = _record(REQUEST, log_mask=["/input/target/nosuch", "/result/reasons/99", "/input/request/id/deeper",
                                        {"op": "upsert", "path": "/result/reasons/99/code", "value": "x"}])
    plain = _record(REQUEST)
    assert record["erased"] == [] and record["masked"] == plain["masked"]
    assert record["input"] == plain["input"] and record["result"] == plain["result"] | {
        "decision_id": record["decision_id"]}


def test_erasing_the_request_id_drops_the_ticket_label_and_an_upsert_renames_it() -> None:
    erased = _record(REQUEST, log_mask=["/input/request/id"])
    assert "id" not in erased["input"]["request"] and "ticket" not in erased["labels"]
    renamed = _record(REQUEST, log_mask=[{"op": "upsert", "path": "/input/request/id", "value": "T-1"}])
    assert renamed["labels"]["ticket"] == "T-1"


def test_a_credential_upserted_by_a_rule_is_masked_too() -> None:
    record = _record(REQUEST, log_mask=[{"op": "upsert", "path": "/input/request/note", "value": "token=abc"}])
    assert record["input"]["request"]["note"] == CREDENTIAL_MASK
    assert record["masked"].count("/input/request/note") == 1


def test_escaped_pointers_and_whole_parts() -> None:
    record = {"input": {"a/b": 1, "m~n": 2, "list": [0, 1, 2]}, "result": {"x": 1}, "masked": [], "erased": []}
    apply_log_mask(record, parse_log_mask(["/input/a~1b", "/input/m~0n", "/input/list/1", "/result"]))
    assert record["input"] == {"list": [0, 2]} and "result" not in record
    assert record["erased"] == ["/input/a~1b", "/input/m~0n", "/input/list/1", "/result"]
    whole = {"input": {"a": 1}, "masked": [], "erased": []}
    apply_log_mask(whole, parse_log_mask([{"op": "upsert", "path": "/input", "value": "gone"}]))
    assert whole["input"] == "gone" and whole["masked"] == ["/input"]


def test_an_upserted_value_is_copied_into_each_record() -> None:
    (rule,) = parse_log_mask([{"op": "upsert", "path": "/input/x", "value": {"a": [1]}}])
    first: dict[str, Any] = {"input": {}, "masked": [], "erased": []}
    second: dict[str, Any] = {"input": {}, "masked": [], "erased": []}
    apply_log_mask(first, [rule])
    first["input"]["x"]["a"].append(2)  # a sink changing its record
    apply_log_mask(second, [rule])
    assert second["input"]["x"] == {"a": [1]} and rule.value == {"a": [1]}


@pytest.mark.parametrize(("rules", "bad"), [
    (["input/x"], ["log_mask[0]"]),
    (["/labels/ticket"], ["log_mask[0]"]),
    (["/input/x", "/metrics"], ["log_mask[1]"]),
    ([{"op": "erase", "path": "/input/x"}], ["log_mask[0]"]),
    ([{"op": "upsert", "path": "/input/x"}], ["log_mask[0]"]),
    ([{"op": "remove", "path": "/input/x", "value": 1}], ["log_mask[0]"]),
    ([{"path": 3}], ["log_mask[0]"]),
    ([{"op": "upsert", "path": "/input/x", "value": object()}], ["log_mask[0]"]),
    ([{"op": "upsert", "path": "/input/x", "value": 1, "why": "?"}], ["log_mask[0]"]),
    (["/input/bad~2escape", 42, "/result/ok"], ["log_mask[0]", "log_mask[1]"]),
    ("/input/x", ["log_mask"]),
    ({"op": "remove", "path": "/input/x"}, ["log_mask"]),
])
def test_invalid_rules_are_refused_at_construction_naming_each(rules: Any, bad: list[str]) -> None:
    with pytest.raises(InvalidConfigError) as info:
        HelpdeskPolicy(engine="native", log_mask=rules)
    assert [e.path for e in info.value.errors] == bad


def test_parsed_rules() -> None:
    assert parse_log_mask(None) == ()
    assert parse_log_mask(["/input/a~1b"]) == (LogMaskRule("remove", "/input/a~1b", ("input", "a/b")),)


def test_masked_records_still_replay_in_diff(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    with JsonlSink(path) as sink, HelpdeskPolicy(engine="native", log_sink=sink,
                                                 log_mask=["/result/reasons/0/refs"]) as policy:
        for i in range(2):
            policy.decide(_with("request", id=f"INC-{i}"))
    result = CliRunner().invoke(diff_command, ["--base", "recorded", "--head", str(stock_policy_dir()),
                                               "--cases", str(path), "--format", "json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["counts"]["unchanged"] == 2
