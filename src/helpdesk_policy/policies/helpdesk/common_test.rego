# Unit tests for common.rego: the reason builder and the facts every concern shares.
package helpdesk.common_test

import rego.v1

import data.helpdesk.common
import data.helpdesk.fixtures_test as f

cfg := data.helpdesk.config

facts_for(action) := f.facts(f.case({"request": {"action": action}}))

# ---------------------------------------------------------------- reason()

test_reason_reads_code_message_and_refs_from_the_catalogue if {
	common.reason("weak_authentication", "step_up", ["password", "mfa"]) == {
		"code": "weak_authentication",
		"level": "step_up",
		"message": "The requester authenticated with password; mfa or stronger is needed to act without a step-up.",
		"refs": ["NIST-CSF-2.0:PR.AA-03", "NIST-SP-800-63B-4"],
	}
}

test_reason_variant_keys_share_their_code if {
	common.reason("chained_credential_change.unknown", "callback", [72]).code == "chained_credential_change"
	common.reason("unrelated_requester.agent", "deny", []).code == "unrelated_requester"
}

test_reason_prints_integers_as_digits if {
	r := common.reason("privileged_target", "callback", [2])
	r.message == "The target holds privileged access (tier 2)."
}

test_reason_with_no_arguments if {
	r := common.reason("vip_target", "manager_approval", [])
	r.message == "The target is a VIP, a favoured target of helpdesk impersonation."
	r.refs == ["CISA-AA23-320A"]
}

test_risk_codes_take_the_signal if {
	r := common.reason("risk_high", "callback", ["impossible_travel", "x."])
	r.code == "risk_impossible_travel"
	r.message == "High-risk signal impossible_travel: x."
}

test_every_catalogue_entry_builds_a_reason if {
	every key, entry in data.helpdesk.catalogue.reasons {
		entry_builds(key, entry)
	}
}

# Placeholder arguments: the signal's name where the code takes one.
entry_builds(key, entry) if {
	args := [a | name := entry.args[i]; a := placeholder(i, name)]
	r := common.reason(key, "step_up", args)
	regex.match(`^[a-z][a-z0-9_]*$`, r.code)
	not contains(r.message, "%!")
	r.refs == entry.refs
}

placeholder(i, name) := "off_hours" if {
	i == 0
	name == "signal"
} else := name

# -------------------------------------------------------------- the action

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

test_factor_recovery_actions if {
	every action in cfg.factor_recovery_actions {
		facts_for(action).is_factor_recovery == true
	}
	facts_for("password_reset").is_factor_recovery == false
	facts_for("account_unlock").is_factor_recovery == false
}

test_access_actions if {
	every action in cfg.access_actions {
		facts_for(action).is_access == true
	}
	facts_for("mfa_reset").is_access == false
	facts_for("token_revoke").is_access == false
}

test_escalates_for_guarded_actions_that_issue_or_grant if {
	facts_for("mfa_reset").escalates == true
	facts_for("access_grant").escalates == true
}

test_no_escalation_for_an_unlock_or_routine_actions if {
	facts_for("account_unlock").escalates == false
	facts_for("token_revoke").escalates == false
	facts_for("info_request").escalates == false
}

# ------------------------------------------------------------ who asks

test_remote_channels if {
	every channel in ["phone", "email", "chat"] {
		f.facts(f.case({"request": {"channel": channel}})).remote == true
	}
}

test_trusted_channels_are_not_remote if {
	every channel in ["self_service_portal", "walk_in", "api"] {
		f.facts(f.case({"request": {"channel": channel}})).remote == false
	}
}

