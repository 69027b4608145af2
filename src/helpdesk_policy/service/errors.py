"""The decision service's own errors (they derive from the package's base error).

::

    HelpdeskPolicyError
    └── ServiceError                  the service cannot be built or started
        └── ServiceDependencyError        the ``service`` extra is not installed
"""

from __future__ import annotations

from ..errors import HelpdeskPolicyError

__all__ = ["ServiceError", "ServiceDependencyError", "EXTRA_HINT"]

#: What to install for the service, as every missing-dependency error says it.
EXTRA_HINT = "pip install 'helpdesk-policy[service]'"


class ServiceError(HelpdeskPolicyError):
    """The decision service cannot be built or started."""


class ServiceDependencyError(ServiceError, ImportError):
    """A package of the ``service`` extra (Starlette, uvicorn) is not installed.

    The message names the missing package and the extra to install
    (:data:`EXTRA_HINT`). An ``ImportError`` too, so code written against a
    plain import failure still catches it.
    """

    def __init__(self, missing: str) -> None:
        super().__init__(f"the decision service needs {missing}, which is not installed: {EXTRA_HINT}")
        self.missing = missing
