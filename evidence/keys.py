"""Signing keys, their files, and the trust file of public keys.

Two kinds of key (schemas/trust.py): Ed25519 keys sign the log (and collectors' envelopes);
EC P-256 keys sign models in the OpenSSF Model Signing format, whose key method takes EC keys
only. An Ed25519 keyid is the hex SHA-256 of the raw 32-byte public key; a P-256 keyid is the
hex SHA-256 of the DER SubjectPublicKeyInfo. Private keys of both kinds are PKCS#8 PEM,
encrypted with the passphrase when one is given, and always created with mode 0600 and never
overwritten.
The trust file is replaced atomically (write, fsync, rename), so a crash leaves the old or the
new file, never half of one.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from pydantic import ValidationError

from evidence.canonical import parse_json
from evidence.errors import ConfigError, InputError, TrustError, VerificationError
from evidence.note import NoteVerifier, check_key_name
from schemas.trust import KeyRole, TrustedKey, TrustFile


def keyid_of(public_bytes: bytes) -> str:
    return hashlib.sha256(public_bytes).hexdigest()


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Signer:
    """An Ed25519 private key with the name its note signatures carry."""

    private_key: Ed25519PrivateKey
    name: str

    @cached_property
    def public_bytes(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @cached_property
    def keyid(self) -> str:
        return keyid_of(self.public_bytes)

    def sign(self, data: bytes) -> bytes:
        return self.private_key.sign(data)

    @classmethod
    def generate(cls, name: str) -> Signer:
        check_key_name(name)
        return cls(Ed25519PrivateKey.generate(), name)

    def trusted_key(self, *, role: KeyRole, from_size: int) -> TrustedKey:
        return TrustedKey(
            keyid=self.keyid,
            name=self.name,
            role=role,
            public_key=base64.b64encode(self.public_bytes).decode(),
            valid_from=utc_now(),
            valid_from_size=from_size,
        )


@dataclass(frozen=True)
class ModelSigningKey:
    """An EC P-256 private key that signs model releases (OpenSSF Model Signing bundles)."""

    private_key: ec.EllipticCurvePrivateKey
    name: str

    @cached_property
    def public_der(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @cached_property
    def keyid(self) -> str:
        return keyid_of(self.public_der)

    @classmethod
    def generate(cls, name: str) -> ModelSigningKey:
        check_key_name(name)
        return cls(ec.generate_private_key(ec.SECP256R1()), name)

    def trusted_key(self, *, from_size: int) -> TrustedKey:
        return TrustedKey(
            keyid=self.keyid,
            name=self.name,
            role="model-signing",
            algorithm="ecdsa-p256-sha256",
            public_key=base64.b64encode(self.public_der).decode(),
            valid_from=utc_now(),
            valid_from_size=from_size,
        )


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Creates `path` exclusively and durably; an existing file is never replaced."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def write_private_key(
    path: Path, signer: Signer | ModelSigningKey, passphrase: bytes | None
) -> None:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    pem = signer.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    _write_new(path, pem, 0o600)


def _load_pem(path: Path, passphrase: bytes | None) -> PrivateKeyTypes:
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read signing key {path}: {exc.strerror}") from exc
    encrypted = b"ENCRYPTED" in pem.split(b"\n", 1)[0]
    if encrypted and not passphrase:
        raise ConfigError(
            f"signing key {path} is encrypted: "
            "set ANNEX_KEY_PASSPHRASE or ANNEX_KEY_PASSPHRASE_FILE"
        )
    try:
        key = serialization.load_pem_private_key(pem, passphrase if encrypted else None)
    except ValueError as exc:
        why = "wrong passphrase or damaged file" if encrypted else "not a PEM private key"
        raise ConfigError(f"cannot load signing key {path}: {why}") from exc
    return key


def load_private_key(path: Path, name: str, passphrase: bytes | None) -> Signer:
    key = _load_pem(path, passphrase)
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"signing key {path} is not an Ed25519 key")
    return Signer(key, name)


def load_model_signing_key(path: Path, name: str, passphrase: bytes | None) -> ModelSigningKey:
    key = _load_pem(path, passphrase)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ConfigError(f"model-signing key {path} is not an EC P-256 key")
    return ModelSigningKey(key, name)


def public_pem(key: TrustedKey) -> str:
    """The public key as a PEM SubjectPublicKeyInfo (what `model_signing verify key` reads)."""
    public = (
        Ed25519PublicKey.from_public_bytes(key.raw_public_key)
        if key.algorithm == "ed25519"
        else serialization.load_der_public_key(key.raw_public_key)
    )
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def note_verifier(key: TrustedKey) -> NoteVerifier:
    if key.algorithm != "ed25519":
        raise TrustError(f"key {key.keyid[:16]} is a {key.role} key: it signs no notes")
    return NoteVerifier(key.name, key.raw_public_key)


def load_trust(path: Path) -> TrustFile:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read trust file {path}: {exc.strerror}") from exc
    return parse_trust(data, what=f"trust file {path}")


def parse_trust(data: bytes | str, *, what: str) -> TrustFile:
    """A trust file's bytes, checked; InputError naming `what` and the field that is wrong."""
    obj = parse_json(data, what=what)
    try:
        return TrustFile.model_validate(obj)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise InputError(f"{what}: {where}: {first['msg']}") from None


