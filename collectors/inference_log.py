"""Inference logs (JSON Lines from OpenAI-compatible gateways and vLLM) as INFERENCE_BATCH entries.

Accepted line shape (one request a line, a JSON object):
- required: `timestamp` (RFC 3339 with an offset) or `created` (epoch seconds); `request_id`
  or `id` (string or integer); `model` (string).
- optional: `user` (the caller id: string); the request as OpenAI chat `messages` or a `prompt`
  string; the answer as `response` text or OpenAI `choices`; `usage` (`prompt_tokens`,
  `completion_tokens`); `latency_ms` (number >= 0); `status` (an HTTP status code, or a string);
  `system_fingerprint`. Any other field is kept: it is part of the line's leaf digest.
- an error: `status` >= 400 (but 451), `status` "error" or "failed", or a non-null `error`.
- a refusal: a choice with `finish_reason` "content_filter" or a non-empty `message.refusal`,
  `status` 451 or "refused".
Blank lines are skipped (they keep their number). Anything else wrong is a CollectorError that
names the file and the line; the caller appends nothing.

Content (`messages`, `prompt`, `response`, and the `message`, `text`, `delta` and `logprobs` of
each choice) never enters the log nor a leaf. With retention on, each line is encrypted with
AES-256-GCM under its caller's content key for this batch (random 96-bit nonce; associated data
binds the leaf format, the file's SHA-256 and the line number). What is encrypted is the line's
own bytes, exactly as in the file (the subject's whole request, metadata included): an access
request gets back the original line. Ciphertexts go to one content blob per batch as records:
line (8 bytes, big-endian), key id (16), nonce (12), length (4), ciphertext with tag. The
line's "content digest" is SHA-256(nonce || ciphertext with tag). A line without a caller has
no data subject to key it to: its content is not retained.

A line's leaf (see schemas/inference.py): SHA-256(0x00 || RFC 8785 JSON of {"caller": the
caller's pseudonym or null, "content": content digest or null, "line": physical line number,
"record": the line's object without `user` and without content}). Leaves are folded into the
batch's RFC 9162 root as they come (evidence/merkle.py CompactRange: O(log n) memory) and
written to the leaves blob. Memory stays constant in the file's length: counters, a log-scale
latency histogram (about 2,000 buckets at most), one entry per distinct model, system
fingerprint and caller, and the chunks in flight.

Files of 64 MiB or more are parsed by worker processes (one per core, at most four;
collectors/line_workers.py): this process cuts the file into chunks of about 2 MiB of whole
lines and sends each worker where its chunk lies, at most two chunks per worker in flight;
workers read their chunk from the same open file, parse, check, count and canonicalise each
line's record (`digest_chunk`, with orjson where it gives RFC 8785's bytes), and this process,
in file order, turns caller ids into pseudonyms (the vault), encrypts retained lines and folds
the leaves. The result is the same as with no workers (a test holds them equal).

A file is one batch unless `batch_size` splits it every N lines; all batches of a file are
appended together, atomically.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from collectors.inference_lines import (
    CHOICE_CONTENT,
    CONTENT_FIELDS,
    Digested,
    Histogram,
    Stats,
    digest_chunk,
)
from collectors.line_workers import LineWorkers, read_lines, split_lines
from evidence.blobs import BlobStore, BlobWriter
from evidence.canonical import canonical_bytes
from evidence.entry import rfc3339
from evidence.errors import CollectorError, InputError
from evidence.merkle import CompactRange, node_hash
from evidence.store import Store
from evidence.vault import ContentKey, Subject, Vault
from schemas.inference import (
    INFERENCE_BATCH,
    LEAF_FORMAT,
    BatchRange,
    Caller,
    InferenceBatchPredicate,
    Latency,
    ModelServed,
    Retention,
    Source,
    TimeRange,
    Tokens,
)
from schemas.model import MODEL_MANIFEST, MODEL_RELEASE
from schemas.statement import STATEMENT_TYPE

DEFAULT_CLASS = "logs"
DEFAULT_DAYS = 184  # six months at least (AI Act Art. 19(1), 26(6)); six calendar months <= 184 d
MAX_DAYS = 36_525  # a century: past it a retention date is no longer a date
LEAF_RECORD = struct.Struct(">Q32s")
CONTENT_HEAD = struct.Struct(">Q16s12sI")
CHUNK_BYTES = 2 << 20
PARALLEL_BYTES = 64 << 20


@dataclass(frozen=True)
class RetentionPolicy:
    """Whether prompts and completions are kept (encrypted), under which class, for how long."""

    content: bool = False
    name: str = DEFAULT_CLASS
    days: int = DEFAULT_DAYS

    @classmethod
    def of(cls, content: bool, name: str, days: int | None, *, option: str) -> RetentionPolicy:
        """The policy a command's options ask for: `days` (the option named `option`) may be left
        out for class logs only."""
        if days is None and name != DEFAULT_CLASS:
            raise InputError(
                f"{option}: give it for a retention class other than logs (class {name!r})"
            )
        return cls(content=content, name=name, days=DEFAULT_DAYS if days is None else days)

    def __post_init__(self) -> None:
        if not 1 <= self.days <= MAX_DAYS:
            raise InputError(f"retention days must be from 1 to {MAX_DAYS}, not {self.days}")
        if self.name == DEFAULT_CLASS and self.days < DEFAULT_DAYS:
            raise InputError(
                f"retention class {DEFAULT_CLASS!r} keeps logs at least {DEFAULT_DAYS} days "
                f"(six months): {self.days} is too short; name another class to keep less"
            )


def line_leaf(line: int, record: dict[str, Any], caller: str | None, content: str | None) -> bytes:
    """The leaf hash of one request line (`record` already without `user` and content)."""
    value = {"caller": caller, "content": content, "line": line, "record": record}
    return hashlib.sha256(b"\x00" + canonical_bytes(value)).digest()


# A leaf's preimage (line_leaf) from its parts: the outer object's keys are fixed ASCII and its
# values (pseudonym, hex digest, integer, canonical record) need no escaping.
_LEAF = b'\x00{"caller":%s,"content":%s,"line":%d,"record":%s}'


def split_line(obj: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(the record the leaf digests, the content to encrypt or None), without touching `obj`."""
    record = {k: v for k, v in obj.items() if k not in CONTENT_FIELDS and k != "user"}
    content = {k: obj[k] for k in CONTENT_FIELDS if k in obj}
    choices = obj.get("choices")
    if isinstance(choices, list) and choices:
        content["choices"] = choices
        record["choices"] = [
            {k: v for k, v in c.items() if k not in CHOICE_CONTENT} if isinstance(c, dict) else c
            for c in choices
        ]
    return record, (content or None)


