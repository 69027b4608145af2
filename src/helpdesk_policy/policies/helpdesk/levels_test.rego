# Unit tests for levels.rego: the ladder, its requirements, and raise().
package helpdesk.levels_test

import rego.v1

import data.helpdesk.levels

test_names_are_ordered_by_rank if {
	levels.names == ["self_service", "step_up", "manager_approval", "callback", "deny"]
	every i, name in levels.names {
		levels.rank[name] == i
	}
}

# decision.rego takes max() over ranks; rego-cpp compares numbers as strings
# in max(), which is the numeric order only while every rank is one digit.
test_ranks_are_single_digits if {
	every name in levels.names {
		levels.rank[name] >= 0
		levels.rank[name] <= 9
	}
}

test_every_level_has_requirements if {
	every name in levels.names {
		is_array(levels.requirements[name])
	}
}

test_requirements_are_cumulative if {
	# Each allowed level adds one requirement to those of the level below it.
	every i in [1, 2, 3] {
		extends(levels.requirements[levels.names[i - 1]], levels.requirements[levels.names[i]])
	}
}

# `higher` is `lower` plus one more requirement. (A helper, not a nested
# `every`: rego-cpp mis-evaluates an inner `every` that reads the outer one's
# variables.)
extends(lower, higher) if {
	count(higher) == count(lower) + 1
	every j, req in lower {
		higher[j] == req
	}
}

test_requirements_per_level if {
	levels.requirements.self_service == []
	levels.requirements.step_up == ["identity_step_up"]
	levels.requirements.manager_approval == ["identity_step_up", "manager_approval"]
	levels.requirements.callback == ["identity_step_up", "manager_approval", "out_of_band_callback"]
}

test_deny_requires_nothing if {
	levels.requirements.deny == []
}

test_raise_zero_steps_keeps_the_level if {
	every i in [0, 1, 2, 3] {
		levels.raise(i, 0) == levels.names[i]
	}
}

test_raise_one_step if {
	levels.raise(0, 1) == "step_up"
	levels.raise(1, 1) == "manager_approval"
	levels.raise(2, 1) == "callback"
}

test_raise_several_steps if {
	levels.raise(0, 2) == "manager_approval"
	levels.raise(0, 3) == "callback"
}

test_raise_caps_at_callback if {
	levels.raise(3, 1) == "callback"
	levels.raise(2, 5) == "callback"

	# The largest sum the stock config can reach: a callback baseline plus six
	# medium signals.
	levels.raise(3, 6) == "callback"
}

test_raise_caps_at_callback_for_sums_of_ten_and_more if {
	# A config with few high-risk signals lets ten medium signals compound.
	# rego-cpp orders numbers as strings in min/max/sort ("10" < "3"), so a
	# raise() written with min() was undefined from base + n >= 10.
	levels.raise(0, 10) == "callback"
	levels.raise(1, 9) == "callback"
	levels.raise(3, 10) == "callback"
	levels.raise(4, 10) == "callback"
	levels.raise(2, 99) == "callback"
	every n in [10, 11, 20, 100, 1000] {
		levels.raise(0, n) == "callback"
	}
}

test_raise_never_denies if {
	# Only an explicit deny rule may deny, even from a deny baseline.
	denials := [[base, n] |
		some base in [0, 1, 2, 3, 4]
		some n in [0, 1, 2, 3, 4, 5]
		levels.raise(base, n) == "deny"
	]
	denials == []
}
