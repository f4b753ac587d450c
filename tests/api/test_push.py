"""`annex collect gpu --push URL`: the node signs with its own key and a real `annex serve` logs
it; the receipt is checked offline before success is reported (exit 1 when it does not check
out); refusals name the URL and never the token; nothing lands in the node's own log. And
`annex append` of an envelope the log already holds: refused, nothing appended."""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from api import cli_gpu
from api.auth import TokenFile
from api.push import PushError, entries_url, push_envelope, read_token, sign_statement
from evidence.errors import InputError, VerificationError
from evidence.home import Home
from evidence.keys import Signer
from evidence.note import TlogProof
from evidence.verify import verify_entry
from tests.api.conftest import Annex, log_size
from tests.api.live_server import LiveServer, free_port, serving
from tests.conftest import COLLECTOR_KINDS, statement


@dataclass(frozen=True)
class Rig:
    """A server home served by `annex serve`, and a node home whose key the server trusts."""

    server: LiveServer
    node: Home
    tokens: dict[str, str]  # scope -> secret
    token_file: Path  # holds the write token
    cwd: Path

    @property
    def url(self) -> str:
        return self.server.url

    def annex(self, **env: str) -> Annex:
        """`annex` on the node's home."""
        return Annex(self.node.path, self.cwd, env)

    def sizes(self) -> tuple[int, int]:
        return log_size(self.server.home.path), log_size(self.node.path)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    root = tmp_path_factory.mktemp("push")
    server_home, node = Home(root / "server"), Home(root / "node")
    server_home.init("server.example/log")
    node.init("gpu-node-1.example/annex")
    # The documented way: export the node's key as PEM, trust it on the server.
    exported = Annex(node.path, root)("keys", "export-public")
    assert exported.code == 0, exported.err
    (root / "node.pem").write_text(exported.out)
    kinds = ",".join(("gpu-inventory", *COLLECTOR_KINDS))
    added = Annex(server_home.path, root)(
        "keys", "add-collector", "gpu-node-1", root / "node.pem", "--predicates", kinds
    )
    assert added.code == 0, added.err
    tokens = {s: TokenFile(server_home.path).create(s)[1] for s in ("read", "write")}
    (root / "token").write_text(tokens["write"] + "\n")
    with serving(server_home, root) as server:
        yield Rig(server, node, tokens, root / "token", root)


def test_a_push_is_logged_by_the_server_and_not_here(rig: Rig) -> None:
    server_size, node_size = rig.sizes()
    trust = rig.server.home.trust_path
    pushed = rig.annex()(
        "collect", "gpu", "--push", rig.url, "--token-file", rig.token_file,
        "--server-trust", trust, "--json",
    )  # fmt: skip
    assert pushed.code == 0, pushed.err
    out = pushed.json()
    assert out["index"] == server_size and out["pushed"]["checkpoint_signature_checked"]
    assert rig.sizes() == (server_size + 1, node_size)
    with rig.server.home.open_store() as store:
        entry = store.get(server_size)
    assert entry.keyid == rig.node.signer().keyid  # signed by the node's own key
    assert entry.statement == out["statement"]
    proof = TlogProof.parse(out["pushed"]["tlog_proof"])
    assert verify_entry(entry.envelope, proof, rig.server.home.trust()).index == server_size
    assert rig.tokens["write"] not in rig.server.log.read_text()


def test_annex_token_from_the_environment_and_the_summary(rig: Rig) -> None:
    server_size, node_size = rig.sizes()
    pushed = rig.annex(ANNEX_TOKEN=rig.tokens["write"])("collect", "gpu", "--push", rig.url)
    assert pushed.code == 0, pushed.err
    assert f"recorded at entry {server_size} of {rig.url}/api/v1/entries" in pushed.out
    assert (
        f"inclusion proof verified against the server's checkpoint of size {server_size + 1}; "
        "nothing appended to this node's log"
    ) in pushed.out
    assert rig.sizes() == (server_size + 1, node_size)


