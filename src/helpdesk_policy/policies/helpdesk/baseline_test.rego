# Unit tests for baseline.rego: the level per action (and the two strong
# paths that start lower), the requester's authentication, the target's
# lifecycle status, emergencies.
package helpdesk.baseline_test

import rego.v1

import data.helpdesk.fixtures_test as f

cfg := data.helpdesk.config

unauthenticated := {"authenticated": false, "auth_strength": "none"}

containment := {a | some a in cfg.containment_actions}

routine := {"info_request"} | containment

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
	f.level_of(f.baseline(f.case({"request": {"action": "temporary_access_pass"}})), "action_baseline") == "step_up"
	f.level_of(f.baseline(f.case({"request": {"action": "role_change"}})), "action_baseline") == "manager_approval"
	f.level_of(f.baseline(f.case({"request": {"action": "oauth_consent"}})), "action_baseline") == "self_service"
	f.level_of(f.baseline(f.case({"request": {"action": "delegated_admin"}})), "action_baseline") == "callback"
}

test_action_baseline_names_the_action_and_level if {
	f.gives(f.baseline(f.case({})), "action_baseline", "step_up", ["mfa_reset", "step_up"])
}

test_action_baseline_for_access_actions_cites_access_control if {
	c := f.case({"request": {"action": "access_grant"}})
	f.gives(f.baseline(c), "action_baseline.access", "manager_approval", ["access_grant", "manager_approval"])
	f.reason(f.baseline(c), "action_baseline").refs == ["NIST-CSF-2.0:PR.AA-05", "NIST-CSF-1.1:PR.AC-1"]
}

test_action_baseline_for_other_actions_cites_identities if {
	f.reason(f.baseline(f.case({})), "action_baseline").refs == ["NIST-CSF-2.0:PR.AA-01", "NIST-CSF-1.1:PR.AC-1"]
}

test_action_baseline_message_claims_nothing_about_the_requester if {
	# v1 said "for an authenticated requester acting on their own account",
	# which was false for most requests.
	r := f.reason(f.baseline(f.case({"actor": f.stranger})), "action_baseline")
	not contains(r.message, "authenticated")
	not contains(r.message, "own account")
}

test_action_baseline_is_config if {
	baseline := object.union(cfg.action_baseline, {"info_request": "step_up"})
	c := f.case({"request": {"action": "info_request"}, "config": {"action_baseline": baseline}})
	f.level_of(f.baseline(c), "action_baseline") == "step_up"
}

test_only_the_action_baseline_for_a_clean_request if {
	f.codes(f.baseline(f.case({}))) == {"action_baseline"}
}

# ----------------------------------------------- strong self-service baseline

test_strong_self_service_starts_at_self_service if {
	every action in cfg.strong_self_service_actions {
		c := f.cases(f.strong_self, {"request": {"action": action}})
		f.gives(f.baseline(c), "action_baseline.strong_self_service", "self_service", [action, "phishing_resistant"])
	}
}

test_strong_self_service_whoever_the_holder_is if {
	# Escalations for privileged and VIP targets belong on impersonable paths.
	c := f.cases(f.strong_self, {"request": {"action": "mfa_add_factor"}, "target": {"privilege_tier": 3, "vip": true}})
	f.level_of(f.baseline(c), "action_baseline") == "self_service"
}

test_no_strong_self_service_below_its_strength if {
	c := f.cases(f.strong_self, {"actor": {"auth_strength": "mfa"}})
	f.gives(f.baseline(c), "action_baseline", "step_up", ["mfa_reset", "step_up"])
}

test_strong_self_service_strength_is_config if {
	c := f.cases(f.strong_self, {"actor": {"auth_strength": "mfa"}, "config": {"strong_self_service_auth": "mfa"}})
	f.gives(f.baseline(c), "action_baseline.strong_self_service", "self_service", ["mfa_reset", "mfa"])
}

