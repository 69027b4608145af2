"""Digests and redaction: what may leave the process about a request (SPEC §5.5).

The input digest is ``sha256:`` over the validated request's canonical JSON, so
the same request gives the same digest whatever key order or duplicate signals
it arrived with. ``redact`` removes free text a requester controls (the
justification may hold a pasted password) before anything is logged.
"""

from __future__ import annotations

import hashlib
from typing import Any

from .models import Request

__all__ = ["input_digest", "redact", "REDACTED"]

REDACTED = "[redacted]"

#: Free-text fields a requester controls: never logged verbatim.
_FREE_TEXT = (("request", "justification"),)


def input_digest(request: Request) -> str:
    """``sha256:<hex>`` of the request's canonical JSON (field order is the model's)."""
    # The serializer's bytes output skips a str round trip (hot path).
    return "sha256:" + hashlib.sha256(request.__pydantic_serializer__.to_json(request)).hexdigest()


def redact(request: Request) -> dict[str, Any]:
    """The request as a JSON-ready dict with free-text fields replaced by ``[redacted]``."""
    doc = request.model_dump(mode="json")
    for section, key in _FREE_TEXT:
        if doc.get(section, {}).get(key) is not None:
            doc[section][key] = REDACTED
    return doc
