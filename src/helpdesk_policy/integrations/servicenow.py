"""The decision as a ServiceNow work note (the incident's or requested item's internal journal).

Work notes are journal text that only fulfillers see (``work_notes``; the
requester sees ``comments``, the additional comments). ServiceNow renders a
journal entry as plain text except between ``[code]`` and ``[/code]``, which
it renders as HTML when the instance allows it (the
``glide.ui.security.allow_codetag`` property). This note is **plain text on
purpose**: a checkbox list reads well as text, and a note that never uses
``[code]`` cannot carry markup whatever the instance's setting. Any
``[code]`` written inside a value (a ticket id, a reason from a custom
policy) is defused (its bracket replaced by a fullwidth ``［``), so a value
can neither open an HTML island nor close one; every value is also made
printable (no value can add a line or forge a step).

>>> from helpdesk_policy import HelpdeskPolicy
>>> d = HelpdeskPolicy(engine="native").decide({
...     "request": {"id": "INC0010001", "action": "password_reset", "channel": "phone"},
...     "actor": {"id": "u-1", "type": "human", "relationship": "self",
...               "authenticated": False, "auth_strength": "none"},
...     "target": {"id": "u-1", "type": "human", "privileged": False,
...                "privilege_tier": 0, "vip": False, "status": "active", "contact_age_days": 400},
...     "context": {"recent_credential_change_hours": 1000, "enrolled_factor_available": True},
... })
>>> note = work_note(d)
>>> note.splitlines()[0]
'helpdesk-policy decision for INC0010001: STEP_UP (allowed)'
>>> [line[:9] for line in note.splitlines() if line.startswith("[ ]")][:2]
['[ ] 1. Ve', '[ ] 2. If']
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..models import Decision, Request
from ..render import printable
from .checklist import checklist, headline, provenance_line

__all__ = ["work_note", "work_note_update"]

#: ``[code]`` and ``[/code]`` in any case, with spaces inside the brackets.
_CODE_TAG = re.compile(r"\[(\s*/?\s*code\s*)\]", re.IGNORECASE)


def _plain(text: str) -> str:
    """Text that ServiceNow shows as text: no ``[code]`` tag can survive in it."""
    return _CODE_TAG.sub(lambda m: "\uff3b" + m.group(1) + "]", text)


def work_note(decision: Decision, request: Request | Mapping[str, Any] | None = None) -> str:
    """The decision as a ServiceNow work note: headline, checklist, reasons, provenance.

    Args:
        decision: the decision (it names its ticket, action and target).
        request: the request it was made for, optional (see
            :func:`~helpdesk_policy.integrations.checklist.checklist`).

    Returns:
        Plain journal text: the checklist as ``[ ] 1. …`` lines the agent
        works through in order, then "Why" (each reason with its level and
        code), then the decision id and policy revision that find the
        decision again in the decision log.
    """
    items = checklist(decision, request)
    lines = [headline(decision)]
    what = [f"Playbook: {printable(decision.playbook)}"]
    if decision.action is not None:
        target = "" if decision.target_id is None else f" on {printable(decision.target_id)}"
        what.insert(0, f"Action: {decision.action.value}{target}")
    lines.append(" | ".join(what))
    lines.append("Requirements: " + (", ".join(map(printable, decision.requirements)) or "none"))
    lines.append("")
    lines.append("Checklist (complete every step, in order; record each in the ticket):")
    lines += [f"[ ] {i}. {item.text}" for i, item in enumerate(items, 1)]
    lines.append("")
    lines.append("Why:")
    lines += [f"- [{r.level.value}] {printable(r.code)}: {printable(r.message)}" for r in decision.reasons]
    lines.append("")
    lines.append(provenance_line(decision))
    return _plain("\n".join(lines))


def work_note_update(decision: Decision, request: Request | Mapping[str, Any] | None = None) -> dict[str, str]:
    """The Table API body that adds the work note: ``{"work_notes": <note>}``.

    ``PATCH /api/now/table/incident/{sys_id}`` (or ``sc_req_item``) with this
    body appends the note to the record's journal.
    """
    return {"work_notes": work_note(decision, request)}
