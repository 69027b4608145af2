# Non-human identities: ownership, criticality, distribution, secret hygiene.
# Containment (revoke, disable) stays fast whatever the NHI's state.
package helpdesk.nhi

import rego.v1

import data.helpdesk.common
import data.helpdesk.refs as r

cfg := common.cfg

reasons contains {
	"code": "nhi_requester_not_owner",
	"level": "deny",
	"message": "Only an owner of record may request this for a non-human identity: human use of NHI credentials is not allowed. Ask the owner to request it, or transfer ownership first.",
	"refs": [r.nhi10, r.aa05],
} if {
	common.is_nhi
	common.guarded
	not common.is_owner
}

reasons contains {
	"code": "nhi_no_active_owner",
	"level": "deny",
	"message": "The non-human identity has no active owner of record (improper offboarding): complete the ownership-transfer process first.",
	"refs": [r.nhi1, r.aa01],
} if {
	common.is_nhi
	common.guarded
	not active_owner
}

active_owner if {
	count(input.target.owners) > 0
	input.target.owner_active == true
}

reasons contains {
	"code": "nhi_create_without_owner",
	"level": "deny",
	"message": "A non-human identity cannot be created without an owner of record: name an accountable owner in the request.",
	"refs": [r.nhi1, r.aa01],
} if {
	common.action == "service_account_create"
	count(input.target.owners) == 0
}

reasons contains {
	"code": "nhi_critical_environment",
	"level": "manager_approval",
	"message": "The non-human identity runs in a critical environment: its owner's manager must approve.",
	"refs": [r.nhi5, r.aa05],
} if {
	common.is_nhi
	common.guarded
	input.target.environment in cfg.critical_environments
}

reasons contains {
	"code": "nhi_critical_environment",
	"level": "manager_approval",
	"message": "No environment is recorded for the non-human identity: it is treated as production.",
	"refs": [r.nhi5, r.aa05],
} if {
	common.is_nhi
	common.guarded
	input.target.environment == null
}

reasons contains {
	"code": "nhi_widely_distributed",
	"level": "callback",
	"message": sprintf(
		"The non-human identity has %v consumers (widely distributed from %v): confirm with its owner of record out of band.",
		[input.target.consumers, cfg.nhi_wide_consumers],
	),
	"refs": [r.nhi5, r.aa05],
} if {
	common.is_nhi
	common.guarded
	input.target.consumers != null
	input.target.consumers >= cfg.nhi_wide_consumers
}

reasons contains {
	"code": "nhi_widely_distributed",
	"level": "callback",
	"message": "The number of consumers of this non-human identity is unknown: it is treated as widely distributed.",
	"refs": [r.nhi5, r.aa05],
} if {
	common.is_nhi
	common.guarded
	input.target.consumers == null
}

reasons contains {
	"code": "nhi_stale_secret",
	"level": "self_service",
	"message": sprintf(
		"The non-human identity's secret is older than %v days, or of unknown age: rotate it.",
		[cfg.max_secret_age_days],
	),
	"refs": [r.nhi7],
} if stale_secret

# Not when the request issues a credential: a reissue or rotation replaces the
# secret anyway, and creating an account issues its first one (there is no
# old secret to be stale).
stale_secret if {
	common.is_nhi
	common.guarded
	not issues_credential
	not fresh_secret
}

fresh_secret if {
	input.target.secret_age_days != null
	input.target.secret_age_days <= cfg.max_secret_age_days
}

reasons contains {
	"code": "nhi_secret_unmanaged",
	"level": "self_service",
	"message": "The new credential must live in a secrets manager, not in code, tickets or chat.",
	"refs": [r.nhi2, r.nhi7],
} if unmanaged_secret

unmanaged_secret if {
	common.is_nhi
	issues_credential
	input.target.in_secrets_manager != true
}

issues_credential if common.action in cfg.nhi_credential_actions

issues_credential if common.action == "service_account_create"
