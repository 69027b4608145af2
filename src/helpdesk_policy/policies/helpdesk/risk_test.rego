# Unit tests for risk.rego: graded risk signals and failed verifications.
package helpdesk.risk_test

import rego.v1

import data.helpdesk.fixtures_test as f

cfg := data.helpdesk.config

signals(action, ss) := f.case({"request": {"action": action}, "context": {"risk_signals": ss}})

medium_signals := f.signals - {s | some s in cfg.high_risk_signals}

test_no_signal_no_risk_reason if {
	count(f.risk(f.case({}))) == 0
}

# --------------------------------------------------------- high-risk signals

test_every_high_signal_goes_to_callback if {
	every s in cfg.high_risk_signals {
		r := f.reason(f.risk(signals("password_reset", [s])), concat("", ["risk_", s]))
		r.level == "callback"
		r.message == sprintf("High-risk signal: %v.", [s])
		r.refs == ["NIST-CSF-2.0:PR.AA-03", "CISA-AA23-320A"]
	}
}

test_high_signal_does_not_compound if {
	rs := f.risk(signals("mfa_reset", ["leaked_credential", "impossible_travel", "new_device"]))
	f.lacks(rs, "risk_compound")
	f.has(rs, "risk_leaked_credential")
	f.has(rs, "risk_impossible_travel")
	f.level_of(rs, "risk_new_device") == "manager_approval"
}

test_high_signals_are_config if {
	c := f.case({"context": {"risk_signals": ["new_device"]}, "config": {"high_risk_signals": ["new_device"]}})
	f.level_of(f.risk(c), "risk_new_device") == "callback"
}

# ------------------------------------------------------- medium-risk signals

test_every_medium_signal_raises_one_step if {
	every s in medium_signals {
		r := f.reason(f.risk(signals("mfa_reset", [s])), concat("", ["risk_", s]))
		r.level == "manager_approval"
		r.message == sprintf("Risk signal: %v raises the baseline one step.", [s])
	}
}

test_medium_signal_raises_from_the_action_baseline if {
	f.level_of(f.risk(signals("password_reset", ["off_hours"])), "risk_off_hours") == "step_up"
	f.level_of(f.risk(signals("access_grant", ["off_hours"])), "risk_off_hours") == "callback"
}

test_medium_signal_caps_at_callback if {
	f.level_of(f.risk(signals("delegated_admin", ["off_hours"])), "risk_off_hours") == "callback"
}

test_one_medium_signal_does_not_compound if {
	f.lacks(f.risk(signals("password_reset", ["new_device"])), "risk_compound")
}

test_two_medium_signals_compound if {
	r := f.reason(f.risk(signals("password_reset", ["new_device", "off_hours"])), "risk_compound")
	r.level == "manager_approval"
	r.message == "2 medium risk signals together raise the baseline 2 steps."
}

test_three_medium_signals_compound_to_callback if {
	rs := f.risk(signals("password_reset", ["new_device", "off_hours", "urgency_pressure"]))
	f.level_of(rs, "risk_compound") == "callback"
}

test_compound_caps_at_callback if {
	rs := f.risk(signals("mfa_reset", [s | some s in medium_signals; s != ""]))
	f.level_of(rs, "risk_compound") == "callback"
}

test_repeated_signal_counts_once if {
	f.lacks(f.risk(signals("password_reset", ["new_device", "new_device"])), "risk_compound")
}

# ------------------------------------------------------------------ exempt

test_signals_do_not_slow_containment if {
	every action in cfg.containment_actions {
		count(f.risk(signals(action, ["leaked_credential", "new_device", "off_hours"]))) == 0
	}
}

test_signals_do_not_slow_info_request if {
	count(f.risk(signals("info_request", ["leaked_credential", "new_device", "off_hours"]))) == 0
}

# ------------------------------------------------------- failed_verifications

failures(action, n) := f.case({"request": {"action": action}, "context": {"failed_verifications_24h": n}})

test_failed_verifications_at_threshold_go_to_callback if {
	# Boundary: failed_verifications_24h == failed_verifications_callback.
	r := f.reason(f.risk(failures("password_reset", cfg.failed_verifications_callback)), "failed_verifications")
	r.level == "callback"
	r.message == "3 failed verification attempt(s) in the last 24 hours (3 or more go to callback)."
	r.refs == ["CISA-AA23-320A", "NIST-SP-800-63B-4"]
}

test_failed_verifications_below_threshold_raise_one_step if {
	rs := f.risk(failures("password_reset", cfg.failed_verifications_callback - 1))
	f.level_of(rs, "failed_verifications") == "step_up"
}

test_one_failed_verification_raises_one_step if {
	f.level_of(f.risk(failures("mfa_reset", 1)), "failed_verifications") == "manager_approval"
}

test_no_failed_verification if {
	f.lacks(f.risk(failures("password_reset", 0)), "failed_verifications")
}

test_failed_verifications_exempt_containment if {
	every action in cfg.containment_actions {
		f.lacks(f.risk(failures(action, 10)), "failed_verifications")
	}
}

test_failed_verifications_threshold_is_config if {
	c := f.case({"request": {"action": "password_reset"}, "context": {"failed_verifications_24h": 3}, "config": {"failed_verifications_callback": 5}})
	f.level_of(f.risk(c), "failed_verifications") == "step_up"
}
