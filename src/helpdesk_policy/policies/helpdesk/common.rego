# Facts derived from the request and config that several concerns share.
# Missing optional facts are read as their riskiest value (guarantee 1).
package helpdesk.common

import rego.v1

import data.helpdesk.levels

cfg := data.helpdesk.config

action := input.request.action

# Routine actions never escalate on risk: containment must stay fast,
# and an information request changes nothing.
routine if action == "info_request"

routine if action in cfg.containment_actions

guarded if not routine

is_recovery if action in cfg.recovery_actions

is_access if action in cfg.access_actions

is_containment if action in cfg.containment_actions

is_recovery_or_access if is_recovery

is_recovery_or_access if is_access

is_human if input.target.type == "human"

is_nhi if input.target.type != "human"

remote_channel if input.request.channel in cfg.remote_channels

authenticated if {
	input.actor.authenticated == true
	input.actor.auth_strength != "none"
}

auth_rank := {"none": 0, "password": 1, "mfa": 2, "phishing_resistant": 3}

base_rank := levels.rank[cfg.action_baseline[action]]

# A target flagged privileged counts as at least the privileged tier.
# (A comparison, not max(): rego-cpp's max orders numbers as strings.)
effective_tier := cfg.privileged_tier if {
	input.target.privileged == true
	input.target.privilege_tier < cfg.privileged_tier
} else := input.target.privilege_tier

privileged_target if effective_tier >= cfg.privileged_tier

is_owner if input.actor.id in input.target.owners
