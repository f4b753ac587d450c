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

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from pydantic import ValidationError

from evidence.canonical import parse_json
from evidence.errors import (
    AuthorityError,
    ConfigError,
    InputError,
    TrustError,
    VerificationError,
)
from evidence.note import NoteVerifier, check_key_name
from schemas.authority import describe, may_sign, may_sign_checkpoints, short_predicate
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

    def sign(self, data: bytes) -> bytes:
        """An ECDSA P-256 signature (DER) over SHA-256 of `data`: how a release's DSSE
        envelope is signed, so the release entry is the model-signing key's own word."""
        return self.private_key.sign(data, ec.ECDSA(hashes.SHA256()))

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


@dataclass(frozen=True)
class EntryKey:
    """A trusted key's public half, checking signatures over log entries in its algorithm."""

    trusted: TrustedKey
    public: Ed25519PublicKey | ec.EllipticCurvePublicKey

    def verify(self, sig: bytes, message: bytes) -> None:
        """Raises cryptography's InvalidSignature when `sig` is not this key's over `message`."""
        if isinstance(self.public, Ed25519PublicKey):
            self.public.verify(sig, message)
        else:
            self.public.verify(sig, message, ec.ECDSA(hashes.SHA256()))


def _entry_key(key: TrustedKey) -> EntryKey:
    raw = key.raw_public_key
    if key.algorithm == "ed25519":
        return EntryKey(key, Ed25519PublicKey.from_public_bytes(raw))
    public = serialization.load_der_public_key(raw)
    assert isinstance(public, ec.EllipticCurvePublicKey)  # the trust file checked the DER
    return EntryKey(key, public)


class TrustIndex:
    """Lookups over a trust file, with the public key objects built once.

    Every signature is checked for authority as well as validity: `entry_signer` answers only
    for a key whose role may sign that predicate type (schemas/authority.py), and only log keys
    are note verifiers, so no other key can sign a checkpoint.
    """

    def __init__(self, trust: TrustFile) -> None:
        self.trust = trust
        self._keys = {k.keyid: k for k in trust.keys}
        self._entry = {k.keyid: _entry_key(k) for k in trust.keys}
        self.verifiers = [note_verifier(k) for k in trust.keys if may_sign_checkpoints(k)]

    def get(self, keyid: str) -> TrustedKey:
        key = self._keys.get(keyid)
        if key is None:
            raise TrustError(f"no key {keyid[:16]} in the trust file")
        return key

    def entry_signer(self, keyid: str, index: int | None, predicate: str) -> EntryKey:
        """The key to check a signature on a statement of type `predicate` with, at entry
        `index` (None: position not known yet, the sequencer checks it).

        Raises VerificationError for a key the trust file does not hold or that was not valid
        at `index`, and AuthorityError for one whose role may not sign `predicate`.
        """
        key = self._keys.get(keyid)
        if key is None:
            raise VerificationError(
                f"not signed by any trusted key: key {keyid[:16]} is not in the trust file",
                index=index,
            )
        if not may_sign(key, predicate):
            raise AuthorityError(
                f"signed by {key.role} key {keyid[:16]} ({key.name}), which may not sign "
                f"{short_predicate(predicate)} statements (it may sign: {describe(key)})",
                index=index,
            )
        if index is not None and not key.signs_entry(index):
            raise VerificationError(
                f"signed by key {keyid[:16]} ({key.name}), {key.status} and not valid at entry "
                f"{index} (valid for entries {entry_window(key)})",
                index=index,
            )
        return self._entry[keyid]

    def checkpoint_key_valid(self, verifier: NoteVerifier, size: int) -> bool:
        """Whether a note key signs checkpoints of `size`: a log key, valid at that size."""
        key = self._keys.get(keyid_of(verifier.public_key))
        return key is not None and may_sign_checkpoints(key) and key.signs_checkpoint(size)


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
