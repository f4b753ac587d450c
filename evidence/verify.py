"""Verification with public keys only: the whole log, or one exported entry with its proof.

`verify_log` re-reads every row of the store in one snapshot and recomputes everything the
log claims: each envelope's leaf hash and signatures (by a key valid at that position), the
query columns derived from each statement, every stored subtree hash, and every checkpoint's
root and signature. Ed25519 checks run on worker threads (`cryptography` releases the GIL)
while the main thread keeps reading. The first bad entry is named in the error.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Connection, and_, func, select, union_all
from sqlalchemy.exc import DBAPIError

from evidence import lookup
from evidence.dsse import Envelope, pae, verify_envelope
from evidence.entry import Metadata, Subject, rfc3339, statement_metadata
from evidence.errors import AnnexError, InputError, VerificationError
from evidence.keys import EntryKey, TrustIndex, keyid_of
from evidence.merkle import (
    EMPTY_ROOT,
    CompactRange,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)
from evidence.note import (
    Checkpoint,
    NoteSignature,
    NoteVerifier,
    TlogProof,
    cosignature_message,
    find_cosignature,
    open_note,
    split_note,
)
from evidence.parallel import workers
from evidence.store import Store, check_statement, log_size
from evidence.tables import checkpoints, entries, lookup_merged, lookup_recent, nodes, subjects

_CHUNK = 512


@dataclass(frozen=True)
class LogReport:
    size: int
    root: bytes
    signatures: int
    checkpoints: int
    latest_checkpoint: str
    trusted_checkpoint_size: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": True,
            "size": self.size,
            "root": base64.b64encode(self.root).decode(),
            "signatures_checked": self.signatures,
            "checkpoints_checked": self.checkpoints,
            "trusted_checkpoint_size": self.trusted_checkpoint_size,
            "checkpoint": self.latest_checkpoint,
        }


@dataclass(frozen=True)
class EntryReport:
    index: int
    tree_size: int
    logged_by: datetime
    keyid: str
    statement: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": True,
            "index": self.index,
            "tree_size": self.tree_size,
            "logged_by": rfc3339(self.logged_by),
            "keyid": self.keyid,
            "predicate_type": self.statement["predicateType"],
            "subjects": self.statement["subject"],
        }


@dataclass(frozen=True)
class VerifiedCheckpoint:
    checkpoint: Checkpoint
    issued_at: datetime


def open_checkpoint(note: str, trust: TrustIndex) -> VerifiedCheckpoint:
    """Verifies a signed checkpoint and its timestamped cosignature against the trust file."""
    try:
        text, signed_by = open_note(note, trust.verifiers)
        checkpoint = Checkpoint.parse(text)
        _, lines = split_note(note)
    except InputError as exc:
        raise VerificationError(f"checkpoint is malformed: {exc}") from None
    if checkpoint.origin != trust.trust.origin:
        raise VerificationError(
            f"checkpoint is for log {checkpoint.origin!r}, "
            f"the trust file for {trust.trust.origin!r}"
        )
    valid = [v for v in signed_by if trust.checkpoint_key_valid(v, checkpoint.size)]
    if not valid:
        raise VerificationError(
            f"checkpoint of size {checkpoint.size} is signed only by keys not valid at that size"
        )
    cosig = find_cosignature(lines, valid[0])
    if cosig is None:
        raise VerificationError("checkpoint carries no timestamped cosignature by the log")
    try:
        Ed25519PublicKey.from_public_bytes(valid[0].public_key).verify(
            cosig.sig, cosignature_message(text, cosig.timestamp)
        )
    except InvalidSignature:
        raise VerificationError("the checkpoint's timestamp signature does not verify") from None
    return VerifiedCheckpoint(checkpoint, datetime.fromtimestamp(cosig.timestamp, UTC))


def verify_entry(envelope: Envelope, proof: TlogProof, trust: TrustIndex) -> EntryReport:
    """What an auditor runs offline: envelope + tlog-proof + trust file, no database.

    The signers must be keys whose role may sign the statement's predicate type, valid at the
    entry's position; a valid signature by any other trusted key fails (AuthorityError).
    """
    head = open_checkpoint(proof.checkpoint, trust)
    checkpoint = head.checkpoint
    try:
        statement = json.loads(envelope.payload)
        check_statement(statement, where="envelope payload")
    except (ValueError, InputError) as exc:
        raise VerificationError(f"the signed payload is not a valid statement: {exc}") from None
    kind = statement["predicateType"]
    keyid = verify_envelope(envelope, lambda k: trust.entry_signer(k, proof.index, kind))
    verify_inclusion(
        leaf_hash(envelope.canonical()), proof.index, checkpoint.size, proof.hashes, checkpoint.root
    )
    return EntryReport(proof.index, checkpoint.size, head.issued_at, keyid, statement)


# -- the whole log ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Check:
    key: Ed25519PublicKey | EntryKey
    sig: bytes
    message: bytes
    index: int
    what: str


def _first_bad(batch: list[_Check]) -> VerificationError | None:
    for c in batch:
        try:
            c.key.verify(c.sig, c.message)
        except InvalidSignature:
            return VerificationError(f"{c.what}: signature does not verify", index=c.index)
    return None


class _Signatures:
    """Queues Ed25519 checks in chunks onto worker threads."""

    def __init__(self, pool: ThreadPoolExecutor) -> None:
        self.pool = pool
        self.batch: list[_Check] = []
        self.pending: deque[Future[VerificationError | None]] = deque()
        self.count = 0

    def add(self, check: _Check) -> None:
        self.batch.append(check)
        self.count += 1
        if len(self.batch) >= _CHUNK:
            self.pending.append(self.pool.submit(_first_bad, self.batch))
            self.batch = []
            while len(self.pending) > 8 and self.pending[0].done():
                self._raise_if_bad(self.pending.popleft())

    def _raise_if_bad(self, future: Future[VerificationError | None]) -> None:
        error = future.result()
        if error is not None:
            raise error

    def drain(self, found: VerificationError | None = None) -> None:
        """Waits for every queued check; raises the earliest failure, `found` included."""
        if self.batch:
            self.pending.append(self.pool.submit(_first_bad, self.batch))
            self.batch = []
        errors = [f.result() for f in self.pending]
        self.pending.clear()
        candidates = [e for e in [*errors, found] if e is not None]
        if candidates:
            raise min(candidates, key=lambda e: -1 if e.index is None else e.index)


def _bad(index: int, message: str) -> VerificationError:
    return VerificationError(f"entry {index}: {message}", index=index)


class _LogWalk:
    """One pass over every table, in tree order, comparing stored and recomputed state."""

    def __init__(self, conn: Connection, store: Store, trust: TrustIndex) -> None:
        self.store = store
        self.trust = trust
        self.tree = CompactRange()
        self.subjects = _Peek(
            conn.execution_options(yield_per=2000).execute(
                select(subjects).order_by(subjects.c.entry_idx, subjects.c.position)
            )
        )
        completed_at = (nodes.c.idx + 1).op("<<")(nodes.c.level)
        self.nodes = _Peek(
            conn.execution_options(yield_per=2000).execute(
                select(nodes).where(nodes.c.level > 0).order_by(completed_at, nodes.c.level)
            )
        )
        self.checkpoints = _Peek(
            conn.execution_options(yield_per=500).execute(
                select(checkpoints).order_by(checkpoints.c.size)
            )
        )
        self.lookup = _LookupSum.of(conn)
        self.checkpoint_count = 0
        self.batch_times: list[tuple[int, int]] = []
        self.last_checkpoint: str | None = None
        self.last_checkpoint_size = 0

    def entry(self, row: Any, sigs: _Signatures) -> None:
        index = self.tree.size
        if row.idx != index:
            raise _bad(index, f"is missing (the next stored entry is {row.idx})")
        leaf = leaf_hash(row.envelope)
        if leaf != row.leaf_hash:
            raise _bad(index, "its envelope bytes do not match its recorded leaf hash")
        # Only logs written before level-0 tree nodes were dropped have one to compare.
        if row.node_hash is not None and row.node_hash != leaf:
            raise _bad(index, "its leaf hash differs from the tree's (rewritten or moved)")
        envelope, statement = _parse(index, row.envelope)
        derived = self._check_metadata(index, row, statement)
        message = pae(envelope.payload_type, envelope.payload)  # signed; its SHA-256 is the content
        if self.lookup is not None:
            digests = (s.digest for s in derived.subjects)
            self.lookup.expect(index, hashlib.sha256(message).digest(), digests)
        self.batch_times.append((index, row.logged_at_us))
        self._queue_signatures(index, row.keyid, envelope, message, row.predicate_type, sigs)
        for node, h in self.tree.append(leaf)[1:]:
            stored = self.nodes.next_or_none()
            if stored is None or (stored.level, stored.idx) != (node.level, node.index):
                raise _bad(node.start, f"tree node {node} is missing")
            if stored.hash != h:
                raise _bad(node.start, f"stored tree node {node} does not match the entries")
        self._checkpoints_at(self.tree.size, sigs)

    def _check_metadata(self, index: int, row: Any, statement: dict[str, Any]) -> Metadata:
        try:
            derived = statement_metadata(statement)
        except (KeyError, TypeError, ValueError, AttributeError):
            raise _bad(index, "its signed payload is not an in-toto statement") from None
        stored_subjects = []
        while (s := self.subjects.peek()) is not None and s.entry_idx <= index:
            self.subjects.next_or_none()
            if s.entry_idx < index:
                raise _bad(s.entry_idx, "subject rows exist for an entry that does not")
            stored_subjects.append(Subject(s.name, s.algorithm, s.digest))
        stored = Metadata(row.predicate_type, tuple(stored_subjects), row.observed_at_us)
        if stored != derived:
            raise _bad(
                index, "its recorded type, subjects or observed time differ from the statement"
            )
        return derived

    def _queue_signatures(
        self,
        index: int,
        keyid: str,
        envelope: Envelope,
        message: bytes,
        kind: str,
        sigs: _Signatures,
    ) -> None:
        """Every signature must be by a key that may sign `kind` at `index`, and verify."""
        for s in envelope.signatures:
            try:
                key = self.trust.entry_signer(s.keyid, index, kind)
            except VerificationError as exc:
                raise type(exc)(f"entry {index}: {exc}", index=index) from None
            sigs.add(_Check(key, s.sig, message, index, f"entry {index}"))
        if keyid != envelope.signatures[0].keyid:
            raise _bad(index, "its recorded keyid is not the key that signed it")

    def _checkpoints_at(self, size: int, sigs: _Signatures) -> None:
        row = self.checkpoints.peek()
        if row is None or row.size != size:
            return
        self.checkpoints.next_or_none()
        first = self.last_checkpoint_size
        where = f"entries {first}..{size - 1} and the checkpoint at size {size}"
        try:
            text, lines = split_note(row.note)
            head = Checkpoint.parse(text)
        except InputError as exc:
            raise VerificationError(f"{where}: malformed checkpoint: {exc}", index=first) from None
        root = self.tree.root()
        if (head.origin, head.size, head.root, row.root) != (self.store.origin, size, root, root):
            raise VerificationError(f"{where} do not match", index=first)
        signers = []
        for verifier in self.trust.verifiers:
            for line in lines:
                if (line.name, line.key_id) != (verifier.name, verifier.key_id):
                    continue
                if not self.trust.checkpoint_key_valid(verifier, size):
                    raise VerificationError(
                        f"{where}: signed by key {keyid_of(verifier.public_key)[:16]} "
                        "outside its validity window",
                        index=first,
                    )
                key = Ed25519PublicKey.from_public_bytes(verifier.public_key)
                sigs.add(_Check(key, line.sig, text.encode(), first, where))
                signers.append((verifier, key))
        if not signers:
            raise VerificationError(f"{where}: not signed by a trusted key", index=first)
        self._check_time(row, text, lines, signers[0], sigs, where)

        self.checkpoint_count += 1
        self.last_checkpoint = row.note
        self.last_checkpoint_size = size

    def _check_time(
        self,
        row: Any,
        text: str,
        lines: list[NoteSignature],
        signer: tuple[NoteVerifier, Ed25519PublicKey],
        sigs: _Signatures,
        where: str,
    ) -> None:
        """The signed issue time binds `logged_at` of the batch, and the batch's bounds."""
        first = self.last_checkpoint_size
        cosig = find_cosignature(lines, signer[0])
        if cosig is None:
            raise VerificationError(f"{where}: no timestamped cosignature", index=first)
        if cosig.timestamp != row.issued_at_us // 1_000_000:
            raise VerificationError(f"{where}: issue time differs from the signed one", index=first)
        message = cosignature_message(text, cosig.timestamp)
        sigs.add(_Check(signer[1], cosig.sig, message, first, f"{where} (timestamp)"))
        for index, logged_at_us in self.batch_times:
            if logged_at_us != row.issued_at_us:
                raise _bad(
                    index,
                    f"its log time differs from the signed time of checkpoint {row.size}",
                )
        self.batch_times.clear()

    def finish(self) -> None:
        size = self.tree.size
        extra_cp = self.checkpoints.peek()
        if extra_cp is not None:
            raise VerificationError(
                f"a checkpoint was signed at size {extra_cp.size} but only {size} entries "
                f"remain: entries {size}..{extra_cp.size - 1} are missing",
                index=size,
            )
        extra_node = self.nodes.peek()
        if extra_node is not None:
            raise VerificationError(
                f"tree nodes exist beyond the last entry ({size}): entries were removed",
                index=size,
            )
        extra_subject = self.subjects.peek()
        if extra_subject is not None:
            raise _bad(extra_subject.entry_idx, "subject rows exist for an entry that does not")
        if self.last_checkpoint_size != size:
            first = self.last_checkpoint_size
            raise VerificationError(
                f"entries {first}..{size - 1} are covered by no signed checkpoint", index=first
            )


