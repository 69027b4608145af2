# Risk signals and failed verifications, graded. Nothing here applies to
# routine actions. On an impersonable path high signals go to callback, each
# medium signal raises the baseline one step and several compound. On a strong
# path the holder's own session covers medium signals, a phishing-resistant
# one turns a high signal into a re-verification, and replacing a leaked
# credential is the remediation itself.
package helpdesk.risk

import rego.v1

import data.helpdesk.common
import data.helpdesk.levels

cfg := common.cfg

description(s) := common.catalogue.signals[s]

reasons contains high_reason(s) if {
	common.guarded
	some s in common.high
}

# A phishable session with a high-risk signal is the adversary-in-the-middle
# or stolen-cookie pattern: only a phishing-resistant one steps down.
high_reason(s) := common.reason("risk_leaked_remediation", "self_service", [s, common.action]) if {
	s == "leaked_credential"
	common.remediation
} else := common.reason("risk_high.strong", "step_up", [s]) if {
	common.strong_path
	input.actor.auth_strength == "phishing_resistant"
} else := common.reason("risk_high", "callback", [s, description(s)])

reasons contains medium_reason(s) if {
	common.guarded
	some s in common.medium
}

medium_reason(s) := common.reason("risk_medium.strong", "self_service", [s, description(s)]) if {
	common.strong_path
} else := common.reason("risk_medium", levels.raise(common.base_rank, 1), [s, description(s)])

reasons contains common.reason("risk_compound", levels.raise(common.base_rank, n), [n, n]) if {
	common.guarded
	common.impersonable
	n := count(common.medium)
	n >= 2
}

failures := input.context.failed_verifications_24h

reasons contains common.reason("failed_verifications.strong", "step_up", [failures]) if {
	common.guarded
	failures > 0
	common.strong_path
}

reasons contains common.reason(
	"failed_verifications", failed_level,
	[failures, cfg.failed_verifications_callback],
) if {
	common.guarded
	failures > 0
	common.impersonable
}

failed_level := "callback" if failures >= cfg.failed_verifications_callback else := levels.raise(common.base_rank, 1)
