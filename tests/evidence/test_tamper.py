"""Tamper evidence: the triggers refuse edits, and edits made without them fail `annex verify`.

The issue's promise: an attacker with database access who drops the append-only triggers and
changes a byte of an envelope, a hash, a checkpoint or a recorded column, or deletes or reorders
rows, makes `annex verify` exit 1 naming the first bad entry. Each mutation below says which
index `verify_log` must name; the expectations follow the order in which it walks the log
(entry, its level-0 node, the nodes it completes, then the checkpoint at that size).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    Connection,
    Engine,
    Table,
    create_engine,
    delete,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError, ProgrammingError

from evidence.errors import VerificationError
from evidence.home import Home
from evidence.keys import TrustIndex
from evidence.merkle import CompactRange, Node, leaf_hash
from evidence.store import Store, log_size
from evidence.tables import (
    LOG_TABLES,
    checkpoints,
    entries,
    lookup_merged,
    lookup_recent,
    meta,
    nodes,
    subjects,
)
from evidence.verify import verify_log
from tests.conftest import noncanonical_b64, statement

ORIGIN = "test.example/log"
SEED = 9162
SQLITE_MUTATIONS = 400
POSTGRES_MUTATIONS = 50
EACH_KIND_AT_LEAST = 6
# Batch sizes appended after `init` (entry 0), before and after one key rotation.
BATCHES_BEFORE_ROTATION = (1, 1, 5, 1, 8, 1, 16, 1, 3)
BATCHES_AFTER_ROTATION = (1, 7, 1, 1, 12, 2, 1, 20, 1, 4, 1)
PREDICATE_TYPES = tuple(
    f"https://annex.dev/predicates/{k}/v1" for k in ("gpu", "model", "dataset", "key-event")
)
NOTE_ALPHABET = "abcdefxyzABCXYZ0123456789+/=.- \n"
DB_ERRORS: dict[str, type[DBAPIError]] = {"sqlite": IntegrityError, "postgresql": ProgrammingError}


# -- the log under attack -------------------------------------------------------------------------


def _evidence(i: int) -> dict[str, Any]:
    """Statements of several shapes: 1-2 subjects, two digest algorithms, observedAt or not."""
    kind = ("gpu", "model", "dataset")[i % 3]
    made = statement(i, kind=kind, observed=f"2026-11-{1 + i % 28:02d}T08:{i % 60:02d}:00Z")
    if i % 4 == 1:
        made["subject"].append(
            {
                "name": f"weights-{i}",
                "digest": {
                    "sha256": hashlib.sha256(b"w%d" % i).hexdigest(),
                    "sha512": hashlib.sha512(b"w%d" % i).hexdigest(),
                },
            }
        )
    if i % 5 == 2:
        del made["predicate"]["observedAt"]
    return made


def _build_log(home: Home) -> None:
    """Entry 0 from init, batches of 1 and larger, one key rotation in the middle."""
    home.init(ORIGIN)
    n = 1
    for batches in (BATCHES_BEFORE_ROTATION, BATCHES_AFTER_ROTATION):
        with home.open_store(write=True) as store:
            for size in batches:
                store.append([_evidence(n + k) for k in range(size)])
                n += size
        if batches is BATCHES_BEFORE_ROTATION:
            home.rotate(reason="test")
            n += 1


@dataclass(frozen=True)
class Facts:
    """What the pristine log holds, to pick targets and predict the index named."""

    size: int
    checkpoint_sizes: tuple[int, ...]
    nodes: tuple[Node, ...]
    subjects: tuple[tuple[int, int], ...]
    keyids: tuple[str, ...]

    def covered_from(self, size: int) -> int:
        """First entry covered by the checkpoint at `size`: the previous checkpoint's size."""
        return max((s for s in self.checkpoint_sizes if s < size), default=0)

    def batch_start(self, index: int) -> int:
        return self.covered_from(index + 1)


def _facts(conn: Connection, trust: TrustIndex) -> Facts:
    return Facts(
        size=log_size(conn),
        checkpoint_sizes=tuple(
            conn.execute(select(checkpoints.c.size).order_by(checkpoints.c.size)).scalars()
        ),
        nodes=tuple(
            Node(r.level, r.idx)
            for r in conn.execute(
                select(nodes.c.level, nodes.c.idx).order_by(nodes.c.level, nodes.c.idx)
            )
        ),
        subjects=tuple(
            (r.entry_idx, r.position)
            for r in conn.execute(
                select(subjects.c.entry_idx, subjects.c.position).order_by(
                    subjects.c.entry_idx, subjects.c.position
                )
            )
        ),
        keyids=tuple(k.keyid for k in trust.trust.keys),
    )


def _drop_triggers(conn: Connection) -> None:
    """What the attacker does first; no IF EXISTS, so renamed triggers fail this test loudly."""
    for table in LOG_TABLES:
        t = table.name
        if conn.dialect.name == "sqlite":
            for name in (f"{t}_no_update", f"{t}_no_delete"):
                conn.execute(text(f"DROP TRIGGER {name}"))
        else:
            for name in (f"{t}_append_only", f"{t}_no_truncate"):
                conn.execute(text(f"DROP TRIGGER {name} ON {t}"))


