# OAuth consent: what the app asks for, for whom, and who published it
# (OWASP NHI3, vulnerable third-party NHIs). A consent is not a credential
# action: its own facts raise it, each read at its riskiest when missing.
package helpdesk.consent

import rego.v1

import data.helpdesk.common

consent if common.action == "oauth_consent"

scope := input.request.consent_scope

reasons contains common.reason(scope_key, "manager_approval", scope_args) if {
	consent
	scope != "low"
}

scope_key := "oauth_consent_scope.unknown" if scope == null else := "oauth_consent_scope"

scope_args := [] if scope == null else := [scope]

reasons contains common.reason(tenant_wide_key, "manager_approval", []) if {
	consent
	input.request.consent_tenant_wide != false
}

tenant_wide_key := "oauth_consent_tenant_wide.unknown" if {
	input.request.consent_tenant_wide == null
} else := "oauth_consent_tenant_wide"

reasons contains common.reason(publisher_key, "manager_approval", []) if {
	consent
	input.target.publisher_verified != true
}

publisher_key := "oauth_publisher_unverified.unknown" if {
	input.target.publisher_verified == null
} else := "oauth_publisher_unverified"
