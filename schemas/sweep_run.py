"""Sweep-run evidence: one statement for each run of a scheduled evidence sweep.

Predicate type `SWEEP_RUN` (https://annex.dev/predicates/sweep-run/v1). A sweep is a named set of
collector steps the operator declared in the configuration file (annex.toml) with a 5-field cron
schedule; each run is logged after its steps, whatever they did, so the log shows what ran, what
failed and how long it took. A scheduled time with no run is itself evidence (a gap in reports
and in metrics): that is why the schedule travels in every run.

Predicate fields (camelCase JSON):
- `observedAt`: when the run finished. `sweep`: its name. `schedule`: the cron expression and
  `timezone` it was declared with; `graceMinutes`: how late a run may start and still count.
  `system`: the AI system the sweep collects for, or null for the whole fleet.
- `trigger`: `scheduler` (`annex serve`) or `command` (`annex sweep NAME`, from cron, a systemd
  timer or a Kubernetes CronJob). `scheduledFor`: the fire time this run serves (the latest one
  at most `graceMinutes` before it started), null for a run outside any fire time.
- `startedAt`, `finishedAt`, `durationSeconds`; `status`: `ok` when every step succeeded, else
  `failed`. `host`: where it ran.
- `steps`: one result per step target (a model directory, a dataset path, ...): `kind`, `target`
  (null for the GPU step), `status` (`ok` or `failed`), `entries` (log indices it appended or
  found already logged), `error` (null exactly when it succeeded), `durationSeconds`.

Subject: `sweep:<name>` with the SHA-256 of the RFC 8785 JSON of the sweep's declaration, so
every run of one sweep is found by name and a changed declaration shows as a new digest.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from schemas.statement import STATEMENT_TYPE, parse_timestamp, predicate_type

SWEEP_RUN = predicate_type("sweep-run")
SWEEP_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"

StepKind = Literal["gpu", "model", "dataset", "inference-log", "eval"]
Outcome = Literal["ok", "failed"]


class _Shape(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True
    )


def _timestamp(value: str | None) -> str | None:
    if value is not None:
        parse_timestamp(value)
    return value


class StepResult(_Shape):
    """What one step did with one target."""

    kind: StepKind
    target: str | None = None
    status: Outcome
    entries: tuple[int, ...] = ()
    error: str | None = None
    duration_seconds: float = Field(ge=0)

    @model_validator(mode="after")
    def _error_iff_failed(self) -> StepResult:
        if (self.status == "failed") != (self.error is not None):
            raise ValueError("a step has an error exactly when it failed")
        return self


Trigger = Literal["scheduler", "command"]  # annex serve's scheduler, or `annex sweep NAME`


class SweepRunPredicate(_Shape):
    """Predicate of SWEEP_RUN."""

    observed_at: str
    sweep: str = Field(pattern=SWEEP_NAME)
    schedule: str = Field(min_length=1)
    timezone: str = Field(min_length=1)
    grace_minutes: int = Field(ge=1)
    system: str | None = Field(default=None, min_length=1)
    trigger: Trigger
    scheduled_for: str | None = None
    started_at: str
    finished_at: str
    duration_seconds: float = Field(ge=0)
    status: Outcome
    host: str = Field(min_length=1)
    steps: tuple[StepResult, ...]

    _times = field_validator("observed_at", "scheduled_for", "started_at", "finished_at")(
        _timestamp
    )

    @model_validator(mode="after")
    def _status_follows_steps(self) -> SweepRunPredicate:
        failed = any(s.status == "failed" for s in self.steps)
        if (self.status == "failed") != failed:
            raise ValueError("a run has status failed exactly when one of its steps failed")
        return self

    def to_predicate(self) -> dict[str, Any]:
        data: dict[str, Any] = self.model_dump(mode="json", by_alias=True)
        return data


def sweep_run_statement(predicate: SweepRunPredicate, declaration_sha256: str) -> dict[str, Any]:
    """The in-toto statement of a run, its subject the sweep's declaration."""
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": f"sweep:{predicate.sweep}", "digest": {"sha256": declaration_sha256}}],
        "predicateType": SWEEP_RUN,
        "predicate": predicate.to_predicate(),
    }
