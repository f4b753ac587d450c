"""`annex sign model DIR`: a release in the log and a signature model-signing's own CLI accepts.

The signature is checked with `python -m model_signing verify key` in a subprocess, as a user
without Annex would check it; refusals must append nothing and leave no signature file.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from api.demo_model import write_adapter, write_base_model
from evidence.home import Home
from schemas.model import MODEL_RELEASE, ModelReleasePredicate
from tests.api.conftest import ORIGIN, PASSPHRASE, Annex, Result, log_size

AnnexAt = Callable[[Path], Annex]


@pytest.fixture
def home(tmp_path: Path) -> Home:
    """A data directory as `annex init` makes it: log key (entry 0), model-signing key (1)."""
    h = Home(tmp_path / "annex")
    h.init(ORIGIN, model_signing_name="release-key")
    return h


@pytest.fixture
def annex(home: Home, annex_at: AnnexAt) -> Annex:
    return annex_at(home.path)


@pytest.fixture
def model(tmp_path: Path) -> Path:
    directory = write_base_model(tmp_path / "tiny-gpt")
    (directory / "tokenizer").mkdir()
    (directory / "tokenizer" / "merges.txt").write_text("a b\n")
    return directory


def failed(result: Result, code: int, *needles: str) -> None:
    assert result.code == code, result
    assert result.out == "", result
    for needle in needles:
        assert needle in result.err, (needle, result.err)


def model_signing_verify(directory: Path, public: Path, signature: Path) -> int:
    """OpenSSF model-signing's own verifier, run as its CLI."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "model_signing",
            "verify",
            "key",
            str(directory),
            "--public_key",
            str(public),
            "--signature",
            str(signature),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.returncode


def export_public(annex: Annex, keyid: str, path: Path) -> Path:
    exported = annex.fast("keys", "export-public", keyid[:16])
    assert exported.code == 0, exported
    path.write_text(exported.out)
    return path


def test_sign_logs_a_release_and_model_signing_verifies_the_file(
    annex: Annex, home: Home, model: Path, tmp_path: Path
) -> None:
    done = annex("sign", "model", model, "--approver", "alice", "--note", "CHG-42")
    assert done.code == 0, done
    signature = model / "model.sig"
    [key] = [k for k in home.trust().trust.keys if k.role == "model-signing"]
    lines = done.out.splitlines()
    assert lines[0] == f"signed model tiny-gpt  ({model})"
    assert lines[1] == "  release entry   2, approved by alice"
    assert f"  signature       {signature}" in lines
    assert f"  annex keys export-public {key.keyid[:16]} > model-signing.pub" in lines
    assert (
        f"  model_signing verify key {model} --public_key model-signing.pub --signature {signature}"
    ) in lines

    public = export_public(annex, key.keyid, tmp_path / "pub.pem")
    assert model_signing_verify(model, public, signature) == 0
    weights = model / "model.safetensors"
    original = weights.read_bytes()
    weights.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))  # one byte
    assert model_signing_verify(model, public, signature) != 0
    weights.write_bytes(original)
    assert model_signing_verify(model, public, signature) == 0
    (model / "tokenizer" / "added.txt").write_text("not signed")
    assert model_signing_verify(model, public, signature) != 0


def test_the_release_entry_names_the_manifest_and_the_key(
    annex: Annex, home: Home, model: Path
) -> None:
    data = annex.fast("sign", "model", model, "--name", "tiny-gpt-v2", "--json").json()
    shown = annex.fast("show", str(data["index"]), "--json").json()
    assert shown["predicate_type"] == MODEL_RELEASE
    statement = shown["statement"]
    release = ModelReleasePredicate.model_validate(statement["predicate"])
    assert statement["subject"] == [
        {"name": "model:tiny-gpt-v2", "digest": {"sha256": release.manifest.digest}}
    ]
    assert data["subject"] == "model:tiny-gpt-v2"
    assert data["manifestDigest"] == release.manifest.digest
    assert data["modelSigningDigest"] == release.manifest.model_signing_digest
    assert data["files"] == len(release.manifest.files) == 6
    assert release.approved_by == data["approvedBy"] == "release-key"  # the key's name
    assert release.signing_keyid == data["signingKeyid"]
    sig_bytes = (model / "model.sig").read_bytes()
    assert release.signature_digest == hashlib.sha256(sig_bytes).hexdigest()
    assert annex.fast("verify").code == 0
    assert annex.fast("gate", model).code == 0  # the CI gate accepts the release


def test_an_adapter_is_signed_as_an_adapter(annex: Annex, tmp_path: Path) -> None:
    adapter = write_adapter(tmp_path / "support-lora")
    data = annex.fast("sign", "model", adapter, "--json").json()
    assert (data["kind"], data["subject"]) == ("adapter", "adapter:support-lora")


def test_an_adapter_release_names_the_logged_base(annex: Annex, tmp_path: Path) -> None:
    base = write_base_model(tmp_path / "annex-demo-base")
    adapter = write_adapter(tmp_path / "support-lora", base_name="annex-demo-base")
    unbound = annex.fast("sign", "model", adapter, "--json").json()
    collected = annex.fast("collect", "model", base, "--json")
    assert collected.code == 0, collected
    base_digest = collected.json()["statement"]["subject"][0]["digest"]["sha256"]
    bound = annex.fast("sign", "model", adapter, "--json").json()

    def release(index: int) -> ModelReleasePredicate:
        shown = annex.fast("show", str(index), "--json").json()
        return ModelReleasePredicate.model_validate(shown["statement"]["predicate"])

    assert release(unbound["index"]).base_manifest_digest is None  # the base was not logged yet
    assert release(bound["index"]).base_manifest_digest == base_digest


