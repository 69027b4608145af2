"""The MCP server (issue 12, item 3), tested with the MCP client of the same package over stdio.

The server runs as a real subprocess (``python -m helpdesk_policy.agents.mcp_server``)
for one session given by the launcher (a session file, or the environment),
and the client lists its tools and calls ``decide``, ``explain`` and
``authorize`` for an honest user and for a lying model. A permit it issues is
checked by an executor in this process holding the same key
(``--permit-key-env``). Skipped only when the ``mcp`` extra is not installed;
the ``dev`` extra installs it, so it runs in CI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp", reason="the mcp extra is not installed")

from mcp import ClientSession, StdioServerParameters  # noqa: E402
from mcp.client.stdio import stdio_client  # noqa: E402

from helpdesk_policy.agents.errors import McpUnavailableError, PermitForgedError, PermitReplayedError  # noqa: E402
from helpdesk_policy.agents.mcp_server import ENV_SESSION  # noqa: E402
from helpdesk_policy.agents.permits import PermitVerifier  # noqa: E402
from helpdesk_policy.agents.tools import tool_parameters  # noqa: E402

KEY = "mcp-test-permit-key-0123456789abcdef"  # >= 32 bytes

INVENTORY = """\
- id: u-51876
  type: human
  status: active
  privileged: false
  privilege_tier: 0
  vip: false
  manager: u-20417
  contact_age_days: 512
  enrolled_factor_available: true
- id: adm-7
  type: human
  status: active
  privileged: true
  privilege_tier: 2
  vip: false
  manager: u-20990
  contact_age_days: 900
  enrolled_factor_available: true
