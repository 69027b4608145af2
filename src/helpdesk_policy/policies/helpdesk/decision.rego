# The decision: every concern's reasons, the strictest level among them,
# that level's requirements, and the obligations. Entry point: data.helpdesk.decision
package helpdesk

import rego.v1

import data.helpdesk.access
import data.helpdesk.agents
import data.helpdesk.baseline
import data.helpdesk.common
import data.helpdesk.levels
import data.helpdesk.nhi
import data.helpdesk.obligations
import data.helpdesk.recovery
import data.helpdesk.risk

# One set built once from each concern's reasons (cheaper in rego-cpp than
# chained unions, which copy and re-sort every intermediate set of objects).
reasons := {r |
	some concern in [baseline.reasons, recovery.reasons, access.reasons, nhi.reasons, agents.reasons, risk.reasons]
	some r in concern
}

# The strictest level any reason demands. max() is safe here although
# rego-cpp orders numbers as strings in min/max/sort: ranks are the single
# digits 0-4, whose string order is their numeric order (levels_test.rego
# pins that). Rewrites without max() made rego-cpp's compile of the test
# bundle take 8x the time and 9x the memory.
level := levels.names[max({levels.rank[r.level] | some r in reasons})]

playbook := concat("-", [replace(common.action, "_", "-"), replace(level, "_", "-")])

decision := {
	"level": level,
	"allowed": level != "deny",
	"requirements": levels.requirements[level],
	"reasons": reasons,
	"obligations": obligations.obligations,
	"playbook": playbook,
}