# -- one batch ------------------------------------------------------------------------------------


@dataclass
class Batch:
    """A batch being read: its tree, its blobs being written, its counters."""

    number: int
    first_line: int
    leaves: BlobWriter
    content: BlobWriter | None
    last_line: int = 0
    tree: CompactRange = field(default_factory=CompactRange)
    stats: Stats = field(default_factory=Stats)
    # pseudonym -> this batch's key for that subject, and its cipher
    keys: dict[str, tuple[ContentKey, AESGCM]] = field(default_factory=dict)
    leaves_digest: str | None = None
    content_digest: str | None = None
    _pending: bytearray = field(default_factory=bytearray)

    def commit(self) -> None:
        self._flush()
        self.leaves_digest = self.leaves.commit()
        if self.content is not None:
            self.content_digest = self.content.commit()

    def add(self, number: int, leaf: bytes) -> None:
        """Folds a leaf into the tree's right edge (CompactRange.append without its report of
        the subtrees made, which a batch does not keep) and records it for the leaves blob."""
        tree, h, index = self.tree, leaf, self.tree.size
        while index & 1:
            h = node_hash(tree.hashes.pop(), h)
            index >>= 1
        tree.hashes.append(h)
        tree.size += 1
        self._pending += LEAF_RECORD.pack(number, leaf)
        if len(self._pending) >= 1 << 20:
            self.leaves.write(bytes(self._pending))
            self._pending.clear()
        self.last_line = number

    def write_leaves(self, records: bytes) -> None:
        """Records (LEAF_RECORD each) of leaves already folded into the tree, for the blob."""
        self._pending += records
        if len(self._pending) >= 1 << 20:
            self.leaves.write(bytes(self._pending))
            self._pending.clear()

    def _flush(self) -> None:
        if self._pending:
            self.leaves.write(bytes(self._pending))
            self._pending.clear()

    def preview(self) -> None:
        """Names the blobs as a commit would, then drops them (a dry run)."""
        self._flush()
        self.leaves_digest = self.leaves.digest()
        self.content_digest = None if self.content is None else self.content.digest()
        self.abort()

    def abort(self) -> None:
        self.leaves.abort()
        if self.content is not None:
            self.content.abort()


