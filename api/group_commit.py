"""Group commit for envelopes POSTed at the same time: one sequencer transaction for many.

Each POST /entries waits for its own envelope to be logged, and one append costs a commit, an
fsync and a signed checkpoint whatever its size. So the requests that arrive while an append
is running are gathered and appended together as the next batch, up to MAX_GROUP envelopes.
A request that comes alone is appended at once; under concurrent load a batch waits LINGER_S
(1 ms) first, for the next requests of the clients its predecessor just answered.

Every request still gets the answer it would get alone. A batch is atomic: when the store refuses
it for replays, it names every envelope it already holds, those are answered 409 and the others
go in as one batch again; when it is refused for anything else (an envelope by an untrusted key,
a malformed statement) its envelopes are appended one by one, each refused or logged on its own.
An envelope posted twice in one group is logged once; the other copy is answered as the replay
it is (409 naming the entry).

The requests wait on the event loop, not in threads: the queue is touched only by the loop,
and one batch at a time runs in the thread pool. A request whose client goes away while it
waits is still appended (a retry then gets the 409 naming its entry).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool

from evidence.dsse import Envelope
from evidence.errors import DuplicateEntry
from evidence.note import TlogProof
from evidence.store import AppendResult, SignedCheckpoint, replay_refused

MAX_GROUP = 256
# How long a batch waits for more when the one before held several (concurrent clients). Without
# it, 8 clients settle into alternating batches of 2 and 6, each paying a commit and an fsync.
LINGER_S = 0.001
QUIET_S = 0.05  # after this long without a batch, a request is appended at once again


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


Outcome = Logged | Exception


@dataclass(eq=False)
class _Slot:
    envelope: Envelope
    answer: asyncio.Future[Logged]

    def settle(self, outcome: Outcome) -> None:
        if self.answer.done() or self.answer.get_loop().is_closed():  # nobody is waiting
            return
        if isinstance(outcome, Exception):
            self.answer.set_exception(outcome)
        else:
            self.answer.set_result(outcome)


class GroupCommit:
    """`await append(envelope)` on one event loop; `commit` appends a batch atomically or
    raises, and runs in the thread pool, one batch at a time."""

    def __init__(self, commit: Callable[[Sequence[Envelope]], Appended]) -> None:
        self._commit = commit
        self._pending: list[_Slot] = []
        self._running: asyncio.Task[None] | None = None
        self._last = 0  # the size of the latest batch
        self._ended = 0.0  # when it ended, on the loop's clock

    @property
    def waiting(self) -> int:
        """Envelopes queued for the next batch."""
        return len(self._pending)

    async def append(self, envelope: Envelope) -> Logged:
        loop = asyncio.get_running_loop()
        slot = _Slot(envelope, loop.create_future())
        self._pending.append(slot)
        running = self._running
        # A drain left behind by a loop that has closed (a test client's) will never run again.
        if running is None or running.done() or running.get_loop() is not loop:
            self._running = asyncio.ensure_future(self._drain())
        return await slot.answer

    async def _drain(self) -> None:
        try:
            while self._pending:
                if self._under_load():  # let the answered clients' next requests catch it
                    await asyncio.sleep(LINGER_S)
                group, self._pending = self._pending[:MAX_GROUP], self._pending[MAX_GROUP:]
                self._last = len(group)
                try:
                    outcomes = await run_in_threadpool(self.run, [s.envelope for s in group])
                except BaseException as exc:  # cancelled at shutdown: answer every waiter
                    error = exc if isinstance(exc, Exception) else RuntimeError(repr(exc))
                    for slot in group + self._pending:
                        slot.settle(error)
                    self._pending = []
                    raise
                for slot, outcome in zip(group, outcomes, strict=True):
                    slot.settle(outcome)
                self._ended = asyncio.get_running_loop().time()
        finally:
            self._running = None

    def _under_load(self) -> bool:
        """The latest batch held several and ended just now: concurrent clients are about."""
        ago = asyncio.get_running_loop().time() - self._ended
        return self._last > 1 and ago < QUIET_S

    def run(self, envelopes: Sequence[Envelope]) -> list[Outcome]:
        """One batch, in order: each envelope's entry or its own refusal."""
        keys = [envelope.canonical() for envelope in envelopes]
        first_of: dict[bytes, int] = {}
        for position, key in enumerate(keys):
            first_of.setdefault(key, position)
        unique = sorted(first_of.values())
        outcomes: list[Outcome | None] = [None] * len(envelopes)
        self._batch(unique, envelopes, outcomes)
        answered: list[Outcome] = []
        for position, key in enumerate(keys):
            own = outcomes[position]
            if own is not None:
                answered.append(own)
                continue
            first = outcomes[first_of[key]]
            if isinstance(first, Logged):
                answered.append(_replay(first.index))
            else:
                assert first is not None
                answered.append(first)
        return answered

    def _batch(
        self, positions: list[int], envelopes: Sequence[Envelope], outcomes: list[Outcome | None]
    ) -> None:
        """The envelopes at `positions` as one batch. Replays (the store names every one) are
        answered 409 and the others go in as one batch again; any other refusal sends them one
        at a time, so that each gets its own answer."""
        if not positions:
            return
        try:
            batch = self._commit([envelopes[p] for p in positions])
        except DuplicateEntry as exc:
            if not exc.logged:
                self._one_by_one(positions, envelopes, outcomes, exc)
                return
            for offset, index in exc.logged.items():
                outcomes[positions[offset]] = _replay(index)
            self._batch([p for p in positions if outcomes[p] is None], envelopes, outcomes)
        except Exception as exc:
            self._one_by_one(positions, envelopes, outcomes, exc)
        else:
            for offset, p in enumerate(positions):
                outcomes[p] = Logged(batch, offset)

    def _one_by_one(
        self,
        positions: list[int],
        envelopes: Sequence[Envelope],
        outcomes: list[Outcome | None],
        refusal: Exception,
    ) -> None:
        if len(positions) == 1:
            outcomes[positions[0]] = refusal
            return
        for p in positions:
            outcomes[p] = self._alone(envelopes[p])

    def _alone(self, envelope: Envelope) -> Outcome:
        try:
            return Logged(self._commit([envelope]), 0)
        except Exception as exc:
            return exc


def _replay(index: int) -> DuplicateEntry:
    """The answer to an envelope the log holds at `index`, as the store words it alone."""
    return replay_refused("envelope", index)
