# Unit tests for containment.rego: revoking and disabling stay fast for the
# holder, an owner or manager of record, a security role (a person or a
# security tool), or the desk's verified staff on an ordinary account; anyone
# else needs approval, whatever signal they cite.
package helpdesk.containment_test

import rego.v1

import data.helpdesk.fixtures_test as f

cfg := data.helpdesk.config

contain(action, patch) := c if {
	base := {"request": {"action": action}}
	c := f.cases(base, patch)
}

colleague := {"id": "u-500", "relationship": "helpdesk_agent", "roles": ["employee"]}

# ------------------------------------------------------- who may contain fast

test_the_holder_contains_fast if {
	every action in cfg.containment_actions {
		f.lacks(f.containment(contain(action, {})), "containment_needs_approval")
	}
}

test_the_holder_contains_fast_even_unauthenticated if {
	# A lost device may be the very factor that would verify them; the
	# baseline still asks what it asks (baseline.rego).
	c := f.case({"request": {"action": "token_revoke"}, "actor": {"authenticated": false, "auth_strength": "none"}})
	f.lacks(f.containment(c), "containment_needs_approval")
}

test_an_owner_of_record_contains_fast if {
	f.lacks(f.containment(f.cases(f.nhi, {"request": {"action": "credential_revoke"}})), "containment_needs_approval")
}

test_a_manager_contains_fast if {
	c := f.case({"request": {"action": "account_disable"}, "actor": {"id": "u-900", "relationship": "manager"}})
	f.lacks(f.containment(c), "containment_needs_approval")
	of_record := f.case({"request": {"action": "account_disable"}, "actor": {"id": "u-900", "relationship": "manager"}, "target": {"manager": "u-900"}})
	f.lacks(f.containment(of_record), "containment_needs_approval")
}

test_a_security_role_contains_fast if {
	c := f.case({"request": {"action": "account_disable"}, "actor": {"id": "u-900", "relationship": "admin", "roles": ["security"]}, "target": {"privilege_tier": 2}})
	f.lacks(f.containment(c), "containment_needs_approval")
}

test_a_risk_signal_never_entitles if {
	# Signals may only raise a decision (guarantee 2): a detection revokes through a security role.
	every signal in cfg.high_risk_signals {
		c := f.case({"request": {"action": "token_revoke"}, "actor": colleague, "context": {"risk_signals": [signal]}})
		f.has(f.containment(c), "containment_needs_approval")
	}
}

test_an_agent_relaying_the_holder_contains_fast if {
	f.lacks(f.containment(f.case({"request": {"action": "token_revoke"}, "actor": f.agent})), "containment_needs_approval")
}

# --------------------------------------------------- everyone else: approval

test_anyone_else_needs_approval if {
	every action in cfg.containment_actions {
		c := contain(action, {"actor": colleague})
		f.gives(f.containment(c), "containment_needs_approval", "manager_approval", [action])
	}
}

test_a_stranger_needs_approval if {
	c := f.case({"request": {"action": "account_disable"}, "actor": f.stranger})
	f.gives(f.containment(c), "containment_needs_approval", "manager_approval", ["account_disable"])
}

test_privileged_or_vip_targets_need_a_callback if {
	privileged := f.case({"request": {"action": "account_disable"}, "actor": colleague, "target": {"privilege_tier": cfg.privileged_tier}})
	f.gives(f.containment(privileged), "containment_needs_approval", "callback", ["account_disable"])
	flagged := f.case({"request": {"action": "account_disable"}, "actor": colleague, "target": {"privileged": true}})
	f.level_of(f.containment(flagged), "containment_needs_approval") == "callback"
	vip := f.case({"request": {"action": "token_revoke"}, "actor": colleague, "target": {"vip": true}})
	f.gives(f.containment(vip), "containment_needs_approval", "callback", ["token_revoke"])
}

test_a_medium_signal_backs_nothing if {
	c := f.case({"request": {"action": "token_revoke"}, "actor": colleague, "context": {"risk_signals": ["new_device", "urgency_pressure"]}})
	f.has(f.containment(c), "containment_needs_approval")
}

test_a_security_role_without_strong_authentication_needs_approval if {
	c := f.case({"request": {"action": "account_disable"}, "actor": {"id": "u-900", "relationship": "admin", "roles": ["security"], "auth_strength": "password"}})
	f.has(f.containment(c), "containment_needs_approval")
}

