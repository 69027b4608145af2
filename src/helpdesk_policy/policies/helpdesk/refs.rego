# Framework references, spelled once.
package helpdesk.refs

import rego.v1

aa23 := "CISA-AA23-320A"
sp63b := "NIST-SP-800-63B-4"
sp63a := "NIST-SP-800-63A-4"
aa01 := "NIST-CSF-2.0:PR.AA-01"
aa02 := "NIST-CSF-2.0:PR.AA-02"
aa03 := "NIST-CSF-2.0:PR.AA-03"
aa05 := "NIST-CSF-2.0:PR.AA-05"
ac1 := "NIST-CSF-1.1:PR.AC-1"
nhi1 := "OWASP-NHI-2025:NHI1"
nhi2 := "OWASP-NHI-2025:NHI2"
nhi5 := "OWASP-NHI-2025:NHI5"
nhi7 := "OWASP-NHI-2025:NHI7"
nhi10 := "OWASP-NHI-2025:NHI10"
llm06 := "OWASP-LLM-2025:LLM06"
airmf := "NIST-AI-RMF-1.0"
