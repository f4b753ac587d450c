"""Database engines for the store, and the sequencer lock that serialises appends.

SQLite runs in WAL mode with synchronous=FULL, so a committed append is on disk before the
commit returns; writers open their transaction with BEGIN IMMEDIATE, which takes SQLite's single
write lock up front. PostgreSQL writers take a transaction-scoped advisory lock. Either way one
writer at a time reads the tree size, appends, and issues the checkpoint.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from evidence.errors import ConfigError

WRITE = "annex_write"
_SEQUENCER_LOCK_ID = 0x616E6E6578  # "annex"
_BUSY_TIMEOUT_S = 120


def normalise_url(url: str) -> str:
    """Accepts plain `postgresql://` URLs and picks the psycopg 3 driver for them."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(url: str, *, read_only: bool = False) -> Engine:
    """An engine for the log; `read_only` on PostgreSQL runs each read in autocommit.

    A reader needs no transaction around its queries: entries, their subjects, tree nodes and
    the checkpoint over them are committed together and never change, so what one statement
    sees the next agrees with. Autocommit saves the BEGIN and ROLLBACK round trips of every
    read; a reader that needs one snapshot across many statements (verify) asks for it.
    """
    url = normalise_url(url)
    try:
        dialect = make_url(url).get_backend_name()
    except ArgumentError as exc:
        raise ConfigError(f"database URL {url!r} is not valid: {exc}") from exc
    if dialect == "sqlite":
        engine = create_engine(url, connect_args={"timeout": _BUSY_TIMEOUT_S})
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if dialect == "postgresql":
        if read_only:
            return create_engine(url, pool_pre_ping=True, isolation_level="AUTOCOMMIT")
        return create_engine(url, pool_pre_ping=True)
    raise ConfigError(f"database {dialect!r} is not supported: use sqlite or postgresql")


# SQLite's default 4 KiB pages. 16 KiB pages made batched appends to a 30,000-entry log cheaper
# (fewer WAL frames) but appends to a 1,000,000-entry log a quarter dearer (measured with the
# random-keyed indexes evidence/lookup.py has since replaced): where a batch touches a page per
# entry, each touched page is written whole (README, Performance).
_PAGE_BYTES = 4096
# What the WAL may hold before a commit copies it into the database file (SQLite's default is
# 1,000 pages). At the default every other batch of 1,000 paid for a checkpoint that wrote the
# same index pages again; 40 MiB made batched appends of a 50,000-entry log about a fifth
# cheaper (100 MiB was slower again). Durability is unchanged: the WAL is fsynced at every
# commit either way.
_WAL_CHECKPOINT_BYTES = 40 * 2**20


def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
    cursor = dbapi_conn.cursor()
    cursor.execute(f"PRAGMA page_size={_PAGE_BYTES}")  # takes effect only in a new database
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    (page_bytes,) = cursor.execute("PRAGMA page_size").fetchone()
    cursor.execute(f"PRAGMA wal_autocheckpoint={_WAL_CHECKPOINT_BYTES // page_bytes}")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    write = conn.get_execution_options().get(WRITE, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def take_sequencer_lock(conn: Connection) -> None:
    """Serialises writers; SQLite already holds its write lock from BEGIN IMMEDIATE."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _SEQUENCER_LOCK_ID})
