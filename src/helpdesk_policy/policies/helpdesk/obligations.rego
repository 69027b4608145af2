# What must be recorded and done after acting. Depends on the final level,
# so it reads data.helpdesk.level (no rule cycle: reasons never read
# obligations), and on the NHI facts behind nhi_stale_secret and
# nhi_secret_unmanaged.
package helpdesk.obligations

import rego.v1

import data.helpdesk
import data.helpdesk.common
import data.helpdesk.nhi

cfg := common.cfg

# The obligations of the final decision, given its level. The level is an
# argument rather than a rule reference: rego-cpp compiles a `with` over this
# package (the unit tests) once per reference to the level, and the level
# reads every reason.
obligations := for_level(helpdesk.level)

for_level(level) := at_every_level(level) if {
	level == "deny"
} else := at_every_level(level) | unless_denied

# Whatever the level: the record, and the notices (a denied attempt too).
at_every_level(level) := {record(level)} | notices

record(level) := {"code": "record_evidence", "fields": evidence(level)}

# The record names who verified, who approved, which contact was called back
# (from where, and who answered), and for a denial the channel and caller.
evidence_fields := {
	"self_service": ["requester", "authentication_event", "outcome"],
	"step_up": ["identity_proof", "verifier", "outcome"],
	"manager_approval": ["identity_proof", "verifier", "approver", "outcome"],
	"callback": [
		"identity_proof", "verifier", "approver", "callback_contact",
		"callback_contact_source", "callback_answered_by", "outcome",
	],
	"deny": ["requester", "channel", "caller_contact", "denial_reason", "outcome"],
}

# An answered question changes nothing: no authentication event to keep.
evidence(level) := ["requester", "outcome"] if {
	level == "self_service"
	common.action == "info_request"
} else := evidence_fields[level]

# Tell the identity out of band, attempts included: the holder, an NHI's
# owners, or NHI governance when no active owner remains.
notices contains {"code": "notify_identity_owner", "to": notify_to} if common.action != "info_request"

notify_to := "holder" if {
	common.is_human
} else := "owners" if {
	common.active_owner
} else := cfg.nhi_governance_contact

# The previous phone or address of record hears of the change, or the real
# holder never learns of a hijack.
unless_denied contains {"code": "notify_previous_contact"} if {
	common.action == "contact_change"
}

unless_denied contains {"code": "revoke_previous_credential", "within_hours": revoke_hours} if {
	revokes_previous
}

revokes_previous if common.action in cfg.nhi_credential_actions

revokes_previous if common.action == "mfa_reset"

# A lost factor or a leaked credential goes at once.
revoke_hours := cfg.revoke_compromised_within_hours if {
	compromised
} else := cfg.revoke_previous_within_hours

compromised if common.action == "mfa_reset"

compromised if common.leaked

unless_denied contains {"code": "terminate_sessions"} if {
	common.action in cfg.terminate_sessions_after
}

unless_denied contains {"code": "rotate_stale_secret"} if {
	nhi.stale_secret
}

unless_denied contains {"code": "move_to_secrets_manager"} if {
	nhi.unmanaged_secret
}

# Privileged access is granted just in time, a temporary access pass
# expires, break-glass access ends: the shortest applicable limit.
unless_denied contains {"code": "time_bound_access", "within_hours": time_bound_hours} if {
	count(time_limits) > 0
}

time_limits contains cfg.privileged_access_max_hours if privilege_grant

time_limits contains cfg.break_glass_hours if {
	input.request.emergency == true
	common.is_access
}

time_limits contains cfg.temporary_access_pass_max_hours if common.action == "temporary_access_pass"

privilege_grant if common.action in {"privilege_elevation", "delegated_admin"}

privilege_grant if {
	common.is_access
	tier := input.request.requested_privilege_tier
	tier != null
	tier >= cfg.privileged_tier
}

privilege_grant if {
	common.is_access
	common.is_agent
}

# The smallest limit, by comparison (rego-cpp's min() orders numbers as strings).
time_bound_hours := hours if {
	some hours in time_limits
	every other in time_limits {
		hours <= other
	}
}

notices contains {"code": "post_incident_review", "within_hours": cfg.post_incident_review_within_hours} if {
	input.request.emergency == true
}
