"""Group commit of POSTed envelopes (api/group_commit.py), on SQLite and PostgreSQL: requests
that wait while a batch is appended go in as the next batch, and each still gets the answer it
would get alone: its own index and a proof that verifies offline, its own refusal, and a 409 for
a copy of an envelope posted twice at once."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import pytest

from api.group_commit import QUIET_S, Appended, GroupCommit, Logged
from api.state import Stores
from evidence.dsse import Envelope
from evidence.errors import AnnexError, DuplicateEntry, TrustError
from evidence.home import Home
from evidence.keys import Signer
from evidence.verify import verify_entry
from tests.conftest import COLLECTOR_KINDS
from tests.evidence.test_store_replay import envelope


@pytest.fixture
def node(home: Home) -> Signer:
    signer = Signer.generate("gpu-node-1")
    home.add_collector_key(signer.name, signer.public_bytes, COLLECTOR_KINDS)
    return signer


@dataclass
class Held:
    """A committer whose first batch waits until the test lets it go, so the requests sent
    meanwhile queue up as the second batch."""

    stores: Stores
    entered: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    batches: list[int] = field(default_factory=list)

    def commit(self, envelopes: Sequence[Envelope]) -> Appended:
        self.batches.append(len(envelopes))
        if len(self.batches) == 1:
            self.entered.set()
            assert self.release.wait(30)
        return self.stores.append_batch(envelopes)


@pytest.fixture
def stores(home: Home) -> Iterator[Stores]:
    made = Stores(home)
    yield made
    made.close()


def run_grouped(
    held: Held, group: GroupCommit, first: Envelope, rest: list[Envelope]
) -> list[Logged | AnnexError]:
    """Appends `first` alone, holds it, queues `rest` behind it, then lets both batches go:
    as requests on the service's event loop would."""

    async def post(env: Envelope) -> Logged | AnnexError:
        try:
            return await group.append(env)
        except AnnexError as exc:
            return exc

    async def main() -> list[Logged | AnnexError]:
        alone = asyncio.ensure_future(post(first))
        await until(held.entered.is_set)
        behind = [asyncio.ensure_future(post(env)) for env in rest]
        await until(lambda: group.waiting == len(rest))
        held.release.set()
        return list(await asyncio.gather(alone, *behind))

    return asyncio.run(asyncio.wait_for(main(), 60))


async def until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.001)


def test_requests_waiting_on_a_batch_go_in_as_one_and_each_proof_verifies(
    home: Home, stores: Stores, node: Signer
) -> None:
    held = Held(stores)
    group = GroupCommit(held.commit)
    sent = [envelope(node, i) for i in range(9)]
    answers = run_grouped(held, group, sent[0], sent[1:])
    assert held.batches == [1, 8]
    logged = [a for a in answers if isinstance(a, Logged)]
    assert len(logged) == 9
    assert sorted(a.index for a in logged) == list(range(logged[0].index, logged[0].index + 9))
    assert len({a.checkpoint.size for a in logged[1:]}) == 1  # the eight share one checkpoint
    trust = home.trust()
    for env, answer in zip(sent, logged, strict=True):
        checked = verify_entry(env, answer.proof, trust)
        assert checked.index == answer.index
    with home.open_store() as store:
        assert [store.get(a.index).envelope for a in logged] == sent


def test_a_refused_envelope_in_a_batch_is_refused_alone(
    home: Home, stores: Stores, node: Signer
) -> None:
    held = Held(stores)
    group = GroupCommit(held.commit)
    stranger = Signer.generate("not-trusted")
    good = [envelope(node, i) for i in range(4)]
    bad = envelope(stranger, 99)
    size = stores.read().size()
    answers = run_grouped(held, group, good[0], [good[1], bad, good[2], good[3]])
    assert isinstance(answers[2], TrustError)
    assert str(answers[2]).startswith("envelope: not signed by any trusted key")
    assert all(isinstance(a, Logged) for i, a in enumerate(answers) if i != 2)
    assert stores.read().size() == size + 4  # the batch of four fell back to one at a time
    assert held.batches[:2] == [1, 4]


def test_the_same_envelope_twice_in_a_batch_lands_once(
    home: Home, stores: Stores, node: Signer
) -> None:
    held = Held(stores)
    group = GroupCommit(held.commit)
    first, twice, other = envelope(node, 1), envelope(node, 2), envelope(node, 3)
    size = stores.read().size()
    answers = run_grouped(held, group, first, [twice, other, twice])
    logged, copy = answers[1], answers[3]
    assert isinstance(logged, Logged) and isinstance(answers[2], Logged)
    assert isinstance(copy, DuplicateEntry) and copy.index == logged.index
    assert f"already in the log at entry {logged.index}" in str(copy)
    assert stores.read().size() == size + 3
    # Posted again later, the store itself refuses it with the same index.
    with pytest.raises(DuplicateEntry) as later:
        asyncio.run(group.append(twice))
    assert later.value.index == logged.index


