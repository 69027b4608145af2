# Baseline level per action (lower on the two strong paths), the requester's
# authentication, the target's lifecycle status, and emergencies.
package helpdesk.baseline

import rego.v1

import data.helpdesk.common

cfg := common.cfg

# Always present: it says where the decision starts, and why nothing more is
# needed when nothing else fires.
reasons contains common.reason(common.baseline_key, common.baseline_level, baseline_args)

# The strong-path sentences name the authentication; the others the level.
baseline_args := [common.action, common.baseline_level] if {
	common.baseline_key in {"action_baseline", "action_baseline.access"}
} else := [common.action, input.actor.auth_strength]

reasons contains common.reason("requester_unauthenticated", "step_up", []) if not common.authenticated

reasons contains common.reason(
	"weak_authentication", "step_up",
	[input.actor.auth_strength, cfg.min_auth_strength],
) if {
	common.authenticated
	not common.strong_auth
}

reasons contains common.reason("target_offboarded", "deny", []) if {
	input.target.status == "offboarded"
	not common.is_containment
}

reasons contains common.reason("target_suspended", "manager_approval", []) if {
	input.target.status == "suspended"
	common.guarded
}

reasons contains common.reason("break_glass", "self_service", [cfg.post_incident_review_within_hours]) if {
	input.request.emergency == true
}
