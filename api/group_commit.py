"""Group commit for envelopes POSTed at the same time: one sequencer transaction for many.

Each POST /entries waits for its own envelope to be logged, and one append costs a commit, an
fsync and a signed checkpoint whatever its size. So the requests that arrive while an append
is running are gathered and appended together as the next batch: no timer and no added wait
when requests come one at a time, up to MAX_GROUP envelopes a batch under load.

Every request still gets the answer it would get alone. A batch is atomic, so when it is
refused (an envelope by an untrusted key, a replay, a malformed statement) its envelopes are
appended one by one, each refused or logged on its own. An envelope posted twice in one group
is logged once; the other copy is answered as the replay it is (409 naming the entry).

The thread of the first waiting request runs a batch; when it is done and more wait, it hands
the next batch to the thread of the oldest of them, so no request runs batches for others
after its own answer is ready.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from evidence.dsse import Envelope
from evidence.errors import DuplicateEntry
from evidence.note import TlogProof
from evidence.store import AppendResult, SignedCheckpoint

MAX_GROUP = 256


@dataclass(frozen=True)
class Appended:
    """A batch appended, with each envelope's inclusion proof in its checkpoint's tree."""

    result: AppendResult
    proofs: Sequence[TlogProof]


@dataclass(frozen=True)
class Logged:
    """Where one envelope landed, in its batch."""

    batch: Appended
    offset: int

    @property
    def index(self) -> int:
        return self.batch.result.first_index + self.offset

    @property
    def leaf_hash(self) -> bytes:
        return self.batch.result.leaf_hashes[self.offset]

    @property
    def checkpoint(self) -> SignedCheckpoint:
        return self.batch.result.checkpoint

    @property
    def proof(self) -> TlogProof:
        return self.batch.proofs[self.offset]


@dataclass(eq=False)
class _Slot:
    envelope: Envelope
    wake: threading.Event = field(default_factory=threading.Event)
    done: bool = False
    logged: Logged | None = None
    error: BaseException | None = None

    def finish(self, logged: Logged | None = None, error: BaseException | None = None) -> None:
        self.logged, self.error, self.done = logged, error, True
        self.wake.set()


class GroupCommit:
    """`append(envelope)` from many threads; `commit` appends a batch atomically or raises."""

    def __init__(self, commit: Callable[[Sequence[Envelope]], Appended]) -> None:
        self._commit = commit
        self._lock = threading.Lock()
        self._pending: list[_Slot] = []
        self._leading = False

    @property
    def waiting(self) -> int:
        """Envelopes queued for the next batch."""
        with self._lock:
            return len(self._pending)

    def append(self, envelope: Envelope) -> Logged:
        slot = _Slot(envelope)
        with self._lock:
            self._pending.append(slot)
            lead = not self._leading
            self._leading = True
        if not lead:
            slot.wake.wait()  # answered, or handed the next batch to run
        if not slot.done:
            self._run_next()
        if slot.error is not None:
            raise slot.error
        assert slot.logged is not None
        return slot.logged

    def _run_next(self) -> None:
        with self._lock:
            group, self._pending = self._pending[:MAX_GROUP], self._pending[MAX_GROUP:]
        try:
            self._run(group)
        except BaseException as exc:  # never leave a waiting request hanging
            for slot in group:
                if not slot.done:
                    slot.finish(error=exc)
            raise
        finally:
            with self._lock:
                if self._pending:
                    self._pending[0].wake.set()  # its thread runs the next batch
                else:
                    self._leading = False

    def _run(self, group: list[_Slot]) -> None:
        firsts: dict[bytes, _Slot] = {}
        copies: list[tuple[_Slot, _Slot]] = []
        for slot in group:
            key = slot.envelope.canonical()
            if key in firsts:
                copies.append((slot, firsts[key]))
            else:
                firsts[key] = slot
        unique = list(firsts.values())
        try:
            result = self._commit([s.envelope for s in unique])
        except Exception as exc:
            if len(unique) == 1:
                unique[0].finish(error=exc)
            else:
                self._one_by_one(unique)
        else:
            for offset, slot in enumerate(unique):
                slot.finish(Logged(result, offset))
        for copy, first in copies:
            if first.logged is None:
                copy.finish(error=first.error)
            else:
                index = first.logged.index
                message = f"envelope is already in the log at entry {index}: nothing appended"
                copy.finish(error=DuplicateEntry(message, index=index))

    def _one_by_one(self, unique: list[_Slot]) -> None:
        for slot in unique:
            try:
                slot.finish(Logged(self._commit([slot.envelope]), 0))
            except Exception as exc:
                slot.finish(error=exc)
