"""Finding entries by leaf hash or by subject digest, in two tiers that keep appends cheap.

An index on a hash is a random-keyed B-tree: once it outgrows the pages a batch touches, every
entry of a batch dirties a page of its own, and the database writes each dirty page whole at
commit. On a log of 10^6 entries the two such indexes (leaf hash, subject digest) cost a batch
of 1,000 some 40 µs an entry, twice what all the other writes cost. So keys go to a small table
first (`lookup_recent`), whose few pages stay hot, and every `MERGE_EVERY` entries move into
the large one (`lookup`) in key order, which touches each of its pages once for many keys.

Two kinds of key: the signed content of an entry (SHA-256 of the envelope's DSSE PAE, that is of
its payload type and payload, whatever signatures it carries: the replay guard's question is
"is this statement logged", not "are these bytes") and each subject digest. Logs written before
content keys held the envelope's leaf hash instead (`LEAF`); their next writer replaces those.
A key is 64 bits of the value (the content hash's first 8 bytes; of a digest, the first 8 bytes
of its SHA-256, so that any text maps evenly). Keys collide rarely, and every caller compares the
whole value afterwards, so a lookup gives candidates, never answers. The tables are derived:
`ensure` rebuilds them from the log when they are missing (a log made before them), and a
reader of such a log falls back to scanning. The gate and the reports find evidence through
them, so `annex verify` recomputes them from the entries and compares (evidence/verify.py):
a deleted row that would hide an entry from the gate fails verification.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, Engine, Select, delete, insert, inspect, select, text, union_all

from evidence.dsse import Envelope, content_hash
from evidence.engine import WRITE, take_sequencer_lock
from evidence.errors import InputError, VerificationError
from evidence.tables import (
    DERIVED_TABLES,
    RETIRED_INDEXES,
    entries,
    insert_rows,
    lookup_merged,
    lookup_recent,
    meta,
    subjects,
)

LEAF = 0  # the leaf hash: written by versions before content keys, replaced on open
DIGEST = 1
CONTENT = 2
CONTENT_META = "lookup_content"  # log_meta key: set once the log's lookup has content keys
MERGE_EVERY = 32768  # entries between merges; the recent table stays under ~2 MB
_FILL_CHUNK = 20000
COLUMNS = ("kind", "lookup_key", "idx")


def leaf_key(leaf: bytes) -> int:
    return int.from_bytes(leaf[:8], "big", signed=True)


def content_key(content: bytes) -> int:
    """The key of a content hash (evidence/dsse.py `content_hash`)."""
    return int.from_bytes(content[:8], "big", signed=True)


def digest_key(digest: str) -> int:
    return int.from_bytes(hashlib.sha256(digest.encode()).digest()[:8], "big", signed=True)


def entry_keys(
    index: int, content: bytes, digests: Iterable[str], out: list[tuple[int, int, int]]
) -> None:
    """Appends the lookup rows of one entry to `out`: its content key, one key per digest."""
    out.append((CONTENT, content_key(content), index))
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


def has_content_keys(conn: Connection) -> bool:
    """Whether the lookup holds content keys (a log whose lookup was built before them holds
    leaf hashes instead, until a writer opens it)."""
    found = conn.execute(select(meta.c.value).where(meta.c.key == CONTENT_META)).first()
    return found is not None


def ensure(engine: Engine) -> bool:
    """Builds the lookup tables of a log made before them, from its entries and subjects, and
    drops the random-keyed indexes they replace; gives a lookup built before content keys its
    content keys in place of leaf hashes. Returns whether it had to do anything.

    Under the sequencer lock, in one transaction: of two writers opening such a log at once,
    the second finds the work done. Holds the log's keys in memory once while it sorts them
    (some 100 bytes an entry).
    """
    with engine.connect() as conn:
        if present(conn) and has_content_keys(conn):
            return False
    with engine.connect().execution_options(**{WRITE: True}) as conn, conn.begin():
        take_sequencer_lock(conn)
        if not present(conn):
            lookup_merged.create(conn)
            lookup_recent.create(conn)
            rows = [
                (DIGEST, digest_key(digest), idx)
                for idx, digest in conn.execute(select(subjects.c.entry_idx, subjects.c.digest))
            ]
        elif has_content_keys(conn):
            return False
        else:
            rows = []
            for table in DERIVED_TABLES:
                conn.execute(delete(table).where(table.c.kind == LEAF))
        for idx, envelope in conn.execute(select(entries.c.idx, entries.c.envelope)):
            rows.append((CONTENT, content_key(stored_content(idx, bytes(envelope))), idx))
        rows = sorted(set(rows))  # a digest an entry names twice is one row
        for start in range(0, len(rows), _FILL_CHUNK):
            insert_rows(conn, lookup_merged, COLUMNS, rows[start : start + _FILL_CHUNK])
        if not has_content_keys(conn):  # a log made before the lookup may have it already
            conn.execute(insert(meta), {"key": CONTENT_META, "value": "1"})
        for name in RETIRED_INDEXES:
            conn.execute(text(f"DROP INDEX IF EXISTS {name}"))
    return True


def stored_content(index: int, envelope: bytes) -> bytes:
    """The content hash of a stored envelope; VerificationError when it cannot be read."""
    try:
        return content_hash(Envelope.from_json(envelope, what=f"entry {index} envelope"))
    except InputError as exc:
        raise VerificationError(f"entry {index}: {exc}", index=index) from None