def test_signing_again_replaces_the_file_and_logs_a_new_release(
    annex: Annex, home: Home, model: Path
) -> None:
    first = annex.fast("sign", "model", model, "--json").json()
    (model / "model.sig").write_text("stale")
    second = annex.fast("sign", "model", model, "--json").json()
    assert second["index"] == first["index"] + 1
    assert second["manifestDigest"] == first["manifestDigest"]  # model.sig is not hashed
    assert json.loads((model / "model.sig").read_text())["mediaType"].startswith(
        "application/vnd.dev.sigstore.bundle"
    )
    assert sorted(p.name for p in model.iterdir() if p.name.startswith(".")) == []


def test_signature_outside_the_directory(
    annex: Annex, home: Home, model: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "signatures" / "tiny.sig"
    elsewhere.parent.mkdir()
    done = annex.fast("sign", "model", model, "--signature", elsewhere, "--json")
    assert done.code == 0, done
    assert done.json()["signature"] == str(elsewhere)
    assert not (model / "model.sig").exists()
    [key] = [k for k in home.trust().trust.keys if k.role == "model-signing"]
    public = export_public(annex, key.keyid, tmp_path / "pub.pem")
    assert model_signing_verify(model, public, elsewhere) == 0


# -- refusals: exit 2, nothing appended, no signature file ----------------------------------------


def nothing_done(home: Home, model: Path | None = None) -> None:
    assert log_size(home.path) == 2
    if model is not None and model.is_dir():
        assert not (model / "model.sig").exists()


def test_a_missing_directory_is_refused(annex: Annex, home: Home, tmp_path: Path) -> None:
    failed(annex.fast("sign", "model", tmp_path / "nope"), 2, "nope does not exist")
    nothing_done(home)


def test_a_file_is_not_a_model_directory(annex: Annex, home: Home, tmp_path: Path) -> None:
    file = tmp_path / "model.safetensors"
    file.write_bytes(b"weights")
    failed(annex.fast("sign", "model", file), 2, "is not a directory")
    nothing_done(home)


def test_an_empty_directory_is_refused(annex: Annex, home: Home, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    failed(annex.fast("sign", "model", empty), 2, "holds no files")
    nothing_done(home, empty)
    assert list(empty.iterdir()) == []


def test_a_signature_path_inside_the_model_is_refused(
    annex: Annex, home: Home, model: Path
) -> None:
    """Any file in DIR but model.sig is hashed: a signature there would break its own check."""
    inside = model / "tokenizer" / "release.sig"
    failed(
        annex.fast("sign", "model", model, "--signature", inside),
        2,
        "is inside",
        "part of the model",
    )
    nothing_done(home, model)
    assert not inside.exists()


def test_a_revoked_key_cannot_sign(annex: Annex, home: Home, model: Path) -> None:
    [key] = [k for k in home.trust().trust.keys if k.role == "model-signing"]
    assert annex.fast("keys", "revoke", key.keyid[:12], "--reason", "leaked").code == 0
    done = annex.fast("sign", "model", model, "--json")
    assert done.code == 2
    assert done.json()["error"] == "TrustError"
    assert "is revoked (leaked)" in done.json()["message"]
    assert log_size(home.path) == 3  # the revocation only
    assert not (model / "model.sig").exists()


def test_without_a_model_signing_key_it_says_how_to_make_one(
    tmp_path: Path, annex_at: AnnexAt, model: Path
) -> None:
    target = tmp_path / "plain"
    Home(target).init(ORIGIN)
    done = annex_at(target).fast("sign", "model", model)
    failed(done, 2, "annex keys create --role model-signing")
    assert log_size(target) == 1
    assert not (model / "model.sig").exists()


def test_the_passphrase_is_needed(tmp_path: Path, annex_at: AnnexAt, model: Path) -> None:
    target = tmp_path / "locked"
    Home(target, passphrase=PASSPHRASE.encode()).init(ORIGIN, model_signing_name="release-key")
    run = annex_at(target)
    failed(run.fast("sign", "model", model), 2, "is encrypted", "ANNEX_KEY_PASSPHRASE")
    failed(run.with_env(ANNEX_KEY_PASSPHRASE="wrong").fast("sign", "model", model), 2, "wrong")
    assert log_size(target) == 2
    assert not (model / "model.sig").exists()
    done = run.with_env(ANNEX_KEY_PASSPHRASE=PASSPHRASE).fast("sign", "model", model)
    assert done.code == 0, done
    assert (model / "model.sig").is_file()


def test_a_signature_that_cannot_be_written_after_the_append_is_reported(
    annex: Annex, home: Home, model: Path
) -> None:
    """The release entry stands; the message says so and how to sign again."""
    done = annex.fast("sign", "model", model, "--signature", "/proc/model.sig")
    failed(done, 2, "the release is logged at entry 2", "/proc/model.sig", "again")
    assert log_size(home.path) == 3
