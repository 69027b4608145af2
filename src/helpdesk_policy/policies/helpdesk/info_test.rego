# Unit tests for info.rego: another identity's security set-up is answered
# to the identity, an owner of record, or a verified helpdesk or security role.
package helpdesk.info_test

import rego.v1

import data.helpdesk.fixtures_test as f

ask(patch) := f.cases({"request": {"action": "info_request"}}, patch)

test_the_holder_is_answered if {
	f.lacks(f.info(ask({})), "identity_info_disclosure")
}

test_an_owner_of_record_is_answered if {
	f.lacks(f.info(f.cases(f.nhi, {"request": {"action": "info_request"}})), "identity_info_disclosure")
}

test_an_agent_relaying_the_holder_is_answered if {
	f.lacks(f.info(ask({"actor": f.agent})), "identity_info_disclosure")
}

test_a_verified_helpdesk_or_security_role_is_answered if {
	every role in ["helpdesk", "service_desk", "security", "incident_response"] {
		c := ask({"actor": {"id": "u-900", "relationship": "helpdesk_agent", "roles": [role]}})
		f.lacks(f.info(c), "identity_info_disclosure")
	}
}

test_anyone_else_is_refused if {
	every rel in ["manager", "helpdesk_agent", "admin", "other"] {
		c := ask({"actor": {"id": "u-900", "relationship": rel}})
		f.gives(f.info(c), "identity_info_disclosure", "deny", [])
	}
}

test_a_helpdesk_role_must_be_strongly_authenticated if {
	weak := ask({"actor": {"id": "u-900", "relationship": "helpdesk_agent", "roles": ["helpdesk"], "auth_strength": "password"}})
	f.has(f.info(weak), "identity_info_disclosure")
	unauthenticated := ask({"actor": {
		"id": "u-900", "relationship": "helpdesk_agent", "roles": ["helpdesk"],
		"authenticated": false, "auth_strength": "none",
	}})
	f.has(f.info(unauthenticated), "identity_info_disclosure")
}

test_an_agent_never_holds_a_support_role if {
	c := ask({"actor": object.union(f.agent, {"on_behalf_of": null, "roles": ["helpdesk"]})})
	f.has(f.info(c), "identity_info_disclosure")
}

test_a_claimed_owner_of_a_person_is_refused if {
	f.has(f.info(ask({"actor": {"id": "u-900", "relationship": "owner"}})), "identity_info_disclosure")
}

test_a_non_owner_of_an_nhi_is_refused if {
	c := f.cases(f.nhi, {"request": {"action": "info_request"}, "actor": {"id": "u-999"}})
	f.has(f.info(c), "identity_info_disclosure")
}

test_only_information_requests if {
	f.lacks(f.info(f.case({"actor": f.stranger})), "identity_info_disclosure")
}

test_helpdesk_roles_are_config if {
	c := ask({"actor": {"id": "u-900", "relationship": "helpdesk_agent", "roles": ["helpdesk"]}, "config": {"helpdesk_roles": []}})
	f.has(f.info(c), "identity_info_disclosure")
}
