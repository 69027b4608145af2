"""The ``helpdesk-policy`` command line: every command, every exit code, the exact JSON shape."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from helpdesk_policy import HelpdeskPolicy, __version__
from helpdesk_policy.cli import EXIT_DENY, EXIT_ENGINE, EXIT_INVALID, EXIT_OK, main
from helpdesk_policy.models import Action, Channel, RiskSignal, TargetType

ROOT = Path(__file__).resolve().parents[1]
REQUESTS = ROOT / "examples" / "requests"
ADMIN_MFA = REQUESTS / "02-phone-mfa-reset-admin.json"  # callback
PORTAL_RESET = REQUESTS / "01-portal-password-reset.json"  # self_service
AGENT_SELF = REQUESTS / "05-agent-self-elevation.json"  # deny
API_KEY = REQUESTS / "07-api-key-reissue-by-owner.json"  # step_up + revoke + move_to_secrets_manager
MANAGER_ROLE = REQUESTS / "04-manager-role-change.json"  # manager_approval, requester is the manager
CHATBOT = REQUESTS / "06-chatbot-password-reset.json"  # ai_agent requester
BREAK_GLASS = REQUESTS / "15-break-glass-elevation.json"

#: the decision contract, in its order.
DECISION_KEYS = [
    "level", "allowed", "requirements", "reasons", "obligations", "playbook", "constraints",
    "engine", "degraded", "policy_revision", "decision_id", "input_digest",
    # Additive (issue 12): what the decision is about, so a caller need not keep the request.
    "request_id", "action", "target_id",
]
#: Keys a decision may leave out: a custom policy states no constraints, and a
#: decision built by hand may not name its request.
OPTIONAL_DECISION_KEYS = {"constraints", "request_id", "action", "target_id"}


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def bad_request() -> dict[str, Any]:
    doc = load(PORTAL_RESET)
    doc["request"]["action"] = "reset_everything"
    doc["request"]["channel"] = "fax"
    doc["target"]["privilege_tier"] = 12
    del doc["actor"]["authenticated"]
    return doc


BAD_PATHS = ["request.action", "request.channel", "actor.authenticated", "target.privilege_tier"]


@pytest.fixture
def broken_engine(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Make an engine's module unimportable, as when its extra is not installed."""
    from helpdesk_policy import engines, facade

    # A missing extra is warned about once per process: each test is a fresh process here.
    monkeypatch.setattr(facade, "_MISSING_WARNED", set())

    def _break(name: str) -> None:
        _, cls, extra = engines.ENGINES[name]
        monkeypatch.setitem(engines.ENGINES, name, ("helpdesk_policy_no_such_module", cls, extra))

    return _break


# ---------------------------------------------------------------------------- decide


def test_decide_json_is_exactly_the_spec_shape() -> None:
    result = run("decide", str(ADMIN_MFA))
    assert result.exit_code == EXIT_OK, result.stderr
    doc = json.loads(result.stdout)
    assert list(doc) == DECISION_KEYS
    assert doc["level"] == "callback" and doc["allowed"] is True
    assert doc["requirements"] == ["identity_step_up", "manager_approval", "out_of_band_callback"]
    for reason in doc["reasons"]:
        assert list(reason) == ["code", "level", "message", "refs"]
    for ob in doc["obligations"]:
        assert ob["code"] and set(ob) <= {"code", "within_hours", "fields", "to"}
    # A lost factor is revoked at once (revoke_compromised_within_hours).
    assert {"code": "revoke_previous_credential", "within_hours": 0} in doc["obligations"]
    assert set(doc["constraints"]) == {"approver", "callback"}
    assert doc["policy_revision"].startswith("sha256:") and doc["input_digest"].startswith("sha256:")
    assert doc["engine"] == "native" and doc["degraded"] is False
    # What the decision is about, from examples/requests/02-phone-mfa-reset-admin.json.
    assert (doc["request_id"], doc["action"], doc["target_id"]) == ("INC0041388", "mfa_reset", "u-20417")


def test_decide_json_equals_decision_to_dict() -> None:
    expected = HelpdeskPolicy(engine="native").decide(load(API_KEY)).to_dict()
    doc = json.loads(run("decide", "--engine", "native", str(API_KEY)).stdout)
    doc.pop("decision_id"), expected.pop("decision_id")  # a fresh UUID per decision
    assert doc == expected


