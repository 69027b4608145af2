# AI agents as requesters: an agent cannot vouch for a person, approve or take
# a callback, and never grants itself privileges, directly or through an
# identity it runs as or co-owns (OWASP LLM06 Excessive Agency).
package helpdesk.agents

import rego.v1

import data.helpdesk.common

cfg := common.cfg

reasons contains common.reason("ai_agent_self_privilege", "deny", []) if {
	common.is_agent
	common.is_access
	itself
}

itself if common.acts_on_itself

itself if input.actor.id in input.target.owners

itself if {
	input.actor.runs_as != null
	input.actor.runs_as == input.target.id
}

reasons contains common.reason("ai_agent_requester", cfg.ai_agent_level, []) if {
	common.is_agent
	common.guarded
}

reasons contains common.reason("ai_agent_no_principal", "callback", []) if {
	common.is_agent
	common.guarded
	input.actor.on_behalf_of == null
}
