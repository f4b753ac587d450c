"""Forgeries by someone holding a collector key (and, where said, write access to the database).

Each test is the attack as it would be made, and each would have passed before signatures were
checked for authority, when any Ed25519 key of the trust file could sign checkpoints and any
entry: a checkpoint signed by a collector key, a model release or a legal hold's close signed by
one, a dossier whose checkpoint a collector key re-signed. Where a forgery needs a control (the
rows or the bundle surgery are sound), the same forgery made with the log key verifies.
Refusals at the REST API are in tests/api/test_authority_api.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from api.demo_model import write_base_model
from collectors.erasure import refuse_under_hold
from collectors.incidents import active_holds
from evidence.canonical import canonical_bytes
from evidence.dsse import Envelope, sign_envelope
from evidence.errors import InputError, VerificationError
from evidence.home import Home, active_key
from evidence.keys import Signer
from evidence.note import Checkpoint, TlogProof, sign_checkpoint, split_note
from evidence.store import Store
from evidence.verify import open_checkpoint, verify_entry, verify_log
from reports.bundle import build_bundle, verify_dossier
from reports.gate import Verdict, directory_kind, run_gate
from reports.render import BUNDLE_NAME, Attachment, render_pdf
from reports.requirements import Signed
from schemas.gpu import GPU_INVENTORY
from schemas.model import MODEL_RELEASE, ModelReleasePredicate
from schemas.policy import EVAL_RUN
from tests.conftest import statement
from tests.evidence.forge import forge_append, held_incident_and_its_close
from tests.reports.gate_helpers import NOW, ago, change_one_byte, manifest_of, release
from tests.reports.test_render import make_document

ORIGIN = "test.example/log"


@dataclass(frozen=True)
class Rig:
    home: Home
    log: Signer
    node: Signer  # a collector registered for gpu-inventory and eval-run

    @property
    def url(self) -> str:
        return self.home.db_url

    def node_as(self, name: str) -> Signer:
        """The collector's private key under a note name of the forger's choice."""
        return Signer(self.node.private_key, name)

    def forge(self, envelopes: list[Envelope], checkpoint_by: Signer | None) -> range:
        return forge_append(self.url, envelopes, checkpoint_by)


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    home = Home(tmp_path / "annex")
    home.init(ORIGIN, model_signing_name="release-key")
    node = Signer.generate("gpu-node-1")
    home.add_collector_key("gpu-node-1", node.public_bytes, [GPU_INVENTORY, EVAL_RUN])
    with home.open_store(write=True) as store:
        store.append([statement(i, kind="gpu-inventory") for i in range(3)])
    return Rig(home, home.signer(), node)


def gpu_envelope(rig: Rig, i: int) -> Envelope:
    """An envelope the collector key may sign: its own GPU inventory."""
    return sign_envelope(canonical_bytes(statement(i, kind="gpu-inventory")), rig.node)


# -- a collector key signs a checkpoint ------------------------------------------------------------


@pytest.mark.parametrize("name", ["gpu-node-1", ORIGIN])
def test_a_checkpoint_signed_by_a_collector_key_fails_verify(rig: Rig, name: str) -> None:
    """A database writer appends an entry the collector may sign, the tree nodes, and a
    checkpoint over the new tree signed by the collector key (under its own name, or the
    log's): `annex verify` fails at that checkpoint, naming the batch's first entry."""
    with rig.home.open_store() as store:
        size = store.size()
    [index] = rig.forge([gpu_envelope(rig, 50)], rig.node_as(name))
    assert index == size
    with Store.open(rig.url) as store, pytest.raises(VerificationError) as caught:
        verify_log(store, rig.home.trust())
    assert caught.value.index == index
    assert f"entries {index}..{index} and the checkpoint at size {index + 1}" in str(caught.value)
    assert "not signed by a trusted key" in str(caught.value)


def test_the_same_rows_with_the_log_keys_checkpoint_verify(rig: Rig) -> None:
    """The control: the forged rows are sound; only the checkpoint's signer is wrong."""
    [index] = rig.forge([gpu_envelope(rig, 50)], rig.log)
    with Store.open(rig.url) as store:
        assert verify_log(store, rig.home.trust()).size == index + 1


@pytest.mark.parametrize("name", ["gpu-node-1", ORIGIN])
def test_a_proof_against_a_collector_signed_checkpoint_fails(rig: Rig, name: str) -> None:
    """`verify-entry` on an entry the collector may sign, proven against its own checkpoint."""
    envelope = gpu_envelope(rig, 51)
    [index] = rig.forge([envelope], rig.node_as(name))
    with Store.open(rig.url) as store:
        proof = store.inclusion_proof(index)
        note = store.checkpoint().note
    assert split_note(note)[0].startswith(f"{ORIGIN}\n{index + 1}\n")
    with pytest.raises(VerificationError, match="note is not signed by a trusted key"):
        open_checkpoint(note, rig.home.trust())
    with pytest.raises(VerificationError, match="note is not signed by a trusted key"):
        verify_entry(envelope, proof, rig.home.trust())


def test_a_collector_signature_beside_the_logs_adds_nothing(rig: Rig) -> None:
    """A real checkpoint with a collector's signature appended still opens, as the log's."""
    with rig.home.open_store() as store:
        real = store.checkpoint().note
    text, _ = split_note(real)
    extra = sign_checkpoint(Checkpoint.parse(text), rig.node_as("gpu-node-1"), 1)
    both = real + "".join(line + "\n" for line in extra.split("\n\n", 1)[1].splitlines())
    head = open_checkpoint(both, rig.home.trust())
    assert head.checkpoint.size == Checkpoint.parse(text).size


# -- a collector key signs a model release; the gate ---------------------------------------------


def release_statement(directory: Path, keyid: str) -> dict[str, Any]:
    """What `annex sign model` logs for the directory as it is now, naming `keyid`."""
    manifest = manifest_of(directory)
    kind = directory_kind(directory)
    predicate = ModelReleasePredicate(
        observedAt=ago(0),
        name=directory.name,
        kind=kind,
        manifest=manifest,
        approvedBy="release-manager",
        signingKeyid=keyid,
    ).to_predicate()
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": f"{kind}:{directory.name}", "digest": {"sha256": manifest.digest}}],
        "predicateType": MODEL_RELEASE,
        "predicate": predicate,
    }