def test_decide_several_files_gives_an_array_in_input_order() -> None:
    result = run("decide", str(PORTAL_RESET), str(ADMIN_MFA), str(AGENT_SELF))
    assert result.exit_code == EXIT_OK, result.stderr
    docs = json.loads(result.stdout)
    assert [d["level"] for d in docs] == ["self_service", "callback", "deny"]
    assert all(list(d) == DECISION_KEYS for d in docs)


def test_decide_array_file_gives_an_array(tmp_path: Path) -> None:
    batch = tmp_path / "batch.json"
    batch.write_text(json.dumps([load(AGENT_SELF), load(PORTAL_RESET)]))
    docs = json.loads(run("decide", str(batch)).stdout)
    assert [d["level"] for d in docs] == ["deny", "self_service"]
    # An array of one is still an array: the output's shape follows the input's.
    batch.write_text(json.dumps([load(PORTAL_RESET)]))
    assert isinstance(json.loads(run("decide", str(batch)).stdout), list)


def test_decide_empty_array_is_invalid_input(tmp_path: Path) -> None:
    """Issue 8 item 9: deciding nothing and exiting 0 let a script believe a batch was decided."""
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    for args, name in (((str(empty),), str(empty)), (("-",), "<stdin>")):
        result = run("decide", *args, input="[]")
        assert result.exit_code == EXIT_INVALID and result.stdout == ""
        assert result.stderr.startswith("error: ") and f"{name} holds an empty array" in result.stderr
    explain = run("explain", str(empty))
    assert explain.exit_code == EXIT_INVALID and "empty array" in explain.stderr


def test_decide_reads_stdin() -> None:
    result = run("decide", "--engine", "native", "-", input=ADMIN_MFA.read_text())
    assert result.exit_code == EXIT_OK, result.stderr
    assert json.loads(result.stdout)["level"] == "callback"
    arr = run("decide", "-", input=json.dumps([load(PORTAL_RESET), load(ADMIN_MFA)]))
    assert [d["level"] for d in json.loads(arr.stdout)] == ["self_service", "callback"]


def test_decide_needs_a_file_argument() -> None:
    result = run("decide")
    assert result.exit_code == EXIT_INVALID
    assert "Missing argument" in result.stderr


def test_decide_text_names_level_reasons_obligations_and_provenance() -> None:
    for path in (ADMIN_MFA, AGENT_SELF, API_KEY):
        decision = HelpdeskPolicy(engine="native").decide(load(path))
        result = run("decide", "--format", "text", str(path))
        assert result.exit_code == EXIT_OK, result.stderr
        text = result.stdout
        assert f"Decision: {decision.level.value.upper()} ({'allowed' if decision.allowed else 'denied'})" in text
        assert decision.playbook in text
        for r in decision.reasons:
            assert f"[{r.level.value}] {r.code}: {r.message}" in text
            assert all(ref in text for ref in r.refs)
        for o in decision.obligations:
            assert o.code in text
        assert "Engine: native (degraded: no)" in text
        assert decision.policy_revision in text and "Decision id: " in text
    assert "revoke_previous_credential (within_hours=24)" in run("decide", "--format", "text", str(API_KEY)).stdout


def test_decide_text_separates_several_decisions() -> None:
    text = run("decide", "--format", "text", str(PORTAL_RESET), str(AGENT_SELF)).stdout
    blocks = text.split("\n\n== ")
    assert len(blocks) == 2
    assert blocks[0].startswith(f"== {PORTAL_RESET} (INC0041201)")
    assert "Decision: DENY (denied)" in blocks[1]


def test_deny_is_exit_0_unless_fail_on_deny() -> None:
    assert run("decide", str(AGENT_SELF)).exit_code == EXIT_OK
    result = run("decide", "--fail-on-deny", str(AGENT_SELF))
    assert result.exit_code == EXIT_DENY
    assert json.loads(result.stdout)["level"] == "deny"  # the decision is still printed
    assert run("decide", "--fail-on-deny", str(PORTAL_RESET)).exit_code == EXIT_OK
    # One deny among several is enough.
    assert run("decide", "--fail-on-deny", str(PORTAL_RESET), str(AGENT_SELF)).exit_code == EXIT_DENY