test_no_strong_self_service_off_the_portal if {
	every channel in ["walk_in", "api", "chat", "email", "phone"] {
		c := f.cases(f.strong_self, {"request": {"channel": channel}})
		f.level_of(f.baseline(c), "action_baseline") == "step_up"
	}
}

test_no_strong_self_service_for_someone_else if {
	c := f.cases(f.strong_self, {"actor": {"id": "u-900", "relationship": "manager"}})
	f.level_of(f.baseline(c), "action_baseline") == "step_up"
}

test_no_strong_self_service_for_an_agent_relaying_the_holder if {
	c := f.cases(f.strong_self, {"actor": f.agent})
	f.level_of(f.baseline(c), "action_baseline") == "step_up"
}

test_no_strong_self_service_for_other_actions if {
	every action in ["temporary_access_pass", "access_grant"] {
		c := f.cases(f.strong_self, {"request": {"action": action}})
		f.level_of(f.baseline(c), "action_baseline") == cfg.action_baseline[action]
	}
}

test_strong_self_service_actions_are_config if {
	c := f.cases(f.strong_self, {"config": {"strong_self_service_actions": ["password_reset"]}})
	f.level_of(f.baseline(c), "action_baseline") == "step_up"
}

# ----------------------------------------------------- workload self baseline

test_workload_rotating_itself_starts_at_self_service if {
	every action in cfg.nhi_credential_actions {
		c := f.cases(f.workload_self, {"request": {"action": action}})
		f.gives(f.baseline(c), "action_baseline.workload_self", "self_service", [action, "phishing_resistant"])
	}
}

test_workload_self_baseline_needs_strong_workload_authentication if {
	c := f.cases(f.workload_self, {"actor": {"auth_strength": "mfa"}})
	f.gives(f.baseline(c), "action_baseline", "step_up", ["secret_rotation", "step_up"])
}

# ------------------------------------------------------ owner rotation baseline

owner_strong := {"request": {"channel": "self_service_portal", "action": "secret_rotation"}, "actor": {"auth_strength": "phishing_resistant"}}

# Section by section (rego-cpp's object.union is shallow).
owner_rotating(patch) := f.case(f.combine(f.combine(f.nhi, owner_strong), patch))

test_an_owner_rotating_with_phishing_resistant_auth_starts_at_self_service if {
	# (Not nested `every`: rego-cpp does not read it like OPA.)
	combos := [[a, ch] | some a in cfg.nhi_credential_actions; some ch in ["self_service_portal", "walk_in", "api"]]
	passing := [combo |
		some combo in combos
		c := owner_rotating({"request": {"action": combo[0], "channel": combo[1]}})
		f.gives(f.baseline(c), "action_baseline.owner_rotation", "self_service", [combo[0], "phishing_resistant"])
	]
	count(combos) == 6
	count(passing) == count(combos)
}

test_owner_rotation_needs_the_strong_self_service_strength if {
	c := owner_rotating({"actor": {"auth_strength": "mfa"}})
	f.gives(f.baseline(c), "action_baseline", "step_up", ["secret_rotation", "step_up"])
}

test_owner_rotation_not_over_a_remote_channel_nor_by_a_non_owner_nor_for_access if {
	f.level_of(f.baseline(owner_rotating({"request": {"channel": "chat"}})), "action_baseline") == "step_up"
	f.level_of(f.baseline(owner_rotating({"actor": {"id": "u-300"}})), "action_baseline") == "step_up"
	f.level_of(f.baseline(owner_rotating({"actor": {"auth_strength": "phishing_resistant"}})), "action_baseline") == "self_service"
	f.level_of(f.baseline(owner_rotating({"target": {"owner_active": false}})), "action_baseline") == "step_up"
	f.level_of(f.baseline(owner_rotating({"request": {"action": "role_change"}})), "action_baseline") == "manager_approval"
}