def judge(home: Home, directory: Path) -> Verdict:
    with Store.open(home.db_url) as store:
        return run_gate(
            directory, Signed(), store=store, trust=home.trust(), policy="test", now=NOW
        )


@pytest.mark.parametrize("checkpoint_by", ["collector", "log"])
def test_a_collector_signed_release_in_the_database_does_not_pass_the_gate(
    rig: Rig, tmp_path: Path, checkpoint_by: str
) -> None:
    """The model is released, one byte changes, and a release of the changed files naming the
    real model-signing key is written into the database, signed by the collector key; the
    checkpoint by the collector key (all it has) or even by the log key (an insider)."""
    model = write_base_model(tmp_path / "demo")
    keyid = active_key(rig.home.trust().trust, "model-signing").keyid
    release(rig.home, model, keyid)
    assert judge(rig.home, model).passed
    change_one_byte(model)
    forged = sign_envelope(canonical_bytes(release_statement(model, keyid)), rig.node)
    [index] = rig.forge([forged], rig.node if checkpoint_by == "collector" else rig.log)
    verdict = judge(rig.home, model)
    assert not verdict.passed
    reason = verdict.outcome.reason
    assert reason.startswith("no trusted release of these files: ")
    assert f"entry {index}: " in reason
    if checkpoint_by == "log":
        assert f"collector key {rig.node.keyid[:16]} (gpu-node-1)" in reason
        assert "may not sign model-release statements" in reason
    else:
        assert "note is not signed by a trusted key" in reason


# -- a collector key closes an incident, lifting its legal hold ---------------------------------


