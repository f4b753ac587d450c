"""Finding entries by leaf hash or by subject digest, in two tiers that keep appends cheap.

An index on a hash is a random-keyed B-tree: once it outgrows the pages a batch touches, every
entry of a batch dirties a page of its own, and the database writes each dirty page whole at
commit. On a log of 10^6 entries the two such indexes (leaf hash, subject digest) cost a batch
of 1,000 some 40 µs an entry, twice what all the other writes cost. So keys go to a small table
first (`lookup_recent`), whose few pages stay hot, and every `MERGE_EVERY` entries move into
the large one (`lookup`) in key order, which touches each of its pages once for many keys.

A key is 64 bits of the value (the leaf hash's first 8 bytes; of a digest, the first 8 bytes of
its SHA-256, so that any text maps evenly). Keys collide rarely, and every caller compares the
whole value afterwards, so a lookup gives candidates, never answers. The tables are derived:
`ensure` rebuilds them from the log when they are missing (a log made before them), and a
reader of such a log falls back to scanning. Nothing here is needed to verify the log.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, Engine, Select, delete, insert, inspect, select, text, union_all

from evidence.engine import WRITE, take_sequencer_lock
from evidence.tables import (
    DERIVED_TABLES,
    RETIRED_INDEXES,
    entries,
    insert_rows,
    lookup_merged,
    lookup_recent,
    subjects,
)

LEAF = 0
DIGEST = 1
MERGE_EVERY = 32768  # entries between merges; the recent table stays under ~2 MB
_FILL_CHUNK = 20000
COLUMNS = ("kind", "lookup_key", "idx")


def leaf_key(leaf: bytes) -> int:
    return int.from_bytes(leaf[:8], "big", signed=True)


def digest_key(digest: str) -> int:
    return int.from_bytes(hashlib.sha256(digest.encode()).digest()[:8], "big", signed=True)


def entry_keys(
    index: int, leaf: bytes, digests: Iterable[str], out: list[tuple[int, int, int]]
) -> None:
    """Appends the lookup rows of one entry to `out`."""
    out.append((LEAF, leaf_key(leaf), index))
    out.extend((DIGEST, key, index) for key in {digest_key(d) for d in digests})


def merge_if_due(conn: Connection, start: int, end: int) -> None:
    """After entries [start, end) were added: moves the recent keys into the large table when
    the batch crossed a multiple of MERGE_EVERY. Runs inside the append's transaction."""
    if start // MERGE_EVERY == end // MERGE_EVERY:
        return
    columns = [lookup_recent.c[name] for name in COLUMNS]
    conn.execute(
        insert(lookup_merged).from_select(list(COLUMNS), select(*columns).order_by(*columns))
    )
    conn.execute(delete(lookup_recent))


def candidates_sql(kind: int, count: int, mark: str) -> str:
    """SQL for the entry indices that may hold one of `count` keys of `kind` (both tiers);
    its parameters are the keys, twice."""
    marks = ", ".join([mark] * count)
    return " UNION ALL ".join(
        f"SELECT idx FROM {table.name} WHERE kind = {kind} AND lookup_key IN ({marks})"
        for table in (lookup_merged, lookup_recent)
    )


def digest_candidates(digest: str) -> Select[Any]:
    """The entry indices that may have a subject with this digest (both tiers)."""
    key = digest_key(digest)
    parts = [
        select(table.c.idx).where(table.c.kind == DIGEST, table.c.lookup_key == key)
        for table in (lookup_merged, lookup_recent)
    ]
    return select(union_all(*parts).subquery().c.idx)


def present(conn: Connection) -> bool:
    """Whether the log has its lookup tables (a log made before them has not, until a writer
    opens it)."""
    found = inspect(conn)
    return all(found.has_table(t.name) for t in DERIVED_TABLES)


def ensure(engine: Engine) -> bool:
    """Builds the lookup tables of a log made before them, from its entries and subjects, and
    drops the random-keyed indexes they replace; returns whether it had to.

    Under the sequencer lock, in one transaction: of two writers opening such a log at once,
    the second finds the tables made. Holds the log's keys in memory once while it sorts them
    (some 100 bytes an entry).
    """
    with engine.connect() as conn:
        if present(conn):
            return False
    with engine.connect().execution_options(**{WRITE: True}) as conn, conn.begin():
        take_sequencer_lock(conn)
        if present(conn):
            return False
        lookup_merged.create(conn)
        lookup_recent.create(conn)
        rows: list[tuple[int, int, int]] = []
        for idx, leaf in conn.execute(select(entries.c.idx, entries.c.leaf_hash)):
            rows.append((LEAF, leaf_key(bytes(leaf)), idx))
        for idx, digest in conn.execute(select(subjects.c.entry_idx, subjects.c.digest)):
            rows.append((DIGEST, digest_key(digest), idx))
        rows = sorted(set(rows))  # a digest an entry names twice is one row
        for start in range(0, len(rows), _FILL_CHUNK):
            insert_rows(conn, lookup_merged, COLUMNS, rows[start : start + _FILL_CHUNK])
        for name in RETIRED_INDEXES:
            conn.execute(text(f"DROP INDEX IF EXISTS {name}"))
    return True