test_workload_self_baseline_only_for_its_own_credential if {
	c := f.cases(f.workload_self, {"request": {"action": "role_change"}})
	f.gives(f.baseline(c), "action_baseline.access", "manager_approval", ["role_change", "manager_approval"])
}

test_the_owner_path_keeps_the_config_baseline if {
	# The owner re-verifies (step_up); only the workload itself starts lower.
	f.gives(f.baseline(f.case(f.owner_rotation)), "action_baseline", "step_up", ["secret_rotation", "step_up"])
}

# ------------------------------------------------- requester_unauthenticated

test_requester_unauthenticated if {
	f.gives(f.baseline(f.case({"actor": unauthenticated})), "requester_unauthenticated", "step_up", [])
}

test_requester_unauthenticated_on_every_action if {
	# An unauthenticated question is reconnaissance until verified: no exemption.
	every action in f.actions {
		c := f.case({"request": {"action": action}, "actor": unauthenticated})
		f.has(f.baseline(c), "requester_unauthenticated")
	}
}

test_requester_unauthenticated_not_when_authenticated if {
	f.lacks(f.baseline(f.case({})), "requester_unauthenticated")
}

test_requester_unauthenticated_when_flag_set_but_no_factor if {
	c := f.case({"actor": {"authenticated": true, "auth_strength": "none"}})
	f.has(f.baseline(c), "requester_unauthenticated")
	f.lacks(f.baseline(c), "weak_authentication")
}

# ------------------------------------------------------- weak_authentication

test_weak_authentication_below_min_strength if {
	c := f.case({"actor": {"auth_strength": "password"}})
	f.gives(f.baseline(c), "weak_authentication", "step_up", ["password", "mfa"])
}

test_weak_authentication_not_at_min_strength if {
	f.lacks(f.baseline(f.case({})), "weak_authentication")
	f.lacks(f.baseline(f.case({"actor": {"auth_strength": "phishing_resistant"}})), "weak_authentication")
}

test_weak_authentication_on_an_information_request if {
	c := f.case({"request": {"action": "info_request"}, "actor": {"auth_strength": "password"}})
	f.has(f.baseline(c), "weak_authentication")
}

test_weak_authentication_not_when_unauthenticated if {
	f.lacks(f.baseline(f.case({"actor": unauthenticated})), "weak_authentication")
}

test_min_auth_strength_is_config if {
	c := f.case({"config": {"min_auth_strength": "phishing_resistant"}})
	f.gives(f.baseline(c), "weak_authentication", "step_up", ["mfa", "phishing_resistant"])
}

# ---------------------------------------------------------- target_offboarded

test_target_offboarded_denies_every_non_containment_action if {
	every action in f.actions - containment {
		c := f.case({"request": {"action": action}, "target": {"status": "offboarded"}})
		f.gives(f.baseline(c), "target_offboarded", "deny", [])
	}
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

test_target_suspended_needs_approval if {
	f.gives(f.baseline(f.case({"target": {"status": "suspended"}})), "target_suspended", "manager_approval", [])
}

test_target_suspended_not_for_routine_actions if {
	every action in routine {
		c := f.case({"request": {"action": action}, "target": {"status": "suspended"}})
		f.lacks(f.baseline(c), "target_suspended")
	}
}

test_target_suspended_not_for_active if {
	f.lacks(f.baseline(f.case({})), "target_suspended")
}

# ---------------------------------------------------------------- break_glass

test_break_glass_never_raises_and_names_the_review_deadline if {
	c := f.case({"request": {"emergency": true}})
	f.gives(f.baseline(c), "break_glass", "self_service", [cfg.post_incident_review_within_hours])
}

test_break_glass_review_deadline_is_config if {
	c := f.case({"request": {"emergency": true}, "config": {"post_incident_review_within_hours": 24}})
	f.gives(f.baseline(c), "break_glass", "self_service", [24])
}

test_break_glass_not_without_emergency if {
	f.lacks(f.baseline(f.case({})), "break_glass")
}
