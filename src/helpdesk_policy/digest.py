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

import copy
import hashlib
import hmac
import json
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .credentials import CREDENTIAL_MASK, looks_like_credential
from .errors import FieldError, InvalidConfigError
from .models import Decision, Request, input_digest  # input_digest is defined beside the Decision it fills

__all__ = [
    "input_digest", "redact", "redact_decision", "pseudonym", "REDACTED", "LogIdentifiers", "LOG_IDENTIFIER_MODES",
    "IDENTIFIER_FIELDS", "DECISION_IDENTIFIER_FIELDS", "LogMaskRule", "parse_log_mask", "apply_log_mask",
    "mask_credentials",
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

    Its ``target_id`` (the request's ``target.id``) and the identifiers its
    constraints name (:data:`DECISION_IDENTIFIER_FIELDS`)
    follow ``identifiers`` as :func:`redact` treats the request's: pseudonyms
    (sorted, as the engines sort ids, so a replayed record decides the same),
    kept, or removed. ``null`` and ``[]`` name no one and are kept.

    Args:
        decision: the decision (not modified).
        identifiers, key: as for :func:`redact`.
        masked, erased: if given, receive the JSON pointers (``/target_id``,
            ``/constraints/approver/ids``) of the values replaced or removed.

    Raises:
        InvalidConfigError: ``identifiers`` is not one of the modes.
    """
    if identifiers not in LOG_IDENTIFIER_MODES:
        raise InvalidConfigError([FieldError("identifiers", f"must be one of {list(LOG_IDENTIFIER_MODES)}")])
    doc = decision.to_dict()
    if identifiers == "keep":
        return doc
    # The decision names its target (``target_id``, the request's target.id):
    # masked as the input's target.id is, so both give the same pseudonym.
    target_id = doc.get("target_id")
    if target_id:
        if identifiers == "drop":
            del doc["target_id"]
            _note_top(erased, "target_id")
        else:
            doc["target_id"] = pseudonym(target_id, key)
            _note_top(masked, "target_id")
    constraints = doc.get("constraints")
    if not constraints:
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


def _note_top(paths: list[str] | None, name: str) -> None:
    if paths is not None:
        paths.append(f"/{name}")


# ------------------------------------------------------------------ log masks


@dataclass(frozen=True)
class LogMaskRule:
    """One mask rule of a decision-log record, as OPA's ``system.log.mask`` states them.

    Attributes:
        op: ``"remove"`` erases the value (its pointer goes to ``erased``);
            ``"upsert"`` sets it, creating missing objects on the way (its
            pointer goes to ``masked``).
        path: the JSON pointer (RFC 6901), under ``/input`` or ``/result``.
        parts: the pointer's unescaped reference tokens, ``("input", ...)``.
        value: what ``upsert`` sets (copied into each record).
    """

    op: Literal["remove", "upsert"]
    path: str
    parts: tuple[str, ...]
    value: Any = None


_MASK_ROOTS = ("input", "result")


def parse_log_mask(rules: Sequence[str | Mapping[str, Any]] | None) -> tuple[LogMaskRule, ...]:
    """Check ``log_mask`` rules and return them parsed.

    A rule is a JSON pointer string under ``/input`` or ``/result`` (erase the
    value), ``{"op": "remove", "path": ...}`` (the same) or ``{"op":
    "upsert", "path": ..., "value": ...}`` (set the value, a JSON value).

    >>> [r.op for r in parse_log_mask(["/input/target/manager",
    ...                                {"op": "upsert", "path": "/input/request/id", "value": "x"}])]
    ['remove', 'upsert']

    Raises:
        InvalidConfigError: naming each bad rule (``log_mask[2]: ...``).
    """
    if rules is None:
        return ()
    if isinstance(rules, str | bytes | Mapping) or not isinstance(rules, Sequence):
        raise InvalidConfigError([FieldError("log_mask", "must be a list of JSON pointers or mask rule objects")])
    parsed: list[LogMaskRule] = []
    problems: list[FieldError] = []
    for i, rule in enumerate(rules):
        name = f"log_mask[{i}]"
        try:
            parsed.append(_parse_mask_rule(rule))
        except ValueError as exc:
            problems.append(FieldError(name, str(exc)))
    if problems:
        raise InvalidConfigError(problems)
    return tuple(parsed)


def _parse_mask_rule(rule: Any) -> LogMaskRule:
    if isinstance(rule, str):
        return LogMaskRule("remove", rule, _pointer_parts(rule))
    if not isinstance(rule, Mapping):
        raise ValueError("must be a JSON pointer string or an object {op, path[, value]}")
    unknown = sorted(str(k) for k in rule if k not in ("op", "path", "value"))
    if unknown:
        raise ValueError(f"unknown keys {unknown}: a rule has op, path and (for upsert) value")
    op = rule.get("op", "remove")
    if op not in ("remove", "upsert"):
        raise ValueError(f"op must be 'remove' or 'upsert', not {op!r}")
    path = rule.get("path")
    if not isinstance(path, str):
        raise ValueError("path must be a JSON pointer string such as /input/target/manager")
    parts = _pointer_parts(path)
    if op == "remove":
        if "value" in rule:
            raise ValueError("a remove rule takes no value")
        return LogMaskRule("remove", path, parts)
    if "value" not in rule:
        raise ValueError("an upsert rule needs a value")
    try:
        json.dumps(rule["value"], allow_nan=False)
    except (TypeError, ValueError):
        raise ValueError("value must be JSON (str, number, bool, null, list, object)") from None
    return LogMaskRule("upsert", path, parts, copy.deepcopy(rule["value"]))


def _pointer_parts(path: str) -> tuple[str, ...]:
    if not path.startswith("/"):
        raise ValueError(f"{path!r} is not a JSON pointer: it must start with /input or /result")
    parts = []
    for raw in path[1:].split("/"):
        rest = raw.replace("~0", "").replace("~1", "")
        if "~" in rest:
            raise ValueError(f"{path!r}: '~' must be written ~0 and '/' inside a name ~1")
        parts.append(raw.replace("~1", "/").replace("~0", "~"))
    if parts[0] not in _MASK_ROOTS:
        raise ValueError(f"{path!r} is not under /input or /result: only those are masked")
    return tuple(parts)


def _pointer(parts: Sequence[str]) -> str:
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


def _index(container: list[Any], token: str) -> int | None:
    if not token.isdigit() or (len(token) > 1 and token[0] == "0"):
        return None
    i = int(token)
    return i if i < len(container) else None


def apply_log_mask(record: dict[str, Any], rules: Sequence[LogMaskRule]) -> None:
    """Apply mask rules to a decision-log record in place, in order, as OPA does.

    ``remove`` of a value that is not there does nothing (and is not listed);
    ``upsert`` creates missing objects on its way but never extends a list,
    and does nothing where the path crosses a value that is not an object or
    list. Applied pointers are appended to ``record["erased"]`` and
    ``record["masked"]``.
    """
    for rule in rules:
        root, rest = rule.parts[0], rule.parts[1:]
        if rule.op == "remove":
            if not rest:
                if root in record:
                    del record[root]
                    record["erased"].append(rule.path)
            elif root in record and _remove(record[root], rest):
                record["erased"].append(rule.path)
        else:
            value = copy.deepcopy(rule.value)
            if not rest:
                record[root] = value
                record["masked"].append(rule.path)
            elif root in record and _upsert(record[root], rest, value):
                record["masked"].append(rule.path)


def _remove(node: Any, parts: Sequence[str]) -> bool:
    for token in parts[:-1]:
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and (i := _index(node, token)) is not None:
            node = node[i]
        else:
            return False
    last = parts[-1]
    if isinstance(node, dict) and last in node:
        del node[last]
        return True
    if isinstance(node, list) and (i := _index(node, last)) is not None:
        del node[i]
        return True
    return False


def _upsert(node: Any, parts: Sequence[str], value: Any) -> bool:
    for token in parts[:-1]:
        if isinstance(node, dict):
            node = node.setdefault(token, {})  # a value that is no object or list stops it below
        elif isinstance(node, list) and (i := _index(node, token)) is not None:
            node = node[i]
        else:
            return False
    last = parts[-1]
    if isinstance(node, dict):
        node[last] = value
        return True
    if isinstance(node, list) and (i := _index(node, last)) is not None:
        node[i] = value
        return True
    return False


# Strings already found not to be credential-shaped: the reasons' sentences,
# refs and codes repeat in every record. Only those are kept (never a value
# that was masked); the memo is bounded and starts over when full, so the
# ids and digests unique to one record cost one scan each.
_CLEAN: dict[str, None] = {}
_CLEAN_MAX = 8192
_CLEAN_MAX_LEN = 2048


#: The words of a sentence, as a credential could stand among them (quoted, listed).
_WORDS = re.compile(r"[^\s'\"\[\](),;]+")
#: A quoted word: how a reason quotes an id ("the approver 'u-7'").
_QUOTED = re.compile(r"'([^'\s]+)'|\"([^\"\s]+)\"")
_DIGITS = re.compile(r"[0-9]+")


def _sentence_holds_credential(text: str) -> bool:
    # A bare number in a sentence is a count or an hour ("3 failed attempts"), not a
    # code; a quoted one is a value someone gave (an id), read like any other.
    if any(looks_like_credential(a or b) for a, b in _QUOTED.findall(text)):
        return True
    return any(not _DIGITS.fullmatch(w) and looks_like_credential(w) for w in _WORDS.findall(text))


def _is_credential(text: str) -> bool:
    if text in _CLEAN:
        return False
    if looks_like_credential(text):
        return True
    # A sentence quoting an id (a reason naming the approvers of record) is masked
    # whole when one of its words is credential-shaped: a code is a code anywhere.
    if " " in text and _sentence_holds_credential(text):
        return True
    if len(text) <= _CLEAN_MAX_LEN:
        if len(_CLEAN) >= _CLEAN_MAX:
            _CLEAN.clear()
        _CLEAN[text] = None
    return False


def mask_credentials(value: Any, pointer: str = "", masked: list[str] | None = None) -> Any:
    """``value`` with every credential-shaped string replaced by :data:`~helpdesk_policy.credentials.CREDENTIAL_MASK`.

    Dicts and lists are walked (and changed in place); each replaced string's
    JSON pointer, ``pointer`` + its path, is appended to ``masked``.

    >>> found = []
    >>> mask_credentials({"id": "INC-7", "note": ["password=hunter2"]}, "/input", found)
    {'id': 'INC-7', 'note': ['[masked:credential]']}
    >>> found
    ['/input/note/0']
    """
    if isinstance(value, str):
        if _is_credential(value):
            if masked is not None:
                masked.append(pointer)
            return CREDENTIAL_MASK
        return value
    _mask_in(value, (), pointer, masked)
    return value


def _mask_in(node: Any, path: tuple[str, ...], pointer: str, masked: list[str] | None) -> None:
    # The pointer is built only for a value masked (most records mask nothing).
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, item in items:
        if isinstance(item, str):
            if _is_credential(item):
                node[key] = CREDENTIAL_MASK
                if masked is not None:
                    masked.append(pointer + _pointer((*path, str(key))))
        elif isinstance(item, dict | list):
            _mask_in(item, (*path, str(key)), pointer, masked)