test_a_helpdesk_role_contains_an_ordinary_account_fast if {
	c := f.case({"request": {"action": "account_disable"}, "actor": object.union(colleague, {"roles": ["helpdesk"]})})
	f.lacks(f.containment(c), "containment_needs_approval")
}

test_a_helpdesk_role_is_not_a_security_role_for_privileged_or_vip_accounts if {
	desk := object.union(colleague, {"roles": ["helpdesk"]})
	every target in [{"privileged": true, "privilege_tier": 1}, {"vip": true}] {
		c := f.case({"request": {"action": "account_disable"}, "actor": desk, "target": target})
		f.gives(f.containment(c), "containment_needs_approval", "callback", ["account_disable"])
	}
}

test_a_helpdesk_role_needs_strong_authentication if {
	desk := object.union(colleague, {"roles": ["helpdesk"], "auth_strength": "password"})
	f.has(f.containment(f.case({"request": {"action": "account_disable"}, "actor": desk})), "containment_needs_approval")
}

security_tool := {"id": "svc-soar", "type": "service", "relationship": "admin", "auth_strength": "phishing_resistant", "roles": ["security_automation"]}

test_a_security_tool_on_a_workload_channel_contains_fast if {
	every channel in ["api", "walk_in", "self_service_portal"] {
		c := f.case({"request": {"action": "token_revoke", "channel": channel}, "actor": security_tool, "target": {"privilege_tier": 2}})
		f.lacks(f.containment(c), "containment_needs_approval")
	}
}

test_a_security_tool_needs_strong_workload_authentication_and_a_workload_channel if {
	weak := f.case({"request": {"action": "token_revoke", "channel": "api"}, "actor": object.union(security_tool, {"auth_strength": "mfa"})})
	f.has(f.containment(weak), "containment_needs_approval")
	chat := f.case({"request": {"action": "token_revoke", "channel": "chat"}, "actor": security_tool})
	f.has(f.containment(chat), "containment_needs_approval")
}

test_an_ai_agent_never_holds_a_security_role if {
	agent := object.union(security_tool, {"type": "ai_agent", "on_behalf_of": null})
	c := f.case({"request": {"action": "token_revoke", "channel": "api"}, "actor": agent})
	f.has(f.containment(c), "containment_needs_approval")
}

test_a_claimed_manager_the_directory_contradicts_needs_approval if {
	c := f.case({"request": {"action": "account_disable"}, "actor": {"id": "u-500", "relationship": "manager"}, "target": {"manager": "u-200"}})
	f.has(f.containment(c), "containment_needs_approval")
}

test_a_claimed_owner_of_a_person_needs_approval if {
	c := f.case({"request": {"action": "account_disable"}, "actor": {"id": "u-500", "relationship": "owner"}, "target": {"vip": true}})
	f.gives(f.containment(c), "containment_needs_approval", "callback", ["account_disable"])
}

test_a_non_owner_of_an_nhi_needs_approval if {
	c := f.cases(f.nhi, {"request": {"action": "credential_revoke"}, "actor": {"id": "u-999"}})
	f.has(f.containment(c), "containment_needs_approval")
}

test_an_agent_with_no_principal_needs_approval if {
	c := f.case({"request": {"action": "account_disable"}, "actor": object.union(f.agent, {"on_behalf_of": null})})
	f.gives(f.containment(c), "containment_needs_approval.agent", "manager_approval", ["account_disable"])
}

test_an_agent_for_an_unrelated_principal_needs_approval if {
	c := f.case({"request": {"action": "token_revoke"}, "actor": object.union(f.agent, {"on_behalf_of": "u-555"}), "target": {"privilege_tier": 2}})
	f.gives(f.containment(c), "containment_needs_approval.agent", "callback", ["token_revoke"])
}

test_only_containment_actions if {
	every action in ["password_reset", "access_grant", "info_request"] {
		f.lacks(f.containment(contain(action, {"actor": colleague})), "containment_needs_approval")
	}
}

test_containment_actions_are_config if {
	c := f.case({"request": {"action": "account_disable"}, "actor": colleague, "config": {"containment_actions": ["token_revoke"]}})
	f.lacks(f.containment(c), "containment_needs_approval")
}

test_security_roles_are_config if {
	c := f.case({"request": {"action": "account_disable"}, "actor": object.union(colleague, {"roles": ["helpdesk"]}), "target": {"vip": true}, "config": {"security_roles": ["helpdesk"]}})
	f.lacks(f.containment(c), "containment_needs_approval")
}
