"""Serious incidents (Art 73): open, update, close, list, and the legal holds they set.

An incident is a chain of INCIDENT statements (schemas/incident.py); its state is its newest
statement. Opening one records when the provider became aware, computes the reporting deadline
from the category, freezes a snapshot (the newest manifest or release of every model and adapter
in the log, the configuration files named, the signed checkpoint) and sets a legal hold that
retention and erasure must respect: `active_holds` is what they ask.

Updates and closes are built inside the log's sequencer lock from the newest state read there,
so two people updating one incident at once cannot lose each other's notes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from evidence.canonical import canonical_bytes, json_error
from evidence.entry import Entry, rfc3339
from evidence.errors import ConfigError, InputError
from evidence.files import file_sha256
from evidence.store import Store
from schemas.incident import (
    ALL_SYSTEMS,
    DEFAULT_DEADLINE_DAYS,
    INCIDENT,
    IncidentCategory,
    IncidentNote,
    IncidentPredicate,
    Snapshot,
    SnapshotCheckpoint,
    SnapshotConfig,
    SnapshotManifest,
)
from schemas.model import MODEL_MANIFEST, MODEL_RELEASE
from schemas.statement import STATEMENT_TYPE, parse_timestamp

__all__ = [
    "MAX_DAYS",
    "DeadlineTable",
    "Hold",
    "IncidentState",
    "active_holds",
    "close_incident",
    "deadline_table",
    "find_incident",
    "incident_states",
    "load_deadline_table",
    "open_incident",
    "take_snapshot",
    "time_left",
    "update_incident",
]

DeadlineTable = Mapping[IncidentCategory, int]
MAX_DAYS = 3650  # a deadline of ten years is already no deadline; more overflows the date
_PAGE = 500


# -- legal holds --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hold:
    """An incident's legal hold: `entry` set it (the incident's newest statement), over `scope`
    (a system id, or "*" for the whole log)."""

    entry: int
    incident_id: str
    scope: str


def active_holds(store: Store) -> list[Hold]:
    """Every legal hold in force: incidents whose newest statement holds and is not a close.

    Reads only `incidentId`, `action`, `legalHold` and the scope (`holdScope`, else `system`,
    else the whole log), so it judges any statement of the INCIDENT shape.
    """
    newest: dict[str, Entry] = {}
    for entry in _incident_entries(store):
        incident_id = entry.statement["predicate"].get("incidentId")
        if isinstance(incident_id, str):
            newest[incident_id] = entry
    holds = []
    for incident_id, entry in sorted(newest.items(), key=lambda item: item[1].index):
        predicate = entry.statement["predicate"]
        if predicate.get("legalHold") is True and predicate.get("action") != "close":
            scope = predicate.get("holdScope") or predicate.get("system") or ALL_SYSTEMS
            holds.append(Hold(entry.index, incident_id, str(scope)))
    return holds


def _incident_entries(store: Store, incident_id: str | None = None) -> Iterator[Entry]:
    """Incident statements the log key signed (only it may: schemas/authority.py); one signed
    by another key, or not signed at all, is no statement of the incident's state, so a forged
    close can neither lift a hold nor end an incident."""
    after: int | None = None
    name = None if incident_id is None else f"incident:{incident_id}"
    while page := store.query(predicate_type=INCIDENT, subject_name=name, after=after, limit=_PAGE):
        yield from (entry for entry in page if store.signed_by_authority(entry))
        after = page[-1].index


# -- deadlines ----------------------------------------------------------------------------------


def deadline_table(overrides: Mapping[str, Any] | None = None, *, where: str = "") -> DeadlineTable:
    """The Art 73 table with an installation's changes (category name -> whole days)."""
    table = dict(DEFAULT_DEADLINE_DAYS)
    for name, days in (overrides or {}).items():
        try:
            category = IncidentCategory(name)
        except ValueError:
            known = ", ".join(c.value for c in IncidentCategory)
            raise ConfigError(f"{where}unknown incident category {name!r} ({known})") from None
        if isinstance(days, bool) or not isinstance(days, int) or not 0 <= days <= MAX_DAYS:
            raise ConfigError(
                f"{where}{name}: days must be a whole number from 0 to {MAX_DAYS}, not {days!r}"
            )
        table[category] = days
    return table


def load_deadline_table(path: Path) -> DeadlineTable:
    """The table from a JSON object file {category: days}; the defaults when it does not exist."""
    if not path.exists():
        return deadline_table()
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read incident deadlines {path}: {exc}") from exc
    except ValueError as exc:
        raise ConfigError(f"cannot read incident deadlines {path}: {json_error(exc)}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: incident deadlines must be a JSON object {{category: days}}")
    return deadline_table(loaded, where=f"{path}: ")


