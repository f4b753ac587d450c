"""The store's promises, on SQLite and on PostgreSQL: sequencing, queries, proofs, atomicity."""

from __future__ import annotations

import base64
import dataclasses
import math
from datetime import UTC, datetime
from pathlib import Path

import pytest

from evidence import merkle
from evidence.canonical import canonical_bytes
from evidence.dsse import sign_envelope
from evidence.errors import ConfigError, InputError, TrustError, VerificationError
from evidence.home import Home
from evidence.keys import Signer, TrustIndex
from evidence.note import TlogProof
from evidence.store import FixedKeys, Store
from evidence.verify import open_checkpoint, verify_entry, verify_log
from schemas.key_event import KEY_EVENT
from tests.conftest import COLLECTOR_KINDS, noncanonical_b64, statement


def test_init_logs_the_first_key(store: Store, home: Home) -> None:
    assert store.size() == 1
    genesis = store.get(0)
    assert genesis.predicate_type == KEY_EVENT
    assert genesis.keyid == home.signer().keyid
    assert genesis.subjects[0].digest == home.signer().keyid
    assert store.checkpoint().size == 1


def test_appends_get_consecutive_indices_and_a_checkpoint_each(store: Store) -> None:
    first = store.append([statement(i) for i in range(3)])
    second = store.append([statement(3)])
    assert list(first.indices) == [1, 2, 3] and list(second.indices) == [4]
    assert first.checkpoint.size == 4 and second.checkpoint.size == 5
    assert store.checkpoint(4).root == first.checkpoint.root
    assert store.checkpoint().note == second.checkpoint.note
    assert store.get(2).statement["predicate"]["n"] == 1


def test_entry_records_observed_and_logged_times_apart(store: Store) -> None:
    before = datetime.now(UTC)
    result = store.append([statement(1, observed="2026-01-02T03:04:05.123456+01:00")])
    entry = store.get(result.first_index)
    assert entry.observed_at == datetime(2026, 1, 2, 2, 4, 5, 123456, tzinfo=UTC)
    assert before <= entry.logged_at <= datetime.now(UTC)
    assert entry.leaf_hash == result.leaf_hashes[0]
    assert entry.leaf_hash == merkle.leaf_hash(entry.envelope_bytes)
    without = dict(statement(2))
    without["predicate"] = {"n": 2}
    assert store.get(store.append([without]).first_index).observed_at is None


def test_query_filters_and_cursor(store: Store) -> None:
    store.append([statement(i, kind="gpu") for i in range(5)])
    store.append(
        [statement(i, kind="model", observed=f"2026-03-0{i + 1}T00:00:00Z") for i in range(3)]
    )
    gpu = "https://annex.dev/predicates/gpu/v1"
    assert [e.index for e in store.query(predicate_type=gpu)] == [1, 2, 3, 4, 5]
    page = store.query(predicate_type=gpu, limit=2)
    rest = store.query(predicate_type=gpu, after=page[-1].index)
    assert [e.index for e in page + rest] == [1, 2, 3, 4, 5]
    digest = statement(2)["subject"][0]["digest"]["sha256"]
    assert [e.index for e in store.query(subject_digest=digest)] == [3, 8]
    assert [e.index for e in store.query(subject_digest=f"sha256:{digest}")] == [3, 8]
    assert store.query(subject_digest=f"sha512:{digest}") == []
    assert [e.index for e in store.query(subject_name="artifact-1", predicate_type=gpu)] == [2]
    observed = store.query(
        observed_since=datetime(2026, 3, 2, tzinfo=UTC),
        observed_until=datetime(2026, 3, 3, tzinfo=UTC),
    )
    assert [e.index for e in observed] == [7]
    assert len(store.query(logged_since=datetime.now(UTC))) == 0
    assert len(store.query(logged_until=datetime.now(UTC), limit=1000)) == 9


def test_a_bad_statement_rejects_the_whole_batch(store: Store) -> None:
    bad = statement(2)
    bad["subject"][0]["digest"]["sha256"] = "ABC"
    with pytest.raises(InputError, match=r"statement 3: subject\.0\.digest"):
        store.append([statement(0), statement(1), bad, statement(3)])
    assert store.size() == 1


def test_a_failure_inside_the_transaction_leaves_nothing(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    import evidence.store as module

    def broken(*_: object) -> str:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(module, "sign_checkpoint", broken)
    with pytest.raises(RuntimeError):
        store.append([statement(i) for i in range(5)])
    monkeypatch.undo()
    assert store.size() == 1
    assert store.append([statement(9)]).first_index == 1


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda s: s.pop("_type"), "_type"),
        (lambda s: s.update(_type="https://in-toto.io/Statement/v0.1"), "_type"),
        (lambda s: s.update(extra=1), "extra"),
        (lambda s: s.update(subject=[]), "subject"),
        (lambda s: s["subject"][0].pop("digest"), "digest"),
        (lambda s: s["subject"][0]["digest"].update(sha256="zz" * 32), "not lowercase hex"),
        (lambda s: s.update(predicateType="not a uri"), "predicateType"),
        (lambda s: s["predicate"].update(observedAt="yesterday"), "observedAt"),
        (lambda s: s["predicate"].update(observedAt="2026-01-01T00:00:00"), "UTC offset"),
        (lambda s: s["predicate"].update(x=float("nan")), "canonicalised"),
    ],
)
def test_bad_statements_are_named(store: Store, mangle: object, message: str) -> None:
    bad = statement(1)
    mangle(bad)  # type: ignore[operator]
    with pytest.raises(InputError, match=message):
        store.append([bad])
    assert store.size() == 1