@dataclass(frozen=True)
class SqliteLog:
    home: Home
    trust: TrustIndex
    template: Path  # the log's database with the triggers dropped
    facts: Facts


@pytest.fixture(scope="module")
def sqlite_log(tmp_path_factory: pytest.TempPathFactory) -> SqliteLog:
    base = tmp_path_factory.mktemp("tamper")
    home = Home(base / "annex")
    _build_log(home)
    template = base / "template.db"
    src, dst = sqlite3.connect(home.path / "annex.db"), sqlite3.connect(template)
    with dst:
        src.backup(dst)  # complete and consistent whatever sits in the WAL
    src.close()
    dst.close()
    engine = create_engine(f"sqlite:///{template}")
    with engine.begin() as conn:
        _drop_triggers(conn)
        facts = _facts(conn, home.trust())
    engine.dispose()
    return SqliteLog(home, home.trust(), template, facts)


def _verify_error(url: str, trust: TrustIndex) -> VerificationError | None:
    """The VerificationError `verify_log` raises on the database at `url`, or None if it passes."""
    store = Store.open(url)
    try:
        verify_log(store, trust)
    except VerificationError as exc:
        return exc
    finally:
        store.close()
    return None


@pytest.fixture
def tampered(sqlite_log: SqliteLog, tmp_path: Path) -> Iterator[Callable[[], tuple[str, Engine]]]:
    """Hands out fresh copies of the trigger-less log: (url, engine to tamper with)."""
    made: list[Engine] = []

    def copy() -> tuple[str, Engine]:
        db = tmp_path / f"copy{len(made)}.db"
        shutil.copyfile(sqlite_log.template, db)
        url = f"sqlite:///{db}"
        made.append(create_engine(url))
        return url, made[-1]

    yield copy
    for engine in made:
        engine.dispose()


# -- mutations ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tamper:
    detail: str
    expected: frozenset[int]  # the indices verify may name: usually exactly one


def _tamper(detail: str, *indices: int) -> Tamper:
    return Tamper(detail, frozenset(indices))


Mutation = Callable[[Connection, random.Random, Facts], Tamper]


def _flip(data: bytes, rng: random.Random) -> tuple[bytes, int]:
    """Changes one byte (to any other value); returns the new bytes and the position."""
    pos = rng.randrange(len(data))
    return data[:pos] + bytes([data[pos] ^ rng.randrange(1, 256)]) + data[pos + 1 :], pos


def _entry(conn: Connection, index: int) -> dict[str, Any]:
    return dict(conn.execute(select(entries).where(entries.c.idx == index)).one()._mapping)


def _set_entry(conn: Connection, index: int, **values: Any) -> None:
    conn.execute(update(entries).where(entries.c.idx == index).values(**values))


def _node_where(node: Node) -> Any:
    return (nodes.c.level == node.level) & (nodes.c.idx == node.index)


def _node_hash(conn: Connection, node: Node) -> bytes:
    found: bytes = conn.execute(select(nodes.c.hash).where(_node_where(node))).scalar_one()
    return found


def _checked_at(node: Node) -> tuple[int, int]:
    """When verify compares a stored node: at its last entry, level 0 first, then upwards."""
    return node.end - 1, node.level


def _note(conn: Connection, size: int) -> str:
    note: str = conn.execute(
        select(checkpoints.c.note).where(checkpoints.c.size == size)
    ).scalar_one()
    return note


def _set_note(conn: Connection, size: int, note: str) -> None:
    conn.execute(update(checkpoints).where(checkpoints.c.size == size).values(note=note))


def flip_envelope(conn: Connection, rng: random.Random, facts: Facts) -> Tamper:
    i = rng.randrange(facts.size)
    new, pos = _flip(_entry(conn, i)["envelope"], rng)
    _set_entry(conn, i, envelope=new)
    return _tamper(f"entry {i}: envelope byte {pos} changed", i)


def flip_leaf_hash(conn: Connection, rng: random.Random, facts: Facts) -> Tamper:
    i = rng.randrange(facts.size)
    new, pos = _flip(_entry(conn, i)["leaf_hash"], rng)
    _set_entry(conn, i, leaf_hash=new)
    return _tamper(f"entry {i}: leaf hash byte {pos} changed", i)


def rewrite_consistently(conn: Connection, rng: random.Random, facts: Facts) -> Tamper:
    """Changes an envelope and recomputes its leaf hash and every tree node above it.

    The hashes agree again; what is left is the entry's own checks (parse, recorded columns,
    signature: index i) and the signed checkpoint over its batch, named by the batch's first
    entry. Verify names the earlier failure: i when the envelope no longer parses or its
    columns differ, otherwise the batch's first entry.
    """
    i = rng.randrange(facts.size)
    envelope, pos = _flip(_entry(conn, i)["envelope"], rng)
    _set_entry(conn, i, envelope=envelope, leaf_hash=leaf_hash(envelope))
    _rebuild_tree(conn, {i})
    return _tamper(f"entry {i}: byte {pos} changed, hashes recomputed", i, facts.batch_start(i))


