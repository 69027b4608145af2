"""Quickstart: decide one helpdesk request and read the answer.

Run: .venv/bin/python examples/quickstart.py
"""

from helpdesk_policy import HelpdeskPolicy, InvalidRequestError

# engine="auto" (the default): the stock Rego evaluated in-process, with the
# pure-Python mirror as fallback. No server needed.
policy = HelpdeskPolicy()

# The classic help-desk social-engineering call (CISA AA23-320A): someone on the
# phone, not signed in, asks for an MFA reset of a tier-2 admin, and the caller ID
# does not match the number of record.
decision = policy.decide({
    "request": {"id": "INC-1042", "action": "mfa_reset", "channel": "phone",
                "justification": "new phone, locked out during an outage"},
    "actor": {"id": "u-123", "type": "human", "relationship": "self",
              "authenticated": False, "auth_strength": "none"},
    "target": {"id": "u-123", "type": "human", "privileged": True, "privilege_tier": 2,
               "vip": False, "status": "active"},
    "context": {"risk_signals": ["caller_id_mismatch"]},
})

print(f"level: {decision.level.value} (allowed={decision.allowed}, engine={decision.engine})")
print(f"requirements: {', '.join(decision.requirements)}")
for reason in decision.reasons:
    print(f"  {reason.level.value:<16} {reason.code}: {reason.message}")
for obligation in decision.obligations:
    print(f"  must: {obligation.model_dump(exclude_none=True)}")

# Invalid input never gets a decision: the error lists every bad field at once.
try:
    policy.decide({"request": {"id": "INC-1043", "action": "reset_everything", "channel": "fax"}})
except InvalidRequestError as exc:
    print("rejected:", ", ".join(exc.paths))
