"""OpenLineage run events, taken as clients emit them, each becoming one OPENLINEAGE_RUN statement.

Input is one JSON object, a JSON array of them, or JSON Lines (one event a line, blank lines
allowed). Every event is checked before anything is logged; the first bad one (not UTF-8, not
JSON, a duplicate key, a required field missing or of the wrong type) stops the batch with an
InputError naming the source and the line.

Subjects: the job and every input and output dataset as `ol:<namespace>/<name>`, whose digest
is SHA-256 of that name (OpenLineage gives no content digest), and `ol-event:<runId>` whose
digest is SHA-256 of the event's RFC 8785 bytes: the same event sent twice, from the same file
or another, is recognised by it and logged once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from evidence.canonical import canonical_bytes, parse_json
from evidence.entry import rfc3339
from evidence.errors import InputError
from evidence.keys import utc_now
from evidence.store import Store
from schemas.lineage import OPENLINEAGE_RUN, RunEvent, name_digest
from schemas.statement import STATEMENT_TYPE

EVENT_PREFIX = "ol-event:"


@dataclass(frozen=True)
class RawEvent:
    """One event as given, and where it was read (for messages and the predicate)."""

    event: dict[str, Any]
    line: int


@dataclass(frozen=True)
class ParsedEvent:
    raw: RawEvent
    model: RunEvent
    digest: str  # SHA-256 of the event's RFC 8785 bytes


def decode(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError(
            f"{source}:{line}: byte 0x{data[exc.start]:02x} is not UTF-8 (OpenLineage events are "
            "UTF-8 JSON)"
        ) from None


def split_events(text: str, source: str) -> Iterator[RawEvent]:
    """The events of one object, an array, or JSON Lines, each with its starting line."""
    stripped = text.lstrip()
    if not stripped:
        raise InputError(f"{source}: no events (the input is empty)")
    offset = text[: len(text) - len(stripped)].count("\n")
    if stripped.startswith("["):
        doc = parse_json(text, what=source)
        if not isinstance(doc, list) or not doc:
            raise InputError(f"{source}: a JSON array of events must hold at least one event")
        for event in doc:
            yield RawEvent(_object(event, source, offset + 1), offset + 1)
        return
    try:
        whole = parse_json(text, what=source)
    except InputError as exc:
        whole, whole_error = None, exc  # not one document: JSON Lines
    if whole is not None:
        yield RawEvent(_object(whole, source, offset + 1), offset + 1)
        return
    first = True
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            event = parse_json(line, what=f"{source}:{number}")
        except InputError:
            if first:  # one pretty-printed object with an error: say where in it
                raise whole_error from None
            raise
        first = False
        yield RawEvent(_object(event, source, number), number)


def _object(value: Any, source: str, line: int) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InputError(f"{source}:{line}: an OpenLineage event is a JSON object")
    return value


def check_event(raw: RawEvent, source: str) -> ParsedEvent:
    """The event validated against the RunEvent shape; InputError naming line and field."""
    try:
        model = RunEvent.model_validate(raw.event)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(event)"
        raise InputError(f"{source}:{raw.line}: field {field}: {first['msg']}") from None
    where = f"{source}:{raw.line}: the event"
    digest = hashlib.sha256(canonical_bytes(raw.event, what=where)).hexdigest()
    return ParsedEvent(raw, model, digest)


def parse_events(data: bytes, source: str) -> list[ParsedEvent]:
    """Every event of the input, all checked (nothing is returned if one is bad)."""
    text = decode(data, source)
    return [check_event(raw, source) for raw in split_events(text, source)]


def statement_of(
    parsed: ParsedEvent, source: str, source_sha256: str, *, now: datetime | None = None
) -> dict[str, Any]:
    """The OPENLINEAGE_RUN statement of one event; the raw event is kept as given."""
    event = parsed.model
    names = [event.job.subject_name]
    names += [d.subject_name for d in (*event.inputs, *event.outputs)]
    subjects = [{"name": n, "digest": {"sha256": name_digest(n)}} for n in dict.fromkeys(names)]
    subjects.append(
        {"name": f"{EVENT_PREFIX}{event.run.run_id}", "digest": {"sha256": parsed.digest}}
    )
    predicate = {
        "observedAt": rfc3339(now or utc_now()),
        "eventTime": event.event_time,
        "eventType": event.event_type,
        "runId": event.run.run_id,
        "job": {"namespace": event.job.namespace, "name": event.job.name},
        "inputs": [{"namespace": d.namespace, "name": d.name} for d in event.inputs],
        "outputs": [{"namespace": d.namespace, "name": d.name} for d in event.outputs],
        "eventSha256": parsed.digest,
        "source": {"name": source, "sha256": source_sha256, "line": parsed.raw.line},
        "event": parsed.raw.event,
    }
    return {
        "_type": STATEMENT_TYPE,
        "subject": subjects,
        "predicateType": OPENLINEAGE_RUN,
        "predicate": predicate,
    }


def logged_event(store: Store, digest: str) -> int | None:
    """The entry that already logged an event with this digest, if one did."""
    for entry in store.query(
        predicate_type=OPENLINEAGE_RUN, subject_digest=f"sha256:{digest}", limit=50
    ):
        if any(s.name.startswith(EVENT_PREFIX) and s.digest == digest for s in entry.subjects):
            return entry.index
    return None


@dataclass(frozen=True)
class Ingest:
    """What to log, and what is already in the log (event digest -> entry)."""

    new: list[ParsedEvent]
    known: dict[str, int]


def plan_ingest(store: Store | None, events: list[ParsedEvent]) -> Ingest:
    """New events (each once, in input order) and those the log already holds."""
    new: list[ParsedEvent] = []
    known: dict[str, int] = {}
    seen: set[str] = set()
    for parsed in events:
        if parsed.digest in seen:
            continue
        seen.add(parsed.digest)
        index = None if store is None else logged_event(store, parsed.digest)
        if index is None:
            new.append(parsed)
        else:
            known[parsed.digest] = index
    return Ingest(new, known)


class _NothingNew(Exception):
    """Under the sequencer lock, every event turned out to be logged already."""


@dataclass(frozen=True)
class Logged:
    """What `log_events` did: `plan.new` it appended from `first_index` on (as `statements`),
    `plan.known` it found logged (possibly by another process while this one planned)."""

    plan: Ingest
    first_index: int | None
    statements: list[dict[str, Any]]

    def where(self) -> dict[str, int]:
        """Every event's entry, by event digest."""
        found = dict(self.plan.known)
        if self.first_index is not None:
            found.update({e.digest: self.first_index + n for n, e in enumerate(self.plan.new)})
        return found


def log_events(
    store: Store, events: list[ParsedEvent], *, source: str, source_sha256: str
) -> Logged:
    """Appends, as one batch, the events the log does not hold yet.

    Exact across processes: the plan made beforehand is made again under the sequencer lock, so
    a server and a CLI logging the same events at once log each of them once.
    """
    plan = plan_ingest(store, events)
    if not plan.new:
        return Logged(plan, None, [])
    final, statements = plan, []

    def build(_size: int) -> list[dict[str, Any]]:
        nonlocal final, statements
        again = plan_ingest(store, plan.new)
        final = Ingest(again.new, {**plan.known, **again.known})
        if not final.new:
            raise _NothingNew
        statements = [statement_of(e, source, source_sha256) for e in final.new]
        return statements

    try:
        result = store.append_locked(build, label=lambda i: f"{source}:{final.new[i].raw.line}")
    except _NothingNew:
        return Logged(final, None, [])
    return Logged(final, result.first_index, statements)
