"""A facts provider over an inventory file: YAML, JSON or CSV exported from a directory or CMDB.

The file is read and validated whole when the provider is made (and on
:meth:`FileFactsProvider.reload`): a bad value anywhere is an
:class:`~helpdesk_policy.agents.errors.InvalidFactsError` naming every bad
cell as ``file:row:column``, so a broken export fails at start-up, not on
the one request that reads the broken row. Values are never quoted in
errors (an export can hold anything).

**YAML or JSON**: a list of identities, a mapping of identifier to facts, or
a mapping ``{"identities": [...]}``. Each identity holds the fields of
:class:`~helpdesk_policy.agents.facts.IdentityFacts`; ``row`` in an error is
the identity's place in the file (the first is 1).

.. code-block:: yaml

    - id: u-51876
      type: human
      status: active
      privileged: false
      privilege_tier: 0
      vip: false
      manager: u-20417
      contact_age_days: 512
    - id: svc-billing-export
      type: service_account
      status: active
      privileged: true
      privilege_tier: 2
      vip: false
      owners: [u-20417, u-33001]
      environment: production
      consumers: 14
      secret_age_days: 200
      in_secrets_manager: true

**CSV**: a header row naming facts (any order; ``id`` and ``type`` are
required), one identity per row. A list (``owners``, ``roles``,
``risk_signals``) is ``;``-separated; a boolean is ``true`` or ``false``
(any case); an empty cell is unknown (read at its riskiest by
:func:`~helpdesk_policy.agents.facts.build_request`). ``row`` in an error
is the spreadsheet row (the header is row 1)::

    id,type,status,privileged,privilege_tier,vip,owners,environment,secret_age_days
    u-51876,human,active,false,0,false,,,
    svc-billing-export,service_account,active,true,2,false,u-20417;u-33001,production,200

Identifiers are compared in canonical form
(:func:`~helpdesk_policy.models.canonical_identifier`): ``U-51876`` and
``u-51876`` are one identity, so listing both is an error, not a silent
"last one wins".
"""

from __future__ import annotations

import csv
import difflib
import io
import logging
import re
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..errors import DocumentError, FieldError, field_errors_from_pydantic
from ..loading import load_json, load_yaml, read_text
from .errors import FactsUnavailableError, InvalidFactsError
from .facts import IdentityFacts, _canonical_or_none

__all__ = ["FileFactsProvider", "FACT_COLUMNS", "LIST_SEPARATOR"]

log = logging.getLogger(__name__)

#: The columns (and keys) an inventory may have: the facts of an identity.
FACT_COLUMNS: tuple[str, ...] = tuple(IdentityFacts.model_fields)

#: What separates the items of a list in a CSV cell.
LIST_SEPARATOR = ";"

_LISTS = frozenset({"owners", "roles", "risk_signals"})
_BOOLS = frozenset({"privileged", "vip", "owner_active", "in_secrets_manager", "publisher_verified", "holds_secret",
                    "enrolled_factor_available"})
_INTS = frozenset({"privilege_tier", "contact_age_days", "consumers", "secret_age_days", "failed_verifications_24h"})
_FLOATS = frozenset({"recent_credential_change_hours"})
_REQUIRED_COLUMNS = ("id", "type")
# ASCII digits only: int() and float() also read "1_000", "٣" and "inf".
_INTEGER = re.compile(r"-?[0-9]+\Z")
_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?\Z")
_SUFFIXES = {".yaml": "yaml", ".yml": "yaml", ".json": "json", ".csv": "csv"}


