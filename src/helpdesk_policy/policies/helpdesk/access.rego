# Who the target is: privilege tier and VIP status raise every identity-changing action.
package helpdesk.access

import rego.v1

import data.helpdesk.common
import data.helpdesk.refs as r

cfg := common.cfg

reasons contains {
	"code": "privileged_target",
	"level": level,
	"message": sprintf("The target holds privileged access (tier %v).", [common.effective_tier]),
	"refs": [r.aa05, r.ac1, r.aa23],
} if {
	common.guarded
	common.privileged_target
	level := privileged_level
}

privileged_level := "callback" if common.effective_tier >= cfg.callback_tier else := "manager_approval"

reasons contains {
	"code": "vip_target",
	"level": cfg.vip_level,
	"message": "The target is a VIP, a favoured target of helpdesk impersonation.",
	"refs": [r.aa23],
} if {
	common.guarded
	input.target.vip == true
}
