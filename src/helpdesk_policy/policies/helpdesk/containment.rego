# Containment (revoke, disable) stays fast for the right people: the holder,
# an owner or manager of record, a security role (a person or a security
# tool), or the desk's verified staff for ordinary accounts (CSF 2.0 PR.AA-05). Anyone
# else can use it to lock a person out or take a system down, so it needs
# approval (more for privileged and VIP targets); an AI agent's say-so needs a
# person too (OWASP LLM06). A risk signal never entitles anyone: signals may
# only raise a decision (guarantee 2), so a detection that must revoke at once
# goes through a security role (a scanner or the SOC), which is entitled.
package helpdesk.containment

import rego.v1

import data.helpdesk.common

reasons contains common.reason(approval_key, approval_level, [common.action]) if {
	common.is_containment
	not entitled
}

entitled if common.relationship in {"self", "owner", "manager"}

entitled if common.security_role

# The desk's own verified staff contain ordinary accounts; a privileged or VIP
# account, the lockout target worth fooling an agent for, needs approval.
entitled if {
	common.support_role
	not common.privileged_target
	input.target.vip != true
}

approval_key := "containment_needs_approval.agent" if common.is_agent else := "containment_needs_approval"

approval_level := "callback" if {
	common.privileged_target
} else := "callback" if {
	input.target.vip == true
} else := "manager_approval"
