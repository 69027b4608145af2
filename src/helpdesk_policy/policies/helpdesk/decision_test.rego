# Unit tests for decision.rego: the strictest level wins, requirements follow
# the level, every concern's reasons are kept, the playbook names both.
package helpdesk.decision_test

import rego.v1

import data.helpdesk.fixtures_test as f
import data.helpdesk.levels

cfg := data.helpdesk.config

decide(patch) := f.decision(f.case(patch))

rank(level) := levels.rank[level]

# The level of the strictest reason, from the top down. (No max(): rego-cpp
# orders numbers as strings in min/max/sort.)
strictest(d) := "deny" if {
	some r in d.reasons
	r.level == "deny"
} else := "callback" if {
	some r in d.reasons
	r.level == "callback"
} else := "manager_approval" if {
	some r in d.reasons
	r.level == "manager_approval"
} else := "step_up" if {
	some r in d.reasons
	r.level == "step_up"
} else := "self_service" if {
	some r in d.reasons
	r.level == "self_service"
}

# A spread of requests, one or more per final level.
samples := [
	{"request": {"action": "info_request", "channel": "self_service_portal"}},
	{"request": {"action": "password_reset", "channel": "self_service_portal"}},
	{},
	{"request": {"action": "access_grant", "channel": "walk_in", "requested_privilege_tier": 0}},
	{"target": {"privilege_tier": 2}},
	{"request": {"action": "token_revoke"}, "actor": {"id": "u-500", "relationship": "helpdesk_agent"}},
	{"request": {"action": "info_request"}, "actor": {"id": "u-666", "relationship": "other"}},
	{"request": {"action": "oauth_consent", "channel": "self_service_portal"}, "actor": {"relationship": "admin"}, "target": {"id": "app-1", "type": "oauth_app"}},
	{"request": {"action": "delegated_admin", "channel": "walk_in"}},
	{"context": {"risk_signals": ["new_device", "off_hours"], "failed_verifications_24h": 1}},
	{"actor": {"id": "u-666", "relationship": "other"}},
	{"target": {"status": "offboarded", "privilege_tier": 3, "vip": true}, "context": {"risk_signals": ["leaked_credential"]}},
]

test_decision_has_the_spec_fields if {
	d := decide({})
	object.keys(d) == {"level", "allowed", "requirements", "reasons", "obligations", "playbook", "constraints"}
}

test_base_case if {
	d := decide({})
	d.level == "step_up"
	d.allowed == true
	d.requirements == ["identity_step_up"]
	f.codes(d.reasons) == {"action_baseline", "remote_channel_recovery"}
	d.playbook == "mfa-reset-step-up"
}

test_level_is_the_strictest_reason if {
	every patch in samples {
		d := decide(patch)
		d.level == strictest(d)
	}
}

test_samples_cover_every_level if {
	{decide(patch).level | some patch in samples} == f.level_names
}

test_self_service_says_why_nothing_more_is_needed if {
	d := decide({"request": {"action": "password_reset", "channel": "self_service_portal"}})
	d.level == "self_service"
	d.requirements == []
	f.codes(d.reasons) == {"action_baseline"}
	f.reason(d.reasons, "action_baseline").level == "self_service"
}

test_spec_example_privileged_phone_mfa_reset if {
	d := decide({"target": {"privileged": true, "privilege_tier": 2}, "context": {"risk_signals": ["new_device"]}})
	d.level == "callback"
	d.allowed == true
	d.requirements == ["identity_step_up", "manager_approval", "out_of_band_callback"]
	f.has(d.reasons, "privileged_target")
	f.has(d.reasons, "privileged_remote_recovery")
	d.playbook == "mfa-reset-callback"
}

# ------------------------------------------------------------------ deny wins

