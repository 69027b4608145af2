"""Digests, redaction and pseudonyms: what may leave the process about a request (guarantee 5).

The input digest is ``sha256:`` over the validated request's canonical JSON, so
the same request gives the same digest whatever key order or duplicate signals
it arrived with. ``redact`` removes free text a requester controls (the
justification may hold a pasted password) before anything is logged, and masks
the identity identifiers as the caller chooses (:data:`LOG_IDENTIFIER_MODES`).

>>> pseudonym("u-123") == pseudonym("u-123") != pseudonym("u-124")
True
>>> pseudonym("u-123", key=b"k")[:4], len(pseudonym("u-123", key=b"k"))
('pid:', 20)
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Collection
from typing import Any, Literal

from .errors import FieldError, InvalidConfigError
from .models import Decision, Request

__all__ = [
    "input_digest", "redact", "redact_decision", "pseudonym", "REDACTED", "LogIdentifiers", "LOG_IDENTIFIER_MODES",
    "IDENTIFIER_FIELDS", "DECISION_IDENTIFIER_FIELDS",
]

REDACTED = "[redacted]"

#: Free-text fields a requester controls: never logged verbatim.
_FREE_TEXT = (("request", "justification"),)

#: What a redacted request keeps of its identity identifiers:
#: ``"pseudonymize"`` replaces each with :func:`pseudonym`, ``"keep"`` keeps
#: them verbatim, ``"drop"`` removes the fields.
LogIdentifiers = Literal["pseudonymize", "keep", "drop"]
LOG_IDENTIFIER_MODES: tuple[str, ...] = ("pseudonymize", "keep", "drop")

#: The fields of a request that name an identity (or, for ``roles``, what an
#: identity may do in the directory), as ``(section, key)``. ``request.id``
#: (a ticket number) and ``target.environment`` are not identities and are kept.
#: Every field the policy compares with another identity is here, so that one
#: identifier gives one pseudonym wherever it appears and a record replays.
IDENTIFIER_FIELDS: tuple[tuple[str, str], ...] = (
    ("actor", "id"), ("actor", "on_behalf_of"), ("actor", "roles"), ("actor", "runs_as"),
    ("target", "id"), ("target", "owners"), ("target", "manager"),
)

#: Where a decision names identities: its ``constraints`` (the approvers of
#: record, who may never approve, whom to call back), as ``(part, key)``.
#: Every value there is one of the request's identifiers, so it is masked
#: alike (one identifier, one pseudonym) and a record still replays.
DECISION_IDENTIFIER_FIELDS: tuple[tuple[str, str], ...] = (
    ("approver", "ids"), ("approver", "exclude"), ("callback", "ids"),
)


def input_digest(request: Request) -> str:
    """``sha256:<hex>`` of the request's canonical JSON (field order is the model's)."""
    # The serializer's bytes output skips a str round trip (hot path).
    return "sha256:" + hashlib.sha256(request.__pydantic_serializer__.to_json(request)).hexdigest()


def pseudonym(identifier: str, key: bytes | None = None) -> str:
    """``"pid:"`` + the first 16 hex digits of HMAC-SHA256(``key``, ``identifier``).

    The same identifier always gives the same pseudonym under one key, so
    relations survive (the requester is the target, or one of its owners).
    Without a key it is plain SHA-256: anyone who can guess an identifier
    ("u-1042", an e-mail address) can confirm it, so unkeyed pseudonyms hide
    identifiers only from readers who cannot enumerate them.
    """
    data = identifier.encode("utf-8", "surrogatepass")
    digest = hmac.new(key, data, hashlib.sha256) if key else hashlib.sha256(data)
    return "pid:" + digest.hexdigest()[:16]


def redact(
    request: Request, *, identifiers: LogIdentifiers = "keep", key: bytes | None = None,
    masked: list[str] | None = None, erased: list[str] | None = None, keep_roles: Collection[str] = (),
) -> dict[str, Any]:
    """The request as a JSON-ready dict, safe to log.

    Free-text fields are always replaced by ``[redacted]``. Identity
    identifiers (:data:`IDENTIFIER_FIELDS`) follow ``identifiers``.

    Args:
        request: a validated request (not modified).
        identifiers: ``"keep"``, ``"pseudonymize"`` (with ``key``, see
            :func:`pseudonym`) or ``"drop"``.
        key: the pseudonym key; ``None`` = unkeyed SHA-256.
        masked: if given, receives the JSON pointer (``/request/justification``)
            of every value replaced.
        erased: if given, receives the JSON pointer of every field removed.
        keep_roles: role names kept verbatim when pseudonymizing: the roles the
            policy's config names (``security_roles``, ``helpdesk_roles``) are
            policy vocabulary that decisions read, not identities, and a
            record must replay as it was decided. Any other role is pseudonymized.

    Raises:
        InvalidConfigError: ``identifiers`` is not one of the modes.
    """
    if identifiers not in LOG_IDENTIFIER_MODES:
        raise InvalidConfigError([FieldError("identifiers", f"must be one of {list(LOG_IDENTIFIER_MODES)}")])
    doc = request.model_dump(mode="json")
    for section, name in _FREE_TEXT:
        if doc[section].get(name) is not None:
            doc[section][name] = REDACTED
            _note(masked, section, name)
    if identifiers == "keep":
        return doc
    for section, name in IDENTIFIER_FIELDS:
        value = doc[section].get(name)
        if not value:  # None and [] say nothing about anyone: kept as they are
            continue
        if identifiers == "drop":
            del doc[section][name]
            _note(erased, section, name)
        else:
            if isinstance(value, list):
                kept = keep_roles if name == "roles" else ()
                masked_values = [v if v in kept else pseudonym(v, key) for v in value]
                if masked_values == value:
                    continue  # nothing was masked
                doc[section][name] = masked_values
            else:
                doc[section][name] = pseudonym(value, key)
            _note(masked, section, name)
    return doc


def redact_decision(
    decision: Decision, *, identifiers: LogIdentifiers = "keep", key: bytes | None = None,
    masked: list[str] | None = None, erased: list[str] | None = None,
) -> dict[str, Any]:
    """The decision as its contract's JSON object (:meth:`Decision.to_dict`), safe to log.

    The identifiers its constraints name (:data:`DECISION_IDENTIFIER_FIELDS`)
    follow ``identifiers`` as :func:`redact` treats the request's: pseudonyms
    (sorted, as the engines sort ids, so a replayed record decides the same),
    kept, or removed. ``null`` and ``[]`` name no one and are kept.

    Args:
        decision: the decision (not modified).
        identifiers, key: as for :func:`redact`.
        masked, erased: if given, receive the JSON pointers
            (``/constraints/approver/ids``) of the values replaced or removed.

    Raises:
        InvalidConfigError: ``identifiers`` is not one of the modes.
    """
    if identifiers not in LOG_IDENTIFIER_MODES:
        raise InvalidConfigError([FieldError("identifiers", f"must be one of {list(LOG_IDENTIFIER_MODES)}")])
    doc = decision.to_dict()
    constraints = doc.get("constraints")
    if identifiers == "keep" or not constraints:
        return doc
    for part, name in DECISION_IDENTIFIER_FIELDS:
        section = constraints.get(part)
        value = None if section is None else section.get(name)
        if not value:
            continue
        if identifiers == "drop":
            del section[name]
            _note(erased, f"constraints/{part}", name)
        else:
            section[name] = sorted({pseudonym(v, key) for v in value})
            _note(masked, f"constraints/{part}", name)
    return doc


def _note(paths: list[str] | None, section: str, name: str) -> None:
    if paths is not None:
        paths.append(f"/{section}/{name}")
