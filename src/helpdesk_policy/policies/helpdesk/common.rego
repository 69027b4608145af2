# Facts derived from the request and config that several concerns share, and
# the one function every reason is built with.
#
# Missing optional facts are read as their riskiest value (guarantee 1), and
# what a requester or an AI agent states about itself never decides where a
# fact of record exists (guarantee 7): the relationship that counts is the
# one of record (`relationship` below), not `input.actor.relationship`.
#
# The facts are written shallow, each read from the input (and config) or
# from at most a couple of other facts: rego-cpp compiles a `with` (how the
# unit tests supply a request) in time and memory that double with every
# level of rules between the tested rule and the input.
package helpdesk.common

import rego.v1

import data.helpdesk.levels

cfg := data.helpdesk.config

# The reason catalogue (reasons.yaml): how each reason reads.
catalogue := data.helpdesk.catalogue

action := input.request.action

# ------------------------------------------------------------------ reasons

# The one way a reason is made: its code, message and refs come from the
# catalogue entry `key`; `args` fill the message's %v placeholders in order
# (strings and integers only, which every engine prints alike). A code with
# a placeholder (risk_%v) takes the first argument, the risk signal.
reason(key, level, args) := {
	"code": code_of(catalogue.reasons[key].code, args),
	"level": level,
	"message": sprintf(catalogue.reasons[key].message, args),
	"refs": catalogue.reasons[key].refs,
}

code_of(code, args) := replace(code, "%v", args[0]) if contains(code, "%v") else := code

# ------------------------------------------------------------------ the action

# Routine actions never escalate on risk: containment must stay fast for the
# right people (containment.rego decides who), and an information request
# changes nothing (info.rego decides who may ask).
routine if input.request.action == "info_request"

routine if input.request.action in cfg.containment_actions

guarded if {
	input.request.action != "info_request"
	not input.request.action in cfg.containment_actions
}

is_recovery if input.request.action in cfg.recovery_actions

is_factor_recovery if input.request.action in cfg.factor_recovery_actions

is_access if input.request.action in cfg.access_actions

is_containment if input.request.action in cfg.containment_actions

# Privileged, VIP and NHI-criticality escalations skip actions that issue no
# credential and grant nothing (an unlock).
escalates if {
	guarded
	not input.request.action in cfg.no_credential_actions
}

# ------------------------------------------------------------------ who asks

is_human if input.target.type == "human"

is_nhi if input.target.type != "human"

is_agent if input.actor.type == "ai_agent"

is_service if input.actor.type == "service"

human_actor if input.actor.type == "human"

remote if input.request.channel in cfg.remote_channels

authenticated if {
	input.actor.authenticated == true
	input.actor.auth_strength != "none"
}

auth_rank := {"none": 0, "password": 1, "mfa": 2, "phishing_resistant": 3}

strong_auth if {
	input.actor.authenticated == true
	input.actor.auth_strength != "none"
	auth_rank[input.actor.auth_strength] >= auth_rank[cfg.min_auth_strength]
}

# Validation makes actor.id == target.id exactly when the stated relationship
# is self, and only for the same kind of identity.
acts_on_itself if input.actor.id == input.target.id

# Who the request really comes from: an AI agent's principal is the person it
# acts for (null when it names none); anyone else is their own principal.
principal := input.actor.on_behalf_of if input.actor.type == "ai_agent" else := input.actor.id

# The relationship of record, which every rule reads. An AI agent's own
# statement never decides: its principal's relationship of record does (none
# without a principal; a manager only when the directory names one). A
# person's or service's statement stands unless the record contradicts it:
# "manager" when the directory names another manager, "owner" of a person
# (people have no owners) or of an NHI that does not list them.
relationship := "self" if {
	input.actor.id == input.target.id
} else := "other" if {
	input.actor.type == "ai_agent"
	input.actor.on_behalf_of == null
} else := "self" if {
	input.actor.type == "ai_agent"
	input.actor.on_behalf_of == input.target.id
} else := "owner" if {
	input.actor.type == "ai_agent"
	input.actor.on_behalf_of in input.target.owners
} else := "manager" if {
	input.actor.type == "ai_agent"
	input.target.manager != null
	input.actor.on_behalf_of == input.target.manager
} else := "other" if {
	input.actor.type == "ai_agent"
} else := "other" if {
	input.actor.relationship == "manager"
	input.target.manager != null
	input.actor.id != input.target.manager
} else := "other" if {
	input.actor.relationship == "owner"
	input.target.type == "human"
} else := "other" if {
	input.actor.relationship == "owner"
	not input.actor.id in input.target.owners
} else := input.actor.relationship

# An owner of record of an NHI: the requester, or an AI agent's principal.
is_owner if {
	input.target.type != "human"
	input.actor.id in input.target.owners
}

is_owner if {
	input.target.type != "human"
	input.actor.type == "ai_agent"
	input.actor.on_behalf_of in input.target.owners
}

