"""Eval-run evidence: which exact model files an lm-eval run scored, how, and with what result.

The first subject is the manifest digest of what was evaluated (the adapter when there is one,
else the model), so the CI gate's `eval` requirement finds the run by the digest it judges; the
model follows when an adapter was evaluated on it. `results` is lm-evaluation-harness's results
dict as it writes it ({task: {"acc,none": 0.61, "acc_stderr,none": 0.02, ...}}), the shape the
gate reads (schemas/policy.py, EvalRunContract). `origin` says whether Annex ran the eval or
imported a results file produced elsewhere (then only what that file says is recorded).
`backend` is lm-eval's model type (hf or vllm); `missing` lists fields a results file did not give
(e.g. `versions.torch`), so a gap is visible in the log rather than guessed.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.policy import EVAL_RUN
from schemas.statement import STATEMENT_TYPE

_SHA256 = r"^[0-9a-f]{64}$"

__all__ = ["EVAL_RUN", "EvalRunPredicate", "eval_statement"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class EvaluatedModel(_Frozen):
    """A model or adapter directory, by name and by the manifest digest of its files."""

    name: str = Field(min_length=1)
    manifest_digest: str = Field(alias="manifestDigest", pattern=_SHA256)


class DataFile(_Frozen):
    path: str = Field(min_length=1)
    sha256: str = Field(pattern=_SHA256)


class EvalTask(_Frozen):
    """A task as lm-eval resolved it: its version, config digest (RFC 8785) and data files."""

    name: str = Field(min_length=1)
    version: str | None = None
    config_digest: str | None = Field(default=None, alias="configDigest", pattern=_SHA256)
    data_files: tuple[DataFile, ...] = Field(default=(), alias="dataFiles")


class Versions(_Frozen):
    lm_eval: str | None = Field(default=None, alias="lmEval")
    transformers: str | None = None
    torch: str | None = None


class GpuSeen(_Frozen):
    """The GPU inventory at run time, in brief: NVML's status and the device names."""

    status: str
    reason: str | None = None
    devices: tuple[str, ...] = ()


class EvalRunPredicate(_Frozen):
    """Predicate of EVAL_RUN."""

    observed_at: str = Field(alias="observedAt")
    origin: Literal["run", "imported"]
    model: EvaluatedModel
    adapter: EvaluatedModel | None = None
    tasks: tuple[EvalTask, ...] = Field(min_length=1)
    n_shot: dict[str, int] = Field(default_factory=dict, alias="nShot")
    limit: float | None = None
    seeds: dict[str, int | None] = Field(default_factory=dict)
    batch_size: str | None = Field(default=None, alias="batchSize")
    dtype: str | None = None
    device: str | None = None
    backend: Literal["hf", "vllm"] | None = None
    versions: Versions = Field(default_factory=Versions)
    results: dict[str, dict[str, Any]] = Field(min_length=1)
    groups: dict[str, dict[str, dict[str, float]]] = Field(default_factory=dict)
    gpu: GpuSeen | None = None
    duration_seconds: float | None = Field(default=None, alias="durationSeconds", ge=0)
    energy_joules: float | None = Field(default=None, alias="energyJoules", ge=0)
    energy_note: str | None = Field(default=None, alias="energyNote")
    samples_digest: str | None = Field(default=None, alias="samplesDigest", pattern=_SHA256)
    missing: tuple[str, ...] = ()

    def to_predicate(self) -> dict[str, Any]:
        data: dict[str, Any] = self.model_dump(mode="json", by_alias=True)
        return data

    @property
    def evaluated(self) -> EvaluatedModel:
        """What the gate judges: the adapter when there is one, else the model."""
        return self.adapter or self.model


def eval_statement(predicate: EvalRunPredicate) -> dict[str, Any]:
    """The in-toto statement of an eval run: what was evaluated first, then its base model."""
    subjects = [predicate.evaluated]
    if predicate.adapter is not None:
        subjects.append(predicate.model)
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": s.name, "digest": {"sha256": s.manifest_digest}} for s in subjects],
        "predicateType": EVAL_RUN,
        "predicate": predicate.to_predicate(),
    }
