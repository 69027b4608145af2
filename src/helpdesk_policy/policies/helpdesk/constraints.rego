# Who may approve and whom to call back, for an integration to enforce
# (guarantee 4): an approver of record who is not the requester (nor the
# person an AI agent acts for, nor the identity it runs as), and a callback to
# a contact of record, never one from the request. Reads the final level, like
# obligations.rego.
package helpdesk.constraints

import rego.v1

import data.helpdesk
import data.helpdesk.common

cfg := common.cfg

constraints := for_requirements(helpdesk.requirements)

# The approver when the level needs an approval, the callback when it needs
# a callback ({} when neither). The requirements are an argument, not a rule
# reference: see decision.rego.
for_requirements(requirements) := {name: part |
	some name, part in {"approver": approver, "callback": callback}
	needed[name] in requirements
}

needed := {"approver": "manager_approval", "callback": "out_of_band_callback"}

approver := {
	"of_record": of_record,
	"ids": approver_ids,
	"exclude": exclude,
	"ai_agent": false,
}

of_record := "application_admin" if {
	common.action == "oauth_consent"
} else := "manager" if {
	common.is_human
} else := "owner"

# Never the approver: the requester, an AI agent's principal, the identity it runs as.
excluded contains input.actor.id

excluded contains input.actor.on_behalf_of if input.actor.on_behalf_of != null

excluded contains input.actor.runs_as if input.actor.runs_as != null

exclude := sort([id | some id in excluded; is_string(id)])

# The approvers of record the request names, the excluded removed; null when
# it names none (look them up); [] when none remains (go one level up).
approver_ids := null if {
	count(named) == 0
} else := sort([id | some id in named; not id in excluded])

named := {input.target.manager | input.target.manager != null} if of_record == "manager"

named := {id | some id in input.target.owners} if of_record == "owner"

named := set() if of_record == "application_admin"

callback := {
	"to": callback_to,
	"ids": callback_ids,
	"min_contact_age_days": cfg.callback_contact_min_age_days,
	"contact_age_days": input.target.contact_age_days,
	"contact_usable": contact_usable,
	"fallback": "manager_of_record_or_in_person",
	"not_the_recovered_factor": recovers_factor,
	"request_supplied": false,
	"ai_agent": false,
}

callback_to := "holder" if common.is_human else := "owners"

callback_ids := [input.target.id] if common.is_human else := sort([id | some id in {o | some o in input.target.owners}; is_string(id)])

default contact_usable := false

# A contact set shortly before (a SIM swap, a contact change) is not used.
contact_usable if {
	input.target.contact_age_days != null
	input.target.contact_age_days >= cfg.callback_contact_min_age_days
}

default recovers_factor := false

recovers_factor if common.is_factor_recovery
