"""RFC 9162 tree hashing and proofs: the RFC's test vectors and property tests."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evidence import merkle
from evidence.errors import VerificationError
from tests.conftest import SHARED

VECTORS = SHARED / "testdata" / "rfc9162-vectors"


def _mth(leaves: list[bytes], lo: int, hi: int) -> bytes:
    """The RFC's recursive definition, written independently of the module under test."""
    if hi - lo == 1:
        return leaves[lo]
    k = 1
    while k * 2 < hi - lo:
        k *= 2
    return merkle.node_hash(_mth(leaves, lo, lo + k), _mth(leaves, lo + k, hi))


def _leaves(n: int) -> list[bytes]:
    return [merkle.leaf_hash(b"entry %d" % i) for i in range(n)]


def _vector_files(kind: str) -> list[Path]:
    return sorted((VECTORS / kind).rglob("*.json")) if VECTORS.is_dir() else []


def _b(value: str) -> bytes:
    return base64.b64decode(value)


def test_known_hashes() -> None:
    # RFC 6962/9162: the empty tree is SHA-256 of nothing; leaves and nodes are prefixed.
    assert merkle.EMPTY_ROOT.hex().startswith("e3b0c442")
    assert merkle.root_of([]) == merkle.EMPTY_ROOT
    assert merkle.leaf_hash(b"") == _b("bjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0=")


@pytest.mark.skipif(not VECTORS.is_dir(), reason=f"test vectors not found at {VECTORS}")
@pytest.mark.parametrize(
    "path", _vector_files("inclusion"), ids=lambda p: str(p.relative_to(VECTORS))
)
def test_inclusion_vectors(path: Path) -> None:
    case = json.loads(path.read_text())
    proof = [_b(p) for p in case["proof"] or []]
    args = (_b(case["leafHash"]), case["leafIdx"], case["treeSize"], proof, _b(case["root"]))
    if case["wantErr"]:
        with pytest.raises(VerificationError):
            merkle.verify_inclusion(*args)
    else:
        merkle.verify_inclusion(*args)


@pytest.mark.skipif(not VECTORS.is_dir(), reason=f"test vectors not found at {VECTORS}")
@pytest.mark.parametrize(
    "path", _vector_files("consistency"), ids=lambda p: str(p.relative_to(VECTORS))
)
def test_consistency_vectors(path: Path) -> None:
    case = json.loads(path.read_text())
    proof = [_b(p) for p in case["proof"] or []]
    args = (case["size1"], case["size2"], _b(case["root1"]), _b(case["root2"]), proof)
    if case["wantErr"]:
        with pytest.raises(VerificationError):
            merkle.verify_consistency(*args)
    else:
        merkle.verify_consistency(*args)


def test_vectors_cover_both_outcomes() -> None:
    if not VECTORS.is_dir():
        pytest.skip(f"test vectors not found at {VECTORS}")
    wants = {json.loads(p.read_text())["wantErr"] for p in _vector_files("inclusion")}
    assert wants == {True, False}
    assert len(_vector_files("consistency")) > 50


def test_every_proof_up_to_a_few_hundred_verifies() -> None:
    leaves = _leaves(300)
    tree = merkle.CompactRange()
    for size in range(1, 301):
        tree.append(leaves[size - 1])
        root = tree.root()
        assert root == _mth(leaves, 0, size)
        for index in range(size):
            ranges = merkle.inclusion_ranges(index, size)
            proof = [_mth(leaves, lo, hi) for lo, hi in ranges]
            merkle.verify_inclusion(leaves[index], index, size, proof, root)
        for old in range(1, size + 1):
            proof = [_mth(leaves, lo, hi) for lo, hi in merkle.consistency_ranges(old, size)]
            merkle.verify_consistency(old, size, _mth(leaves, 0, old), root, proof)


