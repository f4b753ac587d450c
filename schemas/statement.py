"""in-toto Statement v1: the one envelope payload Annex logs.

A statement says *what* (its subjects, named and digested) and *which kind of evidence*
(`predicateType`, a URI) with the evidence itself in `predicate`. Annex predicates carry
`observedAt` (RFC 3339), the moment the collector saw what it reports; the log keeps it apart
from the moment it was logged.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"

# Lengths of the hex digests in the in-toto digest set that Annex checks strictly.
DIGEST_HEX_LENGTHS: dict[str, int] = {
    "sha1": 40,
    "sha224": 56,
    "sha256": 64,
    "sha384": 96,
    "sha512": 128,
    "sha512_224": 56,
    "sha512_256": 64,
    "sha3_224": 56,
    "sha3_256": 64,
    "sha3_384": 96,
    "sha3_512": 128,
    "blake2b": 128,
    "blake2s": 64,
    "blake3": 64,
    "gitCommit": 40,
    "gitTree": 40,
    "gitBlob": 40,
}

_HEX_DIGITS = "0123456789abcdef"
_ALGORITHM = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[^\s\x00]+")


# The log checks every statement it signs; these checks once cost a sixth of a batched append.
def check_digest(algorithm: str, value: str) -> None:
    """Raises ValueError unless `value` is a lowercase hex digest plausible for `algorithm`."""
    if algorithm not in DIGEST_HEX_LENGTHS and not _ALGORITHM.fullmatch(algorithm):
        raise ValueError(f"digest algorithm {algorithm!r} is not a valid name")
    if not value or value.strip(_HEX_DIGITS):  # what strip leaves is not lowercase hex
        raise ValueError(f"{algorithm} digest {value!r} is not lowercase hex")
    expected = DIGEST_HEX_LENGTHS.get(algorithm)
    if expected is not None and len(value) != expected:
        raise ValueError(f"{algorithm} digest has {len(value)} hex characters, expected {expected}")


def parse_timestamp(value: str) -> datetime:
    """Parses an RFC 3339 timestamp that carries a UTC offset."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an RFC 3339 timestamp") from exc
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {value!r} has no UTC offset")
    try:
        moment.astimezone(UTC)  # year 1 at +14:00, say, is no time in UTC
    except OverflowError:
        raise ValueError(f"timestamp {value!r} lies outside the years 1 to 9999 in UTC") from None
    return moment


@functools.lru_cache(maxsize=4096)  # a log sees few predicate types, each many times
def _is_uri(value: str) -> bool:
    return _URI.fullmatch(value) is not None


class ResourceDescriptor(BaseModel):
    """A subject: something named and digested that the statement is about."""

    model_config = ConfigDict(frozen=True, extra="allow")

    name: str = Field(min_length=1)
    digest: dict[str, str] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _no_nul(cls, name: str) -> str:
        if "\x00" in name:  # PostgreSQL text cannot hold it; both databases must answer alike
            raise ValueError("a subject name must not contain a NUL character")
        return name

    @field_validator("digest")
    @classmethod
    def _digests_are_hex(cls, digest: dict[str, str]) -> dict[str, str]:
        for algorithm, value in digest.items():
            check_digest(algorithm, value)
        return digest


class Statement(BaseModel):
    """in-toto Statement v1, checked when built; unknown top-level fields are refused."""

    # Only the in-toto names: `type_` or `predicate_type` in a statement is an extra field.
    model_config = ConfigDict(frozen=True, extra="forbid")

    type_: Literal["https://in-toto.io/Statement/v1"] = Field(alias="_type")
    subject: tuple[ResourceDescriptor, ...] = Field(min_length=1)
    predicate_type: str = Field(alias="predicateType")
    predicate: dict[str, Any] = Field(default_factory=dict)

    @field_validator("predicate_type")
    @classmethod
    def _predicate_type_is_uri(cls, value: str) -> str:
        if not _is_uri(value):
            raise ValueError(f"predicateType {value!r} is not a URI")
        return value

    @field_validator("predicate")
    @classmethod
    def _observed_at_is_a_time(cls, predicate: dict[str, Any]) -> dict[str, Any]:
        observed = predicate.get("observedAt")
        if observed is not None:
            if not isinstance(observed, str):
                raise ValueError("observedAt must be an RFC 3339 string")
            try:
                parse_timestamp(observed)
            except ValueError as exc:
                raise ValueError(f"observedAt: {exc}") from None
        return predicate

    @property
    def observed_at(self) -> datetime | None:
        observed = self.predicate.get("observedAt")
        return None if observed is None else parse_timestamp(observed)


_KEYS = frozenset({"_type", "subject", "predicateType", "predicate"})
_REQUIRED = frozenset({"_type", "subject", "predicateType"})


def known_good(
    obj: Any,
) -> tuple[str, list[tuple[str, str, str]], datetime | None] | None:
    """(predicateType, subjects as (name, algorithm, digest), observedAt) of a statement that
    `Statement` accepts, or None where this cannot tell at once; then ask `Statement`.

    Checking a typical statement with the model costs a fifth of signing and logging it; this
    path takes only plain JSON types and accepts nothing the model refuses (a property test
    holds the two together). Digests come sorted by algorithm within each subject.
    """
    if type(obj) is not dict or not (_REQUIRED <= obj.keys() <= _KEYS):
        return None
    kind, subjects, predicate = obj["predicateType"], obj["subject"], obj.get("predicate", {})
    if type(obj["_type"]) is not str or obj["_type"] != STATEMENT_TYPE:
        return None
    if type(kind) is not str or not _is_uri(kind) or type(predicate) is not dict:
        return None
    if type(subjects) is not list or not subjects:
        return None
    out = []
    try:
        for subject in subjects:
            if type(subject) is not dict:
                return None
            name, digest = subject.get("name"), subject.get("digest")
            if type(name) is not str or not name or type(digest) is not dict or not digest:
                return None
            if "\x00" in name:
                return None
            if not all(type(a) is str and type(v) is str for a, v in digest.items()):
                return None
            for algorithm, value in sorted(digest.items()):
                check_digest(algorithm, value)
                out.append((name, algorithm, value))
        if not all(type(key) is str for key in predicate):
            return None
        observed = predicate.get("observedAt")
        if observed is None:
            return kind, out, None
        if type(observed) is not str:
            return None
        return kind, out, parse_timestamp(observed)
    except ValueError:  # a digest or observedAt the model refuses too
        return None


PREDICATE_BASE = "https://annex.dev/predicates/"


def predicate_type(kind: str, version: int = 1) -> str:
    """The versioned predicate type URI of an Annex evidence kind."""
    return f"{PREDICATE_BASE}{kind}/v{version}"
