# Human credential and factor recovery: impersonable channels, recovery that
# no enrolled factor can verify, privileged and VIP accounts, who asks, and
# chained takeovers.
package helpdesk.recovery

import rego.v1

import data.helpdesk.common

cfg := common.cfg

channel := input.request.channel

# Recovery that issues or changes a credential (not an unlock).
issues_or_changes if {
	common.is_recovery
	not common.action in cfg.no_credential_actions
}

reasons contains common.reason("remote_channel_recovery", "step_up", [common.action, channel]) if {
	common.is_recovery
	common.remote
}

# No factor enrolled to push to: a push or code cannot verify the requester,
# so identity proofing takes its place (SP 800-63A-4; SP 800-63B-4 account
# recovery: never knowledge questions). On an impersonable channel the agent
# cannot proof anyone, so the manager of record approves as well; at the desk
# or the portal, proofing (in person, or supervised remote) is the step-up.
# Not for the holder already strongly authenticated: they hold a factor.
# Graded by channel trust, so a less trusted channel never lowers it.
reasons contains common.reason(unverifiable_key, unverifiable_level, [common.action]) if {
	common.is_human
	common.is_factor_recovery
	not holder_strongly_authenticated
	input.context.enrolled_factor_available != true
}

unverifiable_key := "factor_recovery_unverifiable" if common.remote else := "factor_recovery_unverifiable.proofing"

unverifiable_level := "manager_approval" if common.remote else := "step_up"

holder_strongly_authenticated if {
	common.human_actor
	common.relationship == "self"
	common.strong_auth
}

reasons contains common.reason("privileged_remote_recovery", "callback", [common.effective_tier, channel]) if {
	issues_or_changes
	common.remote
	common.privileged_target
}

reasons contains common.reason("vip_remote_recovery", "callback", [channel]) if {
	issues_or_changes
	common.remote
	input.target.vip == true
}

reasons contains common.reason("third_party_recovery", "callback", [common.relationship]) if {
	issues_or_changes
	common.is_human
	not common.relationship in {"self", "other"}
}

reasons contains common.reason(unrelated_key, "deny", []) if {
	common.is_human
	common.relationship == "other"
	common.guarded
}

unrelated_key := "unrelated_requester.agent" if common.is_agent else := "unrelated_requester"

# Remote only: the pattern is remote impersonation (walk-in is in-person
# proofing, the portal has its own session). No history given reads as a
# change within the window.
reasons contains common.reason(chained_key, "callback", [cfg.chained_change_window_hours]) if {
	common.action in cfg.factor_change_actions
	common.remote
	recent_change
}

recent_change if input.context.recent_credential_change_hours == null

recent_change if {
	hours := input.context.recent_credential_change_hours
	hours != null
	hours <= cfg.chained_change_window_hours
}

chained_key := "chained_credential_change.unknown" if {
	input.context.recent_credential_change_hours == null
} else := "chained_credential_change"
