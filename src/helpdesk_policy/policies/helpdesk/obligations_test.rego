# Unit tests for obligations.rego: what must be recorded and done after acting.
package helpdesk.obligations_test

import rego.v1

import data.helpdesk.fixtures_test as f
import data.helpdesk.obligations

cfg := data.helpdesk.config

decide(patch) := f.decision(f.case(patch))

# One request per final level.
self_service := {"request": {"action": "password_reset", "channel": "self_service_portal"}}

step_up := {}

manager_approval := {"request": {"action": "access_grant", "channel": "walk_in", "requested_privilege_tier": 0}}

callback := {"target": {"privilege_tier": 2}}

denied := {"actor": f.stranger}

nhi(patch) := f.decision(f.cases(f.nhi, patch))

# ------------------------------------------------------------ record_evidence

test_record_evidence_fields_per_level if {
	recorded(self_service, "self_service") == ["requester", "authentication_event", "outcome"]
	recorded(step_up, "step_up") == ["identity_proof", "verifier", "outcome"]
	recorded(manager_approval, "manager_approval") == ["identity_proof", "verifier", "approver", "outcome"]
	recorded(callback, "callback") == [
		"identity_proof", "verifier", "approver", "callback_contact",
		"callback_contact_source", "callback_answered_by", "outcome",
	]
	recorded(denied, "deny") == ["requester", "channel", "caller_contact", "denial_reason", "outcome"]
}

test_an_answered_question_records_no_authentication_event if {
	recorded({"request": {"action": "info_request"}}, "self_service") == ["requester", "outcome"]
}

test_a_refused_question_records_the_caller if {
	recorded({"request": {"action": "info_request"}, "actor": f.stranger}, "deny") == [
		"requester", "channel", "caller_contact", "denial_reason", "outcome",
	]
}

# The record_evidence fields of the request `patch`, which must decide `level`.
recorded(patch, level) := fields if {
	d := decide(patch)
	d.level == level
	fields := f.obligation(d, "record_evidence").fields
}

test_record_evidence_on_every_action if {
	every action in f.actions {
		f.has_obligation(decide({"request": {"action": action}}), "record_evidence")
	}
}

test_for_level_by_level if {
	# The function the decision calls, level by level (no `with`: only the level varies).
	every level in f.level_names {
		some o in obligations.for_level(level)
		o.code == "record_evidence"
	}
}

# ------------------------------------------------------ notify_identity_owner

test_notify_the_holder_on_every_change if {
	every action in f.actions - {"info_request", "service_account_create"} {
		o := f.obligation(decide({"request": {"action": action}}), "notify_identity_owner")
		o == {"code": "notify_identity_owner", "to": "holder"}
	}
}

test_notify_an_nhi_s_owners if {
	f.obligation(nhi({"request": {"action": "api_key_reissue"}}), "notify_identity_owner").to == "owners"
}

test_notify_nhi_governance_when_no_active_owner_remains if {
	every patch in [{"owner_active": false}, {"owner_active": null}, {"owners": []}] {
		d := nhi({"request": {"action": "api_key_reissue"}, "target": patch})
		d.level == "deny"
		f.obligation(d, "notify_identity_owner").to == cfg.nhi_governance_contact
	}
}

test_nhi_governance_contact_is_config if {
	c := f.cases(f.nhi, {"target": {"owner_active": false}, "config": {"nhi_governance_contact": "platform-security"}})
	f.obligation(f.decision(c), "notify_identity_owner").to == "platform-security"
}

test_notify_identity_owner_even_when_denied if {
	# Attempts are notified too.
	d := decide(denied)
	d.level == "deny"
	f.has_obligation(d, "notify_identity_owner")
}

test_no_notification_for_info_request if {
	f.lacks_obligation(decide({"request": {"action": "info_request"}}), "notify_identity_owner")
}

# ---------------------------------------------------- notify_previous_contact

test_notify_previous_contact_on_a_contact_change if {
	d := decide({"request": {"action": "contact_change"}})
	d.allowed == true
	f.obligation(d, "notify_previous_contact") == {"code": "notify_previous_contact"}
}

test_no_previous_contact_to_notify_for_other_actions if {
	f.lacks_obligation(decide({}), "notify_previous_contact")
}

test_no_previous_contact_notice_when_denied if {
	f.lacks_obligation(decide({"request": {"action": "contact_change"}, "actor": f.stranger}), "notify_previous_contact")
}

# -------------------------------------------------- revoke_previous_credential

test_revoke_a_replaced_nhi_credential_within_the_window if {
	every action in cfg.nhi_credential_actions {
		d := nhi({"request": {"action": action}})
		d.allowed == true
		f.obligation(d, "revoke_previous_credential") == {
			"code": "revoke_previous_credential",
			"within_hours": cfg.revoke_previous_within_hours,
		}
	}
}