def _rebuild_tree(conn: Connection, changed: set[int]) -> None:
    """Recomputes the stored tree nodes above the changed entries from their leaf hashes."""
    leaves = conn.execute(select(entries.c.leaf_hash).order_by(entries.c.idx)).scalars()
    tree = CompactRange()
    for leaf in leaves:
        for node, h in tree.append(leaf):
            if any(node.start <= i < node.end for i in changed):
                conn.execute(update(nodes).where(_node_where(node)).values(hash=h))


def reorder_consistently(conn: Connection, rng: random.Random, facts: Facts) -> Tamper:
    """Swaps two entries with their subject rows and recomputes the tree: a clean reorder.

    Every row agrees with every other; only the signed checkpoint over entry i's batch
    disagrees, unless the two were signed by different keys (one is outside its window at i).
    """
    i, j = _pair(rng, facts)
    _swap_entries(conn, i, j, ALL_BUT_IDX)
    for old, new in ((i, -1), (j, i), (-1, j)):
        conn.execute(update(subjects).where(subjects.c.entry_idx == old).values(entry_idx=new))
    _rebuild_tree(conn, {i, j})
    keyids = conn.execute(select(entries.c.keyid).where(entries.c.idx.in_([i, j]))).scalars()
    named = i if len(set(keyids)) == 2 else facts.batch_start(i)
    return _tamper(f"entries {i} and {j} swapped with subjects, tree recomputed", named)


def flip_node(conn: Connection, rng: random.Random, facts: Facts) -> Tamper:
    node = rng.choice(facts.nodes)
    new, _ = _flip(_node_hash(conn, node), rng)
    conn.execute(update(nodes).where(_node_where(node)).values(hash=new))
    return _tamper(f"tree node {node} changed", node.start)


def delete_node(conn: Connection, rng: random.Random, facts: Facts) -> Tamper:
    node = rng.choice(facts.nodes)
    conn.execute(delete(nodes).where(_node_where(node)))
    return _tamper(f"tree node {node} deleted", node.start)


def swap_nodes(conn: Connection, rng: random.Random, facts: Facts) -> Tamper:
    a, b = rng.sample(facts.nodes, 2)
    ha, hb = _node_hash(conn, a), _node_hash(conn, b)
    conn.execute(update(nodes).where(_node_where(a)).values(hash=hb))
    conn.execute(update(nodes).where(_node_where(b)).values(hash=ha))
    return _tamper(f"tree nodes {a} and {b} swapped", min(a, b, key=_checked_at).start)


def flip_checkpoint_root(conn: Connection, rng: random.Random, facts: Facts) -> Tamper:
    size = rng.choice(facts.checkpoint_sizes)
    root = conn.execute(select(checkpoints.c.root).where(checkpoints.c.size == size)).scalar_one()
    new, _ = _flip(root, rng)
    conn.execute(update(checkpoints).where(checkpoints.c.size == size).values(root=new))
    return _tamper(f"checkpoint {size}: root column changed", facts.covered_from(size))


def edit_checkpoint_text(conn: Connection, rng: random.Random, facts: Facts) -> Tamper:
    """One character of the signed text (origin, size, root) replaced."""
    size = rng.choice(facts.checkpoint_sizes)
    note = _note(conn, size)
    pos = rng.randrange(note.rindex("\n\n") + 1)
    char = rng.choice([c for c in NOTE_ALPHABET if c != note[pos]])
    _set_note(conn, size, note[:pos] + char + note[pos + 1 :])
    return _tamper(f"checkpoint {size}: note char {pos} -> {char!r}", facts.covered_from(size))


def flip_checkpoint_signature(conn: Connection, rng: random.Random, facts: Facts) -> Tamper:
    """One byte of the signature line's decoded key ID or signature changed."""
    size = rng.choice(facts.checkpoint_sizes)
    head, _, sig = _note(conn, size)[:-1].rpartition(" ")
    new, pos = _flip(base64.b64decode(sig), rng)
    _set_note(conn, size, f"{head} {base64.b64encode(new).decode()}\n")
    return _tamper(f"checkpoint {size}: signature byte {pos}", facts.covered_from(size))


