"""The log's tables (SQLModel) and the triggers that make them append-only.

Every table here is part of the log and refuses UPDATE and DELETE (and TRUNCATE on PostgreSQL).
The triggers stop mistakes and casual edits; the Merkle tree and the signed checkpoints make a
deliberate edit by someone who drops the triggers detectable by `annex verify`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Integer,
    LargeBinary,
    SmallInteger,
    Table,
    text,
)
from sqlalchemy.schema import CreateIndex
from sqlmodel import Field, SQLModel

# INTEGER PRIMARY KEY is SQLite's rowid; BIGINT elsewhere.
_BigKey = BigInteger().with_variant(Integer(), "sqlite")


class EntryRow(SQLModel, table=True):
    __tablename__ = "entries"

    idx: int = Field(sa_column=Column(_BigKey, primary_key=True, autoincrement=False))
    leaf_hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    envelope: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    keyid: str  # not indexed: nothing asks for entries by key
    predicate_type: str = Field(index=True)
    observed_at_us: int | None = Field(default=None, sa_column=Column(BigInteger, index=True))
    logged_at_us: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))


class SubjectRow(SQLModel, table=True):
    __tablename__ = "subjects"
    __table_args__ = {"sqlite_with_rowid": False}

    entry_idx: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    position: int = Field(primary_key=True)
    name: str = Field(index=True)
    algorithm: str
    digest: str


class NodeRow(SQLModel, table=True):
    """Hash of a complete subtree: leaves [idx * 2**level, (idx + 1) * 2**level)."""

    __tablename__ = "tree_nodes"
    __table_args__ = {"sqlite_with_rowid": False}  # the key is the only way in

    level: int = Field(primary_key=True)
    idx: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class CheckpointRow(SQLModel, table=True):
    __tablename__ = "checkpoints"

    size: int = Field(sa_column=Column(_BigKey, primary_key=True, autoincrement=False))
    root: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    note: str
    issued_at_us: int = Field(sa_column=Column(BigInteger, nullable=False))


class MetaRow(SQLModel, table=True):
    """Facts fixed when the log is created, such as its origin."""

    __tablename__ = "log_meta"

    key: str = Field(primary_key=True)
    value: str


def _table(model: type[SQLModel]) -> Table:
    table = model.__table__  # type: ignore[attr-defined]
    assert isinstance(table, Table)
    return table


entries = _table(EntryRow)
subjects = _table(SubjectRow)
nodes = _table(NodeRow)
checkpoints = _table(CheckpointRow)
meta = _table(MetaRow)
LOG_TABLES = (entries, subjects, nodes, checkpoints, meta)


class RecentLookupRow(SQLModel, table=True):
    """(kind, lookup_key, idx): entry `idx` holds a value of `kind` whose 64-bit key is
    `lookup_key`, for the newest entries; merged into `lookup` in key order every so many
    entries (evidence/lookup.py)."""

    __tablename__ = "lookup_recent"
    __table_args__ = {"sqlite_with_rowid": False}

    kind: int = Field(sa_column=Column(SmallInteger, primary_key=True, autoincrement=False))
    lookup_key: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    idx: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))


class LookupRow(SQLModel, table=True):
    """Keys of every entry but the newest (see RecentLookupRow)."""

    __tablename__ = "lookup"
    __table_args__ = {"sqlite_with_rowid": False}

    kind: int = Field(sa_column=Column(SmallInteger, primary_key=True, autoincrement=False))
    lookup_key: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    idx: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))


lookup_recent = _table(RecentLookupRow)
lookup_merged = _table(LookupRow)
# Derived from the log and rebuilt from it when missing; not append-only (the recent keys are
# moved), and not needed to verify anything.
DERIVED_TABLES = (lookup_recent, lookup_merged)
# Indexes that earlier versions kept on random keys, replaced by the lookup tables.
RETIRED_INDEXES = ("ix_entries_leaf_prefix", "ix_subjects_digest_prefix", "ix_subjects_digest")
# Indexes that earlier versions kept and no query used; each cost every append an insert.
UNUSED_INDEXES = ("ix_entries_keyid",)

_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION annex_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'annex: table % is append-only', TG_TABLE_NAME;
END
$$
"""


def trigger_statements(dialect: str) -> list[str]:
    """DDL that makes every log table refuse changes, for 'sqlite' or 'postgresql'."""
    out = []
    if dialect == "postgresql":
        out.append(_PG_FUNCTION)
    for table in LOG_TABLES:
        t = table.name
        if dialect == "sqlite":
            for op in ("UPDATE", "DELETE"):
                out.append(
                    f"CREATE TRIGGER IF NOT EXISTS {t}_no_{op.lower()} BEFORE {op} ON {t} "
                    f"BEGIN SELECT RAISE(ABORT, 'annex: table {t} is append-only'); END"
                )
        else:
            out.append(
                f"CREATE OR REPLACE TRIGGER {t}_append_only BEFORE UPDATE OR DELETE ON {t} "
                "FOR EACH ROW EXECUTE FUNCTION annex_append_only()"
            )
            out.append(
                f"CREATE OR REPLACE TRIGGER {t}_no_truncate BEFORE TRUNCATE ON {t} "
                "FOR EACH STATEMENT EXECUTE FUNCTION annex_append_only()"
            )
    return out


def param_mark(conn: Connection) -> str:
    """The driver's placeholder, for SQL written for the driver (sqlite3: ?, psycopg: %s)."""
    return "?" if conn.dialect.paramstyle == "qmark" else "%s"


def insert_rows(
    conn: Connection, table: Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> None:
    """Bulk insert straight through the driver: on large batches SQLAlchemy's per-row parameter
    processing cost more than the database itself."""
    assert set(columns) <= set(table.columns.keys())
    marks = ", ".join(param_mark(conn) for _ in columns)
    sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({marks})"
    conn.exec_driver_sql(sql, list(rows))


def create_schema(engine: Engine) -> None:
    SQLModel.metadata.create_all(engine, tables=[*LOG_TABLES, *DERIVED_TABLES])
    with engine.begin() as conn:
        for statement in trigger_statements(engine.dialect.name):
            conn.execute(text(statement))


def add_missing_indexes(engine: Engine) -> list[str]:
    """Creates the indexes that a log made by an earlier version lacks, and drops those it has
    that nothing uses; returns the names of those it created.

    Indexes are only ever added or dropped, never changed, so this is the whole migration of
    the log tables: a writer runs it when it opens the log. `IF [NOT] EXISTS` makes two
    writers opening an old log at once safe.
    """
    with engine.connect() as conn:
        have = index_names(conn)
    missing = [i for table in LOG_TABLES for i in table.indexes if i.name not in have]
    unused = [name for name in UNUSED_INDEXES if name in have]
    if missing or unused:
        with engine.begin() as conn:
            for index in missing:
                conn.execute(CreateIndex(index, if_not_exists=True))
            for name in unused:
                conn.execute(text(f"DROP INDEX IF EXISTS {name}"))
    return [str(index.name) for index in missing]


def index_names(conn: Connection) -> set[str]:
    """Every index name in the database, from the catalog (SQLAlchemy's reflection skips
    indexes on expressions in SQLite)."""
    if conn.dialect.name == "sqlite":
        sql = "SELECT name FROM sqlite_master WHERE type = 'index'"
    else:
        sql = "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
    return {row[0] for row in conn.execute(text(sql))}