test_remote_channels_are_config if {
	c := f.case({"request": {"channel": "chat"}, "config": {"remote_channels": ["email", "phone"]}})
	f.facts(c).remote == false
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

test_actor_types if {
	human := f.facts(f.case({}))
	[human.human_actor, human.is_agent, human.is_service] == [true, false, false]
	agent := f.facts(f.case({"actor": f.agent}))
	[agent.human_actor, agent.is_agent, agent.is_service] == [false, true, false]
	service := f.facts(f.case({"actor": {"id": "svc-9", "type": "service", "relationship": "admin"}}))
	[service.human_actor, service.is_agent, service.is_service] == [false, false, true]
}

test_authenticated_needs_a_factor if {
	f.facts(f.case({})).authenticated == true
	f.facts(f.case({"actor": {"authenticated": false, "auth_strength": "none"}})).authenticated == false
}

test_authenticated_flag_with_no_factor_is_not_authenticated if {
	# Inconsistent input (validation rejects it): read the weaker fact.
	f.facts(f.case({"actor": {"authenticated": true, "auth_strength": "none"}})).authenticated == false
}

test_strong_auth_at_min_auth_strength_and_above if {
	f.facts(f.case({})).strong_auth == true
	f.facts(f.case({"actor": {"auth_strength": "phishing_resistant"}})).strong_auth == true
	f.facts(f.case({"actor": {"auth_strength": "password"}})).strong_auth == false
	f.facts(f.case({"actor": {"authenticated": false, "auth_strength": "none"}})).strong_auth == false
}

test_strong_auth_is_config if {
	f.facts(f.case({"config": {"min_auth_strength": "phishing_resistant"}})).strong_auth == false
}

test_acts_on_itself if {
	f.facts(f.case({})).acts_on_itself == true
	f.facts(f.case({"actor": f.stranger})).acts_on_itself == false
}

# ------------------------------------------------------------ relationship

test_principal_of_a_person_is_themselves if {
	f.facts(f.case({"actor": f.stranger})).principal == "u-666"
}

test_principal_of_an_agent_is_whom_it_acts_for if {
	f.facts(f.case({"actor": f.agent})).principal == "u-123"
	f.facts(f.case({"actor": object.union(f.agent, {"on_behalf_of": null})})).principal == null
}

test_relationship_self_when_acting_on_itself if {
	f.facts(f.case({})).relationship == "self"
}

test_stated_relationship_stands_when_the_record_agrees_or_is_silent if {
	every rel in ["manager", "helpdesk_agent", "admin", "other"] {
		f.facts(f.case({"actor": {"id": "u-900", "relationship": rel}})).relationship == rel
	}
	c := f.case({"actor": {"id": "u-900", "relationship": "manager"}, "target": {"manager": "u-900"}})
	f.facts(c).relationship == "manager"
}

test_a_manager_claim_the_directory_contradicts_is_other if {
	c := f.case({"actor": {"id": "u-900", "relationship": "manager"}, "target": {"manager": "u-200"}})
	f.facts(c).relationship == "other"
}

test_a_person_has_no_owner if {
	c := f.case({"actor": {"id": "u-900", "relationship": "owner"}, "target": {"owners": ["u-900"]}})
	f.facts(c).relationship == "other"
}

test_an_nhi_owner_claim_needs_the_record if {
	listed := f.cases(f.nhi, {})
	f.facts(listed).relationship == "owner"
	unlisted := f.cases(f.nhi, {"actor": {"id": "u-999"}})
	f.facts(unlisted).relationship == "other"
}

test_an_agent_relationship_is_its_principal_s if {
	# Acting for the holder.
	f.facts(f.case({"actor": f.agent})).relationship == "self"

	# Acting for an owner of the NHI.
	owner := f.cases(f.nhi, {"actor": object.union(f.agent, {"on_behalf_of": "u-200"})})
	f.facts(owner).relationship == "owner"

	# Acting for the manager of record.
	manager := f.case({"actor": object.union(f.agent, {"on_behalf_of": "u-900"}), "target": {"manager": "u-900"}})
	f.facts(manager).relationship == "manager"
}

test_an_agent_s_own_claim_never_decides if {
	every rel in ["manager", "owner", "helpdesk_agent", "admin", "other"] {
		# Acting for someone with no relationship of record.
		c := f.case({"actor": object.union(f.agent, {"relationship": rel, "on_behalf_of": "u-555"})})
		f.facts(c).relationship == "other"
	}
}

test_an_agent_with_no_principal_is_unrelated if {
	c := f.case({"actor": object.union(f.agent, {"relationship": "manager", "on_behalf_of": null})})
	f.facts(c).relationship == "other"

	# Even when the manager of record is unknown (null never matches null).
	f.facts(c).principal == null
}

test_an_agent_acting_on_itself_is_self if {
	c := f.case({
		"actor": {"id": "agent-7", "type": "ai_agent", "relationship": "self", "on_behalf_of": null},
		"target": {"id": "agent-7", "type": "ai_agent"},
	})
	f.facts(c).relationship == "self"
}

# ------------------------------------------------------------ ownership and roles

test_owner_is_listed_in_owners if {
	f.facts(f.case(f.nhi)).is_owner == true
}

test_non_owner if {
	f.facts(f.cases(f.nhi, {"actor": {"id": "u-999"}})).is_owner == false
}

test_an_agent_acting_for_an_owner_is_an_owner if {
	c := f.cases(f.nhi, {"actor": object.union(f.agent, {"on_behalf_of": "u-200"})})
	f.facts(c).is_owner == true
}

test_a_person_s_target_has_no_owner if {
	f.facts(f.case({"target": {"owners": ["u-123"]}})).is_owner == false
}

test_active_owner_needs_an_owner_and_the_flag if {
	f.facts(f.case(f.nhi)).active_owner == true
	f.facts(f.cases(f.nhi, {"target": {"owner_active": null}})).active_owner == false
	f.facts(f.cases(f.nhi, {"target": {"owner_active": false}})).active_owner == false
	f.facts(f.cases(f.nhi, {"target": {"owners": []}})).active_owner == false
}

test_security_role_needs_a_strongly_authenticated_person if {
	c := f.case({"actor": {"id": "u-900", "relationship": "admin", "roles": ["security"]}})
	f.facts(c).security_role == true
	f.facts(c).support_role == true
	weak := f.case({"actor": {"id": "u-900", "relationship": "admin", "roles": ["security"], "auth_strength": "password"}})
	f.facts(weak).security_role == false
	agent := f.case({"actor": object.union(f.agent, {"roles": ["security"]})})
	f.facts(agent).security_role == false
}

test_helpdesk_role_is_a_support_role_only if {
	c := f.case({"actor": {"id": "u-900", "relationship": "helpdesk_agent", "roles": ["service_desk"]}})
	f.facts(c).support_role == true
	f.facts(c).security_role == false
	f.facts(f.case({})).support_role == false
}

test_roles_are_config if {
	c := f.case({"actor": {"id": "u-900", "relationship": "admin", "roles": ["soc"]}, "config": {"security_roles": ["soc"]}})
	f.facts(c).security_role == true
}

# ------------------------------------------------------------ strong paths

test_self_service_path if {
	fs := f.facts(f.case(f.strong_self))
	fs.self_service_path == true
	fs.strong_path == true
	fs.impersonable == false
}

test_self_service_path_needs_the_portal_the_holder_and_strong_auth if {
	f.facts(f.case({})).self_service_path == false
	f.facts(f.cases(f.strong_self, {"request": {"channel": "walk_in"}})).self_service_path == false
	f.facts(f.cases(f.strong_self, {"actor": {"auth_strength": "password"}})).self_service_path == false
	f.facts(f.cases(f.strong_self, {"actor": f.stranger})).self_service_path == false
	f.facts(f.cases(f.strong_self, {"actor": f.agent})).self_service_path == false
}

test_workload_self_path if {
	fs := f.facts(f.case(f.workload_self))
	fs.workload_self_path == true
	fs.nhi_hygiene_path == true
	fs.strong_path == true
}

test_workload_self_path_needs_strong_workload_authentication if {
	f.facts(f.cases(f.workload_self, {"actor": {"auth_strength": "mfa"}})).workload_self_path == false
	c := f.cases(f.workload_self, {"actor": {"auth_strength": "mfa"}, "config": {"workload_min_auth_strength": "mfa"}})
	f.facts(c).workload_self_path == true
}

test_workload_self_path_needs_a_channel_at_least_as_trusted_as_the_api if {
	every channel in ["self_service_portal", "walk_in", "api"] {
		f.facts(f.cases(f.workload_self, {"request": {"channel": channel}})).workload_self_path == true
	}
	every channel in ["chat", "email", "phone"] {
		f.facts(f.cases(f.workload_self, {"request": {"channel": channel}})).workload_self_path == false
	}
}

test_workload_self_path_needs_the_workload_itself if {
	c := f.cases(f.workload_self, {"actor": {"id": "wl-2", "relationship": "admin"}})
	f.facts(c).workload_self_path == false
}

test_owner_path if {
	fs := f.facts(f.case(f.owner_rotation))
	fs.owner_path == true
	fs.nhi_hygiene_path == true
	fs.strong_path == true
}

test_owner_path_not_remote_weak_inactive_or_by_an_agent if {
	f.facts(f.cases(f.owner_rotation, {"request": {"channel": "chat"}})).owner_path == false
	f.facts(f.cases(f.owner_rotation, {"actor": {"auth_strength": "password"}})).owner_path == false
	f.facts(f.cases(f.owner_rotation, {"target": {"owner_active": null}})).owner_path == false
	agent := object.union(f.agent, {"on_behalf_of": "u-200"})
	f.facts(f.cases(f.owner_rotation, {"actor": agent})).owner_path == false
}

test_hygiene_path_only_for_nhi_credential_actions if {
	fs := f.facts(f.cases(f.owner_rotation, {"request": {"action": "access_grant"}}))
	fs.owner_path == true
	fs.nhi_hygiene_path == false
	fs.strong_path == false
	fs.impersonable == true
}

test_the_base_case_is_impersonable if {
	f.facts(f.case({})).impersonable == true
}

# ------------------------------------------------------------ the baseline

test_baseline_of_the_base_case if {
	fs := f.facts(f.case({}))
	fs.baseline_key == "action_baseline"
	fs.baseline_level == "step_up"
	fs.base_rank == 1
}

test_baseline_for_access_actions if {
	fs := facts_for("access_grant")
	fs.baseline_key == "action_baseline.access"
	fs.base_rank == 2
}

test_baseline_of_strong_self_service if {
	fs := f.facts(f.case(f.strong_self))
	fs.baseline_key == "action_baseline.strong_self_service"
	fs.baseline_level == "self_service"
	fs.base_rank == 0
}

test_strong_self_service_needs_its_own_strength if {
	# Push MFA in the portal is the holder's strong session, but below
	# strong_self_service_auth for authenticator changes.
	fs := f.facts(f.cases(f.strong_self, {"actor": {"auth_strength": "mfa"}}))
	fs.self_service_path == true
	fs.baseline_key == "action_baseline"
	fs.baseline_level == "step_up"
}

test_strong_self_service_only_for_its_actions if {
	fs := f.facts(f.cases(f.strong_self, {"request": {"action": "temporary_access_pass"}}))
	fs.baseline_key == "action_baseline"
	fs.baseline_level == "step_up"
}

test_baseline_of_the_workload_self_path if {
	fs := f.facts(f.case(f.workload_self))
	fs.baseline_key == "action_baseline.workload_self"
	fs.baseline_level == "self_service"
}

test_the_owner_path_keeps_the_action_baseline if {
	fs := f.facts(f.case(f.owner_rotation))
	fs.baseline_key == "action_baseline"
	fs.baseline_level == "step_up"
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

# ------------------------------------------------------------ the target

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

test_production_unless_recognised_as_non_production if {
	every env in [null, "production", "prod", "live", "eu-west"] {
		f.facts(f.case({"target": {"environment": env}})).env_production == true
	}
	every env in ["staging", "dev", "test", "qa"] {
		f.facts(f.case({"target": {"environment": env}})).env_production == false
	}
}

test_non_production_environments_are_config if {
	c := f.case({"target": {"environment": "staging"}, "config": {"non_production_environments": ["dev"]}})
	f.facts(c).env_production == true
}

test_holds_secret_unless_known_secretless if {
	f.facts(f.case({})).holds_secret == true
	f.facts(f.case({"target": {"holds_secret": true}})).holds_secret == true
	f.facts(f.case({"target": {"holds_secret": false}})).holds_secret == false
}

# ------------------------------------------------------------ risk

test_signals_split_into_high_and_medium if {
	fs := f.facts(f.case({"context": {"risk_signals": ["leaked_credential", "new_device", "off_hours"]}}))
	fs.high == {"leaked_credential"}
	fs.medium == {"new_device", "off_hours"}
	fs.leaked == true
}

test_high_signals_are_config if {
	c := f.case({"context": {"risk_signals": ["new_device"]}, "config": {"high_risk_signals": ["new_device"]}})
	f.facts(c).high == {"new_device"}
}

test_remediation_is_a_leak_fixed_on_a_strong_path if {
	leak := {"context": {"risk_signals": ["leaked_credential"]}}
	f.facts(f.cases(f.owner_rotation, leak)).remediation == true
	f.facts(f.cases(f.strong_self, {"request": {"action": "password_reset"}, "context": leak.context})).remediation == true
}

test_no_remediation_off_the_strong_path_or_for_other_actions if {
	leak := {"context": {"risk_signals": ["leaked_credential"]}}
	f.facts(f.case(leak)).remediation == false
	f.facts(f.cases(f.strong_self, {"request": {"action": "contact_change"}, "context": leak.context})).remediation == false
	f.facts(f.case(f.owner_rotation)).remediation == false
}
