"""What one log entry is, read back: the envelope and what the log recorded beside it."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

from evidence.dsse import Envelope
from schemas.statement import known_good, parse_timestamp

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)


def to_us(moment: datetime) -> int:
    """Microseconds since the Unix epoch, exactly (no float rounding)."""
    return (moment - EPOCH) // _ONE_US


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Subject:
    name: str
    algorithm: str
    digest: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "digest": {self.algorithm: self.digest}}


@dataclass(frozen=True)
class Metadata:
    """The columns the log derives from a statement so that queries need not parse envelopes."""

    predicate_type: str
    subjects: tuple[Subject, ...]
    observed_at_us: int | None


def quick_metadata(statement: Any) -> Metadata | None:
    """The query columns of a statement known good at a glance (`known_good`), else None."""
    found = known_good(statement)
    if found is None:
        return None
    kind, subjects, observed = found
    observed_us = None if observed is None else to_us(observed)
    return Metadata(kind, tuple(Subject(*s) for s in subjects), observed_us)


def statement_metadata(statement: Mapping[str, Any]) -> Metadata:
    """Derives the query columns from a statement already checked against `Statement`."""
    subjects = tuple(
        Subject(s["name"], algorithm, value)
        for s in statement["subject"]
        for algorithm, value in sorted(s["digest"].items())
    )
    observed = statement.get("predicate", {}).get("observedAt")
    observed_us = None if observed is None else to_us(parse_timestamp(observed))
    return Metadata(statement["predicateType"], subjects, observed_us)


@dataclass(frozen=True)
class Entry:
    index: int
    leaf_hash: bytes
    envelope_bytes: bytes
    keyid: str
    metadata: Metadata
    logged_at: datetime

    @property
    def predicate_type(self) -> str:
        return self.metadata.predicate_type

    @property
    def subjects(self) -> tuple[Subject, ...]:
        return self.metadata.subjects

    @property
    def observed_at(self) -> datetime | None:
        us = self.metadata.observed_at_us
        return None if us is None else from_us(us)

    @cached_property
    def envelope(self) -> Envelope:
        return Envelope.from_json(self.envelope_bytes)

    @cached_property
    def statement(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.envelope.payload)
        return loaded

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "leaf_hash": base64.b64encode(self.leaf_hash).decode(),
            "keyid": self.keyid,
            "predicate_type": self.predicate_type,
            "subjects": [s.to_json() for s in self.subjects],
            "observed_at": None if self.observed_at is None else rfc3339(self.observed_at),
            "logged_at": rfc3339(self.logged_at),
            "statement": self.statement,
        }
