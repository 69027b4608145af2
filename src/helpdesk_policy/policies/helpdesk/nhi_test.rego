# Unit tests for nhi.rego: ownership, criticality, distribution, secret hygiene.
package helpdesk.nhi_test

import rego.v1

import data.helpdesk.fixtures_test as f

cfg := data.helpdesk.config

# The healthy NHI of the fixtures (owned by the requester, staging, 2
# consumers, a 10-day-old managed secret) with `patch` applied per section.
nhi(patch) := f.cases(f.nhi, patch)

act(action) := {"request": {"action": action}}

test_healthy_nhi_has_no_nhi_reasons if {
	every action in ["role_change", "api_key_reissue", "password_reset", "info_request", "token_revoke"] {
		count(f.nhi_reasons(nhi(act(action)))) == 0
	}
}

test_human_target_has_no_nhi_reasons if {
	count(f.nhi_reasons(f.case({}))) == 0
	count(f.nhi_reasons(f.case({"request": {"action": "access_grant"}, "actor": {"id": "u-900", "relationship": "manager"}}))) == 0
}

# --------------------------------------------------- nhi_requester_not_owner

test_nhi_requester_not_owner_denied if {
	c := nhi({"request": {"action": "api_key_reissue"}, "actor": {"id": "u-999"}})
	r := f.reason(f.nhi_reasons(c), "nhi_requester_not_owner")
	r.level == "deny"
	r.refs == ["OWASP-NHI-2025:NHI10", "NIST-CSF-2.0:PR.AA-05"]
}

test_nhi_requester_not_owner_applies_to_every_nhi_type if {
	every type in f.target_types - {"human"} {
		c := nhi({"actor": {"id": "u-999"}, "target": {"type": type}})
		f.has(f.nhi_reasons(c), "nhi_requester_not_owner")
	}
}

test_nhi_owner_may_ask if {
	f.lacks(f.nhi_reasons(nhi(act("api_key_reissue"))), "nhi_requester_not_owner")
}

test_nhi_requester_not_owner_exempts_containment if {
	every action in cfg.containment_actions {
		c := nhi({"request": {"action": action}, "actor": {"id": "u-999"}})
		f.lacks(f.nhi_reasons(c), "nhi_requester_not_owner")
	}
}

test_nhi_requester_not_owner_exempts_info_request if {
	c := nhi({"request": {"action": "info_request"}, "actor": {"id": "u-999"}})
	f.lacks(f.nhi_reasons(c), "nhi_requester_not_owner")
}

# ------------------------------------------------------- nhi_no_active_owner

test_nhi_no_active_owner_when_owner_inactive if {
	r := f.reason(f.nhi_reasons(nhi({"target": {"owner_active": false}})), "nhi_no_active_owner")
	r.level == "deny"
	r.refs == ["OWASP-NHI-2025:NHI1", "NIST-CSF-2.0:PR.AA-01"]
}

test_nhi_no_active_owner_when_owner_status_unknown if {
	f.has(f.nhi_reasons(nhi({"target": {"owner_active": null}})), "nhi_no_active_owner")
}

test_nhi_no_active_owner_when_no_owners if {
	f.has(f.nhi_reasons(nhi({"target": {"owners": []}})), "nhi_no_active_owner")
}

test_nhi_active_owner if {
	f.lacks(f.nhi_reasons(nhi({})), "nhi_no_active_owner")
}

test_nhi_no_active_owner_exempts_containment if {
	every action in cfg.containment_actions {
		c := nhi({"request": {"action": action}, "target": {"owner_active": false}})
		f.lacks(f.nhi_reasons(c), "nhi_no_active_owner")
	}
}

# -------------------------------------------------- nhi_create_without_owner

test_nhi_create_without_owner_denied if {
	c := nhi({"request": {"action": "service_account_create"}, "target": {"owners": []}})
	r := f.reason(f.nhi_reasons(c), "nhi_create_without_owner")
	r.level == "deny"
	r.refs == ["OWASP-NHI-2025:NHI1", "NIST-CSF-2.0:PR.AA-01"]
}

test_nhi_create_with_owner if {
	f.lacks(f.nhi_reasons(nhi(act("service_account_create"))), "nhi_create_without_owner")
}

test_nhi_create_without_owner_only_on_create if {
	c := nhi({"request": {"action": "role_change"}, "target": {"owners": []}})
	f.lacks(f.nhi_reasons(c), "nhi_create_without_owner")
}

# -------------------------------------------------- nhi_critical_environment

test_nhi_critical_environment_for_every_critical_environment if {
	every env in cfg.critical_environments {
		r := f.reason(f.nhi_reasons(nhi({"target": {"environment": env}})), "nhi_critical_environment")
		r.level == "manager_approval"
		r.message == "The non-human identity runs in a critical environment: its owner's manager must approve."
	}
}

test_nhi_unknown_environment_is_critical if {
	r := f.reason(f.nhi_reasons(nhi({"target": {"environment": null}})), "nhi_critical_environment")
	r.level == "manager_approval"
	r.message == "No environment is recorded for the non-human identity: it is treated as production."
}

test_nhi_non_critical_environment if {
	f.lacks(f.nhi_reasons(nhi({"target": {"environment": "staging"}})), "nhi_critical_environment")
}

test_nhi_critical_environment_exempts_containment if {
	every action in cfg.containment_actions {
		c := nhi({"request": {"action": action}, "target": {"environment": "production"}})
		f.lacks(f.nhi_reasons(c), "nhi_critical_environment")
	}
}

