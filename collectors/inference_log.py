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

Files of 64 MiB or more are parsed by worker processes (one per core, at most four): the file
is read in chunks of about 1 MiB of whole lines, at most two chunks per worker in flight;
workers parse, check, count and canonicalise each line's record (`digest_chunk`), and this
process, in file order, turns caller ids into pseudonyms (the vault), encrypts retained lines
and folds the leaves. The result is the same as with no workers (a test holds them equal).

A file is one batch unless `batch_size` splits it every N lines; all batches of a file are
appended together, atomically.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import struct
from _json import make_encoder
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from json.encoder import encode_basestring
from pathlib import Path
from typing import Any, BinaryIO

import rfc8785
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from evidence.blobs import BlobStore, BlobWriter
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
CONTENT_FIELDS = frozenset({"messages", "prompt", "response"})
CHOICE_CONTENT = frozenset({"message", "text", "delta", "logprobs"})
LEAF_RECORD = struct.Struct(">Q32s")
CONTENT_HEAD = struct.Struct(">Q16s12sI")
CHUNK_BYTES = 1 << 20
PARALLEL_BYTES = 64 << 20
_HIST_STEP = math.log1p(0.02)  # bucket width: values within 1% of the bucket's middle


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


# -- canonical leaf bytes ---------------------------------------------------------------------


class _NotPlain(Exception):
    pass


def _plain_float(token: str) -> float:
    # Python's repr and ECMAScript agree on a float printed without exponent and not integral.
    if "e" in token or "E" in token or token.endswith(".0"):
        raise _NotPlain
    return float(token)


def _safe_int(token: str) -> int:
    value = int(token)
    if abs(value) > 2**53 - 1:
        raise _NotPlain
    return value


_CHECK = json.JSONDecoder(parse_float=_plain_float, parse_int=_safe_int)


def canonical(value: Any) -> bytes:
    """RFC 8785 bytes: the C encoder's output when it is canonical (checked), else rfc8785."""
    try:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        if (text.isascii() or max(text) <= "\uffff") and _CHECK.decode(text) == value:
            return text.encode("utf-8")
    except (_NotPlain, TypeError, ValueError, RecursionError):
        pass
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError, RecursionError) as exc:
        raise InputError(f"value cannot be canonicalised (RFC 8785): {exc}") from exc


def line_leaf(
    line: int,
    record: dict[str, Any],
    caller: str | None,
    content: str | None,
    *,
    plain: bool = False,
) -> bytes:
    """The leaf hash of one request line (`record` already without `user` and content).

    `plain`: the record came from `LineDecoder` and is known to encode canonically, but for
    characters outside the Basic Multilingual Plane (checked here).
    """
    value = {"caller": caller, "content": content, "line": line, "record": record}
    body = None
    if plain:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        if text.isascii() or max(text) <= "\uffff":
            body = text.encode("utf-8")
    if body is None:
        body = canonical(value)
    return hashlib.sha256(b"\x00" + body).digest()


def record_bytes(record: dict[str, Any], plain: bool) -> bytes:
    """RFC 8785 bytes of a line's record; `plain` (from LineDecoder) allows the C encoder."""
    if plain:
        text = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        if text.isascii() or max(text) <= "\uffff":
            return text.encode("utf-8")
    return canonical(record)


def leaf_of(line: int, record: bytes, caller: str | None, content: str | None) -> bytes:
    """`line_leaf` from the record's canonical bytes: the outer object's keys are fixed ASCII and
    its values (pseudonym, hex digest, integer) need no escaping, so it is concatenated."""
    who = b"null" if caller is None else b'"' + caller.encode() + b'"'
    what = b"null" if content is None else b'"' + content.encode() + b'"'
    return hashlib.sha256(_LEAF % (who, what, line, record)).digest()


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


# -- statistics ---------------------------------------------------------------------------------


