"""The ledger on PostgreSQL, for many integration workers on many hosts (psycopg 3).

Needs the ``postgres`` extra: ``pip install 'helpdesk-policy[postgres]'``.
Same tables and migrations as :mod:`~helpdesk_policy.ledger.sqlite`, in a
schema of their own choosing (``public`` by default). Appends to one chain
are serialised with ``pg_advisory_xact_lock(hashtext(schema:chain))``, held
until the transaction ends, and the chain's head is read under it; appends to
different chains run in parallel. A worker that dies mid-transaction leaves
nothing behind: the server rolls it back.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Collection, Iterator
from datetime import datetime, timezone
from typing import Any

from ..errors import LedgerError, LedgerUnavailableError
from .base import (
    GENESIS_HASH,
    SCAN_BATCH,
    ChainReport,
    Event,
    StoredEvent,
    canonical_json,
    check_schema_version,
    event_hash,
    format_timestamp,
    scan_kinds,
    stored_from_row,
    verify_chains,
)

__all__ = ["PostgresLedgerStore", "MIGRATIONS"]

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

#: Names the server-side cursors of concurrent scans apart.
_SCAN_IDS = itertools.count(1)

#: Versioned migrations ({schema} is the store's schema), applied in order on open.
MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (1, (
        """CREATE TABLE IF NOT EXISTS {schema}.ledger_events (
               chain TEXT NOT NULL,
               seq BIGINT NOT NULL,
               kind TEXT NOT NULL,
               ts TEXT NOT NULL,
               payload TEXT NOT NULL,
               prev_hash TEXT NOT NULL,
               hash TEXT NOT NULL,
               PRIMARY KEY (chain, seq)
           )""",
        """CREATE TABLE IF NOT EXISTS {schema}.ledger_heads (
               chain TEXT PRIMARY KEY,
               seq BIGINT NOT NULL,
               hash TEXT NOT NULL
           )""",
        "CREATE INDEX IF NOT EXISTS ledger_events_kind ON {schema}.ledger_events (kind, ts)",
    )),
)


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError as exc:
        raise LedgerUnavailableError(
            "the PostgreSQL ledger needs psycopg 3: pip install 'helpdesk-policy[postgres]'") from exc
    return psycopg


class PostgresLedgerStore:
    """A ledger in PostgreSQL.

    Args:
        dsn: a libpq connection string or ``postgresql://`` URL.
        schema: the schema holding the tables (created when missing); a
            lower-case identifier.
        connect_timeout: seconds to wait for the server.
    """

    def __init__(self, dsn: str, *, schema: str = "public", connect_timeout: float = 10.0) -> None:
        if not _IDENTIFIER.match(schema):
            raise LedgerError(f"schema must be a lower-case SQL identifier, not {schema!r}")
        self._psycopg = _psycopg()
        self.dsn = dsn
        self.schema = schema
        self._connect_timeout = connect_timeout
        self._local = threading.local()
        self._connections: list[Any] = []
        self._lock = threading.Lock()
        self._closed = False
        self._migrate()

    def __repr__(self) -> str:
        return f"PostgresLedgerStore(schema={self.schema!r})"

    def _sql(self, text: str) -> str:
        return text.replace("{schema}", f'"{self.schema}"')

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is not None and not conn.closed:
            return conn
        if self._closed:
            raise LedgerError(f"{self!r} is closed")
        try:
            conn = self._psycopg.connect(self.dsn, connect_timeout=max(1, int(self._connect_timeout)))
        except self._psycopg.Error as exc:
            raise LedgerUnavailableError(f"cannot connect to the PostgreSQL ledger: {_first_line(exc)}") from exc
        self._local.conn = conn
        with self._lock:
            self._connections.append(conn)
        return conn

    def _migrate(self) -> None:
        conn = self._conn()
        try:
            with conn.transaction():
                # One migrator at a time, across processes and hosts.
                conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"helpdesk_policy.ledger.migrate:{self.schema}",))
                conn.execute(self._sql("CREATE SCHEMA IF NOT EXISTS {schema}"))
                conn.execute(self._sql("CREATE TABLE IF NOT EXISTS {schema}.schema_version "
                                       "(version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"))
                current = conn.execute(self._sql("SELECT COALESCE(MAX(version), 0) FROM {schema}.schema_version")).fetchone()[0]
                check_schema_version(current, MIGRATIONS[-1][0])
                for version, statements in MIGRATIONS:
                    if version <= current:
                        continue
                    for statement in statements:
                        conn.execute(self._sql(statement))
                    conn.execute(self._sql("INSERT INTO {schema}.schema_version (version, applied_at) VALUES (%s, %s)"),
                                 (version, format_timestamp(datetime.now(timezone.utc))))
        except self._psycopg.Error as exc:
            raise LedgerError(f"cannot migrate the PostgreSQL ledger: {_first_line(exc)}") from exc

    def schema_version(self) -> int:
        conn = self._conn()
        with conn.transaction():
            return int(conn.execute(self._sql("SELECT COALESCE(MAX(version), 0) FROM {schema}.schema_version")).fetchone()[0])

    # ------------------------------------------------------------------ writing

    def append(self, event: Event) -> StoredEvent:
        conn = self._conn()
        timestamp = format_timestamp(event.timestamp)
        payload = canonical_json(event.payload)
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{self.schema}:{event.chain}",))
                head = conn.execute(self._sql("SELECT seq, hash FROM {schema}.ledger_heads WHERE chain = %s"),
                                    (event.chain,)).fetchone()
                seq, prev_hash = (head[0] + 1, head[1]) if head else (1, GENESIS_HASH)
                digest = event_hash(chain=event.chain, seq=seq, kind=event.kind, timestamp=timestamp,
                                    payload=event.payload, prev_hash=prev_hash)
                conn.execute(self._sql(
                    "INSERT INTO {schema}.ledger_events (chain, seq, kind, ts, payload, prev_hash, hash) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s)"),
                    (event.chain, seq, event.kind, timestamp, payload, prev_hash, digest))
                self._write_head(conn, event.chain, seq, digest)
        except self._psycopg.OperationalError as exc:
            raise LedgerUnavailableError(f"cannot append to the PostgreSQL ledger: {_first_line(exc)}") from exc
        except self._psycopg.Error as exc:
            raise LedgerError(f"cannot append to the PostgreSQL ledger: {_first_line(exc)}") from exc
        return StoredEvent(chain=event.chain, seq=seq, kind=event.kind, timestamp=timestamp,
                           payload=dict(event.payload), prev_hash=prev_hash, hash=digest)

    def _write_head(self, conn: Any, chain: str, seq: int, digest: str) -> None:
        conn.execute(self._sql("INSERT INTO {schema}.ledger_heads (chain, seq, hash) VALUES (%s, %s, %s) "
                               "ON CONFLICT (chain) DO UPDATE SET seq = EXCLUDED.seq, hash = EXCLUDED.hash"),
                     (chain, seq, digest))

    # ------------------------------------------------------------------ reading

    def events(self, chain: str) -> Iterator[StoredEvent]:
        conn = self._conn()
        with conn.transaction():
            rows = conn.execute(self._sql(
                "SELECT chain, seq, kind, ts, payload, prev_hash, hash FROM {schema}.ledger_events "
                "WHERE chain = %s ORDER BY seq"), (chain,)).fetchall()
        for row in rows:
            yield stored_from_row(*row)

    def scan(self, kinds: Collection[str] | None = None) -> Iterator[StoredEvent]:
        """Every event (of ``kinds`` only, when given) by (chain, seq), streamed.

        A server-side (named) cursor on a connection of its own, fetching
        :data:`SCAN_BATCH` rows per round trip: the server keeps the result,
        this process holds one batch at a time, and the thread's own
        connection stays free for appends meanwhile.
        """
        wanted = scan_kinds(kinds)
        if wanted == ():
            return
        if self._closed:
            raise LedgerError(f"{self!r} is closed")
        psycopg = self._psycopg
        sql = "SELECT chain, seq, kind, ts, payload, prev_hash, hash FROM {schema}.ledger_events"
        params: tuple[str, ...] = ()
        if wanted is not None:
            sql += " WHERE kind = ANY(%s)"
            params = (list(wanted),)  # type: ignore[assignment]
        sql += " ORDER BY chain, seq"
        try:
            conn = psycopg.connect(self.dsn, connect_timeout=max(1, int(self._connect_timeout)))
        except psycopg.Error as exc:
            raise LedgerUnavailableError(f"cannot connect to the PostgreSQL ledger: {_first_line(exc)}") from exc
        try:
            try:
                with conn.transaction():
                    # One snapshot for the whole scan, writers going on meanwhile.
                    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    with conn.cursor(name=f"helpdesk_policy_scan_{next(_SCAN_IDS)}") as cursor:
                        cursor.itersize = SCAN_BATCH
                        cursor.execute(self._sql(sql), params or None)
                        for row in cursor:
                            yield stored_from_row(*row)
            except psycopg.OperationalError as exc:
                raise LedgerUnavailableError(f"cannot read the PostgreSQL ledger: {_first_line(exc)}") from exc
            except psycopg.Error as exc:
                raise LedgerError(f"cannot read the PostgreSQL ledger: {_first_line(exc)}") from exc
        finally:
            conn.close()

    def chains(self) -> list[str]:
        conn = self._conn()
        with conn.transaction():
            rows = conn.execute(self._sql(
                "SELECT chain FROM {schema}.ledger_events UNION SELECT chain FROM {schema}.ledger_heads ORDER BY 1")).fetchall()
        return [r[0] for r in rows]

    def verify(self, chain: str | None = None) -> ChainReport:
        conn = self._conn()
        with conn.transaction():
            # One snapshot for heads and events while writers go on.
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            heads = {r[0]: (r[1], r[2]) for r in conn.execute(self._sql("SELECT chain, seq, hash FROM {schema}.ledger_heads"))}
            chains = [chain] if chain is not None else self.chains()
            return verify_chains(self, chains, heads)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for conn in connections:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - closing what is already gone  # pragma: no cover
                pass
        self._local = threading.local()

    def __enter__(self) -> PostgresLedgerStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