def test_replays_in_a_batch_are_refused_and_the_rest_go_in_as_one_batch(
    home: Home, stores: Stores, node: Signer
) -> None:
    held = Held(stores)
    group = GroupCommit(held.commit)
    earlier = [envelope(node, i) for i in (1, 2)]
    before = [stores.append_batch([e]).result.first_index for e in earlier]
    fresh = [envelope(node, i) for i in range(3, 8)]
    queued = [fresh[1], earlier[0], fresh[2], fresh[3], earlier[1], fresh[4]]
    answers = run_grouped(held, group, fresh[0], queued)
    for position, index in ((2, before[0]), (5, before[1])):
        replay = answers[position]
        assert isinstance(replay, DuplicateEntry) and replay.index == index
        assert str(replay) == (
            f"envelope is already in the log at entry {index} (the same signed statement): "
            "nothing appended"
        )
    logged = [a for i, a in enumerate(answers) if i not in (2, 5)]
    assert all(isinstance(a, Logged) for a in logged)
    # the six queued: refused as a batch once, then the four fresh ones in one batch
    assert held.batches == [1, 6, 4]
    assert len({a.checkpoint.size for a in logged[1:] if isinstance(a, Logged)}) == 1
    with home.open_store() as store:
        assert [store.get(a.index).envelope for a in logged if isinstance(a, Logged)] == fresh


def test_the_store_names_every_envelope_of_a_batch_it_holds(home: Home, node: Signer) -> None:
    held = [envelope(node, i) for i in (1, 2)]
    with home.open_store(write=True) as store:
        first = store.append_envelopes(held).first_index
        offered = [envelope(node, 3), held[1], envelope(node, 4), held[0]]
        with pytest.raises(DuplicateEntry) as refused:
            store.append_envelopes(offered)
    assert refused.value.logged == {1: first + 1, 3: first}
    assert refused.value.index == first + 1  # the message names the first in the batch


def test_a_request_cancelled_while_it_waits_is_still_logged_and_others_answered(
    stores: Stores, node: Signer
) -> None:
    """A client that hangs up while its envelope waits: the envelope is appended all the same
    (a retry gets a 409 naming its entry), and the requests beside it get their answers."""
    held = Held(stores)
    group = GroupCommit(held.commit)
    first, gone, stays = envelope(node, 1), envelope(node, 2), envelope(node, 3)
    size = stores.read().size()

    async def main() -> tuple[Logged, Logged]:
        alone = asyncio.ensure_future(group.append(first))
        await until(held.entered.is_set)
        hung_up = asyncio.ensure_future(group.append(gone))
        kept = asyncio.ensure_future(group.append(stays))
        await until(lambda: group.waiting == 2)
        hung_up.cancel()
        held.release.set()
        done = await asyncio.gather(alone, hung_up, kept, return_exceptions=True)
        assert isinstance(done[1], asyncio.CancelledError)
        assert isinstance(done[0], Logged) and isinstance(done[2], Logged)
        return done[0], done[2]

    logged_first, logged_stays = asyncio.run(asyncio.wait_for(main(), 60))
    assert stores.read().size() == size + 3
    with pytest.raises(DuplicateEntry) as retry:
        asyncio.run(group.append(gone))
    assert retry.value.index == logged_stays.index - 1  # between the two it was queued with
    assert logged_first.index == size


def test_under_concurrent_load_a_batch_waits_a_moment_for_the_next_requests(
    stores: Stores, node: Signer
) -> None:
    """After a batch of several, the next one lingers LINGER_S: a request arriving 0.2 ms after
    the first joins it. A request that comes alone after quiet goes at once (no wait)."""
    sizes: list[int] = []

    def commit(envelopes: Sequence[Envelope]) -> Appended:
        sizes.append(len(envelopes))
        return stores.append_batch(envelopes)

    group = GroupCommit(commit)
    sent = [envelope(node, i) for i in range(6)]

    async def main() -> None:
        await asyncio.gather(group.append(sent[0]), group.append(sent[1]))  # one batch of 2
        later: list[asyncio.Future[Logged]] = []
        first = asyncio.ensure_future(group.append(sent[2]))
        asyncio.get_running_loop().call_later(
            0.0002, lambda: later.append(asyncio.ensure_future(group.append(sent[3])))
        )
        await first
        await later[0]
        await asyncio.sleep(QUIET_S * 2)  # quiet: the next request goes alone, at once
        alone = asyncio.ensure_future(group.append(sent[4]))
        asyncio.get_running_loop().call_later(
            0.0002, lambda: later.append(asyncio.ensure_future(group.append(sent[5])))
        )
        await alone
        await later[1]

    asyncio.run(main())
    assert sizes == [2, 2, 1, 1]


def test_a_loop_that_ends_while_a_batch_runs_leaves_the_queue_usable(
    stores: Stores, node: Signer
) -> None:
    """The service stopping (its loop cancels the drain) with a batch in the store's hands: the
    batch still lands, and a new loop's requests are appended, not left behind a dead drain."""
    held = Held(stores)
    group = GroupCommit(held.commit)
    size = stores.read().size()

    async def abandon() -> None:
        orphan = asyncio.ensure_future(group.append(envelope(node, 1)))
        await until(held.entered.is_set)
        assert not orphan.done()

    threading.Timer(0.2, held.release.set).start()
    asyncio.run(abandon())
    logged = asyncio.run(asyncio.wait_for(group.append(envelope(node, 2)), 30))
    assert logged.index in (size, size + 1)
    asyncio.run(asyncio.wait_for(until(lambda: stores.read().size() == size + 2), 30))
    assert held.batches == [1, 1]
