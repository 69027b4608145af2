# Unit tests for obligations.rego: what must be recorded and done after acting.
package helpdesk.obligations_test

import rego.v1

import data.helpdesk.fixtures_test as f

cfg := data.helpdesk.config

decide(patch) := f.decision(f.case(patch))

# One request per final level.
self_service := {"request": {"action": "password_reset", "channel": "self_service_portal"}}

step_up := {}

manager_approval := {"request": {"action": "access_grant", "channel": "walk_in"}}

callback := {"target": {"privilege_tier": 2}}

denied := {"actor": {"id": "u-666", "relationship": "other"}}

nhi(patch) := f.decision(f.cases(f.nhi, patch))

# ------------------------------------------------------------ record_evidence

test_record_evidence_fields_per_level if {
	evidence(self_service, "self_service") == ["requester", "outcome"]
	evidence(step_up, "step_up") == ["identity_proof", "verifier", "outcome"]
	evidence(manager_approval, "manager_approval") == ["identity_proof", "verifier", "approver", "outcome"]
	evidence(callback, "callback") == ["identity_proof", "verifier", "approver", "outcome"]
	evidence(denied, "deny") == ["requester", "denial_reason", "outcome"]
}

# The record_evidence fields of the request `patch`, which must decide `level`.
evidence(patch, level) := fields if {
	d := decide(patch)
	d.level == level
	fields := f.obligation(d, "record_evidence").fields
}

test_record_evidence_on_every_action if {
	every action in f.actions {
		f.has_obligation(decide({"request": {"action": action}}), "record_evidence")
	}
}

# ------------------------------------------------------ notify_identity_owner

test_notify_identity_owner_on_every_change if {
	every action in f.actions - {"info_request"} {
		o := f.obligation(decide({"request": {"action": action}}), "notify_identity_owner")
		o == {"code": "notify_identity_owner"}
	}
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

# -------------------------------------------------- revoke_previous_credential

test_revoke_previous_credential_on_nhi_credential_issue if {
	every action in cfg.nhi_credential_actions {
		d := nhi({"request": {"action": action}})
		d.allowed == true
		f.obligation(d, "revoke_previous_credential") == {"code": "revoke_previous_credential", "within_hours": 24}
	}
}

test_revoke_previous_credential_on_mfa_reset if {
	f.has_obligation(decide({}), "revoke_previous_credential")
}

test_no_revoke_for_other_actions if {
	every action in ["password_reset", "account_unlock", "access_grant", "token_revoke"] {
		f.lacks_obligation(decide({"request": {"action": action}}), "revoke_previous_credential")
	}
}

test_no_revoke_when_denied if {
	f.lacks_obligation(nhi({"request": {"action": "api_key_reissue"}, "actor": {"id": "u-999"}}), "revoke_previous_credential")
}

test_revoke_window_is_config if {
	d := f.decision(f.case({"config": {"revoke_previous_within_hours": 4}}))
	f.obligation(d, "revoke_previous_credential").within_hours == 4
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
	f.has_obligation(d, "rotate_stale_secret")
}

test_no_rotation_for_a_fresh_secret if {
	d := nhi({"request": {"action": "role_change"}, "target": {"secret_age_days": cfg.max_secret_age_days}})
	f.lacks_obligation(d, "rotate_stale_secret")
}

test_no_rotation_when_denied if {
	d := nhi({"request": {"action": "role_change"}, "actor": {"id": "u-999"}, "target": {"secret_age_days": 400}})
	d.level == "deny"
	f.lacks_obligation(d, "rotate_stale_secret")
}

# ---------------------------------------------------- move_to_secrets_manager

test_move_to_secrets_manager if {
	d := nhi({"request": {"action": "api_key_reissue"}, "target": {"in_secrets_manager": false}})
	d.allowed == true
	f.has_obligation(d, "move_to_secrets_manager")
}

test_no_move_when_managed if {
	f.lacks_obligation(nhi({"request": {"action": "api_key_reissue"}}), "move_to_secrets_manager")
}

test_no_move_when_denied if {
	d := nhi({"request": {"action": "api_key_reissue"}, "target": {"in_secrets_manager": false, "owner_active": false}})
	d.level == "deny"
	f.lacks_obligation(d, "move_to_secrets_manager")
}

# ---------------------------------------------------------- time_bound_access

test_time_bound_access_for_emergency_access if {
	# (service_account_create with no owner is denied: see below for NHIs.)
	every action in [a | some a in cfg.access_actions; a != "service_account_create"] {
		d := decide({"request": {"action": action, "emergency": true}})
		f.obligation(d, "time_bound_access") == {"code": "time_bound_access", "within_hours": cfg.break_glass_hours}
	}
}

test_time_bound_access_for_emergency_nhi_creation if {
	d := nhi({"request": {"action": "service_account_create", "emergency": true}})
	d.allowed == true
	f.has_obligation(d, "time_bound_access")
}

test_no_time_bound_access_without_emergency if {
	f.lacks_obligation(decide({"request": {"action": "access_grant"}}), "time_bound_access")
}

test_no_time_bound_access_for_emergency_recovery if {
	f.lacks_obligation(decide({"request": {"emergency": true}}), "time_bound_access")
}

test_no_time_bound_access_when_denied if {
	d := decide({"request": {"action": "access_grant", "emergency": true}, "actor": {"id": "u-666", "relationship": "other"}})
	d.level == "deny"
	f.lacks_obligation(d, "time_bound_access")
}

test_break_glass_hours_are_config if {
	d := f.decision(f.case({"request": {"action": "role_change", "emergency": true}, "config": {"break_glass_hours": 2}}))
	f.obligation(d, "time_bound_access").within_hours == 2
}

# ------------------------------------------------------- post_incident_review

test_post_incident_review_after_emergency if {
	f.has_obligation(decide({"request": {"emergency": true}}), "post_incident_review")
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
	# Would carry revoke, terminate and time-bound obligations if allowed.
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
