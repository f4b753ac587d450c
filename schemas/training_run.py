"""Training-run evidence: which data and which base model produced which adapter or model.

The subjects are the output's manifest digest first (so the CI gate's `lineage` requirement
finds the run by the digest of what it judges), then each dataset's and the base model's.
The predicate says which subject plays which part.

Training compute is estimated as C = 6 * N * D (Kaplan et al. 2020, "Scaling Laws for Neural
Language Models": about 6 FLOP per parameter per token for a forward and backward pass of a
dense transformer), with N the base model's parameter count and D the tokens trained on. For a
LoRA adapter this over-counts (the frozen weights get no weight-gradient pass, so about 4 * N * D
is closer), which errs on the safe side of the EU "one third" test: the Commission's GPAI
guidelines treat a downstream modifier as the provider of a modified general-purpose model when
the modification's compute exceeds one third of the original model's training compute. When the
base model's compute is unknown, the guidelines fall back to one third of the 10^23 FLOP GPAI
indication; the predicate then records the ratio as unknown and judges against that fallback.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.statement import predicate_type

TRAINING_RUN = predicate_type("training-run")

FLOPS_PER_PARAMETER_TOKEN = 6
GPAI_INDICATIVE_FLOPS = 1e23  # the guidelines' indicative training compute of a GPAI model


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class Artifact(_Frozen):
    """A logged dataset or model: its subject name, digest set and the entry that logged it."""

    name: str = Field(min_length=1)
    digest: dict[str, str] = Field(min_length=1)
    entry: int | None = None


class Output(Artifact):
    kind: Literal["model", "adapter"]


class Compute(_Frozen):
    """C = 6 * N * D and how it compares with the base model's training compute."""

    flops: float = Field(ge=0)
    method: Literal["6ND"] = "6ND"
    parameters: int = Field(ge=0)  # N: the base model's parameters
    tokens: int = Field(ge=0)  # D
    base_compute: float | None = Field(default=None, alias="baseCompute", gt=0)
    ratio: float | None = None  # flops / baseCompute
    threshold_flops: float = Field(alias="thresholdFlops")  # one third of the basis below
    threshold_basis: Literal["base-compute", "gpai-fallback"] = Field(alias="thresholdBasis")
    threshold_one_third: bool = Field(alias="thresholdOneThird")  # flops > thresholdFlops
    note: str


class TrainingRunPredicate(_Frozen):
    """Predicate of TRAINING_RUN."""

    observed_at: str = Field(alias="observedAt")
    datasets: tuple[Artifact, ...] = Field(min_length=1)
    base_model: Artifact = Field(alias="baseModel")
    output: Output
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    gpu_hours: float | None = Field(default=None, alias="gpuHours", ge=0)
    energy_joules: float | None = Field(default=None, alias="energyJoules", ge=0)
    energy_source: Literal["given", "nvml", "unknown"] = Field(alias="energySource")
    energy_note: str | None = Field(default=None, alias="energyNote")  # how, or why not
    compute: Compute

    def to_predicate(self) -> dict[str, Any]:
        data: dict[str, Any] = self.model_dump(mode="json", by_alias=True)
        return data


def estimate_compute(parameters: int, tokens: int, base_compute: float | None) -> Compute:
    """6 * N * D, its ratio to the base's compute and the one-third test."""
    flops = float(FLOPS_PER_PARAMETER_TOKEN * parameters * tokens)
    if base_compute is not None:
        threshold = base_compute / 3
        return Compute(
            flops=flops,
            parameters=parameters,
            tokens=tokens,
            base_compute=base_compute,
            ratio=flops / base_compute,
            threshold_flops=threshold,
            threshold_basis="base-compute",
            threshold_one_third=flops > threshold,
            note="6*N*D with N the base model's parameters (an upper bound for LoRA)",
        )
    threshold = GPAI_INDICATIVE_FLOPS / 3
    return Compute(
        flops=flops,
        parameters=parameters,
        tokens=tokens,
        threshold_flops=threshold,
        threshold_basis="gpai-fallback",
        threshold_one_third=flops > threshold,
        note=(
            "the base model's training compute is unknown (give --base-compute): ratio unknown; "
            "judged against one third of the 10^23 FLOP GPAI indication instead"
        ),
    )
