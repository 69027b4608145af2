# Unit tests for agents.rego: AI agents as requesters.
package helpdesk.agents_test

import rego.v1

import data.helpdesk.fixtures_test as f

cfg := data.helpdesk.config

routine := {a | some a in cfg.containment_actions} | {"info_request"}

# An AI agent acting on its own identity (actor.id == target.id).
self_agent(action) := c if {
	patch := {
		"request": {"action": action, "channel": "api"},
		"actor": {"id": "agent-7", "type": "ai_agent", "relationship": "self", "on_behalf_of": "u-123"},
		"target": {"id": "agent-7", "type": "ai_agent", "owners": ["u-123"], "owner_active": true},
	}
	c := f.case(patch)
}

# The fixtures' agent acting for u-123 on u-123's account.
for_user(patch) := f.cases({"actor": f.agent}, patch)

# An agent acting for u-500 on a service account.
on_service_account(patch) := f.cases(
	{
		"request": {"action": "access_grant", "channel": "api"},
		"actor": object.union(f.agent, {"relationship": "admin", "on_behalf_of": "u-500"}),
		"target": {"id": "svc-bot", "type": "service_account", "owners": ["u-500"], "owner_active": true},
	},
	patch,
)

act(action) := patch if {
	patch := {"request": {"action": action}}
}

# --------------------------------------------------- ai_agent_self_privilege

test_ai_agent_self_privilege_denied_for_every_access_action if {
	every action in cfg.access_actions {
		f.gives(f.agents(self_agent(action)), "ai_agent_self_privilege", "deny", [])
	}
}

test_ai_agent_self_privilege_through_the_identity_it_runs_as if {
	c := on_service_account({"actor": {"runs_as": "svc-bot"}})
	f.gives(f.agents(c), "ai_agent_self_privilege", "deny", [])
}

test_ai_agent_self_privilege_through_an_identity_it_co_owns if {
	c := on_service_account({"target": {"owners": ["u-500", "agent-7"]}})
	f.gives(f.agents(c), "ai_agent_self_privilege", "deny", [])
}

test_ai_agent_granting_another_identity if {
	f.lacks(f.agents(on_service_account({})), "ai_agent_self_privilege")
	f.lacks(f.agents(on_service_account({"actor": {"runs_as": "svc-other"}})), "ai_agent_self_privilege")
}

test_ai_agent_self_privilege_not_for_other_actions if {
	every action in ["api_key_reissue", "info_request", "token_revoke", "password_reset"] {
		f.lacks(f.agents(self_agent(action)), "ai_agent_self_privilege")
	}
}

test_ai_agent_self_privilege_not_for_another_identity if {
	f.lacks(f.agents(for_user(act("access_grant"))), "ai_agent_self_privilege")
}

test_ai_agent_self_privilege_not_for_humans_or_services if {
	f.lacks(f.agents(f.case(act("access_grant"))), "ai_agent_self_privilege")
	service := f.cases(on_service_account({}), {"actor": {"type": "service", "runs_as": "svc-bot"}})
	f.lacks(f.agents(service), "ai_agent_self_privilege")
}

# -------------------------------------------------------- ai_agent_requester

test_ai_agent_requester_at_ai_agent_level if {
	f.gives(f.agents(for_user({})), "ai_agent_requester", cfg.ai_agent_level, [])
	cfg.ai_agent_level == "manager_approval"
}

test_ai_agent_requester_on_every_guarded_action if {
	every action in f.actions - routine {
		f.has(f.agents(for_user(act(action))), "ai_agent_requester")
	}
}

test_ai_agent_requester_exempts_routine_actions if {
	every action in routine {
		f.lacks(f.agents(for_user(act(action))), "ai_agent_requester")
	}
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
	f.gives(f.agents(for_user({"actor": {"on_behalf_of": null}})), "ai_agent_no_principal", "callback", [])
}

test_ai_agent_with_principal if {
	f.lacks(f.agents(for_user({})), "ai_agent_no_principal")
}

test_ai_agent_no_principal_exempts_routine_actions if {
	every action in routine {
		f.lacks(f.agents(for_user({"request": {"action": action}, "actor": {"on_behalf_of": null}})), "ai_agent_no_principal")
	}
}
