"""How the log is laid out for cheap appends, on SQLite and PostgreSQL: subjects found by digest
through the two-tier lookup (evidence/lookup.py), durable SQLite pragmas, and leaf hashes kept
once (in the entry, not as level-0 tree nodes) while logs that still hold such nodes keep
verifying."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select, text, update

from evidence import lookup
from evidence.errors import VerificationError
from evidence.home import Home
from evidence.store import Store, _subject_filter
from evidence.tables import entries, index_names, nodes
from evidence.verify import verify_log
from tests.conftest import statement


def batch(start: int, n: int) -> list[dict[str, Any]]:
    return [statement(i) for i in range(start, start + n)]


def test_subjects_are_found_by_digest_through_the_lookup(sqlite_home: Home) -> None:
    with sqlite_home.open_store(write=True) as store:
        store.append(batch(0, 50))
        query = _subject_filter("sha256:" + "ab" * 32, None).compile(store.engine)
        params = tuple(query.params[k] for k in query.positiontup or ())
        with store.engine.connect() as conn:
            plan = [str(r) for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {query}", params)]
    assert not any("SCAN subjects" in row for row in plan), plan
    for table in ("lookup", "lookup_recent"):
        assert any(f"SEARCH {table} USING PRIMARY KEY" in row for row in plan), plan


def _keys(store: Store, table: str) -> int:
    with store.engine.connect() as conn:
        count: int = conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
        return count


def test_recent_keys_move_to_the_large_table_in_batches(
    store: Store, home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keys (a leaf and a digest an entry) go to lookup_recent and move to lookup when a batch
    crosses a multiple of MERGE_EVERY; lookups find entries in either table."""
    monkeypatch.setattr(lookup, "MERGE_EVERY", 64)
    store.append(
        batch(0, 40)
    )  # entries 1..40 (0 is the first key event; every entry has one subject)
    assert (_keys(store, "lookup_recent"), _keys(store, "lookup")) == (2 * 41, 0)
    store.append(batch(40, 40))  # 41..80 crosses 64: everything moves
    assert (_keys(store, "lookup_recent"), _keys(store, "lookup")) == (0, 2 * 81)
    store.append(batch(80, 10))
    assert _keys(store, "lookup_recent") == 20
    for n, index in ((3, 4), (75, 76), (85, 86)):
        digest = statement(n)["subject"][0]["digest"]["sha256"]
        assert [e.index for e in store.query(subject_digest=f"sha256:{digest}")] == [index]
        assert store.query(subject_digest=f"sha256:{digest[:-4]}0000") == []
    assert verify_log(store, home.trust()).size == 91


def test_an_entry_naming_one_digest_twice_is_one_key(store: Store) -> None:
    twice = statement(1)
    twice["subject"].append({"name": "again", "digest": twice["subject"][0]["digest"]})
    index = store.append([twice]).first_index
    digest = twice["subject"][0]["digest"]["sha256"]
    assert [e.index for e in store.query(subject_digest=digest)] == [index]


def _pragma(store: Store, name: str) -> object:
    with store.engine.connect() as conn:
        return conn.exec_driver_sql(f"PRAGMA {name}").scalar()


def test_a_new_sqlite_log_is_durable(sqlite_home: Home) -> None:
    with sqlite_home.open_store(write=True) as store:
        assert _pragma(store, "journal_mode") == "wal"
        assert _pragma(store, "synchronous") == 2  # FULL: the WAL is fsynced at every commit
        assert _pragma(store, "page_size") == 4096
        assert _pragma(store, "wal_autocheckpoint") == 40 * 2**20 // 4096


def test_a_log_made_with_other_pages_keeps_them(tmp_path: Path) -> None:
    """A database made with another page size keeps it; the WAL limit follows it."""
    database = tmp_path / "other.db"
    with sqlite3.connect(database) as conn:
        conn.execute("PRAGMA page_size=16384")
        conn.execute("PRAGMA journal_mode=WAL")
    home = Home(tmp_path / "annex", f"sqlite:///{database}")
    home.init("other.example/log")
    with home.open_store(write=True) as store:
        store.append(batch(0, 20))
        assert _pragma(store, "page_size") == 16384
        assert _pragma(store, "wal_autocheckpoint") == 40 * 2**20 // 16384
        assert verify_log(store, home.trust()).size == 21


def test_leaf_hashes_are_kept_once(store: Store, home: Home) -> None:
    store.append(batch(0, 40))
    with store.engine.connect() as conn:
        levels = set(conn.execute(select(nodes.c.level)).scalars())
    assert 0 not in levels and levels == {1, 2, 3, 4, 5}
    for index in (0, 17, 40):
        proof = store.inclusion_proof(index)
        assert proof.index == index
    assert verify_log(store, home.trust()).size == 41


def test_a_log_holding_level_0_nodes_still_verifies_and_checks_them(
    store: Store, home: Home
) -> None:
    """Logs written before leaf hashes were kept once hold a level-0 node per entry: they
    verify, entries appended since have none, and a changed old node is still caught."""
    store.append(batch(0, 10))
    with store.engine.begin() as conn:
        leaves = conn.execute(select(entries.c.idx, entries.c.leaf_hash)).all()
        conn.execute(insert(nodes), [{"level": 0, "idx": i, "hash": h} for i, h in leaves])
    store.append(batch(10, 10))
    assert verify_log(store, home.trust()).size == 21
    assert store.inclusion_proof(5).index == 5
    with store.engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.execute(text("DROP TRIGGER tree_nodes_no_update"))
        else:
            conn.execute(text("DROP TRIGGER tree_nodes_append_only ON tree_nodes"))
        conn.execute(
            update(nodes).where(nodes.c.level == 0, nodes.c.idx == 7).values(hash=b"\0" * 32)
        )
    with pytest.raises(VerificationError, match="entry 7: its leaf hash differs") as failed:
        verify_log(store, home.trust())
    assert failed.value.index == 7


def test_an_index_nothing_uses_is_dropped_by_the_next_writer(home: Home) -> None:
    """Logs made before kept an index on the entries' key id, which no query reads and every
    append paid for: a new log has none, and a writer opening an old one drops it."""
    with home.open_store(write=True) as store:
        store.append(batch(0, 5))
        with store.engine.connect() as conn:
            assert "ix_entries_keyid" not in index_names(conn)
        with store.engine.begin() as conn:
            conn.execute(text("CREATE INDEX ix_entries_keyid ON entries (keyid)"))
    with home.open_store() as store, store.engine.connect() as conn:  # a reader leaves it
        assert "ix_entries_keyid" in index_names(conn)
    with home.open_store(write=True) as store:
        with store.engine.connect() as conn:
            assert "ix_entries_keyid" not in index_names(conn)
        store.append(batch(5, 5))
        assert verify_log(store, home.trust()).size == 11