@dataclass
class Histogram:
    """Log-scale buckets (2% wide): percentiles within 1% whatever the count of values."""

    buckets: Counter[int] = field(default_factory=Counter)
    count: int = 0
    zeros: int = 0
    max: float = 0.0

    def add(self, value: float) -> None:
        self.count += 1
        if value > self.max:
            self.max = value
        if value <= 0.001:
            self.zeros += 1
        else:
            self.buckets[math.floor(math.log(value) / _HIST_STEP)] += 1

    def merge(self, other: Histogram) -> None:
        self.buckets.update(other.buckets)
        self.count += other.count
        self.zeros += other.zeros
        self.max = max(self.max, other.max)

    def percentile(self, q: float) -> float | None:
        if not self.count:
            return None
        rank = max(1, math.ceil(q * self.count))
        seen = self.zeros
        if seen >= rank:
            return 0.0
        for bucket in sorted(self.buckets):
            seen += self.buckets[bucket]
            if seen >= rank:
                middle = math.exp((bucket + 0.5) * _HIST_STEP)
                return round(min(middle, self.max), 3)
        return self.max

    def latency(self) -> Latency:
        return Latency(
            count=self.count,
            p50=self.percentile(0.50),
            p90=self.percentile(0.90),
            p99=self.percentile(0.99),
            max=self.max if self.count else None,
        )


