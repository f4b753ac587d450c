"""Serious-incident evidence (AI Act Art 73, Art 26(5)): one statement per change of an incident.

Predicate type `INCIDENT` (https://annex.dev/predicates/incident/v1). An incident is the chain of
its statements; the newest one carries its whole current state, so a reader needs only that one.
`action` says what the statement did: `open` (awareness recorded, deadline computed, snapshot
frozen, legal hold set), `update` (a note, a reclassification, the report to the authority, a
released hold) or `close`.

Reporting deadlines (Art 73(2)-(5), calendar days after the provider became aware): 2 days for a
widespread infringement or a serious and irreversible disruption of critical infrastructure
(Art 3(49)(b)), 10 days for a death, 15 days for every other serious incident (serious harm to
health, fundamental-rights infringements, serious harm to property or the environment). The
table is a default; an installation may shorten or lengthen it, and the days used are recorded
in `deadlineDays`.

Legal hold: an incident holds evidence from erasure while its newest statement has `legalHold`
true and `action` is not `close`. `holdScope` says what is held: the system id, or "*" for the
whole log. Closing an incident ends its hold.

Subjects: `incident:<incidentId>` with the SHA-256 of the canonical snapshot (what was frozen),
then every manifest in the snapshot under its own subject name and digest, so a query by a
model's digest finds the incidents that froze it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.statement import parse_timestamp, predicate_type

INCIDENT = predicate_type("incident")

_SHA256 = r"^[0-9a-f]{64}$"
_INCIDENT_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
ALL_SYSTEMS = "*"


class IncidentCategory(StrEnum):
    """Art 3(49) kinds of serious incident, split where Art 73 sets a different deadline."""

    DEATH = "death"
    CRITICAL_INFRASTRUCTURE = "critical-infrastructure"
    WIDESPREAD_INFRINGEMENT = "widespread-infringement"
    HEALTH = "serious-harm-to-health"
    FUNDAMENTAL_RIGHTS = "fundamental-rights"
    PROPERTY_OR_ENVIRONMENT = "property-or-environment"
    OTHER = "other"


# Art 73: the latest a report may be made, in calendar days after awareness.
DEFAULT_DEADLINE_DAYS: dict[IncidentCategory, int] = {
    IncidentCategory.DEATH: 10,
    IncidentCategory.CRITICAL_INFRASTRUCTURE: 2,
    IncidentCategory.WIDESPREAD_INFRINGEMENT: 2,
    IncidentCategory.HEALTH: 15,
    IncidentCategory.FUNDAMENTAL_RIGHTS: 15,
    IncidentCategory.PROPERTY_OR_ENVIRONMENT: 15,
    IncidentCategory.OTHER: 15,
}

IncidentAction = Literal["open", "update", "close"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


def _timestamp(value: str) -> str:
    parse_timestamp(value)
    return value


class SnapshotManifest(_Frozen):
    """The newest log entry of a model or adapter (manifest or release) when the incident opened."""

    name: str = Field(min_length=1)  # the subject name, e.g. "model:llama-3-8b"
    digest: str = Field(pattern=_SHA256)  # its manifest digest (sha256)
    entry: int = Field(ge=0)
    kind: Literal["manifest", "release"]


class SnapshotCheckpoint(_Frozen):
    """The signed checkpoint the snapshot was taken at: the log's size and root (base64)."""

    size: int = Field(ge=0)
    root: str = Field(min_length=1)


class SnapshotConfig(_Frozen):
    """A configuration file in force, by name and SHA-256."""

    name: str = Field(min_length=1)
    digest: str = Field(pattern=_SHA256)


class Snapshot(_Frozen):
    """What was running and what the log held when the incident was opened: frozen, never redone."""

    manifests: tuple[SnapshotManifest, ...] = ()
    checkpoint: SnapshotCheckpoint | None = None  # None: the log held no checkpoint yet
    configs: tuple[SnapshotConfig, ...] = ()


class IncidentNote(_Frozen):
    at: str
    note: str = Field(min_length=1)

    _at = field_validator("at")(_timestamp)


class IncidentPredicate(_Frozen):
    """Predicate of INCIDENT: the whole state of one incident after the change `action` made."""

    observed_at: str = Field(alias="observedAt")
    incident_id: str = Field(alias="incidentId", pattern=_INCIDENT_ID)
    action: IncidentAction
    system: str = Field(min_length=1)
    category: IncidentCategory
    awareness_at: str = Field(alias="awarenessAt")
    deadline_days: int = Field(alias="deadlineDays", ge=0)
    deadline_at: str = Field(alias="deadlineAt")
    reported_at: str | None = Field(default=None, alias="reportedAt")
    legal_hold: bool = Field(alias="legalHold")
    hold_scope: str = Field(alias="holdScope", min_length=1)
    opened_entry: int | None = Field(default=None, alias="openedEntry", ge=0)
    description: str | None = None
    snapshot: Snapshot
    updates: tuple[IncidentNote, ...] = ()

    _times = field_validator("observed_at", "awareness_at", "deadline_at")(_timestamp)

    @field_validator("reported_at")
    @classmethod
    def _reported_is_a_time(cls, value: str | None) -> str | None:
        return None if value is None else _timestamp(value)

    @model_validator(mode="after")
    def _opened_entry_after_open(self) -> IncidentPredicate:
        if self.action != "open" and self.opened_entry is None:
            raise ValueError(f"an incident {self.action} must name the entry that opened it")
        return self

    @property
    def held(self) -> bool:
        return self.legal_hold and self.action != "close"

    def to_predicate(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