class FileFactsProvider:
    """Facts of record from a YAML, JSON or CSV inventory file.

    Args:
        path: the inventory; its suffix (``.yaml``, ``.yml``, ``.json``,
            ``.csv``) says how to read it, unless ``format`` does.
        format: ``"yaml"``, ``"json"`` or ``"csv"``.

    Raises:
        InvalidFactsError: a bad value, a missing or unknown column, an
            identity listed twice: every problem, each as ``file:row:column``.
        FactsUnavailableError: the file cannot be read, or is not valid
            YAML, JSON or CSV.
        ValueError: an unknown ``format`` or suffix.

    >>> import tempfile, pathlib
    >>> inv = pathlib.Path(tempfile.mkdtemp()) / "inventory.csv"
    >>> _ = inv.write_text("id,type,status,privileged,privilege_tier,vip,owners\\n"
    ...                    "SVC-1,service_account,active,true,2,false,u-1;u-2\\n", encoding="utf-8")
    >>> FileFactsProvider(inv).identity("svc-1").owners
    ['u-1', 'u-2']
    """

    source = "file"

    def __init__(self, path: str | Path, *, format: str | None = None) -> None:
        self.path = Path(path)
        fmt = format if format is not None else _SUFFIXES.get(self.path.suffix.lower())
        if fmt not in ("yaml", "json", "csv"):
            raise ValueError("format must be 'yaml', 'json' or 'csv' (or the file's suffix one of "
                             f"{sorted(_SUFFIXES)})")
        self.format = fmt
        self._lock = threading.Lock()
        self._table: dict[str, IdentityFacts] = self._read()

    def identity(self, identifier: str) -> IdentityFacts | None:
        """The identity's facts, or ``None`` when the inventory does not list it."""
        key = _canonical_or_none(identifier)
        return None if key is None else self._table.get(key)

    async def aidentity(self, identifier: str) -> IdentityFacts | None:
        """:meth:`identity` (held in memory: no I/O, so no thread)."""
        return self.identity(identifier)

    def reload(self) -> int:
        """Read the file again; the new inventory replaces the old one only if it is valid.

        Returns:
            How many identities it lists.

        Raises:
            InvalidFactsError, FactsUnavailableError: as when made; the
                inventory in use is then kept.
        """
        table = self._read()
        with self._lock:
            self._table = table
        log.info("inventory reloaded: %d identities", len(table))
        return len(table)

    def __len__(self) -> int:
        return len(self._table)

    def __iter__(self) -> Iterator[IdentityFacts]:
        return iter(list(self._table.values()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, {len(self._table)} identities)"

    # ------------------------------------------------------------------ reading

    def _read(self) -> dict[str, IdentityFacts]:
        name = str(self.path)
        try:
            text = read_text(self.path)
            if self.format == "csv":
                entries, errors = _csv_entries(text, name)
            else:
                data = load_json(text, source=name) if self.format == "json" else load_yaml(text, source=name)
                entries, errors = _document_entries(data, name)
        except DocumentError as exc:
            raise FactsUnavailableError(str(exc), source=self.source) from None
        table: dict[str, IdentityFacts] = {}
        first_row: dict[str, int] = {}
        for row, entry in entries:
            try:
                facts = IdentityFacts.model_validate(entry)
            except ValidationError as exc:
                errors += [FieldError(f"{name}:{row}:{e.path}", e.message)
                           for e in field_errors_from_pydantic(exc, model=IdentityFacts)]
                continue
            if facts.id in table:
                errors.append(FieldError(f"{name}:{row}:id", f"lists the identity of row {first_row[facts.id]} again "
                                                             "(identifiers are compared in canonical form)"))
                continue
            table[facts.id] = facts
            first_row[facts.id] = row
        if errors:
            raise InvalidFactsError(errors)
        return table


def _document_entries(data: Any, name: str) -> tuple[list[tuple[int, Any]], list[FieldError]]:
    """(row, mapping) for each identity of a YAML/JSON inventory, and the shape's errors."""
    if isinstance(data, Mapping) and set(data) == {"identities"}:
        data = data["identities"]
    errors: list[FieldError] = []
    entries: list[tuple[int, Any]] = []
    if isinstance(data, list):
        for row, entry in enumerate(data, start=1):
            if not isinstance(entry, Mapping):
                errors.append(FieldError(f"{name}:{row}", "must be a mapping of facts"))
                continue
            entries.append((row, dict(entry)))
    elif isinstance(data, Mapping):
        for row, (key, entry) in enumerate(data.items(), start=1):
            if not isinstance(entry, Mapping):
                errors.append(FieldError(f"{name}:{row}", "must be a mapping of facts"))
                continue
            entry = dict(entry)
            if "id" in entry:
                if _canonical_or_none(entry["id"]) != _canonical_or_none(key):
                    errors.append(FieldError(f"{name}:{row}:id", "differs from the identity's key"))
                    continue
            entries.append((row, {"id": key, **entry}))
    else:
        errors.append(FieldError(name, "must hold a list of identities or a mapping of identifier to facts"))
    return entries, errors


def _csv_entries(text: str, name: str) -> tuple[list[tuple[int, Any]], list[FieldError]]:
    """(row, mapping) for each data row of a CSV inventory, and the cells' errors."""
    if text.startswith("\ufeff"):  # a spreadsheet's byte-order mark is not part of the first column's name
        text = text[1:]
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    except csv.Error as exc:
        raise DocumentError(name, f"not valid CSV: {exc}") from None
    if not rows:
        return [], [FieldError(f"{name}:1", "has no header row")]
    header = [h.strip() for h in rows[0]]
    errors: list[FieldError] = []
    for col in header:
        if col not in FACT_COLUMNS:
            close = difflib.get_close_matches(col, FACT_COLUMNS, n=1)
            hint = f" — did you mean {close[0]!r}?" if close else ""
            errors.append(FieldError(f"{name}:1:{col[:64]}", f"is not a fact{hint}"))
    for col in _REQUIRED_COLUMNS:
        if col not in header:
            errors.append(FieldError(f"{name}:1:{col}", "is a required column"))
    seen: set[str] = set()
    for col in header:
        if col in seen:
            errors.append(FieldError(f"{name}:1:{col[:64]}", "is a column twice"))
        seen.add(col)
    if errors:
        return [], errors
    entries: list[tuple[int, Any]] = []
    for row, cells in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in cells):
            continue  # a blank line
        if len(cells) != len(header):
            errors.append(FieldError(f"{name}:{row}", f"has {len(cells)} cells for {len(header)} columns"))
            continue
        entry: dict[str, Any] = {}
        for col, cell in zip(header, cells):
            try:
                value = _cell(col, cell)
            except ValueError as exc:
                errors.append(FieldError(f"{name}:{row}:{col}", str(exc)))
                continue
            if value is not None:
                entry[col] = value
        entries.append((row, entry))
    return entries, errors


def _cell(column: str, cell: str) -> Any:
    """A CSV cell as the fact's type; ``None`` for an empty (unknown) cell."""
    text = cell.strip()
    if column in _LISTS:
        return [item.strip() for item in text.split(LIST_SEPARATOR) if item.strip()]
    if not text:
        return None
    if column in _BOOLS:
        lowered = text.lower()
        if lowered not in ("true", "false"):
            raise ValueError("must be true or false")
        return lowered == "true"
    if column in _INTS:
        if not _INTEGER.match(text):
            raise ValueError("must be a whole number")
        return int(text, 10)
    if column in _FLOATS:
        if not _NUMBER.match(text):
            raise ValueError("must be a number")
        return float(text)
    return cell if column == "environment" else text
