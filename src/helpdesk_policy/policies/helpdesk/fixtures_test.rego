# Shared fixtures for the Rego unit tests: a base request, a way to vary it,
# and one evaluation helper per concern. No test_ rules live here.
#
# Written in the subset that both regopy (rego-cpp) and OPA accept, which
# shapes it:
# - rego-cpp crashes on `with input as {...}` when the tested rule reads
#   another rule, so each helper mocks input.request/actor/target/context
#   separately, always with complete objects (the real input has every field).
# - rego-cpp ignores a `with` whose value is a reference to another rule
#   (the rule reads as undefined), so every mocked value is first bound to a
#   local variable.
# - rego-cpp compiles a `with` site once per place it appears, and a site on
#   data.helpdesk.decision costs ~0.5 s of compile time: keeping the `with`s
#   inside these helpers (not in each test) keeps the test bundle fast.
# - rego-cpp's object.union is shallow (OPA's merges nested objects), so
#   case() merges each section separately and a config patch replaces whole
#   top-level keys.
package helpdesk.fixtures_test

import rego.v1

import data.helpdesk.common

# --------------------------------------------------------------- base case
# An authenticated employee (MFA) asking over the phone to reset their own
# MFA, no risk signal: step_up (action baseline + remote channel recovery).

request := {
	"id": "INC-1042",
	"action": "mfa_reset",
	"channel": "phone",
	"justification": "lost phone",
	"emergency": false,
	"requested_at": "2026-11-24T10:00:00+00:00",
}

actor := {
	"id": "u-123",
	"type": "human",
	"relationship": "self",
	"authenticated": true,
	"auth_strength": "mfa",
	"on_behalf_of": null,
	"roles": ["employee"],
}

target := {
	"id": "u-123",
	"type": "human",
	"privileged": false,
	"privilege_tier": 0,
	"vip": false,
	"status": "active",
	"environment": null,
	"owners": [],
	"owner_active": true,
	"secret_age_days": null,
	"consumers": null,
	"in_secrets_manager": null,
}

context := {
	"risk_signals": [],
	"failed_verifications_24h": 0,
	"recent_credential_change_hours": null,
}

# A healthy NHI patch: a staging service account owned by the requester,
# few consumers, fresh managed secret. Nothing NHI-specific fires for it.
nhi_owner := {"id": "u-200", "relationship": "owner"}

nhi_target := {
	"id": "svc-build",
	"type": "service_account",
	"environment": "staging",
	"owners": ["u-200"],
	"owner_active": true,
	"secret_age_days": 10,
	"consumers": 2,
	"in_secrets_manager": true,
}

nhi := {"actor": nhi_owner, "target": nhi_target}

# An AI agent acting for a named person (its own principal is u-123's
# helpdesk session), asking about the base target.
agent := {"id": "agent-7", "type": "ai_agent", "relationship": "helpdesk_agent", "on_behalf_of": "u-123"}

# --------------------------------------------------------------- vocabulary
# Closed enums (the request contract). case() refuses a value outside them, so a typo in a
# test makes the test fail instead of passing vacuously.

actions := {
	"account_unlock", "password_reset", "mfa_reset", "mfa_add_factor", "access_grant",
	"role_change", "privilege_elevation", "delegated_admin", "api_key_reissue",
	"secret_rotation", "token_revoke", "credential_revoke", "oauth_consent",
	"service_account_create", "account_disable", "contact_change", "info_request",
}

channels := {"self_service_portal", "chat", "phone", "email", "walk_in", "api"}

actor_types := {"human", "ai_agent", "service"}

relationships := {"self", "manager", "owner", "helpdesk_agent", "admin", "other"}

auth_strengths := {"none", "password", "mfa", "phishing_resistant"}

target_types := {"human", "service_account", "oauth_app", "api_key", "automation_token", "workload_identity", "ai_agent"}

statuses := {"active", "suspended", "offboarded"}

signals := {
	"new_device", "unfamiliar_location", "impossible_travel", "recent_mfa_change",
	"recent_password_reset", "leaked_credential", "threat_intel_match", "off_hours",
	"caller_id_mismatch", "urgency_pressure",
}

level_names := {"self_service", "step_up", "manager_approval", "callback", "deny"}

sections := {"request", "actor", "target", "context", "config"}

# ------------------------------------------------------------- building cases

# case(patch): the base case with each section of `patch` merged over it
# ({"target": {"privilege_tier": 2}}). A "config" section is merged over
# data.helpdesk.config (whole top-level keys replaced). Undefined when the
# patch names an unknown section or field or the result leaves the vocabulary.
case(patch) := c if {
	count(object.keys(patch) - sections) == 0
	c := {
		"request": merge(request, patch, "request"),
		"actor": merge(actor, patch, "actor"),
		"target": merge(target, patch, "target"),
		"context": merge(context, patch, "context"),
		"config": merge(data.helpdesk.config, patch, "config"),
	}
	valid(c)
}

# cases(a, b): the base case patched by `a`, then by `b` (for a named patch
# such as `nhi` plus a test's own changes).
cases(a, b) := case(combine(a, b))

combine(a, b) := {s: v |
	some s in sections
	v := object.union(object.get(a, s, {}), object.get(b, s, {}))
}

merge(base_section, patch, name) := m if {
	p := object.get(patch, name, {})
	count(object.keys(p) - object.keys(base_section)) == 0
	m := object.union(base_section, p)
}