@dataclass(frozen=True)
class SourceFile:
    path: Path
    sha256: str
    size: int


def digest_file(path: Path) -> SourceFile:
    """The file's SHA-256 and size, read once before parsing (for dedup and the content AD)."""
    h = hashlib.sha256()
    size = 0
    try:
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
                size += len(chunk)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from exc
    return SourceFile(path, h.hexdigest(), size)


def already_ingested(store: Store, source: SourceFile) -> list[int]:
    """Entries of INFERENCE_BATCH that already record this file (by its digest)."""
    found = store.query(
        predicate_type=INFERENCE_BATCH, subject_digest=f"sha256:{source.sha256}", limit=10_000
    )
    return [e.index for e in found]


# -- reading a file -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chunk:
    """A run of whole lines of the file: the first one's number, where it lies, how many."""

    first: int
    offset: int
    length: int
    count: int  # lines, as `readlines` counts them (the file's last may lack its newline)

    def lines(self, fd: int, where: Path) -> list[bytes]:
        return read_lines(fd, self.offset, self.length, where)


def _runs(fd: int) -> Iterator[tuple[int, bytes, int]]:
    """(offset, buffer, end): the file in runs of whole lines, buffer[:end] each, of about
    CHUNK_BYTES (a longer line is a run of its own). Read with pread and never copied: the
    runs are only looked at here; whoever digests one reads it again."""
    offset, want = 0, CHUNK_BYTES
    while data := os.pread(fd, want, offset):
        end = len(data) if len(data) < want else data.rfind(b"\n") + 1  # short: the end of file
        if not end:  # one line longer than the run: read more of it
            want *= 2
            continue
        yield offset, data, end
        offset, want = offset + end, CHUNK_BYTES


