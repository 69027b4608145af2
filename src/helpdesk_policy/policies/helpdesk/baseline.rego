# Baseline level per action, the requester's authentication, the target's
# lifecycle status, and emergencies.
package helpdesk.baseline

import rego.v1

import data.helpdesk.common
import data.helpdesk.refs as r

cfg := common.cfg

baseline_refs := [r.aa05, r.ac1] if common.is_access else := [r.aa01, r.ac1]

reasons contains {
	"code": "action_baseline",
	"level": cfg.action_baseline[common.action],
	"message": sprintf(
		"%v starts at %v for an authenticated requester acting on their own account with no risk signal.",
		[common.action, cfg.action_baseline[common.action]],
	),
	"refs": baseline_refs,
}

reasons contains {
	"code": "requester_unauthenticated",
	"level": "step_up",
	"message": "The requester is not authenticated: verify them with a strong factor bound to the identity of record.",
	"refs": [r.aa03, r.sp63b, r.aa23],
} if {
	common.action != "info_request"
	not common.authenticated
}

reasons contains {
	"code": "weak_authentication",
	"level": "step_up",
	"message": sprintf(
		"The requester authenticated with %v; %v or stronger is needed to act without a step-up.",
		[input.actor.auth_strength, cfg.min_auth_strength],
	),
	"refs": [r.aa03, r.sp63b],
} if {
	common.action != "info_request"
	common.authenticated
	common.auth_rank[input.actor.auth_strength] < common.auth_rank[cfg.min_auth_strength]
}

reasons contains {
	"code": "target_offboarded",
	"level": "deny",
	"message": "The target identity is offboarded: only revocation or disable is allowed here. Reactivation goes through the identity lifecycle (rehire) process.",
	"refs": [r.aa01, r.nhi1],
} if {
	input.target.status == "offboarded"
	not common.is_containment
}

reasons contains {
	"code": "target_suspended",
	"level": "manager_approval",
	"message": "The target identity is suspended: acting on it needs its manager or owner of record.",
	"refs": [r.aa01, r.aa05],
} if {
	input.target.status == "suspended"
	common.guarded
}

reasons contains {
	"code": "break_glass",
	"level": "self_service",
	"message": "Emergency (break-glass) request: no level is lowered; access is time-bound and a post-incident review follows.",
	"refs": [r.aa05],
} if {
	input.request.emergency == true
}