def test_native_and_rego_engines_agree_on_every_example() -> None:
    files = sorted(str(p) for p in REQUESTS.glob("*.json"))
    by_engine = {}
    for engine in ("rego", "native"):
        result = run("decide", "--engine", engine, *files)
        assert result.exit_code == EXIT_OK, result.stderr
        by_engine[engine] = json.loads(result.stdout)
    for rego, native in zip(by_engine["rego"], by_engine["native"], strict=True):
        assert rego["engine"] == "rego" and native["engine"] == "native"
        for key in ("level", "allowed", "requirements", "reasons", "obligations", "playbook", "input_digest"):
            assert rego[key] == native[key], key


# ----------------------------------------------------------------------- bad input


def test_invalid_request_lists_every_bad_path_and_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad_request()))
    result = run("decide", str(path))
    assert result.exit_code == EXIT_INVALID
    assert result.stdout == ""  # no partial or guessed decision
    assert "invalid request (4 error(s))" in result.stderr
    for p in BAD_PATHS:
        assert f"  - {p}: " in result.stderr


def test_invalid_requests_across_sources_are_labelled(tmp_path: Path) -> None:
    path = tmp_path / "batch.json"
    path.write_text(json.dumps([load(PORTAL_RESET), bad_request()]))
    result = run("decide", str(PORTAL_RESET), str(path))
    assert result.exit_code == EXIT_INVALID and result.stdout == ""
    for p in BAD_PATHS:
        assert f"{path}[1]: {p}: " in result.stderr
    assert f"{path}[0]" not in result.stderr


def test_invalid_request_is_never_echoed(tmp_path: Path) -> None:
    # A credential pasted into a bad field must not reach the terminal (guarantee 5).
    doc = load(PORTAL_RESET)
    doc["request"]["channel"] = "hunter2-SECRET-value"
    result = run("decide", "-", input=json.dumps(doc))
    assert result.exit_code == EXIT_INVALID
    assert "hunter2" not in result.stderr and "request.channel" in result.stderr


def test_not_an_object_is_invalid() -> None:
    result = run("decide", "-", input="42")
    assert result.exit_code == EXIT_INVALID
    assert "invalid request" in result.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"request": ', "not valid JSON"),
        ("", "is empty"),
        (b"\xff\xfe\x00", "not UTF-8"),
    ],
)
def test_unparseable_file_exits_2(tmp_path: Path, content: str | bytes, message: str) -> None:
    path = tmp_path / "req.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    result = run("decide", str(path))
    assert result.exit_code == EXIT_INVALID
    assert result.stderr.startswith("error: ") and message in result.stderr and str(path) in result.stderr


def test_bad_json_reports_the_line(tmp_path: Path) -> None:
    path = tmp_path / "req.json"
    path.write_text('{\n  "request": {,\n}')
    assert f"{path}: line 2: not valid JSON" in run("decide", str(path)).stderr


def _duplicated_signals() -> str:
    # A reviewer reads a leaked credential; "the last one wins" read no signal at all.
    doc = load(ADMIN_MFA)
    doc["context"]["risk_signals"] = []
    text = json.dumps(doc, indent=1)
    return text.replace('"risk_signals": []', '"risk_signals": ["leaked_credential"], "risk_signals": []', 1)


@pytest.mark.parametrize("source", ["file", "stdin", "array"])
def test_a_duplicated_key_in_request_json_is_refused(tmp_path: Path, source: str) -> None:
    """Issue 8 item 9: duplicate keys are an error naming the source and the key, never resolved silently."""
    text = _duplicated_signals()
    assert json.loads(text)["context"]["risk_signals"] == []  # what "the last one wins" read
    path = tmp_path / "dup.json"
    path.write_text(f"[{text}]" if source == "array" else text)
    result = run("decide", "--engine", "native", "-" if source == "stdin" else str(path), input=text)
    assert result.exit_code == EXIT_INVALID and result.stdout == ""
    name = "<stdin>" if source == "stdin" else str(path)
    assert f"{name}: duplicate key 'risk_signals'" in result.stderr
    assert run("explain", "-", input=text).exit_code == EXIT_INVALID