class _LookupSum:
    """The lookup rows the entries call for, against those stored (evidence/lookup.py).

    The gate and the reports find entries through the lookup tables, so a row deleted would
    hide an entry from them. Comparing row by row in entry order would cost a sort of the
    tables and a fifth of verify's time; instead each side is summed as a multiset under a
    keyed hash (BLAKE2b with a key drawn for this run, which a database writer cannot know, so
    cannot balance a deleted row with others), and only when the sums differ does a second,
    exact pass find the first entry whose rows differ.
    """

    def __init__(self, with_content: bool) -> None:
        self.with_content = with_content
        self._hash = hashlib.blake2b(digest_size=8, key=os.urandom(16))
        self.expected = 0
        self.rows: list[tuple[int, int, int]] = []

    @classmethod
    def of(cls, conn: Connection) -> _LookupSum | None:
        """None for a log made before the lookup tables: its readers scan, nothing relies on
        them. Leaf-hash rows, which a lookup held before content keys, are read by nothing."""
        if not lookup.present(conn):
            return None
        return cls(lookup.has_content_keys(conn))

    def _row(self, kind: int, key: int, idx: int) -> int:
        h = self._hash.copy()
        h.update(_ROW.pack(kind, key, idx))
        return int.from_bytes(h.digest(), "little")

    def expect(self, index: int, content: bytes, digests: Iterable[str]) -> None:
        lookup.entry_keys(index, content, digests, self.rows)
        for kind, key, idx in self.rows:
            if self.with_content or kind != lookup.CONTENT:
                self.expected += self._row(kind, key, idx)
        self.rows.clear()

    def check(self, conn: Connection) -> VerificationError | None:
        """The first entry whose stored lookup rows differ from what it calls for, if any."""
        stored = 0
        rows = conn.execution_options(yield_per=5000).execute(self._stored())
        for row in rows:
            stored += self._row(row.kind, row.lookup_key, row.idx)
        if stored % 2**64 == self.expected % 2**64:
            return None
        return self._first_difference(conn)

    def _stored(self, *, ordered: bool = False) -> Any:
        kinds = [lookup.DIGEST, lookup.CONTENT] if self.with_content else [lookup.DIGEST]
        parts = [
            select(t.c.idx, t.c.kind, t.c.lookup_key).where(t.c.kind.in_(kinds))
            for t in (lookup_merged, lookup_recent)
        ]
        both = union_all(*parts).subquery()
        query = select(both)
        return query.order_by(both.c.idx, both.c.kind, both.c.lookup_key) if ordered else query

    def _first_difference(self, conn: Connection) -> VerificationError:
        """The exact pass: entries, their (verified) subject rows and the lookup rows, each in
        entry order."""
        stored = _Peek(conn.execution_options(yield_per=5000).execute(self._stored(ordered=True)))
        subject_rows = _Peek(
            conn.execution_options(yield_per=5000).execute(
                select(subjects.c.entry_idx, subjects.c.digest).order_by(subjects.c.entry_idx)
            )
        )
        ordered = select(entries.c.idx, entries.c.envelope).order_by(entries.c.idx)
        for idx, envelope in conn.execution_options(yield_per=2000).execute(ordered):
            digests = []
            while (s := subject_rows.peek()) is not None and s.entry_idx == idx:
                digests.append(subject_rows.next_or_none().digest)
            lookup.entry_keys(idx, lookup.stored_content(idx, bytes(envelope)), digests, self.rows)
            want = {(k, key) for k, key, _ in self.rows if self.with_content or k != lookup.CONTENT}
            self.rows.clear()
            found = []  # a list: a row stored twice (in both tiers) is one too many
            while (r := stored.peek()) is not None and r.idx <= idx:
                stored.next_or_none()
                if r.idx < idx:
                    return _bad(r.idx, "lookup rows exist for an entry that does not")
                found.append((r.kind, r.lookup_key))
            if sorted(found) != sorted(want):
                what = "missing from" if want - set(found) else "added to"
                return _bad(
                    idx,
                    f"its rows in the lookup tables differ from its statement (keys {what} the "
                    "lookup): the gate and the reports would not see it as logged",
                )
        extra = stored.peek()
        if extra is not None:
            return _bad(extra.idx, "lookup rows exist for an entry that does not")
        return VerificationError("the lookup tables differ from the entries")


