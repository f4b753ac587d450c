"""The CI gate's policy file, and the evidence contracts the gate reads.

A policy is YAML (parsed by reports/policy.py) of this shape:

    version: 1
    require:
      all_of:
        - signed: {}               # a trusted release in the log over the exact files on disk
        - eval: {task: mmlu, metric: "acc,none", min: 0.6, max_age_days: 30}
        - any_of:
            - gpu_inventory: {site: fra-1, max_age_days: 7}
            - gpu_inventory: {site: ams-2, max_age_days: 7}
        - lineage: {}              # the datasets behind this model or adapter are recorded

Each requirement is a mapping with exactly one key: a leaf (`signed`, `eval`, `gpu_inventory`,
`lineage`) or a composite (`all_of`, `any_of`, each a non-empty list of requirements). Unknown
keys are errors, so a typo can never switch a check off. A leaf written with no value
(`- signed:`) means its defaults.

Evidence contracts
------------------
The gate judges evidence of kinds that later collectors produce. What it reads is fixed here so
those collectors can adopt it; anything else in a predicate is ignored by the gate.

- `eval-run` (EVAL_RUN): subject digest {"sha256": <manifest digest>} of the model or adapter
  directory that was evaluated; predicate `observedAt` (RFC 3339) and `results`, shaped like
  lm-evaluation-harness's results dict: {task: {metric: value}} with metric names as lm-eval
  writes them ("acc,none", "acc_norm,none"). Only numeric values are compared; others
  ("alias", "N/A" stderr) are ignored.
- `dataset-lineage` (DATASET_LINEAGE): a subject digest equal to the manifest digest of the
  model or adapter the datasets went into; predicate `observedAt` and `datasets`, a non-empty
  list of {name, digest?} (digest an in-toto digest set).
- `training-run` (TRAINING_RUN, schemas/training_run.py, `annex collect training-run`) is read
  as lineage too: a subject digest equal to the manifest digest, and a predicate with
  `observedAt`, a non-empty `datasets` list as above and `output.digest.sha256` equal to that
  manifest digest (a run also names its base model among its subjects; it is not the base's
  lineage).
- `gpu-inventory` (GPU_INVENTORY, schemas/gpu.py): predicate `observedAt`, `status` ("ok"
  when devices were read), `reason`, `site` {site, country, operator} and `devices` (a list).
  The gate counts devices only.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.statement import predicate_type

EVAL_RUN = predicate_type("eval-run")
DATASET_LINEAGE = predicate_type("dataset-lineage")

LEAF_KINDS = ("signed", "eval", "gpu_inventory", "lineage")
COMPOSITE_KINDS = ("all_of", "any_of")


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# Bounds that keep a policy a policy: ages a date can be computed from, and a size whose
# evaluation takes no noticeable time (a hostile policy is cut off here, not after minutes).
MAX_AGE_DAYS = 36500
MAX_POLICY_BYTES = 64 << 10
MAX_REQUIREMENTS = 256
MAX_DEPTH = 16


class SignedSpec(_Spec):
    """A release of these exact files: logged, proven, by a trusted, unrevoked model-signing key.

    A model.sig beside the files is always checked; `signature_file: true` also requires one
    (for models handed on with their OpenSSF Model Signing bundle).
    """

    signature_file: bool = False


class EvalSpec(_Spec):
    """A metric of one eval task, from the newest eval run of this manifest, within bounds."""

    task: str = Field(min_length=1)
    metric: str = Field(min_length=1)
    min: float | None = Field(default=None, allow_inf_nan=False)
    max: float | None = Field(default=None, allow_inf_nan=False)
    max_age_days: float | None = Field(default=None, gt=0, le=MAX_AGE_DAYS)

    @model_validator(mode="after")
    def _bounded(self) -> EvalSpec:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max})")
        return self


class GpuInventorySpec(_Spec):
    """A GPU inventory (status ok, at least `min_devices`) of a site, no older than N days."""

    site: str | None = Field(default=None, min_length=1)
    max_age_days: float = Field(gt=0, le=MAX_AGE_DAYS)
    min_devices: int = Field(default=1, ge=1, le=1_000_000)


class LineageSpec(_Spec):
    """Lineage evidence naming the datasets that went into this model or adapter."""

    max_age_days: float | None = Field(default=None, gt=0, le=MAX_AGE_DAYS)


class Requirement(BaseModel):
    """One requirement: exactly one of the keys below is given."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    signed: SignedSpec | None = None
    eval: EvalSpec | None = None
    gpu_inventory: GpuInventorySpec | None = None
    lineage: LineageSpec | None = None
    all_of: tuple[Requirement, ...] | None = Field(default=None, min_length=1)
    any_of: tuple[Requirement, ...] | None = Field(default=None, min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _one_key(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data  # pydantic names the type error
        known = (*LEAF_KINDS, *COMPOSITE_KINDS)
        given = [k for k in data if k in known]
        if len(given) != 1 and len(data) == len(given):
            raise ValueError(
                f"a requirement has exactly one key, one of {', '.join(known)}; "
                f"got {', '.join(given) or 'none'}"
            )
        # `- signed:` (no value) means the defaults of that leaf.
        return {k: ({} if v is None and k in LEAF_KINDS else v) for k, v in data.items()}

    @property
    def kind(self) -> str:
        return next(k for k in (*LEAF_KINDS, *COMPOSITE_KINDS) if getattr(self, k) is not None)


class Policy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Literal[1]
    description: str | None = None
    require: Requirement


DEFAULT_POLICY = Policy(version=1, require=Requirement(signed=SignedSpec()))


# -- evidence contracts: what the gate reads of evidence kinds collected elsewhere ---------------


class _Contract(BaseModel):
    """Evidence is read leniently: fields the gate does not use may be anything."""

    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True)

    observed_at: str = Field(alias="observedAt")


class EvalRunContract(_Contract):
    results: dict[str, dict[str, Any]]

    def metric(self, task: str, metric: str) -> float | None:
        """The numeric value of `metric` for `task`, or None when absent or not a number."""
        value = self.results.get(task, {}).get(metric)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return float(value)


class DatasetRef(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")

    name: str = Field(min_length=1)
    digest: dict[str, str] = Field(default_factory=dict)


class LineageContract(_Contract):
    datasets: tuple[DatasetRef, ...] = Field(min_length=1)


class OutputRef(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")

    digest: dict[str, str] = Field(min_length=1)


class TrainingRunContract(LineageContract):
    """A training run as lineage of its output: the datasets, and which manifest it produced."""

    output: OutputRef

    def produced(self, digest: str) -> bool:
        return self.output.digest.get("sha256") == digest


class SiteLabels(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")

    site: str | None = None
    country: str | None = None
    operator: str | None = None


class GpuInventoryContract(_Contract):
    status: str
    reason: str | None = None
    site: SiteLabels = Field(default_factory=SiteLabels)
    devices: tuple[Any, ...] = ()
