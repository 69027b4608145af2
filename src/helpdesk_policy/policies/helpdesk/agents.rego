# AI agents as requesters: an agent cannot vouch for a person, cannot approve,
# and never grants itself privileges (OWASP LLM06 Excessive Agency).
package helpdesk.agents

import rego.v1

import data.helpdesk.common
import data.helpdesk.refs as r

cfg := common.cfg

is_agent if input.actor.type == "ai_agent"

reasons contains {
	"code": "ai_agent_self_privilege",
	"level": "deny",
	"message": "An AI agent may not grant or elevate privileges for itself. A human owner must request the change through the access-request process.",
	"refs": [r.llm06, r.airmf, r.aa05],
} if {
	is_agent
	input.actor.relationship == "self"
	common.is_access
}

reasons contains {
	"code": "ai_agent_requester",
	"level": cfg.ai_agent_level,
	"message": "The request comes from an AI agent, which cannot vouch for a person's identity or approve: a human must verify and approve.",
	"refs": [r.llm06, r.airmf],
} if {
	is_agent
	common.guarded
}

reasons contains {
	"code": "ai_agent_no_principal",
	"level": "callback",
	"message": "The AI agent names no person it acts for: confirm the request with the target's contact of record out of band.",
	"refs": [r.llm06, r.airmf],
} if {
	is_agent
	common.guarded
	input.actor.on_behalf_of == null
}