@dataclass
class _Stats:
    requests: int = 0
    errors: int = 0
    refusals: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    first: float = math.inf
    last: float = -math.inf
    latency: Histogram = field(default_factory=Histogram)
    models: Counter[str] = field(default_factory=Counter)
    fingerprints: Counter[str] = field(default_factory=Counter)
    callers: Counter[str] = field(default_factory=Counter)
    unattributed: int = 0

    def merge(self, other: _Stats, pseudonyms: dict[str, str]) -> None:
        """Adds a chunk's counts, its callers (by caller id) renamed to their pseudonyms."""
        for name in ("requests", "errors", "refusals", "prompt_tokens", "completion_tokens"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.first = min(self.first, other.first)
        self.last = max(self.last, other.last)
        self.latency.merge(other.latency)
        self.models.update(other.models)
        self.fingerprints.update(other.fingerprints)
        for caller, count in other.callers.items():
            self.callers[pseudonyms[caller]] += count
        self.unattributed += other.unattributed


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
    stats: _Stats = field(default_factory=_Stats)
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
        with f, _Digester(self.workers) as digester:
            for first, lines, result in digester.run(where, self._chunks(f)):
                self._apply(first, lines, *result)
                done += sum(map(len, lines))
                if progress is not None:
                    progress(done, self.source.size)
        if done != self.source.size:
            raise CollectorError(f"{where} changed while it was read: ingest it again")

    def _chunks(self, f: BinaryIO) -> Iterator[tuple[int, list[bytes]]]:
        """Runs of whole lines (about 1 MiB), cut where a batch fills up."""
        number, room = 1, self.batch_size
        while lines := f.readlines(CHUNK_BYTES):
            self.lines += len(lines)
            while lines:
                cut = len(lines)
                if room is not None:
                    room = room or self.batch_size
                    assert room is not None
                    cut, seen = _cut(lines, room)
                    room -= seen
                yield number, lines if cut == len(lines) else lines[:cut]
                number, lines = number + cut, lines[cut:]

    def _apply(
        self, first: int, lines: list[bytes], stats: _Stats, digested: list[Digested]
    ) -> None:
        """Folds a digested chunk into the current batch: pseudonyms, content, leaves, counts."""
        if not digested:
            return
        batch = self.batches[-1] if self.batches else None
        if batch is None or (self.batch_size and batch.tree.size >= self.batch_size):
            batch = self._new_batch(digested[0][0])
        pseudonyms = {c: self._subject(c).pseudonym for c in stats.callers}
        quoted = {c: f'"{p}"'.encode() for c, p in pseudonyms.items()}
        keep = batch.content is not None
        # leaf_of and Batch.add, inlined: this loop is the one part of a parallel ingest that is
        # serial. The fold is CompactRange.append's; node_hash is SHA-256(0x01 || left || right).
        sha256, pack, tree = hashlib.sha256, LEAF_RECORD.pack, batch.tree
        hashes, size, records = tree.hashes, tree.size, []
        for number, caller, data, has_content in digested:
            who = b"null" if caller is None else quoted[caller]
            what = b"null"
            if keep and has_content and caller is not None:
                raw = lines[number - first]
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
        batch.stats.merge(stats, pseudonyms)

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


def _cut(lines: list[bytes], room: int) -> tuple[int, int]:
    """(how many lines hold at most `room` request lines, how many request lines they hold)."""
    seen = 0
    for i, raw in enumerate(lines):
        if not raw.isspace():
            seen += 1
            if seen == room:
                return i + 1, seen
    return len(lines), seen


class _Digester:
    """Runs `digest_chunk` over chunks in order: in this process, or in `workers` processes
    with at most two chunks per worker in flight (memory stays bounded)."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> _Digester:
        if self.workers > 1:
            # Not plain fork: the caller may run threads (a progress bar), and a fork copies
            # whatever locks they hold. A fork server starts from a clean process.
            context = multiprocessing.get_context("forkserver")
            self._pool = ProcessPoolExecutor(self.workers, mp_context=context)
        return self

    def __exit__(self, *_: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def run(
        self, where: Path, chunks: Iterator[tuple[int, list[bytes]]]
    ) -> Iterator[tuple[int, list[bytes], tuple[_Stats, list[Digested]]]]:
        if self._pool is None:
            for first, lines in chunks:
                yield first, lines, digest_chunk(where, first, lines)
            return
        pending: deque[tuple[int, list[bytes], Future[tuple[_Stats, list[Digested]]]]] = deque()
        for first, lines in chunks:
            pending.append((first, lines, self._pool.submit(digest_chunk, where, first, lines)))
            if len(pending) >= 2 * self.workers:
                first, lines, done = pending.popleft()
                yield first, lines, done.result()
        while pending:
            first, lines, done = pending.popleft()
            yield first, lines, done.result()


def associated_data(source_sha256: str, line: int) -> bytes:
    return f"{LEAF_FORMAT}|{source_sha256}|{line}".encode()


def seal(cipher: AESGCM, source_sha256: str, line: int, raw: bytes) -> tuple[bytes, bytes]:
    """AES-256-GCM of the line's own bytes; returns (nonce, ciphertext with tag)."""
    nonce = os.urandom(12)
    return nonce, cipher.encrypt(nonce, raw, associated_data(source_sha256, line))


class LineDecoder:
    """json.loads for one line that also says whether the C encoder will write it canonically.

    Floats are where Python and RFC 8785 (ECMAScript) differ: an integral float is read as the
    int it equals (RFC 8785 writes 243.0 as 243), and a float that Python would print with an
    exponent marks the line for the slow, exact path. So does an integer beyond 2**53 (ECMAScript
    reads it as a nearby double): such an integer has 16 digits or more, so a line with no run of
    16 digits (found on its raw bytes, in C) has none; a run inside a string only costs the line
    the exact path, which gives the same bytes.
    """

    def __init__(self) -> None:
        self.plain = True
        self._decoder = json.JSONDecoder(parse_float=self._float, parse_constant=_no_constant)
        # what decode() calls after skipping whitespace: the C scanner, at an index
        self._scan: Callable[[str, int], tuple[Any, int]]
        self._scan = self._decoder.scan_once  # type: ignore[attr-defined]

    def _float(self, token: str) -> float | int:
        value = float(token)
        if math.isinf(value):
            raise _NotJsonNumber(f"the number {token[:40]} is out of range for a double")
        if value == 0 or 1e-4 <= abs(value) < 1e16:
            if not value.is_integer():
                return value
            if abs(value) <= 2**53 - 1:
                return int(value)
        self.plain = False
        return value

    def parse(self, raw: bytes, where: Path, number: int) -> dict[str, Any]:
        self.plain = _SIXTEEN_DIGITS not in raw.translate(_DIGITS_TO_ZERO)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CollectorError(f"{where} line {number}: not UTF-8 ({exc.reason})") from None
        # decode() without its two whitespace matches, for a value that ends the line; anything
        # else (leading or trailing space, an error) goes through decode() and its messages.
        try:
            try:
                obj, end = self._scan(text, 0)
            except (StopIteration, ValueError):
                end = -1
            if end != len(text) and (end != len(text) - 1 or text[end] != "\n"):
                try:
                    obj = self._decoder.decode(text)
                except json.JSONDecodeError as exc:
                    message = f"{where} line {number}: not valid JSON: {exc.msg}"
                    raise CollectorError(message) from None
        except _NotJsonNumber as exc:
            raise CollectorError(f"{where} line {number}: not valid JSON: {exc}") from None
        except RecursionError:
            raise CollectorError(f"{where} line {number}: nested too deeply") from None
        if not isinstance(obj, dict):
            raise CollectorError(f"{where} line {number}: not a JSON object")
        return obj


class _NotJsonNumber(Exception):
    """NaN, Infinity or a number past the double range: Python's json accepts them, RFC 8259
    and RFC 8785 do not, so a leaf could not be canonical."""


def _no_constant(token: str) -> float:
    raise _NotJsonNumber(f"{token} is not a JSON number")


_DIGITS_TO_ZERO = bytes.maketrans(b"0123456789", b"0" * 10)
_SIXTEEN_DIGITS = b"0" * 16


def _fail(where: Path, number: int, message: str) -> CollectorError:
    return CollectorError(f"{where} line {number}: {message}")


# The values checked below come from the JSON decoder, whose only types are dict, list, str,
# int, float, bool and None (no subclasses): there `type(v) is int` is `isinstance(v, int) and
# not isinstance(v, bool)`, and `type(v) is str` is `isinstance(v, str)`.


def _check(obj: dict[str, Any], where: Path, number: int, stats: _Stats) -> str | None:
    """Checks the required fields, counts the line; returns the caller id (or None)."""
    get = obj.get
    stamp = get("timestamp")
    if type(stamp) is str:
        try:
            when = datetime.fromisoformat(stamp)
        except ValueError:
            raise _fail(where, number, f"timestamp {stamp!r} is not RFC 3339") from None
        if when.tzinfo is None:
            raise _fail(where, number, f"timestamp {stamp!r} has no UTC offset")
        moment = when.timestamp()
    else:
        moment = _created(obj, where, number)
    if moment < stats.first:
        stats.first = moment
    if moment > stats.last:
        stats.last = moment
    ident = get("request_id", get("id"))
    kind = type(ident)
    if not ((kind is str and ident) or kind is int):
        raise _fail(where, number, "missing required field request_id (or id)")
    model = get("model")
    if type(model) is not str or not model:
        raise _fail(where, number, "missing required field model (a string)")
    stats.requests += 1
    stats.models[model] += 1
    fingerprint = get("system_fingerprint")
    if type(fingerprint) is str:
        stats.fingerprints[fingerprint] += 1
    _outcome(obj, where, number, stats)
    usage = get("usage")
    if usage is not None:
        _usage(usage, where, number, stats)
    latency = get("latency_ms")
    if latency is not None:
        kind = type(latency)
        if (kind is not float and kind is not int) or latency < 0:
            raise _fail(where, number, "latency_ms must be a number >= 0")
        stats.latency.add(latency)
    caller = get("user")
    if caller is not None and type(caller) is not str:
        raise _fail(where, number, "user must be a string (the caller id)")
    return caller or None


def _created(obj: dict[str, Any], where: Path, number: int) -> float:
    created = obj.get("created")
    if type(created) is int or type(created) is float:
        return float(created)
    raise _fail(where, number, "missing required field timestamp (RFC 3339) or created (epoch)")


_ERROR_WORDS = frozenset({"error", "failed"})
_REFUSAL_WORDS = frozenset({"refused", "content_filter"})


def _outcome(obj: dict[str, Any], where: Path, number: int, stats: _Stats) -> None:
    status = obj.get("status")
    kind = type(status)
    if status is not None and kind is not int and kind is not str:
        raise _fail(where, number, "status must be an HTTP status code or a string")
    refused = status == 451 or status in _REFUSAL_WORDS
    for choice in obj.get("choices") or ():
        if type(choice) is dict:
            message = choice.get("message")
            if choice.get("finish_reason") == "content_filter" or (
                type(message) is dict and message.get("refusal")
            ):
                refused = True
    if refused:
        stats.refusals += 1
    elif (
        (type(status) is int and status >= 400)
        or status in _ERROR_WORDS
        or obj.get("error") is not None
    ):
        stats.errors += 1


def _usage(usage: Any, where: Path, number: int, stats: _Stats) -> None:
    if type(usage) is not dict:
        raise _fail(where, number, "usage must be an object")
    value = usage.get("prompt_tokens")
    if value is not None:
        if type(value) is not int or value < 0:
            raise _fail(where, number, "usage.prompt_tokens must be an integer >= 0")
        stats.prompt_tokens += value
    value = usage.get("completion_tokens")
    if value is not None:
        if type(value) is not int or value < 0:
            raise _fail(where, number, "usage.completion_tokens must be an integer >= 0")
        stats.completion_tokens += value


# -- the per-line work that needs no vault: runs in worker processes for large files ----------

# (line number, caller id or None, the record's canonical bytes, whether it has content)
Digested = tuple[int, str | None, bytes, bool]

# The C encoder that json.dumps(value, sort_keys=True, separators=(",", ":"),
# ensure_ascii=False) makes on every call, made once; "".join of its chunks is that text. No
# check for cycles: a decoded line has none.
_ENCODER = make_encoder(
    None, json.JSONEncoder().default, encode_basestring, None, ":", ",", True, False, True
)


def digest_chunk(where: Path, first: int, lines: list[bytes]) -> tuple[_Stats, list[Digested]]:
    """Parses and checks lines `first`, `first + 1`, ...; counts them (callers by caller id).

    Each line's object is checked whole, then made into its record in place (`split_line`
    without the copies: the object is this function's own).
    """
    decoder = LineDecoder()
    parse = decoder.parse
    stats = _Stats()
    callers = stats.callers
    out: list[Digested] = []
    append = out.append
    for number, raw in enumerate(lines, start=first):
        if raw.isspace():
            continue
        obj = parse(raw, where, number)
        caller = _check(obj, where, number, stats)
        if caller is None:
            stats.unattributed += 1
        else:
            callers[caller] += 1
        # the record: without `user` and content (split_line, in place)
        obj.pop("user", None)
        has_content = False
        for name in CONTENT_FIELDS:
            if name in obj:
                del obj[name]
                has_content = True
        choices = obj.get("choices")
        if type(choices) is list and choices:
            has_content = True
            obj["choices"] = [
                {k: v for k, v in c.items() if k not in CHOICE_CONTENT} if type(c) is dict else c
                for c in choices
            ]
        data = None
        if decoder.plain:
            text = "".join(_ENCODER(obj, 0))
            if text.isascii() or max(text) <= "\uffff":
                data = text.encode("utf-8")
        if data is None:
            try:
                data = canonical(obj)
            except InputError as exc:  # an integer beyond 2**53: RFC 8785 has no bytes for it
                raise _fail(where, number, str(exc)) from None
        append((number, caller, data, has_content))
    return stats, out


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
        latency_ms=stats.latency.latency(),
        models=served,
        system_fingerprints=dict(sorted(stats.fingerprints.items())),
        callers=tuple(Caller(pseudonym=p, requests=n) for p, n in sorted(stats.callers.items())),
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