def test_every_inclusion_proof_verifies_at_every_checkpoint(store: Store, home: Home) -> None:
    for size in (1, 3, 1, 7, 2):
        store.append([statement(i) for i in range(size)])
    trust = home.trust()
    sizes = [1, 2, 5, 6, 13, 15]
    for tree_size in sizes:
        for index in range(tree_size):
            proof = store.inclusion_proof(index, tree_size)
            report = verify_entry(store.get(index).envelope, proof, trust)
            assert (report.index, report.tree_size) == (index, tree_size)
            # The checkpoint's signed time bounds when the entry was logged.
            assert (
                report.logged_by.timestamp() == store.get(tree_size - 1).logged_at.timestamp() // 1
            )
    with pytest.raises(InputError, match="nearest: 13, 15"):
        store.inclusion_proof(0, 14)
    with pytest.raises(InputError, match="not in the tree"):
        store.inclusion_proof(15)
    # Many at once (a batch just appended) are the same proofs, read in one query.
    assert store.inclusion_proofs(range(13), 13) == [
        store.inclusion_proof(i, 13) for i in range(13)
    ]
    with pytest.raises(InputError, match="entry 13 is not in the tree of size 13"):
        store.inclusion_proofs([2, 13], 13)


def test_consistency_proofs_between_checkpoints(store: Store, home: Home) -> None:
    for size in (2, 5, 1, 8):
        store.append([statement(i) for i in range(size)])
    sizes = [1, 3, 8, 9, 17]
    heads = {s: open_checkpoint(store.checkpoint(s).note, home.trust()).checkpoint for s in sizes}
    for old in sizes:
        for new in sizes:
            if old <= new:
                proof = store.consistency_proof(old, new)
                assert (proof.old_root, proof.new_root) == (heads[old].root, heads[new].root)
                merkle.verify_consistency(old, new, heads[old].root, heads[new].root, proof.hashes)
    with pytest.raises(InputError):
        store.consistency_proof(5, 4)
    with pytest.raises(InputError):
        store.consistency_proof(0, 4)
    with pytest.raises(InputError):
        store.consistency_proof(3, 18)


