# Unit tests for access.rego: privilege tiers and VIP targets.
package helpdesk.access_test

import rego.v1

import data.helpdesk.access
import data.helpdesk.fixtures_test as f

cfg := data.helpdesk.config

tier(n) := f.case({"request": {"action": "access_grant", "channel": "walk_in"}, "target": {"privilege_tier": n}})

# ---------------------------------------------------------- privileged_target

test_privileged_target_at_privileged_tier_needs_manager_approval if {
	# Boundary: tier == privileged_tier (1), below callback_tier (2).
	r := f.reason(f.access(tier(cfg.privileged_tier)), "privileged_target")
	r.level == "manager_approval"
	r.message == "The target holds privileged access (tier 1)."
	r.refs == ["NIST-CSF-2.0:PR.AA-05", "NIST-CSF-1.1:PR.AC-1", "CISA-AA23-320A"]
}

test_privileged_target_at_callback_tier_needs_callback if {
	# Boundary: tier == callback_tier.
	f.level_of(f.access(tier(cfg.callback_tier)), "privileged_target") == "callback"
}

test_privileged_target_above_callback_tier_needs_callback if {
	f.level_of(f.access(tier(9)), "privileged_target") == "callback"
}

test_privileged_target_not_below_privileged_tier if {
	f.lacks(f.access(tier(cfg.privileged_tier - 1)), "privileged_target")
}

test_privileged_flag_counts_as_privileged_tier if {
	c := f.case({"target": {"privileged": true, "privilege_tier": 0}})
	r := f.reason(f.access(c), "privileged_target")
	r.level == "manager_approval"
	r.message == "The target holds privileged access (tier 1)."
}

test_privileged_target_on_every_guarded_action if {
	every action in f.actions - ({"info_request"} | {a | some a in cfg.containment_actions}) {
		c := f.case({"request": {"action": action}, "target": {"privilege_tier": 2}})
		f.has(f.access(c), "privileged_target")
	}
}

test_privileged_target_exempts_containment if {
	every action in cfg.containment_actions {
		c := f.case({"request": {"action": action}, "target": {"privilege_tier": 9}})
		f.lacks(f.access(c), "privileged_target")
	}
}

test_privileged_target_exempts_info_request if {
	c := f.case({"request": {"action": "info_request"}, "target": {"privilege_tier": 9}})
	f.lacks(f.access(c), "privileged_target")
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
	r := f.reason(f.access(f.case({"target": {"vip": true}})), "vip_target")
	r.level == cfg.vip_level
	r.level == "manager_approval"
	r.refs == ["CISA-AA23-320A"]
}

test_vip_target_not_for_non_vip if {
	f.lacks(f.access(f.case({})), "vip_target")
}

test_vip_target_exempts_containment if {
	every action in cfg.containment_actions {
		f.lacks(f.access(f.case({"request": {"action": action}, "target": {"vip": true}})), "vip_target")
	}
}

test_vip_target_exempts_info_request if {
	f.lacks(f.access(f.case({"request": {"action": "info_request"}, "target": {"vip": true}})), "vip_target")
}

test_vip_level_is_config if {
	c := f.case({"target": {"vip": true}, "config": {"vip_level": "callback"}})
	f.level_of(f.access(c), "vip_target") == "callback"
}
