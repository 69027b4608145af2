# Unit tests for constraints.rego: who may approve and whom to call back.
package helpdesk.constraints_test

import rego.v1

import data.helpdesk.constraints
import data.helpdesk.fixtures_test as f

cfg := data.helpdesk.config

decide(patch) := f.decision(f.case(patch))

# A request that needs approval (a tier-0 access grant for oneself).
approval := {"request": {"action": "access_grant", "channel": "walk_in", "requested_privilege_tier": 0}}

# A request that needs a callback (phone MFA reset of a tier-2 admin).
callback := {"target": {"privilege_tier": 2}}

approver(patch) := decide(patch).constraints.approver

callback_of(patch) := decide(patch).constraints.callback

# ------------------------------------------------------------- when present

test_no_constraints_below_approval if {
	decide({}).constraints == {}
	decide({"request": {"action": "password_reset", "channel": "self_service_portal"}}).constraints == {}
}

test_no_constraints_when_denied if {
	decide({"actor": f.stranger}).constraints == {}
}

test_an_approval_names_the_approver_only if {
	object.keys(decide(approval).constraints) == {"approver"}
}

test_a_callback_names_the_approver_and_the_callback if {
	object.keys(decide(callback).constraints) == {"approver", "callback"}
}

test_for_requirements_follows_the_requirements if {
	object.keys(constraints.for_requirements([])) == set()
	object.keys(constraints.for_requirements(["identity_step_up"])) == set()
}

# ------------------------------------------------------------- the approver

test_a_person_s_approver_is_their_manager_of_record if {
	a := approver(object.union(approval, {"target": {"manager": "u-900"}}))
	a == {"of_record": "manager", "ids": ["u-900"], "exclude": ["u-123"], "ai_agent": false}
}

test_an_unknown_manager_is_looked_up if {
	approver(approval) == {"of_record": "manager", "ids": null, "exclude": ["u-123"], "ai_agent": false}
}

test_the_requester_is_never_the_approver if {
	# The manager asking for their report's grant: none of record remains, go one level up.
	c := {
		"request": {"action": "access_grant", "channel": "walk_in", "requested_privilege_tier": 0},
		"actor": {"id": "u-900", "relationship": "manager"},
		"target": {"manager": "u-900"},
	}
	a := approver(c)
	a.ids == []
	a.exclude == ["u-900"]
}

test_an_nhi_s_approvers_are_its_owners_but_the_requester if {
	c := f.cases(f.nhi, {
		"request": {"action": "access_grant", "channel": "walk_in", "requested_privilege_tier": 0},
		"target": {"owners": ["u-200", "u-201", "u-201"]},
	})
	a := f.decision(c).constraints.approver
	a == {"of_record": "owner", "ids": ["u-201"], "exclude": ["u-200"], "ai_agent": false}
}

test_an_nhi_with_no_owners_named_is_looked_up if {
	c := f.cases(f.nhi, {"request": {"action": "credential_revoke"}, "actor": {"id": "u-999"}, "target": {"owners": []}})
	a := f.decision(c).constraints.approver
	a.of_record == "owner"
	a.ids == null
}

test_an_oauth_consent_is_approved_by_an_application_admin if {
	c := {
		"request": {"action": "oauth_consent", "channel": "self_service_portal"},
		"actor": {"relationship": "admin"},
		"target": {"id": "app-1", "type": "oauth_app", "owners": ["u-700"], "owner_active": true},
	}
	approver(c) == {"of_record": "application_admin", "ids": null, "exclude": ["u-123"], "ai_agent": false}
}

test_an_agent_its_principal_and_its_identity_are_excluded if {
	c := f.cases(approval, {
		"actor": object.union(f.agent, {"relationship": "admin", "on_behalf_of": "u-900", "runs_as": "svc-bot"}),
		"target": {"manager": "u-900"},
	})
	a := f.decision(c).constraints.approver
	a.exclude == ["agent-7", "svc-bot", "u-900"]
	a.ids == []
	a.ai_agent == false
}

test_exclusions_are_sorted_and_unique if {
	c := f.cases(approval, {"actor": object.union(f.agent, {"on_behalf_of": "u-123", "runs_as": "agent-7"})})
	f.decision(c).constraints.approver.exclude == ["agent-7", "u-123"]
}

# ------------------------------------------------------------- the callback

test_a_person_is_called_back_at_their_contact_of_record if {
	cb := callback_of(callback)
	cb == {
		"to": "holder",
		"ids": ["u-123"],
		"min_contact_age_days": cfg.callback_contact_min_age_days,
		"contact_age_days": null,
		"contact_usable": false,
		"fallback": "manager_of_record_or_in_person",
		"not_the_recovered_factor": true,
		"request_supplied": false,
		"ai_agent": false,
	}
}

test_a_contact_is_usable_from_the_minimum_age if {
	callback_of(object.union(callback, {"target": {"privilege_tier": 2, "contact_age_days": cfg.callback_contact_min_age_days}})).contact_usable == true
	young := object.union(callback, {"target": {"privilege_tier": 2, "contact_age_days": cfg.callback_contact_min_age_days - 1}})
	callback_of(young).contact_usable == false
	callback_of(young).contact_age_days == cfg.callback_contact_min_age_days - 1
}

test_the_minimum_contact_age_is_config if {
	c := f.case({"target": {"privilege_tier": 2, "contact_age_days": 5}, "config": {"callback_contact_min_age_days": 5}})
	f.decision(c).constraints.callback.contact_usable == true
}

test_only_a_factor_recovery_spares_the_recovered_factor if {
	callback_of(callback).not_the_recovered_factor == true
	reset := {"request": {"action": "password_reset"}, "target": {"privilege_tier": 2}}
	callback_of(reset).not_the_recovered_factor == false
}

test_an_nhi_s_owners_are_called_back if {
	c := f.cases(f.nhi, {"request": {"action": "api_key_reissue", "channel": "chat"}, "target": {"owners": ["u-201", "u-200"], "consumers": 40}})
	cb := f.decision(c).constraints.callback
	cb.to == "owners"
	cb.ids == ["u-200", "u-201"]
	cb.not_the_recovered_factor == false
}
