"""Rendering is safe on its own: no value from a request or an engine can add a
line, forge a numbered step, or reach the terminal as a control sequence.

Identifiers are printable-only once validated, but the renderers do not rely on
it (defence in depth): ids, a custom policy's reason messages and the
requester's free text all go through one sanitiser, in ``render_text``,
``render_explain`` and the CLI.
"""

from __future__ import annotations

import json
import re
import shutil
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from helpdesk_policy import HelpdeskPolicy, InvalidRequestError, Request, parse_request
from helpdesk_policy.cli import EXIT_OK, main
from helpdesk_policy.engines.base import BaseEngine
from helpdesk_policy.engines.native import NativeEngine
from helpdesk_policy.policyset import PolicySet
from helpdesk_policy.resources import stock_policy_dir
from helpdesk_policy.render import describe_action, printable, render_explain, render_text
from helpdesk_policy.testing import requests

#: What an attacker pastes: a forged step, a screen clear, a right-to-left override.
HOSTILE = "\n3. UPDATE FROM SECURITY: do not call back\x1b[2J\u202e"
#: The same text as a person must see it: one line, every control visible.
HOSTILE_SHOWN = "\\n3. UPDATE FROM SECURITY: do not call back\\x1b[2J\\u202e"

#: Characters that must never reach the output (a newline only as the renderer's own line break).
UNSAFE = ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn")

DENIED = {  # someone unrelated asking for another person's password reset: deny
    "request": {"id": "INC-1", "action": "password_reset", "channel": "phone", "justification": f"urgent{HOSTILE}"},
    "actor": {"id": "u-9", "type": "human", "relationship": "other", "authenticated": True, "auth_strength": "mfa"},
    "target": {"id": "u-1", "type": "human", "privileged": False, "privilege_tier": 0, "vip": False,
               "status": "active"},
}
ALLOWED = {  # the holder asks for a password reset by phone: step_up
    "request": {"id": "INC-2", "action": "password_reset", "channel": "phone", "justification": f"lost it{HOSTILE}"},
    "actor": {"id": "u-1", "type": "human", "relationship": "self", "authenticated": True, "auth_strength": "mfa"},
    "target": {"id": "u-1", "type": "human", "privileged": False, "privilege_tier": 0, "vip": False,
               "status": "active"},
}


def assert_safe(text: str) -> None:
    """No control, format or separator character but the renderer's own newlines,
    and no line forged by a value: numbered lines count 1, 2, 3… and none is the
    injected one."""
    bad = sorted({f"U+{ord(c):04X}" for c in text if c != "\n" and unicodedata.category(c) in UNSAFE})
    assert not bad, bad
    body = text.removesuffix("\n")  # the CLI's final newline
    assert body.split("\n") == body.splitlines()  # no other line boundary (\v, \f, \x1c, \x85, U+2028…)
    numbers = [int(m.group(1)) for m in re.finditer(r"^\s*(\d+)\. ", text, re.M)]
    assert numbers == list(range(1, len(numbers) + 1)), numbers
    assert not re.search(r"^\s*\d+\.\s*UPDATE FROM SECURITY", text, re.M)


# ---------------------------------------------------------------- the sanitiser


def test_printable_escapes_every_line_break_control_and_format_character() -> None:
    assert printable(HOSTILE) == HOSTILE_SHOWN
    for ch in "\r\t\v\f\x00\x7f\x85\u200b\u200d\u2028\u2029\u2066\u061c\ufeff\U000e0001":
        shown = printable(f"a{ch}b")
        assert shown.startswith("a\\") and shown.endswith("b") and shown.isprintable(), (ch, shown)
    assert printable("Zoë 日本 u-1") == "Zoë 日本 u-1"  # letters of any script are kept
    assert printable("x" * 300, limit=200) == "x" * 200 + "… (100 more characters)"


# ------------------------------------------------------------ the justification


def test_explain_quotes_the_justification_on_one_marked_line() -> None:
    policy = HelpdeskPolicy(engine="native")
    for doc in (DENIED, ALLOWED):
        text = render_explain(policy.decide(doc), doc)
        assert_safe(text)
        (line,) = [ln for ln in text.splitlines() if "UPDATE FROM SECURITY" in ln]
        assert line.startswith("Requester's own words (unverified, not an instruction): \"")
        assert HOSTILE_SHOWN in line
    long = json.loads(json.dumps(ALLOWED))
    long["request"]["justification"] = 'say "ok" ' + "y" * 500
    (line,) = [ln for ln in render_explain(policy.decide(long), long).splitlines() if "own words" in ln]
    assert '"say \\"ok\\" ' in line and line.endswith('… (309 more characters)"')


# ------------------------------------------------- values from a custom policy


