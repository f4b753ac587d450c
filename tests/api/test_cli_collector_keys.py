"""`annex keys add-collector`: a remote collector's key trusted from the CLI, so envelopes it
signs can be appended (by `POST /api/v1/entries`); anything but an Ed25519 PEM is refused."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from evidence.canonical import canonical_bytes
from evidence.dsse import sign_envelope
from evidence.errors import AuthorityError, TrustError
from evidence.home import Home
from evidence.keys import Signer
from schemas.gpu import GPU_INVENTORY
from tests.api.conftest import Annex, Template, log_size
from tests.conftest import COLLECTOR_KINDS, statement

GPU_KIND = COLLECTOR_KINDS[1]


@pytest.fixture
def annex(fresh: Path, annex_at: Callable[[Path], Annex]) -> Annex:
    return annex_at(fresh)


def pem_of(signer: Signer) -> bytes:
    return signer.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_a_trusted_collectors_envelopes_append(
    annex: Annex, fresh: Path, template: Template, tmp_path: Path
) -> None:
    node = Signer.generate("gpu-node-1")
    envelope = sign_envelope(canonical_bytes(statement(1, kind="gpu")), node)
    with Home(fresh).open_store(write=True) as store, pytest.raises(TrustError):
        store.append_envelopes([envelope])  # not trusted yet
    (tmp_path / "node.pem").write_bytes(pem_of(node))
    done = annex.fast(
        "keys", "add-collector", "gpu-node-1", tmp_path / "node.pem", "--json",
        "--predicates", f"gpu-inventory,{GPU_KIND}",
    )  # fmt: skip
    assert done.code == 0, done.err
    assert done.json()["role"] == "collector"
    assert done.json()["keyid"] == node.keyid
    assert done.json()["predicates"] == [GPU_INVENTORY, GPU_KIND]
    with Home(fresh).open_store(write=True) as store:
        appended = store.append_envelopes([envelope])
    assert appended.first_index == template.size + 1  # after the key event


def test_a_collector_key_is_registered_for_gpu_inventory_alone_by_default(
    annex: Annex, fresh: Path, tmp_path: Path
) -> None:
    node = Signer.generate("gpu-node-1")
    (tmp_path / "node.pem").write_bytes(pem_of(node))
    done = annex.fast("keys", "add-collector", "gpu-node-1", tmp_path / "node.pem", "--json")
    assert done.code == 0, done.err
    assert done.json()["predicates"] == [GPU_INVENTORY]
    listed = annex.fast("keys", "list").out
    assert "may sign: gpu-inventory" in listed
    envelope = sign_envelope(canonical_bytes(statement(1, kind="gpu")), node)
    with (
        Home(fresh).open_store(write=True) as store,
        pytest.raises(AuthorityError, match=r"collector key .* may not sign gpu statements"),
    ):
        store.append_envelopes([envelope])


@pytest.mark.parametrize(
    ("predicates", "message"),
    [
        ("model-release", "a collector key may never sign model-release: only the model-signing"),
        ("incident", "a collector key may never sign incident: only the log key may"),
        ("key-event", "may never sign key-event"),
        ("report", "may never sign report"),
        ("gpu-inventroy", "'gpu-inventroy' is not an Annex predicate type"),
        ("gpu-inventory,gpu-inventory", "gpu-inventory is listed twice"),
        (",", "name at least one predicate type"),
        ("https://annex.dev/predicates/model-release/v1", "may never sign model-release"),
    ],
)
def test_a_collector_is_never_registered_for_what_only_another_role_signs(
    annex: Annex, fresh: Path, template: Template, tmp_path: Path, predicates: str, message: str
) -> None:
    (tmp_path / "node.pem").write_bytes(pem_of(Signer.generate("gpu-node-1")))
    refused = annex.fast(
        "keys", "add-collector", "gpu-node-1", tmp_path / "node.pem", "--predicates", predicates
    )
    assert refused.code == 2, refused.out
    assert message in refused.err
    assert log_size(fresh) == template.size


def test_only_an_ed25519_pem_is_trusted(
    annex: Annex, fresh: Path, template: Template, tmp_path: Path
) -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    (tmp_path / "ec.pem").write_bytes(
        ec_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    (tmp_path / "junk.pem").write_text("not a key\n")
    for path, message in (
        (tmp_path / "ec.pem", "a collector key must be Ed25519"),
        (tmp_path / "junk.pem", "not a PEM public key"),
        (tmp_path / "missing.pem", "cannot read"),
    ):
        refused = annex.fast("keys", "add-collector", "node", path)
        assert refused.code == 2, refused.out
        assert message in refused.err
    assert log_size(fresh) == template.size


def test_an_older_trust_file_is_read_with_the_narrowest_default(
    annex: Annex, fresh: Path, tmp_path: Path
) -> None:
    """A collector key listed before keys carried predicate types may sign GPU inventory alone,
    and `annex keys list` says that this is a default."""
    node = Signer.generate("gpu-node-1")
    (tmp_path / "node.pem").write_bytes(pem_of(node))
    added = annex.fast("keys", "add-collector", "gpu-node-1", tmp_path / "node.pem", "--json")
    assert added.code == 0, added.err
    trust = json.loads((fresh / "trust.json").read_text())
    for key in trust["keys"]:
        key.pop("predicates", None)  # as an earlier Annex wrote it
    (fresh / "trust.json").write_text(json.dumps(trust))
    listed = annex.fast("keys", "list").out
    assert "may sign: gpu-inventory (default for an older trust file)" in listed
    [collector] = [
        k for k in annex.fast("keys", "list", "--json").json()["keys"] if k["name"] == "gpu-node-1"
    ]
    assert collector["predicates"] == [GPU_INVENTORY]
    assert collector["signs_checkpoints"] is False