def time_left(predicate: IncidentPredicate, now: datetime) -> timedelta:
    """Time until the reporting deadline; negative once it has passed."""
    return parse_timestamp(predicate.deadline_at) - now


# -- reading incidents --------------------------------------------------------------------------


@dataclass(frozen=True)
class IncidentState:
    """An incident as its newest statement (at `entry`) left it."""

    entry: int
    predicate: IncidentPredicate

    @property
    def opened_entry(self) -> int:
        return self.entry if self.predicate.opened_entry is None else self.predicate.opened_entry

    @property
    def closed(self) -> bool:
        return self.predicate.action == "close"

    def overdue(self, now: datetime) -> bool:
        """Open, not yet reported to the authority, and past its deadline."""
        p = self.predicate
        return not self.closed and p.reported_at is None and time_left(p, now) < timedelta(0)


def _state(entry: Entry) -> IncidentState:
    try:
        predicate = IncidentPredicate.model_validate(entry.statement["predicate"])
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise InputError(
            f"entry {entry.index}: incident predicate {where}: {first['msg']}"
        ) from None
    return IncidentState(entry.index, predicate)


def incident_states(store: Store) -> list[IncidentState]:
    """The newest state of every incident, in the order they were opened."""
    newest: dict[str, Entry] = {}
    for entry in _incident_entries(store):
        newest[entry.statement["predicate"].get("incidentId", "")] = entry
    states = [_state(entry) for entry in newest.values()]
    return sorted(states, key=lambda s: s.opened_entry)


def find_incident(store: Store, incident_id: str) -> IncidentState | None:
    found: Entry | None = None
    for entry in _incident_entries(store, incident_id):
        found = entry
    return None if found is None else _state(found)


def _require(store: Store, incident_id: str) -> IncidentState:
    state = find_incident(store, incident_id)
    if state is None:
        raise InputError(f"no incident {incident_id!r} in the log (annex incident list)")
    return state


# -- the snapshot -------------------------------------------------------------------------------


def take_snapshot(store: Store, configs: Sequence[Path] = ()) -> Snapshot:
    """The log's newest checkpoint, every model's and adapter's newest manifest and release below
    it, and the SHA-256 of each configuration file named."""
    try:
        signed = store.checkpoint()
    except InputError:
        return Snapshot(configs=tuple(_config(path) for path in configs))
    checkpoint = SnapshotCheckpoint(size=signed.size, root=base64.b64encode(signed.root).decode())
    manifests: list[SnapshotManifest] = []
    for predicate_type, kind in ((MODEL_MANIFEST, "manifest"), (MODEL_RELEASE, "release")):
        manifests.extend(_newest_per_name(store, predicate_type, kind, signed.size))
    return Snapshot(
        manifests=tuple(sorted(manifests, key=lambda m: (m.name, m.kind))),
        checkpoint=checkpoint,
        configs=tuple(_config(path) for path in configs),
    )


def _newest_per_name(
    store: Store, predicate_type: str, kind: str, below: int
) -> list[SnapshotManifest]:
    newest: dict[str, SnapshotManifest] = {}
    after: int | None = None
    while page := store.query(predicate_type=predicate_type, after=after, limit=_PAGE):
        for entry in page:
            first = entry.subjects[0] if entry.subjects else None
            if entry.index < below and first is not None and first.algorithm == "sha256":
                newest[first.name] = SnapshotManifest(
                    name=first.name, digest=first.digest, entry=entry.index, kind=kind
                )
        after = page[-1].index
    return list(newest.values())


def _config(path: Path) -> SnapshotConfig:
    try:
        return SnapshotConfig(name=path.name, digest=file_sha256(path))
    except OSError as exc:
        raise InputError(f"cannot read configuration file {path}: {exc.strerror}") from exc


# -- open, update, close ------------------------------------------------------------------------


def _statement(predicate: IncidentPredicate) -> dict[str, Any]:
    snapshot = predicate.snapshot.model_dump(mode="json", by_alias=True, exclude_none=True)
    subjects = [
        {
            "name": f"incident:{predicate.incident_id}",
            "digest": {"sha256": hashlib.sha256(canonical_bytes(snapshot)).hexdigest()},
        }
    ]
    subjects += [
        {"name": m.name, "digest": {"sha256": m.digest}} for m in predicate.snapshot.manifests
    ]
    return {
        "_type": STATEMENT_TYPE,
        "subject": subjects,
        "predicateType": INCIDENT,
        "predicate": predicate.to_predicate(),
    }


def _new_id(now: datetime) -> str:
    return f"inc-{now:%Y%m%d}-{secrets.token_hex(3)}"


def _build(fields: Mapping[str, Any], *, where: str) -> IncidentPredicate:
    try:
        return IncidentPredicate.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        raise InputError(f"{where}: {field}: {message}") from None