def reencode_checkpoint_signature(conn: Connection, rng: random.Random, facts: Facts) -> Tamper:
    """A signature line rewritten as other base64 of the same bytes (unused low bits of its last
    character set): every signature still verifies, yet the stored note changed."""
    size = rng.choice(facts.checkpoint_sizes)
    note = _note(conn, size)
    cut = note.rindex("\n\n") + 2
    lines = note[cut:-1].split("\n")
    k = rng.randrange(len(lines))
    head, _, sig = lines[k].rpartition(" ")
    bits = rng.randrange(1, 1 << (2 * sig.count("=")))
    lines[k] = f"{head} {noncanonical_b64(sig, bits)}"
    _set_note(conn, size, note[:cut] + "\n".join(lines) + "\n")
    return _tamper(f"checkpoint {size}: signature line {k} re-encoded", facts.covered_from(size))


def delete_last_checkpoint(conn: Connection, rng: random.Random, facts: Facts) -> Tamper:
    conn.execute(delete(checkpoints).where(checkpoints.c.size == facts.size))
    return _tamper("the latest checkpoint deleted", facts.covered_from(facts.size))


def insert_checkpoint(conn: Connection, rng: random.Random, facts: Facts) -> Tamper:
    """A copied signed checkpoint inserted at a size where no batch ended (no trigger needed)."""
    size = rng.choice([s for s in range(1, facts.size + 5) if s not in facts.checkpoint_sizes])
    copied = conn.execute(
        select(checkpoints).where(checkpoints.c.size == rng.choice(facts.checkpoint_sizes))
    ).one()
    conn.execute(insert(checkpoints).values({**copied._mapping, "size": size}))
    named = facts.covered_from(size) if size < facts.size else facts.size
    return _tamper(f"checkpoint copied to size {size}", named)


def delete_entry(conn: Connection, rng: random.Random, facts: Facts) -> Tamper:
    i = rng.randrange(facts.size - 1)
    conn.execute(delete(entries).where(entries.c.idx == i))
    return _tamper(f"entry {i} deleted", i)


def delete_last_entry(conn: Connection, rng: random.Random, facts: Facts) -> Tamper:
    i = facts.size - 1
    conn.execute(delete(entries).where(entries.c.idx == i))
    return _tamper(f"entry {i} (the last) deleted", i)


ALL_BUT_IDX = tuple(c.name for c in entries.columns if c.name != "idx")


def _swap_entries(conn: Connection, i: int, j: int, columns: tuple[str, ...]) -> None:
    row_i, row_j = _entry(conn, i), _entry(conn, j)
    _set_entry(conn, i, **{c: row_j[c] for c in columns})
    _set_entry(conn, j, **{c: row_i[c] for c in columns})


def _pair(rng: random.Random, facts: Facts) -> tuple[int, int]:
    i, j = sorted(rng.sample(range(facts.size), 2))
    return i, j


def swap_entries(conn: Connection, rng: random.Random, facts: Facts) -> Tamper:
    i, j = _pair(rng, facts)
    _swap_entries(conn, i, j, ALL_BUT_IDX)
    return _tamper(f"entries {i} and {j} swapped", i)


def swap_envelopes(conn: Connection, rng: random.Random, facts: Facts) -> Tamper:
    i, j = _pair(rng, facts)
    _swap_entries(conn, i, j, ("envelope", "leaf_hash"))
    return _tamper(f"entries {i} and {j}: envelope and leaf hash swapped", i)


def change_predicate_type(conn: Connection, rng: random.Random, facts: Facts) -> Tamper:
    i = rng.randrange(facts.size)
    old = _entry(conn, i)["predicate_type"]
    new = rng.choice([t for t in (*PREDICATE_TYPES, old + "x") if t != old])
    _set_entry(conn, i, predicate_type=new)
    return _tamper(f"entry {i}: predicate_type {old} -> {new}", i)


def change_observed_at(conn: Connection, rng: random.Random, facts: Facts) -> Tamper:
    i = rng.randrange(facts.size)
    old = _entry(conn, i)["observed_at_us"]
    new = 10**15 if old is None else rng.choice([None, old + 1, old - 3_600_000_000])
    _set_entry(conn, i, observed_at_us=new)
    return _tamper(f"entry {i}: observed_at_us {old} -> {new}", i)


def change_keyid(conn: Connection, rng: random.Random, facts: Facts) -> Tamper:
    i = rng.randrange(facts.size)
    old = _entry(conn, i)["keyid"]
    new = rng.choice([k for k in facts.keyids if k != old] + ["0" * 64])
    _set_entry(conn, i, keyid=new)
    return _tamper(f"entry {i}: keyid {old[:8]} -> {new[:8]}", i)


def _subject_where(entry_idx: int, position: int) -> Any:
    return (subjects.c.entry_idx == entry_idx) & (subjects.c.position == position)


def change_subject_digest(conn: Connection, rng: random.Random, facts: Facts) -> Tamper:
    i, pos = rng.choice(facts.subjects)
    where = _subject_where(i, pos)
    digest: str = conn.execute(select(subjects.c.digest).where(where)).scalar_one()
    at = rng.randrange(len(digest))
    char = rng.choice([c for c in "0123456789abcdef" if c != digest[at]])
    conn.execute(update(subjects).where(where).values(digest=digest[:at] + char + digest[at + 1 :]))
    return _tamper(f"entry {i}: subject {pos} digest char {at}", i)


