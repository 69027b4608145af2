# Unit tests for baseline.rego: the level per action, the requester's
# authentication, the target's lifecycle status, emergencies.
package helpdesk.baseline_test

import rego.v1

import data.helpdesk.fixtures_test as f

cfg := data.helpdesk.config

unauthenticated := {"authenticated": false, "auth_strength": "none"}

# ------------------------------------------------------------ action_baseline

test_action_baseline_on_every_action_at_its_config_level if {
	every action in f.actions {
		r := f.reason(f.baseline(f.case({"request": {"action": action}})), "action_baseline")
		r.level == cfg.action_baseline[action]
	}
}

test_action_baseline_stock_levels if {
	f.level_of(f.baseline(f.case({"request": {"action": "info_request"}})), "action_baseline") == "self_service"
	f.level_of(f.baseline(f.case({"request": {"action": "mfa_reset"}})), "action_baseline") == "step_up"
	f.level_of(f.baseline(f.case({"request": {"action": "role_change"}})), "action_baseline") == "manager_approval"
	f.level_of(f.baseline(f.case({"request": {"action": "delegated_admin"}})), "action_baseline") == "callback"
}

test_action_baseline_message if {
	r := f.reason(f.baseline(f.case({})), "action_baseline")
	r.message == "mfa_reset starts at step_up for an authenticated requester acting on their own account with no risk signal."
}

test_action_baseline_refs_for_access_actions if {
	r := f.reason(f.baseline(f.case({"request": {"action": "access_grant"}})), "action_baseline")
	r.refs == ["NIST-CSF-2.0:PR.AA-05", "NIST-CSF-1.1:PR.AC-1"]
}

test_action_baseline_refs_for_other_actions if {
	r := f.reason(f.baseline(f.case({})), "action_baseline")
	r.refs == ["NIST-CSF-2.0:PR.AA-01", "NIST-CSF-1.1:PR.AC-1"]
}

test_action_baseline_is_config if {
	baseline := object.union(cfg.action_baseline, {"info_request": "step_up"})
	c := f.case({"request": {"action": "info_request"}, "config": {"action_baseline": baseline}})
	f.level_of(f.baseline(c), "action_baseline") == "step_up"
}

test_only_the_action_baseline_for_a_clean_request if {
	# It always fires, once; nothing else in baseline.rego fires for the base case.
	f.codes(f.baseline(f.case({}))) == {"action_baseline"}
}

# ------------------------------------------------- requester_unauthenticated

test_requester_unauthenticated_fires if {
	r := f.reason(f.baseline(f.case({"actor": unauthenticated})), "requester_unauthenticated")
	r.level == "step_up"
	r.refs == ["NIST-CSF-2.0:PR.AA-03", "NIST-SP-800-63B-4", "CISA-AA23-320A"]
}

test_requester_unauthenticated_fires_on_containment if {
	c := f.case({"request": {"action": "token_revoke"}, "actor": unauthenticated})
	f.has(f.baseline(c), "requester_unauthenticated")
}

test_requester_unauthenticated_exempts_info_request if {
	c := f.case({"request": {"action": "info_request"}, "actor": unauthenticated})
	f.lacks(f.baseline(c), "requester_unauthenticated")
}

test_requester_unauthenticated_not_when_authenticated if {
	f.lacks(f.baseline(f.case({})), "requester_unauthenticated")
}

test_requester_unauthenticated_when_flag_set_but_no_factor if {
	c := f.case({"actor": {"authenticated": true, "auth_strength": "none"}})
	f.has(f.baseline(c), "requester_unauthenticated")
}

# ------------------------------------------------------- weak_authentication

test_weak_authentication_below_min_strength if {
	r := f.reason(f.baseline(f.case({"actor": {"auth_strength": "password"}})), "weak_authentication")
	r.level == "step_up"
	r.message == "The requester authenticated with password; mfa or stronger is needed to act without a step-up."
}

test_weak_authentication_not_at_min_strength if {
	# Boundary: exactly the configured min_auth_strength (mfa) is enough.
	cfg.min_auth_strength == "mfa"
	f.lacks(f.baseline(f.case({"actor": {"auth_strength": "mfa"}})), "weak_authentication")
}

test_weak_authentication_not_above_min_strength if {
	f.lacks(f.baseline(f.case({"actor": {"auth_strength": "phishing_resistant"}})), "weak_authentication")
}

test_weak_authentication_not_for_unauthenticated if {
	# An unauthenticated requester gets requester_unauthenticated instead.
	rs := f.baseline(f.case({"actor": unauthenticated}))
	f.lacks(rs, "weak_authentication")
	f.has(rs, "requester_unauthenticated")
}

test_weak_authentication_exempts_info_request if {
	c := f.case({"request": {"action": "info_request"}, "actor": {"auth_strength": "password"}})
	f.lacks(f.baseline(c), "weak_authentication")
}

test_weak_authentication_min_strength_is_config if {
	c := f.case({"config": {"min_auth_strength": "phishing_resistant"}})
	r := f.reason(f.baseline(c), "weak_authentication")
	r.message == "The requester authenticated with mfa; phishing_resistant or stronger is needed to act without a step-up."
}

# --------------------------------------------------------- target_offboarded

test_target_offboarded_denies if {
	r := f.reason(f.baseline(f.case({"target": {"status": "offboarded"}})), "target_offboarded")
	r.level == "deny"
	r.refs == ["NIST-CSF-2.0:PR.AA-01", "OWASP-NHI-2025:NHI1"]
}

test_target_offboarded_denies_info_request if {
	c := f.case({"request": {"action": "info_request"}, "target": {"status": "offboarded"}})
	f.has(f.baseline(c), "target_offboarded")
}

test_target_offboarded_allows_containment if {
	every action in cfg.containment_actions {
		c := f.case({"request": {"action": action}, "target": {"status": "offboarded"}})
		f.lacks(f.baseline(c), "target_offboarded")
	}
}

test_target_offboarded_not_for_active_or_suspended if {
	f.lacks(f.baseline(f.case({})), "target_offboarded")
	f.lacks(f.baseline(f.case({"target": {"status": "suspended"}})), "target_offboarded")
}

# ---------------------------------------------------------- target_suspended

test_target_suspended_needs_manager_approval if {
	r := f.reason(f.baseline(f.case({"target": {"status": "suspended"}})), "target_suspended")
	r.level == "manager_approval"
}

test_target_suspended_exempts_containment if {
	every action in cfg.containment_actions {
		c := f.case({"request": {"action": action}, "target": {"status": "suspended"}})
		f.lacks(f.baseline(c), "target_suspended")
	}
}

test_target_suspended_exempts_info_request if {
	c := f.case({"request": {"action": "info_request"}, "target": {"status": "suspended"}})
	f.lacks(f.baseline(c), "target_suspended")
}

test_target_suspended_not_for_active if {
	f.lacks(f.baseline(f.case({})), "target_suspended")
}

# --------------------------------------------------------------- break_glass

test_break_glass_on_emergency if {
	r := f.reason(f.baseline(f.case({"request": {"emergency": true}})), "break_glass")
	r.level == "self_service"
	r.refs == ["NIST-CSF-2.0:PR.AA-05"]
}

test_break_glass_not_without_emergency if {
	f.lacks(f.baseline(f.case({"request": {"emergency": false}})), "break_glass")
}