def _refusals(rig: Rig, tmp_path: Path) -> list[tuple[list[str | Path], dict[str, str], str]]:
    (tmp_path / "empty").write_text("\n")
    (tmp_path / "wrong").write_text("annex_not_a_token\n")
    (tmp_path / "read").write_text(rig.tokens["read"])
    stranger = Home(tmp_path / "stranger")
    stranger.init("stranger.example/annex")
    nowhere = f"http://127.0.0.1:{free_port()}"
    push = ["collect", "gpu", "--push"]
    good = ["--token-file", str(rig.token_file)]
    entries = f"{rig.url}/api/v1/entries"
    return [
        ([*push, rig.url], {}, "pushing needs a token with scope write"),
        ([*push, rig.url, "--token-file", tmp_path / "empty"], {}, "is empty"),
        ([*push, rig.url, "--token-file", tmp_path / "gone"], {}, "cannot read the token file"),
        (
            [*push, rig.url, "--token-file", tmp_path / "wrong"],
            {},
            f"{entries} answered 401 Unauthorized",
        ),
        (
            [*push, rig.url, "--token-file", tmp_path / "read"],
            {},
            f"{entries} answered 403 Forbidden",
        ),
        (
            [*push, rig.url, *good, "--home", stranger.path],
            {},
            "not signed by any trusted key",
        ),
        ([*push, nowhere, *good], {}, f"cannot reach {nowhere}/api/v1/entries"),
        ([*push, "ftp://example.org", *good], {}, "give the server's http:// or https:// URL"),
        ([*push, rig.url, *good, "--dry-run"], {}, "choose one"),
        (["collect", "gpu", *good], {}, "--token-file and --server-trust go with --push"),
    ]


def test_refusals_name_the_url_and_never_the_token(rig: Rig, tmp_path: Path) -> None:
    sizes = rig.sizes()
    secrets = (rig.tokens["write"], rig.tokens["read"], "annex_not_a_token")
    for args, env, message in _refusals(rig, tmp_path):
        refused = rig.annex(**env).fast(*args)
        assert refused.code == 2, (args, refused.out, refused.err)
        assert message in refused.err, (args, refused.err)
        assert not any(s in refused.err + refused.out for s in secrets), args
    assert rig.sizes() == sizes
    assert not any(s in rig.server.log.read_text() for s in secrets)


def test_a_replay_is_refused_with_the_entry_that_holds_it(rig: Rig) -> None:
    envelope = sign_statement(statement(7, kind="gpu"), rig.node.signer(), where="statement")
    first = push_envelope(rig.url, envelope, rig.tokens["write"])
    size = log_size(rig.server.home.path)
    with pytest.raises(PushError) as refused:
        push_envelope(rig.url, envelope, rig.tokens["write"])
    message = str(refused.value)
    assert "answered 409 Conflict" in message and f"at entry {first.index}" in message
    assert log_size(rig.server.home.path) == size


