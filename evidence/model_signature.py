"""Model signatures in the OpenSSF Model Signing format, and the release statement they go with.

A model signature is the Sigstore bundle that the `model-signing` package writes for its `key`
method: a DSSE envelope, signed with an EC P-256 key, over an in-toto statement whose
predicate lists every file's SHA-256 and whose subject digest is SHA-256 over those digests in
path order (`Manifest.model_signing_digest`). Annex builds that payload from its own manifest
with model-signing's own classes (no second read of the files, no hand-written bundle), so
`model_signing verify key DIR --public_key PEM --signature DIR/model.sig` accepts it.

The bundle records the paths it leaves out (`.git`, `.gitattributes`, `.github`, `.gitignore`
and `model.sig`), the same ones an Annex manifest leaves out, so a verifier skips them too.

model-signing's EC signer reads its key from a PEM file, encrypted or not: it is given the
encrypted key file under the data directory and the passphrase, so the decrypted key never
touches the disk. Its verifier reads files too; it is given the bundle and the public key (both
public) in a private temporary directory.

model-signing is imported when a model is signed or checked, not with this module: it takes
about 0.2 s to import, which every other `annex` command would pay.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal

from evidence.errors import ConfigError, InputError, VerificationError
from evidence.files import fsync_directory
from evidence.keys import public_pem
from schemas.model import (
    IGNORED_NAMES,
    MODEL_RELEASE,
    SIGNATURE_NAME,
    Manifest,
    ModelReleasePredicate,
)
from schemas.statement import STATEMENT_TYPE
from schemas.trust import TrustedKey

if TYPE_CHECKING:
    from model_signing import manifest as ms_manifest

# What the bundle says was left out, in a fixed order (model-signing writes a set's order).
IGNORE_PATHS: tuple[str, ...] = (*sorted(IGNORED_NAMES), SIGNATURE_NAME)

Kind = Literal["model", "adapter"]


def _signing_manifest(manifest: Manifest, model_name: str) -> ms_manifest.Manifest:
    """model-signing's manifest of the same files: file serialization, SHA-256, no symlinks."""
    from model_signing import manifest as ms_manifest
    from model_signing._hashing.hashing import Digest

    serialization = ms_manifest.SerializationType.from_args(
        {
            "method": "files",
            "hash_type": "sha256",
            "allow_symlinks": False,
            "ignore_paths": list(IGNORE_PATHS),
        }
    )
    items = [
        ms_manifest.FileManifestItem(
            path=PurePosixPath(f.path), digest=Digest("sha256", bytes.fromhex(f.sha256))
        )
        for f in manifest.files
    ]
    return ms_manifest.Manifest(model_name, items, serialization)


def sign_manifest(
    manifest: Manifest, *, model_name: str, key_file: Path, passphrase: bytes | None
) -> bytes:
    """The signature file's bytes: a Sigstore bundle over `manifest`, by the key in `key_file`.

    `key_file` is a PEM EC private key (P-256), encrypted with `passphrase` when one is given.
    """
    from model_signing._signing import sign_ec_key, sign_sigstore_pb
    from model_signing._signing.signing import Payload

    try:
        # model-signing annotates the password as str, but hands it to `cryptography`, which
        # takes bytes only (its own CLI fails on an encrypted key for that reason).
        signer = sign_ec_key.Signer(key_file, passphrase)  # type: ignore[arg-type]
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"model-signing cannot load the key {key_file}: {exc}") from exc
    signature = signer.sign(Payload(_signing_manifest(manifest, model_name)))
    assert isinstance(signature, sign_sigstore_pb.Signature)
    text: str = signature.bundle.to_json()
    return text.encode()


def verify_signature(bundle: bytes, manifest: Manifest, public_key_pem: str) -> None:
    """Checks with model-signing's own verifier that `bundle` signs exactly `manifest`.

    Raises VerificationError when the signature does not verify with the key, or when the files
    it lists (names or digests) differ from the manifest's.
    """
    from model_signing._signing import sign_ec_key, sign_sigstore_pb

    with tempfile.TemporaryDirectory(prefix="annex-verify-") as scratch:
        key_path, sig_path = Path(scratch) / "key.pub", Path(scratch) / SIGNATURE_NAME
        key_path.write_text(public_key_pem, encoding="utf-8")
        sig_path.write_bytes(bundle)
        try:
            verifier = sign_ec_key.Verifier(key_path)
            signed = verifier.verify(sign_sigstore_pb.Signature.read(sig_path))
        except Exception as exc:  # model-signing raises ValueError, KeyError, InvalidSignature
            why = str(exc) or type(exc).__name__
            raise VerificationError(f"the model signature does not verify: {why}") from None
    expected = _signing_manifest(manifest, signed.model_name)
    if signed != expected:
        raise VerificationError(
            "the model signature is valid but signs other files: " + _difference(signed, expected)
        )


def _difference(signed: ms_manifest.Manifest, expected: ms_manifest.Manifest) -> str:
    have = {d.identifier: d.digest for d in signed.resource_descriptors()}
    want = {d.identifier: d.digest for d in expected.resource_descriptors()}
    parts = []
    for label, paths in (
        ("not in the signature", sorted(want.keys() - have.keys())),
        ("only in the signature", sorted(have.keys() - want.keys())),
        ("different digest", sorted(p for p in want.keys() & have.keys() if want[p] != have[p])),
    ):
        if paths:
            parts.append(f"{label}: {', '.join(paths)}")
    return "; ".join(parts)


@dataclass(frozen=True)
class ModelSigner:
    """The active model-signing key: its trust entry and its (possibly encrypted) key file."""

    key: TrustedKey
    key_file: Path
    passphrase: bytes | None

    def sign(self, manifest: Manifest, model_name: str) -> bytes:
        """The signature file's bytes, checked against the trusted public key before use."""
        bundle = sign_manifest(
            manifest, model_name=model_name, key_file=self.key_file, passphrase=self.passphrase
        )
        verify_signature(bundle, manifest, public_pem(self.key))
        return bundle


def write_signature(path: Path, bundle: bytes) -> None:
    """Replaces `path` atomically (temporary file, fsync, rename): the old file or the new one."""
    tmp: Path | None = None
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        tmp = Path(name)
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), 0o644)  # a signature is public; mkstemp makes 0600
            out.write(bundle)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
        tmp = None
        fsync_directory(path.parent)
    except OSError as exc:
        raise InputError(f"cannot write the signature file {path}: {exc.strerror}") from exc
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def release_statement(
    manifest: Manifest,
    *,
    name: str,
    kind: Kind,
    approved_by: str,
    observed_at: str,
    signing_keyid: str,
    bundle: bytes,
    note: str | None = None,
    base_manifest_digest: str | None = None,
) -> dict[str, Any]:
    """The MODEL_RELEASE statement: `kind:name` approved, subject the manifest digest.

    `signatureDigest` is the SHA-256 of the signature file's bytes, so the log pins the exact
    bundle that was handed out with the release. An adapter's release names the manifest digest
    of the base it was bound to in the log, when one is.
    """
    predicate = ModelReleasePredicate(
        observed_at=observed_at,
        name=name,
        kind=kind,
        manifest=manifest,
        approved_by=approved_by,
        signing_keyid=signing_keyid,
        signature_digest=hashlib.sha256(bundle).hexdigest(),
        base_manifest_digest=base_manifest_digest,
        note=note,
    )
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": f"{kind}:{name}", "digest": {"sha256": manifest.digest}}],
        "predicateType": MODEL_RELEASE,
        "predicate": predicate.to_predicate(),
    }