def test_proofs_read_logarithmically_many_hashes(
    sqlite_home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    with sqlite_home.open_store(write=True) as store:
        for _ in range(3):
            store.append([statement(i) for i in range(1000)])
        size = store.size()
        fetched: list[int] = []
        original = Store._fetch_nodes

        def counting(self: Store, conn: object, wanted: list[merkle.Node]) -> object:
            fetched.append(len(set(wanted)))
            return original(self, conn, wanted)  # type: ignore[arg-type]

        monkeypatch.setattr(Store, "_fetch_nodes", counting)
        bound = 2 * math.ceil(math.log2(size)) + 2
        for index in range(0, size, 97):
            fetched.clear()
            store.inclusion_proof(index)
            assert len(fetched) == 1 and fetched[0] <= bound
        for old in range(1, size, 211):
            fetched.clear()
            store.consistency_proof(old)
            assert len(fetched) == 1 and fetched[0] <= 2 * bound


def test_read_only_store_refuses_to_append(home: Home) -> None:
    with home.open_store() as store, pytest.raises(ConfigError, match="read-only"):
        store.append([statement(1)])


def test_opening_what_is_not_a_log(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="annex init"):
        Home(tmp_path / "nothing").open_store()
    with pytest.raises(ConfigError, match="annex init"):
        Store.open(f"sqlite:///{tmp_path / 'empty.db'}")


def test_a_database_holds_one_log(home: Home) -> None:
    with pytest.raises(ConfigError, match="already holds"):
        Store.create(home.db_url, "other.example/log")
    with pytest.raises(ConfigError, match="already an Annex data directory"):
        home.init("test.example/log")


def test_rotation_keeps_old_entries_verifying(store: Store, home: Home) -> None:
    old_signer = home.signer()
    store.append([statement(1)])
    old, new = home.rotate(reason="yearly")
    assert (old.status, old.valid_until_size, new.valid_from_size) == ("retired", 2, 2)
    result = store.append([statement(2)])
    assert store.get(result.first_index).keyid == new.keyid != old_signer.keyid
    assert verify_log(store, home.trust()).size == 4
    assert store.get(2).predicate_type == KEY_EVENT  # the rotation itself is logged
    stale = Store.open(home.db_url, keys=FixedKeys(old_signer, home.trust()))
    with stale, pytest.raises(TrustError, match="retired"):
        stale.append([statement(3)])


def test_verify_entry_refuses_proofs_in_other_base64(store: Store, home: Home) -> None:
    """A proof re-encoded without changing a byte it decodes to: its hash line is refused as
    malformed, and the checkpoint it carries fails verification."""
    store.append([statement(i) for i in range(5)])
    proof, envelope = store.inclusion_proof(2), store.get(2).envelope
    line = base64.b64encode(proof.hashes[0]).decode()
    reencoded = proof.format().replace(f"\n{line}\n", f"\n{noncanonical_b64(line)}\n", 1)
    assert reencoded != proof.format()
    with pytest.raises(InputError, match="tlog proof hash 1 is not canonical base64"):
        TlogProof.parse(reencoded)
    first_line = proof.checkpoint.rpartition("\n\n")[2].partition("\n")[0]
    head, _, sig = first_line.rpartition(" ")
    note = proof.checkpoint.replace(f"{head} {sig}\n", f"{head} {noncanonical_b64(sig)}\n", 1)
    assert note != proof.checkpoint
    with pytest.raises(VerificationError, match="checkpoint is malformed: note signature by"):
        verify_entry(envelope, dataclasses.replace(proof, checkpoint=note), home.trust())
    assert verify_entry(envelope, proof, home.trust()).index == 2


def test_an_entry_signed_by_a_revoked_key_after_revocation_fails(home: Home) -> None:
    stolen = home.signer()
    with home.open_store(write=True) as store:
        store.append([statement(1)])
    trust_before = home.trust()
    revoked = home.revoke(stolen.keyid[:12], reason="leaked")
    assert revoked.status == "revoked" and revoked.valid_until_size == 2
    # Someone with the stolen key and write access to the database appends as if nothing happened.
    forger = Store.open(home.db_url, keys=FixedKeys(stolen, trust_before))
    with forger:
        forged = forger.append([statement(666)])
    with home.open_store() as store:
        with pytest.raises(VerificationError) as failure:
            verify_log(store, home.trust())
        assert failure.value.index == forged.first_index
        proof = store.inclusion_proof(forged.first_index)
        with pytest.raises(VerificationError):
            verify_entry(store.get(forged.first_index).envelope, proof, home.trust())
        # What the key signed before its revocation still verifies.
        early = store.inclusion_proof(1, 2)
        assert verify_entry(store.get(1).envelope, early, home.trust()).index == 1


def test_collector_envelopes_are_appended_as_signed(store: Store, home: Home) -> None:
    collector = Signer.generate("gpu-node-01.example/collector")
    home.add_collector_key(collector.name, collector.public_bytes, COLLECTOR_KINDS)
    envelope = sign_envelope(canonical_bytes(statement(5)), collector)
    result = store.append_envelopes([envelope])
    entry = store.get(result.first_index)
    assert entry.keyid == collector.keyid
    assert entry.envelope_bytes == envelope.canonical()
    stranger = Signer.generate("elsewhere.example/collector")
    with pytest.raises(TrustError, match="not signed by any trusted key"):
        store.append_envelopes([sign_envelope(canonical_bytes(statement(6)), stranger)])
    assert verify_log(store, home.trust()).size == store.size()


def test_encrypted_key_needs_its_passphrase(tmp_path: Path) -> None:
    home = Home(tmp_path / "annex", passphrase=b"correct horse")
    home.init("test.example/log")
    pem = next((tmp_path / "annex" / "keys").glob("*.pem")).read_bytes()
    assert b"ENCRYPTED" in pem
    with pytest.raises(ConfigError, match="ANNEX_KEY_PASSPHRASE"):
        Home(tmp_path / "annex").open_store(write=True)
    with pytest.raises(ConfigError, match="wrong passphrase"):
        Home(tmp_path / "annex", passphrase=b"wrong").open_store(write=True)
    with Home(tmp_path / "annex", passphrase=b"correct horse").open_store(write=True) as store:
        assert store.append([statement(1)]).first_index == 1


def test_trust_index_refuses_what_it_does_not_know(home: Home) -> None:
    trust: TrustIndex = home.trust()
    with pytest.raises(TrustError):
        trust.get("00" * 32)
    with pytest.raises(VerificationError, match="not signed by any trusted key"):
        trust.entry_signer("00" * 32, 0, statement(0)["predicateType"])


def test_a_reader_on_postgresql_reads_without_a_transaction(home: Home) -> None:
    """A read-only store saves each read's BEGIN and ROLLBACK on PostgreSQL; a writer keeps its
    transactions (an append is all or nothing), and a streamed export still gets one."""
    with home.open_store() as reader, home.open_store(write=True) as writer:
        writer.append([statement(i) for i in range(3)])
        exported = [index for index, _, _ in reader.export()]
        assert exported == list(range(reader.size()))
        if home.db_url.startswith("sqlite"):
            return
        with reader.engine.connect() as conn, writer.engine.connect() as wconn:
            driver = (conn.connection.dbapi_connection, wconn.connection.dbapi_connection)
            assert [getattr(c, "autocommit", None) for c in driver] == [True, False]
