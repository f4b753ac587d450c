"""Key lifecycle events (created, rotated, revoked), logged so key history is evidence too.

`publicKey` is encoded as the trust file encodes it for `algorithm` (schemas/trust.py): raw
Ed25519 bytes, or the DER SubjectPublicKeyInfo of a model-signing P-256 key. Events logged
before model-signing keys existed carry no `algorithm`; they are all Ed25519.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.statement import predicate_type
from schemas.trust import KeyAlgorithm, KeyRole

KEY_EVENT = predicate_type("key-event")


class KeyEvent(BaseModel):
    """Field names are camelCase, as in-toto predicates write them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    observedAt: str
    event: Literal["created", "rotated", "revoked"]
    keyid: str = Field(pattern=r"^[0-9a-f]{64}$")
    name: str
    role: KeyRole
    algorithm: KeyAlgorithm | None = None
    publicKey: str
    validFromSize: int
    validUntilSize: int | None = None
    previousKeyid: str | None = None
    reason: str | None = None
    predicates: list[str] | None = None  # what a collector key was registered to sign
