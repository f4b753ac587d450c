"""The evidence store: one sequenced, signed, append-only Merkle log in SQL.

Durability contract
-------------------
An append is acknowledged when `Store.append` or `Store.append_envelopes` returns. Before it
returns, one database transaction has committed the entries (each with its leaf hash), their
subject rows, every tree node above the leaves that they complete, and a checkpoint signed over
the new tree size. SQLite commits in WAL mode with synchronous=FULL (the WAL is fsynced before
COMMIT returns); PostgreSQL commits with its default synchronous_commit=on. Hence:
- an acknowledged append survives the death of the process, a crash of the machine and a power
  cut (as far as the disk honours fsync);
- an append that was not acknowledged is wholly present or wholly absent: never an index gap, an
  entry without its tree nodes, or a tree without its checkpoint;
- a batch is atomic: all of its entries or none of them.

Sequencing
----------
Signing happens before the lock; inside it, one writer at a time reads the tree size and the
O(log n) hashes on the tree's right edge, writes the batch and signs the checkpoint. Writers in
many processes or on many hosts (PostgreSQL) therefore get consecutive indices and one tree.
A large `append` (on more than one core: see `OVERLAP_FROM` for how large) is the exception:
it checks and signs its statements under the lock, chunk by chunk in a helper process
(evidence/signing_process.py) while it inserts the chunks already signed, because in one
process signing and writing cannot overlap. Other writers wait for the whole batch meanwhile.

Replays
-------
An envelope signed elsewhere (`append_envelopes`) whose signed statement (payload type and
payload) the log already holds is refused with `DuplicateEntry` naming the entry that holds it,
and the whole batch with it, whatever signatures either envelope carries: re-signing or adding
a signature does not make new evidence. The check is a primary-key search per envelope
(evidence/lookup.py) made inside the lock, so of two identical envelopes appended at the same
instant exactly one lands. Statements the log signs itself (`append`) are not checked: signing
the same statement again is a new observation by the log.
"""

from __future__ import annotations

import hashlib
import os
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import ValidationError
from sqlalchemy import Connection, Engine, and_, func, insert, select
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from evidence import lookup
from evidence.canonical import canonical_bytes, parse_json
from evidence.dsse import (
    IN_TOTO_PAYLOAD_TYPE,
    Envelope,
    content_hash,
    envelope_bytes,
    pae,
    verify_envelope,
)
from evidence.engine import WRITE, make_engine, take_sequencer_lock
from evidence.entry import (
    Entry,
    Metadata,
    Subject,
    from_us,
    quick_metadata,
    statement_metadata,
    to_us,
)
from evidence.errors import (
    AnnexError,
    AuthorityError,
    ConfigError,
    DuplicateEntry,
    InputError,
    SigningUnavailable,
    StoreError,
    TrustError,
    VerificationError,
)
from evidence.keys import Signer, TrustIndex
from evidence.merkle import (
    CompactRange,
    Node,
    consistency_ranges,
    fold,
    inclusion_ranges,
    leaf_hash,
)
from evidence.merkle import range_nodes as _range_nodes
from evidence.note import Checkpoint, TlogProof, check_key_name, sign_checkpoint
from evidence.parallel import map_chunked, workers
from evidence.signing_process import SigningProcess
from evidence.tables import (
    add_missing_indexes,
    checkpoints,
    create_schema,
    entries,
    insert_rows,
    lookup_recent,
    meta,
    nodes,
    param_mark,
    subjects,
)
from schemas.statement import Statement

SCHEMA_VERSION = "1"

# From this many statements `append` signs in a helper process while it writes (batches of a
# thousand half again as fast). Starting the helper costs some 70 ms, once a store: an append of
# OVERLAP_FROM starts it, and so does a store that has signed BUSY_AFTER statements in smaller
# batches (a service, a sweep); once it runs, batches of OVERLAP_RUNNING use it too.
OVERLAP_FROM = 512
OVERLAP_RUNNING = 64
BUSY_AFTER = 4096
_SIGN_CHUNK = 128  # statements a chunk at most
_FIRST_CHUNK = 16
_CHUNKS_AHEAD = 2  # chunks sent to the signer before the first is collected


def sign_chunks(n: int) -> list[range]:
    """Chunks of `n` statements, small at both ends and `_SIGN_CHUNK` long in between: while
    the first is signed the writer has nothing to insert, and while it inserts the last the
    helper has nothing to sign."""
    head: list[int] = []
    tail: list[int] = []
    size, left = _FIRST_CHUNK, n
    while left > 0:
        for end in (head, tail):
            take = min(size, left)
            if take:
                end.append(take)
                left -= take
        size = min(2 * size, _SIGN_CHUNK)
    out, start = [], 0
    for size in head + tail[::-1]:
        out.append(range(start, start + size))
        start += size
    return out


