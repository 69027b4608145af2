# Information requests: another identity's security set-up (factors,
# approvers, contacts) is reconnaissance material (CISA AA23-320A). It is
# answered to the identity itself, an owner of record, or a verified helpdesk
# or security role.
package helpdesk.info

import rego.v1

import data.helpdesk.common

reasons contains common.reason("identity_info_disclosure", "deny", []) if {
	common.action == "info_request"
	not common.relationship in {"self", "owner"}
	not common.support_role
}
