"""Ticketing adapters: webhook payloads to requests, and decisions written back.

For integrators of ServiceNow, Jira Service Management and Zendesk:

* :mod:`~helpdesk_policy.integrations.mapping` — :class:`TicketMapping`, a
  declarative YAML mapping from a webhook payload to a
  :class:`~helpdesk_policy.models.Request` (payload paths, value maps, the
  facts of record from a facts provider), failing closed with errors that
  name the payload path and the request field; four shipped mappings
  (:func:`load_mapping`: ``servicenow_incident``, ``servicenow_catalog``,
  ``jira_service_management``, ``zendesk``);
* :mod:`~helpdesk_policy.integrations.checklist` — the steps the agent must
  complete for a decision;
* :mod:`~helpdesk_policy.integrations.servicenow`,
  :mod:`~helpdesk_policy.integrations.jira`,
  :mod:`~helpdesk_policy.integrations.zendesk` — the decision in each
  system's own format: a ServiceNow work note, a Jira Atlassian Document
  Format comment, a Zendesk internal note;
* :class:`TicketWebhook` — a mapping, a facts provider and a write-back in
  one object (``to_request(payload)``, ``write_back(decision, request)``),
  what the decision service's webhooks take.

Sample payloads are in ``examples/ticketing/``.
"""

from __future__ import annotations

from .checklist import ChecklistItem, checklist
from .mapping import (
    ALLOWED_DEFAULTS,
    SHIPPED_MAPPINGS,
    FactsSource,
    FactsUnavailableError,
    FieldSource,
    IdentityLookup,
    MappedRequest,
    MappingDefinitionError,
    MappingError,
    PayloadFieldError,
    TicketMapping,
    load_mapping,
    parse_payload,
)
from .webhook import WRITE_BACKS, TicketWebhook, webhook_for

__all__ = [
    "TicketMapping",
    "FieldSource",
    "MappedRequest",
    "IdentityLookup",
    "FactsSource",
    "PayloadFieldError",
    "MappingError",
    "MappingDefinitionError",
    "FactsUnavailableError",
    "ALLOWED_DEFAULTS",
    "SHIPPED_MAPPINGS",
    "load_mapping",
    "parse_payload",
    "ChecklistItem",
    "checklist",
    "TicketWebhook",
    "WRITE_BACKS",
    "webhook_for",
]
