"""The trust file: the public keys an auditor needs, with the window each key was valid in.

Windows are kept twice: as times, for people, and as log positions, for verification. A key
signs entries with index in [valid_from_size, valid_until_size) and checkpoints of size in
[valid_from_size, valid_until_size]. Positions are fixed by the Merkle tree, so someone who can
rewrite timestamps in the database still cannot pass off an entry signed by a revoked key.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

TRUST_FILE_VERSION: Literal[1] = 1

KeyStatus = Literal["active", "retired", "revoked"]
KeyRole = Literal["log", "collector"]


class TrustedKey(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    keyid: str = Field(pattern=r"^[0-9a-f]{64}$")
    name: str = Field(min_length=1, pattern=r"^[^\s+]+$")
    role: KeyRole = "log"
    algorithm: Literal["ed25519"] = "ed25519"
    public_key: str
    status: KeyStatus = "active"
    valid_from: datetime
    valid_from_size: int = Field(ge=0)
    valid_until: datetime | None = None
    valid_until_size: int | None = Field(default=None, ge=0)
    reason: str | None = None

    @field_validator("public_key")
    @classmethod
    def _is_ed25519(cls, value: str) -> str:
        try:
            raw = base64.b64decode(value, validate=True)
        except ValueError as exc:
            raise ValueError("public_key must be base64") from exc
        if len(raw) != 32:
            raise ValueError("public_key must be a 32-byte Ed25519 key")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TrustedKey:
        if hashlib.sha256(self.raw_public_key).hexdigest() != self.keyid:
            raise ValueError(f"keyid {self.keyid[:16]}… is not SHA-256 of the public key")
        if (self.status == "active") != (self.valid_until_size is None):
            raise ValueError("an active key has no end of validity; a retired or revoked one has")
        if self.valid_until_size is not None and self.valid_until_size < self.valid_from_size:
            raise ValueError("valid_until_size is before valid_from_size")
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
