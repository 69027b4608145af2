"""The ledger: one tamper-evident store for decisions, evidence, obligations and exceptions.

* :mod:`~helpdesk_policy.ledger.base`: :class:`Event`, the hash chain,
  :class:`LedgerStore` (the one store interface), :class:`ChainReport`;
* :mod:`~helpdesk_policy.ledger.sqlite`: the embedded default, one SQLite file in WAL mode;
* :mod:`~helpdesk_policy.ledger.postgres`: PostgreSQL through psycopg 3 (the ``postgres`` extra);
* :mod:`~helpdesk_policy.ledger.sink`: :class:`LedgerSink`, the decision log into the ledger;
* :mod:`~helpdesk_policy.ledger.logsinks`: :class:`JsonlSink` (rotating JSON-lines files),
  :class:`HttpBatchSink` (gzip batches to an OPA-compatible decision-log collector) and
  :class:`LoggingSink` (one :mod:`logging` call per record);
* :mod:`~helpdesk_policy.ledger.obligations`: :class:`ObligationTracker`, a decision's
  obligations as items ``open``, ``done`` or ``overdue``;
* :mod:`~helpdesk_policy.ledger.exceptions`: :class:`ExceptionRegistry`, policy exceptions
  granted, revoked and listed, and served to the facade from memory;
* :mod:`~helpdesk_policy.ledger.lifecycle`: :class:`TicketLifecycle`, a ticket's evidence
  checks and steps (closed, close refused, reopened, escalated);
* :mod:`~helpdesk_policy.ledger.report`: :class:`ComplianceReport` over the ledger or a
  JSON-lines decision log, as text or JSON; :mod:`~helpdesk_policy.ledger.report_html`
  renders it as one self-contained HTML page.

:func:`open_ledger` opens a store from a URL: ``sqlite:///path/to/ledger.db``
or ``postgresql://user@host/db`` (``?schema=name`` picks the tables' schema).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import LedgerError
from .base import GENESIS_HASH, BadEvent, ChainReport, Event, EventKind, LedgerStore, StoredEvent
from .obligations import ObligationError, ObligationItem, ObligationTracker
from .exceptions import ExceptionError, ExceptionItem, ExceptionRegistry
from .lifecycle import NotClosableError, TicketLifecycle
from .logsinks import HttpBatchSink, JsonlSink, LoggingSink
from .report import ComplianceReport, render_text, report_from_jsonl, report_from_ledger
from .report_html import render_html
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
    "LoggingSink",
    "ObligationError",
    "ObligationItem",
    "ObligationTracker",
    "ExceptionError",
    "ExceptionItem",
    "ExceptionRegistry",
    "NotClosableError",
    "TicketLifecycle",
    "ComplianceReport",
    "report_from_ledger",
    "report_from_jsonl",
    "render_text",
    "render_html",
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
