"""RFC 9162 (Certificate Transparency v2) Merkle tree math: pure functions over hashes.

Nothing here knows about SQL or files. The store keeps the hash of every *complete* subtree
(a `Node`: 2**level leaves starting at index << level), so any range the RFC's recursive
definitions split a tree into is a handful of stored nodes folded from the right; that is what
makes a proof cost O(log n) reads.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from evidence.errors import VerificationError

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


@dataclass(frozen=True, order=True)
class Node:
    """A complete subtree: leaves [index * 2**level, (index + 1) * 2**level)."""

    level: int
    index: int

    @property
    def start(self) -> int:
        return self.index << self.level

    @property
    def end(self) -> int:
        return (self.index + 1) << self.level


def _split(n: int) -> int:
    """The largest power of two strictly smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def range_nodes(start: int, end: int) -> list[Node]:
    """The complete subtrees that make up [start, end), largest first.

    Only ranges produced by the RFC's splits are accepted: their start is aligned to a power of
    two at least as large as the range, so the parts shrink left to right and fold from the right.
    """
    size = end - start
    if size <= 0 or start % (1 << (size - 1).bit_length()):
        raise ValueError(f"[{start}, {end}) is not a range of an RFC 9162 split")
    nodes = []
    while start < end:
        level = (end - start).bit_length() - 1
        nodes.append(Node(level, start >> level))
        start += 1 << level
    return nodes


def fold(hashes: Sequence[bytes]) -> bytes:
    """MTH of a range from the hashes of its `range_nodes`, largest first."""
    acc = hashes[-1]
    for left in reversed(hashes[:-1]):
        acc = node_hash(left, acc)
    return acc


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The ranges whose MTHs form PATH(index, D[size]) (RFC 9162 2.1.3.1), leaf's sibling first."""
    if not 0 <= index < size:
        raise ValueError(f"index {index} is outside a tree of size {size}")
    out = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            out.append((lo + k, hi))
            hi = lo + k
        else:
            out.append((lo, lo + k))
            lo += k
    out.reverse()
    return out


def consistency_ranges(old: int, new: int) -> list[tuple[int, int]]:
    """The ranges whose MTHs form PROOF(old, D[new]) (RFC 9162 2.1.4.1), deepest first."""
    if not 0 < old <= new:
        raise ValueError(f"no consistency proof from size {old} to size {new}")
    out = []
    lo, hi, m, whole = 0, new, old, True
    while True:
        n = hi - lo
        if m == n:
            if not whole:
                out.append((lo, hi))
            break
        k = _split(n)
        if m <= k:
            out.append((lo + k, hi))
            hi = lo + k
        else:
            out.append((lo, lo + k))
            lo += k
            m -= k
            whole = False
    out.reverse()
    return out


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """RFC 9162 2.1.3.2. Returns nothing or raises VerificationError."""
    if len(leaf) != HASH_SIZE or len(root) != HASH_SIZE:
        raise VerificationError("leaf hash and root must be 32-byte SHA-256 hashes")
    if not 0 <= index < size:
        raise VerificationError(f"index {index} is outside a tree of size {size}")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise VerificationError("inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("inclusion proof is shorter than the tree is deep")
    if r != root:
        raise VerificationError(f"inclusion proof for index {index} does not lead to the root")


def verify_consistency(
    old: int, new: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 2.1.4.2. Returns nothing or raises VerificationError.

    A proof from the empty tree proves nothing and is refused, as transparency-dev does.
    """
    if old > new:
        raise VerificationError(f"old size {old} is larger than new size {new}")
    if old == new:
        if proof:
            raise VerificationError("trees of equal size need an empty consistency proof")
        if old == 0 and old_root != EMPTY_ROOT:
            raise VerificationError("the root of the empty tree must be SHA-256 of nothing")
        if old_root != new_root:
            raise VerificationError(f"two different roots for tree size {old}")
        return
    if old == 0:
        raise VerificationError("a consistency proof from the empty tree proves nothing")
    if not proof:
        raise VerificationError("empty consistency proof between different sizes")
    path = list(proof)
    if old & (old - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise VerificationError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("consistency proof is too short")
    if fr != old_root:
        raise VerificationError(f"consistency proof does not lead to the root of size {old}")
    if sr != new_root:
        raise VerificationError(f"consistency proof does not lead to the root of size {new}")


@dataclass
class CompactRange:
    """The right edge of a growing tree: the roots of its complete subtrees, largest first."""

    size: int = 0
    hashes: list[bytes] = field(default_factory=list)

    def append(self, leaf: bytes) -> list[tuple[Node, bytes]]:
        """Adds a leaf hash; returns every complete subtree it completes, the leaf itself first."""
        index, level, h = self.size, 0, leaf
        made = [(Node(0, index), h)]
        while index & 1:
            h = node_hash(self.hashes.pop(), h)
            index >>= 1
            level += 1
            made.append((Node(level, index), h))
        self.hashes.append(h)
        self.size += 1
        return made

    def root(self) -> bytes:
        return fold(self.hashes) if self.hashes else EMPTY_ROOT


def root_of(leaves: Sequence[bytes]) -> bytes:
    """MTH of a list of leaf hashes, for tests and small trees."""
    tree = CompactRange()
    for leaf in leaves:
        tree.append(leaf)
    return tree.root()
