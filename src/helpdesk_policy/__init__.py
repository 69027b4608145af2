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

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public names -> the module that defines them. They are imported on first use
# (PEP 562), so importing the package (which every pytest run does through the
# plugin's entry point) costs nothing until something is actually used.
_EXPORTS: dict[str, str] = {
    "HelpdeskPolicy": "facade",
    "Level": "levels",
    "Request": "models",
    "Decision": "models",
    "Verdict": "models",
    "Reason": "models",
    "Obligation": "models",
    "parse_request": "models",
    "Evidence": "evidence",
    "Verification": "evidence",
    "PolicyConfig": "config",
    "load_config": "config",
    "PolicySet": "policyset",
    "HelpdeskPolicyError": "errors",
    "InvalidRequestError": "errors",
    "InvalidConfigError": "errors",
    "PolicyLoadError": "errors",
    "EngineError": "errors",
    "EngineUnavailableError": "errors",
    "EngineTimeoutError": "errors",
    "UndefinedDecisionError": "errors",
    "MalformedDecisionError": "errors",
}

__all__ = [
    "HelpdeskPolicy",
    "Level",
    "Request",
    "Decision",
    "Verdict",
    "Reason",
    "Obligation",
    "parse_request",
    "Evidence",
    "Verification",
    "PolicyConfig",
    "load_config",
    "PolicySet",
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

if TYPE_CHECKING:
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
    from .evidence import Evidence, Verification
    from .facade import HelpdeskPolicy
    from .levels import Level
    from .models import Decision, Obligation, Reason, Request, Verdict, parse_request
    from .policyset import PolicySet


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
