"""Decisions rendered for people: a summary, and the steps a helpdesk agent follows.

* :mod:`~helpdesk_policy.render.text` — :func:`render_text`, the summary of a
  decision (level, reasons, obligations, constraints, provenance);
* :mod:`~helpdesk_policy.render.explain` — :func:`render_explain`, the
  numbered steps a helpdesk agent follows (the room for more audiences and
  formats: the requester, ticket work notes);
* :mod:`~helpdesk_policy.render.audience` — :func:`explain`, one decision for
  either audience: the helpdesk agent's steps, or what to tell the requester
  (what happens next, never a risk signal that would coach an attacker).
  ``helpdesk_policy.render.explain`` is this function; the module of the same
  name is imported by its full path (``from helpdesk_policy.render.explain
  import render_explain``);
* :mod:`~helpdesk_policy.render.sanitize` — :func:`printable`, which every
  value from a request or an engine goes through before it is written.

Every renderer is a pure function of its inputs: the same decision (and
request) always gives the same text, so output can be diffed, snapshotted and
pasted into a ticket. The text is plain (no colour codes, no terminal width
assumptions), and no value can add a line, forge a numbered step or send a
terminal escape sequence.

>>> from helpdesk_policy import HelpdeskPolicy
>>> from helpdesk_policy.render import render_text
>>> d = HelpdeskPolicy(engine="native").decide({
...     "request": {"id": "INC-7", "action": "info_request", "channel": "chat"},
...     "actor": {"id": "u-1", "type": "human", "relationship": "self",
...               "authenticated": True, "auth_strength": "mfa"},
...     "target": {"id": "u-1", "type": "human", "privileged": False,
...                "privilege_tier": 0, "vip": False, "status": "active"},
... })
>>> print(render_text(d).splitlines()[0])
Decision: SELF_SERVICE (allowed)
"""

from __future__ import annotations

from .audience import REQUESTER_TEXTS, Audience, explain, requester_text
from .explain import describe_action, render_explain
from .sanitize import printable
from .text import describe_approver, describe_callback, describe_obligation, render_text

__all__ = ["render_text", "render_explain", "explain", "requester_text", "REQUESTER_TEXTS", "Audience",
           "describe_obligation", "describe_approver", "describe_callback", "describe_action", "printable"]
