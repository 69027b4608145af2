# Unit tests for nhi.rego: ownership, environment, distribution, secret hygiene.
package helpdesk.nhi_test

import rego.v1

import data.helpdesk.fixtures_test as f

cfg := data.helpdesk.config

# The healthy NHI of the fixtures (owned by the requester, staging, 2
# consumers, a 10-day-old managed secret) with `patch` applied per section.
nhi(patch) := f.cases(f.nhi, patch)

act(action) := patch if {
	patch := {"request": {"action": action}}
}

containment := {a | some a in cfg.containment_actions}

routine := containment | {"info_request"}

issuing := {a | some a in cfg.nhi_credential_actions} | {"service_account_create"}

no_secret_work := routine | {"oauth_consent"}

test_healthy_nhi_has_no_nhi_reasons if {
	every action in ["role_change", "api_key_reissue", "password_reset", "info_request", "token_revoke", "oauth_consent"] {
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
	f.gives(f.nhi_reasons(c), "nhi_requester_not_owner", "deny", [])
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

test_an_agent_acting_for_an_owner_may_ask if {
	c := nhi({"request": {"action": "api_key_reissue"}, "actor": object.union(f.agent, {"on_behalf_of": "u-200"})})
	f.lacks(f.nhi_reasons(c), "nhi_requester_not_owner")
}

test_an_agent_claiming_ownership_for_a_non_owner_is_not_an_owner if {
	c := nhi({"request": {"action": "api_key_reissue"}, "actor": object.union(f.agent, {"relationship": "owner", "on_behalf_of": "u-300"})})
	f.has(f.nhi_reasons(c), "nhi_requester_not_owner")
}

test_the_workload_itself_may_ask if {
	c := f.cases(f.workload_self, {"target": {"owners": ["u-200"]}})
	f.lacks(f.nhi_reasons(c), "nhi_requester_not_owner")
}

test_creation_is_approved_by_the_named_owner_not_the_creator if {
	c := nhi({"request": {"action": "service_account_create"}, "actor": {"id": "u-999", "relationship": "admin"}})
	f.lacks(f.nhi_reasons(c), "nhi_requester_not_owner")
}

test_nhi_requester_not_owner_exempts_routine_actions if {
	every action in routine {
		c := nhi({"request": {"action": action}, "actor": {"id": "u-999"}})
		f.lacks(f.nhi_reasons(c), "nhi_requester_not_owner")
	}
}

test_nhi_rules_exempt_an_oauth_consent if {
	c := nhi({"request": {"action": "oauth_consent"}, "actor": {"id": "u-999"}, "target": {"owner_active": false, "environment": null, "consumers": null}})
	count(f.nhi_reasons(c)) == 0
}

# ------------------------------------------------------- nhi_no_active_owner

test_nhi_no_active_owner_when_owner_inactive if {
	f.gives(f.nhi_reasons(nhi({"target": {"owner_active": false}})), "nhi_no_active_owner", "deny", [])
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

test_the_workload_itself_may_only_rotate if {
	# NHI5/NHI10: its access and its recovery are asked for by an owner.
	every action in ["privilege_elevation", "role_change", "access_grant", "account_unlock", "mfa_reset"] {
		c := f.cases(f.workload_self, {"request": {"action": action}, "target": {"owners": ["u-200"]}})
		f.has(f.nhi_reasons(c), "nhi_requester_not_owner")
	}
	every action in cfg.nhi_credential_actions {
		c := f.cases(f.workload_self, {"request": {"action": action}, "target": {"owners": ["u-200"]}})
		f.lacks(f.nhi_reasons(c), "nhi_requester_not_owner")
	}
}

test_nhi_no_active_owner_even_for_the_workload_itself if {
	# Ownership is transferred first (improper offboarding, NHI1).
	c := f.cases(f.workload_self, {"target": {"owner_active": false}})
	f.has(f.nhi_reasons(c), "nhi_no_active_owner")
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
	f.gives(f.nhi_reasons(c), "nhi_create_without_owner", "deny", [])
}

test_nhi_create_with_owner if {
	f.lacks(f.nhi_reasons(nhi(act("service_account_create"))), "nhi_create_without_owner")
}

test_nhi_create_without_owner_only_at_creation if {
	c := nhi({"request": {"action": "role_change"}, "target": {"owners": []}})
	f.lacks(f.nhi_reasons(c), "nhi_create_without_owner")
}

# -------------------------------------------------- nhi_critical_environment

test_nhi_critical_environment_for_production if {
	every env in ["production", "prod", "live", "eu-west-1"] {
		c := nhi({"target": {"environment": env}})
		f.gives(f.nhi_reasons(c), "nhi_critical_environment", "manager_approval", [])
	}
}

test_nhi_critical_environment_for_an_unknown_environment if {
	c := nhi({"target": {"environment": null}})
	f.gives(f.nhi_reasons(c), "nhi_critical_environment.unknown", "manager_approval", [])
}

test_nhi_critical_environment_not_for_non_production if {
	every env in cfg.non_production_environments {
		f.lacks(f.nhi_reasons(nhi({"target": {"environment": env}})), "nhi_critical_environment")
	}
}

test_nhi_critical_environment_not_for_an_unlock if {
	c := nhi({"request": {"action": "account_unlock"}, "target": {"environment": "production"}})
	f.lacks(f.nhi_reasons(c), "nhi_critical_environment")
}

test_nhi_critical_environment_not_on_the_hygiene_paths if {
	f.lacks(f.nhi_reasons(f.case(f.owner_rotation)), "nhi_critical_environment")
	f.lacks(f.nhi_reasons(f.case(f.workload_self)), "nhi_critical_environment")
}

test_nhi_critical_environment_off_the_hygiene_paths if {
	# The owner over chat, the workload with a static secret, the owner's access change.
	f.has(f.nhi_reasons(f.cases(f.owner_rotation, {"request": {"channel": "chat"}})), "nhi_critical_environment")
	f.has(f.nhi_reasons(f.cases(f.workload_self, {"actor": {"auth_strength": "password"}})), "nhi_critical_environment")
	f.has(f.nhi_reasons(f.cases(f.owner_rotation, {"request": {"action": "role_change"}})), "nhi_critical_environment")
}

test_nhi_critical_environment_exempts_routine_actions if {
	every action in routine {
		c := nhi({"request": {"action": action}, "target": {"environment": "production"}})
		f.lacks(f.nhi_reasons(c), "nhi_critical_environment")
	}
}

test_non_production_environments_are_config if {
	c := nhi({"target": {"environment": "staging"}, "config": {"non_production_environments": ["dev"]}})
	f.has(f.nhi_reasons(c), "nhi_critical_environment")
}

# ---------------------------------------------------- nhi_widely_distributed

test_nhi_widely_distributed_at_threshold if {
	c := nhi({"target": {"consumers": cfg.nhi_wide_consumers}})
	f.gives(f.nhi_reasons(c), "nhi_widely_distributed", "callback", [cfg.nhi_wide_consumers, cfg.nhi_wide_consumers])
}

test_nhi_widely_distributed_names_the_count if {
	c := nhi({"target": {"consumers": 250}})
	f.gives(f.nhi_reasons(c), "nhi_widely_distributed", "callback", [250, cfg.nhi_wide_consumers])
}

test_nhi_widely_distributed_not_below_threshold if {
	f.lacks(f.nhi_reasons(nhi({"target": {"consumers": cfg.nhi_wide_consumers - 1}})), "nhi_widely_distributed")
}

test_nhi_widely_distributed_when_consumers_unknown if {
	c := nhi({"target": {"consumers": null}})
	f.gives(f.nhi_reasons(c), "nhi_widely_distributed.unknown", "callback", [])
}

test_nhi_widely_distributed_not_for_an_unlock_or_on_the_hygiene_paths if {
	f.lacks(f.nhi_reasons(nhi({"request": {"action": "account_unlock"}, "target": {"consumers": null}})), "nhi_widely_distributed")
	f.lacks(f.nhi_reasons(f.case(f.owner_rotation)), "nhi_widely_distributed")
	f.lacks(f.nhi_reasons(f.case(f.workload_self)), "nhi_widely_distributed")
}

test_nhi_widely_distributed_exempts_containment if {
	every action in cfg.containment_actions {
		c := nhi({"request": {"action": action}, "target": {"consumers": null}})
		f.lacks(f.nhi_reasons(c), "nhi_widely_distributed")
	}
}

test_nhi_wide_consumers_is_config if {
	c := nhi({"target": {"consumers": 2}, "config": {"nhi_wide_consumers": 2}})
	f.gives(f.nhi_reasons(c), "nhi_widely_distributed", "callback", [2, 2])
}

# ---------------------------------------------------------- nhi_stale_secret

test_nhi_stale_secret_above_max_age if {
	c := nhi({"target": {"secret_age_days": cfg.max_secret_age_days + 1}})
	f.gives(f.nhi_reasons(c), "nhi_stale_secret", "self_service", [cfg.max_secret_age_days])
}

test_nhi_stale_secret_not_at_max_age if {
	f.lacks(f.nhi_reasons(nhi({"target": {"secret_age_days": cfg.max_secret_age_days}})), "nhi_stale_secret")
}

test_nhi_stale_secret_when_age_unknown if {
	f.has(f.nhi_reasons(nhi({"target": {"secret_age_days": null}})), "nhi_stale_secret")
}

test_nhi_stale_secret_not_for_a_secretless_workload if {
	c := nhi({"target": {"secret_age_days": null, "holds_secret": false}})
	f.lacks(f.nhi_reasons(c), "nhi_stale_secret")
	held := nhi({"target": {"secret_age_days": null, "holds_secret": true}})
	f.has(f.nhi_reasons(held), "nhi_stale_secret")
}

test_nhi_stale_secret_not_when_the_request_issues_a_credential if {
	every action in issuing {
		c := nhi({"request": {"action": action}, "target": {"secret_age_days": 400}})
		f.lacks(f.nhi_reasons(c), "nhi_stale_secret")
	}
}

test_nhi_stale_secret_exempts_routine_actions if {
	every action in no_secret_work {
		c := nhi({"request": {"action": action}, "target": {"secret_age_days": 400}})
		f.lacks(f.nhi_reasons(c), "nhi_stale_secret")
	}
}

test_nhi_max_secret_age_is_config if {
	c := nhi({"target": {"secret_age_days": 10}, "config": {"max_secret_age_days": 5}})
	f.gives(f.nhi_reasons(c), "nhi_stale_secret", "self_service", [5])
}

# ------------------------------------------------------ nhi_secret_unmanaged

test_a_new_credential_must_go_to_a_secrets_manager if {
	every action in issuing {
		c := nhi({"request": {"action": action}, "target": {"in_secrets_manager": false}})
		f.gives(f.nhi_reasons(c), "nhi_secret_unmanaged", "self_service", [])
	}
}

test_an_existing_unmanaged_secret_must_be_moved if {
	# Whenever it is not in a secrets manager, not only when a credential is issued.
	every action in ["role_change", "access_grant", "password_reset", "account_unlock"] {
		c := nhi({"request": {"action": action}, "target": {"in_secrets_manager": false}})
		f.gives(f.nhi_reasons(c), "nhi_secret_unmanaged.existing", "self_service", [])
	}
}

test_nhi_secret_unmanaged_when_storage_unknown if {
	f.has(f.nhi_reasons(nhi({"target": {"in_secrets_manager": null}})), "nhi_secret_unmanaged")
}

test_nhi_secret_unmanaged_not_when_managed if {
	f.lacks(f.nhi_reasons(nhi(act("api_key_reissue"))), "nhi_secret_unmanaged")
}

test_nhi_secret_unmanaged_not_for_a_secretless_workload if {
	c := nhi({"target": {"in_secrets_manager": null, "holds_secret": false}})
	f.lacks(f.nhi_reasons(c), "nhi_secret_unmanaged")
}

test_nhi_secret_unmanaged_not_for_a_revocation_a_question_or_a_consent if {
	every action in no_secret_work {
		c := nhi({"request": {"action": action}, "target": {"in_secrets_manager": false}})
		f.lacks(f.nhi_reasons(c), "nhi_secret_unmanaged")
	}
}

test_nhi_secret_unmanaged_even_when_the_request_is_refused_or_on_a_hygiene_path if {
	# The reason tells; obligations.rego drops the obligation when denied.
	denied := nhi({"request": {"action": "api_key_reissue"}, "actor": {"id": "u-999"}, "target": {"in_secrets_manager": false}})
	f.has(f.nhi_reasons(denied), "nhi_secret_unmanaged")
	f.has(f.nhi_reasons(f.cases(f.workload_self, {"target": {"in_secrets_manager": null}})), "nhi_secret_unmanaged")
}

test_nhi_secret_unmanaged_not_for_human_targets if {
	f.lacks(f.nhi_reasons(f.case({"target": {"in_secrets_manager": false}})), "nhi_secret_unmanaged")
}
