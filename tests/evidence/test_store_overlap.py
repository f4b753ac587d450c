"""Large appends sign in a helper process while the store writes (evidence/signing_process.py),
on SQLite and PostgreSQL: the entries are the ones a small append makes, a bad statement or a
helper that dies appends nothing, a rotated key or a forked process gets a new helper, and
busy stores use it for middling batches."""

from __future__ import annotations

import io
import os
import re
import signal
import struct
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from evidence.errors import InputError, StoreError, TrustError
from evidence.home import Home
from evidence.signing_process import SigningProcess, serve
from evidence.store import (
    OVERLAP_FROM,
    OVERLAP_RUNNING,
    FixedKeys,
    Store,
    prepare_statements,
)
from evidence.verify import verify_log
from tests.conftest import statement

LARGE = OVERLAP_FROM + 100


def batch(start: int, n: int = LARGE) -> list[dict[str, Any]]:
    return [statement(i) for i in range(start, start + n)]


def helper_pid(store: Store) -> int:
    assert store._signing is not None, "the large append did not use the signing process"
    return store._signing._child.pid


def test_a_large_append_writes_what_a_small_one_would(store: Store, home: Home) -> None:
    statements = batch(0)
    size = store.size()
    result = store.append(statements)
    assert list(result.indices) == list(range(size, size + LARGE))
    helper_pid(store)
    # Ed25519 is deterministic: the same key over the same statements gives the same leaves.
    names = [f"statement {i + 1}" for i in range(LARGE)]
    expected = prepare_statements(statements, home.signer(), names)
    assert result.leaf_hashes == tuple(p.leaf for p in expected)
    assert store.get(size + 7).envelope_bytes == expected[7].envelope
    assert store.checkpoint().size == size + LARGE == result.checkpoint.size
    assert verify_log(store, home.trust()).size == size + LARGE
    store.append([statement(10**6)])  # and a small append after it goes on from there
    assert verify_log(store, home.trust()).size == size + LARGE + 1


def test_a_bad_statement_deep_in_a_large_batch_appends_nothing(store: Store, home: Home) -> None:
    store.append(batch(0))
    size = store.size()
    statements = batch(LARGE)
    statements[OVERLAP_FROM - 3]["subject"][0]["digest"]["sha256"] = "ABC"
    with pytest.raises(InputError, match=rf"statement {OVERLAP_FROM - 2}: subject\.0\.digest"):
        store.append(statements)
    assert store.size() == size and store.checkpoint().size == size
    statements[OVERLAP_FROM - 3] = statement(-1)
    assert store.append(statements).first_index == size
    assert verify_log(store, home.trust()).size == size + LARGE


def test_a_helper_that_died_between_appends_is_started_again(store: Store, home: Home) -> None:
    store.append(batch(0))
    first = helper_pid(store)
    os.kill(first, signal.SIGKILL)
    store._signing._child.wait()  # type: ignore[union-attr]
    store.append(batch(LARGE))
    assert helper_pid(store) != first
    assert verify_log(store, home.trust()).size == 1 + 2 * LARGE


