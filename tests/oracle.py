"""OPA's own Go evaluator (opa-golib-python-bindings), used as the conformance oracle.

It is a pinned dev dependency, not a runtime one: the Rego must give the same
answers under real OPA as under regopy. One ``OpaOracle`` wraps one Go engine;
evaluations on it are serialized by the bindings' lock, so give each thread its own.
The engine itself is :class:`helpdesk_policy.ci.conformance.OpaGoEngine`, which
``helpdesk-policy test`` and ``diff`` use for their OPA conformance check.
"""

from __future__ import annotations

from opa_bindings import OpaError, OpaUndefinedError

from helpdesk_policy.ci.conformance import OpaGoEngine as OpaOracle

__all__ = ["OpaOracle", "OpaError", "OpaUndefinedError"]
