"""Replays, on SQLite and on PostgreSQL: an envelope the log already holds is refused inside the
sequencer with the index that holds it, the whole batch with it, and nothing is appended; the
lookup searches primary keys, and a log made before the lookup tables gets them when opened to
write."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import inspect, text

from evidence import lookup
from evidence.canonical import canonical_bytes
from evidence.dsse import IN_TOTO_PAYLOAD_TYPE, Envelope, Signature, sign_envelope
from evidence.errors import DuplicateEntry, InputError, StoreError, TrustError
from evidence.home import Home
from evidence.keys import Signer
from evidence.store import Store, prepare_envelopes
from evidence.tables import index_names
from evidence.verify import verify_log
from tests.conftest import COLLECTOR_KINDS, statement

OLD_LEAF_INDEX = "ix_entries_leaf_prefix"  # what logs made before evidence/lookup.py have


@pytest.fixture
def node(home: Home) -> Signer:
    signer = Signer.generate("gpu-node-1")
    home.add_collector_key(signer.name, signer.public_bytes, COLLECTOR_KINDS)
    return signer


def envelope(signer: Signer, n: int) -> Envelope:
    return sign_envelope(canonical_bytes(statement(n, kind="gpu")), signer)


def test_a_replayed_envelope_is_refused_with_its_index(
    store: Store, home: Home, node: Signer
) -> None:
    first = store.append_envelopes([envelope(node, 1)]).first_index
    store.append_envelopes([envelope(node, 2)])
    size = store.size()
    with pytest.raises(DuplicateEntry) as refused:
        store.append_envelopes([envelope(node, 1)])
    assert refused.value.index == first
    assert f"envelope 1 is already in the log at entry {first}" in str(refused.value)
    assert isinstance(refused.value, StoreError) and refused.value.exit_code == 2
    assert store.size() == size and store.checkpoint().size == size
    verify_log(store, home.trust())


def test_one_replay_refuses_the_whole_batch(store: Store, node: Signer) -> None:
    logged = store.append_envelopes([envelope(node, 1)]).first_index
    size = store.size()
    batch = [envelope(node, 2), envelope(node, 1), envelope(node, 3)]
    with pytest.raises(DuplicateEntry, match=f"line 2 is already in the log at entry {logged}"):
        store.append_envelopes(batch, labels=["line 1", "line 2", "line 3"])
    assert store.size() == size
    assert list(store.append_envelopes([batch[0], batch[2]]).indices) == [size, size + 1]


def test_a_batch_holding_one_envelope_twice_is_refused(store: Store, node: Signer) -> None:
    size = store.size()
    same = envelope(node, 1)
    with pytest.raises(InputError, match="envelope 3 repeats the signed statement of envelope 1"):
        store.append_envelopes([same, envelope(node, 2), same])
    assert store.size() == size


def test_the_log_may_sign_the_same_statement_twice(store: Store) -> None:
    """Statements the log signs itself are observations, not replays: Ed25519 is deterministic,
    so the same statement signed twice is the same envelope, and both are logged."""
    one = store.append([statement(1)])
    two = store.append([statement(1)])
    assert one.leaf_hashes == two.leaf_hashes and two.first_index == one.first_index + 1


def test_simultaneous_replays_land_once(home: Home, node: Signer) -> None:
    """Four writers, each with its own engine, append one envelope at the same instant."""
    same = envelope(node, 1)
    stores = [home.open_store(write=True) for _ in range(4)]
    start = threading.Barrier(len(stores))
    outcomes: list[int | DuplicateEntry] = []

    def push(store: Store) -> None:
        start.wait(timeout=30)
        try:
            outcomes.append(store.append_envelopes([same]).first_index)
        except DuplicateEntry as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=push, args=(s,)) for s in stores]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    finally:
        for s in stores:
            s.close()
    landed = [o for o in outcomes if isinstance(o, int)]
    refused = [o for o in outcomes if isinstance(o, DuplicateEntry)]
    assert len(landed) == 1 and len(refused) == 3
    assert {r.index for r in refused} == set(landed)
    with home.open_store() as store:
        assert store.size() == landed[0] + 1


def test_the_lookup_searches_primary_keys(sqlite_home: Home) -> None:
    """The store's lookup (evidence/store.py `_refuse_logged`) searches the two lookup tiers and
    the entries by primary key: no scan, however long the log."""
    candidates = lookup.candidates_sql(lookup.LEAF, 2, "?")
    query = f"EXPLAIN QUERY PLAN SELECT leaf_hash, idx FROM entries WHERE idx IN ({candidates})"
    with sqlite_home.open_store() as store, store.engine.connect() as conn:
        plan = [str(row) for row in conn.exec_driver_sql(query, (1, 2, 1, 2)).all()]
    assert not any("SCAN" in row for row in plan), plan
    for table in ("lookup", "lookup_recent"):
        assert any(f"SEARCH {table} USING PRIMARY KEY" in row for row in plan), plan


def _tables_and_indexes(home: Home) -> set[str]:
    with home.open_store() as store, store.engine.connect() as conn:
        return index_names(conn) | set(inspect(conn).get_table_names())


def test_a_log_made_before_the_lookup_gets_it_when_opened_to_write(
    home: Home, node: Signer
) -> None:
    """A log made before evidence/lookup.py has a random-keyed index on the leaf hash instead:
    readers still find its entries, and the first writer builds the lookup tables from the
    log and drops the old index, so replays of old entries are still refused."""
    with home.open_store(write=True) as store:
        old = store.append_envelopes([envelope(node, i) for i in range(1, 30)]).first_index
    with home.open_store() as store, store.engine.begin() as conn:
        conn.execute(text("DROP TABLE lookup"))
        conn.execute(text("DROP TABLE lookup_recent"))
        conn.execute(text(f"CREATE INDEX {OLD_LEAF_INDEX} ON entries (substr(leaf_hash, 1, 8))"))
    with home.open_store() as store:  # a reader leaves the database as it is, and still finds
        assert not store.lookup_ready
        digest = statement(7, kind="gpu")["subject"][0]["digest"]["sha256"]
        assert [e.index for e in store.query(subject_digest=digest)] == [old + 6]
    assert "lookup" not in _tables_and_indexes(home)
    with home.open_store(write=True) as store:
        assert store.lookup_ready
        with pytest.raises(DuplicateEntry) as refused:
            store.append_envelopes([envelope(node, 5)])
        assert refused.value.index == old + 4
        assert [e.index for e in store.query(subject_digest=digest)] == [old + 6]
    names = _tables_and_indexes(home)
    assert {"lookup", "lookup_recent"} <= names and OLD_LEAF_INDEX not in names


def test_a_log_holding_a_replay_still_opens_and_verifies(home: Home, node: Signer) -> None:
    """Before replays were refused two identical envelopes could both land: the index is not
    unique, so such a log keeps opening and verifying, and refuses further copies."""
    same = envelope(node, 1)
    with home.open_store(write=True) as store:
        first = store.append_envelopes([same]).first_index
        # the append of an earlier version: no replay check under the lock
        store._commit(lambda _size: prepare_envelopes([same], home.trust(), ["envelope"]))
        verify_log(store, home.trust())
        with pytest.raises(DuplicateEntry) as refused:
            store.append_envelopes([same])
    assert refused.value.index == first


# -- replays by content: the signed statement, not the envelope's bytes -------------------------


def _with_signatures(base: Envelope, *extra: Signature) -> Envelope:
    return Envelope(base.payload_type, base.payload, (*base.signatures, *extra))


def test_a_statement_resigned_or_countersigned_is_the_same_evidence(
    store: Store, home: Home, node: Signer
) -> None:
    """An attacker re-posts a logged statement with one more signature (another trusted key),
    or with the signatures in another order: other bytes, same statement, refused."""
    other = Signer.generate("gpu-node-2")
    home.add_collector_key(other.name, other.public_bytes, COLLECTOR_KINDS)
    original = envelope(node, 1)
    first = store.append_envelopes([original]).first_index
    size = store.size()
    countersigned = _with_signatures(original, sign_envelope(original.payload, other).signatures[0])
    reordered = Envelope(original.payload_type, original.payload, countersigned.signatures[::-1])
    for again in (countersigned, reordered, sign_envelope(original.payload, other)):
        assert again.canonical() != original.canonical()
        with pytest.raises(DuplicateEntry, match="the same signed statement") as refused:
            store.append_envelopes([again])
        assert refused.value.index == first
    assert store.size() == size
    fresh = envelope(node, 7)
    twice = [fresh, _with_signatures(fresh, sign_envelope(fresh.payload, other).signatures[0])]
    with pytest.raises(InputError, match="envelope 2 repeats the signed statement of envelope 1"):
        store.append_envelopes(twice)  # not logged yet, but twice in one batch
    assert store.size() == size


def test_a_statement_the_log_signed_is_not_logged_again_by_a_collector(
    store: Store, node: Signer
) -> None:
    logged = store.append([statement(5, kind="gpu")]).first_index
    with pytest.raises(DuplicateEntry) as refused:
        store.append_envelopes([envelope(node, 5)])
    assert refused.value.index == logged


def test_signature_lists_that_cost_without_proving_are_refused(store: Store, node: Signer) -> None:
    """Copies of one signature, a signature nobody can check, or a pile of them: refused
    before any is verified, and nothing is appended."""
    base = envelope(node, 1)
    stranger = sign_envelope(base.payload, Signer.generate("elsewhere")).signatures[0]
    size = store.size()
    doubled = base.to_dict() | {"signatures": base.to_dict()["signatures"] * 2}
    with pytest.raises(InputError, match=r"signatures\[1\]: key .* signs twice"):
        Envelope.from_dict(doubled)
    many = base.to_dict() | {"signatures": base.to_dict()["signatures"] * 500}
    with pytest.raises(InputError, match="500 signatures: at most 4"):
        Envelope.from_dict(many)
    with pytest.raises(TrustError, match="not signed by any trusted key"):
        store.append_envelopes([_with_signatures(base, stranger)])
    assert store.size() == size


def test_a_lookup_of_leaf_hashes_gets_content_keys_from_its_next_writer(
    sqlite_home: Home,
) -> None:
    """A log whose lookup was built before content keys holds leaf hashes: its first writer
    replaces them, so a re-signed replay of an old entry is still refused."""
    home = sqlite_home
    node = Signer.generate("gpu-node-1")
    home.add_collector_key(node.name, node.public_bytes, COLLECTOR_KINDS)
    with home.open_store(write=True) as store:
        first = store.append_envelopes([envelope(node, i) for i in range(1, 5)]).first_index
        with store.engine.begin() as conn:  # as the earlier version left it
            for name in ("log_meta_no_delete",):
                conn.execute(text(f"DROP TRIGGER {name}"))
            conn.execute(text(f"DELETE FROM log_meta WHERE key = '{lookup.CONTENT_META}'"))
            conn.execute(text(f"DELETE FROM lookup_recent WHERE kind = {lookup.CONTENT}"))
            for idx, leaf in conn.execute(text("SELECT idx, leaf_hash FROM entries")).all():
                conn.execute(
                    text("INSERT INTO lookup_recent VALUES (:k, :key, :idx)"),
                    {"k": lookup.LEAF, "key": lookup.leaf_key(bytes(leaf)), "idx": idx},
                )
    with home.open_store(write=True) as store:
        with store.engine.connect() as conn:
            both = "SELECT kind FROM lookup_recent UNION SELECT kind FROM lookup"
            kinds = {k for (k,) in conn.execute(text(both))}
        assert lookup.LEAF not in kinds and lookup.CONTENT in kinds
        resigned = Envelope(
            IN_TOTO_PAYLOAD_TYPE, envelope(node, 2).payload, envelope(node, 2).signatures
        )
        with pytest.raises(DuplicateEntry) as refused:
            store.append_envelopes([resigned])
        assert refused.value.index == first + 1
        verify_log(store, home.trust())