@dataclass(frozen=True)
class Prepared:
    """An entry ready for the sequencer: signed, canonical, hashed."""

    envelope: bytes
    leaf: bytes
    content: bytes  # SHA-256 of the signed PAE: what a replay is recognised by
    keyids: tuple[str, ...]
    metadata: Metadata
    label: str  # where it came from, for error messages


@dataclass(frozen=True)
class SignedCheckpoint:
    size: int
    root: bytes
    note: str
    issued_at: datetime


@dataclass(frozen=True)
class AppendResult:
    first_index: int
    leaf_hashes: tuple[bytes, ...]
    checkpoint: SignedCheckpoint

    @property
    def indices(self) -> range:
        return range(self.first_index, self.first_index + len(self.leaf_hashes))


@dataclass(frozen=True)
class ConsistencyProof:
    old_size: int
    new_size: int
    old_root: bytes
    new_root: bytes
    hashes: tuple[bytes, ...]


def check_statement(obj: Any, *, where: str) -> Metadata:
    """Validates an in-toto statement; raises InputError naming the field that is wrong."""
    quick = quick_metadata(obj)
    if quick is not None:
        return quick
    try:
        Statement.model_validate(obj)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise InputError(f"{where}: {loc}: {first['msg']}") from None
    return statement_metadata(obj)


def check_statements(
    statements: Sequence[Any], labels: Sequence[str]
) -> list[tuple[bytes, Metadata, str]]:
    """Each statement's canonical bytes and derived columns, with its label; raises InputError."""
    return [
        (canonical_bytes(obj, what=where), check_statement(obj, where=where), where)
        for obj, where in zip(statements, labels, strict=True)
    ]


def _signed(
    payload: bytes, message: bytes, metadata: Metadata, keyid: str, sig: bytes, where: str
) -> Prepared:
    """The prepared entry of a statement the log signed; `message` is the PAE it signed."""
    data = envelope_bytes(payload, keyid, sig)
    content = hashlib.sha256(message).digest()
    return Prepared(data, leaf_hash(data), content, (keyid,), metadata, where)


def prepare_statements(
    statements: Sequence[Any], signer: Signer, labels: Sequence[str]
) -> list[Prepared]:
    """Checks, canonicalises and signs statements (signatures on every core)."""
    checked = check_statements(statements, labels)
    messages = [pae(IN_TOTO_PAYLOAD_TYPE, p) for p, _, _ in checked]
    sigs = map_chunked(signer.sign, messages)
    return [
        _signed(payload, message, metadata, signer.keyid, sig, where)
        for (payload, metadata, where), message, sig in zip(checked, messages, sigs, strict=True)
    ]


def prepare_envelopes(
    envelopes: Sequence[Envelope], trust: TrustIndex, labels: Sequence[str]
) -> list[Prepared]:
    """Checks envelopes signed elsewhere: well-formed statements, signed by trusted keys."""
    metadata = []
    for envelope, where in zip(envelopes, labels, strict=True):
        if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE:
            raise InputError(f"{where}: payloadType must be {IN_TOTO_PAYLOAD_TYPE}")
        statement = parse_json(envelope.payload, what=f"{where} payload")
        metadata.append(check_statement(statement, where=f"{where} payload"))

    def check(item: tuple[Envelope, str, str]) -> tuple[str, ...]:
        envelope, kind, where = item
        try:
            verify_envelope(envelope, lambda k: trust.entry_signer(k, None, kind))
        except AuthorityError as exc:
            raise AuthorityError(f"{where}: {exc}") from None
        except VerificationError as exc:
            raise TrustError(f"{where}: {exc}") from None
        return tuple(s.keyid for s in envelope.signatures)

    kinds = [m.predicate_type for m in metadata]
    keyids = map_chunked(check, list(zip(envelopes, kinds, labels, strict=True)))
    out = []
    for envelope, derived, known, where in zip(envelopes, metadata, keyids, labels, strict=True):
        data = envelope.canonical()
        out.append(Prepared(data, leaf_hash(data), content_hash(envelope), known, derived, where))
    _refuse_repeats(out)
    return out


def check_entry_signatures(entry: Entry, trust: TrustIndex) -> str:
    """Checks a stored entry's signatures with authority (each by a key that may sign its
    statement's type at its index); returns the first signer's keyid, or raises."""
    try:
        envelope = entry.envelope
        kind = entry.statement["predicateType"]
    except (AnnexError, ValueError, KeyError, TypeError):
        raise VerificationError(
            f"entry {entry.index}: its envelope cannot be read", index=entry.index
        ) from None
    try:
        return verify_envelope(envelope, lambda k: trust.entry_signer(k, entry.index, kind))
    except VerificationError as exc:
        raise type(exc)(f"entry {entry.index}: {exc}", index=entry.index) from None


