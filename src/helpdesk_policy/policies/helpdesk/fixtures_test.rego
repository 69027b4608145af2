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
# MFA, with a factor still enrolled and no credential change in the last
# 1000 hours, no risk signal: step_up (action baseline + remote channel
# recovery). Optional facts a test does not set are null, as in a real input.

request := {
	"id": "INC-1042",
	"action": "mfa_reset",
	"channel": "phone",
	"justification": "lost phone",
	"emergency": false,
	"requested_at": "2026-11-24T10:00:00+00:00",
	"requested_privilege_tier": null,
	"consent_scope": null,
	"consent_tenant_wide": null,
}

actor := {
	"id": "u-123",
	"type": "human",
	"relationship": "self",
	"authenticated": true,
	"auth_strength": "mfa",
	"on_behalf_of": null,
	"roles": ["employee"],
	"runs_as": null,
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
	"manager": null,
	"contact_age_days": null,
	"publisher_verified": null,
	"holds_secret": null,
}

context := {
	"risk_signals": [],
	"failed_verifications_24h": 0,
	"recent_credential_change_hours": 1000,
	"enrolled_factor_available": true,
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

# An AI agent acting for a named person (its principal is the holder, u-123),
# asking about the base target.
agent := {"id": "agent-7", "type": "ai_agent", "relationship": "helpdesk_agent", "on_behalf_of": "u-123"}

# Someone with no relationship to the base target.
stranger := {"id": "u-666", "relationship": "other"}

# The holder in their own phishing-resistant portal session: the strong
# self-service path.
strong_self := {"request": {"channel": "self_service_portal"}, "actor": {"auth_strength": "phishing_resistant"}}

# A workload rotating its own secret over the API with phishing-resistant
# workload authentication, its owner active: the workload self path.
workload_self := {
	"request": {"action": "secret_rotation", "channel": "api"},
	"actor": {"id": "wl-1", "type": "service", "relationship": "self", "auth_strength": "phishing_resistant"},
	"target": {
		"id": "wl-1", "type": "workload_identity", "environment": "production", "owners": ["u-200"],
		"owner_active": true, "secret_age_days": 10, "consumers": 40, "in_secrets_manager": true,
	},
}

# The NHI's owner rotating its secret in the portal: the owner path.
owner_rotation := {
	"request": {"action": "secret_rotation", "channel": "self_service_portal"},
	"actor": nhi_owner,
	"target": object.union(nhi_target, {"environment": "production", "consumers": 40}),
}

# --------------------------------------------------------------- vocabulary
# Closed enums (the request contract). case() refuses a value outside them, so a typo in a
# test makes the test fail instead of passing vacuously.

actions := {
	"account_unlock", "password_reset", "mfa_reset", "mfa_add_factor", "access_grant",
	"role_change", "privilege_elevation", "delegated_admin", "api_key_reissue",
	"secret_rotation", "token_revoke", "credential_revoke", "oauth_consent",
	"service_account_create", "account_disable", "contact_change", "info_request",
	"temporary_access_pass",
}

channels := {"self_service_portal", "chat", "phone", "email", "walk_in", "api"}

actor_types := {"human", "ai_agent", "service"}

relationships := {"self", "manager", "owner", "helpdesk_agent", "admin", "other"}

auth_strengths := {"none", "password", "mfa", "phishing_resistant"}

target_types := {"human", "service_account", "oauth_app", "api_key", "automation_token", "workload_identity", "ai_agent"}

statuses := {"active", "suspended", "offboarded"}

consent_scopes := {null, "low", "medium", "high"}

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
	c.request.consent_scope in consent_scopes
	optional_boolean(c.request.consent_tenant_wide)
	optional_boolean(c.target.publisher_verified)
	optional_boolean(c.target.holds_secret)
	optional_boolean(c.context.enrolled_factor_available)
}

optional_boolean(x) if x == null

optional_boolean(x) if is_boolean(x)

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

containment(c) := rs if {
	req := c.request
	act := c.actor
	tgt := c.target
	ctx := c.context
	cfg := c.config
	rs := data.helpdesk.containment.reasons with input.request as req
		with input.actor as act
		with input.target as tgt
		with input.context as ctx
		with data.helpdesk.config as cfg
}

info(c) := rs if {
	req := c.request
	act := c.actor
	tgt := c.target
	ctx := c.context
	cfg := c.config
	rs := data.helpdesk.info.reasons with input.request as req
		with input.actor as act
		with input.target as tgt
		with input.context as ctx
		with data.helpdesk.config as cfg
}

