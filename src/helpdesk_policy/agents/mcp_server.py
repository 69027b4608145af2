"""An MCP server exposing the ``decide``, ``explain`` and ``authorize`` tools over stdio.

Needs the ``mcp`` extra: ``pip install 'helpdesk-policy[mcp]'`` (the Model
Context Protocol SDK, 2.x). The tools, their schemas and their answers are
those of :mod:`helpdesk_policy.agents.tools`: the same
:func:`~helpdesk_policy.agents.tools.tool_parameters` in ``tools/list``, the
same :class:`~helpdesk_policy.agents.tools.ToolRunner` behind ``tools/call``.
A result's ``structuredContent`` is the tool result object (``instruction``,
``say_to_requester``…) and its one text content block the same object as
JSON; ``isError`` is set for a call that could not be read (an unknown tool,
an unknown argument), never for a refusal, which is a valid answer.

One process, one session
------------------------

The server runs for **one authenticated session**: one user talking to one
chatbot, or one agent acting for one user. Who the actor is and how they
authenticated is given by whoever **launches** the process (the chat
platform, the agent host) from what it verified, as a session file or an
environment variable, never by the model: the tools take no identity or
authentication argument at all (OWASP LLM Top 10 2025 LLM01 prompt
injection, LLM06 excessive agency; NIST SP 800-63B-4: the verifier records
the authentication, not the claimant). A host that serves many users starts
one server per session (the stdio transport makes that the natural shape)
and must never let the model choose which session's server it talks to.

::

    helpdesk-policy-mcp --facts inventory.yaml --session session.json --channel chat
    python -m helpdesk_policy.agents.mcp_server --facts inventory.yaml --session session.json

* ``--facts`` (or ``HELPDESK_POLICY_MCP_FACTS``): the inventory of record,
  YAML, JSON or CSV (:class:`~helpdesk_policy.agents.inventory.FileFactsProvider`).
* ``--session`` (a JSON or YAML file), or ``HELPDESK_POLICY_MCP_SESSION``
  (the JSON text itself): the :class:`~helpdesk_policy.agents.facts.SessionFacts`,
  e.g. ``{"actor_id": "u-51876", "authenticated": true, "auth_strength":
  "mfa"}`` for a user the chat platform signed in with MFA, or
  ``{"actor_id": "agent-helpdesk", "actor_type": "ai_agent",
  "authenticated": true, "auth_strength": "phishing_resistant",
  "on_behalf_of": "u-51876", "runs_as": "svc-helpdesk-bot"}`` for an agent
  that acts itself.
* ``--channel`` (``HELPDESK_POLICY_MCP_CHANNEL``, default ``chat``): the
  channel the conversation actually takes place on.
* ``--max-level`` (default ``self_service``): the most the model may be
  permitted to perform; everything above goes to people.
* ``--engine`` (default: the package default): the policy engine.
* ``--permit-key-env NAME``: the environment variable holding the permits'
  HMAC key, shared with the executor that consumes them in another process
  (never on the command line, where ``ps`` shows it). Without it the key is
  random per process and permits verify only inside this server.

Configuration errors are written to stderr (stdout is the protocol) with
exit status 2; nothing is served from a half-read inventory or session.

>>> from helpdesk_policy import HelpdeskPolicy
>>> from helpdesk_policy.agents import InMemoryFactsProvider, relayed_by_bot
>>> from helpdesk_policy.agents.tools import ToolRunner
>>> server = create_server(ToolRunner(HelpdeskPolicy(engine="native"), facts=InMemoryFactsProvider(),
...                                   session=relayed_by_bot(user_id="u-1", auth_strength="mfa"), channel="chat"))
>>> server.name
'helpdesk-policy'
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from ..errors import HelpdeskPolicyError
from ..loading import load_document, load_json
from ..models import Channel
from .errors import McpUnavailableError
from .tools import TOOL_NAMES, ToolRunner, tool_descriptions, tool_parameters

__all__ = ["create_server", "serve_stdio", "main", "SERVER_NAME", "INSTRUCTIONS", "ENV_FACTS", "ENV_SESSION",
           "ENV_CHANNEL"]

log = logging.getLogger(__name__)

SERVER_NAME = "helpdesk-policy"
ENV_FACTS = "HELPDESK_POLICY_MCP_FACTS"
ENV_SESSION = "HELPDESK_POLICY_MCP_SESSION"
ENV_CHANNEL = "HELPDESK_POLICY_MCP_CHANNEL"

#: What the server tells the client (and its model) about using it.
INSTRUCTIONS = (
    "Service desk policy for identity and access changes. Before performing any change a user asks for "
    "(password or MFA reset, unlock, access, keys), call authorize with what the user asked for and whom it is "
    "about. Perform the change only when the instruction is 'perform', with the permit, once. On 'escalate' hand "
    "it to the service desk; on 'refuse' do not perform it. Always tell the user say_to_requester, and never "
    "add reasons. Who the user is and how they signed in is known to this server; it cannot be stated in a call."
)

# Hints for clients: decide and explain change nothing; authorize issues a
# permit (state, but nothing destructive: the executor makes the change).
_ANNOTATIONS: dict[str, dict[str, Any]] = {
    "decide": {"title": "Check what the policy requires", "readOnlyHint": True, "openWorldHint": False},
    "explain": {"title": "Explain what happens next", "readOnlyHint": True, "openWorldHint": False},
    "authorize": {"title": "Authorize the change now", "readOnlyHint": False, "destructiveHint": False,
                  "idempotentHint": False, "openWorldHint": False},
}


def _mcp() -> tuple[Any, Any, Any]:
    """The SDK's types, low-level Server and stdio transport, or McpUnavailableError."""
    try:
        import mcp.types as types
        from mcp.server.lowlevel import Server
        from mcp.server.stdio import stdio_server
    except ImportError as exc:
        raise McpUnavailableError(type(exc).__name__) from exc
    return types, Server, stdio_server


