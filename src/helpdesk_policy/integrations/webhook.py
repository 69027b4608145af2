"""One ticketing system's webhook: its mapping, the facts provider, and its write-back format.

A :class:`TicketWebhook` has ``to_request(payload)`` and
``write_back(decision, request)``: what the decision service
(:mod:`helpdesk_policy.service`) calls for ``POST /v1/webhooks/{system}``,
and what your own webhook handler can call. :func:`webhook_for` builds one
for a shipped mapping.

>>> from helpdesk_policy.integrations import webhook_for
>>> hook = webhook_for("zendesk", facts={}.get)
>>> hook.mapping.system, hook.formatter.__name__
('zendesk', 'internal_note')
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..models import Decision, Request
from . import jira, servicenow, zendesk
from .mapping import SHIPPED_MAPPINGS, FactsSource, MappedRequest, TicketMapping, load_mapping

__all__ = ["TicketWebhook", "WRITE_BACKS", "webhook_for"]

#: The write-back format of each system: decision (and request) -> the body to send back.
WRITE_BACKS: dict[str, Callable[[Decision, Request | Mapping[str, Any] | None], Any]] = {
    "servicenow": servicenow.work_note_update,
    "jira_service_management": jira.adf_comment,
    "zendesk": zendesk.internal_note,
}


@dataclass(frozen=True)
class TicketWebhook:
    """A mapping, a facts provider and a write-back format for one system's webhook.

    Attributes:
        mapping: the payload -> request mapping.
        formatter: decision, request -> the body the system takes back
            (:data:`WRITE_BACKS`).
        facts: the facts provider the mapping reads the facts of record from.
    """

    mapping: TicketMapping
    formatter: Callable[[Decision, Request | Mapping[str, Any] | None], Any]
    facts: FactsSource | None = None

    def map_payload(self, payload: Any) -> MappedRequest:
        """The payload's request and where each field came from (see :meth:`TicketMapping.map_payload`)."""
        return self.mapping.map_payload(payload, self.facts)

    def to_request(self, payload: Any) -> Request:
        """The payload's request (raises ``MappingError`` or ``FactsUnavailableError``: nothing to decide)."""
        return self.mapping.to_request(payload, self.facts)

    def write_back(self, decision: Decision, request: Request | Mapping[str, Any] | None = None) -> Any:
        """The decision in the system's own format, with the agent's checklist."""
        return self.formatter(decision, request)


def webhook_for(name: str, facts: FactsSource | None = None, *,
                mapping: TicketMapping | str | None = None) -> TicketWebhook:
    """The webhook of a shipped mapping (:data:`~helpdesk_policy.integrations.mapping.SHIPPED_MAPPINGS`).

    Args:
        name: ``servicenow_incident``, ``servicenow_catalog``,
            ``jira_service_management`` or ``zendesk``.
        facts: the facts provider.
        mapping: your own mapping (a :class:`TicketMapping` or a file path)
            instead of the shipped one; its ``system`` chooses the write-back
            (``servicenow``, ``jira_service_management``, ``zendesk``).

    Raises:
        ValueError: ``name`` is not a shipped mapping, or the mapping's system has no write-back format.
    """
    if mapping is None:
        if name not in SHIPPED_MAPPINGS:
            raise ValueError(f"no shipped mapping {name!r}: one of {', '.join(SHIPPED_MAPPINGS)}, or pass mapping=")
        mapping = load_mapping(name)
    elif not isinstance(mapping, TicketMapping):
        mapping = load_mapping(mapping)
    formatter = WRITE_BACKS.get(mapping.system)
    if formatter is None:
        raise ValueError(f"no write-back format for system {mapping.system!r}: one of {', '.join(WRITE_BACKS)}")
    return TicketWebhook(mapping, formatter, facts)