def test_deeply_nested_request_json_is_a_clean_usage_error(tmp_path: Path) -> None:
    """Issue 8 item 9: no RecursionError traceback, an exit-2 message naming the file."""
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    result = CliRunner().invoke(main, ["decide", str(path)])  # exceptions caught: a traceback would show here
    assert result.exit_code == EXIT_INVALID, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output and "nested deeper" in result.stderr and str(path) in result.stderr
    nested = '{"request": ' * 70 + "1" + "}" * 70
    stdin = CliRunner().invoke(main, ["explain", "-"], input=nested)
    assert stdin.exit_code == EXIT_INVALID and "nested deeper" in stdin.stderr


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_a_duplicated_key_in_a_config_file_is_refused(tmp_path: Path, suffix: str) -> None:
    cfg = tmp_path / f"org{suffix}"
    cfg.write_text('{"vip_level": "callback", "vip_level": "self_service"}' if suffix == ".json"
                   else "vip_level: callback\nvip_level: self_service\n")
    result = run("decide", "--config", str(cfg), str(PORTAL_RESET))
    assert result.exit_code == EXIT_INVALID and "duplicate key 'vip_level'" in result.stderr and str(cfg) in result.stderr


def test_missing_file_and_directory_exit_2(tmp_path: Path) -> None:
    missing = run("decide", str(tmp_path / "nope.json"))
    assert missing.exit_code == EXIT_INVALID and "cannot read" in missing.stderr
    directory = run("decide", str(tmp_path))
    assert directory.exit_code == EXIT_INVALID and "cannot read" in directory.stderr


def test_stdin_only_once() -> None:
    result = run("decide", "-", "-", input="{}")
    assert result.exit_code == EXIT_INVALID and "only once" in result.stderr


# ------------------------------------------------------------------------ engines


def test_unknown_engine_is_a_usage_error() -> None:
    result = run("decide", "--engine", "magic", str(PORTAL_RESET))
    assert result.exit_code == EXIT_INVALID
    assert "Invalid value for '--engine'" in result.stderr and "auto" in result.stderr


@pytest.mark.parametrize("url", ["ftp://x", "http://", "not a url", "http://127.0.0.1:99999", "http://h:1/opa"])
def test_a_bad_opa_url_is_a_usage_error_naming_the_flag(url: str) -> None:
    pytest.importorskip("opa_client", reason="the opa engine needs the 'opa' extra")
    result = run("decide", "--engine", "opa", "--opa-url", url, str(PORTAL_RESET))
    assert result.exit_code == EXIT_INVALID
    assert result.stderr.startswith(f"error: invalid --opa-url: opa: url {url!r} "), result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_opa_url_credentials_are_never_printed() -> None:
    """A password in --opa-url is sent (basic authentication), never printed:
    not in the fallback's warning, nor in the error for a bad URL."""
    pytest.importorskip("opa_client", reason="the opa engine needs the 'opa' extra")
    pytest.importorskip("opa_bindings", reason="the OPA test server needs opa-golib-python-bindings (make dev)")
    from opa_server import refusing_url

    with refusing_url() as down:
        url = down.replace("http://", "http://alice:hunter2-pw@")
        result = run("-vv", "decide", "--engine", "opa", "--opa-url", url, "--fallback", "native", str(PORTAL_RESET))
    assert result.exit_code == EXIT_OK, result.stderr
    assert json.loads(result.stdout)["degraded"] is True
    assert "cannot reach http://127.0.0.1:" in result.stderr  # the fallback is explained...
    assert "hunter2" not in result.stdout + result.stderr  # ...without the password
    result = run("decide", "--engine", "opa", "--opa-url", "http://alice:hunter2-pw@opa:99999", str(PORTAL_RESET))
    assert result.exit_code == EXIT_INVALID
    assert "'http://***@opa:99999'" in result.stderr and "hunter2" not in result.stdout + result.stderr


@pytest.mark.parametrize("engine", ["rego", "opa"])
def test_engine_that_cannot_load_exits_3_naming_the_extra(engine: str, broken_engine: Callable[[str], None]) -> None:
    broken_engine(engine)
    result = run("decide", "--engine", engine, str(PORTAL_RESET))
    assert result.exit_code == EXIT_ENGINE
    assert f"helpdesk-policy[{engine}]" in result.stderr
    assert result.stdout == ""


def test_auto_without_the_rego_extra_decides_with_native_not_degraded(broken_engine: Callable[[str], None]) -> None:
    broken_engine("rego")
    result = run("decide", str(ADMIN_MFA))
    assert result.exit_code == EXIT_OK
    doc = json.loads(result.stdout)
    # A missing optional install is not a fault: native decided, not degraded.
    assert doc["engine"] == "native" and doc["degraded"] is False and doc["level"] == "callback"
    assert "WARNING helpdesk_policy: engine 'rego' unavailable" in result.stderr  # always shown
    assert "pip install 'helpdesk-policy[rego]'" in result.stderr