def save_trust(path: Path, trust: TrustFile) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    data = (trust.model_dump_json(indent=2) + "\n").encode()
    try:
        _write_new(tmp, data, 0o644)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class TrustIndex:
    """Lookups over a trust file, with the public key objects built once."""

    def __init__(self, trust: TrustFile) -> None:
        self.trust = trust
        self._keys = {k.keyid: k for k in trust.keys}
        ed25519 = [k for k in trust.keys if k.algorithm == "ed25519"]
        self._public = {
            k.keyid: Ed25519PublicKey.from_public_bytes(k.raw_public_key) for k in ed25519
        }
        self.verifiers = [note_verifier(k) for k in ed25519]

    def get(self, keyid: str) -> TrustedKey:
        key = self._keys.get(keyid)
        if key is None:
            raise TrustError(f"no key {keyid[:16]} in the trust file")
        return key

    def public_key(self, keyid: str) -> Ed25519PublicKey | None:
        return self._public.get(keyid)

    def entry_key(self, keyid: str, index: int) -> Ed25519PublicKey | None:
        """The key to check a signature on entry `index` with; None for an unknown key."""
        key = self._keys.get(keyid)
        if key is None:
            return None
        if key.keyid not in self._public:
            raise VerificationError(
                f"entry {index} names key {keyid[:16]}, a {key.role} key: it signs model "
                "releases, never log entries",
                index=index,
            )
        if not key.signs_entry(index):
            raise VerificationError(
                f"entry {index} is signed by key {keyid[:16]}, {key.status} and not valid "
                f"at that position (valid for entries {entry_window(key)})",
                index=index,
            )
        return self._public[keyid]

    def checkpoint_key_valid(self, verifier: NoteVerifier, size: int) -> bool:
        key = self._keys.get(keyid_of(verifier.public_key))
        return key is not None and key.signs_checkpoint(size)


def entry_window(key: TrustedKey) -> str:
    """The entries a key may sign, as `first..last` (open-ended while it is active)."""
    end = "" if key.valid_until_size is None else str(key.valid_until_size - 1)
    return f"{key.valid_from_size}..{end}"


def find_key(trust: TrustFile, keyid: str) -> TrustedKey:
    """The one key whose id starts with `keyid` (a prefix is enough when it is unique)."""
    matches = [k for k in trust.keys if k.keyid.startswith(keyid.lower())] if keyid else []
    if len(matches) != 1:
        what = "no key" if not matches else "more than one key"
        raise TrustError(f"{what} in the trust file matches {keyid!r}")
    return matches[0]
