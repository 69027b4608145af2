"""The decision as a Zendesk internal note (a private comment in HTML).

``PUT /api/v2/tickets/{id}`` with ``{"ticket": {"comment": {"html_body": …,
"public": false}}}`` adds a comment only agents see: ``public: false`` is
what makes it internal, and the requester is never notified of it. The body
is HTML: every value (ids, reasons, a custom policy's codes) is escaped with
:func:`html.escape` (``<``, ``>``, ``&`` and both quotes), after being made
printable, so a hostile ticket id or reason cannot add markup, a link, a
script or a line. The checklist is an ordered list of ``☐`` steps.

>>> from helpdesk_policy import HelpdeskPolicy
>>> d = HelpdeskPolicy(engine="native").decide({
...     "request": {"id": "48213", "action": "account_unlock", "channel": "chat"},
...     "actor": {"id": "u-1", "type": "human", "relationship": "self",
...               "authenticated": True, "auth_strength": "mfa"},
...     "target": {"id": "u-1", "type": "human", "privileged": False,
...                "privilege_tier": 0, "vip": False, "status": "active"},
... })
>>> internal_note(d)["ticket"]["comment"]["public"]
False
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from ..models import Decision, Request
from ..render import printable
from .checklist import checklist, headline, provenance_line

__all__ = ["internal_note", "internal_note_html"]


def _e(value: object) -> str:
    return html.escape(printable(value), quote=True)


def internal_note_html(decision: Decision, request: Request | Mapping[str, Any] | None = None) -> str:
    """The decision as the HTML body of an internal note: headline, checklist, reasons, provenance."""
    items = checklist(decision, request)
    what = f"Playbook {_e(decision.playbook)}; requirements: " + (", ".join(map(_e, decision.requirements)) or "none")
    if decision.action is not None:
        target = "" if decision.target_id is None else f" on {_e(decision.target_id)}"
        what = f"{_e(decision.action.value)}{target}. {what}"
    parts = [
        f"<p><strong>{_e(headline(decision))}</strong></p>",
        f"<p>{what}</p>",
        "<p><strong>Checklist</strong> (complete every step, in order; record each in the ticket):</p>",
        "<ol>" + "".join(f"<li>\u2610 {_e(item.text)}</li>" for item in items) + "</ol>",
        "<p><strong>Why</strong></p>",
        "<ul>" + "".join(f"<li>[{_e(r.level.value)}] <strong>{_e(r.code)}</strong>: {_e(r.message)}</li>"
                         for r in decision.reasons) + "</ul>",
        f"<p>{_e(provenance_line(decision))}</p>",
    ]
    return "".join(parts)


def internal_note(decision: Decision, request: Request | Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The body of ``PUT /api/v2/tickets/{id}``: ``{"ticket": {"comment": {"html_body": …, "public": false}}}``."""
    return {"ticket": {"comment": {"html_body": internal_note_html(decision, request), "public": False}}}