def change_subject_name(conn: Connection, rng: random.Random, facts: Facts) -> Tamper:
    i, pos = rng.choice(facts.subjects)
    conn.execute(update(subjects).where(_subject_where(i, pos)).values(name="renamed"))
    return _tamper(f"entry {i}: subject {pos} renamed", i)


def delete_subject(conn: Connection, rng: random.Random, facts: Facts) -> Tamper:
    i, pos = rng.choice(facts.subjects)
    conn.execute(delete(subjects).where(_subject_where(i, pos)))
    return _tamper(f"entry {i}: subject {pos} deleted", i)


def move_subject(conn: Connection, rng: random.Random, facts: Facts) -> Tamper:
    """A subject row moved to another entry: the earlier of the two is named."""
    i, pos = rng.choice(facts.subjects)
    j = rng.choice([k for k in range(facts.size) if k != i])
    conn.execute(update(subjects).where(_subject_where(i, pos)).values(entry_idx=j, position=99))
    return _tamper(f"entry {i}: subject {pos} moved to entry {j}", min(i, j))


def insert_subject(conn: Connection, rng: random.Random, facts: Facts) -> Tamper:
    i = rng.randrange(facts.size + 3)
    row = {"entry_idx": i, "position": 99, "name": "extra", "algorithm": "sha256", "digest": "0"}
    conn.execute(insert(subjects).values(row))
    return _tamper(f"subject row added to entry {i}", i)


def insert_entry(conn: Connection, rng: random.Random, facts: Facts) -> Tamper:
    """A copy of a signed entry appended past the end, without tree node or checkpoint."""
    copied = _entry(conn, rng.randrange(facts.size))
    conn.execute(insert(entries).values({**copied, "idx": facts.size}))
    return _tamper(f"entry {copied['idx']} copied to index {facts.size}", facts.size)


def insert_node(conn: Connection, rng: random.Random, facts: Facts) -> Tamper:
    """An inner tree node covering leaves beyond the end (level 0 ones are not read)."""
    level = rng.randrange(1, 4)
    node = Node(level, facts.size >> level)
    conn.execute(insert(nodes).values(level=level, idx=node.index, hash=b"\x00" * 32))
    return _tamper(f"tree node {node} added past the end", facts.size)


def change_origin(conn: Connection, rng: random.Random, facts: Facts) -> Tamper:
    conn.execute(update(meta).where(meta.c.key == "origin").values(value="evil.example/log"))
    return _tamper("log_meta origin changed", 0)


MUTATIONS: dict[str, tuple[int, Mutation]] = {
    fn.__name__: (weight, fn)
    for weight, fn in (
        (8, flip_envelope),
        (2, flip_leaf_hash),
        (3, rewrite_consistently),
        (2, reorder_consistently),
        (2, flip_node),
        (1, delete_node),
        (1, swap_nodes),
        (2, flip_checkpoint_root),
        (2, edit_checkpoint_text),
        (2, flip_checkpoint_signature),
        (2, reencode_checkpoint_signature),
        (1, delete_last_checkpoint),
        (1, insert_checkpoint),
        (3, delete_entry),
        (1, delete_last_entry),
        (3, swap_entries),
        (2, swap_envelopes),
        (1, change_predicate_type),
        (1, change_observed_at),
        (1, change_keyid),
        (1, change_subject_digest),
        (1, change_subject_name),
        (1, delete_subject),
        (1, move_subject),
        (1, insert_subject),
        (1, insert_entry),
        (1, insert_node),
        (1, change_origin),
    )
}


def _schedule(rng: random.Random, total: int, at_least: int) -> list[str]:
    """Every kind `at_least` times, the rest drawn by weight, shuffled."""
    names = list(MUTATIONS)
    plan = names * at_least
    plan += rng.choices(names, [MUTATIONS[n][0] for n in names], k=max(0, total - len(plan)))
    rng.shuffle(plan)
    return plan


def _check(kind: str, tamper: Tamper, url: str, trust: TrustIndex) -> str | None:
    """None when verify fails naming an expected index; otherwise what went wrong."""
    try:
        error = _verify_error(url, trust)
    except Exception as exc:
        return f"{kind} ({tamper.detail}): verify raised {type(exc).__name__}: {exc}"
    if error is None:
        return f"{kind} ({tamper.detail}): verify passed"
    if error.index not in tamper.expected:
        wanted = sorted(tamper.expected)
        return f"{kind} ({tamper.detail}): named {error.index}, wanted {wanted}: {error}"
    return None


def _assert_all_detected(failures: list[str], count: int) -> None:
    shown = "\n".join(failures[:15])
    assert not failures, f"{len(failures)} of {count} mutations (seed {SEED}) not caught:\n{shown}"


# -- tests: an untouched copy verifies ------------------------------------------------------------


