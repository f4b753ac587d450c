"""Concurrency: several processes append to one log at once, on SQLite and on PostgreSQL.

The sequencer (SQLite `BEGIN IMMEDIATE`, a PostgreSQL advisory lock) must hand out consecutive
indices and build one tree: every batch gets its own contiguous range, no two overlap, nothing
is skipped, and every checkpoint signed along the way is a prefix of the final tree.
"""

from __future__ import annotations

import itertools
import json
import random
import time
import traceback
from dataclasses import dataclass
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import pytest

from evidence.dsse import Envelope
from evidence.home import Home
from evidence.merkle import verify_consistency
from evidence.note import Checkpoint
from evidence.store import Store
from evidence.verify import open_checkpoint, verify_log
from schemas.key_event import KEY_EVENT
from tests.conftest import statement
from tests.spawned import TIMEOUT_S, run_spawned

WORKERS = 6
BATCHES = 30
MAX_BATCH = 5
STRIDE = 1_000_000  # statement numbers of worker w start at (w + 1) * STRIDE: never shared


@dataclass(frozen=True)
class Batch:
    """What one `append` returned to a worker, beside what it sent."""

    worker: int
    first: int
    count: int  # statements sent
    appended: int  # leaf hashes returned
    n0: int  # predicate.n of the first statement; the others follow
    checkpoint_size: int
    checkpoint_note: str
    called_at: float  # time.monotonic(): one clock for every process on the machine
    returned_at: float

    @property
    def end(self) -> int:
        return self.first + self.count


def _append_worker(
    path: str, database_url: str | None, worker: int, start: Barrier, results: Any
) -> None:
    """Runs in a spawned process: its own Home, Store and engine (engines are not fork-safe)."""
    done: list[Batch] = []
    try:
        home = Home(Path(path), database_url)
        rng = random.Random(worker)
        n = (worker + 1) * STRIDE
        with home.open_store(write=True) as store:
            start.wait(timeout=TIMEOUT_S)  # all open, then all append at once
            for _ in range(BATCHES):
                count = rng.randint(1, MAX_BATCH)
                called_at = time.monotonic()
                r = store.append([statement(n + k) for k in range(count)])
                done.append(
                    Batch(
                        worker=worker,
                        first=r.first_index,
                        count=count,
                        appended=len(r.leaf_hashes),
                        n0=n,
                        checkpoint_size=r.checkpoint.size,
                        checkpoint_note=r.checkpoint.note,
                        called_at=called_at,
                        returned_at=time.monotonic(),
                    )
                )
                n += count
        results.put((worker, done, None))
    except BaseException:
        results.put((worker, done, traceback.format_exc()))


def _run_workers(home: Home) -> list[Batch]:
    """Starts WORKERS spawned processes against `home`; returns every batch, in index order."""
    collected = run_spawned(
        _append_worker, [(str(home.path), home.database_url, w) for w in range(WORKERS)]
    )
    errors = [f"worker {w}:\n{error}" for w, _, error in collected if error]
    assert not errors, "\n".join(errors)
    batches = [b for _, done, _ in collected for b in done]
    assert len(batches) == WORKERS * BATCHES
    return sorted(batches, key=lambda b: b.first)


def _logged_numbers(store: Store) -> list[int | None]:
    """`predicate.n` of every entry in index order (None for entries without one)."""
    out: list[int | None] = []
    for index, envelope, _ in store.export():
        assert index == len(out), f"entry {len(out)} is missing: the next one is {index}"
        out.append(json.loads(Envelope.from_json(envelope).payload)["predicate"].get("n"))
    return out


def _check_indices(store: Store, batches: list[Batch]) -> None:
    """Ranges tile 1..size-1 exactly, each batch holding the statements its worker sent."""
    size = store.size()
    assert store.get(0).predicate_type == KEY_EVENT  # the genesis entry made by init
    expected_first = 1
    for b in batches:
        assert b.appended == b.count, f"{b}: {b.appended} leaves for {b.count} statements"
        assert b.first == expected_first, f"{b} overlaps or leaves a gap at {expected_first}"
        assert b.checkpoint_size == b.end, f"{b} was sealed by a checkpoint of another size"
        expected_first = b.end
    assert expected_first == size
    numbers = _logged_numbers(store)
    assert len(numbers) == size
    for b in batches:
        assert numbers[b.first : b.end] == list(range(b.n0, b.n0 + b.count)), f"{b} is not there"


def _check_checkpoints(home: Home, store: Store, batches: list[Batch]) -> None:
    """Every batch's checkpoint is stored, verifies, and is consistent with the final tree."""
    trust = home.trust()
    heads: dict[int, Checkpoint] = {}
    for size in [1, *(b.end for b in batches)]:
        stored = store.checkpoint(size)
        verified = open_checkpoint(stored.note, trust)
        assert verified.issued_at == stored.issued_at.replace(microsecond=0)
        head = verified.checkpoint
        assert (head.origin, head.size) == (store.origin, size)
        assert head.root == stored.root == store.root(size)
        heads[size] = head
    for b in batches:
        assert store.checkpoint(b.end).note == b.checkpoint_note, f"{b}: another note stored"
    sizes = sorted(heads)
    final = sizes[-1]
    sample = sorted({*sizes[::7], sizes[1], final})
    pairs = [(old, final) for old in sample] + list(itertools.pairwise(sample))
    for old, new in pairs:
        proof = store.consistency_proof(old, new)
        assert (proof.old_root, proof.new_root) == (heads[old].root, heads[new].root)
        verify_consistency(old, new, heads[old].root, heads[new].root, proof.hashes)


def _check_overlap(batches: list[Batch]) -> None:
    """All writers were inside their append loops at one moment, contending for the sequencer.

    Not that their batches interleave: SQLite's busy handler is not fair, and one writer may
    append many batches in a row while the others wait.
    """
    by_worker: dict[int, list[Batch]] = {}
    for b in batches:
        by_worker.setdefault(b.worker, []).append(b)
    last_first_call = max(min(b.called_at for b in bs) for bs in by_worker.values())
    first_last_return = min(max(b.returned_at for b in bs) for bs in by_worker.values())
    assert last_first_call < first_last_return, "the writers did not overlap: nothing was tested"


@pytest.mark.slow
def test_concurrent_appenders_get_consecutive_indices_and_one_tree(home: Home) -> None:
    """Runs once on SQLite and once on PostgreSQL (skipped without ANNEX_TEST_POSTGRES_URL)."""
    batches = _run_workers(home)
    _check_overlap(batches)
    with home.open_store() as store:
        _check_indices(store, batches)
        report = verify_log(store, home.trust())
        assert report.size == store.size()
        assert report.checkpoints == 1 + len(batches)  # init's, then one per batch
        _check_checkpoints(home, store, batches)