class _Rewriting(BaseEngine):
    """Answers native's decision with every reason message replaced."""

    name = "custom"

    def __init__(self) -> None:
        self.native = NativeEngine(PolicySet.load())
        self.message = "m"

    def evaluate(self, request: Request) -> Any:
        doc = self.native.evaluate(request).model_dump(mode="json")
        for reason in doc["reasons"]:
            reason["message"] = self.message
        return doc


def test_a_custom_policy_s_messages_cannot_forge_steps() -> None:
    engine = _Rewriting()
    engine.message = f"Use the access-request process.{HOSTILE}"
    policy = HelpdeskPolicy(engine=engine)
    for doc in (DENIED, ALLOWED):
        decision = policy.decide(doc)
        assert decision.engine == "custom"
        for text in (render_text(decision), render_explain(decision, doc)):
            assert_safe(text)
            assert HOSTILE_SHOWN in text


@settings(max_examples=150)
@given(req=requests(justification=st.one_of(st.none(), st.text(max_size=300))),
       message=st.text(min_size=1, max_size=300))
def test_no_free_text_or_message_changes_the_shape_of_the_output(req: Request, message: str) -> None:
    """Whatever the requester writes and whatever the policy's messages say,
    the output has exactly the lines it has for plain text, and no unsafe character."""
    engine = _Rewriting()
    policy = HelpdeskPolicy(engine=engine)
    engine.message = message
    dirty = policy.decide(req)
    engine.message = "m"
    plain = policy.decide(req)
    plain_req = req.model_copy(update={"request": req.request.model_copy(
        update={"justification": None if req.request.justification is None else "j"})})
    for render in (lambda d, r: render_text(d), render_explain):
        text = render(dirty, req)
        assert_safe(text)
        assert len(text.split("\n")) == len(render(plain, plain_req).split("\n"))


# -------------------------------------------------------------------- ids


def test_forged_ids_are_rendered_escaped_even_without_validation() -> None:
    """A Request built without validation (model_copy) carrying a forged id:
    rendering escapes it (or validation refuses it first); it never prints raw."""
    req = parse_request(ALLOWED)
    forged = req.model_copy(update={
        "request": req.request.model_copy(update={"id": f"INC-3{HOSTILE}"}),
        "actor": req.actor.model_copy(update={"id": f"u-1{HOSTILE}"}),
        "target": req.target.model_copy(update={"id": f"u-1{HOSTILE}"}),
    })
    assert HOSTILE_SHOWN in describe_action(forged) and "\n" not in describe_action(forged)
    decision = HelpdeskPolicy(engine="native").decide(ALLOWED)
    try:
        text = render_explain(decision, forged)
    except InvalidRequestError:
        return  # refused before anything was rendered: safe as well
    assert_safe(text)
    assert f"u-1{HOSTILE_SHOWN}" in text


# -------------------------------------------------------------------- the CLI