def test_untouched_copy_without_triggers_verifies(
    sqlite_log: SqliteLog, tampered: Callable[[], tuple[str, Engine]]
) -> None:
    """Dropping the triggers alone changes nothing: the failures below come from the edits."""
    url, engine = tampered()
    with engine.connect() as conn:
        count = "SELECT count(*) FROM sqlite_master WHERE type = 'trigger'"
        assert conn.execute(text(count)).scalar_one() == 0
    store = Store.open(url)
    try:
        report = verify_log(store, sqlite_log.trust)
    finally:
        store.close()
    facts = sqlite_log.facts
    assert facts.size == 1 + sum(BATCHES_BEFORE_ROTATION) + 1 + sum(BATCHES_AFTER_ROTATION)
    assert report.size == facts.size
    batches = 1 + len(BATCHES_BEFORE_ROTATION) + 1 + len(BATCHES_AFTER_ROTATION)  # init, rotate
    assert report.checkpoints == len(facts.checkpoint_sizes) == batches
    # One signature an entry; a checkpoint carries the log's signature and its timestamp.
    assert report.signatures == facts.size + 2 * report.checkpoints
    assert len(set(facts.keyids)) == 2  # the rotation happened: two log keys


def test_reencoded_checkpoint_signature_fails_naming_the_checkpoint(
    sqlite_log: SqliteLog, tampered: Callable[[], tuple[str, Engine]]
) -> None:
    """The finding: an attacker with database access rewrote the log's signature line of a
    stored checkpoint as non-canonical base64 of the same signature bytes, and verify passed."""
    url, engine = tampered()
    size = sqlite_log.facts.checkpoint_sizes[4]
    with engine.begin() as conn:
        text, sep, lines = _note(conn, size).rpartition("\n\n")
        first, _, rest = lines.partition("\n")
        head, _, sig = first.rpartition(" ")
        changed = noncanonical_b64(sig)
        assert changed != sig and base64.b64decode(changed) == base64.b64decode(sig)
        _set_note(conn, size, f"{text}{sep}{head} {changed}\n{rest}")
    error = _verify_error(url, sqlite_log.trust)
    assert error is not None, "a re-encoded checkpoint signature passed verification"
    assert error.index == sqlite_log.facts.covered_from(size)
    assert f"the checkpoint at size {size}: malformed checkpoint" in str(error)
    assert "is not canonical base64" in str(error)


# -- tests: random mutations ----------------------------------------------------------------------


@pytest.mark.slow
def test_random_mutations_on_sqlite_are_named(sqlite_log: SqliteLog, tmp_path: Path) -> None:
    """Hundreds of seeded edits, each on a fresh copy of the trigger-less log."""
    rng = random.Random(SEED)
    plan = _schedule(rng, SQLITE_MUTATIONS, EACH_KIND_AT_LEAST)
    assert len(plan) >= 300
    failures: list[str] = []
    for n, kind in enumerate(plan):
        db = tmp_path / f"m{n}.db"
        shutil.copyfile(sqlite_log.template, db)
        url = f"sqlite:///{db}"
        engine = create_engine(url)
        with engine.begin() as conn:
            tamper = MUTATIONS[kind][1](conn, rng, sqlite_log.facts)
        engine.dispose()
        problem = _check(kind, tamper, url, sqlite_log.trust)
        if problem is not None:
            failures.append(problem)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
    assert set(Counter(plan)) == set(MUTATIONS)
    _assert_all_detected(failures, len(plan))


_BACKED_UP = (entries, subjects, nodes, checkpoints, meta)


def _backup(conn: Connection) -> None:
    for table in _BACKED_UP:
        conn.execute(text(f"CREATE TABLE tamper_{table.name} AS TABLE {table.name}"))


def _restore(conn: Connection) -> None:
    for table in _BACKED_UP:
        conn.execute(text(f"DELETE FROM {table.name}"))
        conn.execute(text(f"INSERT INTO {table.name} SELECT * FROM tamper_{table.name}"))


@pytest.mark.postgres
@pytest.mark.slow
def test_random_mutations_on_postgres_are_named(pg_database: str, tmp_path: Path) -> None:
    """The same edits on PostgreSQL, each undone from a backup before the next."""
    home = Home(tmp_path / "annex", pg_database)
    _build_log(home)
    trust = home.trust()
    engine = create_engine(pg_database)
    try:
        with engine.begin() as conn:
            _drop_triggers(conn)
            _backup(conn)
            facts = _facts(conn, trust)
        rng = random.Random(SEED)
        plan = _schedule(rng, POSTGRES_MUTATIONS, 1)
        failures: list[str] = []
        for kind in plan:
            with engine.begin() as conn:
                tamper = MUTATIONS[kind][1](conn, rng, facts)
            problem = _check(kind, tamper, pg_database, trust)
            if problem is not None:
                failures.append(problem)
            with engine.begin() as conn:
                _restore(conn)
            assert _verify_error(pg_database, trust) is None, f"restore after {kind} failed"
        _assert_all_detected(failures, len(plan))
    finally:
        engine.dispose()


