# Unit tests for access.rego: privileged and VIP targets on impersonable
# paths, and the privilege tier of the access asked for.
package helpdesk.access_test

import rego.v1

import data.helpdesk.access
import data.helpdesk.fixtures_test as f

cfg := data.helpdesk.config

tier(n) := c if {
	patch := {"request": {"action": "access_grant", "channel": "walk_in"}, "target": {"privilege_tier": n}}
	c := f.case(patch)
}

containment := {a | some a in cfg.containment_actions}

routine := containment | {"info_request"}

routine_or_unlock := routine | {"account_unlock"}

guarded_credential_actions := ((f.actions - containment) - {"info_request", "account_unlock"})

# ---------------------------------------------------------- privileged_target

test_privileged_target_at_privileged_tier_needs_manager_approval if {
	# Boundary: tier == privileged_tier (1), below callback_tier (2).
	f.gives(f.access(tier(cfg.privileged_tier)), "privileged_target", "manager_approval", [1])
}

test_privileged_target_at_callback_tier_needs_callback if {
	# Boundary: tier == callback_tier.
	f.gives(f.access(tier(cfg.callback_tier)), "privileged_target", "callback", [2])
}

test_privileged_target_above_callback_tier_needs_callback if {
	f.gives(f.access(tier(9)), "privileged_target", "callback", [9])
}

test_privileged_target_not_below_privileged_tier if {
	f.lacks(f.access(tier(cfg.privileged_tier - 1)), "privileged_target")
}

test_privileged_flag_counts_as_privileged_tier if {
	c := f.case({"target": {"privileged": true, "privilege_tier": 0}})
	f.gives(f.access(c), "privileged_target", "manager_approval", [1])
}

test_privileged_target_on_every_guarded_credential_action if {
	every action in guarded_credential_actions {
		c := f.case({"request": {"action": action}, "target": {"privilege_tier": 2}})
		f.has(f.access(c), "privileged_target")
	}
}

test_privileged_target_exempts_an_unlock if {
	c := f.case({"request": {"action": "account_unlock"}, "target": {"privilege_tier": 9}})
	f.lacks(f.access(c), "privileged_target")
}

test_privileged_target_exempts_routine_actions if {
	every action in routine {
		c := f.case({"request": {"action": action}, "target": {"privilege_tier": 9}})
		f.lacks(f.access(c), "privileged_target")
	}
}

test_privileged_target_not_on_strong_self_service if {
	c := f.cases(f.strong_self, {"target": {"privilege_tier": 3}})
	f.lacks(f.access(c), "privileged_target")
}

test_privileged_target_on_a_phishable_portal_session if {
	# Push MFA in the portal is not strong enough for authenticator changes,
	# but it is the holder's own strong session: not impersonable.
	c := f.cases(f.strong_self, {"actor": {"auth_strength": "mfa"}, "target": {"privilege_tier": 3}})
	f.lacks(f.access(c), "privileged_target")
	weak := f.cases(f.strong_self, {"actor": {"auth_strength": "password"}, "target": {"privilege_tier": 3}})
	f.has(f.access(weak), "privileged_target")
}

test_privileged_target_not_on_the_nhi_hygiene_paths if {
	f.lacks(f.access(f.cases(f.owner_rotation, {"target": {"privilege_tier": 3}})), "privileged_target")
	f.lacks(f.access(f.cases(f.workload_self, {"target": {"privilege_tier": 3}})), "privileged_target")
}

# Config is data: the same target, tier 2, under a raised callback_tier.
test_raised_callback_tier_lowers_tier_2_to_manager_approval if {
	c := f.case({"request": {"action": "access_grant"}, "target": {"privilege_tier": 2}, "config": {"callback_tier": 3}})
	f.level_of(f.access(c), "privileged_target") == "manager_approval"
	f.level_of(f.access(object.union(c, {"config": cfg})), "privileged_target") == "callback"
}

# The same, mocking the config at the test site with `with data.helpdesk.config`.
test_config_is_data_with_data_helpdesk_config if {
	c := tier(2)
	raised := object.union(cfg, {"callback_tier": 3})
	req := c.request
	act := c.actor
	tgt := c.target
	ctx := c.context
	rs := access.reasons with input.request as req
		with input.actor as act
		with input.target as tgt
		with input.context as ctx
		with data.helpdesk.config as raised
	f.level_of(rs, "privileged_target") == "manager_approval"
}