consent(c) := rs if {
	req := c.request
	act := c.actor
	tgt := c.target
	ctx := c.context
	cfg := c.config
	rs := data.helpdesk.consent.reasons with input.request as req
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
	"relationship": common.relationship,
	"principal": common.principal,
	"baseline_key": common.baseline_key,
	"baseline_level": common.baseline_level,
	"base_rank": common.base_rank,
	"effective_tier": common.effective_tier,
	"high": common.high,
	"medium": common.medium,
	"routine": fact_routine,
	"guarded": fact_guarded,
	"is_recovery": fact_is_recovery,
	"is_factor_recovery": fact_is_factor_recovery,
	"is_access": fact_is_access,
	"is_containment": fact_is_containment,
	"escalates": fact_escalates,
	"is_human": fact_is_human,
	"is_nhi": fact_is_nhi,
	"is_agent": fact_is_agent,
	"is_service": fact_is_service,
	"human_actor": fact_human_actor,
	"remote": fact_remote,
	"authenticated": fact_authenticated,
	"strong_auth": fact_strong_auth,
	"acts_on_itself": fact_acts_on_itself,
	"is_owner": fact_is_owner,
	"active_owner": fact_active_owner,
	"security_role": fact_security_role,
	"support_role": fact_support_role,
	"self_service_path": fact_self_service_path,
	"workload_self_path": fact_workload_self_path,
	"owner_path": fact_owner_path,
	"nhi_hygiene_path": fact_nhi_hygiene_path,
	"strong_path": fact_strong_path,
	"impersonable": fact_impersonable,
	"privileged_target": fact_privileged_target,
	"env_production": fact_env_production,
	"holds_secret": fact_holds_secret,
	"leaked": fact_leaked,
	"remediation": fact_remediation,
}

# Boolean facts as true or false (undefined reads as false).
default fact_routine := false

fact_routine if common.routine

default fact_guarded := false

fact_guarded if common.guarded

default fact_is_recovery := false

fact_is_recovery if common.is_recovery

default fact_is_factor_recovery := false

fact_is_factor_recovery if common.is_factor_recovery

default fact_is_access := false

fact_is_access if common.is_access

default fact_is_containment := false

fact_is_containment if common.is_containment

default fact_escalates := false

fact_escalates if common.escalates

default fact_is_human := false

fact_is_human if common.is_human

default fact_is_nhi := false

fact_is_nhi if common.is_nhi

default fact_is_agent := false

fact_is_agent if common.is_agent

default fact_is_service := false

fact_is_service if common.is_service

default fact_human_actor := false

fact_human_actor if common.human_actor

default fact_remote := false

fact_remote if common.remote

default fact_authenticated := false

fact_authenticated if common.authenticated

default fact_strong_auth := false

fact_strong_auth if common.strong_auth

default fact_acts_on_itself := false

fact_acts_on_itself if common.acts_on_itself

default fact_is_owner := false

fact_is_owner if common.is_owner

default fact_active_owner := false

fact_active_owner if common.active_owner

default fact_security_role := false

fact_security_role if common.security_role

default fact_support_role := false

fact_support_role if common.support_role

default fact_self_service_path := false

fact_self_service_path if common.self_service_path

default fact_workload_self_path := false

fact_workload_self_path if common.workload_self_path

default fact_owner_path := false

fact_owner_path if common.owner_path

default fact_nhi_hygiene_path := false

fact_nhi_hygiene_path if common.nhi_hygiene_path

default fact_strong_path := false

fact_strong_path if common.strong_path

default fact_impersonable := false

fact_impersonable if common.impersonable

default fact_privileged_target := false

fact_privileged_target if common.privileged_target

default fact_env_production := false

fact_env_production if common.env_production

default fact_holds_secret := false

fact_holds_secret if common.holds_secret

default fact_leaked := false

fact_leaked if common.leaked

default fact_remediation := false

fact_remediation if common.remediation

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

# ------------------------------------------------------------- expecting
# The reason a rule must produce, built from the catalogue independently of
# common.reason: catalogue entry `key`, `level`, and `args` for its %v
# placeholders. A reworded catalogue changes the text, not these tests.

cat := data.helpdesk.catalogue.reasons

built(key, level, args) := {
	"code": expected_code(cat[key].code, args),
	"level": level,
	"message": sprintf(cat[key].message, args),
	"refs": cat[key].refs,
}

expected_code(code, args) := concat("", [trim_suffix(code, "%v"), args[0]]) if endswith(code, "%v") else := code

# `rs` holds exactly the reason `key` builds with `level` and `args` for its code.
gives(rs, key, level, args) if reason(rs, expected_code(cat[key].code, args)) == built(key, level, args)

# A risk signal's sentence, as the risk messages quote it.
signal_sentence(s) := data.helpdesk.catalogue.signals[s]

