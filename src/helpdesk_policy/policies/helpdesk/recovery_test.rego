# Unit tests for recovery.rego: impersonable channels, recovery no enrolled
# factor can verify, privileged and VIP accounts, third parties, unrelated
# requesters, chained takeovers.
package helpdesk.recovery_test

import rego.v1

import data.helpdesk.fixtures_test as f

cfg := data.helpdesk.config

# The account holder's manager, asking for them.
manager := {"id": "u-900", "relationship": "manager"}

unauthenticated := {"authenticated": false, "auth_strength": "none"}

# No factor known to be enrolled.
no_factor := {"context": {"enrolled_factor_available": null}}

containment := {a | some a in cfg.containment_actions}

routine := {"info_request"} | containment

# Guarded actions a person can be the target of.
guarded_on_people := (f.actions - routine) - {"service_account_create"}

# ------------------------------------------------- remote_channel_recovery

test_remote_channel_recovery_on_every_remote_channel_and_recovery_action if {
	every action in cfg.recovery_actions {
		every_remote_channel_fires(action)
	}
}

# One level of `every` per rule: rego-cpp mis-evaluates an inner `every`
# that reads the outer one's variable.
every_remote_channel_fires(action) if {
	every channel in ["phone", "email", "chat"] {
		c := f.case({"request": {"action": action, "channel": channel}})
		f.gives(f.recovery(c), "remote_channel_recovery", "step_up", [action, channel])
	}
}

test_remote_channel_recovery_not_on_trusted_channels if {
	every channel in ["self_service_portal", "walk_in", "api"] {
		f.lacks(f.recovery(f.case({"request": {"channel": channel}})), "remote_channel_recovery")
	}
}

test_remote_channel_recovery_not_for_other_actions if {
	every action in ["access_grant", "info_request", "token_revoke", "api_key_reissue"] {
		f.lacks(f.recovery(f.case({"request": {"action": action}})), "remote_channel_recovery")
	}
}

test_remote_channel_recovery_channels_are_config if {
	c := f.case({"request": {"channel": "chat"}, "config": {"remote_channels": ["email", "phone"]}})
	f.lacks(f.recovery(c), "remote_channel_recovery")
}

# -------------------------------------------- factor_recovery_unverifiable

test_factor_recovery_unverifiable_for_every_factor_recovery_action if {
	every action in cfg.factor_recovery_actions {
		c := f.cases(no_factor, {"request": {"action": action}, "actor": unauthenticated})
		f.gives(f.recovery(c), "factor_recovery_unverifiable", "manager_approval", [action])
	}
}

test_factor_recovery_unverifiable_for_ordinary_accounts if {
	# Not only privileged ones: attackers pose as ordinary employees.
	c := f.cases(no_factor, {"actor": {"auth_strength": "password"}})
	f.has(f.recovery(c), "factor_recovery_unverifiable")
}

test_factor_recovery_unverifiable_when_the_factor_is_known_gone if {
	c := f.case({"actor": unauthenticated, "context": {"enrolled_factor_available": false}})
	f.has(f.recovery(c), "factor_recovery_unverifiable")
}

test_no_factor_recovery_unverifiable_with_an_enrolled_factor if {
	c := f.case({"actor": unauthenticated})
	f.lacks(f.recovery(c), "factor_recovery_unverifiable")
}

test_no_factor_recovery_unverifiable_for_the_strongly_authenticated_holder if {
	# Authenticated at min_auth_strength: they hold a factor.
	f.lacks(f.recovery(f.case(no_factor)), "factor_recovery_unverifiable")
	f.lacks(f.recovery(f.cases(no_factor, {"actor": {"auth_strength": "phishing_resistant"}})), "factor_recovery_unverifiable")
}

test_factor_recovery_unverifiable_for_a_strongly_authenticated_third_party if {
	# The manager's own factor says nothing about the holder's.
	c := f.cases(no_factor, {"actor": manager})
	f.has(f.recovery(c), "factor_recovery_unverifiable")
}

test_factor_recovery_unverifiable_for_an_agent_relaying_the_holder if {
	# The agent's session is not the holder's factor.
	c := f.cases(no_factor, {"actor": f.agent})
	f.has(f.recovery(c), "factor_recovery_unverifiable")
}

