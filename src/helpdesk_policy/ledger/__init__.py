"""The ledger: one tamper-evident store for decisions, evidence, obligations and exceptions.

* :mod:`~helpdesk_policy.ledger.base`: :class:`Event`, the hash chain,
  :class:`LedgerStore` (the one store interface), :class:`ChainReport`;
* :mod:`~helpdesk_policy.ledger.sqlite`: the embedded default, one SQLite file in WAL mode;
* :mod:`~helpdesk_policy.ledger.postgres`: PostgreSQL through psycopg 3 (the ``postgres`` extra);
* :mod:`~helpdesk_policy.ledger.sink`: :class:`LedgerSink`, the decision log into the ledger;
* :mod:`~helpdesk_policy.ledger.logsinks`: :class:`JsonlSink` (rotating JSON-lines files) and
  :class:`HttpBatchSink` (gzip batches to an OPA-compatible decision-log collector);
* :mod:`~helpdesk_policy.ledger.obligations`: :class:`ObligationTracker`, a decision's
  obligations as items ``open``, ``done`` or ``overdue``.

:func:`open_ledger` opens a store from a URL: ``sqlite:///path/to/ledger.db``
or ``postgresql://user@host/db`` (``?schema=name`` picks the tables' schema).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import LedgerError
from .base import GENESIS_HASH, BadEvent, ChainReport, Event, EventKind, LedgerStore, StoredEvent
from .obligations import ObligationError, ObligationItem, ObligationTracker
from .logsinks import HttpBatchSink, JsonlSink
from .sink import LedgerSink

__all__ = [
    "GENESIS_HASH",
    "BadEvent",
    "ChainReport",
    "Event",
    "EventKind",
    "LedgerStore",
    "StoredEvent",
    "LedgerSink",
    "HttpBatchSink",
    "JsonlSink",
    "ObligationError",
    "ObligationItem",
    "ObligationTracker",
    "open_ledger",
]


def open_ledger(url: str, **options: Any) -> LedgerStore:
    """A store for ``sqlite:///path.db`` (``sqlite:////abs/path.db`` too) or ``postgresql://…``."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        from .sqlite import SQLiteLedgerStore

        path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else ""
        if not path:
            raise LedgerError(f"a SQLite ledger URL reads sqlite:///path/to/ledger.db, not {url!r}")
        return SQLiteLedgerStore(path, **options)
    if parts.scheme in ("postgresql", "postgres"):
        from .postgres import PostgresLedgerStore

        query = parse_qsl(parts.query, keep_blank_values=True)
        schema = [v for k, v in query if k == "schema"]
        rest = urlunsplit(parts._replace(query=urlencode([(k, v) for k, v in query if k != "schema"])))
        if schema:
            options.setdefault("schema", schema[-1])
        return PostgresLedgerStore(rest, **options)
    raise LedgerError(f"unknown ledger URL scheme {parts.scheme!r}: use sqlite:///path.db or postgresql://…")
