# Unit tests for agents.rego: AI agents as requesters.
package helpdesk.agents_test

import rego.v1

import data.helpdesk.fixtures_test as f

cfg := data.helpdesk.config

# An AI agent acting on its own identity (actor.id == target.id).
self_agent(action) := f.case({
	"request": {"action": action, "channel": "api"},
	"actor": {"id": "agent-7", "type": "ai_agent", "relationship": "self", "on_behalf_of": "u-123"},
	"target": {"id": "agent-7", "type": "ai_agent", "owners": ["u-123"], "owner_active": true},
})

# The fixtures' agent acting for u-123 on u-123's account.
for_user(patch) := f.cases({"actor": f.agent}, patch)

# --------------------------------------------------- ai_agent_self_privilege

test_ai_agent_self_privilege_denied_for_every_access_action if {
	every action in cfg.access_actions {
		r := f.reason(f.agents(self_agent(action)), "ai_agent_self_privilege")
		r.level == "deny"
		r.refs == ["OWASP-LLM-2025:LLM06", "NIST-AI-RMF-1.0", "NIST-CSF-2.0:PR.AA-05"]
	}
}

test_ai_agent_self_privilege_not_for_other_actions if {
	every action in ["api_key_reissue", "info_request", "token_revoke"] {
		f.lacks(f.agents(self_agent(action)), "ai_agent_self_privilege")
	}
}

test_ai_agent_self_privilege_not_for_another_identity if {
	f.lacks(f.agents(for_user(act("access_grant"))), "ai_agent_self_privilege")
}

test_ai_agent_self_privilege_not_for_humans if {
	f.lacks(f.agents(f.case(act("access_grant"))), "ai_agent_self_privilege")
}

act(action) := {"request": {"action": action}}

# -------------------------------------------------------- ai_agent_requester

test_ai_agent_requester_at_ai_agent_level if {
	r := f.reason(f.agents(for_user({})), "ai_agent_requester")
	r.level == cfg.ai_agent_level
	r.level == "manager_approval"
	r.refs == ["OWASP-LLM-2025:LLM06", "NIST-AI-RMF-1.0"]
}

test_ai_agent_requester_on_every_guarded_action if {
	every action in f.actions - ({"info_request"} | {a | some a in cfg.containment_actions}) {
		f.has(f.agents(for_user(act(action))), "ai_agent_requester")
	}
}

test_ai_agent_requester_exempts_containment if {
	every action in cfg.containment_actions {
		f.lacks(f.agents(for_user(act(action))), "ai_agent_requester")
	}
}

test_ai_agent_requester_exempts_info_request if {
	f.lacks(f.agents(for_user(act("info_request"))), "ai_agent_requester")
}

test_ai_agent_requester_not_for_humans_or_services if {
	count(f.agents(f.case({}))) == 0
	count(f.agents(f.case({"actor": {"id": "svc-1", "type": "service", "relationship": "admin"}}))) == 0
}

test_ai_agent_level_is_config if {
	c := for_user({"config": {"ai_agent_level": "callback"}})
	f.level_of(f.agents(c), "ai_agent_requester") == "callback"
}

# ----------------------------------------------------- ai_agent_no_principal

test_ai_agent_no_principal_needs_callback if {
	r := f.reason(f.agents(for_user({"actor": {"on_behalf_of": null}})), "ai_agent_no_principal")
	r.level == "callback"
}

test_ai_agent_with_principal if {
	f.lacks(f.agents(for_user({})), "ai_agent_no_principal")
}

test_ai_agent_no_principal_exempts_containment if {
	every action in cfg.containment_actions {
		f.lacks(f.agents(for_user({"request": {"action": action}, "actor": {"on_behalf_of": null}})), "ai_agent_no_principal")
	}
}

test_ai_agent_no_principal_exempts_info_request if {
	c := for_user({"request": {"action": "info_request"}, "actor": {"on_behalf_of": null}})
	f.lacks(f.agents(c), "ai_agent_no_principal")
}
