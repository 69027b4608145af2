# Unit tests for common.rego: the facts every concern shares.
package helpdesk.common_test

import rego.v1

import data.helpdesk.fixtures_test as f

cfg := data.helpdesk.config

facts_for(action) := f.facts(f.case({"request": {"action": action}}))

test_action_is_the_requested_action if {
	f.facts(f.case({})).action == "mfa_reset"
}

test_info_request_is_routine if {
	fs := facts_for("info_request")
	fs.routine == true
	fs.guarded == false
}

test_containment_actions_are_routine if {
	every action in cfg.containment_actions {
		fs := facts_for(action)
		fs.routine == true
		fs.guarded == false
		fs.is_containment == true
	}
}

test_other_actions_are_guarded if {
	routine := {"info_request", "token_revoke", "credential_revoke", "account_disable"}
	every action in f.actions - routine {
		fs := facts_for(action)
		fs.guarded == true
		fs.routine == false
		fs.is_containment == false
	}
}

test_containment_is_config if {
	# Drop account_disable from containment: it becomes guarded.
	c := f.case({"request": {"action": "account_disable"}, "config": {"containment_actions": ["token_revoke"]}})
	fs := f.facts(c)
	fs.guarded == true
	fs.is_containment == false
}

test_recovery_actions if {
	every action in cfg.recovery_actions {
		facts_for(action).is_recovery == true
	}
	facts_for("access_grant").is_recovery == false
	facts_for("info_request").is_recovery == false
}

test_access_actions if {
	every action in cfg.access_actions {
		facts_for(action).is_access == true
	}
	facts_for("mfa_reset").is_access == false
	facts_for("token_revoke").is_access == false
}

test_remote_channels if {
	every channel in ["phone", "email", "chat"] {
		f.facts(f.case({"request": {"channel": channel}})).remote_channel == true
	}
}

test_trusted_channels_are_not_remote if {
	every channel in ["self_service_portal", "walk_in", "api"] {
		f.facts(f.case({"request": {"channel": channel}})).remote_channel == false
	}
}

test_remote_channels_are_config if {
	c := f.case({"request": {"channel": "chat"}, "config": {"remote_channels": ["email", "phone"]}})
	f.facts(c).remote_channel == false
}

test_human_target_is_not_nhi if {
	fs := f.facts(f.case({}))
	fs.is_human == true
	fs.is_nhi == false
}

test_every_non_human_target_is_nhi if {
	every type in f.target_types - {"human"} {
		fs := f.facts(f.case({"target": {"type": type}}))
		fs.is_nhi == true
		fs.is_human == false
	}
}

test_authenticated_needs_a_factor if {
	f.facts(f.case({})).authenticated == true
	f.facts(f.case({"actor": {"authenticated": false, "auth_strength": "none"}})).authenticated == false
}

test_authenticated_flag_with_no_factor_is_not_authenticated if {
	# Inconsistent input (validation rejects it): read the weaker fact.
	f.facts(f.case({"actor": {"authenticated": true, "auth_strength": "none"}})).authenticated == false
}

test_base_rank_follows_the_action_baseline if {
	facts_for("info_request").base_rank == 0
	facts_for("mfa_reset").base_rank == 1
	facts_for("access_grant").base_rank == 2
	facts_for("delegated_admin").base_rank == 3
}

test_base_rank_is_config if {
	baseline := object.union(cfg.action_baseline, {"mfa_reset": "callback"})
	f.facts(f.case({"config": {"action_baseline": baseline}})).base_rank == 3
}

test_effective_tier_is_the_tier if {
	f.facts(f.case({"target": {"privilege_tier": 2}})).effective_tier == 2
	f.facts(f.case({})).effective_tier == 0
}

test_privileged_flag_lifts_tier_to_privileged_tier if {
	f.facts(f.case({"target": {"privileged": true, "privilege_tier": 0}})).effective_tier == cfg.privileged_tier
}

test_privileged_flag_keeps_a_higher_tier if {
	f.facts(f.case({"target": {"privileged": true, "privilege_tier": 3}})).effective_tier == 3
}

test_privileged_target_at_privileged_tier if {
	f.facts(f.case({"target": {"privilege_tier": cfg.privileged_tier}})).privileged_target == true
}

test_not_privileged_below_privileged_tier if {
	f.facts(f.case({"target": {"privilege_tier": cfg.privileged_tier - 1}})).privileged_target == false
}

test_privileged_tier_is_config if {
	c := f.case({"target": {"privilege_tier": 1}, "config": {"privileged_tier": 2, "callback_tier": 2}})
	f.facts(c).privileged_target == false
}

test_owner_is_listed_in_owners if {
	f.facts(f.case(f.nhi)).is_owner == true
}

test_non_owner if {
	f.facts(f.cases(f.nhi, {"actor": {"id": "u-999"}})).is_owner == false
}
