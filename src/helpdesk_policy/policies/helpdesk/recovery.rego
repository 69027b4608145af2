# Human credential and factor recovery: channels, who asks, chained takeovers.
package helpdesk.recovery

import rego.v1

import data.helpdesk.common
import data.helpdesk.refs as r

cfg := common.cfg

reasons contains {
	"code": "remote_channel_recovery",
	"level": "step_up",
	"message": sprintf(
		"Credential or factor recovery requested over %v, an impersonable channel.",
		[input.request.channel],
	),
	"refs": [r.aa23, r.sp63b],
} if {
	common.is_recovery
	common.remote_channel
}

reasons contains {
	"code": "privileged_remote_recovery",
	"level": "callback",
	"message": sprintf(
		"Recovery of a privileged account requested over %v: call back a contact of record before acting.",
		[input.request.channel],
	),
	"refs": [r.aa23, r.aa05, r.sp63b],
} if {
	common.is_recovery
	common.remote_channel
	common.privileged_target
}

reasons contains {
	"code": "third_party_recovery",
	"level": "callback",
	"message": sprintf(
		"Recovery requested by a requester other than the account holder (relationship to the holder: %v): confirm with the holder through a callback to their contact of record.",
		[input.actor.relationship],
	),
	"refs": [r.aa23, r.sp63b, r.aa02],
} if {
	common.is_recovery
	common.is_human
	not input.actor.relationship in {"self", "other"}
}

reasons contains {
	"code": "unrelated_requester",
	"level": "deny",
	"message": "The requester has no relationship to the account holder: the helpdesk must not change another person's credentials or access. The holder, or their manager through the access-request process, must ask.",
	"refs": [r.aa23, r.aa05, r.ac1],
} if {
	common.is_human
	input.actor.relationship == "other"
	common.is_recovery_or_access
}

reasons contains {
	"code": "chained_credential_change",
	"level": "callback",
	"message": sprintf(
		"A factor or contact change within %v hours of another credential change fits a chained account-takeover pattern.",
		[cfg.chained_change_window_hours],
	),
	"refs": [r.aa23, r.sp63b],
} if {
	common.action in cfg.factor_change_actions
	hours := input.context.recent_credential_change_hours
	hours != null
	hours <= cfg.chained_change_window_hours
}