active_owner if {
	count(input.target.owners) > 0
	input.target.owner_active == true
}

# Roles of record, held by a person authenticated strongly enough.
security_role if {
	input.actor.type == "human"
	strong_auth
	some role in input.actor.roles
	role in cfg.security_roles
}

# A security tool (a secret scanner, a SOAR playbook) holding a security role
# of record, with strong workload authentication, on a workload channel: the
# detection pipelines that must revoke at once. Never an AI agent (LLM06).
security_role if {
	input.actor.type == "service"
	input.actor.authenticated == true
	input.request.channel in workload_channels
	auth_rank[input.actor.auth_strength] >= auth_rank[cfg.workload_min_auth_strength]
	some role in input.actor.roles
	role in cfg.security_roles
}

support_role if security_role

support_role if {
	input.actor.type == "human"
	strong_auth
	some role in input.actor.roles
	role in cfg.helpdesk_roles
}

# ------------------------------------------------------------------ strong paths
# The paths that cannot be impersonated stay cheap; every escalation attaches
# to `impersonable`.

# The holder in their own strong session in the portal. (A person's
# relationship of record is self exactly when they act on their own account.)
self_service_path if {
	input.actor.type == "human"
	input.actor.id == input.target.id
	input.request.channel == "self_service_portal"
	strong_auth
}

# A workload acting on itself with strong workload authentication, over the
# API. A channel more trusted than the API counts too, so that a less trusted
# channel never lowers a decision (guarantee 2).
workload_self_path if {
	input.actor.type == "service"
	input.actor.id == input.target.id
	input.request.channel in workload_channels
	auth_rank[input.actor.auth_strength] >= auth_rank[cfg.workload_min_auth_strength]
}

workload_channels := {"api", "walk_in", "self_service_portal"}

# An active owner of record of the NHI, a person strongly authenticated, not
# on an impersonable channel.
owner_path if {
	input.actor.type == "human"
	is_owner
	active_owner
	strong_auth
	not remote
}

# An NHI's secret rotated by its owner or by the workload itself.
nhi_hygiene_path if {
	input.request.action in cfg.nhi_credential_actions
	owner_path
}

nhi_hygiene_path if {
	input.request.action in cfg.nhi_credential_actions
	workload_self_path
}

strong_path if self_service_path

strong_path if nhi_hygiene_path

impersonable if not strong_path

# ------------------------------------------------------------------ the baseline

# Strong self-service: the holder's own portal session at least as strong as
# the config asks for authenticator changes.
strong_self_service if {
	self_service_path
	input.request.action in cfg.strong_self_service_actions
	auth_rank[input.actor.auth_strength] >= auth_rank[cfg.strong_self_service_auth]
}

workload_self if {
	workload_self_path
	input.request.action in cfg.nhi_credential_actions
}

# An NHI's active owner rotating its secret, authenticated as strongly as the
# holder's own strong self-service asks (OWASP NHI7: rotation must be easy).
owner_rotation if {
	owner_path
	input.request.action in cfg.nhi_credential_actions
	auth_rank[input.actor.auth_strength] >= auth_rank[cfg.strong_self_service_auth]
}

baseline_key := "action_baseline.strong_self_service" if {
	strong_self_service
} else := "action_baseline.workload_self" if {
	workload_self
} else := "action_baseline.owner_rotation" if {
	owner_rotation
} else := "action_baseline.access" if {
	input.request.action in cfg.access_actions
} else := "action_baseline"

baseline_level := "self_service" if {
	strong_self_service
} else := "self_service" if {
	workload_self
} else := "self_service" if {
	owner_rotation
} else := cfg.action_baseline[input.request.action]

base_rank := levels.rank[baseline_level]

# ------------------------------------------------------------------ the target

# A target flagged privileged counts as at least the privileged tier.
# (A comparison, not max(): rego-cpp's max orders numbers as strings.)
effective_tier := cfg.privileged_tier if {
	input.target.privileged == true
	input.target.privilege_tier < cfg.privileged_tier
} else := input.target.privilege_tier

privileged_target if {
	input.target.privilege_tier >= cfg.privileged_tier
}

privileged_target if input.target.privileged == true

# Whatever is not recognised as non-production is production, an unknown
# environment included.
env_production if not input.target.environment in cfg.non_production_environments

# Unknown: the NHI holds a secret.
holds_secret if input.target.holds_secret != false

# ------------------------------------------------------------------ risk

high := {s | some s in input.context.risk_signals; s in cfg.high_risk_signals}

medium := {s | some s in input.context.risk_signals; not s in cfg.high_risk_signals}

leaked if "leaked_credential" in input.context.risk_signals

# The holder or owner replacing a leaked credential on a strong path is the
# fix, not the attack.
remediation if {
	"leaked_credential" in input.context.risk_signals
	input.request.action in cfg.remediation_actions
	strong_path
}