test_deny_wins_over_every_other_level if {
	d := decide({
		"target": {"status": "offboarded", "privilege_tier": 3, "vip": true},
		"context": {"risk_signals": ["leaked_credential", "new_device"], "failed_verifications_24h": 9},
	})
	d.level == "deny"
	d.allowed == false
	d.requirements == []
	f.has(d.reasons, "target_offboarded")
	f.has(d.reasons, "privileged_target")
	f.has(d.reasons, "risk_leaked_credential")
	d.playbook == "mfa-reset-deny"
}

test_allowed_unless_denied if {
	every patch in samples {
		d := decide(patch)
		d.allowed == (d.level != "deny")
	}
}

test_ai_agent_granting_itself_admin_is_denied if {
	d := decide({
		"request": {"action": "delegated_admin", "channel": "api"},
		"actor": {"id": "agent-7", "type": "ai_agent", "relationship": "self", "on_behalf_of": "u-1"},
		"target": {"id": "agent-7", "type": "ai_agent", "owners": ["u-1"], "owner_active": true},
	})
	d.level == "deny"
	f.has(d.reasons, "ai_agent_self_privilege")
}

# ---------------------------------------------------------------- requirements

test_requirements_follow_the_level if {
	every patch in samples {
		d := decide(patch)
		d.requirements == levels.requirements[d.level]
	}
}

test_requirements_are_cumulative if {
	step_up := decide({}).requirements
	approval := decide({"request": {"action": "access_grant", "channel": "walk_in"}}).requirements
	callback := decide({"target": {"privilege_tier": 2}}).requirements
	step_up == ["identity_step_up"]
	array.slice(approval, 0, count(step_up)) == step_up
	array.slice(callback, 0, count(approval)) == approval
	callback == ["identity_step_up", "manager_approval", "out_of_band_callback"]
}

# -------------------------------------------------------------------- playbook

test_playbook_is_action_then_level_in_kebab_case if {
	decide({"request": {"action": "delegated_admin", "channel": "walk_in"}}).playbook == "delegated-admin-callback"
	decide({"request": {"action": "password_reset", "channel": "self_service_portal"}}).playbook == "password-reset-self-service"
	decide({"request": {"action": "access_grant", "channel": "walk_in"}}).playbook == "access-grant-manager-approval"
	decide({"actor": {"id": "u-666", "relationship": "other"}}).playbook == "mfa-reset-deny"
}

test_playbook_for_every_action if {
	every action in f.actions {
		d := decide({"request": {"action": action}})
		d.playbook == concat("-", [replace(action, "_", "-"), replace(d.level, "_", "-")])
	}
}

# --------------------------------------------------------------------- reasons

test_reasons_are_the_union_of_every_concern if {
	c := f.case({
		"request": {"action": "role_change", "emergency": true},
		"actor": {"id": "agent-7", "type": "ai_agent", "relationship": "helpdesk_agent", "on_behalf_of": null, "auth_strength": "password"},
		"target": {"type": "service_account", "owners": ["u-1"], "owner_active": false, "vip": true, "privilege_tier": 1},
		"context": {"risk_signals": ["new_device"], "failed_verifications_24h": 1},
	})
	d := f.decision(c)
	concerns := ((((f.baseline(c) | f.recovery(c)) | f.access(c)) | f.nhi_reasons(c)) | f.agents(c)) | f.risk(c)
	d.reasons == ((concerns | f.containment(c)) | f.info(c)) | f.consent(c)
	f.codes(d.reasons) == {
		"action_baseline", "weak_authentication", "break_glass", "privileged_target", "vip_target",
		"requested_privilege", "nhi_requester_not_owner", "nhi_no_active_owner", "nhi_critical_environment",
		"nhi_widely_distributed", "nhi_stale_secret", "nhi_secret_unmanaged", "ai_agent_requester",
		"ai_agent_no_principal", "risk_new_device", "failed_verifications",
	}
}

