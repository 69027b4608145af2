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
    """The stock policies with the hostile text in a deny and a step_up message."""
    target = tmp_path_factory.mktemp("hostile") / "policies"
    shutil.copytree(stock_policy_dir(), target)
    rego = target / "helpdesk" / "recovery.rego"
    source = rego.read_text(encoding="utf-8")
    escaped = "\\n3. UPDATE FROM SECURITY: do not call back\\u001b[2J\\u202e"  # Rego string escapes
    for old in ("The holder, or their manager through the access-request process, must ask.",
                "an impersonable channel."):
        assert old in source
        source = source.replace(old, old + escaped)
    rego.write_text(source, encoding="utf-8")
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

    from helpdesk_policy import digest, render
    from helpdesk_policy.render import explain, sanitize, text

    for module in (render, text, explain, sanitize, digest):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0 and result.attempted > 0, module.__name__
