# The decision: every concern's reasons, the strictest level among them,
# that level's requirements, the obligations and the constraints on who
# approves and whom to call back. Entry point: data.helpdesk.decision
package helpdesk

import rego.v1

import data.helpdesk.access
import data.helpdesk.agents
import data.helpdesk.baseline
import data.helpdesk.common
import data.helpdesk.consent
import data.helpdesk.constraints
import data.helpdesk.containment
import data.helpdesk.info
import data.helpdesk.levels
import data.helpdesk.nhi
import data.helpdesk.obligations
import data.helpdesk.recovery
import data.helpdesk.risk

# One set built once from each concern's reasons (cheaper in rego-cpp than
# chained unions, which copy and re-sort every intermediate set of objects).
reasons := {r |
	some concern in [
		baseline.reasons, recovery.reasons, access.reasons, containment.reasons,
		info.reasons, nhi.reasons, consent.reasons, agents.reasons, risk.reasons,
	]
	some r in concern
}

level := top_level(reasons)

requirements := levels.requirements[level]

# The strictest level any reason demands. max() is safe here although
# rego-cpp orders numbers as strings in min/max/sort: ranks are the single
# digits 0-4, whose string order is their numeric order (levels_test.rego
# pins that). Rewrites without max() made rego-cpp's compile of the test
# bundle take 8x the time and 9x the memory.
top_level(rs) := levels.names[max({levels.rank[r.level] | some r in rs})]

# The decision is built from the reasons by a function, which reads the level
# once as a value: rego-cpp compiles a `with` (the unit tests) in time and
# memory that double with every level of rules between it and the input.
decision := document(reasons)

document(rs) := d if {
	lvl := top_level(rs)
	d := {
		"level": lvl,
		"allowed": lvl != "deny",
		"requirements": levels.requirements[lvl],
		"reasons": rs,
		"obligations": obligations.for_level(lvl),
		"playbook": concat("-", [replace(common.action, "_", "-"), replace(lvl, "_", "-")]),
		"constraints": constraints.for_requirements(levels.requirements[lvl]),
	}
}