test_containment_info_and_consent_reasons_reach_the_decision if {
	contain := f.case({"request": {"action": "account_disable"}, "actor": {"id": "u-500", "relationship": "helpdesk_agent"}})
	f.has(f.decision(contain).reasons, "containment_needs_approval")
	ask := f.case({"request": {"action": "info_request"}, "actor": f.stranger})
	f.has(f.decision(ask).reasons, "identity_info_disclosure")
	consent := f.case({"request": {"action": "oauth_consent"}, "actor": {"relationship": "admin"}, "target": {"id": "app-1", "type": "oauth_app"}})
	f.has(f.decision(consent).reasons, "oauth_consent_scope")
}

test_the_decision_carries_the_obligations_and_constraints_of_its_level if {
	d := decide({"target": {"privilege_tier": 2}})
	d.level == "callback"
	f.obligation(d, "record_evidence").fields == data.helpdesk.obligations.evidence_fields.callback
	object.keys(d.constraints) == {"approver", "callback"}
}

test_every_reason_is_well_formed if {
	every patch in samples {
		well_formed(decide(patch).reasons)
	}
}

well_formed(reasons) if {
	every r in reasons {
		object.keys(r) == {"code", "level", "message", "refs"}
		regex.match(`^[a-z][a-z0-9_]*$`, r.code)
		r.level in f.level_names
		r.message != ""
		count(r.refs) > 0
	}
}

# ------------------------------------------------------------- config is data

test_raised_callback_tier_changes_the_decision if {
	patch := {"request": {"action": "access_grant", "channel": "walk_in"}, "target": {"privilege_tier": 2}}
	decide(patch).level == "callback"
	raised := f.decision(f.case(object.union(patch, {"config": {"callback_tier": 3}})))
	raised.level == "manager_approval"
	raised.playbook == "access-grant-manager-approval"
}

test_stricter_baseline_changes_the_decision if {
	baseline := object.union(cfg.action_baseline, {"password_reset": "step_up"})
	d := f.decision(f.case({"request": {"action": "password_reset", "channel": "self_service_portal"}, "config": {"action_baseline": baseline}}))
	d.level == "step_up"
}

# ------------------------------------------------------------------- monotone
# Spot checks of guarantee 2 (tests/test_properties.py checks it on generated
# requests). One action per baseline level keeps the run short: a decision
# under `with` costs ~30 ms in rego-cpp.

channels_by_trust := ["self_service_portal", "walk_in", "api", "chat", "email", "phone"]

one_action_per_baseline := ["password_reset", "mfa_reset", "contact_change", "access_grant", "delegated_admin"]

test_less_trusted_channel_never_lowers_the_level if {
	every action in one_action_per_baseline {
		channels_monotone(action)
	}
}

# (Object literals are built in the comprehension body, not its head:
# rego-cpp returns a malformed value for a head like `g({"a": v})`.)
channels_monotone(action) if {
	ranks := [r |
		some ch in channels_by_trust
		patch := {"request": {"action": action, "channel": ch}}
		r := rank(decide(patch).level)
	]
	count(ranks) == count(channels_by_trust)
	every i in numbers.range(1, count(ranks) - 1) {
		ranks[i - 1] <= ranks[i]
	}
}

test_higher_tier_never_lowers_the_level if {
	ranks := [r |
		some t in numbers.range(0, 9)
		patch := {"request": {"channel": "walk_in"}, "target": {"privilege_tier": t}}
		r := rank(decide(patch).level)
	]
	count(ranks) == 10
	every i in numbers.range(1, 9) {
		ranks[i - 1] <= ranks[i]
	}
}

test_adding_a_risk_signal_never_lowers_the_level if {
	every action in ["password_reset", "access_grant"] {
		signal_monotone(action)
	}
}

signal_monotone(action) if {
	without := rank(decide({"request": {"action": action}, "context": {"risk_signals": ["new_device"]}}).level)
	every s in f.signals {
		with_more := {"request": {"action": action}, "context": {"risk_signals": ["new_device", s]}}
		rank(decide(with_more).level) >= without
	}
}