test_raised_privileged_tier_unflags_tier_1 if {
	c := f.case({"target": {"privilege_tier": 1}, "config": {"privileged_tier": 2, "callback_tier": 3}})
	f.lacks(f.access(c), "privileged_target")
}

# ----------------------------------------------------------------- vip_target

test_vip_target_at_vip_level if {
	f.gives(f.access(f.case({"target": {"vip": true}})), "vip_target", cfg.vip_level, [])
	cfg.vip_level == "manager_approval"
}

test_vip_target_not_for_non_vip if {
	f.lacks(f.access(f.case({})), "vip_target")
}

test_vip_target_exempts_routine_actions_and_an_unlock if {
	every action in routine_or_unlock {
		f.lacks(f.access(f.case({"request": {"action": action}, "target": {"vip": true}})), "vip_target")
	}
}

test_vip_target_not_on_strong_self_service if {
	f.lacks(f.access(f.cases(f.strong_self, {"target": {"vip": true}})), "vip_target")
}

test_vip_level_is_config if {
	c := f.case({"target": {"vip": true}, "config": {"vip_level": "callback"}})
	f.level_of(f.access(c), "vip_target") == "callback"
}

# -------------------------------------------------------- requested_privilege

grant(action, requested) := c if {
	patch := {"request": {"action": action, "channel": "walk_in", "requested_privilege_tier": requested}}
	c := f.case(patch)
}

test_requested_privilege_below_privileged_tier_adds_nothing if {
	every action in access.grant_actions {
		f.lacks(f.access(grant(action, 0)), "requested_privilege")
	}
}

test_requested_privilege_at_privileged_tier_needs_approval if {
	every action in access.grant_actions {
		f.gives(f.access(grant(action, cfg.privileged_tier)), "requested_privilege", "manager_approval", [1])
	}
}

test_requested_privilege_at_callback_tier_needs_a_callback if {
	f.gives(f.access(grant("access_grant", cfg.callback_tier)), "requested_privilege", "callback", [2])
	f.gives(f.access(grant("role_change", 9)), "requested_privilege", "callback", [9])
}

test_an_unstated_grant_is_read_as_privileged if {
	every action in ["access_grant", "role_change"] {
		c := grant(action, null)
		f.gives(f.access(c), "requested_privilege.unknown", "manager_approval", [cfg.privileged_tier])
	}
}

# Leaving the requested tier out never lowers a decision below what the
# target's own tier gave before the strong paths (v1's privileged_target).
test_an_unstated_grant_is_at_least_the_target_s_tier if {
	every action in grant_actions {
		low := f.case({"request": {"action": action, "channel": "walk_in"}})
		f.gives(f.access(low), "requested_privilege.unknown", "manager_approval", [cfg.privileged_tier])
		high := f.case({"request": {"action": action, "channel": "walk_in"}, "target": {"privilege_tier": 4}})
		f.gives(f.access(high), "requested_privilege.unknown", "callback", [4])
	}
}

test_an_unstated_elevation_counts_the_privileged_flag if {
	c := f.case({"request": {"action": "privilege_elevation"}, "target": {"privileged": true, "privilege_tier": 0}})
	f.gives(f.access(c), "requested_privilege.unknown", "manager_approval", [cfg.privileged_tier])
}

test_requested_privilege_only_for_grants if {
	every action in ["oauth_consent", "service_account_create", "mfa_reset", "api_key_reissue"] {
		c := f.case({"request": {"action": action, "requested_privilege_tier": 9}})
		f.lacks(f.access(c), "requested_privilege")
	}
}

test_requested_privilege_tiers_are_config if {
	c := f.case({
		"request": {"action": "access_grant", "requested_privilege_tier": 2},
		"config": {"privileged_tier": 2, "callback_tier": 3},
	})
	f.gives(f.access(c), "requested_privilege", "manager_approval", [2])
	unstated := f.case({"request": {"action": "access_grant"}, "config": {"privileged_tier": 3, "callback_tier": 3}})
	f.gives(f.access(unstated), "requested_privilege.unknown", "callback", [3])
}

grant_actions := ["access_grant", "role_change", "privilege_elevation", "delegated_admin"]

test_an_unstated_grant_on_a_strong_path_keeps_the_target_s_tier if {
	# An admin's own MFA portal session: privileged_target does not fire, the unknown request does.
	c := f.case({"request": {"action": "role_change", "channel": "self_service_portal"}, "target": {"privilege_tier": 2}})
	f.lacks(f.access(c), "privileged_target")
	f.gives(f.access(c), "requested_privilege.unknown", "callback", [2])
}
