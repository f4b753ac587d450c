"""Human-oversight events and reviewer attestations as statements, from a command or a feed.

Reviewers are people: their ids never enter the log. Every function here takes a
`pseudonymise` callable (reviewer id -> pseudonym) and logs only what it returns. The CLI wires
it to the vault (evidence/vault.py): a per-person secret keys the pseudonym, so the same
reviewer keeps one pseudonym, and erasing the person (`annex erase ID`) destroys the secret and
with it every link from the log's pseudonyms back to them.

A feed is JSON Lines, one event per line:

    {"action": "override", "reviewer": "alice@example.com", "reason": "wrong dosage",
     "request": "req-8812", "system": "triage-prod", "at": "2026-11-24T08:02:11Z"}

`action`, `reviewer`, `reason` and `at` (RFC 3339 with an offset) are required; at most one of
`request` (an id), `batch` or `entry` (log indices); `system` is optional. Anything else is an
error naming the file and line, and a feed with one bad line logs nothing. A feed already logged
(same bytes, by SHA-256) is recognised and not logged twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from evidence.canonical import canonical_bytes
from evidence.entry import rfc3339
from evidence.errors import InputError
from evidence.store import Store
from schemas.oversight import (
    FEED_SUBJECT,
    OVERSIGHT_EVENT,
    REVIEWER_ATTESTATION,
    OversightAction,
    OversightEventPredicate,
    OversightLink,
    ReviewerAttestationPredicate,
)
from schemas.statement import STATEMENT_TYPE, parse_timestamp

__all__ = [
    "Attestation",
    "Event",
    "Ingested",
    "Pseudonymise",
    "attestation_statement",
    "check_links",
    "event_statement",
    "ingest_feed",
    "parse_feed",
    "record_event",
]

Pseudonymise = Callable[[str], str]
CLOCK_SKEW = timedelta(minutes=5)


# -- events -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """One act of oversight as a person or a feed reports it (reviewer in the clear)."""

    action: OversightAction
    reviewer: str
    reason: str
    at: datetime
    link: OversightLink | None = None
    system: str | None = None
    where: str = "the event"  # for errors: "feed.jsonl line 3"


def _subject(pseudonym: str, predicate: Mapping[str, Any]) -> dict[str, Any]:
    digest = hashlib.sha256(canonical_bytes(predicate)).hexdigest()
    return {"name": f"reviewer:{pseudonym}", "digest": {"sha256": digest}}


def event_statement(
    event: Event, pseudonymise: Pseudonymise, *, feed_digest: str | None = None
) -> dict[str, Any]:
    """The OVERSIGHT_EVENT statement of an event; `feed_digest` names the feed it came from."""
    if not event.reviewer.strip():
        raise InputError("the reviewer is empty")
    try:
        predicate = OversightEventPredicate(
            observed_at=rfc3339(event.at),
            action=event.action,
            reviewer=pseudonymise(event.reviewer),
            reason=event.reason,
            link=event.link,
            system=event.system,
        ).to_predicate()
    except ValidationError as exc:
        raise InputError(_first_error(exc)) from None
    subjects = [_subject(predicate["reviewer"], predicate)]
    if feed_digest is not None:
        subjects.append({"name": FEED_SUBJECT, "digest": {"sha256": feed_digest}})
    return {
        "_type": STATEMENT_TYPE,
        "subject": subjects,
        "predicateType": OVERSIGHT_EVENT,
        "predicate": predicate,
    }


def check_links(events: Sequence[Event], size: int) -> None:
    """Refuses an event that names a batch or entry the log does not hold (yet)."""
    for event in events:
        link = event.link
        if link is not None and link.entry is not None and link.entry >= size:
            raise InputError(
                f"{event.where}: {link.kind} {link.entry} is not in the log, "
                f"which holds {size} entries"
            )


def record_event(store: Store, event: Event, pseudonymise: Pseudonymise) -> int:
    """Logs one event; its entry index."""
    check_links([event], store.size())
    statement = event_statement(event, pseudonymise)
    return store.append([statement], labels=["oversight event"]).first_index


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    return f"{field}: {message}" if field else message


# -- feeds --------------------------------------------------------------------------------------


class _FeedLine(BaseModel):
    """One line of a feed, strictly typed (JSON strict mode: "12" is not an index)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    action: OversightAction
    reviewer: str = Field(min_length=1)
    reason: str = Field(min_length=1)
    at: str
    request: str | None = Field(default=None, min_length=1)
    batch: int | None = Field(default=None, ge=0)
    entry: int | None = Field(default=None, ge=0)
    system: str | None = Field(default=None, min_length=1)