def test_a_helper_that_dies_during_an_append_appends_nothing(
    store: Store, home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.append(batch(0))
    size = store.size()
    original = SigningProcess.collect

    def dying(self: SigningProcess) -> list[bytes]:
        os.kill(self._child.pid, signal.SIGKILL)
        self._child.wait()
        return original(self)

    monkeypatch.setattr(SigningProcess, "collect", dying)
    with pytest.raises(StoreError, match="signing process stopped"):
        store.append(batch(LARGE))
    monkeypatch.undo()
    assert store.size() == size and store._signing is None
    assert store.append(batch(LARGE)).first_index == size
    assert verify_log(store, home.trust()).size == size + LARGE


def test_a_rotated_key_gets_a_helper_of_its_own(store: Store, home: Home) -> None:
    old_signer = home.signer()
    store.append(batch(0))
    _, new = home.rotate(reason="yearly")
    result = store.append(batch(LARGE))
    assert store.get(result.first_index).keyid == new.keyid != old_signer.keyid
    assert store._signing is not None and store._signing.public_bytes != old_signer.public_bytes
    assert verify_log(store, home.trust()).size == result.checkpoint.size
    stale = Store.open(home.db_url, keys=FixedKeys(old_signer, home.trust()))
    with stale, pytest.raises(TrustError, match="retired"):
        stale.append(batch(2 * LARGE))
    assert store.size() == result.checkpoint.size


def test_closing_the_store_stops_the_helper(home: Home) -> None:
    with home.open_store(write=True) as store:
        store.append(batch(0))
        child = store._signing._child  # type: ignore[union-attr]
    assert child.poll() is not None and store._signing is None


def test_the_helper_protocol_signs_in_order_with_the_key_it_was_given() -> None:
    """`serve` is the child's loop: the key, then chunks of length-prefixed messages."""
    key = Ed25519PrivateKey.generate()
    raw = key.private_bytes_raw()
    chunks = [[b"first", b"", b"x" * 5000], [b"last"]]
    wire = raw + b"".join(
        struct.pack(f"<{len(c) + 1}I", len(c), *map(len, c)) + b"".join(c) for c in chunks
    )
    out = io.BytesIO()
    serve(io.BytesIO(wire), out)
    answer = out.getvalue()
    assert answer[:32] == key.public_key().public_bytes_raw()
    sigs = [answer[32 + 64 * i : 32 + 64 * (i + 1)] for i in range(4)]
    assert len(answer) == 32 + 64 * 4
    for sig, message in zip(sigs, [m for c in chunks for m in c], strict=True):
        key.public_key().verify(sig, message)


def test_a_real_helper_signs_what_the_key_signs() -> None:
    key = Ed25519PrivateKey.generate()
    helper = SigningProcess(key)
    try:
        messages = [b"message %d" % i for i in range(300)]
        helper.submit(messages[:200])
        helper.submit(messages[200:])
        assert helper.collect() + helper.collect() == [key.sign(m) for m in messages]
    finally:
        helper.close()
    assert not helper.alive


def test_a_helper_answering_with_another_key_is_refused() -> None:
    helper = SigningProcess(Ed25519PrivateKey.generate())
    try:
        helper.public_bytes = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
        helper.submit([b"message"])
        with pytest.raises(StoreError, match="did not load the log key"):
            helper.collect()
    finally:
        helper.close()


def test_a_helper_started_in_a_folder_with_an_evidence_package_still_signs(
    home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The child imports Annex from where Annex lives, not from the working directory."""
    decoy = tmp_path / "evidence"
    decoy.mkdir()
    (decoy / "__init__.py").write_text("raise ImportError('the wrong evidence package')\n")
    monkeypatch.chdir(tmp_path)
    with home.open_store(write=True) as store:
        store.append(batch(0))
        helper_pid(store)
        assert not store._helper_unavailable
        assert verify_log(store, home.trust()).size == 1 + LARGE


def test_the_helper_ignores_ctrl_c_and_goes_on_signing(store: Store, home: Home) -> None:
    """Ctrl-C reaches the whole process group; the writer, not the helper, decides."""
    store.append(batch(0))
    pid = helper_pid(store)
    os.kill(pid, signal.SIGINT)
    store.append(batch(LARGE))
    assert helper_pid(store) == pid
    assert verify_log(store, home.trust()).size == 1 + 2 * LARGE


def test_a_forked_process_starts_its_own_helper(store: Store, home: Home) -> None:
    """After a fork the helper's pipes are shared with the parent: the child must not use or
    stop them (here the fork is simulated by the owner's pid)."""
    store.append(batch(0))
    parents = store._signing
    assert parents is not None
    parents.owner_pid = -1
    try:
        store.append(batch(LARGE))
        assert store._signing is not parents and parents.alive
    finally:
        parents.close()
    assert verify_log(store, home.trust()).size == 1 + 2 * LARGE


def test_a_busy_store_starts_the_helper_for_middling_batches(
    sqlite_home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A one-off append of a hundred never pays for starting the helper; a store that keeps
    signing (a service, a sweep) does, and then batches of OVERLAP_RUNNING use it."""
    import evidence.store as module

    monkeypatch.setattr(module, "BUSY_AFTER", 300)
    with sqlite_home.open_store(write=True) as store:
        for start in range(0, 300, 100):
            store.append(batch(start, 100))
            assert store._signing is None
        store.append(batch(300, OVERLAP_RUNNING - 1))  # too small, however busy
        assert store._signing is None
        store.append(batch(400, OVERLAP_RUNNING))
        pid = helper_pid(store)
        store.append(batch(500, OVERLAP_RUNNING))
        assert helper_pid(store) == pid
        assert verify_log(store, sqlite_home.trust()).size == 1 + 300 + 3 * OVERLAP_RUNNING - 1


def test_a_new_store_starts_the_helper_for_a_large_batch_only(
    sqlite_home: Home,
) -> None:
    with sqlite_home.open_store(write=True) as store:
        store.append(batch(0, OVERLAP_FROM - 1))
        assert store._signing is None
        store.append(batch(OVERLAP_FROM, OVERLAP_FROM))
        pid = helper_pid(store)
        store.append(batch(2 * OVERLAP_FROM, OVERLAP_RUNNING))
        assert helper_pid(store) == pid


@pytest.mark.parametrize(
    ("interpreter", "why"),
    [
        ("/nonexistent/python3", "cannot start"),
        ("/bin/true", "did not load the log key|stopped"),  # it may be gone before the key
    ],
)
def test_a_helper_that_cannot_start_leaves_signing_to_the_store(
    sqlite_home: Home, monkeypatch: pytest.MonkeyPatch, interpreter: str, why: str
) -> None:
    """No usable interpreter, or a child that exits at once: the append still lands, signed
    in-process, and the store stops trying the helper."""
    monkeypatch.setattr(sys, "executable", interpreter)
    with sqlite_home.open_store(write=True) as store:
        first = store.append(batch(0))
        assert store._signing is None and re.search(why, store._helper_unavailable)
        second = store.append(batch(LARGE))
        assert store._signing is None
        assert list(second.indices) == list(range(first.indices.stop, first.indices.stop + LARGE))
        assert verify_log(store, sqlite_home.trust()).size == 1 + 2 * LARGE
