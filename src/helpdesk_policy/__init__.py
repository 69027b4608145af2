"""helpdesk-policy: how much identity assurance a helpdesk request needs, and why.

>>> from helpdesk_policy import HelpdeskPolicy, Level
>>> policy = HelpdeskPolicy(engine="native")
>>> policy.decide({
...     "request": {"id": "INC-9", "action": "mfa_reset", "channel": "phone"},
...     "actor": {"id": "u-9", "type": "human", "relationship": "self",
...               "authenticated": False, "auth_strength": "none"},
...     "target": {"id": "u-9", "type": "human", "privileged": True,
...                "privilege_tier": 2, "vip": False, "status": "active"},
... }).level
<Level.CALLBACK: 'callback'>

See :mod:`helpdesk_policy.errors` for the exception tree and
:mod:`helpdesk_policy.engines` for the engines.
"""

from __future__ import annotations

from .config import PolicyConfig, load_config
from .errors import (
    EngineError,
    EngineTimeoutError,
    EngineUnavailableError,
    HelpdeskPolicyError,
    InvalidConfigError,
    InvalidRequestError,
    MalformedDecisionError,
    PolicyLoadError,
    UndefinedDecisionError,
)
from .facade import HelpdeskPolicy
from .levels import Level
from .models import Decision, Obligation, Reason, Request, Verdict, parse_request
from .policies import PolicySet

__version__ = "0.1.0"

__all__ = [
    "HelpdeskPolicy",
    "Level",
    "Request",
    "Decision",
    "Verdict",
    "Reason",
    "Obligation",
    "PolicyConfig",
    "PolicySet",
    "load_config",
    "parse_request",
    "HelpdeskPolicyError",
    "InvalidRequestError",
    "InvalidConfigError",
    "PolicyLoadError",
    "EngineError",
    "EngineUnavailableError",
    "EngineTimeoutError",
    "UndefinedDecisionError",
    "MalformedDecisionError",
    "__version__",
]