def test_range_nodes_fold_to_the_range_hash() -> None:
    leaves = _leaves(150)
    for size in range(1, 150):
        for index in range(0, size, 7):
            for lo, hi in merkle.inclusion_ranges(index, size):
                parts = merkle.range_nodes(lo, hi)
                assert merkle.fold([_mth(leaves, n.start, n.end) for n in parts]) == _mth(
                    leaves, lo, hi
                )
    with pytest.raises(ValueError):
        merkle.range_nodes(3, 7)  # not a range any RFC split produces


def test_compact_range_reports_every_completed_subtree() -> None:
    tree = merkle.CompactRange()
    made = [node for i in range(8) for node, _ in tree.append(merkle.leaf_hash(b"%d" % i))]
    assert merkle.Node(3, 0) in made and merkle.Node(2, 1) in made
    assert len(made) == 15  # 8 leaves + 4 + 2 + 1 internal nodes


@settings(max_examples=300, deadline=None)
@given(
    size=st.integers(1, 400),
    data=st.data(),
)
def test_wrong_inclusion_proofs_fail(size: int, data: st.DataObject) -> None:
    leaves = _leaves(size)
    root = _mth(leaves, 0, size)
    index = data.draw(st.integers(0, size - 1))
    proof = [_mth(leaves, lo, hi) for lo, hi in merkle.inclusion_ranges(index, size)]
    merkle.verify_inclusion(leaves[index], index, size, proof, root)
    mutation = data.draw(st.sampled_from(["flip", "drop", "add", "index", "root", "leaf"]))
    bad_leaf, bad_index, bad_root, bad_proof = leaves[index], index, root, list(proof)
    if mutation == "flip" and proof:
        at = data.draw(st.integers(0, len(proof) - 1))
        bit = data.draw(st.integers(0, 255))
        changed = bytearray(proof[at])
        changed[bit // 8] ^= 1 << (bit % 8)
        bad_proof[at] = bytes(changed)
    elif mutation == "drop" and proof:
        bad_proof.pop()
    elif mutation == "add":
        bad_proof.append(merkle.leaf_hash(b"extra"))
    elif mutation == "index" and size > 1:
        bad_index = (index + data.draw(st.integers(1, size - 1))) % size
    elif mutation == "root" and size > 1:
        bad_root = _mth(leaves, 0, size - 1)  # the root of another tree size
    else:
        bad_leaf = merkle.leaf_hash(b"not in the tree")
    with pytest.raises(VerificationError):
        merkle.verify_inclusion(bad_leaf, bad_index, size, bad_proof, bad_root)


@settings(max_examples=300, deadline=None)
@given(size=st.integers(2, 400), data=st.data())
def test_wrong_consistency_proofs_fail(size: int, data: st.DataObject) -> None:
    leaves = _leaves(size)
    old = data.draw(st.integers(1, size - 1))
    proof = [_mth(leaves, lo, hi) for lo, hi in merkle.consistency_ranges(old, size)]
    old_root, new_root = _mth(leaves, 0, old), _mth(leaves, 0, size)
    merkle.verify_consistency(old, size, old_root, new_root, proof)
    mutation = data.draw(st.sampled_from(["flip", "drop", "old_root", "new_root", "old_size"]))
    bad = list(proof)
    args = [old, size, old_root, new_root]
    if mutation == "flip":
        at = data.draw(st.integers(0, len(proof) - 1))
        bad[at] = bytes([bad[at][0] ^ 1]) + bad[at][1:]
    elif mutation == "drop":
        bad.pop(data.draw(st.integers(0, len(bad) - 1)))
    elif mutation == "old_root":
        args[2] = _mth(leaves, 0, old - 1) if old > 1 else merkle.leaf_hash(b"x")
    elif mutation == "new_root":
        args[3] = _mth(leaves, 0, size - 1)
    else:
        args[0] = old + 1 if old + 1 < size else old - 1
        if args[0] == 0:
            args[0] = 2
    with pytest.raises(VerificationError):
        merkle.verify_consistency(args[0], args[1], args[2], args[3], bad)