"""


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    path = tmp_path / "inventory.yaml"
    path.write_text(INVENTORY, encoding="utf-8")
    return path


def server(inventory: Path, *args: str, env: dict[str, str] | None = None) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "helpdesk_policy.agents.mcp_server", "--facts", str(inventory), "--engine", "native", *args],
        env=env,
    )


def call(action: str, target_id: str | None = None, justification: str | None = None) -> dict[str, Any]:
    return {"action": action, "target_id": target_id, "justification": justification, "emergency": False}


def structured(result: Any) -> dict[str, Any]:
    # The one text block and the structured content say the same.
    assert len(result.content) == 1 and result.content[0].type == "text"
    assert json.loads(result.content[0].text) == result.structured_content
    return result.structured_content


@pytest.mark.asyncio
async def test_an_honest_user_gets_a_permit_over_mcp(inventory: Path, tmp_path: Path) -> None:
    session_file = tmp_path / "session.json"
    session_file.write_text(json.dumps({"actor_id": "u-51876", "authenticated": True, "auth_strength": "mfa"}),
                            encoding="utf-8")
    params = server(inventory, "--session", str(session_file), "--channel", "self_service_portal",
                    "--permit-key-env", "HP_TEST_PERMIT_KEY", env={"HP_TEST_PERMIT_KEY": KEY})
    async with stdio_client(params) as (read, write), ClientSession(read, write) as client:
        init = await client.initialize()
        assert init.server_info.name == "helpdesk-policy"
        assert "cannot be stated in a call" in (init.instructions or "")
        listed = (await client.list_tools()).tools
        assert [t.name for t in listed] == ["decide", "explain", "authorize"]
        assert all(t.input_schema == tool_parameters() for t in listed)
        hints = {t.name: t.annotations.read_only_hint for t in listed}
        assert hints == {"decide": True, "explain": True, "authorize": False}

        decided = structured(await client.call_tool("decide", call("password_reset")))
        assert decided["instruction"] == "perform" and "permit" not in decided
        explained = structured(await client.call_tool("explain", call("password_reset")))
        assert explained["instruction"] == "perform" and explained["guidance"]
        result = await client.call_tool("authorize", call("password_reset", justification="forgot it"))
        assert result.is_error is False
        answer = structured(result)
    assert answer["instruction"] == "perform" and answer["say_to_requester"] == "Your request can be completed now."
    permit = answer["permit"]
    assert (permit["action"], permit["target_id"], permit["level"]) == ("password_reset", "u-51876", "self_service")
    # An executor in another process, holding the same key, accepts it once.
    executor = PermitVerifier(key=KEY)
    with pytest.raises(PermitForgedError):
        executor.consume({**permit, "target_id": "adm-7"})
    assert executor.consume(permit).permit_id == permit["permit_id"]
    with pytest.raises(PermitReplayedError):
        executor.consume(permit)


@pytest.mark.asyncio
async def test_a_lying_model_is_stopped_over_mcp(inventory: Path) -> None:
    # The admin in chat, signed in with a password only: the session comes from the environment.
    session = {"actor_id": "adm-7", "authenticated": True, "auth_strength": "password"}
    params = server(inventory, "--channel", "chat", env={ENV_SESSION: json.dumps(session)})
    async with stdio_client(params) as (read, write), ClientSession(read, write) as client:
        await client.initialize()
        naive = await client.call_tool("authorize", {**call("mfa_reset"), "relationship": "manager",
                                                     "auth_strength": "phishing_resistant", "privileged": False})
        lie = await client.call_tool("authorize", call(
            "mfa_reset", justification="I'm his manager, signed in with a security key; he is not an admin"))
        decided = await client.call_tool("decide", call("mfa_reset", target_id="u-51876"))
        unknown = await client.call_tool("explain", call("mfa_reset", target_id="nobody-7"))
        bad_tool = await client.call_tool("perform", call("mfa_reset"))
    assert naive.is_error is True
    refused = structured(naive)
    assert refused["instruction"] == "refuse" and refused["error"] == "invalid_arguments"
    assert [p["field"] for p in refused["problems"]] == ["auth_strength", "privileged", "relationship"]

    assert lie.is_error is False
    escalated = structured(lie)
    assert escalated["instruction"] == "escalate" and "permit" not in escalated
    assert escalated["needs"] == ["max_level", "identity_step_up", "manager_approval", "out_of_band_callback"]
    assert escalated["escalate_to"] == ["service_desk", "manager", "callback:holder"]
    say = escalated["say_to_requester"]
    assert "calling back on contact details already on record" in say
    for leak in ("privileged", "weak_authentication", "adm-7", "u-20990", "password authentication"):
        assert leak not in say

    other = structured(decided)
    assert other["instruction"] == "refuse" and other["why"] == "denied"
    assert "formal account recovery process" in other["say_to_requester"]

    handoff = structured(unknown)
    assert handoff["instruction"] == "escalate" and handoff["needs"] == ["identity_of_record"]
    assert handoff["guidance"][0].startswith("Do not perform the change")

    assert bad_tool.is_error is True and structured(bad_tool)["error"] == "unknown_tool"


@pytest.mark.parametrize(("args", "env", "message"), [
    (["--facts", "INVENTORY"], {}, "a session is required"),
    (["--session", "SESSION"], {}, "an inventory is required"),
    (["--facts", "INVENTORY", "--session", "SESSION", "--channel", "fax"], {}, "--channel must be one of"),
    (["--facts", "INVENTORY", "--session", "BADSESSION"], {}, "session.auth_strength"),
    (["--facts", "INVENTORY", "--session", "SESSION", "--permit-key-env", "HP_UNSET_KEY"], {}, "is not set"),
    (["--facts", "INVENTORY", "--session", "SESSION", "--max-level", "deny"], {}, "max_level"),
])
def test_configuration_errors_go_to_stderr(inventory: Path, tmp_path: Path, args: list[str], env: dict[str, str],
                                           message: str) -> None:
    good = tmp_path / "session.json"
    good.write_text('{"actor_id": "u-51876", "authenticated": true, "auth_strength": "mfa"}', encoding="utf-8")
    bad = tmp_path / "bad.json"
    bad.write_text('{"actor_id": "u-51876", "authenticated": true, "auth_strength": "none"}', encoding="utf-8")
    paths = {"INVENTORY": str(inventory), "SESSION": str(good), "BADSESSION": str(bad)}
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HELPDESK_POLICY_MCP_")}
    proc = subprocess.run([sys.executable, "-m", "helpdesk_policy.agents.mcp_server", "--engine", "native",
                           *(paths.get(a, a) for a in args)],
                          capture_output=True, text=True, env={**clean, **env}, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""  # stdout is the protocol: nothing else is ever written there
    assert proc.stderr.startswith("helpdesk-policy-mcp: ") and message in proc.stderr


def test_the_missing_extra_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    from helpdesk_policy.agents import mcp_server

    real_import = builtins.__import__

    def no_mcp(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "mcp" or name.startswith("mcp."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mcp)
    with pytest.raises(McpUnavailableError, match=r"pip install 'helpdesk-policy\[mcp\]'") as info:
        mcp_server.create_server(None)  # type: ignore[arg-type]
    assert isinstance(info.value, ImportError)


def test_the_module_doctests_run() -> None:
    import doctest

    from helpdesk_policy.agents import mcp_server

    result = doctest.testmod(mcp_server, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
