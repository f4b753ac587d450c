"""Key lifecycle events (created, rotated, revoked), logged so key history is evidence too."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.statement import predicate_type
from schemas.trust import KeyRole

KEY_EVENT = predicate_type("key-event")


class KeyEvent(BaseModel):
    """Field names are camelCase, as in-toto predicates write them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    observedAt: str
    event: Literal["created", "rotated", "revoked"]
    keyid: str = Field(pattern=r"^[0-9a-f]{64}$")
    name: str
    role: KeyRole
    publicKey: str
    validFromSize: int
    validUntilSize: int | None = None
    previousKeyid: str | None = None
    reason: str | None = None