def test_verbose_logging_is_scoped_to_the_command(broken_engine: Callable[[str], None]) -> None:
    logger, root = logging.getLogger("helpdesk_policy"), logging.getLogger()
    before = (logger.handlers[:], logger.level, logger.propagate)
    root_before = (root.handlers[:], root.level)
    broken_engine("rego")
    result = run("-vv", "decide", "--format", "text", str(PORTAL_RESET))
    assert result.exit_code == EXIT_OK
    assert "WARNING helpdesk_policy: engine 'rego' unavailable" in result.stderr
    assert "Engine: native (degraded: no)" in result.stdout
    # The CLI configured logging for itself only, and put it back afterwards.
    assert (logger.handlers, logger.level, logger.propagate) == before
    assert (root.handlers, root.level) == root_before


def test_no_engine_at_all_exits_3(broken_engine: Callable[[str], None]) -> None:
    broken_engine("rego")
    broken_engine("native")
    broken_engine("compiled")
    result = run("decide", str(PORTAL_RESET))
    assert result.exit_code == EXIT_ENGINE
    assert "no engine could be loaded" in result.stderr


def test_config_option_changes_the_decision(tmp_path: Path) -> None:
    vip = REQUESTS / "18-vip-mfa-add-factor.json"
    assert json.loads(run("decide", str(vip)).stdout)["level"] == "manager_approval"
    cfg = tmp_path / "strict.yaml"
    cfg.write_text("vip_level: callback\n")
    for engine in ("rego", "native"):
        doc = json.loads(run("decide", "--engine", engine, "--config", str(cfg), str(vip)).stdout)
        assert doc["level"] == "callback"