# -- tests: the command line ----------------------------------------------------------------------


def _annex(*args: str) -> subprocess.CompletedProcess[str]:
    """Runs the installed `annex` in a clean environment (no ANNEX_* settings leak in)."""
    script = Path(sys.executable).with_name("annex")
    command = [str(script)]
    if not script.exists():
        command = [sys.executable, "-c", "import api.cli; api.cli.main()"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANNEX_")}
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def _home_copy(sqlite_log: SqliteLog, target: Path) -> Path:
    """A whole data directory (keys, trust file) around a trigger-less copy of the database."""
    shutil.copytree(sqlite_log.home.path, target, ignore=shutil.ignore_patterns("annex.db*"))
    shutil.copyfile(sqlite_log.template, target / "annex.db")
    return target


def test_cli_verify_passes_on_untouched_copy(sqlite_log: SqliteLog, tmp_path: Path) -> None:
    home = _home_copy(sqlite_log, tmp_path / "home")
    done = _annex("verify", "--home", str(home), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is True
    assert report["size"] == sqlite_log.facts.size


@pytest.mark.parametrize(
    "kind",
    [
        "flip_envelope",
        "delete_entry",
        "swap_entries",
        "flip_checkpoint_root",
        "reencode_checkpoint_signature",
    ],
)
def test_cli_verify_exits_1_naming_the_entry(
    sqlite_log: SqliteLog, tmp_path: Path, kind: str
) -> None:
    """`annex verify` and `annex verify --json` agree with `verify_log` on the entry named."""
    home = _home_copy(sqlite_log, tmp_path / "home")
    engine = create_engine(f"sqlite:///{home / 'annex.db'}")
    with engine.begin() as conn:
        tamper = MUTATIONS[kind][1](conn, random.Random(f"{SEED}-{kind}"), sqlite_log.facts)
    engine.dispose()
    (expected,) = tamper.expected
    error = _verify_error(f"sqlite:///{home / 'annex.db'}", sqlite_log.trust)
    assert error is not None and error.index == expected, tamper.detail

    human = _annex("verify", "--home", str(home))
    assert human.returncode == 1, human.stdout + human.stderr
    assert str(error).startswith((f"entry {expected}:", f"entries {expected}.."))
    assert f"verification failed: {error}" in human.stderr

    machine = _annex("verify", "--home", str(home), "--json")
    assert machine.returncode == 1, machine.stdout + machine.stderr
    body = json.loads(machine.stdout)
    assert body == {
        "ok": False,
        "error": "VerificationError",
        "message": str(error),
        "index": expected,
    }


def test_cli_verify_names_the_entry_when_tampered_text_looks_like_markup(
    sqlite_log: SqliteLog, tmp_path: Path
) -> None:
    """Tampered text quoted in the message must be printed, not parsed as rich markup.

    A checkpoint note whose signature line is `— [/x]` is malformed; verify quotes the line.
    """
    home = _home_copy(sqlite_log, tmp_path / "home")
    size = sqlite_log.facts.checkpoint_sizes[3]
    engine = create_engine(f"sqlite:///{home / 'annex.db'}")
    with engine.begin() as conn:
        note = _note(conn, size)
        _set_note(conn, size, note[: note.rindex("\n\n") + 2] + "— [/x]\n")
    engine.dispose()
    first = sqlite_log.facts.covered_from(size)
    error = _verify_error(f"sqlite:///{home / 'annex.db'}", sqlite_log.trust)
    assert error is not None and error.index == first

    human = _annex("verify", "--home", str(home))
    assert human.returncode == 1
    assert f"verification failed: {error}" in human.stderr, human.stderr[-600:]


# -- tests: what the design cannot catch without a trusted checkpoint ------------------------------


def test_truncating_whole_batches_needs_a_trusted_checkpoint(
    sqlite_log: SqliteLog, tampered: Callable[[], tuple[str, Engine]]
) -> None:
    """Removing the last batch with its nodes and checkpoint leaves a smaller valid log
    (README: that is what --trusted-checkpoint is for); against a saved checkpoint it fails."""
    facts = sqlite_log.facts
    url, engine = tampered()
    with engine.begin() as conn:
        saved = _note(conn, facts.size)
        cut = facts.covered_from(facts.size)
        conn.execute(delete(entries).where(entries.c.idx >= cut))
        conn.execute(delete(subjects).where(subjects.c.entry_idx >= cut))
        conn.execute(delete(nodes).where(((nodes.c.idx + 1).op("<<")(nodes.c.level)) > cut))
        conn.execute(delete(checkpoints).where(checkpoints.c.size > cut))
        for table in (lookup_merged, lookup_recent):  # a thorough attacker: see below
            conn.execute(delete(table).where(table.c.idx >= cut))
    store = Store.open(url)
    try:
        assert verify_log(store, sqlite_log.trust).size == cut
        with pytest.raises(VerificationError) as caught:
            verify_log(store, sqlite_log.trust, trusted_checkpoint=saved)
    finally:
        store.close()
    assert caught.value.index == cut
    assert "truncated or rolled back" in str(caught.value)


def test_a_lookup_row_deleted_to_hide_an_entry_fails_verify(
    sqlite_log: SqliteLog, tampered: Callable[[], tuple[str, Engine]]
) -> None:
    """The gate and the reports find evidence through the lookup tables: deleting the newest
    entry's digest row hides it from them (a failing eval, say), so verify recomputes them."""
    facts = sqlite_log.facts
    url, engine = tampered()
    newest = facts.size - 1
    with engine.begin() as conn:
        conn.execute(
            delete(lookup_recent).where(lookup_recent.c.idx == newest, lookup_recent.c.kind == 1)
        )
    store = Store.open(url)
    try:
        with pytest.raises(VerificationError) as caught:
            verify_log(store, sqlite_log.trust)
    finally:
        store.close()
    assert caught.value.index == newest
    assert "its rows in the lookup tables differ from its statement" in str(caught.value)


def test_changing_logged_at_is_detected(
    sqlite_log: SqliteLog, tampered: Callable[[], tuple[str, Engine]]
) -> None:
    """logged_at must equal the time its batch's checkpoint was issued, which the log signs."""
    url, engine = tampered()
    i = sqlite_log.facts.size // 2
    with engine.begin() as conn:
        old = _entry(conn, i)["logged_at_us"]
        _set_entry(conn, i, logged_at_us=old - 86_400_000_000)
    error = _verify_error(url, sqlite_log.trust)
    assert error is not None and error.index == i


def test_deleting_a_middle_checkpoint_is_detected(
    sqlite_log: SqliteLog, tampered: Callable[[], tuple[str, Engine]]
) -> None:
    """Two batches then share a checkpoint, but their entries carry two log times."""
    url, engine = tampered()
    size = sqlite_log.facts.checkpoint_sizes[len(sqlite_log.facts.checkpoint_sizes) // 2]
    with engine.begin() as conn:
        conn.execute(delete(checkpoints).where(checkpoints.c.size == size))
    error = _verify_error(url, sqlite_log.trust)
    assert error is not None and error.index == sqlite_log.facts.covered_from(size)


# -- tests: the triggers --------------------------------------------------------------------------

_UPDATES: dict[str, dict[str, Any]] = {
    "entries": {"keyid": "x"},
    "subjects": {"digest": "00"},
    "tree_nodes": {"hash": b"\x00" * 32},
    "checkpoints": {"note": "x"},
    "log_meta": {"value": "x"},
}


def _snapshot(engine: Engine) -> dict[str, list[Any]]:
    with engine.connect() as conn:
        return {
            t.name: [tuple(r) for r in conn.execute(select(t).order_by(*t.primary_key.columns))]
            for t in LOG_TABLES
        }


def _refused(engine: Engine, statement: Any, table: Table) -> None:
    """The statement fails with the database's own error naming the append-only table."""
    error = DB_ERRORS[engine.dialect.name]
    with pytest.raises(error) as caught, engine.begin() as conn:
        conn.execute(statement)
    assert f"annex: table {table.name} is append-only" in str(caught.value.orig)


def test_triggers_refuse_update_delete_and_truncate(store: Store) -> None:
    """On every log table, on SQLite and PostgreSQL; nothing changes."""
    store.append([_evidence(1), _evidence(2)])
    engine = store.engine
    before = _snapshot(engine)
    assert all(before.values()), "every table has rows to protect"
    assert set(_UPDATES) == {t.name for t in LOG_TABLES}
    for table in LOG_TABLES:
        _refused(engine, update(table).values(_UPDATES[table.name]), table)
        _refused(engine, delete(table), table)
        if engine.dialect.name == "postgresql":
            _refused(engine, text(f"TRUNCATE {table.name}"), table)
    assert _snapshot(engine) == before
    store.append([_evidence(3)])  # appending still works
    assert store.keys is not None
    verify_log(store, store.keys.trust())


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("DROP TABLE subjects", "no such table: subjects"),
        ("DROP TABLE tree_nodes", "no such table"),
        ("UPDATE entries SET keyid = X'ff00fe' WHERE idx = 1", "entry 1"),
        ("UPDATE entries SET observed_at_us = 'soon' WHERE idx = 2", "entry 2"),
    ],
)
def test_a_damaged_database_fails_verification_naming_the_damage(
    sqlite_log: SqliteLog, tampered: Callable[[], tuple[str, Engine]], damage: str, message: str
) -> None:
    """A table dropped, a value of the wrong type or not UTF-8: a verification failure that
    says what the database said, never a traceback."""
    url, engine = tampered()
    with engine.begin() as conn:
        conn.execute(text(damage))
    store = Store.open(url)
    try:
        with pytest.raises(VerificationError, match=message):
            verify_log(store, sqlite_log.trust)
    finally:
        store.close()