def _mock(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.MockTransport:
    return httpx.MockTransport(handler)


def test_server_failures_and_timeouts_name_the_url() -> None:
    envelope = sign_statement(statement(1), Signer.generate("node"), where="statement")
    url = "http://annex.invalid:8080"

    def unavailable(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == "Bearer t0ken"
        body = {"status": 503, "detail": "append failed: database is locked"}
        return httpx.Response(503, json=body)

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with pytest.raises(PushError) as failed:
        push_envelope(url, envelope, "t0ken", transport=_mock(unavailable))
    message = str(failed.value)
    assert f"{url}/api/v1/entries answered 503 Service Unavailable" in message
    assert "database is locked" in message and "try again" in message and "t0ken" not in message
    with pytest.raises(PushError, match="did not answer in time"):
        push_envelope(url, envelope, "t0ken", transport=_mock(slow))


def _lying(rig: Rig, tamper: Callable[[dict[str, Any]], None]) -> httpx.MockTransport:
    """Forwards to the real server, then changes its receipt."""

    def handler(request: httpx.Request) -> httpx.Response:
        real = httpx.post(str(request.url), content=request.content, headers=request.headers)
        assert real.status_code == 201, real.text
        receipt = real.json()
        tamper(receipt)
        return httpx.Response(201, json=receipt)

    return httpx.MockTransport(handler)


def _flip_proof_hash(receipt: dict[str, Any]) -> None:
    proof = TlogProof.parse(receipt["tlog_proof"])
    bad = (bytes(32), *proof.hashes[1:]) if proof.hashes else (bytes(32),)
    receipt["tlog_proof"] = TlogProof(proof.index, bad, proof.checkpoint).format()


def _other_leaf(receipt: dict[str, Any]) -> None:
    receipt["leaf_hash"] = base64.b64encode(bytes(32)).decode()


def _other_index(receipt: dict[str, Any]) -> None:
    receipt["index"] += 1


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (_flip_proof_hash, "inclusion proof"),
        (_other_leaf, "logged other bytes than the envelope sent"),
        (_other_index, "for another entry or checkpoint"),
    ],
)
def test_a_receipt_that_does_not_check_out_exits_1(
    rig: Rig, monkeypatch: pytest.MonkeyPatch, tamper: Callable[..., None], message: str
) -> None:
    lying = functools.partial(push_envelope, transport=_lying(rig, tamper))
    monkeypatch.setattr(cli_gpu, "push_envelope", lying)
    node_size = log_size(rig.node.path)
    done = rig.annex().fast("collect", "gpu", "--push", rig.url, "--token-file", rig.token_file)
    assert done.code == 1, (done.out, done.err)
    assert "verification failed" in done.err and message in done.err
    assert log_size(rig.node.path) == node_size


def test_a_checkpoint_not_signed_by_the_trusted_server_exits_1(rig: Rig) -> None:
    """--server-trust names another log's trust file: the checkpoint does not check out."""
    done = rig.annex().fast(
        "collect", "gpu", "--push", rig.url, "--token-file", rig.token_file,
        "--server-trust", rig.node.trust_path, "--json",
    )  # fmt: skip
    assert done.code == 1, done.out
    answer = json.loads(done.out)
    assert answer["error"] == "VerificationError" and "the checkpoint from" in answer["message"]


def test_urls_and_tokens() -> None:
    assert entries_url("https://annex.example:8443/") == "https://annex.example:8443/api/v1/entries"
    assert entries_url("http://h/api/v1") == "http://h/api/v1/entries"
    assert entries_url("http://h/api/v1/entries") == "http://h/api/v1/entries"
    for bad in ("annex.example", "http://", "file:///tmp/x"):
        with pytest.raises(InputError):
            entries_url(bad)
    assert read_token(None, " s3cret\n") == "s3cret"


def test_annex_append_of_an_envelope_the_log_holds(rig: Rig, tmp_path: Path) -> None:
    """The CLI signs statements afresh, so a duplicate only comes with an import of envelopes:
    refused with the entry that holds it, and the whole file with it."""
    home = Home(tmp_path / "annex")
    home.init("import.example/log")
    signer = rig.node.signer()
    home.add_collector_key("gpu-node-1", signer.public_bytes, COLLECTOR_KINDS)
    envelopes = [sign_statement(statement(n), signer, where="s").to_dict() for n in (1, 2)]
    (tmp_path / "one.json").write_text(json.dumps(envelopes[0]))
    (tmp_path / "both.jsonl").write_text("".join(json.dumps(e) + "\n" for e in envelopes))
    annex = Annex(home.path, tmp_path)
    first = annex.fast("append", tmp_path / "one.json", "--json")
    assert first.code == 0, first.err
    index, size = first.json()["first_index"], log_size(home.path)
    for name, label in (("one.json", "one.json"), ("both.jsonl", "both.jsonl line 1")):
        again = annex.fast("append", tmp_path / name)
        assert again.code == 2, again.out
        said = f"{label} is already in the log at entry {index} (the same signed statement)"
        assert said in again.err
    assert log_size(home.path) == size


def test_pushing_verifies_before_it_reports(rig: Rig) -> None:
    """The Python API says the same: a lying server is a VerificationError, not a receipt."""
    envelope = sign_statement(statement(9, kind="gpu"), rig.node.signer(), where="statement")
    with pytest.raises(VerificationError):
        push_envelope(rig.url, envelope, rig.tokens["write"], transport=_lying(rig, _other_leaf))
