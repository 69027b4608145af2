# Unit tests for recovery.rego: impersonable channels, privileged recovery,
# third parties, unrelated requesters, chained takeovers.
package helpdesk.recovery_test

import rego.v1

import data.helpdesk.fixtures_test as f

cfg := data.helpdesk.config

# The account holder's manager, asking for them.
manager := {"id": "u-900", "relationship": "manager"}

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
		f.level_of(f.recovery(c), "remote_channel_recovery") == "step_up"
	}
}

test_remote_channel_recovery_message if {
	r := f.reason(f.recovery(f.case({"request": {"channel": "email"}})), "remote_channel_recovery")
	r.message == "Credential or factor recovery requested over email, an impersonable channel."
	r.refs == ["CISA-AA23-320A", "NIST-SP-800-63B-4"]
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

# ---------------------------------------------- privileged_remote_recovery

test_privileged_remote_recovery_at_privileged_tier if {
	# Boundary: tier == privileged_tier is privileged.
	c := f.case({"target": {"privilege_tier": cfg.privileged_tier}})
	r := f.reason(f.recovery(c), "privileged_remote_recovery")
	r.level == "callback"
	r.message == "Recovery of a privileged account requested over phone: call back a contact of record before acting."
}

test_privileged_remote_recovery_not_below_privileged_tier if {
	c := f.case({"target": {"privilege_tier": cfg.privileged_tier - 1}})
	f.lacks(f.recovery(c), "privileged_remote_recovery")
}

test_privileged_remote_recovery_for_privileged_flag if {
	c := f.case({"target": {"privileged": true, "privilege_tier": 0}})
	f.has(f.recovery(c), "privileged_remote_recovery")
}

test_privileged_remote_recovery_not_on_trusted_channel if {
	c := f.case({"request": {"channel": "walk_in"}, "target": {"privilege_tier": 3}})
	f.lacks(f.recovery(c), "privileged_remote_recovery")
}

test_privileged_remote_recovery_not_for_access_actions if {
	c := f.case({"request": {"action": "role_change"}, "target": {"privilege_tier": 3}})
	f.lacks(f.recovery(c), "privileged_remote_recovery")
}

test_privileged_remote_recovery_tier_is_config if {
	c := f.case({"target": {"privilege_tier": 1}, "config": {"privileged_tier": 2}})
	f.lacks(f.recovery(c), "privileged_remote_recovery")
}

# ---------------------------------------------------- third_party_recovery

test_third_party_recovery_for_every_related_third_party if {
	every rel in ["manager", "owner", "helpdesk_agent", "admin"] {
		c := f.case({"actor": {"id": "u-900", "relationship": rel}})
		r := f.reason(f.recovery(c), "third_party_recovery")
		r.level == "callback"
		r.refs == ["CISA-AA23-320A", "NIST-SP-800-63B-4", "NIST-CSF-2.0:PR.AA-02"]
	}
}

test_third_party_recovery_message_names_the_relationship if {
	r := f.reason(f.recovery(f.case({"actor": manager})), "third_party_recovery")
	r.message == "Recovery requested by a requester other than the account holder (relationship to the holder: manager): confirm with the holder through a callback to their contact of record."
}

test_third_party_recovery_message_reads_for_any_requester if {
	# No possessive ("the holder's helpdesk_agent"): the sentence must read
	# right for an AI agent or a service acting as a helpdesk agent or admin too.
	every actor_type in ["human", "ai_agent", "service"] {
		third_party_message_reads(actor_type)
	}
}

# A helper, not a nested `every`: rego-cpp mis-evaluates an inner `every`
# that reads the outer one's variables.
third_party_message_reads(actor_type) if {
	every rel in ["manager", "owner", "helpdesk_agent", "admin"] {
		c := f.case({"actor": {"id": "u-900", "type": actor_type, "relationship": rel}})
		r := f.reason(f.recovery(c), "third_party_recovery")
		r.message == sprintf("Recovery requested by a requester other than the account holder (relationship to the holder: %v): confirm with the holder through a callback to their contact of record.", [rel])
	}
}

test_third_party_recovery_not_for_self if {
	f.lacks(f.recovery(f.case({})), "third_party_recovery")
}

test_third_party_recovery_not_for_unrelated if {
	# An unrelated requester is denied instead.
	rs := f.recovery(f.case({"actor": {"id": "u-900", "relationship": "other"}}))
	f.lacks(rs, "third_party_recovery")
	f.has(rs, "unrelated_requester")
}

test_third_party_recovery_not_for_nhi_targets if {
	f.lacks(f.recovery(f.cases(f.nhi, {"request": {"action": "password_reset"}})), "third_party_recovery")
}

test_third_party_recovery_not_for_other_actions if {
	c := f.case({"request": {"action": "access_grant"}, "actor": manager})
	f.lacks(f.recovery(c), "third_party_recovery")
}

# ------------------------------------------------------- unrelated_requester

stranger := {"id": "u-666", "relationship": "other"}

test_unrelated_requester_denied_recovery if {
	every action in cfg.recovery_actions {
		c := f.case({"request": {"action": action}, "actor": stranger})
		f.level_of(f.recovery(c), "unrelated_requester") == "deny"
	}
}

test_unrelated_requester_denied_access_changes if {
	every action in cfg.access_actions {
		c := f.case({"request": {"action": action}, "actor": stranger})
		f.level_of(f.recovery(c), "unrelated_requester") == "deny"
	}
}

test_unrelated_requester_refs if {
	r := f.reason(f.recovery(f.case({"actor": stranger})), "unrelated_requester")
	r.refs == ["CISA-AA23-320A", "NIST-CSF-2.0:PR.AA-05", "NIST-CSF-1.1:PR.AC-1"]
}

test_unrelated_requester_may_ask_for_information if {
	c := f.case({"request": {"action": "info_request"}, "actor": stranger})
	f.lacks(f.recovery(c), "unrelated_requester")
}

test_unrelated_requester_may_contain if {
	every action in cfg.containment_actions {
		c := f.case({"request": {"action": action}, "actor": stranger})
		f.lacks(f.recovery(c), "unrelated_requester")
	}
}

test_unrelated_requester_not_for_nhi_targets if {
	# NHIs have their own ownership rule (nhi_requester_not_owner).
	c := f.cases(f.nhi, {"actor": stranger})
	f.lacks(f.recovery(c), "unrelated_requester")
}

test_unrelated_requester_not_for_self if {
	f.lacks(f.recovery(f.case({})), "unrelated_requester")
}

# ------------------------------------------------ chained_credential_change

test_chained_credential_change_at_the_window if {
	# Boundary: exactly chained_change_window_hours is inside the window.
	c := f.case({"context": {"recent_credential_change_hours": cfg.chained_change_window_hours}})
	r := f.reason(f.recovery(c), "chained_credential_change")
	r.level == "callback"
	r.message == "A factor or contact change within 72 hours of another credential change fits a chained account-takeover pattern."
}

test_chained_credential_change_just_outside_the_window if {
	c := f.case({"context": {"recent_credential_change_hours": cfg.chained_change_window_hours + 1}})
	f.lacks(f.recovery(c), "chained_credential_change")
}

test_chained_credential_change_right_after if {
	c := f.case({"context": {"recent_credential_change_hours": 0}})
	f.has(f.recovery(c), "chained_credential_change")
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

test_chained_credential_change_not_for_unlock if {
	# account_unlock recovers access without changing a credential.
	c := f.case({"request": {"action": "account_unlock"}, "context": {"recent_credential_change_hours": 1}})
	f.lacks(f.recovery(c), "chained_credential_change")
}

test_chained_credential_change_window_is_config if {
	c := f.case({"context": {"recent_credential_change_hours": 48}, "config": {"chained_change_window_hours": 24}})
	f.lacks(f.recovery(c), "chained_credential_change")
}