test_revoke_a_lost_factor_at_once if {
	f.obligation(decide({}), "revoke_previous_credential").within_hours == cfg.revoke_compromised_within_hours
	cfg.revoke_compromised_within_hours == 0
}

test_revoke_a_leaked_credential_at_once if {
	d := nhi({"request": {"action": "api_key_reissue"}, "context": {"risk_signals": ["leaked_credential"]}})
	f.obligation(d, "revoke_previous_credential").within_hours == cfg.revoke_compromised_within_hours
}

test_no_revoke_for_other_actions if {
	every action in ["password_reset", "account_unlock", "access_grant", "token_revoke", "mfa_add_factor"] {
		f.lacks_obligation(decide({"request": {"action": action}}), "revoke_previous_credential")
	}
}

test_no_revoke_when_denied if {
	f.lacks_obligation(nhi({"request": {"action": "api_key_reissue"}, "actor": {"id": "u-999"}}), "revoke_previous_credential")
}

test_revoke_windows_are_config if {
	d := f.decision(f.cases(f.nhi, {"request": {"action": "secret_rotation"}, "config": {"revoke_previous_within_hours": 4}}))
	f.obligation(d, "revoke_previous_credential").within_hours == 4
	now := f.decision(f.case({"config": {"revoke_compromised_within_hours": 1}}))
	f.obligation(now, "revoke_previous_credential").within_hours == 1
}

# --------------------------------------------------------- terminate_sessions

test_terminate_sessions_after_every_configured_action if {
	every action in cfg.terminate_sessions_after {
		f.has_obligation(decide({"request": {"action": action}}), "terminate_sessions")
	}
}

test_no_terminate_sessions_for_other_actions if {
	every action in ["account_unlock", "mfa_add_factor", "access_grant", "token_revoke"] {
		f.lacks_obligation(decide({"request": {"action": action}}), "terminate_sessions")
	}
}

test_no_terminate_sessions_when_denied if {
	f.lacks_obligation(decide(denied), "terminate_sessions")
}

test_terminate_sessions_is_config if {
	d := f.decision(f.case({"request": {"action": "account_unlock"}, "config": {"terminate_sessions_after": ["account_unlock"]}}))
	f.has_obligation(d, "terminate_sessions")
}

# -------------------------------------------------------- rotate_stale_secret

test_rotate_stale_secret if {
	d := nhi({"request": {"action": "role_change"}, "target": {"secret_age_days": cfg.max_secret_age_days + 1}})
	d.allowed == true
	f.obligation(d, "rotate_stale_secret") == {"code": "rotate_stale_secret"}
}

test_no_rotation_for_a_fresh_secret if {
	d := nhi({"request": {"action": "role_change"}, "target": {"secret_age_days": cfg.max_secret_age_days}})
	f.lacks_obligation(d, "rotate_stale_secret")
}

test_no_rotation_for_a_secretless_workload if {
	d := nhi({"request": {"action": "role_change"}, "target": {"secret_age_days": null, "holds_secret": false}})
	f.lacks_obligation(d, "rotate_stale_secret")
}

test_no_rotation_when_denied if {
	d := nhi({"request": {"action": "role_change"}, "actor": {"id": "u-999"}, "target": {"secret_age_days": 400}})
	d.level == "deny"
	f.lacks_obligation(d, "rotate_stale_secret")
}

# ---------------------------------------------------- move_to_secrets_manager

test_move_a_new_credential_to_a_secrets_manager if {
	d := nhi({"request": {"action": "api_key_reissue"}, "target": {"in_secrets_manager": false}})
	d.allowed == true
	f.obligation(d, "move_to_secrets_manager") == {"code": "move_to_secrets_manager"}
}

test_move_an_existing_unmanaged_secret_whatever_the_action if {
	d := nhi({"request": {"action": "role_change"}, "target": {"in_secrets_manager": null}})
	d.allowed == true
	f.has_obligation(d, "move_to_secrets_manager")
}

test_no_move_when_managed_or_secretless if {
	f.lacks_obligation(nhi({"request": {"action": "api_key_reissue"}}), "move_to_secrets_manager")
	secretless := nhi({"request": {"action": "role_change"}, "target": {"in_secrets_manager": null, "holds_secret": false}})
	f.lacks_obligation(secretless, "move_to_secrets_manager")
}

test_no_move_for_a_revoked_secret if {
	d := nhi({"request": {"action": "credential_revoke"}, "target": {"in_secrets_manager": false}})
	f.lacks_obligation(d, "move_to_secrets_manager")
}

test_no_move_when_denied if {
	d := nhi({"request": {"action": "api_key_reissue"}, "target": {"in_secrets_manager": false, "owner_active": false}})
	d.level == "deny"
	f.lacks_obligation(d, "move_to_secrets_manager")
}

# ---------------------------------------------------------- time_bound_access

time_bound(patch) := f.obligation(decide(patch), "time_bound_access").within_hours

