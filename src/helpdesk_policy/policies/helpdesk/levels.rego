# Assurance levels: their order, what each requires, and how to raise one.
package helpdesk.levels

import rego.v1

names := ["self_service", "step_up", "manager_approval", "callback", "deny"]

rank := {"self_service": 0, "step_up": 1, "manager_approval": 2, "callback": 3, "deny": 4}

# Cumulative: each level includes the requirements of the levels below.
# deny requires nothing: nothing the helpdesk could verify makes it acceptable.
requirements := {
	"self_service": [],
	"step_up": ["identity_step_up"],
	"manager_approval": ["identity_step_up", "manager_approval"],
	"callback": ["identity_step_up", "manager_approval", "out_of_band_callback"],
	"deny": [],
}

# raise(base, n): n steps above level rank `base`, capped at callback
# (only an explicit deny rule may deny). Written with comparisons, not
# min(): rego-cpp's min/max/sort order numbers as strings (min({3, 10}) is
# 10), which made raise() undefined once base + n >= 10.
raise(base, n) := names[base + n] if {
	base + n < 3
} else := "callback"
