"""The decision as a Jira Service Management internal comment, in Atlassian Document Format.

Jira Cloud's REST API v3 takes a comment's body as an Atlassian Document
Format (ADF) document: ``{"version": 1, "type": "doc", "content": [...]}`` of
block nodes (``heading``, ``paragraph``, ``bulletList`` of ``listItem``,
``taskList`` of ``taskItem``), whose inline content is ``text`` nodes
(non-empty, optionally with marks such as ``strong``). The checklist is a
``taskList``: each step a ``taskItem`` with ``state: "TODO"`` that the agent
ticks in Jira, and a ``localId`` unique in the document.

In Jira Service Management a comment is shared with the customer unless it
is internal: :func:`adf_comment` sets the ``sd.public.comment`` property to
``{"internal": true}``, which ``POST /rest/api/3/issue/{key}/comment`` accepts
and the service desk honours. ADF is JSON, not markup, so values need no
escaping; they are made printable (no value adds a line or a step).

The node shapes follow the ADF JSON schema (``@atlaskit/adf-schema``,
``json-schema/v1/full.json``); ``tests/test_integrations.py`` validates the
output against it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..models import Decision, Request
from ..render import printable
from .checklist import checklist, headline, provenance_line

__all__ = ["adf_document", "adf_comment", "INTERNAL_PROPERTY"]

#: The comment property that makes a Jira Service Management comment internal.
INTERNAL_PROPERTY = {"key": "sd.public.comment", "value": {"internal": True}}


def _text(text: str, *, strong: bool = False) -> dict[str, Any]:
    node: dict[str, Any] = {"type": "text", "text": text}
    if strong:
        node["marks"] = [{"type": "strong"}]
    return node


def _paragraph(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"type": "paragraph", "content": [p for p in parts if p["text"]]}


def adf_document(decision: Decision, request: Request | Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The decision as an ADF document: headline, checklist (a task list), reasons, provenance.

    Args:
        decision: the decision (it names its ticket, action and target).
        request: the request it was made for, optional (see
            :func:`~helpdesk_policy.integrations.checklist.checklist`).
    """
    items = checklist(decision, request)
    prefix = decision.decision_id
    what = f"Playbook {printable(decision.playbook)}; requirements: " + (
        ", ".join(map(printable, decision.requirements)) or "none")
    if decision.action is not None:
        target = "" if decision.target_id is None else f" on {printable(decision.target_id)}"
        what = f"{decision.action.value}{target}. {what}"
    content: list[dict[str, Any]] = [
        {"type": "heading", "attrs": {"level": 3}, "content": [_text(headline(decision))]},
        _paragraph(_text(what)),
        _paragraph(_text("Checklist", strong=True),
                   _text(" (complete every step, in order; record each in the ticket):")),
        {
            "type": "taskList",
            "attrs": {"localId": f"{prefix}-checklist"},
            "content": [
                {"type": "taskItem", "attrs": {"localId": f"{prefix}-step-{i}", "state": "TODO"},
                 "content": [_text(f"{i}. {item.text}")]}
                for i, item in enumerate(items, 1)
            ],
        },
        _paragraph(_text("Why", strong=True)),
        {
            "type": "bulletList",
            "content": [
                {"type": "listItem", "content": [_paragraph(
                    _text(f"[{r.level.value}] {printable(r.code)}: ", strong=True), _text(printable(r.message)))]}
                for r in decision.reasons
            ],
        },
        _paragraph(_text(provenance_line(decision))),
    ]
    return {"version": 1, "type": "doc", "content": content}


def adf_comment(decision: Decision, request: Request | Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The body of ``POST /rest/api/3/issue/{key}/comment``: the ADF document, as an internal comment.

    ``{"body": <ADF doc>, "properties": [{"key": "sd.public.comment", "value": {"internal": true}}]}``.
    """
    return {"body": adf_document(decision, request), "properties": [dict(INTERNAL_PROPERTY, value={"internal": True})]}