test_time_bound_privilege_elevation_and_delegated_admin if {
	every action in ["privilege_elevation", "delegated_admin"] {
		time_bound({"request": {"action": action, "channel": "walk_in"}}) == cfg.privileged_access_max_hours
	}
}

test_time_bound_a_stated_privileged_grant if {
	time_bound({"request": {"action": "access_grant", "requested_privilege_tier": cfg.privileged_tier}}) == cfg.privileged_access_max_hours
	time_bound({"request": {"action": "role_change", "requested_privilege_tier": 9}}) == cfg.privileged_access_max_hours
}

test_no_time_bound_for_ordinary_or_unstated_grants if {
	# An unstated tier raises the level (access.rego), not a standing-access limit.
	f.lacks_obligation(decide({"request": {"action": "access_grant", "requested_privilege_tier": 0}}), "time_bound_access")
	f.lacks_obligation(decide({"request": {"action": "access_grant"}}), "time_bound_access")
}

test_time_bound_every_access_an_agent_asks_for if {
	d := f.decision(f.case({"request": {"action": "access_grant", "requested_privilege_tier": 0}, "actor": f.agent}))
	d.allowed == true
	f.obligation(d, "time_bound_access").within_hours == cfg.privileged_access_max_hours
}

test_time_bound_emergency_access if {
	c := {"request": {"action": "access_grant", "requested_privilege_tier": 0, "emergency": true}}
	time_bound(c) == cfg.break_glass_hours
}

test_time_bound_a_temporary_access_pass if {
	time_bound({"request": {"action": "temporary_access_pass", "channel": "walk_in"}}) == cfg.temporary_access_pass_max_hours
}

test_time_bound_takes_the_shortest_limit if {
	# A 2-hour break-glass limit beats the 8-hour privilege limit, and 10 >= 8.
	shorter := f.decision(f.case({
		"request": {"action": "privilege_elevation", "emergency": true},
		"config": {"break_glass_hours": 2},
	}))
	f.obligation(shorter, "time_bound_access").within_hours == 2
	longer := f.decision(f.case({
		"request": {"action": "privilege_elevation", "emergency": true},
		"config": {"break_glass_hours": 10},
	}))
	f.obligation(longer, "time_bound_access").within_hours == cfg.privileged_access_max_hours
}

test_time_bound_limits_compare_as_numbers if {
	# rego-cpp's min() orders numbers as strings ("10" < "9"): the limit is found by comparisons.
	d := f.decision(f.case({
		"request": {"action": "privilege_elevation", "emergency": true},
		"config": {"break_glass_hours": 10, "privileged_access_max_hours": 9},
	}))
	f.obligation(d, "time_bound_access").within_hours == 9
}

test_no_time_bound_access_without_a_grant_or_emergency if {
	f.lacks_obligation(decide({"request": {"action": "mfa_reset"}}), "time_bound_access")
	f.lacks_obligation(decide({"request": {"emergency": true}}), "time_bound_access")
}

test_no_time_bound_access_when_denied if {
	d := decide({"request": {"action": "privilege_elevation", "emergency": true}, "actor": f.stranger})
	d.level == "deny"
	f.lacks_obligation(d, "time_bound_access")
}

# ------------------------------------------------------- post_incident_review

test_post_incident_review_after_emergency if {
	o := f.obligation(decide({"request": {"emergency": true}}), "post_incident_review")
	o == {"code": "post_incident_review", "within_hours": cfg.post_incident_review_within_hours}
}

test_post_incident_review_even_when_denied if {
	d := decide({"request": {"emergency": true}, "target": {"status": "offboarded"}})
	d.level == "deny"
	f.has_obligation(d, "post_incident_review")
}

test_no_post_incident_review_without_emergency if {
	f.lacks_obligation(decide({}), "post_incident_review")
}

# ------------------------------------------------------------ deny drops most

test_deny_keeps_only_evidence_notify_and_review if {
	allowed := decide({"request": {"action": "mfa_reset", "emergency": true}})
	f.obligation_codes(allowed) == {
		"record_evidence", "notify_identity_owner", "revoke_previous_credential",
		"terminate_sessions", "post_incident_review",
	}

	d := decide({"request": {"action": "mfa_reset", "emergency": true}, "target": {"status": "offboarded"}})
	d.level == "deny"
	f.obligation_codes(d) == {"record_evidence", "notify_identity_owner", "post_incident_review"}
}

test_deny_drops_nhi_obligations if {
	patch := {"request": {"action": "api_key_reissue", "emergency": true}, "target": {"owner_active": false, "in_secrets_manager": false}}
	d := nhi(patch)
	d.level == "deny"
	f.obligation_codes(d) == {"record_evidence", "notify_identity_owner", "post_incident_review"}
}

test_obligations_for_a_routine_request if {
	d := decide({"request": {"action": "info_request", "channel": "self_service_portal"}})
	d.level == "self_service"
	d.obligations == {{"code": "record_evidence", "fields": ["requester", "outcome"]}}
}
