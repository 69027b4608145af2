# Risk signals and failed verifications, graded. High signals go to callback;
# each medium signal raises the baseline one step, and several compound.
package helpdesk.risk

import rego.v1

import data.helpdesk.common
import data.helpdesk.levels
import data.helpdesk.refs as r

cfg := common.cfg

refs := [r.aa03, r.aa23]

signals := input.context.risk_signals

medium := {s | some s in signals; not s in cfg.high_risk_signals}

reasons contains {
	"code": concat("", ["risk_", s]),
	"level": "callback",
	"message": sprintf("High-risk signal: %v.", [s]),
	"refs": refs,
} if {
	common.guarded
	some s in signals
	s in cfg.high_risk_signals
}

reasons contains {
	"code": concat("", ["risk_", s]),
	"level": levels.raise(common.base_rank, 1),
	"message": sprintf("Risk signal: %v raises the baseline one step.", [s]),
	"refs": refs,
} if {
	common.guarded
	some s in medium
}

reasons contains {
	"code": "risk_compound",
	"level": levels.raise(common.base_rank, count(medium)),
	"message": sprintf("%v medium risk signals together raise the baseline %v steps.", [count(medium), count(medium)]),
	"refs": refs,
} if {
	common.guarded
	count(medium) >= 2
}

reasons contains {
	"code": "failed_verifications",
	"level": failed_level,
	"message": sprintf(
		"%v failed verification attempt(s) in the last 24 hours (%v or more go to callback).",
		[input.context.failed_verifications_24h, cfg.failed_verifications_callback],
	),
	"refs": [r.aa23, r.sp63b],
} if {
	common.guarded
	input.context.failed_verifications_24h > 0
}

failed_level := "callback" if {
	input.context.failed_verifications_24h >= cfg.failed_verifications_callback
} else := levels.raise(common.base_rank, 1)