def test_invalid_config_exits_2(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("callback_tier: 0\nno_such_key: 1\n")
    result = run("decide", "--config", str(cfg), str(PORTAL_RESET))
    assert result.exit_code == EXIT_INVALID
    assert "callback_tier" in result.stderr and "no_such_key" in result.stderr


def test_config_errors_name_the_file_and_key_with_a_suggestion(tmp_path: Path) -> None:
    cfg = tmp_path / "org.yaml"
    cfg.write_text("privileged_teir: 2\nprivileged_tier: 3\n")  # callback_tier (stock 2) is now below it
    result = run("decide", "--config", str(cfg), str(PORTAL_RESET))
    assert result.exit_code == EXIT_INVALID
    assert f"{cfg}: privileged_teir: Extra inputs are not permitted — did you mean 'privileged_tier'?" in result.stderr
    assert f"{cfg}: callback_tier: must be >= privileged_tier" in result.stderr


def test_missing_config_or_policy_dir_exits_2(tmp_path: Path) -> None:
    assert run("decide", "--config", str(tmp_path / "none.yaml"), str(PORTAL_RESET)).exit_code == EXIT_INVALID
    assert run("decide", "--policy-dir", str(tmp_path / "none"), str(PORTAL_RESET)).exit_code == EXIT_INVALID
    # An existing directory without policies is a load error, also exit 2.
    result = run("decide", "--engine", "rego", "--policy-dir", str(tmp_path), str(PORTAL_RESET))
    assert result.exit_code == EXIT_INVALID and "no .rego policy files" in result.stderr


# ------------------------------------------------------------------------ explain


def steps_of(text: str) -> list[str]:
    """The numbered steps of an explanation, continuation lines joined."""
    steps: list[str] = []
    for line in text.splitlines():
        m = re.match(r"^\s+(\d+)\. (.*)$", line)
        if m:
            assert int(m.group(1)) == len(steps) + 1, "steps are numbered 1, 2, 3..."
            steps.append(m.group(2))
        elif steps and line.startswith("      "):
            steps[-1] += " " + line.strip()
    return steps


def index_of(steps: list[str], needle: str) -> int:
    found = [i for i, s in enumerate(steps) if needle in s]
    assert found, f"no step mentions {needle!r}: {steps}"
    return found[0]


def test_explain_callback_steps_in_order() -> None:
    result = run("explain", str(ADMIN_MFA))
    assert result.exit_code == EXIT_OK, result.stderr
    text = result.stdout
    assert text.startswith("INC0041388: mfa_reset on human u-20417 via phone")
    assert "Decision: CALLBACK (allowed)" in text
    steps = steps_of(text)
    verify = index_of(steps, "Verify the identity of the requester u-20417")
    approve = index_of(steps, "manager of record")
    callback = index_of(steps, "Call back u-20417 on a contact of record")
    do_not = index_of(steps, "Do not:")
    action = index_of(steps, "Reset the MFA registration")
    revoke = index_of(steps, "Revoke the previous credential immediately")  # the lost factor
    evidence = index_of(steps, "Record evidence: identity_proof, verifier, approver, callback_contact, "
                               "callback_contact_source, callback_answered_by, outcome")
    assert verify < approve < callback < do_not < action < revoke < evidence
    # No factor still enrolled is known: a push cannot verify, identity proofing does.
    assert "identity proofing" in steps[verify] and "cannot verify this request" in steps[verify]
    assert "number-match push" not in steps[verify]
    assert "must not be u-20417 (the requester)" in steps[approve] and "AI agent never counts" in steps[approve]
    assert "looked up in the directory" in steps[approve]  # no manager of record in the request
    assert "never a phone number or address given in the request" in steps[callback]
    assert "AI agent is never the callback target" in steps[callback]
    # The contact of record's age is unknown: not usable, so the fallback; never the device being recovered.
    assert "not usable for this callback (its age is unknown" in steps[callback]
    assert "call the holder's manager of record" in steps[callback] and "verified in person" in steps[callback]
    assert "Never call the device or number being recovered" in steps[callback]
    assert "caller ID" in steps[do_not] and "urgency" in steps[do_not]
    # Every reason is explained, by code.
    for code in ("privileged_remote_recovery", "risk_caller_id_mismatch", "privileged_target"):
        assert code in text


def test_explain_deny_says_not_to_perform_and_names_the_process() -> None:
    result = run("explain", str(AGENT_SELF))
    assert result.exit_code == EXIT_OK
    steps = steps_of(result.stdout)
    assert steps[0].startswith("Do not perform this request")
    assert any("access-request process" in s for s in steps)
    assert "Record evidence: requester, channel, caller_contact, denial_reason, outcome." in steps
    assert not any(s.startswith("Elevate") for s in steps)  # the action is never a step


def test_explain_separation_of_duties_when_the_requester_is_the_manager() -> None:
    # The requester is the manager of record: no approver of record remains once excluded.
    steps = steps_of(run("explain", str(MANAGER_ROLE)).stdout)
    approval = steps[index_of(steps, "No approver of record remains for u-30577")]
    assert "must not be u-30122 (the requester)" in approval
    assert "another approver of record one level up" in approval
    verify = steps[index_of(steps, "Verify the identity")]
    assert "u-30122 (u-30577's manager of record)" in verify


def test_explain_ai_agent_requester_goes_to_the_human() -> None:
    steps = steps_of(run("explain", str(CHATBOT)).stdout)
    assert "AI agent agent-helpdesk-assistant" in steps[0] and "cannot vouch" in steps[0]
    verify = steps[index_of(steps, "Verify the identity")]
    assert "u-51876" in verify and "not through the agent" in verify


def test_explain_obligations_are_steps_with_parameters() -> None:
    steps = steps_of(run("explain", str(API_KEY)).stdout)
    assert "Revoke the previous credential within 24 hours." in steps
    assert any(s.startswith("Store the new credential in the secrets manager") for s in steps)
    glass = steps_of(run("explain", str(BREAK_GLASS)).stdout)
    assert "Make the access time-bound: it must expire within 8 hours." in glass
    assert "Open a post-incident review of this emergency request within 72 hours." in glass


def test_explain_reads_stdin_and_is_deterministic_apart_from_ids() -> None:
    a = run("explain", "--engine", "native", "-", input=ADMIN_MFA.read_text()).stdout
    b = run("explain", "--engine", "native", str(ADMIN_MFA)).stdout
    scrub = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
    assert scrub.sub("ID", a) == scrub.sub("ID", b)
    assert "\x1b[" not in a  # plain text, no colour codes


def test_explain_help_says_it_takes_one_file() -> None:
    result = run("explain", "--help")
    assert result.exit_code == EXIT_OK
    assert "request(s)" not in result.stdout
    assert "exactly one FILE" in result.stdout
    two = run("explain", str(PORTAL_RESET), str(ADMIN_MFA))
    assert two.exit_code == EXIT_INVALID and "unexpected extra argument" in two.stderr


def test_explain_invalid_input_exits_2() -> None:
    result = run("explain", "-", input=json.dumps(bad_request()))
    assert result.exit_code == EXIT_INVALID
    assert all(p in result.stderr for p in BAD_PATHS)


# ------------------------------------------------------------------------- schema


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref":
                yield v
            else:
                yield from _refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _refs(v)


def _check_schema(doc: dict[str, Any]) -> None:
    assert doc["$schema"].startswith("https://json-schema.org/")
    assert doc["type"] == "object" and doc["properties"] and doc["required"]
    for ref in _refs(doc):
        assert ref.startswith("#/$defs/") and ref.removeprefix("#/$defs/") in doc["$defs"], ref
    try:
        import jsonschema  # type: ignore[import-untyped]  # optional: validates against the 2020-12 metaschema when installed
    except ImportError:
        return
    jsonschema.Draft202012Validator.check_schema(doc)


def test_schema_request_has_every_enum() -> None:
    result = run("schema", "request")
    assert result.exit_code == EXIT_OK
    doc = json.loads(result.stdout)
    _check_schema(doc)
    assert set(doc["properties"]) == {"request", "actor", "target", "context"}
    defs = doc["$defs"]
    assert defs["Action"]["enum"] == [a.value for a in Action]
    assert defs["Channel"]["enum"] == [c.value for c in Channel]
    assert defs["RiskSignal"]["enum"] == [s.value for s in RiskSignal]
    assert defs["TargetType"]["enum"] == [t.value for t in TargetType]
    assert defs["Target"]["additionalProperties"] is False  # unknown fields are errors
    assert result.stdout.startswith("{\n  ")  # pretty-printed


def test_schema_request_documents_every_field() -> None:
    # Each input fact says what it is, where to take it from, and (when optional)
    # how a missing value is read: integrators read the schema, not the Rego.
    defs = json.loads(run("schema", "request").stdout)["$defs"]
    for section in ("RequestInfo", "Actor", "Target", "Context"):
        for name, prop in defs[section]["properties"].items():
            assert prop.get("description", "").strip(), f"{section}.{name} has no description"
            if "null" in json.dumps(prop.get("anyOf", [])) and name not in {"justification", "requested_at"}:
                assert "Missing" in prop["description"], f"{section}.{name}: say how a missing value is read"


def test_schema_decision_matches_the_spec_shape() -> None:
    doc = json.loads(run("schema", "decision").stdout)
    _check_schema(doc)
    # exceptions is additive: present only when a policy exception touched the decision.
    assert list(doc["properties"]) == [*DECISION_KEYS, "exceptions"]
    # constraints is optional: a custom policy may not state them.
    assert doc["required"] == [k for k in DECISION_KEYS if k not in OPTIONAL_DECISION_KEYS]
    assert doc["$defs"]["Level"]["enum"] == ["self_service", "step_up", "manager_approval", "callback", "deny"]


def test_schema_config_and_unknown_kind() -> None:
    _check_schema(json.loads(run("schema", "config").stdout))
    assert run("schema", "policy").exit_code == EXIT_INVALID


# -------------------------------------------------------------------- the group


def test_version() -> None:
    result = run("--version")
    assert result.exit_code == EXIT_OK and result.stdout.strip() == f"helpdesk-policy, version {__version__}"


def test_main_is_a_plain_group_that_accepts_more_commands() -> None:
    assert isinstance(main, click.Group)
    assert {"decide", "explain", "schema"} <= set(main.commands)

    @click.command("hello")
    def hello() -> None:
        click.echo("hi")

    main.add_command(hello)
    try:
        assert run("hello").stdout == "hi\n"
    finally:
        main.commands.pop("hello")


def test_python_dash_m_help() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "helpdesk_policy", "--help"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Usage: helpdesk-policy ")
    for command in ("decide", "explain", "schema"):
        assert command in proc.stdout


# ------------------------------------------------------------- render, directly


class _BrokenEngine:
    """An engine that always fails, to get the facade's fail-closed decision."""

    name = "broken"

    def evaluate(self, request: Any) -> Any:
        raise RuntimeError("boom")

    async def aevaluate(self, request: Any) -> Any:
        raise RuntimeError("boom")

    def close(self) -> None:
        return None


def test_render_fail_closed_decision_is_a_flagged_deny_naming_the_process(custom_policy_dir: Path) -> None:
    from helpdesk_policy.render import render_explain, render_text

    policy = HelpdeskPolicy(engine=_BrokenEngine(), policy_dir=custom_policy_dir)  # type: ignore[arg-type]
    doc = load(PORTAL_RESET)  # self_service under the policy: nobody decided it, so deny
    decision = policy.decide(doc)
    assert (decision.engine, decision.degraded, decision.level.value, decision.allowed) == ("none", True, "deny", False)
    text = render_text(decision)
    assert "Engine: none (degraded: yes (no engine could decide" in text and "engine_unavailable" in text
    explained = render_explain(decision, doc)
    assert "Warning: no policy engine could decide this (degraded)" in explained
    steps = steps_of(explained)
    assert steps[0].startswith("Do not perform this request")
    process = steps[index_of(steps, "Formal process instead (engine_unavailable)")]
    assert "manual identity-verification process with the security team" in process
    assert steps[-1] == "Record evidence: requester, channel, caller_contact, denial_reason, outcome."


def test_render_fail_closed_callback_says_it_may_be_looser(custom_policy_dir: Path) -> None:
    from helpdesk_policy.render import render_explain

    policy = HelpdeskPolicy(engine=_BrokenEngine(), policy_dir=custom_policy_dir,  # type: ignore[arg-type]
                            config={"strict_level": "callback"})
    doc = load(PORTAL_RESET)
    decision = policy.decide(doc)
    assert (decision.engine, decision.degraded, decision.level.value) == ("none", True, "callback")
    assert {r.code for r in decision.reasons} == {"engine_unavailable", "strict_level_may_be_looser"}
    explained = render_explain(decision, doc)
    assert "strict_level_may_be_looser" in explained and "may have denied this request" in explained
    assert any("Call back u-48213" in s for s in steps_of(explained))


def test_render_unknown_obligation_keeps_every_parameter() -> None:
    from helpdesk_policy.models import Obligation
    from helpdesk_policy.render import describe_obligation

    ob = Obligation(code="custom_hold", within_hours=5, fields=["ticket", "approver"])
    assert describe_obligation(ob) == "Fulfil obligation custom_hold (within_hours=5; fields=ticket, approver)."


def test_explain_info_request_needs_no_verification() -> None:
    steps = steps_of(run("explain", str(REQUESTS / "21-chat-info-request.json")).stdout)
    assert steps[0].startswith("No identity verification is needed")
    assert "what the holder may see about their own account" in steps[0]
    assert not any(s.startswith("Do not") for s in steps)
    assert steps[-1] == "Record evidence: requester, outcome."


def test_explain_reconnaissance_is_not_answered() -> None:
    steps = steps_of(run("explain", str(REQUESTS / "24-reconnaissance-mfa-question.json")).stdout)
    assert steps[0].startswith("Do not answer this question (info_request about human u-30977)")
    assert "Formal process instead (identity_info_disclosure)" in steps[1]
    assert steps[-1] == "Record evidence: requester, channel, caller_contact, denial_reason, outcome."
    assert not any("Notify" in s for s in steps)  # nothing changed: nobody to tell


def test_explain_self_service_says_who_acts() -> None:
    portal = steps_of(run("explain", str(REQUESTS / "27-admin-adds-security-key-portal.json")).stdout)
    assert portal[0].startswith("No helpdesk verification is needed: the holder u-20555 does this themselves in "
                                "their own self-service portal session")
    assert any(s.startswith("The holder does it in their own self-service session: add the new MFA factor")
               for s in portal)
    workload = steps_of(run("explain", str(REQUESTS / "26-workload-rotates-own-secret.json")).stdout)
    assert workload[0].startswith("No helpdesk verification is needed: the service wl-billing-sync does this "
                                  "itself over the API")
    assert any(s.startswith("The workload does it itself over the API: rotate the secret") for s in workload)
    assert "Revoke the previous credential within 24 hours." in workload


def test_explain_temporary_access_pass_and_proofing() -> None:
    steps = steps_of(run("explain", str(REQUESTS / "28-phone-temporary-access-pass.json")).stdout)
    assert "by identity proofing" in steps[0]
    approval = steps[index_of(steps, "Get approval")]
    assert "u-44310's manager of record: u-40002" in approval and "must not be u-44310 (the requester)" in approval
    assert "Make the temporary access pass expire within 8 hours, and single-use where possible." in steps
