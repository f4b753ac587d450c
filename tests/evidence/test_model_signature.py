"""Model signatures: the bundle model-signing's own signer and verifier agree with, refusals.

The reference is the `model-signing` package itself: its signer, hashing the directory on its
own, must produce the payload Annex builds from its manifest, and its verifier must accept the
bundle Annex writes and reject it once the files or the bundle change.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from model_signing import hashing as ms_hashing
from model_signing import signing as ms_signing
from model_signing import verifying as ms_verifying

from collectors.hashing import build_manifest
from evidence.errors import ConfigError, InputError, VerificationError
from evidence.keys import ModelSigningKey, public_pem, write_private_key
from evidence.model_signature import (
    IGNORE_PATHS,
    ModelSigner,
    release_statement,
    sign_manifest,
    verify_signature,
    write_signature,
)
from schemas.model import MODEL_RELEASE, Manifest, ModelReleasePredicate
from schemas.statement import Statement
from schemas.trust import TrustedKey

PASSPHRASE = b"model signing passphrase"


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def model(tmp_path: Path) -> Path:
    """Names whose order differs as strings and as paths ("sub-x" < "sub/b" < "sub0")."""
    root = tmp_path / "tiny-model"
    write(root / "config.json", b'{"model_type": "gpt2"}')
    write(root / "model.safetensors", bytes(range(256)) * 64)
    write(root / "sub" / "b.bin", b"b" * 1000)
    write(root / "sub-x", b"dash")
    write(root / "sub0", b"zero")
    write(root / ".gitattributes", b"*.safetensors filter=lfs\n")  # left out by both tools
    return root


@pytest.fixture
def key(tmp_path: Path) -> tuple[ModelSigningKey, Path]:
    made = ModelSigningKey.generate("release-key")
    path = tmp_path / "keys" / f"{made.keyid}.pem"
    path.parent.mkdir()
    write_private_key(path, made, PASSPHRASE)
    return made, path


def manifest_of(root: Path) -> Manifest:
    return build_manifest(root, cache=None, full=True)


def payload(bundle: bytes) -> dict[str, Any]:
    envelope = json.loads(bundle)["dsseEnvelope"]
    loaded: dict[str, Any] = json.loads(base64.b64decode(envelope["payload"]))
    return loaded


def pem_of(made: ModelSigningKey) -> str:
    return public_pem(made.trusted_key(from_size=0))


def test_bundle_payload_is_the_one_model_signing_makes_itself(
    model: Path, key: tuple[ModelSigningKey, Path], tmp_path: Path
) -> None:
    """Same files, digests, order, subject digest and settings as model-signing's own signer."""
    _, path = key
    manifest = manifest_of(model)
    ours = payload(
        sign_manifest(manifest, model_name=model.name, key_file=path, passphrase=PASSPHRASE)
    )

    reference_sig = tmp_path / "reference.sig"
    hashing_config = ms_hashing.Config().set_ignored_paths(paths=["model.sig"])
    # model-signing types the password as str, but only bytes work (cryptography takes bytes).
    config = ms_signing.Config().use_elliptic_key_signer(private_key=path, password=PASSPHRASE)
    config.set_hashing_config(hashing_config).sign(model, reference_sig)
    theirs = payload(reference_sig.read_bytes())

    assert ours["subject"] == theirs["subject"]
    assert ours["subject"][0]["digest"]["sha256"] == manifest.model_signing_digest
    assert ours["predicateType"] == theirs["predicateType"]
    assert ours["predicate"]["resources"] == theirs["predicate"]["resources"]
    assert [r["name"] for r in ours["predicate"]["resources"]] == [
        "config.json",
        "model.safetensors",
        "sub/b.bin",
        "sub-x",
        "sub0",
    ]
    ours_ser, theirs_ser = ours["predicate"]["serialization"], theirs["predicate"]["serialization"]
    ignored = sorted(theirs_ser.pop("ignore_paths"))
    assert sorted(ours_ser.pop("ignore_paths")) == ignored == sorted(IGNORE_PATHS)
    assert (
        ours_ser
        == theirs_ser
        == {"method": "files", "hash_type": "sha256", "allow_symlinks": False}
    )


def test_model_signing_verifier_accepts_it_and_rejects_changes(
    model: Path, key: tuple[ModelSigningKey, Path], tmp_path: Path
) -> None:
    made, path = key
    bundle = sign_manifest(
        manifest_of(model), model_name="tiny", key_file=path, passphrase=PASSPHRASE
    )
    write_signature(model / "model.sig", bundle)
    public = write(tmp_path / "pub.pem", pem_of(made).encode())

    def verify() -> None:
        ms_verifying.Config().use_elliptic_key_verifier(public_key=public).verify(
            model, model / "model.sig"
        )

    verify()
    original = (model / "sub-x").read_bytes()
    write(model / "sub-x", b"Dash")  # one byte
    with pytest.raises(ValueError, match="sub-x"):
        verify()
    write(model / "sub-x", original)
    verify()
    write(model / "extra.txt", b"new")
    with pytest.raises(ValueError, match=r"extra\.txt"):
        verify()