test_factor_recovery_in_a_weak_portal_session_needs_proofing if {
	# Supervised remote proofing from the portal: a step-up, no agent to fool.
	c := f.cases(no_factor, {"request": {"channel": "self_service_portal"}, "actor": {"auth_strength": "password"}})
	f.gives(f.recovery(c), "factor_recovery_unverifiable.proofing", "step_up", ["mfa_reset"])
}

test_factor_recovery_at_the_walk_in_desk_needs_proofing if {
	# In-person proofing against a photo ID: a step-up, not the manager's approval.
	c := f.cases(no_factor, {"request": {"channel": "walk_in"}, "actor": unauthenticated})
	f.gives(f.recovery(c), "factor_recovery_unverifiable.proofing", "step_up", ["mfa_reset"])
}

test_factor_recovery_unverifiable_graded_by_channel_trust if {
	# A less trusted channel never lowers it (guarantee 2).
	every channel in ["self_service_portal", "walk_in", "api", "chat", "email", "phone"] {
		c := f.cases(no_factor, {"request": {"channel": channel}, "actor": unauthenticated})
		f.level_of(f.recovery(c), "factor_recovery_unverifiable") == unverifiable_level(channel)
	}
}

unverifiable_level(channel) := "manager_approval" if channel in cfg.remote_channels

unverifiable_level(channel) := "step_up" if not channel in cfg.remote_channels

test_no_factor_recovery_unverifiable_for_a_password_reset_or_unlock if {
	every action in ["password_reset", "account_unlock"] {
		c := f.cases(no_factor, {"request": {"action": action}, "actor": unauthenticated})
		f.lacks(f.recovery(c), "factor_recovery_unverifiable")
	}
}

test_no_factor_recovery_unverifiable_for_nhi_targets if {
	c := f.cases(f.nhi, {"actor": unauthenticated, "context": {"enrolled_factor_available": null}})
	f.lacks(f.recovery(c), "factor_recovery_unverifiable")
}

test_factor_recovery_actions_are_config if {
	c := f.cases(no_factor, {"actor": unauthenticated, "config": {"factor_recovery_actions": ["mfa_add_factor"]}})
	f.lacks(f.recovery(c), "factor_recovery_unverifiable")
}

# ---------------------------------------------- privileged_remote_recovery

test_privileged_remote_recovery_at_privileged_tier if {
	# Boundary: tier == privileged_tier is privileged.
	c := f.case({"target": {"privilege_tier": cfg.privileged_tier}})
	f.gives(f.recovery(c), "privileged_remote_recovery", "callback", [cfg.privileged_tier, "phone"])
}

test_privileged_remote_recovery_names_the_tier_and_channel if {
	c := f.case({"request": {"channel": "chat"}, "target": {"privilege_tier": 4}})
	f.gives(f.recovery(c), "privileged_remote_recovery", "callback", [4, "chat"])
}

test_privileged_remote_recovery_not_below_privileged_tier if {
	c := f.case({"target": {"privilege_tier": cfg.privileged_tier - 1}})
	f.lacks(f.recovery(c), "privileged_remote_recovery")
}

test_privileged_remote_recovery_for_privileged_flag if {
	c := f.case({"target": {"privileged": true, "privilege_tier": 0}})
	f.gives(f.recovery(c), "privileged_remote_recovery", "callback", [cfg.privileged_tier, "phone"])
}

test_privileged_remote_recovery_not_on_trusted_channel if {
	c := f.case({"request": {"channel": "walk_in"}, "target": {"privilege_tier": 3}})
	f.lacks(f.recovery(c), "privileged_remote_recovery")
}

test_privileged_remote_recovery_not_for_an_unlock if {
	# An unlock issues no credential: attackers gain nothing from it.
	c := f.case({"request": {"action": "account_unlock"}, "target": {"privilege_tier": 3}})
	f.lacks(f.recovery(c), "privileged_remote_recovery")
}

test_privileged_remote_recovery_not_for_access_actions if {
	c := f.case({"request": {"action": "role_change"}, "target": {"privilege_tier": 3}})
	f.lacks(f.recovery(c), "privileged_remote_recovery")
}