_ROW = struct.Struct("<bqq")


class _Peek:
    """A result stream with one row of look-ahead."""

    def __init__(self, rows: Any) -> None:
        self._rows: Iterator[Any] = iter(rows)
        self._next: Any = None
        self._filled = False

    def peek(self) -> Any:
        if not self._filled:
            self._next = next(self._rows, None)
            self._filled = True
        return self._next

    def next_or_none(self) -> Any:
        row = self.peek()
        self._filled = False
        return row


def _parse(index: int, data: bytes) -> tuple[Envelope, dict[str, Any]]:
    try:
        envelope = Envelope.from_dict(json.loads(data), what=f"entry {index} envelope")
        statement = json.loads(envelope.payload)
    except (ValueError, AnnexError) as exc:
        raise _bad(index, f"cannot be parsed: {exc}") from None
    if not isinstance(statement, dict):
        raise _bad(index, "its signed payload is not a JSON object")
    return envelope, statement


def latest_extending(store: Store, trust: TrustIndex, trusted_checkpoint: str) -> Checkpoint:
    """The store's latest checkpoint, proven to extend one the caller saved earlier.

    Without this, someone who can write to the database could roll the log back to hide newer
    entries (a failing eval, a revocation event) from a reader that trusts the latest row.
    """
    pinned = open_checkpoint(trusted_checkpoint, trust).checkpoint
    latest = open_checkpoint(store.checkpoint().note, trust).checkpoint
    if pinned.size > latest.size:
        raise VerificationError(
            f"the log's latest checkpoint has {latest.size} entries, fewer than the trusted "
            f"checkpoint's {pinned.size}: it was truncated or rolled back",
            index=latest.size,
        )
    if pinned.size == 0:
        return latest
    proof = store.consistency_proof(pinned.size, latest.size)
    try:
        verify_consistency(pinned.size, latest.size, pinned.root, latest.root, proof.hashes)
    except VerificationError as exc:
        raise VerificationError(
            f"the log at size {latest.size} does not extend the trusted checkpoint of size "
            f"{pinned.size}: {exc}",
            index=0,
        ) from None
    return latest


