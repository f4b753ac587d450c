"""The vault (per-subject secrets, crypto-shredding) and the content-addressed blob directory."""

from __future__ import annotations

import hashlib
import sqlite3
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from evidence.blobs import BlobStore
from evidence.errors import InputError, StoreError
from evidence.vault import Vault, pseudonym_of

CALLER = "alice@example.com"


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[Vault]:
    v = Vault.open(tmp_path / "vault")
    yield v
    v.close()


def _raw(vault: Vault) -> bytes:
    """Every byte the vault directory holds on disk (database, journal, master key)."""
    return b"".join(p.read_bytes() for p in sorted(vault.directory.iterdir()) if p.is_file())


def _secret(vault: Vault, caller: str) -> bytes:
    with sqlite3.connect(vault.directory / "vault.db") as conn:
        row = conn.execute(
            "SELECT secret FROM subjects WHERE lookup = ?", (vault.lookup(caller),)
        ).fetchone()
    return bytes(row[0])


def test_files_are_private_and_hold_no_caller_id(vault: Vault) -> None:
    with vault.transaction():
        vault.subject(CALLER, now=0)
    assert stat.S_IMODE(vault.directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((vault.directory / "master.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((vault.directory / "vault.db").stat().st_mode) == 0o600
    assert CALLER.encode() not in _raw(vault)


def test_pseudonym_is_keyed_stable_and_per_subject(vault: Vault, tmp_path: Path) -> None:
    with vault.transaction():
        alice = vault.subject(CALLER, now=0)
        again = vault.subject(CALLER, now=1)
        bob = vault.subject("bob@example.com", now=0)
    assert alice == again
    assert alice.pseudonym != bob.pseudonym
    assert len(alice.pseudonym) == 32
    assert alice.pseudonym == pseudonym_of(_secret(vault, CALLER), CALLER)
    assert vault.pseudonym(CALLER) == alice.pseudonym
    # Another vault (another secret) gives another pseudonym for the same caller.
    with Vault.open(tmp_path / "other") as other, other.transaction():
        assert other.subject(CALLER, now=0).pseudonym != alice.pseudonym


def test_destroy_removes_every_copy_of_the_keys(vault: Vault) -> None:
    with vault.transaction():
        alice = vault.subject(CALLER, now=0)
        bob = vault.subject("bob", now=0)
        keys = [
            vault.new_content_key(alice, batch=f"{'a' * 64}#{n}", retention="logs", expires_at=9)
            for n in (1, 2)
        ]
        kept = vault.new_content_key(bob, batch=f"{'a' * 64}#1", retention="logs", expires_at=9)
    secret = _secret(vault, CALLER)
    assert all(k.key in _raw(vault) for k in keys)
    with vault.transaction():
        destroyed = vault.destroy(CALLER)
    vault.vacuum()
    assert destroyed.pseudonyms == (alice.pseudonym,)
    assert (destroyed.keys, destroyed.secrets) == (2, 1)
    assert destroyed.batches == (f"{'a' * 64}#1", f"{'a' * 64}#2")
    raw = _raw(vault)
    assert secret not in raw
    assert all(k.key not in raw for k in keys)
    assert all(vault.content_key(k.key_id) is None for k in keys)
    assert vault.pseudonym(CALLER) is None  # the pseudonym can no longer be recomputed
    assert vault.content_key(kept.key_id) == kept.key  # other subjects keep theirs
    with pytest.raises(InputError, match="no such data subject"), vault.transaction():
        vault.destroy(CALLER)
    with vault.transaction():
        assert vault.subject(CALLER, now=5).pseudonym != alice.pseudonym  # a new person


def test_expire_destroys_only_keys_past_their_time(vault: Vault) -> None:
    with vault.transaction():
        alice = vault.subject(CALLER, now=0)
        old = vault.new_content_key(alice, batch="x#1", retention="short", expires_at=100)
        new = vault.new_content_key(alice, batch="x#2", retention="logs", expires_at=200)
    assert vault.expired(99).keys == 0
    with vault.transaction():
        gone = vault.expire(100)
    vault.vacuum()
    assert (gone.keys, gone.secrets, gone.batches) == (1, 0, ("x#1",))
    assert gone.pseudonyms == (alice.pseudonym,)
    assert vault.content_key(old.key_id) is None
    assert old.key not in _raw(vault)
    assert vault.content_key(new.key_id) == new.key
    assert vault.pseudonym(CALLER) == alice.pseudonym  # expiry keeps the pseudonym secret


def test_a_failed_transaction_leaves_nothing(vault: Vault) -> None:
    with pytest.raises(RuntimeError), vault.transaction():
        vault.subject(CALLER, now=0)
        raise RuntimeError("the log append failed")
    assert vault.find(CALLER) is None


def test_master_key_of_the_wrong_size_is_refused(tmp_path: Path) -> None:
    (tmp_path / "vault").mkdir()
    (tmp_path / "vault" / "master.key").write_bytes(b"short")
    with pytest.raises(Exception, match="32 bytes"):
        Vault.open(tmp_path / "vault")


def test_vaults_opened_at_once_share_one_whole_master_key(tmp_path: Path) -> None:
    """Sixteen openers race to create the key: all read the same 32 bytes, none an empty file."""
    (tmp_path / "vault").mkdir()
    start = threading.Barrier(16)
    keys: list[bytes] = []
    errors: list[BaseException] = []

    def open_one() -> None:
        start.wait()
        try:
            with Vault.open(tmp_path / "vault") as v:
                keys.append(v.lookup("alice@example.com").encode())
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(keys)) == 1
    assert sorted(p.name for p in (tmp_path / "vault").iterdir() if p.name.startswith(".")) == []


# -- blobs --------------------------------------------------------------------------------------


def test_blob_is_named_by_its_sha256_and_checked(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    data = b"ciphertext" * 1000
    digest = blobs.put(data)
    assert digest == hashlib.sha256(data).hexdigest()
    assert blobs.path(digest) == tmp_path / "blobs" / "sha256" / digest[:2] / digest
    with blobs.open(digest) as f:
        assert f.read() == data
    blobs.check(digest)
    blobs.path(digest).write_bytes(b"changed")
    with pytest.raises(StoreError, match="does not match"):
        blobs.check(digest)
    assert list((tmp_path / "blobs" / "tmp").iterdir()) == []


def test_aborted_blob_leaves_no_file(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    with blobs.writer() as writer:
        writer.write(b"half")
        writer.abort()
    with pytest.raises(RuntimeError), blobs.writer() as writer:
        writer.write(b"half")
        raise RuntimeError
    assert list((tmp_path / "blobs" / "tmp").iterdir()) == []
    assert not (tmp_path / "blobs" / "sha256").exists()
    with pytest.raises(InputError, match="is not in"):
        blobs.open("0" * 64)
    with pytest.raises(InputError, match="64 lowercase hex"):
        blobs.path("../etc/passwd")