test_no_credential_actions_are_config if {
	c := f.case({"request": {"action": "account_unlock"}, "target": {"privilege_tier": 3}, "config": {"no_credential_actions": []}})
	f.has(f.recovery(c), "privileged_remote_recovery")
}

test_privileged_remote_recovery_tier_is_config if {
	c := f.case({"target": {"privilege_tier": 1}, "config": {"privileged_tier": 2}})
	f.lacks(f.recovery(c), "privileged_remote_recovery")
}

# ----------------------------------------------------- vip_remote_recovery

test_vip_remote_recovery if {
	c := f.case({"request": {"channel": "email"}, "target": {"vip": true}})
	f.gives(f.recovery(c), "vip_remote_recovery", "callback", ["email"])
}

test_vip_remote_recovery_not_for_non_vip if {
	f.lacks(f.recovery(f.case({})), "vip_remote_recovery")
}

test_vip_remote_recovery_not_on_trusted_channels if {
	every channel in ["self_service_portal", "walk_in", "api"] {
		c := f.case({"request": {"channel": channel}, "target": {"vip": true}})
		f.lacks(f.recovery(c), "vip_remote_recovery")
	}
}

test_vip_remote_recovery_not_for_an_unlock_or_other_actions if {
	every action in ["account_unlock", "access_grant", "token_revoke"] {
		c := f.case({"request": {"action": action}, "target": {"vip": true}})
		f.lacks(f.recovery(c), "vip_remote_recovery")
	}
}

# ---------------------------------------------------- third_party_recovery

test_third_party_recovery_for_every_related_third_party if {
	every rel in ["manager", "helpdesk_agent", "admin"] {
		c := f.case({"actor": {"id": "u-900", "relationship": rel}})
		f.gives(f.recovery(c), "third_party_recovery", "callback", [rel])
	}
}

test_third_party_recovery_for_any_kind_of_requester if {
	every actor_type in ["human", "service"] {
		c := f.case({"actor": {"id": "u-900", "type": actor_type, "relationship": "helpdesk_agent"}})
		f.gives(f.recovery(c), "third_party_recovery", "callback", ["helpdesk_agent"])
	}
}

test_third_party_recovery_names_the_relationship_of_record if {
	# An agent acting for the manager of record is the manager's request.
	c := f.case({
		"actor": object.union(f.agent, {"relationship": "admin", "on_behalf_of": "u-900"}),
		"target": {"manager": "u-900"},
	})
	f.gives(f.recovery(c), "third_party_recovery", "callback", ["manager"])
}

test_third_party_recovery_not_for_self if {
	f.lacks(f.recovery(f.case({})), "third_party_recovery")
}

test_third_party_recovery_not_for_an_agent_relaying_the_holder if {
	f.lacks(f.recovery(f.case({"actor": f.agent})), "third_party_recovery")
}

test_third_party_recovery_not_for_unrelated if {
	# An unrelated requester is denied instead.
	rs := f.recovery(f.case({"actor": f.stranger}))
	f.lacks(rs, "third_party_recovery")
	f.has(rs, "unrelated_requester")
}

test_third_party_recovery_not_for_a_stated_owner_of_a_person if {
	# People have no owners: the claim reads as unrelated.
	rs := f.recovery(f.case({"actor": {"id": "u-900", "relationship": "owner"}}))
	f.lacks(rs, "third_party_recovery")
	f.has(rs, "unrelated_requester")
}

test_third_party_recovery_not_for_an_unlock if {
	c := f.case({"request": {"action": "account_unlock"}, "actor": manager})
	f.lacks(f.recovery(c), "third_party_recovery")
}

test_third_party_recovery_not_for_nhi_targets if {
	f.lacks(f.recovery(f.cases(f.nhi, {"request": {"action": "password_reset"}})), "third_party_recovery")
}

test_third_party_recovery_not_for_other_actions if {
	c := f.case({"request": {"action": "access_grant"}, "actor": manager})
	f.lacks(f.recovery(c), "third_party_recovery")
}

# ------------------------------------------------------- unrelated_requester

