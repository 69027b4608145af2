"""Policy engines behind one interface, and how to load one by name.

============  ===========================================  ===============================
name          what it is                                   install
============  ===========================================  ===============================
``rego``      stock Rego, in-process (regopy / rego-cpp)   ``helpdesk-policy[rego]``
``native``    pure-Python mirror of the stock Rego          core
``compiled``  the policy set's Rego compiled to Python      ``helpdesk-policy[rego]``
``opa``       an OPA server over its REST API               ``helpdesk-policy[opa]``
============  ===========================================  ===============================

Heavy engines are imported lazily: importing ``helpdesk_policy`` never imports
regopy or an HTTP client. Loading an engine whose extra is missing raises
:class:`~helpdesk_policy.errors.EngineUnavailableError` naming the extra.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import EngineUnavailableError
from ..policyset import PolicySet
from .base import BaseEngine, Engine, RawDecision

__all__ = ["Engine", "BaseEngine", "RawDecision", "ENGINES", "load_engine"]

#: name -> (module, class, extra that provides its dependencies or None)
ENGINES: dict[str, tuple[str, str, str | None]] = {
    "rego": ("helpdesk_policy.engines.rego", "RegoEngine", "rego"),
    "native": ("helpdesk_policy.engines.native", "NativeEngine", None),
    "compiled": ("helpdesk_policy.engines.compiled", "CompiledEngine", "rego"),
    "opa": ("helpdesk_policy.engines.opa", "OpaEngine", "opa"),
}


def load_engine(name: str, policy_set: PolicySet | None = None, **options: Any) -> Engine:
    """Create the engine called ``name`` for ``policy_set`` (the stock set by default).

    Raises:
        EngineUnavailableError: unknown name, or its dependencies are not installed.
    """
    try:
        module_name, class_name, extra = ENGINES[name]
    except KeyError:
        raise EngineUnavailableError(
            f"unknown engine {name!r}; choose one of {sorted(ENGINES)}", engine=name
        ) from None
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        hint = f"pip install 'helpdesk-policy[{extra}]'" if extra else "reinstall helpdesk-policy"
        raise EngineUnavailableError(
            f"engine {name!r} cannot load ({exc}); install its extra: {hint}", engine=name
        ) from exc
    cls = getattr(module, class_name)
    return cls(policy_set if policy_set is not None else PolicySet.load(), **options)  # type: ignore[no-any-return]