@dataclass
class Reader:
    """Reads one file into batches; the vault gives pseudonyms and (with retention) keys."""

    source: SourceFile
    vault: Vault
    blobs: BlobStore
    retention: RetentionPolicy
    now: datetime
    batch_size: int | None = None
    batches: list[Batch] = field(default_factory=list)
    lines: int = 0
    workers: int = 1
    _subjects: dict[str, Subject] = field(default_factory=dict)
    _quoted: dict[str, bytes] = field(default_factory=dict)  # caller id -> b'"pseudonym"'
    _room: int = 0  # request lines the current batch still takes (0: a new batch starts)

    @property
    def expires_at(self) -> datetime:
        return self.now + timedelta(days=self.retention.days)

    def read(self, progress: Callable[[int, int], None] | None = None) -> list[Batch]:
        """Parses every line; on any error aborts the blobs written so far and re-raises."""
        try:
            self._read(progress)
        except BaseException:
            for batch in self.batches:
                batch.abort()
            raise
        if not self.batches or not any(b.tree.size for b in self.batches):
            for batch in self.batches:
                batch.abort()
            raise CollectorError(f"{self.source.path}: no request lines")
        return self.batches

    def _new_batch(self, first_line: int) -> Batch:
        content = self.blobs.writer() if self.retention.content else None
        batch = Batch(len(self.batches) + 1, first_line, self.blobs.writer(), content)
        self.batches.append(batch)
        return batch

    def _read(self, progress: Callable[[int, int], None] | None) -> None:
        where = self.source.path
        try:
            f = where.open("rb")
        except OSError as exc:
            raise InputError(f"cannot read {where}: {exc.strerror}") from exc
        done = 0
        with f:
            try:
                for chunk, (stats, digested) in self._digested(f.fileno()):
                    self._apply(f.fileno(), chunk, stats, digested)
                    done += chunk.length
                    if progress is not None:
                        progress(done, self.source.size)
            except OSError as exc:
                raise InputError(f"cannot read {where}: {exc.strerror}") from exc
        if done != self.source.size:
            raise CollectorError(f"{where} changed while it was read: ingest it again")

    def _digested(self, fd: int) -> Iterator[tuple[Chunk, tuple[Stats, list[Digested]]]]:
        """Each chunk with its `digest_chunk`: here, or in worker processes reading the file."""
        where = self.source.path
        if self.workers <= 1:
            for chunk in self._chunks(fd):
                yield chunk, digest_chunk(where, chunk.first, chunk.lines(fd, where))
            return
        asked: deque[Chunk] = deque()

        def ranges() -> Iterator[tuple[int, int, int]]:
            for chunk in self._chunks(fd):
                asked.append(chunk)
                yield chunk.first, chunk.offset, chunk.length

        with LineWorkers(fd, where, self.workers) as workers:
            for answer in workers.run(ranges()):
                yield asked.popleft(), answer

    def _chunks(self, fd: int) -> Iterator[Chunk]:
        """Runs of whole lines (about CHUNK_BYTES), cut where a batch fills up."""
        number = 1
        for offset, data, end in _runs(fd):
            if self.batch_size is None:  # one batch: a run is a chunk, its lines only counted
                count = data.count(b"\n", 0, end) + (data[end - 1] != 10)  # 10: b"\n"
                yield Chunk(number, offset, end, count)
                self.lines += count
                number += count
                continue
            lines, start = split_lines(data[:end]), 0
            while start < len(lines):
                stop, seen = _cut(lines, start, self._room or self.batch_size)
                self._room = (self._room or self.batch_size) - seen
                length = sum(map(len, lines[start:stop]))
                yield Chunk(number, offset, length, stop - start)
                self.lines += stop - start
                number, offset, start = number + stop - start, offset + length, stop

    def _apply(self, fd: int, chunk: Chunk, stats: Stats, digested: list[Digested]) -> None:
        """Folds a digested chunk into the current batch: pseudonyms, content, leaves, counts."""
        if not digested:
            return
        batch = self.batches[-1] if self.batches else None
        if batch is None or (self.batch_size and batch.tree.size >= self.batch_size):
            batch = self._new_batch(digested[0][0])
        quoted = self._quoted
        for new in stats.callers.keys() - quoted.keys():
            quoted[new] = f'"{self._subject(new).pseudonym}"'.encode()
        keep = batch.content is not None
        # line_leaf and Batch.add, inlined: this loop is the one part of a parallel ingest that is
        # serial. The fold is CompactRange.append's; node_hash is SHA-256(0x01 || left || right).
        sha256, pack, tree = hashlib.sha256, LEAF_RECORD.pack, batch.tree
        hashes, size, records = tree.hashes, tree.size, []
        lines: list[bytes] = []  # the chunk's lines, read again if a line's content is kept
        for number, caller, data, has_content in digested:
            who = b"null" if caller is None else quoted[caller]
            what = b"null"
            if keep and has_content and caller is not None:
                lines = lines or chunk.lines(fd, self.source.path)
                raw = lines[number - chunk.first]
                digest = self._encrypt(batch, number, self._subjects[caller], raw)
                what = f'"{digest}"'.encode()
            h = leaf = sha256(_LEAF % (who, what, number, data)).digest()
            index = size
            while index & 1:
                h = sha256(b"\x01" + hashes.pop() + h).digest()
                index >>= 1
            hashes.append(h)
            size += 1
            records.append(pack(number, leaf))
        tree.size = size
        batch.last_line = digested[-1][0]
        batch.write_leaves(b"".join(records))
        batch.stats.merge(stats)

    def pseudonym(self, caller: str) -> str:
        """The pseudonym of a caller id this reader has met."""
        return self._subjects[caller].pseudonym

    def _subject(self, caller: str) -> Subject:
        subject = self._subjects.get(caller)
        if subject is None:
            subject = self.vault.subject(caller, now=int(self.now.timestamp()))
            self._subjects[caller] = subject
        return subject

    def _encrypt(self, batch: Batch, number: int, subject: Subject, raw: bytes) -> str:
        pseudonym = subject.pseudonym
        found = batch.keys.get(pseudonym)
        if found is None:
            made = self.vault.new_content_key(
                subject,
                batch=f"{self.source.sha256}#{batch.number}",
                retention=self.retention.name,
                expires_at=int(self.expires_at.timestamp()),
            )
            found = batch.keys[pseudonym] = (made, AESGCM(made.key))
        key, cipher = found
        nonce, sealed = seal(cipher, self.source.sha256, number, raw)
        assert batch.content is not None
        batch.content.write(CONTENT_HEAD.pack(number, key.key_id, nonce, len(sealed)) + sealed)
        return hashlib.sha256(nonce + sealed).hexdigest()


