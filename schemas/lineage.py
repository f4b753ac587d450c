"""OpenLineage run events, read leniently, and the statement Annex logs for each.

The shape is OpenLineage's RunEvent (https://openlineage.io/spec/2-0-2/OpenLineage.json):
`eventTime`, `producer`, `schemaURL`, `run.runId`, `job.namespace` and `job.name` are required;
`eventType` (START, RUNNING, COMPLETE, ABORT, FAIL, OTHER), `inputs` and `outputs` (each dataset
`namespace`, `name`, `facets`) are optional. Facets and any other field are kept as given: the
raw event goes into the predicate unchanged, so what a client sent can always be read back.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from schemas.statement import parse_timestamp, predicate_type

OPENLINEAGE_RUN = predicate_type("openlineage-run")

EventType = Literal["START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"]


class _Lenient(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True)


class _Named(_Lenient):
    """What OpenLineage names by namespace and name: a dataset or a job."""

    namespace: str = Field(min_length=1)
    name: str = Field(min_length=1)
    facets: dict[str, Any] = Field(default_factory=dict)

    @property
    def subject_name(self) -> str:
        return subject_name(self.namespace, self.name)


class OlDataset(_Named):
    pass


class OlJob(_Named):
    pass


class OlRun(_Lenient):
    run_id: str = Field(alias="runId", min_length=1)
    facets: dict[str, Any] = Field(default_factory=dict)


class RunEvent(_Lenient):
    """An OpenLineage RunEvent; fields Annex does not read are kept (extra="allow")."""

    event_time: str = Field(alias="eventTime")
    producer: str = Field(min_length=1)
    schema_url: str = Field(alias="schemaURL", min_length=1)
    run: OlRun
    job: OlJob
    event_type: EventType | None = Field(default=None, alias="eventType")
    inputs: tuple[OlDataset, ...] = ()
    outputs: tuple[OlDataset, ...] = ()

    @field_validator("event_time")
    @classmethod
    def _rfc3339(cls, value: str) -> str:
        parse_timestamp(value)
        return value


def subject_name(namespace: str, name: str) -> str:
    """`ol:<namespace>/<name>`: how an OpenLineage job or dataset is named in the log."""
    return f"ol:{namespace}/{name}"


def name_digest(name: str) -> str:
    """SHA-256 of a subject name: the digest of a thing known only by its name."""
    return hashlib.sha256(name.encode("utf-8")).hexdigest()
