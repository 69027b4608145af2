"""The real PostgreSQL the ledger tests run against, shared by every ledger test module.

The DSN comes from ``HELPDESK_POLICY_TEST_PG_DSN`` (default: the machine's
server, ``postgresql://postgres@127.0.0.1:5432/test``). Tests skip, saying
why, only when psycopg is missing or no server answers.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from helpdesk_policy.ledger import LedgerStore, open_ledger

PG_DSN = os.environ.get("HELPDESK_POLICY_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")

_pg_reason: list[str | None] = []


def pg_unavailable() -> str | None:
    """Why PostgreSQL cannot be used here (None when it can); asked once."""
    if not _pg_reason:
        try:
            import psycopg
        except ImportError:
            _pg_reason.append("psycopg is not installed: pip install 'helpdesk-policy[postgres]'")
        else:
            try:
                psycopg.connect(PG_DSN, connect_timeout=3).close()
            except psycopg.Error as exc:
                _pg_reason.append(f"no PostgreSQL server answers at $HELPDESK_POLICY_TEST_PG_DSN ({exc})".splitlines()[0])
            else:
                _pg_reason.append(None)
    return _pg_reason[0]


@contextmanager
def postgres_schema(prefix: str) -> Iterator[tuple[str, str]]:
    """``(ledger URL, schema)`` in a fresh schema, dropped afterwards; skips the test without a server."""
    reason = pg_unavailable()
    if reason is not None:
        pytest.skip(reason)
    import psycopg

    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    sep = "&" if "?" in PG_DSN else "?"
    try:
        yield f"{PG_DSN}{sep}schema={schema}", schema
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh ledger URL on each backend (import it into a test module to use it)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
        return
    with postgres_schema(f"hp_{request.module.__name__.removeprefix('test_')[:20]}") as (pg_url, _schema):
        yield pg_url


@pytest.fixture
def store(url: str) -> Iterator[LedgerStore]:
    """The ledger at ``url``, closed after the test."""
    opened = open_ledger(url)
    yield opened
    opened.close()
