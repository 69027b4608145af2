# Non-human identities: ownership, environment, distribution, secret hygiene.
# Containment stays fast whatever the NHI's state (containment.rego says for
# whom), and an OAuth consent has rules of its own (consent.rego).
package helpdesk.nhi

import rego.v1

import data.helpdesk.common

cfg := common.cfg

rules_apply if {
	common.is_nhi
	common.guarded
	common.action != "oauth_consent"
}

# The escalations for what the NHI reaches. Not for an unlock (it issues
# nothing), nor on the hygiene path (its owner or the workload itself
# rotating a secret: the fix must not be slowed down).
escalates if {
	rules_apply
	not common.action in cfg.no_credential_actions
	not common.nhi_hygiene_path
}

# At creation the named owner approves: the creator need not be the owner. A
# workload may rotate its own secret (NHI7: rotation must be easy), but nothing
# else on itself: changing its own access or recovering itself is what an
# owner asks for (NHI10, NHI5).
reasons contains common.reason("nhi_requester_not_owner", "deny", []) if {
	rules_apply
	not common.is_owner
	not self_rotation
	common.action != "service_account_create"
}

self_rotation if {
	common.acts_on_itself
	common.action in cfg.nhi_credential_actions
}

reasons contains common.reason("nhi_no_active_owner", "deny", []) if {
	rules_apply
	not common.active_owner
}

reasons contains common.reason("nhi_create_without_owner", "deny", []) if {
	common.action == "service_account_create"
	count(input.target.owners) == 0
}

reasons contains common.reason(environment_key, "manager_approval", []) if {
	escalates
	common.env_production
}

environment_key := "nhi_critical_environment.unknown" if {
	input.target.environment == null
} else := "nhi_critical_environment"

reasons contains common.reason("nhi_widely_distributed.unknown", "callback", []) if {
	escalates
	input.target.consumers == null
}

reasons contains common.reason(
	"nhi_widely_distributed", "callback",
	[input.target.consumers, cfg.nhi_wide_consumers],
) if {
	escalates
	input.target.consumers != null
	input.target.consumers >= cfg.nhi_wide_consumers
}

reasons contains common.reason("nhi_stale_secret", "self_service", [cfg.max_secret_age_days]) if stale_secret

# Not when the request issues a credential: a reissue or rotation replaces
# the secret anyway, and creating an account issues its first one. Not for a
# secretless (federated) workload.
stale_secret if {
	rules_apply
	common.holds_secret
	not issues_credential
	not fresh_secret
}

fresh_secret if {
	input.target.secret_age_days != null
	input.target.secret_age_days <= cfg.max_secret_age_days
}

reasons contains common.reason(unmanaged_key, "self_service", []) if unmanaged_secret

# Whenever the secret is not known to be in a secrets manager; not for a
# revocation (a revoked secret needs no vault), an information request or a
# consent.
unmanaged_secret if {
	common.is_nhi
	common.holds_secret
	input.target.in_secrets_manager != true
	not common.action in {"info_request", "oauth_consent"}
	not common.is_containment
}

unmanaged_key := "nhi_secret_unmanaged" if issues_credential else := "nhi_secret_unmanaged.existing"

issues_credential if common.action in cfg.nhi_credential_actions

issues_credential if common.action == "service_account_create"