def _check_signer(trust: TrustIndex, keyid: str, index: int, kind: str, where: str) -> None:
    """Raises unless `keyid` may sign a statement of type `kind` as entry `index`: TrustError
    for a key not valid there, AuthorityError for one whose role may not sign that type."""
    try:
        trust.entry_signer(keyid, index, kind)
    except AuthorityError as exc:
        raise AuthorityError(f"{where}: {exc}", index=index) from None
    except VerificationError as exc:
        raise TrustError(f"{where}: {exc}") from None


def _refuse_repeats(batch: Sequence[Prepared]) -> None:
    """A batch that holds one statement twice (however signed) is refused before the lock."""
    first: dict[bytes, str] = {}
    for p in batch:
        if p.content in first:
            raise InputError(
                f"{p.label} repeats the signed statement of {first[p.content]}: a batch holds "
                "each statement once"
            )
        first[p.content] = p.label


class Keys(Protocol):
    """Where a writable store gets its signing key and trust file, re-read after a rotation."""

    def signer(self) -> Signer: ...

    def trust(self) -> TrustIndex: ...


@dataclass(frozen=True)
class FixedKeys:
    """Keys that never change: for tests and short-lived tools."""

    log_signer: Signer
    trust_index: TrustIndex

    def signer(self) -> Signer:
        return self.log_signer

    def trust(self) -> TrustIndex:
        return self.trust_index


