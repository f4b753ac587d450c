"""Inference evidence: one batch of an inference log as the log records it, and erasure receipts.

INFERENCE_BATCH (https://annex.dev/predicates/inference-batch/v1). One entry per batch of lines
of a JSON Lines inference log (one request a line). It holds no prompt, completion or caller id:
- `source`: the file's name, size, line count and SHA-256 (re-ingesting it is recognised);
  `batch`: which lines of the file this entry covers (number, of, firstLine, lastLine).
- `merkleRoot`: RFC 9162 root over one leaf per request line, in file order. A line's leaf is
  SHA-256(0x00 || RFC 8785 JSON of {"caller": pseudonym | null, "content": hex SHA-256 of the
  line's ciphertext record | null, "line": physical line number, "record": the line's object
  without its content fields and without `user`}), see collectors/inference_log.py. The leaves,
  in order, are kept in a blob (`leavesBlob`: 40 bytes a leaf, 8-byte big-endian line number
  then the 32-byte leaf hash), so a line is provable after its content was erased.
- counts (`requests`, `errors`, `refusals`), `tokens`, `timeRange`, `latencyMs` percentiles
  (from a log-scale histogram: each value within 1% of the exact one), `models` served (with the
  manifest digest and entry of the logged model or adapter of that name, or a reason why none),
  `systemFingerprints`, `callers` (pseudonym and request count) and `unattributed` requests.
- `retention`: whether content was retained, its class and when its keys expire; with content,
  `contentBlob` names the blob of ciphertext records (the log holds only its digest).

ERASURE (https://annex.dev/predicates/erasure/v1): a receipt that keys were destroyed, on
request (GDPR Art. 17, one pseudonym) or at retention expiry (the pseudonyms whose content keys
expired). It names pseudonyms, never a caller id, and the inference-batch entries affected.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from schemas.statement import parse_timestamp, predicate_type

INFERENCE_BATCH = predicate_type("inference-batch")
ERASURE = predicate_type("erasure")
LEAF_FORMAT: Final = "annex-inference-line/v1"
GDPR_ERASURE = "GDPR Art. 17"

_SHA256 = r"^[0-9a-f]{64}$"
_PSEUDONYM = r"^[0-9a-f]{32}$"


class _Shape(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True
    )


class Source(_Shape):
    name: str = Field(min_length=1)
    sha256: str = Field(pattern=_SHA256)
    size: int = Field(ge=0, alias="bytes")
    lines: int = Field(ge=0)


class BatchRange(_Shape):
    number: int = Field(ge=1)
    of: int = Field(ge=1)
    first_line: int = Field(ge=1)
    last_line: int = Field(ge=1)


class TimeRange(_Shape):
    first: str
    last: str

    @field_validator("first", "last")
    @classmethod
    def _is_time(cls, value: str) -> str:
        parse_timestamp(value)
        return value


class Tokens(_Shape):
    prompt: int = Field(ge=0)
    completion: int = Field(ge=0)


class Latency(_Shape):
    """Latency in milliseconds over the lines that report one; null percentiles when none do."""

    count: int = Field(ge=0)
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    max: float | None = None
    method: str = "log-histogram, values within 1%"


class ModelServed(_Shape):
    """A model name as the log gives it, and the logged model or adapter of that name, if any."""

    name: str
    requests: int = Field(ge=0)
    kind: Literal["model", "adapter"] | None = None
    digest: str | None = Field(default=None, pattern=_SHA256)
    entry: int | None = None
    base_digest: str | None = Field(default=None, pattern=_SHA256)
    reason: str | None = None

    @model_validator(mode="after")
    def _digest_or_reason(self) -> ModelServed:
        if (self.digest is None) == (self.reason is None):
            raise ValueError(f"model {self.name}: give a manifest digest or a reason, not both")
        return self


class Caller(_Shape):
    pseudonym: str = Field(pattern=_PSEUDONYM)
    requests: int = Field(ge=1)


class Retention(_Shape):
    content: bool
    class_: str | None = Field(default=None, alias="class")
    days: int | None = Field(default=None, ge=1)
    expires_at: str | None = None


class InferenceBatchPredicate(_Shape):
    observed_at: str
    source: Source
    batch: BatchRange
    lines: int = Field(ge=0)
    leaf_format: Literal["annex-inference-line/v1"] = LEAF_FORMAT
    merkle_root: str = Field(pattern=_SHA256)
    leaves_blob: str = Field(pattern=_SHA256)
    content_blob: str | None = Field(default=None, pattern=_SHA256)
    time_range: TimeRange | None = None
    requests: int = Field(ge=0)
    errors: int = Field(ge=0)
    refusals: int = Field(ge=0)
    tokens: Tokens
    latency_ms: Latency
    models: tuple[ModelServed, ...]
    system_fingerprints: dict[str, int] = Field(default_factory=dict)
    callers: tuple[Caller, ...]
    unattributed: int = Field(ge=0)
    retention: Retention

    def to_predicate(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class ErasurePredicate(_Shape):
    observed_at: str
    trigger: Literal["request", "retention-expiry"]
    pseudonyms: tuple[str, ...]
    keys_destroyed: int = Field(ge=0)
    pseudonym_secrets_destroyed: int = Field(ge=0)
    batches: tuple[int, ...]  # entry indices of the inference batches whose keys were destroyed
    reason: str | None = None
    legal_basis: str | None = None

    @field_validator("pseudonyms")
    @classmethod
    def _pseudonyms(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for p in value:
            if len(p) != 32 or any(c not in "0123456789abcdef" for c in p):
                raise ValueError(f"{p!r} is not a pseudonym (32 lowercase hex characters)")
        return value

    def to_predicate(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
