# Unit tests for risk.rego: graded risk signals and failed verifications, on
# impersonable and on strong paths.
package helpdesk.risk_test

import rego.v1

import data.helpdesk.fixtures_test as f

cfg := data.helpdesk.config

signals(list) := c if {
	patch := {"context": {"risk_signals": list}}
	c := f.case(patch)
}

routine := {a | some a in cfg.containment_actions} | {"info_request"}

# The holder's own phishing-resistant portal session, a password reset.
strong_reset(patch) := f.cases(f.cases(f.strong_self, {"request": {"action": "password_reset"}}), patch)

# ------------------------------------------------------- high-risk signals

test_every_high_signal_goes_to_callback_with_its_instruction if {
	every s in cfg.high_risk_signals {
		f.gives(f.risk(signals([s])), "risk_high", "callback", [s, f.signal_sentence(s)])
	}
}

test_high_signals_are_config if {
	c := f.case({"context": {"risk_signals": ["new_device"]}, "config": {"high_risk_signals": ["new_device"]}})
	f.gives(f.risk(c), "risk_high", "callback", ["new_device", f.signal_sentence("new_device")])
}

test_a_high_signal_on_a_phishing_resistant_strong_path_re_verifies if {
	c := strong_reset({"context": {"risk_signals": ["impossible_travel"]}})
	f.gives(f.risk(c), "risk_high.strong", "step_up", ["impossible_travel"])
}

test_a_high_signal_on_a_phishable_strong_path_goes_to_callback if {
	# An adversary-in-the-middle kit or a stolen cookie looks like this.
	c := strong_reset({"actor": {"auth_strength": "mfa"}, "context": {"risk_signals": ["impossible_travel"]}})
	f.gives(f.risk(c), "risk_high", "callback", ["impossible_travel", f.signal_sentence("impossible_travel")])
}

test_a_high_signal_on_the_nhi_hygiene_paths if {
	workload := f.cases(f.workload_self, {"context": {"risk_signals": ["threat_intel_match"]}})
	f.gives(f.risk(workload), "risk_high.strong", "step_up", ["threat_intel_match"])
	owner := f.cases(f.owner_rotation, {"context": {"risk_signals": ["threat_intel_match"]}})
	f.level_of(f.risk(owner), "risk_threat_intel_match") == "callback"
}

# ----------------------------------------------------- leaked remediation

test_replacing_a_leaked_credential_on_a_strong_path_is_the_remediation if {
	every action in cfg.remediation_actions {
		remediation_on_every_strong_path(action)
	}
}

remediation_on_every_strong_path(action) if {
	leak := {"request": {"action": action}, "context": {"risk_signals": ["leaked_credential"]}}
	rs := f.risk(f.cases(strong_reset({}), leak))
	action in {"password_reset", "mfa_reset"}
	f.gives(rs, "risk_leaked_remediation", "self_service", ["leaked_credential", action])
}

remediation_on_every_strong_path(action) if {
	leak := {"request": {"action": action}, "context": {"risk_signals": ["leaked_credential"]}}
	rs := f.risk(f.cases(f.owner_rotation, leak))
	action in {"api_key_reissue", "secret_rotation"}
	f.gives(rs, "risk_leaked_remediation", "self_service", ["leaked_credential", action])
}

test_a_leak_remediated_by_a_phishable_strong_session_too if {
	# The owner path needs only min_auth_strength: the fix is the point.
	c := f.cases(f.owner_rotation, {"context": {"risk_signals": ["leaked_credential"]}})
	f.level_of(f.risk(c), "risk_leaked_credential") == "self_service"
}

test_a_leak_is_no_remediation_off_the_strong_path if {
	c := f.case({"request": {"action": "password_reset"}, "context": {"risk_signals": ["leaked_credential"]}})
	f.level_of(f.risk(c), "risk_leaked_credential") == "callback"
	chat := f.cases(f.owner_rotation, {"request": {"channel": "chat"}, "context": {"risk_signals": ["leaked_credential"]}})
	f.level_of(f.risk(chat), "risk_leaked_credential") == "callback"
}

test_a_leak_is_no_remediation_for_other_actions if {
	c := strong_reset({"request": {"action": "mfa_add_factor"}, "context": {"risk_signals": ["leaked_credential"]}})
	f.gives(f.risk(c), "risk_high.strong", "step_up", ["leaked_credential"])
}

