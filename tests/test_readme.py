"""The README's examples are executed, so the documentation cannot drift from the code.

* the Python block under "Deciding a request" runs, and each ``expr  # value``
  line's comment is the repr of ``expr``; the invalid-input example raises
  exactly the error shown;
* the expectation-suite YAML under "CI for policy changes" is a valid suite
  whose cases pass against the stock policy;
* the Python block under "Closing a ticket: evidence and verify" runs, and
  each unindented ``expr  # value`` line's comment is the repr of ``expr``;
* the JSON under "A decision" is what ``helpdesk-policy decide`` prints for
  the example request (apart from the per-decision ``decision_id``);
* every ``helpdesk-policy <command> … --option`` in a console block names a
  real command and real options.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from helpdesk_policy import HelpdeskPolicy
from helpdesk_policy.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start: end if end != -1 else None]


def _blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^ *```{lang}\n(.*?)^ *```", text, flags=re.S | re.M)


def test_the_python_example_runs_and_its_comments_are_true() -> None:
    code = _blocks(_section("Deciding a request"), "python")[0]
    checks = [(m.group(1).strip(), m.group(2).strip()) for m in re.finditer(r"^(\w[\w.()]*) +# (<.*>|\[.*\])\s*$", code, re.M)]
    assert checks, "the example shows no values"
    namespace: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    for expr, shown in checks:
        assert repr(eval(expr, namespace)) == shown, expr  # noqa: S307
    namespace["policy"].close()


def test_the_invalid_input_example_shows_the_real_error() -> None:
    from helpdesk_policy import InvalidRequestError

    section = _section("Deciding a request")
    code = _blocks(section, "python")[1]
    (shown,) = _blocks(section, "text")
    policy = HelpdeskPolicy(engine="native")
    with pytest.raises(InvalidRequestError) as info:
        exec(compile(code, "README.md", "exec"), {"policy": policy})  # noqa: S102 - our own README
    assert f"{type(info.value).__module__}.{type(info.value).__name__}: {info.value}" == shown.rstrip("\n")


def test_the_evidence_example_runs_and_its_comments_are_true() -> None:
    section = _section("A decision").split("\n### Closing a ticket: evidence and verify\n", 1)[1]
    (code,) = _blocks(section, "python")
    checks = [(m.group(1), m.group(2)) for m in re.finditer(r"^(?!\s)(?!\w+ = )([^#\n]+?) {2,}# (.+)$", code, re.M)]
    assert len(checks) >= 4, "the example shows its values"
    namespace: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    for expr, shown in checks:
        assert repr(eval(expr, namespace)) == shown, expr  # noqa: S307
    namespace["policy"].close()


def test_the_suite_example_is_a_passing_suite(tmp_path: Path) -> None:
    from helpdesk_policy.ci.suites import load_suite, run_suite

    (text,) = _blocks(_section("CI for policy changes"), "yaml")
    path = tmp_path / "readme.yaml"
    path.write_text("\n".join(line[2:] for line in text.splitlines()), encoding="utf-8")
    suite = load_suite(path)
    with HelpdeskPolicy(engine="native") as policy:
        results = run_suite(policy, suite)
    assert results and all(r.passed for r in results), [r for r in results if not r.passed]


def test_the_decision_shown_is_what_the_cli_prints() -> None:
    section = _section("A decision")
    shown = _blocks(section, "json")[-1]  # the request comes first, then the decision
    command = re.search(r"\$ (helpdesk-policy decide .*)", section)
    assert command, "the section shows the command it ran"
    args = shlex.split(command.group(1))[1:]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0
    printed = json.loads(result.stdout)
    expected = json.loads(shown)
    for doc in (printed, expected):
        doc.pop("decision_id")
    assert printed == expected


def _commands() -> list[list[str]]:
    found = []
    for block in _blocks(README, "console"):
        for line in block.splitlines():
            m = re.match(r"\$ (?:.*\| )?(?:\.venv/bin/)?helpdesk-policy (.*)", line)
            if m:
                found.append(shlex.split(m.group(1).split("#")[0]))
    return found


@pytest.mark.parametrize("argv", _commands(), ids=lambda a: " ".join(a[:2]))
def test_every_command_in_the_readme_exists(argv: list[str]) -> None:
    command: click.Command = main
    ctx = click.Context(main)
    words = [w for w in argv if not w.startswith("-")]
    for word in words:
        if not isinstance(command, click.Group):
            break
        sub = command.get_command(ctx, word)
        assert sub is not None, f"no command {word!r} in {argv}"
        command = sub
    options = {opt for p in command.params for opt in p.opts if opt.startswith("-")} | {"-h", "--help"}
    for arg in argv:
        if arg.startswith("-") and arg != "-":
            assert arg.split("=")[0] in options, f"{command.name} has no option {arg}"


def test_the_opa_options_shown_are_real() -> None:
    import inspect

    pytest.importorskip("opa_client", reason="the opa engine needs the 'opa' extra")
    from helpdesk_policy.engines.opa import OpaEngine

    (code,) = _blocks(_section("Running with an OPA server"), "python")
    options = re.search(r'"opa": \{(.*?)\}\}', code, re.S)
    assert options, "the section shows the engine options"
    shown = set(re.findall(r'"(\w+)":', options.group(1)))
    assert shown and shown <= set(inspect.signature(OpaEngine).parameters), shown


def _lifecycle_block() -> list[str]:
    section = _section("A ticket's life, end to end")
    block = re.search(r"```console\n\$ python examples/lifecycle.py\n(.*?)\n\$ ", section, re.S)
    assert block, "the section shows the example's run"
    return block.group(1).splitlines()


def _run_lifecycle(*args: str) -> str:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "lifecycle.py"), *args],
                          capture_output=True, text=True, timeout=180, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _assert_shown(shown: list[str], printed: str) -> None:
    """Every line the README shows is printed, in order; ``…`` stands for what varies or is left out."""
    lines = printed.splitlines()
    at = 0
    for want in shown:
        if want == "…":
            continue
        pattern = re.compile(".*".join(re.escape(part) for part in want.split("…")) + r"\Z")
        while at < len(lines) and not pattern.match(lines[at]):
            at += 1
        assert at < len(lines), f"the README shows a line the example does not print (in order): {want!r}"
        at += 1


def test_the_lifecycle_example_runs_as_the_readme_shows(tmp_path: Path) -> None:
    html = tmp_path / "report.html"
    printed = _run_lifecycle("--ledger", f"sqlite:///{tmp_path / 'ledger.db'}", "--html", str(html))
    _assert_shown([line for line in _lifecycle_block() if not line.startswith("HTML report:")], printed)
    assert f"HTML report: {html}" in printed
    page = html.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and 'id="chart-levels-by-action"' in page


def test_the_lifecycle_example_runs_on_postgresql_with_one_flag() -> None:
    from ledger_backends import postgres_schema  # noqa: E402 - tests/ is on sys.path

    with postgres_schema("lifecycle") as (url, _schema):
        printed = _run_lifecycle("--ledger", url)
    _assert_shown([line for line in _lifecycle_block() if not line.startswith("HTML report:")], printed)


def test_the_readme_shown_lines_check_can_fail() -> None:
    with pytest.raises(AssertionError, match="does not print"):
        _assert_shown(["INC-5101 callback: …", "INC-5101 closed: closable=False"], "INC-5101 callback: x\nINC-5101 closed: closable=True\n")


def test_the_integrators_example_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # it reads examples/ticketing/…
    (code,) = _blocks(_section("For ticketing integrators: ServiceNow, Jira Service Management, Zendesk"), "python")
    namespace: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    assert namespace["decision"].level.value == "callback"
    assert namespace["decision"].request_id == namespace["request"].request.id
    assert "Checklist" in namespace["patch"]["work_notes"]


def test_the_chatbot_example_runs(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(ROOT)  # it reads examples/chatbot/inventory.yaml
    code = _blocks(_section("For chatbot and AI agent builders"), "python")[0]
    namespace: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    assert capsys.readouterr().out.splitlines()[0] == "perform"
    assert [t["function"]["name"] for t in namespace["tools"]] == ["decide", "explain", "authorize"]
    assert all(t["function"]["strict"] is True for t in namespace["tools"])
    from helpdesk_policy.agents import PermitReplayedError

    # The permit was consumed in the example: a second use is refused.
    with pytest.raises(PermitReplayedError):
        namespace["runner"].guard.consume(namespace["result"].permit, namespace["result"].request)
    namespace["policy"].close()