def _package_version() -> str:
    try:
        return version("helpdesk-policy")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0"


def create_server(runner: ToolRunner, *, name: str = SERVER_NAME) -> Any:
    """An MCP low-level ``Server`` answering the three tools with ``runner``.

    Args:
        runner: The tool runner for this process's one session.
        name: The server's name in the MCP handshake.

    Raises:
        McpUnavailableError: the ``mcp`` package is not installed.
    """
    types, Server, _ = _mcp()
    if not isinstance(runner, ToolRunner):
        raise TypeError(f"runner must be a ToolRunner, got {type(runner).__name__}")
    descriptions = tool_descriptions()
    # Built from the wire form (camelCase), as a client would read it.
    tools = [
        types.Tool.model_validate({"name": tool, "description": descriptions[tool], "inputSchema": tool_parameters(),
                                   "annotations": _ANNOTATIONS[tool]})
        for tool in TOOL_NAMES
    ]

    async def on_list_tools(ctx: Any, params: Any) -> Any:
        return types.ListToolsResult(tools=tools)

    async def on_call_tool(ctx: Any, params: Any) -> Any:
        result = await runner.arun(params.name, params.arguments)
        return types.CallToolResult.model_validate({
            "content": [{"type": "text", "text": result.to_json()}],
            "structuredContent": result.content,
            "isError": result.is_error,
        })

    return Server(name, version=_package_version(), instructions=INSTRUCTIONS, on_list_tools=on_list_tools,
                  on_call_tool=on_call_tool)


async def serve_stdio(runner: ToolRunner, *, name: str = SERVER_NAME) -> None:
    """Serve the tools over this process's stdin and stdout until the client closes them."""
    _, _, stdio_server = _mcp()
    server = create_server(runner, name=name)
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="helpdesk-policy-mcp",
        description="Serve the helpdesk policy's decide, explain and authorize tools over MCP (stdio) for one "
                    "authenticated session. The session comes from the launcher, never from the model.",
    )
    p.add_argument("--facts", default=os.environ.get(ENV_FACTS),
                   help=f"inventory of record (YAML, JSON or CSV); default ${ENV_FACTS}")
    p.add_argument("--session", help=f"session file (JSON or YAML SessionFacts); default: ${ENV_SESSION} (JSON text)")
    p.add_argument("--channel", default=os.environ.get(ENV_CHANNEL, "chat"),
                   help=f"the channel the conversation is on (default chat; ${ENV_CHANNEL})")
    p.add_argument("--max-level", default="self_service", help="the most the model may be permitted to perform")
    p.add_argument("--engine", default=None, help="policy engine (default: the package default)")
    p.add_argument("--permit-key-env", default=None, metavar="NAME",
                   help="environment variable holding the permits' HMAC key (shared with the executor)")
    return p


def _runner(args: argparse.Namespace) -> ToolRunner:
    """The runner the arguments describe; every problem raised as a HelpdeskPolicyError."""
    from ..facade import HelpdeskPolicy
    from .guard import Guard
    from .inventory import FileFactsProvider

    facts = FileFactsProvider(args.facts)
    if args.session:
        session = load_document(args.session)
    elif os.environ.get(ENV_SESSION):
        session = load_json(os.environ[ENV_SESSION], source=f"${ENV_SESSION}")
    else:
        raise _usage(f"a session is required: --session FILE or ${ENV_SESSION}")
    policy = HelpdeskPolicy(engine=args.engine) if args.engine else HelpdeskPolicy()
    key = None
    if args.permit_key_env:
        key = os.environ.get(args.permit_key_env)
        if not key:
            raise _usage(f"--permit-key-env names {args.permit_key_env}, which is not set")
    guard = Guard(policy, key=key, max_level=args.max_level)
    return ToolRunner(policy, facts=facts, session=session, channel=args.channel, guard=guard,
                      max_level=args.max_level)


class _UsageError(HelpdeskPolicyError):
    pass


def _usage(message: str) -> _UsageError:
    return _UsageError(message)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``helpdesk-policy-mcp`` command: serve until the client disconnects.

    Returns:
        0 when the client closed the session, 2 for a configuration error
        (written to stderr), 3 when the ``mcp`` extra is missing.
    """
    args = _parser().parse_args(argv)
    try:
        if not args.facts:
            raise _usage(f"an inventory is required: --facts FILE or ${ENV_FACTS}")
        if args.channel not in {c.value for c in Channel}:
            raise _usage(f"--channel must be one of {[c.value for c in Channel]}")
        _mcp()
        runner = _runner(args)
    except McpUnavailableError as exc:
        print(f"helpdesk-policy-mcp: {exc}", file=sys.stderr)
        return 3
    except (HelpdeskPolicyError, ValueError) as exc:
        print(f"helpdesk-policy-mcp: {exc}", file=sys.stderr)
        return 2
    log.info("serving %s over stdio for one session (%s)", SERVER_NAME, runner.channel.value)
    asyncio.run(serve_stdio(runner))
    return 0


if __name__ == "__main__":  # pragma: no cover - exercised as a subprocess by tests/test_mcp.py
    sys.exit(main())
