"""The embedded ledger: one SQLite file in WAL mode, from the standard library.

Appends are serialised with ``BEGIN IMMEDIATE``: the chain's head is read
inside the write transaction, so threads and processes appending to the same
file at once never fork a chain or lose an event. A process that dies inside
the transaction leaves nothing behind (SQLite rolls it back).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Collection, Iterator
from datetime import datetime, timezone
from pathlib import Path

from ..errors import LedgerError
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

__all__ = ["SQLiteLedgerStore", "MIGRATIONS"]

#: Versioned migrations, applied in order on open; ``schema_version`` records each.
MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (1, (
        """CREATE TABLE IF NOT EXISTS ledger_events (
               chain TEXT NOT NULL,
               seq INTEGER NOT NULL,
               kind TEXT NOT NULL,
               ts TEXT NOT NULL,
               payload TEXT NOT NULL,
               prev_hash TEXT NOT NULL,
               hash TEXT NOT NULL,
               PRIMARY KEY (chain, seq)
           )""",
        """CREATE TABLE IF NOT EXISTS ledger_heads (
               chain TEXT PRIMARY KEY,
               seq INTEGER NOT NULL,
               hash TEXT NOT NULL
           )""",
        "CREATE INDEX IF NOT EXISTS ledger_events_kind ON ledger_events (kind, ts)",
    )),
)


class SQLiteLedgerStore:
    """A ledger in one SQLite file.

    Args:
        path: the database file (created with its directory's permissions).
        timeout: seconds an append waits for another writer's lock.
        synchronous: SQLite's ``synchronous`` pragma: ``"FULL"`` (default)
            survives power loss; ``"NORMAL"`` survives a crashed process and
            is faster.
    """

    def __init__(self, path: str | Path, *, timeout: float = 30.0, synchronous: str = "FULL") -> None:
        if synchronous.upper() not in ("FULL", "NORMAL", "EXTRA"):
            raise LedgerError(f"synchronous must be FULL, NORMAL or EXTRA, not {synchronous!r}")
        self.path = Path(path)
        self._timeout = timeout
        self._synchronous = synchronous.upper()
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        # This process's writers queue here, in order, rather than polling
        # SQLite's busy handler (whose backoff starves some of them for
        # seconds); other processes still meet at BEGIN IMMEDIATE.
        self._write_lock = threading.Lock()
        self._closed = False
        self._migrate()

    def __repr__(self) -> str:
        return f"SQLiteLedgerStore({str(self.path)!r})"

    # -------------------------------------------------------------- connections

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        if self._closed:
            raise LedgerError(f"{self!r} is closed")
        try:
            # Autocommit mode: transactions are opened explicitly (BEGIN IMMEDIATE).
            conn = sqlite3.connect(str(self.path), timeout=self._timeout, isolation_level=None,
                                   check_same_thread=False)
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise LedgerError(f"{self.path}: cannot switch to WAL mode (got {mode!r})")
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot open the ledger {self.path}: {exc}") from exc
        self._local.conn = conn
        with self._lock:
            self._connections.append(conn)
        return conn

    def _migrate(self) -> None:
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
                current = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]
                check_schema_version(current, MIGRATIONS[-1][0])
                for version, statements in MIGRATIONS:
                    if version <= current:
                        continue
                    for statement in statements:
                        conn.execute(statement)
                    conn.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                                 (version, format_timestamp(datetime.now(timezone.utc))))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot migrate the ledger {self.path}: {exc}") from exc

    def schema_version(self) -> int:
        return int(self._conn().execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0])

    # ------------------------------------------------------------------ writing

    def append(self, event: Event) -> StoredEvent:
        conn = self._conn()
        timestamp = format_timestamp(event.timestamp)
        payload = canonical_json(event.payload)
        try:
            with self._write_lock:
                stored = self._append(conn, event, timestamp, payload)
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot append to the ledger {self.path}: {exc}") from exc
        return stored

    def _append(self, conn: sqlite3.Connection, event: Event, timestamp: str, payload: str) -> StoredEvent:
        conn.execute("BEGIN IMMEDIATE")
        try:
            head = conn.execute("SELECT seq, hash FROM ledger_heads WHERE chain = ?", (event.chain,)).fetchone()
            seq, prev_hash = (head[0] + 1, head[1]) if head else (1, GENESIS_HASH)
            digest = event_hash(chain=event.chain, seq=seq, kind=event.kind, timestamp=timestamp,
                                payload=event.payload, prev_hash=prev_hash)
            conn.execute(
                "INSERT INTO ledger_events (chain, seq, kind, ts, payload, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (event.chain, seq, event.kind, timestamp, payload, prev_hash, digest))
            self._write_head(conn, event.chain, seq, digest)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return StoredEvent(chain=event.chain, seq=seq, kind=event.kind, timestamp=timestamp,
                           payload=dict(event.payload), prev_hash=prev_hash, hash=digest)

    def _write_head(self, conn: sqlite3.Connection, chain: str, seq: int, digest: str) -> None:
        conn.execute("INSERT INTO ledger_heads (chain, seq, hash) VALUES (?, ?, ?) "
                     "ON CONFLICT (chain) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
                     (chain, seq, digest))

    # ------------------------------------------------------------------ reading

    def events(self, chain: str) -> Iterator[StoredEvent]:
        cursor = self._conn().execute(
            "SELECT chain, seq, kind, ts, payload, prev_hash, hash FROM ledger_events WHERE chain = ? ORDER BY seq",
            (chain,))
        for row in cursor:
            yield stored_from_row(*row)

    def scan(self, kinds: Collection[str] | None = None) -> Iterator[StoredEvent]:
        """Every event (of ``kinds`` only, when given) by (chain, seq), fetched :data:`SCAN_BATCH` rows at a time.

        The scan reads on a connection of its own, in one read transaction:
        one consistent snapshot while writers go on, and this thread's own
        appends are not held up by the open cursor.
        """
        wanted = scan_kinds(kinds)
        if wanted == ():
            return
        if self._closed:
            raise LedgerError(f"{self!r} is closed")
        sql = "SELECT chain, seq, kind, ts, payload, prev_hash, hash FROM ledger_events"
        if wanted is not None:
            sql += f" WHERE kind IN ({', '.join('?' * len(wanted))})"
        sql += " ORDER BY chain, seq"
        try:
            conn = sqlite3.connect(str(self.path), timeout=self._timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot open the ledger {self.path}: {exc}") from exc
        try:
            try:
                conn.execute("BEGIN")
                cursor = conn.execute(sql, wanted or ())
                while True:
                    rows = cursor.fetchmany(SCAN_BATCH)
                    if not rows:
                        break
                    for row in rows:
                        yield stored_from_row(*row)
            except sqlite3.Error as exc:
                raise LedgerError(f"cannot read the ledger {self.path}: {exc}") from exc
        finally:
            conn.close()

    def chains(self) -> list[str]:
        rows = self._conn().execute(
            "SELECT chain FROM ledger_events UNION SELECT chain FROM ledger_heads ORDER BY 1").fetchall()
        return [r[0] for r in rows]

    def verify(self, chain: str | None = None) -> ChainReport:
        conn = self._conn()
        # One read transaction: a consistent snapshot while writers go on.
        conn.execute("BEGIN")
        try:
            heads = {r[0]: (r[1], r[2]) for r in conn.execute("SELECT chain, seq, hash FROM ledger_heads")}
            chains = [chain] if chain is not None else self.chains()
            return verify_chains(self, chains, heads)
        finally:
            conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for conn in connections:
            try:
                conn.close()
            except sqlite3.Error:  # pragma: no cover - closing what is already gone
                pass
        self._local = threading.local()

    def __enter__(self) -> SQLiteLedgerStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
