"""Helpdesk policy for chatbots and AI agents: trusted facts, an enforcing guard, and LLM tools.

The MCP server (:mod:`helpdesk_policy.agents.mcp_server`) is not imported
here: it needs the ``mcp`` extra.
"""

# Trusted facts versus claims (helpdesk_policy.agents.facts): plain imports,
# light ones (the standard library and pydantic only).
from .errors import FactsError, FactsUnavailableError, InvalidFactsError, UnknownIdentityError
from .facts import (
    CLAIMED,
    TRUSTED,
    Claim,
    FactsProvider,
    IdentityFacts,
    InMemoryFactsProvider,
    Provenance,
    ProvenancedRequest,
    RequestFacts,
    SessionFacts,
    ToolCall,
    abuild_request,
    acting_agent,
    build_request,
    claim_resolver,
    parse_claim,
    relayed_by_bot,
)
from .inventory import FileFactsProvider
from .scim import ScimFactsProvider

# The guard (helpdesk_policy.agents.guard) and its permits (.permits).
from .errors import (
    AgentError,
    EscalationRequiredError,
    NotPermittedError,
    PermitError,
    PermitExpiredError,
    PermitForgedError,
    PermitMismatchError,
    PermitReplayedError,
    RefusedError,
)
from .errors import McpUnavailableError
from .guard import Escalation, Guard, Outcome, PermitScope, Refusal, guarded, requires_permit
from .permits import InMemoryPermitStore, Permit, PermitStore, PermitVerifier

# LLM tool use (helpdesk_policy.agents.tools): tool definitions and the runner.
from .tools import TOOL_NAMES, ToolResult, ToolRunner, anthropic_tools, openai_tools, tool_parameters