def _cut(lines: list[bytes], start: int, room: int) -> tuple[int, int]:
    """(where the lines from `start` holding at most `room` request lines end, how many request
    lines they hold)."""
    seen = 0
    for i in range(start, len(lines)):
        if not lines[i].isspace():
            seen += 1
            if seen == room:
                return i + 1, seen
    return len(lines), seen


def associated_data(source_sha256: str, line: int) -> bytes:
    return f"{LEAF_FORMAT}|{source_sha256}|{line}".encode()


def seal(cipher: AESGCM, source_sha256: str, line: int, raw: bytes) -> tuple[bytes, bytes]:
    """AES-256-GCM of the line's own bytes; returns (nonce, ciphertext with tag)."""
    nonce = os.urandom(12)
    return nonce, cipher.encrypt(nonce, raw, associated_data(source_sha256, line))


# -- statements -----------------------------------------------------------------------------------


def resolve_models(store: Store | None, names: Iterator[str] | list[str]) -> dict[str, ModelServed]:
    """Each served name's newest logged manifest or release (as `model:` or `adapter:`)."""
    return {name: _resolve(store, name) for name in names}


def _resolve(store: Store | None, name: str) -> ModelServed:
    if store is None:
        return ModelServed(name=name, requests=0, reason="not looked up (no log: dry run)")
    candidates = [name]
    tail = name.rstrip("/").rpartition("/")[2]
    if tail and tail != name:
        candidates.append(tail)
    best = None
    for candidate in candidates:
        for kind in ("model", "adapter"):
            for ptype in (MODEL_MANIFEST, MODEL_RELEASE):
                found = store.query(
                    predicate_type=ptype, subject_name=f"{kind}:{candidate}", limit=10_000
                )
                if found and (best is None or found[-1].index > best[1].index):
                    best = (kind, found[-1])
    if best is None:
        return ModelServed(
            name=name,
            requests=0,
            reason=f"no model-manifest or model-release entry named model: or adapter:{name}",
        )
    kind, entry = best
    subjects = entry.subjects
    base = subjects[1].digest if kind == "adapter" and len(subjects) > 1 else None
    return ModelServed(
        name=name,
        requests=0,
        kind="adapter" if kind == "adapter" else "model",
        digest=subjects[0].digest,
        entry=entry.index,
        base_digest=base,
    )


def latency_of(histogram: Histogram) -> Latency:
    return Latency(
        count=histogram.count,
        p50=histogram.percentile(0.50),
        p90=histogram.percentile(0.90),
        p99=histogram.percentile(0.99),
        max=histogram.max if histogram.count else None,
    )


def batch_predicate(
    reader: Reader, batch: Batch, models: dict[str, ModelServed]
) -> InferenceBatchPredicate:
    stats, retention = batch.stats, reader.retention
    assert batch.leaves_digest is not None
    served = tuple(
        models[name].model_copy(update={"requests": count})
        for name, count in sorted(stats.models.items())
    )
    times = None
    if stats.requests:
        times = TimeRange(first=_time(stats.first), last=_time(stats.last))
    return InferenceBatchPredicate(
        observed_at=rfc3339(reader.now),
        source=Source(
            name=reader.source.path.name,
            sha256=reader.source.sha256,
            size=reader.source.size,
            lines=reader.lines,
        ),
        batch=BatchRange(
            number=batch.number,
            of=len(reader.batches),
            first_line=batch.first_line,
            last_line=batch.last_line,
        ),
        lines=batch.tree.size,
        merkle_root=batch.tree.root().hex(),
        leaves_blob=batch.leaves_digest,
        content_blob=batch.content_digest,
        time_range=times,
        requests=stats.requests,
        errors=stats.errors,
        refusals=stats.refusals,
        tokens=Tokens(prompt=stats.prompt_tokens, completion=stats.completion_tokens),
        latency_ms=latency_of(stats.latency),
        models=served,
        system_fingerprints=dict(sorted(stats.fingerprints.items())),
        callers=tuple(
            Caller(pseudonym=p, requests=n)
            for p, n in sorted((reader.pseudonym(c), n) for c, n in stats.callers.items())
        ),
        unattributed=stats.unattributed,
        retention=Retention(
            content=retention.content,
            class_=retention.name if retention.content else None,
            days=retention.days if retention.content else None,
            expires_at=rfc3339(reader.expires_at) if retention.content else None,
        ),
    )