@dataclass(frozen=True)
class OpenRequest:
    """What a person says when opening an incident."""

    system: str
    category: IncidentCategory
    aware_at: datetime
    description: str | None = None
    incident_id: str | None = None
    legal_hold: bool = True
    hold_scope: str | None = None  # default: the system
    deadline_days: int | None = None  # default: the table's days for the category


def open_incident(
    store: Store,
    request: OpenRequest,
    *,
    now: datetime,
    table: DeadlineTable | None = None,
    configs: Sequence[Path] = (),
) -> tuple[int, IncidentPredicate]:
    """Logs an incident's opening; its entry index and predicate."""
    if request.aware_at > now:
        raise InputError(f"--aware-at {rfc3339(request.aware_at)} is in the future")
    incident_id = request.incident_id or _new_id(now)
    days = request.deadline_days
    if days is not None and not 0 <= days <= MAX_DAYS:
        raise InputError(f"--deadline-days {days}: a deadline is 0 to {MAX_DAYS} days")
    if days is None:
        days = (table or DEFAULT_DEADLINE_DAYS)[request.category]
    snapshot = take_snapshot(store, configs)
    predicate = _build(
        {
            "observedAt": rfc3339(now),
            "incidentId": incident_id,
            "action": "open",
            "system": request.system,
            "category": request.category,
            "awarenessAt": rfc3339(request.aware_at),
            "deadlineDays": days,
            "deadlineAt": rfc3339(request.aware_at + timedelta(days=days)),
            "legalHold": request.legal_hold,
            "holdScope": request.hold_scope or request.system,
            "description": request.description,
            "snapshot": snapshot,
        },
        where="incident",
    )

    def build(_size: int) -> list[Mapping[str, Any]]:
        existing = find_incident(store, incident_id)
        if existing is not None:
            raise InputError(f"incident {incident_id!r} exists already (entry {existing.entry})")
        return [_statement(predicate)]

    return store.append_locked(build).first_index, predicate


@dataclass(frozen=True)
class Change:
    """What an update or a close changes; None leaves a field as it was."""

    note: str | None = None
    category: IncidentCategory | None = None
    reported_at: datetime | None = None
    release_hold: bool = False
    close: bool = False


def update_incident(
    store: Store,
    incident_id: str,
    change: Change,
    *,
    now: datetime,
    table: DeadlineTable | None = None,
) -> tuple[int, IncidentPredicate]:
    """Logs a change to an open incident, built from its newest state inside the lock."""
    built: list[IncidentPredicate] = []

    def build(_size: int) -> list[Mapping[str, Any]]:
        predicate = _changed(_require(store, incident_id), change, now, table)
        built.append(predicate)
        return [_statement(predicate)]

    index = store.append_locked(build).first_index
    return index, built[-1]


def close_incident(
    store: Store, incident_id: str, change: Change, *, now: datetime
) -> tuple[int, IncidentPredicate]:
    """Logs an incident's close; refused while its legal hold is set unless it is released."""
    return update_incident(store, incident_id, replace(change, close=True), now=now)


def _changed(
    state: IncidentState, change: Change, now: datetime, table: DeadlineTable | None
) -> IncidentPredicate:
    old = state.predicate
    if state.closed:
        raise InputError(f"incident {old.incident_id!r} was closed at entry {state.entry}")
    if change.close and old.legal_hold and not change.release_hold:
        raise InputError(
            f"incident {old.incident_id!r} holds evidence (legal hold set at entry "
            f"{state.entry}): closing it releases the hold, so pass --release-hold to say so"
        )
    given = (change.note, change.category, change.reported_at, change.release_hold or None)
    if not change.close and all(value is None for value in given):
        raise InputError("nothing to update: give a note, a category, a report or a release")
    if change.reported_at is not None and change.reported_at > now:
        raise InputError(f"--reported-at {rfc3339(change.reported_at)} is in the future")
    fields = old.model_dump(by_alias=True, exclude_none=True)
    fields.update(observedAt=rfc3339(now), action="close" if change.close else "update")
    fields["openedEntry"] = state.opened_entry
    if change.note is not None:
        fields["updates"] = (*old.updates, IncidentNote(at=rfc3339(now), note=change.note))
    if change.category is not None and change.category != old.category:
        days = (table or DEFAULT_DEADLINE_DAYS)[change.category]
        aware = parse_timestamp(old.awareness_at)
        fields.update(
            category=change.category,
            deadlineDays=days,
            deadlineAt=rfc3339(aware + timedelta(days=days)),
        )
    if change.reported_at is not None:
        fields["reportedAt"] = rfc3339(change.reported_at)
    if change.release_hold:
        fields["legalHold"] = False
    return _build(fields, where=f"incident {old.incident_id}")