class Store:
    """Open with `Store.open` (an existing log) or `Store.create` (a new one)."""

    def __init__(
        self,
        engine: Engine,
        origin: str,
        *,
        keys: Keys | None = None,
        trust: Callable[[], TrustIndex] | None = None,
    ) -> None:
        self.engine = engine
        self.origin = origin
        self.keys = keys
        self._trust = trust  # a reader's trust file (a writer has it from `keys`)
        self._authority: dict[tuple[int, bytes, int], bool] = {}
        self._signing: SigningProcess | None = None  # started by the first large append
        self._signed = 0  # statements this store signed without the helper
        self._helper_unavailable = ""  # why the helper could not start, once it could not
        self._lookup_ready = False  # known once seen: a writer may build them while this reads

    # -- opening -------------------------------------------------------------------------------

    @classmethod
    def create(cls, url: str, origin: str, **kwargs: Any) -> Store:
        check_key_name(origin)
        engine = make_engine(url)
        try:
            create_schema(engine)
            with engine.connect().execution_options(**{WRITE: True}) as conn, conn.begin():
                existing = conn.execute(select(meta.c.value).where(meta.c.key == "origin"))
                found = existing.scalar_one_or_none()
                if found is not None:
                    raise ConfigError(f"the database already holds the Annex log {found!r}")
                conn.execute(
                    insert(meta),
                    [
                        {"key": "origin", "value": origin},
                        {"key": "schema_version", "value": SCHEMA_VERSION},
                        {"key": lookup.CONTENT_META, "value": "1"},
                    ],
                )
        except OperationalError as exc:
            raise StoreError(f"cannot create the log database: {exc.orig}") from exc
        return cls(engine, origin, **kwargs)

    @classmethod
    def open(cls, url: str, **kwargs: Any) -> Store:
        engine = make_engine(url, read_only=kwargs.get("keys") is None)
        no_log = f"no Annex log in {engine.url!r}: run `annex init` first"
        try:
            conn = engine.connect()
        except (OperationalError, DBAPIError) as exc:
            engine.dispose()
            if engine.dialect.name == "sqlite":  # no file: no log there yet
                raise ConfigError(no_log) from exc
            # a server that cannot be reached: no advice to create a log that may well exist
            raise StoreError(f"cannot reach the database {engine.url!r}: {exc.orig}") from None
        try:
            with conn:
                rows = {r.key: r.value for r in conn.execute(select(meta.c.key, meta.c.value))}
        except (OperationalError, DBAPIError) as exc:
            raise ConfigError(no_log) from exc
        if "origin" not in rows:
            raise ConfigError(no_log)
        if rows.get("schema_version") != SCHEMA_VERSION:
            raise ConfigError(f"log schema {rows.get('schema_version')} is not supported")
        store = cls(engine, rows["origin"], **kwargs)
        if store.keys is not None:  # a writer brings an older log's indexes up to date
            try:
                add_missing_indexes(engine)
                lookup.ensure(engine)
            except (OperationalError, DBAPIError) as exc:
                raise StoreError(f"cannot add the log's indexes: {exc.orig}") from exc
            store._lookup_ready = True
        return store

    @property
    def lookup_ready(self) -> bool:
        """Whether the log has its lookup tables (evidence/lookup.py). A log made before them
        gets them from its next writer, so a reader asks again until it has seen them."""
        if not self._lookup_ready:
            with self.engine.connect() as conn:
                self._lookup_ready = lookup.present(conn)
        return self._lookup_ready

    def trust(self) -> TrustIndex:
        """The trust file that decisions on this log's entries are checked against."""
        if self.keys is not None:
            return self.keys.trust()
        if self._trust is None:
            raise ConfigError("this store was opened without a trust file: nothing can be judged")
        return self._trust()

    def signed_by_authority(self, entry: Entry) -> bool:
        """Whether every signature on `entry` is by a key that may sign its predicate type at
        its position, and verifies: what decides (holds, reports) reads only such entries.
        Answers are kept for this store's life, by entry and leaf hash."""
        trust = self.trust()
        key = (entry.index, entry.leaf_hash, id(trust))
        known = self._authority.get(key)
        if known is None:
            try:
                check_entry_signatures(entry, trust)
                known = True
            except VerificationError:
                known = False
            if len(self._authority) > 100_000:
                self._authority.clear()
            self._authority[key] = known
        return known

    def close(self) -> None:
        self._stop_signing_process()
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- appending -----------------------------------------------------------------------------

    def _writer(self) -> tuple[Signer, TrustIndex]:
        if self.keys is None:
            raise ConfigError("this store was opened read-only: no signing key or trust file")
        return self.keys.signer(), self.keys.trust()

    def append(
        self, statements: Sequence[Mapping[str, Any]], *, labels: Sequence[str] | None = None
    ) -> AppendResult:
        """Signs statements with the log key and appends them as one atomic batch.

        `labels` name where each statement came from, for error messages (e.g. "file line 3").
        """
        signer, _ = self._writer()
        names = labels or [f"statement {i + 1}" for i in range(len(statements))]
        if self._overlap(len(statements)):
            try:
                return self._append_overlapped(statements, names)
            except SigningUnavailable as exc:  # nothing was appended: sign here from now on
                self._helper_unavailable = str(exc)
        self._signed += len(statements)
        batch = prepare_statements(statements, signer, names)
        return self._commit(lambda _size: batch)

    def append_envelopes(
        self,
        envelopes: Sequence[Envelope],
        *,
        labels: Sequence[str] | None = None,
        inside: Callable[[int], None] | None = None,
    ) -> AppendResult:
        """Appends envelopes signed elsewhere (by keys in the trust file that may sign them).

        `inside(size)` runs under the sequencer lock before anything is written, and may raise
        to append nothing (a check that must hold across processes).
        """
        _, trust = self._writer()
        names = labels or [f"envelope {i + 1}" for i in range(len(envelopes))]
        batch = prepare_envelopes(envelopes, trust, names)

        def at(size: int) -> list[Prepared]:
            if inside is not None:
                inside(size)
            return batch

        return self._commit(at, refuse_logged=True)

    def append_locked(
        self,
        build: Callable[[int], Sequence[Mapping[str, Any]]],
        *,
        label: Callable[[int], str] | None = None,
    ) -> AppendResult:
        """Appends statements built inside the sequencer lock from the current tree size.

        For key events, whose content (the position a key starts or stops signing at) is only
        known under the lock, and for checks that must hold across processes (this evidence is
        not logged yet); `build` may raise to append nothing, and may change the key files,
        which are re-read afterwards. `label(i)` names the i-th statement built, for errors.
        """

        def inside(size: int) -> list[Prepared]:
            statements = build(size)
            signer, _ = self._writer()
            name = label or (lambda i: f"statement {i + 1}")
            return prepare_statements(statements, signer, [name(i) for i in range(len(statements))])

        return self._commit(inside)

    def _commit(
        self, batch_at: Callable[[int], list[Prepared]], *, refuse_logged: bool = False
    ) -> AppendResult:
        def run(conn: Connection, size: int) -> AppendResult:
            batch = batch_at(size)
            if not batch:
                raise InputError("nothing to append: the batch is empty")
            if refuse_logged:
                _refuse_logged(conn, batch)
            signer, trust = self._writer()  # re-read inside the lock: a rotation may have happened
            self._check_windows(trust, signer, size, batch)
            rows = _Rows(self._right_edge(conn, size))
            rows.add(batch)
            rows.insert(conn)
            return self._finish(conn, rows, signer)

        return self._locked(run)

    def _locked(self, run: Callable[[Connection, int], AppendResult]) -> AppendResult:
        """Runs `run(conn, tree size)` in one write transaction under the sequencer lock."""
        try:
            with (
                self.engine.connect().execution_options(**{WRITE: True}) as conn,
                conn.begin(),
            ):
                take_sequencer_lock(conn)
                return run(conn, log_size(conn))
        except IntegrityError as exc:
            raise StoreError(f"append refused by the database: {exc.orig}") from exc
        except OperationalError as exc:
            raise StoreError(f"append failed: {exc.orig}") from exc

    def _append_overlapped(
        self, statements: Sequence[Mapping[str, Any]], labels: Sequence[str]
    ) -> AppendResult:
        """`append` of a large batch: signs in a helper process while this one writes.

        Chunk k+2 is checked and sent to the signer, and chunk k inserted, while the helper
        signs chunk k+1. All of it happens under the sequencer lock, in the one transaction, so
        a statement found bad halfway rolls back the chunks already inserted.
        """

        def run(conn: Connection, size: int) -> AppendResult:
            signer, trust = self._writer()
            self._check_windows(trust, signer, size, [])  # the log key; entries chunk by chunk
            rows = _Rows(self._right_edge(conn, size))
            helper = self._signing_process(signer)
            chunks = sign_chunks(len(statements))
            sent: deque[tuple[list[tuple[bytes, Metadata, str]], list[bytes]]] = deque()

            def send(chunk: range) -> None:
                start, end = chunk.start, chunk.stop
                checked = check_statements(statements[start:end], labels[start:end])
                for offset, (_, metadata, where) in enumerate(checked):
                    kind = metadata.predicate_type
                    _check_signer(trust, signer.keyid, size + start + offset, kind, where)
                messages = [pae(IN_TOTO_PAYLOAD_TYPE, payload) for payload, _, _ in checked]
                helper.submit(messages)
                sent.append((checked, messages))

            try:
                for chunk in chunks[:_CHUNKS_AHEAD]:
                    send(chunk)
                for k in range(len(chunks)):
                    sigs = helper.collect()
                    if k + _CHUNKS_AHEAD < len(chunks):
                        send(chunks[k + _CHUNKS_AHEAD])
                    rows.add(
                        [
                            _signed(payload, message, metadata, signer.keyid, sig, where)
                            for ((payload, metadata, where), message), sig in zip(
                                zip(*sent.popleft(), strict=True), sigs, strict=True
                            )
                        ]
                    )
                    rows.insert(conn)
            except BaseException:
                self._stop_signing_process()  # it may hold chunks nobody will collect
                raise
            return self._finish(conn, rows, signer)

        return self._locked(run)

    def _overlap(self, count: int) -> bool:
        """Whether an append of `count` statements signs in the helper process."""
        if count < OVERLAP_RUNNING or workers() == 1 or self._helper_unavailable:
            return False
        running = self._signing is not None and self._signing.owner_pid == os.getpid()
        return running or count >= OVERLAP_FROM or self._signed >= BUSY_AFTER

    def _signing_process(self, signer: Signer) -> SigningProcess:
        helper = self._signing
        if helper is not None and helper.owner_pid != os.getpid():
            helper = self._signing = None  # this process was forked: the helper is the parent's
        if helper is not None and (helper.public_bytes != signer.public_bytes or not helper.alive):
            self._stop_signing_process()  # the log key was rotated, or the helper died
            helper = None
        if helper is None:
            helper = self._signing = SigningProcess(signer.private_key)
        return helper

    def _stop_signing_process(self) -> None:
        helper, self._signing = self._signing, None
        if helper is not None and helper.owner_pid == os.getpid():
            helper.close()

    def _finish(self, conn: Connection, rows: _Rows, signer: Signer) -> AppendResult:
        """Signs and stores the checkpoint over the tree the batch's rows made."""
        tree = rows.tree
        lookup.merge_if_due(conn, rows.first_index, tree.size)
        root = tree.root()
        head = Checkpoint(self.origin, tree.size, root)
        note = sign_checkpoint(head, signer, rows.now_us // 1_000_000)
        conn.execute(
            insert(checkpoints),
            {"size": tree.size, "root": root, "note": note, "issued_at_us": rows.now_us},
        )
        return AppendResult(
            rows.first_index,
            tuple(rows.leaves),
            SignedCheckpoint(tree.size, root, note, from_us(rows.now_us)),
        )

    @staticmethod
    def _check_windows(
        trust: TrustIndex, signer: Signer, size: int, batch: Sequence[Prepared]
    ) -> None:
        """The log key may sign the checkpoint after the batch, and the signers of each entry
        may sign its predicate type at its position (entry size + i)."""
        last = size + len(batch)
        log_key = trust.get(signer.keyid)
        if not log_key.signs_checkpoint(last):
            raise TrustError(f"log key {signer.keyid[:16]} is {log_key.status}: it cannot sign")
        for offset, p in enumerate(batch):
            for keyid in p.keyids:
                _check_signer(trust, keyid, size + offset, p.metadata.predicate_type, p.label)

    def _right_edge(self, conn: Connection, size: int) -> CompactRange:
        edge = _range_nodes(0, size) if size else []
        found = self._fetch_nodes(conn, edge)
        return CompactRange(size, [found[n] for n in edge])

    # -- reading -------------------------------------------------------------------------------

    def size(self) -> int:
        with self.engine.connect() as conn:
            return log_size(conn)

    def get(self, index: int) -> Entry:
        check_position(index, "entry")
        found = self._entries(entries.c.idx == index, limit=1)
        if not found:
            raise InputError(f"no entry {index}: the log holds {self.size()} entries")
        return found[0]

    def query(
        self,
        *,
        predicate_type: str | None = None,
        subject_digest: str | None = None,
        subject_name: str | None = None,
        logged_since: datetime | None = None,
        logged_until: datetime | None = None,
        observed_since: datetime | None = None,
        observed_until: datetime | None = None,
        after: int | None = None,
        limit: int = 100,
    ) -> list[Entry]:
        """Entries in index order matching every given filter; `after` is the cursor."""
        for what, text in (
            ("predicate type", predicate_type),
            ("subject digest", subject_digest),
            ("subject name", subject_name),
        ):
            if text is not None and "\x00" in text:  # PostgreSQL refuses it, SQLite takes it
                raise InputError(f"the {what} to search for holds a NUL character")
        conds: list[Any] = []
        if predicate_type is not None:
            conds.append(entries.c.predicate_type == predicate_type)
        if subject_digest is not None or subject_name is not None:
            conds.append(
                entries.c.idx.in_(
                    _subject_filter(subject_digest, subject_name, indexed=self.lookup_ready)
                )
            )
        for column, bound, op in (
            (entries.c.logged_at_us, logged_since, "ge"),
            (entries.c.logged_at_us, logged_until, "lt"),
            (entries.c.observed_at_us, observed_since, "ge"),
            (entries.c.observed_at_us, observed_until, "lt"),
        ):
            if bound is not None:
                us = to_us(bound)
                conds.append(column >= us if op == "ge" else column < us)
        if after is not None:
            conds.append(entries.c.idx > check_position(after, "cursor", low=-1))
        return self._entries(and_(True, *conds), limit=limit)

    def _entries(self, where: Any, *, limit: int) -> list[Entry]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(entries).where(where).order_by(entries.c.idx).limit(limit)
            ).all()
            if not rows:
                return []
            subject_rows = conn.execute(
                select(subjects)
                .where(subjects.c.entry_idx.in_([r.idx for r in rows]))
                .order_by(subjects.c.entry_idx, subjects.c.position)
            ).all()
        by_entry: dict[int, list[Subject]] = {}
        for s in subject_rows:
            by_entry.setdefault(s.entry_idx, []).append(Subject(s.name, s.algorithm, s.digest))
        return [
            Entry(
                index=r.idx,
                leaf_hash=r.leaf_hash,
                envelope_bytes=r.envelope,
                keyid=r.keyid,
                metadata=Metadata(
                    r.predicate_type, tuple(by_entry.get(r.idx, ())), r.observed_at_us
                ),
                logged_at=from_us(r.logged_at_us),
            )
            for r in rows
        ]

    def export(self, start: int = 0, end: int | None = None) -> Iterable[tuple[int, bytes, bytes]]:
        """(index, envelope bytes, leaf hash) for start <= index < end, streamed."""
        check_position(start, "the first entry")
        if end is not None and check_position(end, "the end") < start:
            raise InputError(f"the end ({end}) is before the first entry ({start})")
        cond = entries.c.idx >= start
        if end is not None:
            cond = and_(cond, entries.c.idx < end)
        with self.engine.connect() as conn:
            if conn.dialect.name == "postgresql":  # a server-side cursor lives in a transaction
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            result = conn.execution_options(yield_per=1000).execute(
                select(entries.c.idx, entries.c.envelope, entries.c.leaf_hash)
                .where(cond)
                .order_by(entries.c.idx)
            )
            for row in result:
                yield row.idx, row.envelope, row.leaf_hash

    # -- checkpoints and proofs ----------------------------------------------------------------

    def checkpoint(self, size: int | None = None) -> SignedCheckpoint:
        """The latest signed checkpoint, or the one issued at exactly `size` entries."""
        with self.engine.connect() as conn:
            return self._checkpoint(conn, size)

    def _checkpoint(self, conn: Connection, size: int | None) -> SignedCheckpoint:
        query = select(checkpoints)
        if size is not None:
            check_position(size, "tree size")
        if size is None:
            query = query.order_by(checkpoints.c.size.desc()).limit(1)
        else:
            query = query.where(checkpoints.c.size == size)
        row = conn.execute(query).first()
        if row is None and size is not None:
            sizes = self._nearby_checkpoints(conn, size)
            raise InputError(
                f"no checkpoint was issued at tree size {size}; nearest: {sizes or 'none'}"
            )
        if row is None:
            raise InputError("the log is empty: no checkpoint has been issued yet")
        return SignedCheckpoint(row.size, row.root, row.note, from_us(row.issued_at_us))

    @staticmethod
    def _nearby_checkpoints(conn: Connection, size: int) -> str:
        below = conn.execute(
            select(func.max(checkpoints.c.size)).where(checkpoints.c.size < size)
        ).scalar_one()
        above = conn.execute(
            select(func.min(checkpoints.c.size)).where(checkpoints.c.size > size)
        ).scalar_one()
        return ", ".join(str(s) for s in (below, above) if s is not None)

    def inclusion_proof(self, index: int, tree_size: int | None = None) -> TlogProof:
        """A C2SP tlog-proof of entry `index` in the tree of a signed checkpoint."""
        return self.inclusion_proofs([index], tree_size)[0]

    def inclusion_proofs(
        self, indices: Sequence[int], tree_size: int | None = None
    ) -> list[TlogProof]:
        """Proofs of several entries in one signed tree (a batch just appended, say): one read
        of the checkpoint and one of the hashes they need, shared nodes read once."""
        with self.engine.connect() as conn:
            cp = self._checkpoint(conn, tree_size)
            for index in indices:
                if not 0 <= index < cp.size:
                    raise InputError(f"entry {index} is not in the tree of size {cp.size}")
            plans = [inclusion_ranges(index, cp.size) for index in indices]
            hashes = self._range_hashes(conn, [r for plan in plans for r in plan])
        proofs, start = [], 0
        for index, plan in zip(indices, plans, strict=True):
            proofs.append(TlogProof(index, tuple(hashes[start : start + len(plan)]), cp.note))
            start += len(plan)
        return proofs

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> ConsistencyProof:
        check_position(old_size, "old size")
        if new_size is not None:
            check_position(new_size, "new size")
        with self.engine.connect() as conn:
            size = log_size(conn)
            new = size if new_size is None else new_size
            if not 0 < old_size <= new <= size:
                raise InputError(
                    f"need 0 < old size ({old_size}) <= new size ({new}) <= log size ({size})"
                )
            ranges = [(0, old_size), (0, new), *consistency_ranges(old_size, new)]
            old_root, new_root, *hashes = self._range_hashes(conn, ranges)
        return ConsistencyProof(old_size, new, old_root, new_root, tuple(hashes))

    def root(self, size: int) -> bytes:
        check_position(size, "tree size")
        with self.engine.connect() as conn:
            return self._range_hashes(conn, [(0, size)])[0]

    def _range_hashes(self, conn: Connection, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        parts = [_range_nodes(lo, hi) for lo, hi in ranges]
        found = self._fetch_nodes(conn, [n for part in parts for n in part])
        return [fold([found[n] for n in part]) for part in parts]

    def _fetch_nodes(self, conn: Connection, wanted: Sequence[Node]) -> dict[Node, bytes]:
        """Reads stored subtree hashes in one query; a missing one means a damaged database.

        A leaf's hash (level 0) is its entry's leaf_hash: logs keep no level-0 tree nodes since
        that row cost every append a quarter of its inserts (logs made before still hold them,
        unread). Higher levels come from tree_nodes.
        """
        if not wanted:
            return {}
        keys = sorted(set(wanted))
        # One primary-key search a node. Written for the driver: SQLite scans the table for a
        # row-value IN list, and building the same OR in SQLAlchemy costs more than the query.
        mark = param_mark(conn)
        found: dict[Node, bytes] = {}
        for start in range(0, len(keys), _LOOKUP_CHUNK):
            chunk = keys[start : start + _LOOKUP_CHUNK]  # two parameters a node at most
            leaves = tuple(n.index for n in chunk if n.level == 0)
            inner = [n for n in chunk if n.level > 0]
            parts: list[str] = []
            params: list[int] = []
            if leaves:
                marks = ", ".join([mark] * len(leaves))
                parts.append(
                    f"SELECT 0 AS level, idx, leaf_hash AS hash FROM {entries.name} "
                    f"WHERE idx IN ({marks})"
                )
                params += leaves
            if inner:
                where = " OR ".join([f"(level = {mark} AND idx = {mark})"] * len(inner))
                parts.append(f"SELECT level, idx, hash FROM {nodes.name} WHERE {where}")
                params += [v for n in inner for v in (n.level, n.index)]
            rows = conn.exec_driver_sql(" UNION ALL ".join(parts), tuple(params)).all()
            found.update((Node(r.level, r.idx), r.hash) for r in rows)
        missing = [n for n in keys if n not in found]
        if missing:
            raise StoreError(f"tree node {missing[0]} is missing: the database is damaged")
        return found


class _Rows:
    """The rows one append writes, built entry by entry as the tree grows; inserted in parts."""

    def __init__(self, tree: CompactRange) -> None:
        self.tree = tree
        self.first_index = tree.size
        self.now_us = to_us(datetime.now(UTC))  # logged_at of every entry of the batch
        self.leaves: list[bytes] = []
        self._entries: list[tuple[Any, ...]] = []
        self._subjects: list[tuple[Any, ...]] = []
        self._nodes: list[tuple[Any, ...]] = []
        self._keys: list[tuple[int, int, int]] = []

    def add(self, batch: Sequence[Prepared]) -> None:
        for p in batch:
            index = self.tree.size
            derived = p.metadata
            self._entries.append(
                (
                    index,
                    p.leaf,
                    p.envelope,
                    p.keyids[0],
                    derived.predicate_type,
                    derived.observed_at_us,
                    self.now_us,
                )
            )
            self._subjects.extend(
                (index, pos, s.name, s.algorithm, s.digest)
                for pos, s in enumerate(derived.subjects)
            )
            lookup.entry_keys(index, p.content, (s.digest for s in derived.subjects), self._keys)
            # the leaf itself comes first and is not stored: its hash is the entry's leaf_hash
            for node, h in self.tree.append(p.leaf)[1:]:
                self._nodes.append((node.level, node.index, h))
            self.leaves.append(p.leaf)

    def insert(self, conn: Connection) -> None:
        """Inserts the rows added since the last call."""
        for table, columns, rows in (
            (entries, ENTRY_COLUMNS, self._entries),
            (subjects, SUBJECT_COLUMNS, self._subjects),
            (nodes, NODE_COLUMNS, self._nodes),
            (lookup_recent, lookup.COLUMNS, self._keys),
        ):
            if rows:
                insert_rows(conn, table, columns, rows)
                rows.clear()


# The columns an append writes, in the order its rows hold them.
ENTRY_COLUMNS = (
    "idx",
    "leaf_hash",
    "envelope",
    "keyid",
    "predicate_type",
    "observed_at_us",
    "logged_at_us",
)
SUBJECT_COLUMNS = ("entry_idx", "position", "name", "algorithm", "digest")
NODE_COLUMNS = ("level", "idx", "hash")


_LOOKUP_CHUNK = 5000  # leaf hashes a query: well under SQLite's 32,766 bound parameters


def _refuse_logged(conn: Connection, batch: Sequence[Prepared]) -> None:
    """Raises DuplicateEntry for the first envelope of the batch whose signed statement (payload
    type and payload) the log holds, whatever signatures either carries.

    Runs under the sequencer lock: two primary-key searches of the lookup tables per envelope
    (evidence/lookup.py), then the content of each candidate entry recomputed from its stored
    envelope and compared whole. Written for the driver, as `_fetch_nodes` is: SQLAlchemy's
    expanding IN parameters cost some forty times more than the query on a batch of a thousand.
    """
    mark = param_mark(conn)
    logged: dict[bytes, int] = {}
    for start in range(0, len(batch), _LOOKUP_CHUNK):
        wanted = {p.content for p in batch[start : start + _LOOKUP_CHUNK]}
        keys = tuple({lookup.content_key(content) for content in wanted})
        candidates = lookup.candidates_sql(lookup.CONTENT, len(keys), mark)
        rows = conn.exec_driver_sql(
            f"SELECT idx, envelope FROM {entries.name} WHERE idx IN ({candidates})", keys + keys
        ).all()
        for idx, envelope in rows:
            content = lookup.stored_content(idx, bytes(envelope))
            if content in wanted:
                logged[content] = min(idx, logged.get(content, idx))
    found = {offset: logged[p.content] for offset, p in enumerate(batch) if p.content in logged}
    if found:
        first = min(found)
        index = found[first]
        raise replay_refused(batch[first].label, index, logged=found)


def replay_refused(
    label: str, index: int, *, logged: dict[int, int] | None = None
) -> DuplicateEntry:
    """The refusal of an envelope whose signed statement entry `index` already holds."""
    return DuplicateEntry(
        f"{label} is already in the log at entry {index} (the same signed statement): "
        "nothing appended",
        index=index,
        logged=logged,
    )


MAX_POSITION = 2**63 - 2  # a BIGINT holds 2**63 - 1, and an exclusive end is one past


def check_position(value: int, what: str, *, low: int = 0) -> int:
    """`value` as a log position, or InputError: a number past what the databases hold would
    otherwise reach SQL and fail there, as a traceback."""
    if not low <= value <= MAX_POSITION:
        raise InputError(f"{what} {value} is not a log position (0 to {MAX_POSITION})")
    return value


def log_size(conn: Connection) -> int:
    """The number of entries, read from the primary key's end (O(log n))."""
    value: int = conn.execute(select(func.coalesce(func.max(entries.c.idx) + 1, 0))).scalar_one()
    return value


def _subject_filter(digest: str | None, name: str | None, *, indexed: bool = True) -> Any:
    """Entry indices with a subject of this digest ("alg:hex" or hex) and/or name; `indexed`
    when the log has its lookup tables (evidence/lookup.py), else the subjects are scanned."""
    conds = []
    if digest is not None:
        algorithm, sep, value = digest.rpartition(":")
        value = value.lower()
        conds.append(subjects.c.digest == value)
        if indexed:
            conds.append(subjects.c.entry_idx.in_(lookup.digest_candidates(value)))
        if sep:
            conds.append(subjects.c.algorithm == algorithm)
    if name is not None:
        conds.append(subjects.c.name == name)
    return select(subjects.c.entry_idx).where(*conds)
