"""What the decision service needs from the parts wired into it.

The service room may import only the core, the engines, the chain, the
facade and the renderers, so the enforcing guard
(:mod:`helpdesk_policy.agents`) and the ticketing adapters
(:mod:`helpdesk_policy.integrations`) reach it through these small
structural types: whoever builds the app (``helpdesk-policy serve``, or your
own code) passes the real objects in.

* :class:`Authorizer`: anything with ``authorize(request, evidence=None, *,
  max_level=...)`` returning an :class:`AuthorizationResult` (something with
  ``to_dict()``), as :class:`helpdesk_policy.agents.guard.Guard` does. When
  it also has an ``async def aauthorize`` with the same signature, the
  service awaits that instead of running ``authorize`` in a worker thread.
* :class:`WebhookHandler`: one ticketing system's webhook. ``to_request``
  turns the system's payload into a :class:`~helpdesk_policy.models.Request`
  (or a mapping validated as one); ``write_back`` formats the decision in the
  system's own format (a ServiceNow work note, a Jira ADF comment, Zendesk
  internal-note HTML). :class:`Webhook` builds one from two callables.

>>> from helpdesk_policy.service.protocols import Webhook, WebhookHandler
>>> hook = Webhook(to_request=lambda payload: payload["request"],
...                write_back=lambda decision, request: {"work_notes": decision.level.value})
>>> isinstance(hook, WebhookHandler)
True
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ..evidence import Evidence
from ..levels import Level
from ..models import Decision, Request

__all__ = ["AuthorizationResult", "Authorizer", "WebhookHandler", "Webhook"]


@runtime_checkable
class AuthorizationResult(Protocol):
    """What an :class:`Authorizer` answers: a permit, an escalation or a refusal.

    ``to_dict()`` is its JSON object, returned to the caller as it is. It must
    say which of the three it is; the service adds nothing and removes
    nothing (a permit's own binding, expiry and single use are the guard's).
    """

    def to_dict(self) -> Mapping[str, Any]:
        """The result as a JSON object."""
        ...


@runtime_checkable
class Authorizer(Protocol):
    """Decides whether an agent may act now, and issues the permit when it may."""

    def authorize(
        self, request: Request, evidence: Evidence | None = None, *, max_level: Level = ...,
    ) -> AuthorizationResult:
        """Authorize ``request`` given the ``evidence`` recorded so far.

        ``max_level`` is the most friction the caller can handle itself;
        anything the decision needs beyond it is an escalation. The service
        passes ``max_level`` only when the caller sent one, so the
        authorizer's own default stands otherwise.

        Raises:
            InvalidRequestError: the request or evidence is invalid (the
                service answers 422 naming the fields).
            Exception: anything else: the service answers 503 and no permit
                (fail closed).
        """
        ...


@runtime_checkable
class WebhookHandler(Protocol):
    """One ticketing system's webhook: payload in, decision written back in its format."""

    def to_request(self, payload: Any) -> Request | Mapping[str, Any]:
        """Map the system's webhook payload to a request.

        May block (a directory or CMDB look-up through a facts provider): the
        service runs it in a worker thread under the request's deadline, or
        awaits ``async def ato_request(payload)`` when the handler has one.

        Raises:
            HelpdeskPolicyError: with ``errors`` (a list of
                :class:`~helpdesk_policy.errors.FieldError`) for a payload that
                cannot be mapped: answered 422 naming each path. Any other
                failure (the facts provider is down) is answered 503, never a
                decision from partial facts.
        """
        ...

    def write_back(self, decision: Decision, request: Request) -> Any:
        """The decision in the system's own format, as a JSON value (object or string)."""
        ...


@dataclass(frozen=True)
class Webhook:
    """A :class:`WebhookHandler` made of two callables.

    Attributes:
        to_request: payload -> request (a :class:`Request` or a mapping).
        write_back: (decision, request) -> a JSON value in the system's format.
    """

    to_request: Callable[[Any], Request | Mapping[str, Any]]
    write_back: Callable[[Decision, Request], Any]
