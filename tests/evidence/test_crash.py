"""Crash: SIGKILL a writer at random points of a long append loop, many times over.

The store's durability contract (evidence/store.py) says an acknowledged append survives the
death of its process and an unacknowledged one is wholly present or wholly absent. A child
process appends batches in a loop and prints each batch once `append` has returned (that is the
acknowledgement); the parent kills it at a random moment and then checks the store: it
verifies, its indices have no gaps, every acknowledged batch is there with the statements that
were sent, and anything beyond the acknowledged batches is exactly the one batch that was in
flight, complete.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from evidence.dsse import Envelope
from evidence.home import Home
from evidence.store import Store
from evidence.verify import verify_log

ROOT = Path(__file__).resolve().parents[2]
KILLS = 22
MAX_BATCH = 20
KILL_AFTER_S = (0.05, 0.3)  # the log grows by ~1000s of entries/s, re-verified at each kill
RUN_STRIDE = 1_000_000  # statement numbers of run r start at r * RUN_STRIDE: never reused

# The child: argv = home, seed, first statement number. Batch sizes come from Random(seed), so
# the parent can replay them and know the size of the batch in flight when the kill came.
# It opens the store, says "ready", and starts appending when a line arrives on stdin.
CHILD = f"""
import random, sys
from pathlib import Path
from evidence.home import Home
from tests.conftest import statement

home = Home(Path(sys.argv[1]))
rng = random.Random(int(sys.argv[2]))
n = int(sys.argv[3])
with home.open_store(write=True) as store:
    print("ready", flush=True)
    sys.stdin.readline()
    while True:
        count = rng.randint(1, {MAX_BATCH})
        result = store.append([statement(n + k) for k in range(count)])
        assert len(result.leaf_hashes) == count
        print(result.first_index, count, n, flush=True)
        n += count
"""


@dataclass(frozen=True)
class Ack:
    """A batch the child saw `append` return for: entries first..first+count-1 hold n0, n0+1..."""

    first: int
    count: int
    n0: int

    @property
    def end(self) -> int:
        return self.first + self.count


def _ack(line: str, out: str) -> Ack:
    fields = line.split()
    if len(fields) != 3:
        pytest.fail(f"the writer printed {line!r}, not an acknowledgement; all it printed:\n{out}")
    first, count, n0 = map(int, fields)
    return Ack(first, count, n0)


@dataclass(frozen=True)
class Run:
    acks: list[Ack]
    in_flight: int  # size of the batch the child was presumably appending when killed
    n_next: int  # the statement number that batch would start with


class Writer:
    """One child process; started ahead of time so that its imports overlap the checks."""

    def __init__(self, home: Home, seed: int, n0: int) -> None:
        self.seed, self.n0 = seed, n0
        self.child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(home.path), str(seed), str(n0)],
            cwd=ROOT,  # `python -c` puts the working directory on sys.path: `tests` imports
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run_and_kill(self, delay: float) -> Run:
        """Waits until the store is open, lets the child append for `delay` s, SIGKILLs it."""
        child = self.child
        assert child.stdin is not None and child.stdout is not None
        first = child.stdout.readline()
        if first != "ready\n":
            child.kill()
            _, err = child.communicate()
            pytest.fail(f"the writer did not start: {first!r}\n{err}")
        child.stdin.write("go\n")
        child.stdin.flush()
        time.sleep(delay)  # the random kill point, not synchronisation
        child.send_signal(signal.SIGKILL)
        out, err = child.communicate(timeout=30)
        assert child.returncode == -signal.SIGKILL, f"the writer died on its own:\n{err}"
        acks = [_ack(line, out) for line in out.split("\n")[:-1]]  # a cut-off last line: no ack
        rng = random.Random(self.seed)
        sizes = [rng.randint(1, MAX_BATCH) for _ in range(len(acks) + 1)]
        assert [a.count for a in acks] == sizes[:-1], "acknowledged sizes differ from those sent"
        return Run(acks, sizes[-1], self.n0 + sum(sizes[:-1]))


def _logged_numbers(store: Store) -> list[int | None]:
    """`predicate.n` of every entry in index order (None for entries without one)."""
    out: list[int | None] = []
    for index, envelope, _ in store.export():
        assert index == len(out), f"entry {len(out)} is missing: the next one is {index}"
        statement = json.loads(Envelope.from_json(envelope).payload)
        out.append(statement["predicate"].get("n"))
    return out


def _check_store(home: Home, acked: list[Ack], run: Run) -> int:
    """The post-kill checks; returns how many entries the in-flight batch left (0 or all)."""
    with home.open_store() as store:
        report = verify_log(store, home.trust())
        size = store.size()
        numbers = _logged_numbers(store)
        assert report.size == size == len(numbers)
        for ack in acked:
            got = numbers[ack.first : ack.end]
            assert got == list(range(ack.n0, ack.n0 + ack.count)), f"acknowledged {ack} is lost"
        for ack in run.acks:  # and through the reading API, for this run's batches
            last = store.get(ack.end - 1)
            assert last.statement["predicate"]["n"] == ack.n0 + ack.count - 1
        extra = numbers[acked[-1].end if acked else 1 :]
        # Killed between commit and print: the batch is there, unacknowledged, and whole.
        assert extra in ([], list(range(run.n_next, run.n_next + run.in_flight))), (
            f"beyond the acknowledged entries the log holds {extra}: "
            f"expected nothing or the whole in-flight batch of {run.in_flight}"
        )
        return len(extra)


@pytest.mark.slow
def test_sigkill_during_appends_loses_nothing_acknowledged(tmp_path: Path) -> None:
    """Many kills against one store; also shows that a batch is atomic across a kill.

    That atomicity is SQLite's: the batch, its tree nodes and its checkpoint are one WAL
    transaction, so `_check_store` sees all of the in-flight batch or none of it, never part.
    """
    home = Home(tmp_path / "annex")
    home.init("test.example/log")
    rng = random.Random(20261124)
    acked: list[Ack] = []
    committed_unacked = 0
    writer = Writer(home, rng.randrange(2**32), RUN_STRIDE)
    for kill in range(KILLS):
        run = writer.run_and_kill(rng.uniform(*KILL_AFTER_S))
        if kill + 1 < KILLS:
            writer = Writer(home, rng.randrange(2**32), (kill + 2) * RUN_STRIDE)
        if acked and run.acks:
            assert run.acks[0].first >= acked[-1].end
        acked.extend(run.acks)
        extra = _check_store(home, acked, run)
        if extra:  # it is in the log now, so later runs must keep it too
            acked.append(Ack(acked[-1].end if acked else 1, extra, run.n_next))
            committed_unacked += 1
    assert len(acked) > KILLS, "the writers were killed before they appended anything"
    print(f"{len(acked)} batches; {committed_unacked} committed but unacknowledged at a kill")