test_unrelated_requester_denied_every_guarded_action if {
	every action in guarded_on_people {
		c := f.case({"request": {"action": action}, "actor": f.stranger})
		f.gives(f.recovery(c), "unrelated_requester", "deny", [])
	}
}

test_unrelated_requester_when_the_directory_names_another_manager if {
	c := f.case({"actor": manager, "target": {"manager": "u-200"}})
	f.gives(f.recovery(c), "unrelated_requester", "deny", [])
}

test_a_manager_of_record_is_not_unrelated if {
	c := f.case({"actor": manager, "target": {"manager": "u-900"}})
	f.lacks(f.recovery(c), "unrelated_requester")
	f.has(f.recovery(c), "third_party_recovery")
}

test_unrelated_requester_for_an_agent_with_no_principal if {
	c := f.case({"actor": object.union(f.agent, {"relationship": "manager", "on_behalf_of": null})})
	f.gives(f.recovery(c), "unrelated_requester.agent", "deny", [])
}

test_unrelated_requester_for_an_agent_whose_principal_is_unrelated if {
	c := f.case({"actor": object.union(f.agent, {"on_behalf_of": "u-555"})})
	f.gives(f.recovery(c), "unrelated_requester.agent", "deny", [])
}

test_unrelated_requester_may_ask_for_information_or_contain if {
	# info.rego and containment.rego decide those.
	every action in routine {
		c := f.case({"request": {"action": action}, "actor": f.stranger})
		f.lacks(f.recovery(c), "unrelated_requester")
	}
}

test_unrelated_requester_not_for_nhi_targets if {
	# NHIs have their own ownership rule (nhi_requester_not_owner).
	c := f.cases(f.nhi, {"actor": f.stranger})
	f.lacks(f.recovery(c), "unrelated_requester")
}

test_unrelated_requester_not_for_self if {
	f.lacks(f.recovery(f.case({})), "unrelated_requester")
}

# ------------------------------------------------ chained_credential_change

test_chained_credential_change_at_the_window if {
	# Boundary: exactly chained_change_window_hours is inside the window.
	c := f.case({"context": {"recent_credential_change_hours": cfg.chained_change_window_hours}})
	f.gives(f.recovery(c), "chained_credential_change", "callback", [cfg.chained_change_window_hours])
}

test_chained_credential_change_just_outside_the_window if {
	c := f.case({"context": {"recent_credential_change_hours": cfg.chained_change_window_hours + 0.001}})
	f.lacks(f.recovery(c), "chained_credential_change")
}

test_chained_credential_change_right_after if {
	c := f.case({"context": {"recent_credential_change_hours": 0}})
	f.has(f.recovery(c), "chained_credential_change")
}

test_chained_credential_change_when_no_history_is_given if {
	# Missing reads as a change within the window (riskiest).
	c := f.case({"context": {"recent_credential_change_hours": null}})
	f.gives(f.recovery(c), "chained_credential_change.unknown", "callback", [cfg.chained_change_window_hours])
}

test_chained_credential_change_not_without_a_recent_change if {
	f.lacks(f.recovery(f.case({})), "chained_credential_change")
}

test_chained_credential_change_on_every_factor_change_action if {
	every action in cfg.factor_change_actions {
		c := f.case({"request": {"action": action}, "context": {"recent_credential_change_hours": 1}})
		f.has(f.recovery(c), "chained_credential_change")
	}
}

test_chained_credential_change_only_on_remote_channels if {
	# Walk-in is in-person proofing; the portal has its own session.
	every channel in ["self_service_portal", "walk_in", "api"] {
		c := f.case({"request": {"channel": channel}, "context": {"recent_credential_change_hours": null}})
		f.lacks(f.recovery(c), "chained_credential_change")
	}
}

test_chained_credential_change_not_for_unlock if {
	# account_unlock recovers access without changing a credential.
	c := f.case({"request": {"action": "account_unlock"}, "context": {"recent_credential_change_hours": 1}})
	f.lacks(f.recovery(c), "chained_credential_change")
}

test_chained_credential_change_window_is_config if {
	c := f.case({"context": {"recent_credential_change_hours": 48}, "config": {"chained_change_window_hours": 24}})
	f.lacks(f.recovery(c), "chained_credential_change")
}
