"""The trust file: the public keys an auditor needs, with the window each key was valid in.

Windows are kept twice: as times, for people, and as log positions, for verification. A key
signs entries with index in [valid_from_size, valid_until_size) and checkpoints of size in
[valid_from_size, valid_until_size]. Positions are fixed by the Merkle tree, so someone who can
rewrite timestamps in the database still cannot pass off an entry signed by a revoked key.

Two algorithms, each bound to its roles:
- `ed25519` for the log and collector keys (DSSE envelopes, signed-note checkpoints):
  `public_key` is base64 of the raw 32-byte key, `keyid` the hex SHA-256 of those 32 bytes.
- `ecdsa-p256-sha256` for model-signing keys (OpenSSF Model Signing bundles, whose key method
  takes EC keys only): `public_key` is base64 of the DER SubjectPublicKeyInfo, `keyid` the hex
  SHA-256 of that DER. (model-signing's own bundle `hint` hashes the PEM instead; Annex's keyid
  is not that hint.)
"""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import datetime
from typing import Literal

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_der_public_key,
)
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

TRUST_FILE_VERSION: Literal[1] = 1

_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[^\s\x00]+")

KeyStatus = Literal["active", "retired", "revoked"]
KeyRole = Literal["log", "collector", "model-signing"]
KeyAlgorithm = Literal["ed25519", "ecdsa-p256-sha256"]

# The one algorithm each role may use.
ROLE_ALGORITHM: dict[str, str] = {
    "log": "ed25519",
    "collector": "ed25519",
    "model-signing": "ecdsa-p256-sha256",
}


class TrustedKey(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    keyid: str = Field(pattern=r"^[0-9a-f]{64}$")
    name: str = Field(min_length=1, pattern=r"^[^\s+]+$")
    role: KeyRole = "log"
    algorithm: KeyAlgorithm = "ed25519"
    public_key: str
    status: KeyStatus = "active"
    valid_from: datetime
    valid_from_size: int = Field(ge=0)
    valid_until: datetime | None = None
    valid_until_size: int | None = Field(default=None, ge=0)
    reason: str | None = None
    # The predicate types a collector key may sign (schemas/authority.py); other roles take
    # their authority from the role alone and list none.
    predicates: tuple[str, ...] | None = None

    @field_validator("predicates")
    @classmethod
    def _uris(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None:
            for uri in value:
                if not _URI.fullmatch(uri):
                    raise ValueError(f"predicate type {uri!r} is not a URI")
            if len(set(value)) != len(value):
                raise ValueError("a predicate type is listed twice")
        return value

    @field_validator("public_key")
    @classmethod
    def _fits_algorithm(cls, value: str, info: ValidationInfo) -> str:
        try:  # canonical only: one text per key (the rule of evidence/b64.py)
            raw = base64.b64decode(value, validate=True)
        except ValueError:
            raw = None
        if raw is None or base64.b64encode(raw).decode() != value:
            raise ValueError(
                "public_key is not canonical base64 (standard alphabet, padded, no unused bits set)"
            )
        algorithm = info.data.get("algorithm")
        if algorithm == "ed25519" and len(raw) != 32:
            raise ValueError("public_key must be a 32-byte Ed25519 key")
        if algorithm == "ecdsa-p256-sha256":
            _check_p256_der(raw)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TrustedKey:
        expected = ROLE_ALGORITHM[self.role]
        if self.algorithm != expected:
            raise ValueError(f"a {self.role} key must be {expected}, not {self.algorithm}")
        if hashlib.sha256(self.raw_public_key).hexdigest() != self.keyid:
            raise ValueError(f"keyid {self.keyid[:16]}… is not SHA-256 of the public key")
        if (self.status == "active") != (self.valid_until_size is None):
            raise ValueError("an active key has no end of validity; a retired or revoked one has")
        if self.valid_until_size is not None and self.valid_until_size < self.valid_from_size:
            raise ValueError("valid_until_size is before valid_from_size")
        from schemas.authority import check_registration  # the table imports this module

        check_registration(self.role, self.predicates)
        return self

    @property
    def raw_public_key(self) -> bytes:
        return base64.b64decode(self.public_key)

    def signs_entry(self, index: int) -> bool:
        end = self.valid_until_size
        return self.valid_from_size <= index and (end is None or index < end)

    def signs_checkpoint(self, size: int) -> bool:
        end = self.valid_until_size
        return self.valid_from_size <= size and (end is None or size <= end)


def _check_p256_der(raw: bytes) -> None:
    """Raises ValueError unless `raw` is the DER SubjectPublicKeyInfo of a P-256 key.

    Only the canonical encoding (uncompressed point, as `cryptography` writes it) is taken, so
    one key has one keyid.
    """
    try:
        key = load_der_public_key(raw)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ValueError("public_key must be a DER SubjectPublicKeyInfo") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ValueError("public_key must be an EC P-256 (secp256r1) key")
    if key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo) != raw:
        raise ValueError("public_key must be the canonical DER (uncompressed point)")


class TrustFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Literal[1] = TRUST_FILE_VERSION
    origin: str = Field(min_length=1, pattern=r"^[^\s+]+$")
    keys: tuple[TrustedKey, ...] = ()

    @model_validator(mode="after")
    def _unique(self) -> TrustFile:
        ids = [k.keyid for k in self.keys]
        if len(ids) != len(set(ids)):
            raise ValueError("a keyid appears twice")
        return self
