# What must be recorded and done after acting. Depends on the final level,
# so it reads data.helpdesk.level (no rule cycle: reasons never read obligations),
# and on the NHI facts behind nhi_stale_secret / nhi_secret_unmanaged.
package helpdesk.obligations

import rego.v1

import data.helpdesk
import data.helpdesk.common
import data.helpdesk.nhi

cfg := common.cfg

level := helpdesk.level

denied if level == "deny"

evidence_fields := {
	"self_service": ["requester", "outcome"],
	"step_up": ["identity_proof", "verifier", "outcome"],
	"manager_approval": ["identity_proof", "verifier", "approver", "outcome"],
	"callback": ["identity_proof", "verifier", "approver", "outcome"],
	"deny": ["requester", "denial_reason", "outcome"],
}

obligations contains {"code": "record_evidence", "fields": evidence_fields[level]}

# Tell the identity (or the NHI's owner) out of band, attempts included.
obligations contains {"code": "notify_identity_owner"} if common.action != "info_request"

obligations contains {"code": "revoke_previous_credential", "within_hours": cfg.revoke_previous_within_hours} if {
	not denied
	revokes_previous
}

revokes_previous if common.action in cfg.nhi_credential_actions

revokes_previous if common.action == "mfa_reset"

obligations contains {"code": "terminate_sessions"} if {
	not denied
	common.action in cfg.terminate_sessions_after
}

obligations contains {"code": "rotate_stale_secret"} if {
	not denied
	nhi.stale_secret
}

obligations contains {"code": "move_to_secrets_manager"} if {
	not denied
	nhi.unmanaged_secret
}

obligations contains {"code": "time_bound_access", "within_hours": cfg.break_glass_hours} if {
	not denied
	input.request.emergency == true
	common.is_access
}

obligations contains {"code": "post_incident_review"} if input.request.emergency == true