def forged_close(rig: Rig) -> tuple[int, Envelope]:
    """An incident opened by the log with a legal hold; its close (hold released) as a collector
    writes it: the open statement with `action` close and `legalHold` false, signed by its key."""
    with rig.home.open_store(write=True) as store:
        opened, made = held_incident_and_its_close(store, NOW)
    return opened, sign_envelope(canonical_bytes(made), rig.node)


def test_a_collector_signed_close_in_the_database_fails_verify(rig: Rig) -> None:
    _, close = forged_close(rig)
    [index] = rig.forge([close], rig.node)
    with Store.open(rig.url) as store, pytest.raises(VerificationError) as caught:
        verify_log(store, rig.home.trust())
    assert caught.value.index == index
    assert "may not sign incident statements" in str(caught.value)


def test_a_collector_signed_close_in_the_database_leaves_the_hold(rig: Rig) -> None:
    opened, close = forged_close(rig)
    rig.forge([close], rig.node)
    with Store.open(rig.url, trust=rig.home.trust) as store:
        assert [h.entry for h in active_holds(store)] == [opened]
        with pytest.raises(InputError, match="legal hold by incident inc-1"):
            refuse_under_hold(store, "erasure")


# -- a dossier whose checkpoint a collector key re-signed ----------------------------------------


@dataclass(frozen=True)
class Dossier:
    home: Home
    node: Signer
    doc: Any
    bundle: bytes


@pytest.fixture(scope="module")
def dossier(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dossier]:
    """A real dossier whose bundled trust file lists a collector key beside the log key."""
    root = tmp_path_factory.mktemp("dossier")
    home = Home(root / "annex")
    home.init(ORIGIN)
    node = Signer.generate("gpu-node-1")
    home.add_collector_key("gpu-node-1", node.public_bytes, [GPU_INVENTORY])
    with home.open_store(write=True) as store:
        doc = make_document(store)
        bundle = build_bundle(store, doc, home.trust_path.read_bytes())
    yield Dossier(home, node, doc, bundle)


def resigned(bundle: bytes, signer: Signer) -> bytes:
    """The bundle with its checkpoint (and every proof's copy of it) signed by `signer` alone:
    same origin, size and root, so every bundled entry still proves against it."""
    body = json.loads(bundle)
    text, _ = split_note(body["checkpoint"])
    note = sign_checkpoint(Checkpoint.parse(text), signer, int(NOW.timestamp()))
    body["checkpoint"] = note
    for entry in body["entries"]:
        entry["proof"] = replace(TlogProof.parse(entry["proof"]), checkpoint=note).format()
    return canonical_bytes(body)


def dossier_pdf(dossier: Dossier, bundle: bytes, path: Path) -> Path:
    render_pdf(dossier.doc, path, attachments=[Attachment(BUNDLE_NAME, bundle)])
    return path


def test_a_dossier_resigned_by_the_log_key_verifies(dossier: Dossier, tmp_path: Path) -> None:
    """The control: the surgery keeps a sound dossier (the log key may sign checkpoints)."""
    log = dossier.home.signer()
    pdf = dossier_pdf(dossier, resigned(dossier.bundle, log), tmp_path / "dossier.pdf")
    assert verify_dossier(pdf).entries_checked == len(dossier.doc.citations())


@pytest.mark.parametrize("name", ["gpu-node-1", ORIGIN])
def test_a_dossier_whose_checkpoint_a_collector_signed_fails(
    dossier: Dossier, tmp_path: Path, name: str
) -> None:
    """Checked with the bundle's own trust file, which lists the collector key, and with the
    auditor's: the collector key signs no checkpoint under any name."""
    forger = Signer(dossier.node.private_key, name)
    pdf = dossier_pdf(dossier, resigned(dossier.bundle, forger), tmp_path / "dossier.pdf")
    for given in (None, dossier.home.trust()):
        with pytest.raises(VerificationError, match="note is not signed by a trusted key"):
            verify_dossier(pdf, trust=given)
