# Unit tests for refs.rego: the framework references reasons cite.
package helpdesk.refs_test

import rego.v1

import data.helpdesk.refs

# The references are spelled as the frameworks publish them (reasons quote them verbatim).
test_refs_spelled_as_published if {
	refs.aa23 == "CISA-AA23-320A"
	refs.sp63b == "NIST-SP-800-63B-4"
	refs.aa05 == "NIST-CSF-2.0:PR.AA-05"
	refs.ac1 == "NIST-CSF-1.1:PR.AC-1"
	refs.nhi10 == "OWASP-NHI-2025:NHI10"
	refs.llm06 == "OWASP-LLM-2025:LLM06"
	refs.airmf == "NIST-AI-RMF-1.0"
}