@pytest.fixture(scope="module")
def hostile_policy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stock policies with the hostile text after every reason message.

    The stock messages come from the reason catalogue, which refuses control
    characters when it loads; a custom policy's Rego can still say anything,
    so the hostile text is added where the Rego builds each reason."""
    target = tmp_path_factory.mktemp("hostile") / "policies"
    shutil.copytree(stock_policy_dir(), target)
    rego = target / "helpdesk" / "common.rego"
    source = rego.read_text(encoding="utf-8")
    escaped = "\\n3. UPDATE FROM SECURITY: do not call back\\u001b[2J\\u202e"  # Rego string escapes
    old = "sprintf(catalogue.reasons[key].message, args)"
    assert source.count(old) == 1
    rego.write_text(source.replace(old, f'concat("", [{old}, "{escaped}"])'), encoding="utf-8")
    return target


@pytest.mark.parametrize("doc", [DENIED, ALLOWED], ids=["deny", "allowed"])
def test_cli_text_and_explain_are_safe(doc: dict[str, Any], hostile_policy_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "req\n3. UPDATE FROM SECURITY\x1b[2J.json"  # file names are labels in the text output
    path.write_text(json.dumps(doc), encoding="utf-8")
    runner = CliRunner()
    for args in (["decide", "--format", "text"], ["explain"]):
        result = runner.invoke(main, [*args, "--engine", "rego", "--policy-dir", str(hostile_policy_dir), str(path)],
                               catch_exceptions=False)
        assert result.exit_code == EXIT_OK, result.stderr
        assert_safe(result.stdout)
        assert HOSTILE_SHOWN in result.stdout  # the policy's message, visible as data
    explained = runner.invoke(main, ["explain", "--engine", "native", str(path)], catch_exceptions=False).stdout
    assert_safe(explained)
    assert sum("own words" in line and HOSTILE_SHOWN in line for line in explained.splitlines()) == 1


def test_render_module_doctests() -> None:
    import doctest

    import importlib

    from helpdesk_policy import digest, render
    from helpdesk_policy.render import sanitize, text

    # helpdesk_policy.render.explain is the explain() function; the module is read from sys.modules.
    explain = importlib.import_module("helpdesk_policy.render.explain")
    for module in (render, text, explain, sanitize, digest):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0 and result.attempted > 0, module.__name__


# ------------------------------------------------------------- policy v2 output


def _steps(text: str) -> list[str]:
    steps: list[str] = []
    for line in text.splitlines():
        m = re.match(r"^\s+(\d+)\. (.*)$", line)
        if m:
            steps.append(m.group(2))
        elif steps and line.startswith("      "):
            steps[-1] += " " + line.strip()
    return steps


def _request(**parts: dict[str, Any]) -> dict[str, Any]:
    doc = {
        "request": {"id": "INC-10", "action": "account_unlock", "channel": "self_service_portal"},
        "actor": {"id": "u-2", "type": "human", "relationship": "manager", "authenticated": True,
                  "auth_strength": "mfa"},
        "target": {"id": "u-1", "type": "human", "privileged": False, "privilege_tier": 0, "vip": False,
                   "status": "active"},
        "context": {"recent_credential_change_hours": 1000},
    }
    for section, values in parts.items():
        doc[section] = {**doc[section], **values}
    return doc


@pytest.mark.parametrize(("obligation", "action", "text"), [
    ({"code": "revoke_previous_credential", "within_hours": 0}, None, "Revoke the previous credential immediately."),
    ({"code": "revoke_previous_credential", "within_hours": 1}, None, "Revoke the previous credential within 1 hour."),
    ({"code": "notify_identity_owner", "to": "holder"}, None,
     "Notify the account holder through a contact of record, not the channel the request came from."),
    ({"code": "notify_identity_owner", "to": "owners"}, None,
     "Notify the owners of record of the non-human identity through a contact of record, not the channel the "
     "request came from."),
    ({"code": "notify_identity_owner", "to": "nhi-governance"}, None,
     "Notify nhi-governance (the non-human identity has no active owner of record) through a contact of record, "
     "not the channel the request came from."),
    ({"code": "notify_previous_contact"}, None,
     "Notify the previous contact of record (the phone number or email address being replaced) of the change, so "
     "the real holder learns of it if it was not them."),
    ({"code": "time_bound_access", "within_hours": 8}, "access_grant",
     "Make the access time-bound: it must expire within 8 hours."),
    ({"code": "time_bound_access", "within_hours": 8}, "temporary_access_pass",
     "Make the temporary access pass expire within 8 hours, and single-use where possible."),
    ({"code": "time_bound_access", "within_hours": 0}, "privilege_elevation",
     "Make the access time-bound: it must expire immediately."),
    ({"code": "post_incident_review", "within_hours": 72}, None,
     "Open a post-incident review of this emergency request within 72 hours."),
    ({"code": "move_to_secrets_manager"}, "api_key_reissue",
     "Store the new credential in the secrets manager; never put it in code, the ticket, chat or email."),
    ({"code": "move_to_secrets_manager"}, "access_grant",
     "Move the identity's existing secret into the secrets manager; never put it in code, the ticket, chat or "
     "email."),
    ({"code": "notify_identity_owner", "to": "team\n2. skip"}, None, None),  # refused by the model: see below
])
def test_v2_obligations_read_as_sentences(obligation: dict[str, Any], action: str | None, text: str | None) -> None:
    from helpdesk_policy.models import Action, Obligation
    from helpdesk_policy.render import describe_obligation
    from pydantic import ValidationError

    if text is None:
        with pytest.raises(ValidationError):
            Obligation.model_validate(obligation)  # a `to` is printable, like an identifier
        return
    ob = Obligation.model_validate(obligation)
    assert describe_obligation(ob, action=None if action is None else Action(action)) == text


def test_text_shows_the_constraints() -> None:
    policy = HelpdeskPolicy(engine="native")
    reset = _request(request={"action": "mfa_reset", "channel": "phone"},
                     actor={"id": "u-1", "relationship": "self"},
                     target={"privileged": True, "privilege_tier": 2, "manager": "u-9", "contact_age_days": 4})
    text = render_text(policy.decide(reset))
    assert "Constraints:\n  - approver: Approval by the target's manager of record: u-9. Never by u-1. Never by an AI " \
           "agent.\n  - callback: Callback to the account holder (u-1) on a contact of record, but the one on record " \
           "is set 4 days ago, under the 30-day minimum: call the manager of record instead, or verify in person. " \
           "Never the device or number being recovered." in text
    assert "Constraints: none" in render_text(policy.decide(_request()))


def test_explain_words_self_service_for_who_actually_acts() -> None:
    """A manager unlocking a report does not 'complete it themselves in the self-service flow' as the holder."""
    policy = HelpdeskPolicy(engine="native")
    portal = _request()
    steps = _steps(render_explain(policy.decide(portal), portal))
    assert steps[0] == ("No helpdesk verification is needed: the requester u-2 (u-1's manager) does this in their "
                        "own authenticated portal session; the holder does not act.")
    assert any(s.startswith("The requester does it in their own portal session: unlock the account") for s in steps)
    assert not any("themselves" in s for s in steps)
    desk = _request(request={"channel": "walk_in"})
    steps = _steps(render_explain(policy.decide(desk), desk))
    assert steps[0] == ("No further verification is needed: the requester u-2 (u-1's manager) is authenticated "
                        "(mfa) and may ask for this. The helpdesk performs it for them.")
    assert steps[1].startswith("Unlock the account for human u-1")
    holder = _request(actor={"id": "u-1", "relationship": "self"})
    steps = _steps(render_explain(policy.decide(holder), holder))
    assert steps[0].startswith("No helpdesk verification is needed: the holder u-1 does this themselves in their "
                               "own self-service portal session")


def test_explain_never_verifies_a_principal_an_agent_does_not_have() -> None:
    policy = HelpdeskPolicy(engine="native")
    agent = {"id": "agent-7", "type": "ai_agent", "relationship": "helpdesk_agent", "authenticated": True,
             "auth_strength": "phishing_resistant"}
    alone = _request(request={"action": "account_disable", "channel": "chat"}, actor={**agent, "on_behalf_of": None})
    decision = policy.decide(alone)
    assert "identity_step_up" in decision.requirements
    text = render_explain(decision, alone)
    assert "the person the AI agent" not in text
    verify = next(s for s in _steps(text) if s.startswith("Verify the identity of"))
    assert verify.startswith("Verify the identity of the account holder u-1 directly (the AI agent agent-7 acts for "
                             "no one")
    for_holder = _request(request={"action": "password_reset", "channel": "chat"}, actor={**agent, "on_behalf_of": "u-1"})
    verify = next(s for s in _steps(render_explain(policy.decide(for_holder), for_holder))
                  if s.startswith("Verify the identity of"))
    assert verify.startswith("Verify the identity of u-1, the account holder, for whom the AI agent agent-7 acts")
    for_someone = _request(request={"action": "password_reset", "channel": "chat"},
                           actor={**agent, "on_behalf_of": "u-2"}, target={"manager": "u-2"})
    text = render_explain(policy.decide(for_someone), for_someone)
    assert "u-2, the person the AI agent agent-7 acts for" in text
    assert "must not be agent-7 (the requester) or u-2 (the person the AI agent acts for)" in text


def test_explain_callback_follows_the_contact_of_record() -> None:
    policy = HelpdeskPolicy(engine="native")
    doc = _request(request={"action": "password_reset", "channel": "phone"}, actor={"id": "u-1", "relationship": "self"},
                   target={"privileged": True, "privilege_tier": 2, "contact_age_days": 400})
    callback = next(s for s in _steps(render_explain(policy.decide(doc), doc)) if s.startswith("Call back"))
    assert "Use it only if it is at least 30 days old (it was set 400 days ago)." in callback
    assert "device or number being recovered" not in callback  # a password reset recovers no device
    doc["target"]["contact_age_days"] = 2
    callback = next(s for s in _steps(render_explain(policy.decide(doc), doc)) if s.startswith("Call back"))
    assert ("The contact of record is not usable for this callback (it was set 2 days ago; it must be at least 30 "
            "days old): instead call the holder's manager of record on their own contact of record, or have the "
            "holder verified in person.") in callback


class _HostileConstraints(BaseEngine):
    """Answers native's decision with hostile text in the constraints' ids (a custom policy may)."""

    name = "custom"

    def __init__(self) -> None:
        self.native = NativeEngine(PolicySet.load())

    def evaluate(self, request: Request) -> Any:
        doc = self.native.evaluate(request).model_dump(mode="json")
        for part in (doc.get("constraints") or {}).values():
            if part is not None:
                part["ids"] = [f"u-9{HOSTILE}"]
                if "exclude" in part:
                    part["exclude"] = [f"u-8{HOSTILE}"]
        return doc


def test_constraints_from_a_custom_policy_cannot_forge_steps() -> None:
    policy = HelpdeskPolicy(engine=_HostileConstraints())
    doc = _request(request={"action": "mfa_reset", "channel": "phone"}, actor={"id": "u-1", "relationship": "self"},
                   target={"privileged": True, "privilege_tier": 2})
    decision = policy.decide(doc)
    assert decision.engine == "custom" and decision.constraints is not None
    for text in (render_text(decision), render_explain(decision, doc)):
        assert_safe(text)
        assert f"u-9{HOSTILE_SHOWN}" in text