def parse_feed(data: bytes, *, source: str, now: datetime) -> list[Event]:
    """Every event of a JSON Lines feed, or an InputError naming the first bad line."""
    events = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        where = f"{source} line {number}"
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            byte = raw[exc.start]
            raise InputError(
                f"{where}: not UTF-8 (byte 0x{byte:02x} at column {exc.start + 1})"
            ) from None
        if text.strip():
            events.append(_feed_event(text, where, now))
    if not events:
        raise InputError(f"{source}: no oversight events in it")
    return events


def _feed_event(text: str, where: str, now: datetime) -> Event:
    try:
        line = _FeedLine.model_validate_json(text)
    except ValidationError as exc:
        raise InputError(f"{where}: {_first_error(exc)}") from None
    try:
        at = parse_timestamp(line.at)
    except ValueError as exc:
        raise InputError(f"{where}: at: {exc}") from None
    if at > now + CLOCK_SKEW:
        raise InputError(f"{where}: at {line.at} is in the future")
    return Event(
        action=line.action,
        reviewer=line.reviewer,
        reason=line.reason,
        at=at,
        link=_link(line, where),
        system=line.system,
        where=where,
    )


def _link(line: _FeedLine, where: str) -> OversightLink | None:
    given = [
        (kind, value)
        for kind, value in (("request", line.request), ("batch", line.batch), ("entry", line.entry))
        if value is not None
    ]
    if len(given) > 1:
        raise InputError(f"{where}: give at most one of request, batch, entry")
    if not given:
        return None
    kind, value = given[0]
    if kind == "request":
        return OversightLink(kind="request", id=str(value))
    return OversightLink(kind=kind, entry=int(value))


@dataclass(frozen=True)
class Ingested:
    """Where a feed's events are in the log; `already` when the same bytes were logged before."""

    first_index: int
    count: int
    digest: str
    already: bool


class _AlreadyLogged(Exception):
    def __init__(self, index: int) -> None:
        self.index = index


def _logged_feed(store: Store, digest: str) -> list[int]:
    found = store.query(predicate_type=OVERSIGHT_EVENT, subject_digest=f"sha256:{digest}", limit=1)
    return [entry.index for entry in found]


def ingest_feed(
    store: Store, data: bytes, *, source: str, pseudonymise: Pseudonymise, now: datetime
) -> Ingested:
    """Logs every event of a feed as one atomic batch, unless these bytes were logged before."""
    digest = hashlib.sha256(data).hexdigest()
    if found := _logged_feed(store, digest):
        return Ingested(found[0], 0, digest, already=True)
    events = parse_feed(data, source=source, now=now)
    check_links(events, store.size())
    statements = [event_statement(e, pseudonymise, feed_digest=digest) for e in events]

    def build(_size: int) -> Sequence[Mapping[str, Any]]:
        if again := _logged_feed(store, digest):  # logged by another process meanwhile
            raise _AlreadyLogged(again[0])
        return statements

    try:
        result = store.append_locked(build)
    except _AlreadyLogged as logged:
        return Ingested(logged.index, 0, digest, already=True)
    return Ingested(result.first_index, len(statements), digest, already=False)


# -- attestations -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attestation:
    """A reviewer's training or competence (reviewer in the clear)."""

    reviewer: str
    training: str
    valid_from: datetime
    valid_until: datetime
    issuer: str | None = None
    evidence_digest: str | None = None
    system: str | None = None


def attestation_statement(
    attestation: Attestation, pseudonymise: Pseudonymise, *, now: datetime
) -> dict[str, Any]:
    """The REVIEWER_ATTESTATION statement of an attestation."""
    if not attestation.reviewer.strip():
        raise InputError("the reviewer is empty")
    try:
        predicate = ReviewerAttestationPredicate(
            observed_at=rfc3339(now),
            reviewer=pseudonymise(attestation.reviewer),
            training=attestation.training,
            issuer=attestation.issuer,
            valid_from=rfc3339(attestation.valid_from),
            valid_until=rfc3339(attestation.valid_until),
            evidence_digest=attestation.evidence_digest,
            system=attestation.system,
        ).to_predicate()
    except ValidationError as exc:
        raise InputError(_first_error(exc)) from None
    return {
        "_type": STATEMENT_TYPE,
        "subject": [_subject(predicate["reviewer"], predicate)],
        "predicateType": REVIEWER_ATTESTATION,
        "predicate": predicate,
    }
