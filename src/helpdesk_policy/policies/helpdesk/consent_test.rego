# Unit tests for consent.rego: an OAuth consent's scope, reach and publisher,
# each read at its riskiest when missing.
package helpdesk.consent_test

import rego.v1

import data.helpdesk.fixtures_test as f

# A user consenting for themselves to a low-impact app from a verified publisher.
safe := {
	"request": {"action": "oauth_consent", "channel": "self_service_portal", "consent_scope": "low", "consent_tenant_wide": false},
	"target": {"id": "app-1", "type": "oauth_app", "publisher_verified": true, "owners": ["u-700"]},
	"actor": {"relationship": "admin"},
}

consent(patch) := f.cases(safe, patch)

test_a_safe_consent_raises_nothing if {
	f.consent(consent({})) == set()
}

# ------------------------------------------------------------- scope

test_consent_scope_beyond_low_needs_approval if {
	every scope in ["medium", "high"] {
		f.gives(f.consent(consent({"request": {"consent_scope": scope}})), "oauth_consent_scope", "manager_approval", [scope])
	}
}

test_an_unclassified_scope_is_high if {
	f.gives(f.consent(consent({"request": {"consent_scope": null}})), "oauth_consent_scope.unknown", "manager_approval", [])
}

# ------------------------------------------------------------- reach

test_tenant_wide_consent_needs_approval if {
	f.gives(f.consent(consent({"request": {"consent_tenant_wide": true}})), "oauth_consent_tenant_wide", "manager_approval", [])
}

test_an_unstated_reach_is_tenant_wide if {
	c := consent({"request": {"consent_tenant_wide": null}})
	f.gives(f.consent(c), "oauth_consent_tenant_wide.unknown", "manager_approval", [])
}

# ------------------------------------------------------------- publisher

test_an_unverified_publisher_needs_approval if {
	c := consent({"target": {"publisher_verified": false}})
	f.gives(f.consent(c), "oauth_publisher_unverified", "manager_approval", [])
}

test_an_unknown_publisher_is_unverified if {
	c := consent({"target": {"publisher_verified": null}})
	f.gives(f.consent(c), "oauth_publisher_unverified.unknown", "manager_approval", [])
}

# ------------------------------------------------------------- scope

test_only_for_oauth_consent if {
	unsafe := {"request": {"action": "access_grant", "consent_scope": null, "consent_tenant_wide": null}, "target": {"publisher_verified": null}}
	f.consent(consent(unsafe)) == set()
}

test_a_consent_with_nothing_stated if {
	c := consent({"request": {"consent_scope": null, "consent_tenant_wide": null}, "target": {"publisher_verified": null}})
	f.codes(f.consent(c)) == {"oauth_consent_scope", "oauth_consent_tenant_wide", "oauth_publisher_unverified"}
}