def _time(epoch: float) -> str:
    return rfc3339(datetime.fromtimestamp(epoch, UTC))


def batch_statement(predicate: InferenceBatchPredicate) -> dict[str, Any]:
    """Subjects: the source file (by digest) and every logged model or adapter it served."""
    subjects: list[dict[str, Any]] = [
        {
            "name": f"inference-log:{predicate.source.name}",
            "digest": {"sha256": predicate.source.sha256},
        }
    ]
    for served in predicate.models:
        if served.digest is not None:
            subjects.append(
                {"name": f"{served.kind}:{served.name}", "digest": {"sha256": served.digest}}
            )
    return {
        "_type": STATEMENT_TYPE,
        "subject": subjects,
        "predicateType": INFERENCE_BATCH,
        "predicate": predicate.to_predicate(),
    }


def statements(reader: Reader, store: Store | None) -> list[dict[str, Any]]:
    """One statement per batch (blobs must be committed)."""
    names = sorted({name for b in reader.batches for name in b.stats.models})
    models = resolve_models(store, names)
    return [batch_statement(batch_predicate(reader, b, models)) for b in reader.batches]


# -- the whole ingest ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Ingested:
    """What an ingest did: the statements (appended unless a dry run), or the earlier entries."""

    statements: tuple[dict[str, Any], ...]
    first_index: int | None = None
    duplicate_of: tuple[int, ...] = ()

    @property
    def entries(self) -> list[int]:
        """The entries holding the file: those just appended, or the earlier ones."""
        if self.first_index is None:
            return list(self.duplicate_of)
        return list(range(self.first_index, self.first_index + len(self.statements)))


def default_workers(size: int) -> int:
    """Worker processes for a file of `size` bytes: none below 64 MiB, else one per core (<= 4)."""
    if size < PARALLEL_BYTES:
        return 1
    return max(1, min(4, os.cpu_count() or 1))


class _DryRun(Exception):
    def __init__(self, made: list[dict[str, Any]]) -> None:
        super().__init__("dry run")
        self.made = made


def ingest(
    store: Store,
    vault: Vault,
    blobs: BlobStore,
    path: Path,
    *,
    retention: RetentionPolicy,
    now: datetime,
    batch_size: int | None = None,
    dry_run: bool = False,
    progress: Callable[[int, int], None] | None = None,
    workers: int | None = None,
) -> Ingested:
    """Reads a log file and appends its batches atomically, with their vault keys and blobs.

    The vault transaction (new pseudonym secrets, content keys) commits only after the log
    append: a failure anywhere leaves no keys, no blobs and no entry. A crash between the append
    and the vault commit loses the new keys, which makes that content unreadable: the safe side.
    """
    if batch_size is not None and batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, not {batch_size}")
    source = digest_file(path)
    seen = already_ingested(store, source)
    if seen:
        return Ingested((), None, tuple(seen))
    chosen = workers if workers is not None else default_workers(source.size)
    reader = Reader(source, vault, blobs, retention, now, batch_size, workers=chosen)
    committed: list[Batch] = []
    try:
        with vault.transaction():
            batches = reader.read(progress)
            if dry_run:
                for batch in batches:
                    batch.preview()
                raise _DryRun(statements(reader, store))
            for batch in batches:
                batch.commit()
                committed.append(batch)
            made = statements(reader, store)
            labels = [f"{path} batch {b.number}" for b in batches]
            result = store.append(made, labels=labels)
    except _DryRun as dry:
        return Ingested(tuple(dry.made))
    except BaseException:
        for batch in reader.batches:
            batch.abort()
        for batch in committed:
            for digest in (batch.leaves_digest, batch.content_digest):
                if digest is not None:
                    blobs.delete(digest)
        raise
    return Ingested(tuple(made), result.first_index)
