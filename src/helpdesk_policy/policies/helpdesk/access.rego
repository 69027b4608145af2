# Who the target is and what is asked for: privilege tier and VIP status raise
# every impersonable identity-changing action; the tier of the access asked
# for raises access changes.
package helpdesk.access

import rego.v1

import data.helpdesk.common

cfg := common.cfg

# Strong paths (the holder's own strong portal session, an NHI's owner or the
# workload itself rotating a secret) carry their controls as obligations.
reasons contains common.reason("privileged_target", privileged_level, [common.effective_tier]) if {
	common.escalates
	common.privileged_target
	common.impersonable
}

privileged_level := "callback" if common.effective_tier >= cfg.callback_tier else := "manager_approval"

reasons contains common.reason("vip_target", cfg.vip_level, []) if {
	common.escalates
	input.target.vip == true
	common.impersonable
}

grant_actions := {"access_grant", "role_change", "privilege_elevation", "delegated_admin"}

# The tier of the access asked for. Not stated: read as at least the target's
# own tier and at least privileged, so that leaving it out never lowers a
# decision below what the target's tier alone gave (privileged_target, which
# a strong path no longer raises). (Comparisons, not max(): see levels.rego.)
requested_tier := input.request.requested_privilege_tier if {
	input.request.requested_privilege_tier != null
} else := common.effective_tier if {
	common.effective_tier > cfg.privileged_tier
} else := cfg.privileged_tier

reasons contains common.reason(requested_key, requested_level, [requested_tier]) if {
	common.action in grant_actions
	requested_tier >= cfg.privileged_tier
}

requested_key := "requested_privilege.unknown" if {
	input.request.requested_privilege_tier == null
} else := "requested_privilege"

requested_level := "callback" if requested_tier >= cfg.callback_tier else := "manager_approval"