test_only_the_leak_is_remediated if {
	c := strong_reset({"context": {"risk_signals": ["leaked_credential", "impossible_travel"]}})
	f.level_of(f.risk(c), "risk_leaked_credential") == "self_service"
	f.level_of(f.risk(c), "risk_impossible_travel") == "step_up"
}

test_remediation_actions_are_config if {
	c := strong_reset({"context": {"risk_signals": ["leaked_credential"]}, "config": {"remediation_actions": ["mfa_reset"]}})
	f.level_of(f.risk(c), "risk_leaked_credential") == "step_up"
}

# ----------------------------------------------------- medium-risk signals

test_a_medium_signal_raises_the_baseline_one_step if {
	every s in f.signals - {x | some x in cfg.high_risk_signals} {
		f.gives(f.risk(signals([s])), "risk_medium", "manager_approval", [s, f.signal_sentence(s)])
	}
}

test_a_medium_signal_from_a_self_service_baseline if {
	c := f.case({"request": {"action": "password_reset", "channel": "walk_in"}, "context": {"risk_signals": ["new_device"]}})
	f.level_of(f.risk(c), "risk_new_device") == "step_up"
}

test_a_medium_signal_caps_at_callback if {
	c := f.case({"request": {"action": "delegated_admin"}, "context": {"risk_signals": ["new_device"]}})
	f.level_of(f.risk(c), "risk_new_device") == "callback"
}

test_a_medium_signal_on_a_strong_path_adds_no_step if {
	c := strong_reset({"context": {"risk_signals": ["new_device"]}})
	f.gives(f.risk(c), "risk_medium.strong", "self_service", ["new_device", f.signal_sentence("new_device")])
	phishable := strong_reset({"actor": {"auth_strength": "mfa"}, "context": {"risk_signals": ["off_hours"]}})
	f.gives(f.risk(phishable), "risk_medium.strong", "self_service", ["off_hours", f.signal_sentence("off_hours")])
}

# ---------------------------------------------------------- risk_compound

test_two_medium_signals_compound if {
	c := signals(["new_device", "off_hours"])
	f.gives(f.risk(c), "risk_compound", "callback", [2, 2])
}

test_compound_from_a_self_service_baseline if {
	c := f.case({"request": {"action": "password_reset", "channel": "walk_in"}, "context": {"risk_signals": ["new_device", "off_hours"]}})
	f.gives(f.risk(c), "risk_compound", "manager_approval", [2, 2])
}

test_compound_counts_every_medium_signal_and_caps_at_callback if {
	medium := [s | some s in f.signals; not s in cfg.high_risk_signals]
	f.gives(f.risk(signals(medium)), "risk_compound", "callback", [count(medium), count(medium)])
}

test_one_medium_signal_does_not_compound if {
	f.lacks(f.risk(signals(["new_device", "leaked_credential"])), "risk_compound")
}

test_no_compound_on_a_strong_path if {
	c := strong_reset({"context": {"risk_signals": ["new_device", "off_hours"]}})
	f.lacks(f.risk(c), "risk_compound")
}

# --------------------------------------------------- failed_verifications

test_failed_verifications_below_the_threshold_raise_one_step if {
	c := f.case({"context": {"failed_verifications_24h": cfg.failed_verifications_callback - 1}})
	f.gives(f.risk(c), "failed_verifications", "manager_approval", [cfg.failed_verifications_callback - 1, cfg.failed_verifications_callback])
}

test_failed_verifications_at_the_threshold_go_to_callback if {
	c := f.case({"context": {"failed_verifications_24h": cfg.failed_verifications_callback}})
	f.gives(f.risk(c), "failed_verifications", "callback", [cfg.failed_verifications_callback, cfg.failed_verifications_callback])
}

test_no_failed_verifications if {
	f.lacks(f.risk(f.case({})), "failed_verifications")
}

test_failed_verifications_on_a_strong_path_re_verify if {
	c := strong_reset({"context": {"failed_verifications_24h": 5}})
	f.gives(f.risk(c), "failed_verifications.strong", "step_up", [5])
}

test_failed_verifications_threshold_is_config if {
	c := f.case({"context": {"failed_verifications_24h": 1}, "config": {"failed_verifications_callback": 1}})
	f.level_of(f.risk(c), "failed_verifications") == "callback"
}

# ------------------------------------------------------- routine actions

test_nothing_here_applies_to_routine_actions if {
	every action in routine {
		c := f.case({"request": {"action": action}, "context": {"risk_signals": ["leaked_credential", "new_device", "off_hours"], "failed_verifications_24h": 9}})
		count(f.risk(c)) == 0
	}
}
