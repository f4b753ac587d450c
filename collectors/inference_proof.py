"""Reading an inference batch back: prove that a line belongs to it, and decrypt retained content.

A line proof needs only the batch's entry (its `merkleRoot`) and its leaves blob, so it still
works after the line's caller was erased: the leaf digests no content in clear. The blob is
streamed twice (find the line's leaf index, then fold the audit path and the whole root), so
memory stays O(log n) for any batch size.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from collectors.inference_log import CONTENT_HEAD, LEAF_RECORD, associated_data
from evidence.blobs import BlobStore
from evidence.errors import InputError, VerificationError
from evidence.merkle import CompactRange, inclusion_ranges, verify_inclusion
from evidence.store import Store
from evidence.vault import Vault
from schemas.inference import INFERENCE_BATCH, InferenceBatchPredicate


@dataclass(frozen=True)
class LineProof:
    entry: int
    line: int
    leaf_index: int
    leaf: bytes
    path: tuple[bytes, ...]
    size: int
    root: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "entry": self.entry,
            "line": self.line,
            "leafIndex": self.leaf_index,
            "leaf": self.leaf.hex(),
            "path": [h.hex() for h in self.path],
            "treeSize": self.size,
            "root": self.root.hex(),
        }

    def verify(self) -> None:
        verify_inclusion(self.leaf, self.leaf_index, self.size, self.path, self.root)


def batch_of(store: Store, index: int) -> InferenceBatchPredicate:
    entry = store.get(index)
    if entry.predicate_type != INFERENCE_BATCH:
        raise InputError(f"entry {index} is not an inference batch ({entry.predicate_type})")
    return InferenceBatchPredicate.model_validate(entry.statement["predicate"])


def _leaves(f: BinaryIO) -> Iterator[tuple[int, bytes]]:
    size = LEAF_RECORD.size
    while chunk := f.read(size * 4096):
        if len(chunk) % size:
            raise VerificationError("the leaves blob is truncated")
        for offset in range(0, len(chunk), size):
            yield LEAF_RECORD.unpack_from(chunk, offset)


def prove_line(store: Store, blobs: BlobStore, index: int, line: int) -> LineProof:
    """The audit path of a line (its physical line number in the source file), verified."""
    batch = batch_of(store, index)
    if not batch.batch.first_line <= line <= batch.batch.last_line:
        raise InputError(
            f"line {line} is not in entry {index}: it covers lines "
            f"{batch.batch.first_line}-{batch.batch.last_line} of {batch.source.name}"
        )
    with blobs.open(batch.leaves_blob) as f:
        found = next(((i, leaf) for i, (n, leaf) in enumerate(_leaves(f)) if n == line), None)
    if found is None:
        raise InputError(f"line {line} of {batch.source.name} is blank: it has no leaf")
    leaf_index, leaf = found
    path, root = _path_and_root(blobs, batch, leaf_index)
    proof = LineProof(index, line, leaf_index, leaf, path, batch.lines, root)
    proof.verify()
    return proof


def _path_and_root(
    blobs: BlobStore, batch: InferenceBatchPredicate, leaf_index: int
) -> tuple[tuple[bytes, ...], bytes]:
    """Folds every path range and the whole tree in one pass; checks the blob and the root."""
    ranges = inclusion_ranges(leaf_index, batch.lines)
    parts = [CompactRange() for _ in ranges]
    whole = CompactRange()
    digest = hashlib.sha256()
    with blobs.open(batch.leaves_blob) as f:
        for i, (line, leaf) in enumerate(_leaves(f)):
            digest.update(LEAF_RECORD.pack(line, leaf))
            whole.append(leaf)
            for (lo, hi), part in zip(ranges, parts, strict=True):
                if lo <= i < hi:
                    part.append(leaf)
    if digest.hexdigest() != batch.leaves_blob:
        raise VerificationError(f"leaves blob {batch.leaves_blob} was changed")
    root = whole.root()
    if whole.size != batch.lines or root.hex() != batch.merkle_root:
        raise VerificationError("the leaves blob does not give the batch's recorded Merkle root")
    return tuple(p.root() for p in parts), root


@dataclass(frozen=True)
class RetainedLine:
    line: int
    content: dict[str, Any]  # the original line, as the gateway wrote it
    digest: str  # SHA-256 of nonce || ciphertext: the "content" of the line's leaf


def content_records(f: BinaryIO) -> Iterator[tuple[int, bytes, bytes, bytes]]:
    """(line, key id, nonce, ciphertext with tag) of each record of a content blob."""
    head = CONTENT_HEAD.size
    while raw := f.read(head):
        if len(raw) != head:
            raise VerificationError("the content blob is truncated")
        line, key_id, nonce, length = CONTENT_HEAD.unpack(raw)
        sealed = f.read(length)
        if len(sealed) != length:
            raise VerificationError("the content blob is truncated")
        yield line, key_id, nonce, sealed


def read_content(
    store: Store, vault: Vault, blobs: BlobStore, index: int, caller: str
) -> list[RetainedLine]:
    """Decrypts a caller's retained content in one batch (a data subject's access request)."""
    batch = batch_of(store, index)
    if batch.content_blob is None:
        raise InputError(f"entry {index} retained no content (ingested without retention)")
    if vault.find(caller) is None:
        raise InputError("no such data subject in the vault (never seen, or erased)")
    out = []
    with blobs.open(batch.content_blob) as f:
        for line, key_id, nonce, sealed in content_records(f):
            key = vault.content_key(key_id)
            if key is None or vault.key_owner(key_id) != vault.lookup(caller):
                continue
            try:
                plain = AESGCM(key).decrypt(
                    nonce, sealed, associated_data(batch.source.sha256, line)
                )
            except InvalidTag:
                raise VerificationError(f"retained content of line {line} was changed") from None
            digest = hashlib.sha256(nonce + sealed).hexdigest()
            out.append(RetainedLine(line, json.loads(plain), digest))
    return out
