"""Human-oversight evidence (AI Act Art 14, Art 26(2)): what reviewers did, and that they could.

Two kinds:
- `OVERSIGHT_EVENT` (https://annex.dev/predicates/oversight-event/v1): one act of oversight.
  `action` is one of review, approve, override, reverse, disregard, escalate (Art 14(4)(a)-(d)),
  stop or resume (Art 14(4)(e)); `reviewer` the reviewer's pseudonym, never their id; `reason`
  why; `link` what it was about (an inference request by id, a logged batch or entry by log
  index; absent for a stop or resume of a whole system); `system` the AI system.
- `REVIEWER_ATTESTATION` (https://annex.dev/predicates/reviewer-attestation/v1): a reviewer's
  training or competence (Art 26(2)): its name, who issued it, its validity window and,
  optionally, the SHA-256 of the certificate or record that proves it.

Subjects: `reviewer:<pseudonym>` with the SHA-256 of the canonical predicate, so every event
and attestation of one reviewer is found by subject name. Events from a feed file name the file
too, `oversight-feed` with its SHA-256: that is how a second ingest of one file is recognised.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.statement import parse_timestamp, predicate_type

OVERSIGHT_EVENT = predicate_type("oversight-event")
REVIEWER_ATTESTATION = predicate_type("reviewer-attestation")
FEED_SUBJECT = "oversight-feed"

_SHA256 = r"^[0-9a-f]{64}$"


class OversightAction(StrEnum):
    REVIEW = "review"
    APPROVE = "approve"
    OVERRIDE = "override"
    REVERSE = "reverse"
    DISREGARD = "disregard"
    ESCALATE = "escalate"
    STOP = "stop"
    RESUME = "resume"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


def _timestamp(value: str) -> str:
    parse_timestamp(value)
    return value


class OversightLink(_Frozen):
    """What an oversight act was about: a request by its id, or a log entry (a batch) by index."""

    kind: Literal["request", "batch", "entry"]
    id: str | None = Field(default=None, min_length=1)
    entry: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _one_reference(self) -> OversightLink:
        if self.kind == "request" and (self.id is None or self.entry is not None):
            raise ValueError("a request link names the request by id, not by entry")
        if self.kind != "request" and (self.entry is None or self.id is not None):
            raise ValueError(f"a {self.kind} link names a log entry index, not an id")
        return self


class OversightEventPredicate(_Frozen):
    """Predicate of OVERSIGHT_EVENT."""

    observed_at: str = Field(alias="observedAt")
    action: OversightAction
    reviewer: str = Field(min_length=1)  # a pseudonym
    reason: str = Field(min_length=1)
    link: OversightLink | None = None
    system: str | None = Field(default=None, min_length=1)

    _time = field_validator("observed_at")(_timestamp)

    def to_predicate(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class ReviewerAttestationPredicate(_Frozen):
    """Predicate of REVIEWER_ATTESTATION: a reviewer's training or competence, and its window."""

    observed_at: str = Field(alias="observedAt")
    reviewer: str = Field(min_length=1)  # a pseudonym
    training: str = Field(min_length=1)
    issuer: str | None = Field(default=None, min_length=1)
    valid_from: str = Field(alias="validFrom")
    valid_until: str = Field(alias="validUntil")
    evidence_digest: str | None = Field(default=None, alias="evidenceDigest", pattern=_SHA256)
    system: str | None = Field(default=None, min_length=1)

    _times = field_validator("observed_at", "valid_from", "valid_until")(_timestamp)

    @model_validator(mode="after")
    def _window(self) -> ReviewerAttestationPredicate:
        if parse_timestamp(self.valid_until) <= parse_timestamp(self.valid_from):
            raise ValueError(f"validUntil {self.valid_until} is not after validFrom")
        return self

    def to_predicate(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