def test_verify_signature_checks_key_files_and_bytes(
    model: Path, key: tuple[ModelSigningKey, Path]
) -> None:
    made, path = key
    manifest = manifest_of(model)
    bundle = sign_manifest(manifest, model_name="tiny", key_file=path, passphrase=PASSPHRASE)
    verify_signature(bundle, manifest, pem_of(made))

    other = ModelSigningKey.generate("someone-else")
    with pytest.raises(VerificationError, match="does not verify"):
        verify_signature(bundle, manifest, pem_of(other))

    write(model / "sub" / "b.bin", b"B" + b"b" * 999)
    write(model / "late.txt", b"added after signing")
    with pytest.raises(VerificationError, match="signs other files") as caught:
        verify_signature(bundle, manifest_of(model), pem_of(made))
    assert "not in the signature: late.txt" in str(caught.value)
    assert "different digest: sub/b.bin" in str(caught.value)

    document = json.loads(bundle)
    statement = payload(bundle)
    statement["predicate"]["resources"][0]["digest"] = "00" * 32
    document["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    with pytest.raises(VerificationError, match="does not verify"):
        verify_signature(json.dumps(document).encode(), manifest, pem_of(made))
    with pytest.raises(VerificationError, match="does not verify"):
        verify_signature(b"not a bundle", manifest, pem_of(made))


def test_the_key_file_stays_encrypted_and_needs_its_passphrase(
    model: Path, key: tuple[ModelSigningKey, Path]
) -> None:
    """model-signing reads the encrypted PEM itself: no decrypted copy is written anywhere."""
    made, path = key
    assert b"ENCRYPTED" in path.read_bytes().split(b"\n", 1)[0]
    before = sorted(p.name for p in path.parent.iterdir())
    manifest = manifest_of(model)
    with pytest.raises(ConfigError, match="cannot load the key"):
        sign_manifest(manifest, model_name="tiny", key_file=path, passphrase=b"wrong")
    signer = ModelSigner(made.trusted_key(from_size=0), path, PASSPHRASE)
    verify_signature(signer.sign(manifest, "tiny"), manifest, pem_of(made))
    assert sorted(p.name for p in path.parent.iterdir()) == before


def test_signer_refuses_a_key_that_is_not_the_trusted_one(
    model: Path, key: tuple[ModelSigningKey, Path]
) -> None:
    """The bundle is checked against the trust file's public key before anyone uses it."""
    _, path = key
    stranger = ModelSigningKey.generate("stranger").trusted_key(from_size=0)
    with pytest.raises(VerificationError, match="does not verify"):
        ModelSigner(stranger, path, PASSPHRASE).sign(manifest_of(model), "tiny")


def test_write_signature_replaces_atomically(tmp_path: Path) -> None:
    target = write(tmp_path / "model.sig", b"old")
    write_signature(target, b"new bundle")
    assert target.read_bytes() == b"new bundle"
    assert oct(target.stat().st_mode & 0o777) == oct(0o644)
    assert [p.name for p in tmp_path.iterdir()] == ["model.sig"]  # no temporary file left
    with pytest.raises(InputError, match=r"cannot write the signature file /proc/model\.sig"):
        write_signature(Path("/proc/model.sig"), b"x")


def test_release_statement_is_a_valid_model_release(model: Path) -> None:
    manifest = manifest_of(model)
    bundle = b'{"bundle": true}'
    keyid = "ab" * 32
    statement = release_statement(
        manifest,
        name="tiny",
        kind="adapter",
        approved_by="alice",
        observed_at="2026-11-24T08:00:00Z",
        signing_keyid=keyid,
        bundle=bundle,
        note="ticket 42",
    )
    parsed = Statement.model_validate(statement)
    assert parsed.predicate_type == MODEL_RELEASE
    assert [(s.name, s.digest) for s in parsed.subject] == [
        ("adapter:tiny", {"sha256": manifest.digest})
    ]
    release = ModelReleasePredicate.model_validate(statement["predicate"])
    assert release.manifest == manifest
    assert (release.approved_by, release.signing_keyid, release.note) == (
        "alice",
        keyid,
        "ticket 42",
    )
    assert release.signature_digest == hashlib.sha256(bundle).hexdigest()


def test_trusted_model_signing_key_is_p256_der(tmp_path: Path) -> None:
    """public_key is the DER SubjectPublicKeyInfo, keyid its SHA-256; the PEM is the same key."""
    made = ModelSigningKey.generate("release-key")
    trusted = made.trusted_key(from_size=4)
    der = base64.b64decode(trusted.public_key)
    assert trusted.keyid == hashlib.sha256(der).hexdigest() == made.keyid
    assert (trusted.role, trusted.algorithm) == ("model-signing", "ecdsa-p256-sha256")
    loaded = serialization.load_pem_public_key(public_pem(trusted).encode())
    assert isinstance(loaded, ec.EllipticCurvePublicKey) and loaded.curve.name == "secp256r1"
    assert TrustedKey.model_validate_json(trusted.model_dump_json()) == trusted