def verify_log(
    store: Store,
    trust: TrustIndex,
    *,
    trusted_checkpoint: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> LogReport:
    """Verifies the whole store; returns a report or raises VerificationError.

    A database that cannot even be read as a log (a table dropped, a value of the wrong type or
    not UTF-8) fails verification too, naming what the database said: it is not the log.
    """
    try:
        return _verify_log(store, trust, trusted_checkpoint, progress)
    except (DBAPIError, UnicodeDecodeError, TypeError, OverflowError) as exc:
        why = exc.orig if isinstance(exc, DBAPIError) else exc
        raise VerificationError(f"the database cannot be read as an Annex log: {why}") from None


def _verify_log(
    store: Store,
    trust: TrustIndex,
    trusted_checkpoint: str | None,
    progress: Callable[[int, int], None] | None,
) -> LogReport:
    pinned = (
        None
        if trusted_checkpoint is None
        else open_checkpoint(trusted_checkpoint, trust).checkpoint
    )
    pinned_root = EMPTY_ROOT if pinned is not None and pinned.size == 0 else None
    with store.engine.connect() as conn, ThreadPoolExecutor(workers()) as pool:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            total = log_size(conn)
            walk = _LogWalk(conn, store, trust)
            sigs = _Signatures(pool)
            n0 = nodes.alias("n0")
            rows = conn.execution_options(yield_per=2000).execute(
                select(
                    entries.c.idx,
                    entries.c.envelope,
                    entries.c.leaf_hash,
                    entries.c.keyid,
                    entries.c.predicate_type,
                    entries.c.observed_at_us,
                    entries.c.logged_at_us,
                    n0.c.hash.label("node_hash"),
                )
                .outerjoin(n0, and_(n0.c.level == 0, n0.c.idx == entries.c.idx))
                .order_by(entries.c.idx)
            )
            try:
                for row in rows:
                    walk.entry(row, sigs)
                    if pinned is not None and walk.tree.size == pinned.size:
                        pinned_root = walk.tree.root()
                    if progress is not None and walk.tree.size % 1000 == 0:
                        progress(walk.tree.size, total)
                walk.finish()
                _no_leaves_beyond(conn, walk.tree.size)
                lookup_error = None if walk.lookup is None else walk.lookup.check(conn)
            except VerificationError as exc:
                sigs.drain(exc)
                raise
            sigs.drain()
    if progress is not None:
        progress(walk.tree.size, total)
    if pinned is not None:
        _check_pinned(pinned, pinned_root, walk.tree.size)
    if lookup_error is not None:  # last: a rewritten log's derived rows differ as a consequence
        raise lookup_error
    return LogReport(
        size=walk.tree.size,
        root=walk.tree.root(),
        signatures=sigs.count,
        checkpoints=walk.checkpoint_count,
        latest_checkpoint=walk.last_checkpoint or "",
        trusted_checkpoint_size=None if pinned is None else pinned.size,
    )


def _no_leaves_beyond(conn: Connection, size: int) -> None:
    stray = conn.execute(
        select(func.min(nodes.c.idx)).where(nodes.c.level == 0, nodes.c.idx >= size)
    ).scalar()
    if stray is not None:
        raise VerificationError(
            f"a leaf hash is stored at position {stray}, beyond the last entry ({size - 1})",
            index=size,
        )


def _check_pinned(pinned: Checkpoint, root: bytes | None, size: int) -> None:
    if pinned.size > size:
        raise VerificationError(
            f"the log has {size} entries, fewer than the trusted checkpoint's {pinned.size}: "
            "it was truncated or rolled back",
            index=size,
        )
    if root != pinned.root:
        raise VerificationError(
            f"the log's tree at size {pinned.size} differs from the trusted checkpoint: "
            "history was rewritten",
            index=0,
        )