valid(c) if {
	c.request.action in actions
	c.request.channel in channels
	is_boolean(c.request.emergency)
	c.actor.type in actor_types
	c.actor.relationship in relationships
	c.actor.auth_strength in auth_strengths
	is_boolean(c.actor.authenticated)
	c.target.type in target_types
	c.target.status in statuses
	is_number(c.target.privilege_tier)
	is_boolean(c.target.privileged)
	is_boolean(c.target.vip)
	is_array(c.target.owners)
	is_array(c.context.risk_signals)
	count({s | some s in c.context.risk_signals; not s in signals}) == 0
	is_number(c.context.failed_verifications_24h)
}

# ------------------------------------------------------------- evaluating
# Each helper evaluates one document for case `c`; see the header for why
# every value is bound to a local variable first.

decision(c) := d if {
	req := c.request
	act := c.actor
	tgt := c.target
	ctx := c.context
	cfg := c.config
	d := data.helpdesk.decision with input.request as req
		with input.actor as act
		with input.target as tgt
		with input.context as ctx
		with data.helpdesk.config as cfg
}

baseline(c) := rs if {
	req := c.request
	act := c.actor
	tgt := c.target
	ctx := c.context
	cfg := c.config
	rs := data.helpdesk.baseline.reasons with input.request as req
		with input.actor as act
		with input.target as tgt
		with input.context as ctx
		with data.helpdesk.config as cfg
}

recovery(c) := rs if {
	req := c.request
	act := c.actor
	tgt := c.target
	ctx := c.context
	cfg := c.config
	rs := data.helpdesk.recovery.reasons with input.request as req
		with input.actor as act
		with input.target as tgt
		with input.context as ctx
		with data.helpdesk.config as cfg
}

access(c) := rs if {
	req := c.request
	act := c.actor
	tgt := c.target
	ctx := c.context
	cfg := c.config
	rs := data.helpdesk.access.reasons with input.request as req
		with input.actor as act
		with input.target as tgt
		with input.context as ctx
		with data.helpdesk.config as cfg
}

nhi_reasons(c) := rs if {
	req := c.request
	act := c.actor
	tgt := c.target
	ctx := c.context
	cfg := c.config
	rs := data.helpdesk.nhi.reasons with input.request as req
		with input.actor as act
		with input.target as tgt
		with input.context as ctx
		with data.helpdesk.config as cfg
}

agents(c) := rs if {
	req := c.request
	act := c.actor
	tgt := c.target
	ctx := c.context
	cfg := c.config
	rs := data.helpdesk.agents.reasons with input.request as req
		with input.actor as act
		with input.target as tgt
		with input.context as ctx
		with data.helpdesk.config as cfg
}

risk(c) := rs if {
	req := c.request
	act := c.actor
	tgt := c.target
	ctx := c.context
	cfg := c.config
	rs := data.helpdesk.risk.reasons with input.request as req
		with input.actor as act
		with input.target as tgt
		with input.context as ctx
		with data.helpdesk.config as cfg
}

# The shared facts of common.rego as one object; a false/undefined boolean
# fact reads as false so a test can assert either value.
facts(c) := fs if {
	req := c.request
	act := c.actor
	tgt := c.target
	ctx := c.context
	cfg := c.config
	fs := common_facts with input.request as req
		with input.actor as act
		with input.target as tgt
		with input.context as ctx
		with data.helpdesk.config as cfg
}

common_facts := {
	"action": common.action,
	"routine": fact_routine,
	"guarded": fact_guarded,
	"is_recovery": fact_is_recovery,
	"is_access": fact_is_access,
	"is_containment": fact_is_containment,
	"is_human": fact_is_human,
	"is_nhi": fact_is_nhi,
	"remote_channel": fact_remote_channel,
	"authenticated": fact_authenticated,
	"base_rank": common.base_rank,
	"effective_tier": common.effective_tier,
	"privileged_target": fact_privileged_target,
	"is_owner": fact_is_owner,
}

default fact_routine := false

fact_routine if common.routine

default fact_guarded := false

fact_guarded if common.guarded

default fact_is_recovery := false

fact_is_recovery if common.is_recovery

default fact_is_access := false

fact_is_access if common.is_access

default fact_is_containment := false

fact_is_containment if common.is_containment

default fact_is_human := false

fact_is_human if common.is_human

default fact_is_nhi := false

fact_is_nhi if common.is_nhi

default fact_remote_channel := false

fact_remote_channel if common.remote_channel

default fact_authenticated := false

fact_authenticated if common.authenticated

default fact_privileged_target := false

fact_privileged_target if common.privileged_target

default fact_is_owner := false

fact_is_owner if common.is_owner

# ------------------------------------------------------------- asserting
# Use these rather than a bare `not ... in codes(...)` in a test: `not` over
# an undefined expression is true, so a broken case would pass vacuously.
# These are undefined unless `rs` is a real set of reasons.

codes(rs) := {r.code | some r in rs}

has(rs, code) if {
	is_set(rs)
	code in codes(rs)
}

lacks(rs, code) if {
	is_set(rs)
	not code in codes(rs)
}

# The one reason with `code` (undefined when absent or ambiguous).
reason(rs, code) := r if {
	matching := [x | some x in rs; x.code == code]
	count(matching) == 1
	r := matching[0]
}

# The level of the one reason with `code`.
level_of(rs, code) := reason(rs, code).level

obligation_codes(d) := {o.code | some o in d.obligations}

obligation(d, code) := o if {
	matching := [x | some x in d.obligations; x.code == code]
	count(matching) == 1
	o := matching[0]
}

has_obligation(d, code) if {
	is_set(d.obligations)
	code in obligation_codes(d)
}

lacks_obligation(d, code) if {
	is_set(d.obligations)
	not code in obligation_codes(d)
}