test_nhi_critical_environments_are_config if {
	c := nhi({"config": {"critical_environments": ["staging"]}})
	f.has(f.nhi_reasons(c), "nhi_critical_environment")
}

# ---------------------------------------------------- nhi_widely_distributed

test_nhi_widely_distributed_at_threshold if {
	# Boundary: consumers == nhi_wide_consumers.
	c := nhi({"target": {"consumers": cfg.nhi_wide_consumers}})
	r := f.reason(f.nhi_reasons(c), "nhi_widely_distributed")
	r.level == "callback"
	r.message == "The non-human identity has 10 consumers (widely distributed from 10): confirm with its owner of record out of band."
}

test_nhi_not_widely_distributed_below_threshold if {
	c := nhi({"target": {"consumers": cfg.nhi_wide_consumers - 1}})
	f.lacks(f.nhi_reasons(c), "nhi_widely_distributed")
}

test_nhi_unknown_consumers_are_widely_distributed if {
	r := f.reason(f.nhi_reasons(nhi({"target": {"consumers": null}})), "nhi_widely_distributed")
	r.level == "callback"
	r.message == "The number of consumers of this non-human identity is unknown: it is treated as widely distributed."
}

test_nhi_widely_distributed_exempts_containment if {
	every action in cfg.containment_actions {
		c := nhi({"request": {"action": action}, "target": {"consumers": 500}})
		f.lacks(f.nhi_reasons(c), "nhi_widely_distributed")
	}
}

test_nhi_wide_consumers_is_config if {
	c := nhi({"target": {"consumers": 10}, "config": {"nhi_wide_consumers": 50}})
	f.lacks(f.nhi_reasons(c), "nhi_widely_distributed")
}

# ---------------------------------------------------------- nhi_stale_secret

test_nhi_stale_secret_just_over_max_age if {
	c := nhi({"target": {"secret_age_days": cfg.max_secret_age_days + 1}})
	r := f.reason(f.nhi_reasons(c), "nhi_stale_secret")
	r.level == "self_service"
	r.message == "The non-human identity's secret is older than 90 days, or of unknown age: rotate it."
	r.refs == ["OWASP-NHI-2025:NHI7"]
}

test_nhi_secret_at_max_age_is_not_stale if {
	# Boundary: secret_age_days == max_secret_age_days is still fresh.
	c := nhi({"target": {"secret_age_days": cfg.max_secret_age_days}})
	f.lacks(f.nhi_reasons(c), "nhi_stale_secret")
}

test_nhi_unknown_secret_age_is_stale if {
	f.has(f.nhi_reasons(nhi({"target": {"secret_age_days": null}})), "nhi_stale_secret")
}

test_nhi_stale_secret_not_when_issuing_a_credential if {
	# The request replaces the secret anyway.
	every action in cfg.nhi_credential_actions {
		c := nhi({"request": {"action": action}, "target": {"secret_age_days": 400}})
		f.lacks(f.nhi_reasons(c), "nhi_stale_secret")
	}
}

test_nhi_stale_secret_not_when_creating_an_account if {
	# Creating an account issues its first credential: no old secret to rotate.
	every age in [null, 400] {
		c := nhi({"request": {"action": "service_account_create"}, "target": {"secret_age_days": age}})
		f.lacks(f.nhi_reasons(c), "nhi_stale_secret")
		f.lacks_obligation(f.decision(c), "rotate_stale_secret")
	}
}

test_nhi_stale_secret_exempts_containment if {
	every action in cfg.containment_actions {
		c := nhi({"request": {"action": action}, "target": {"secret_age_days": 400}})
		f.lacks(f.nhi_reasons(c), "nhi_stale_secret")
	}
}

test_nhi_max_secret_age_is_config if {
	c := nhi({"target": {"secret_age_days": 40}, "config": {"max_secret_age_days": 30}})
	f.has(f.nhi_reasons(c), "nhi_stale_secret")
}

# ------------------------------------------------------ nhi_secret_unmanaged

test_nhi_secret_unmanaged_on_credential_issue if {
	every action in cfg.nhi_credential_actions {
		c := nhi({"request": {"action": action}, "target": {"in_secrets_manager": false}})
		r := f.reason(f.nhi_reasons(c), "nhi_secret_unmanaged")
		r.level == "self_service"
		r.refs == ["OWASP-NHI-2025:NHI2", "OWASP-NHI-2025:NHI7"]
	}
}

test_nhi_secret_unmanaged_when_unknown if {
	c := nhi({"request": {"action": "api_key_reissue"}, "target": {"in_secrets_manager": null}})
	f.has(f.nhi_reasons(c), "nhi_secret_unmanaged")
}

test_nhi_secret_unmanaged_on_create if {
	c := nhi({"request": {"action": "service_account_create"}, "target": {"in_secrets_manager": null}})
	f.has(f.nhi_reasons(c), "nhi_secret_unmanaged")
}

test_nhi_secret_managed if {
	f.lacks(f.nhi_reasons(nhi(act("api_key_reissue"))), "nhi_secret_unmanaged")
}

test_nhi_secret_unmanaged_only_when_issuing if {
	c := nhi({"request": {"action": "role_change"}, "target": {"in_secrets_manager": false}})
	f.lacks(f.nhi_reasons(c), "nhi_secret_unmanaged")
}
