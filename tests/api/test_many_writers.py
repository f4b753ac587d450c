"""Many writers over HTTP, on SQLite and on PostgreSQL: K collector processes, each with its own
trusted key, push M envelopes at once to one real `annex serve`. Every push is a 201 whose
receipt checks out; the indices are exactly consecutive; `annex verify` passes; every receipt's
checkpoint is a signed prefix of the final tree. And the same envelope posted by K processes at
the same instant: one 201, the others 409, one entry."""

from __future__ import annotations

import base64
import json
import multiprocessing
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.pool import Pool
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import create_engine, text

from api.auth import TokenFile
from api.push import push_envelope, sign_statement
from evidence.home import Home
from evidence.keys import Signer
from evidence.merkle import leaf_hash, verify_consistency
from evidence.verify import open_checkpoint
from tests.api.conftest import annex_command
from tests.api.live_server import API, LiveServer, annex_env, serving
from tests.conftest import COLLECTOR_KINDS, postgres_url, statement

WRITERS = 4  # processes, each a collector node with its own key
PUSHES = 8  # envelopes each
START_IN_S = 1.0  # workers wait for a common instant, so the pushes overlap


@dataclass(frozen=True)
class Fleet:
    server: LiveServer
    nodes: list[tuple[str, bytes]]  # (key name, raw Ed25519 private key)
    token: str  # scope write
    reader: str  # scope read

    def get(self, path: str, **params: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.reader}"}
        answer = httpx.get(f"{self.server.url}{API}{path}", params=params, headers=headers)
        assert answer.status_code == 200, answer.text
        return answer


@contextmanager
def _database(kind: str) -> Iterator[str | None]:
    """None for SQLite; a new database on the test PostgreSQL server, dropped afterwards."""
    if kind == "sqlite":
        yield None
        return
    server = postgres_url()
    if server is None:
        pytest.skip("no PostgreSQL server: set ANNEX_TEST_POSTGRES_URL")
    name = "annex_" + uuid.uuid4().hex[:12]
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield server.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def fleet(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp(f"fleet-{request.param}")
    with _database(request.param) as url:
        home = Home(root / "server", url)
        home.init("server.example/log")
        nodes = []
        for k in range(WRITERS):
            signer = Signer.generate(f"gpu-node-{k}")
            home.add_collector_key(signer.name, signer.public_bytes, COLLECTOR_KINDS)
            raw = signer.private_key.private_bytes(
                serialization.Encoding.Raw,
                serialization.PrivateFormat.Raw,
                serialization.NoEncryption(),
            )
            nodes.append((signer.name, raw))
        tokens = TokenFile(home.path)
        write, read = tokens.create("write")[1], tokens.create("read")[1]
        with serving(home, root) as server:
            yield Fleet(server, nodes, write, read)


@pytest.fixture(scope="module")
def pool() -> Iterator[Pool]:
    """Worker processes, started once (spawned: each imports this module, about a second)."""
    with multiprocessing.get_context("spawn").Pool(WRITERS) as workers:
        workers.map(_ready, range(WRITERS), chunksize=1)
        yield workers


def _ready(_: int) -> None:
    time.sleep(0.2)  # hold the worker so the next task goes to another one


def _wait_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.time()))


def _push_many(job: tuple[str, str, str, bytes, int, float]) -> list[dict[str, Any]] | str:
    """In a worker: sign PUSHES statements with this node's key, push them, keep the receipts
    (each already checked against its checkpoint by push_envelope). A failure comes back as text."""
    url, token, name, raw, node, start_at = job
    try:
        signer = Signer(Ed25519PrivateKey.from_private_bytes(raw), name)
        envelopes = [
            sign_statement(statement(node * 1000 + i, kind="gpu"), signer, where=f"push {i}")
            for i in range(PUSHES)
        ]
        _wait_until(start_at)
        receipts = []
        for envelope in envelopes:
            pushed = push_envelope(url, envelope, token)
            receipts.append(
                {
                    "index": pushed.index,
                    "leaf": leaf_hash(envelope.canonical()),
                    "size": pushed.checkpoint.size,
                    "root": pushed.checkpoint.root,
                    "note": pushed.checkpoint_note,
                }
            )
        return receipts
    except Exception as exc:  # reported to the test as text
        return f"{name}: {type(exc).__name__}: {exc}"


def _post_same(job: tuple[str, str, bytes, float]) -> int:
    url, token, body, start_at = job
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    _wait_until(start_at)
    return httpx.post(f"{url}{API}/entries", content=body, headers=headers, timeout=60).status_code


def _size(fleet: Fleet) -> int:
    with fleet.server.home.open_store() as store:
        return store.size()


def test_many_writers_get_consecutive_indices_and_one_tree(fleet: Fleet, pool: Pool) -> None:
    before = _size(fleet)
    start_at = time.time() + START_IN_S
    jobs = [
        (fleet.server.url, fleet.token, name, raw, k, start_at)
        for k, (name, raw) in enumerate(fleet.nodes)
    ]
    results = pool.map(_push_many, jobs, chunksize=1)
    failures = [r for r in results if isinstance(r, str)]
    assert not failures, failures
    receipts = [r for batch in results if not isinstance(batch, str) for r in batch]
    assert sorted(r["index"] for r in receipts) == list(range(before, before + WRITERS * PUSHES))
    with fleet.server.home.open_store() as store:
        for r in receipts:
            assert store.get(r["index"]).leaf_hash == r["leaf"]
    _every_checkpoint_is_a_prefix_of_the_final_tree(fleet, receipts)
    verified = subprocess.run(
        [*annex_command(), "verify", "--json"],
        env=annex_env(fleet.server.home, fleet.server.log.parent),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert json.loads(verified.stdout)["size"] == before + WRITERS * PUSHES
    assert fleet.token not in fleet.server.log.read_text()


def _every_checkpoint_is_a_prefix_of_the_final_tree(
    fleet: Fleet, receipts: list[dict[str, Any]]
) -> None:
    trust = fleet.server.home.trust()
    final = open_checkpoint(fleet.get("/checkpoint").text, trust).checkpoint
    by_size = {r["size"]: r for r in receipts}
    for size, r in sorted(by_size.items()):
        assert open_checkpoint(r["note"], trust).checkpoint.root == r["root"]
        assert r["index"] < size <= final.size
        if size == final.size:
            assert r["root"] == final.root
            continue
        proof = fleet.get("/consistency", old=size, new=final.size).json()
        hashes = [base64.b64decode(h) for h in proof["hashes"]]
        verify_consistency(size, final.size, r["root"], final.root, hashes)


def test_a_replay_race_lands_once(fleet: Fleet, pool: Pool) -> None:
    name, raw = fleet.nodes[0]
    signer = Signer(Ed25519PrivateKey.from_private_bytes(raw), name)
    envelope = sign_statement(statement(99_999, kind="gpu"), signer, where="race")
    body = json.dumps(envelope.to_dict()).encode()
    before = _size(fleet)
    start_at = time.time() + START_IN_S
    statuses = pool.map(
        _post_same, [(fleet.server.url, fleet.token, body, start_at)] * WRITERS, chunksize=1
    )
    assert sorted(statuses) == [201] + [409] * (WRITERS - 1)
    assert _size(fleet) == before + 1
