"""Everything the log holds about one AI system, cut at one checkpoint, read once per kind.

The card's resolved components (base model, adapters, datasets) are the keys: manifests,
releases, training runs and eval runs are found by subject digest, inference batches by the
models they served, oversight events and incidents by system id. GPU inventories are not tied to
a system by the collectors, so every host's newest inventory counts as the fleet the system runs
on (the dossier says so). Parsing is strict: an entry that does not parse as its kind raises
InputError naming it, because a dossier must never silently skip evidence.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from evidence.entry import Entry
from evidence.errors import InputError
from evidence.store import Store
from reports.document import CheckpointRef
from reports.evidence_query import (
    Served,
    checkpoint_ref,
    history,
    model_digests,
    scan,
    served_batches,
)
from reports.systems import CardVersion
from schemas.dataset import DATASET, DatasetPredicate
from schemas.eval_run import EvalRunPredicate
from schemas.gpu import GPU_INVENTORY, GpuInventoryPredicate
from schemas.incident import INCIDENT, IncidentPredicate
from schemas.key_event import KEY_EVENT, KeyEvent
from schemas.model import (
    MODEL_MANIFEST,
    MODEL_RELEASE,
    ModelManifestPredicate,
    ModelReleasePredicate,
)
from schemas.oversight import (
    OVERSIGHT_EVENT,
    REVIEWER_ATTESTATION,
    OversightEventPredicate,
    ReviewerAttestationPredicate,
)
from schemas.policy import EVAL_RUN
from schemas.training_run import TRAINING_RUN, TrainingRunPredicate

P = TypeVar("P", bound=BaseModel)
T = TypeVar("T")


@dataclass(frozen=True)
class Found(Generic[T]):
    entry: Entry
    predicate: T


@dataclass
class SystemEvidence:
    checkpoint: CheckpointRef
    versions: list[CardVersion]
    manifests: dict[str, list[Found[ModelManifestPredicate]]] = field(default_factory=dict)
    releases: dict[str, list[Found[ModelReleasePredicate]]] = field(default_factory=dict)
    datasets: dict[str, list[Found[DatasetPredicate]]] = field(default_factory=dict)
    training: list[Found[TrainingRunPredicate]] = field(default_factory=list)
    evals: list[Found[EvalRunPredicate]] = field(default_factory=list)
    gpus: list[Found[GpuInventoryPredicate]] = field(default_factory=list)  # newest per host
    gpu_entries: int = 0
    served: list[Served] = field(default_factory=list)
    oversight: list[Found[OversightEventPredicate]] = field(default_factory=list)
    attestations: list[Found[ReviewerAttestationPredicate]] = field(default_factory=list)
    incidents: list[Found[IncidentPredicate]] = field(default_factory=list)
    key_events: list[Found[KeyEvent]] = field(default_factory=list)

    @property
    def latest(self) -> CardVersion:
        return self.versions[-1]

    @property
    def size(self) -> int:
        return self.checkpoint.size


def _parse(entry: Entry, model: type[P], kind: str) -> P:
    try:
        return model.model_validate(entry.statement["predicate"])
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InputError(
            f"entry {entry.index}: not a valid {kind} predicate: {where}: {first['msg']}"
        ) from None


def _by_digest(
    store: Store, kind: str, model: type[P], digest: str, size: int, *, first_only: bool
) -> list[Found[P]]:
    """Entries of `kind` naming `digest`; with `first_only`, as their own (first) subject."""
    out: list[Found[P]] = []
    for entry in scan(store, kind, size, subject_digest=f"sha256:{digest}"):
        if first_only and entry.subjects[0].digest != digest:
            continue
        out.append(Found(entry, _parse(entry, model, kind.split("/")[-2])))
    return out


def _all(
    store: Store, kind: str, model: type[P], size: int, keep: Callable[[P], bool] | None = None
) -> list[Found[P]]:
    out: list[Found[P]] = []
    for entry in scan(store, kind, size):
        predicate = _parse(entry, model, kind.split("/")[-2])
        if keep is None or keep(predicate):
            out.append(Found(entry, predicate))
    return out


def gather(store: Store, system_id: str, *, at: int | None = None) -> SystemEvidence:
    """The system's card versions and every piece of evidence tied to its components."""
    cp = checkpoint_ref(store, at)
    versions = history(store, system_id, cp.size)
    found = SystemEvidence(cp, versions)
    models = {c.digest for v in versions for c in v.predicate.components if c.role != "dataset"}
    for digest in sorted(models):
        found.manifests[digest] = _by_digest(
            store, MODEL_MANIFEST, ModelManifestPredicate, digest, cp.size, first_only=True
        )
        found.releases[digest] = _by_digest(
            store, MODEL_RELEASE, ModelReleasePredicate, digest, cp.size, first_only=True
        )
    datasets = {c.digest for v in versions for c in v.predicate.components if c.role == "dataset"}
    for digest in sorted(datasets):
        found.datasets[digest] = _by_digest(
            store, DATASET, DatasetPredicate, digest, cp.size, first_only=True
        )
    found.training = _unique(
        f
        for digest in sorted(models | datasets)
        for f in _by_digest(
            store, TRAINING_RUN, TrainingRunPredicate, digest, cp.size, first_only=False
        )
    )
    found.evals = _unique(
        f
        for digest in sorted(models)
        for f in _by_digest(store, EVAL_RUN, EvalRunPredicate, digest, cp.size, first_only=False)
    )
    _gpus(store, found)
    found.served = served_batches(store, model_digests(versions), cp.size)
    found.oversight = _all(
        store, OVERSIGHT_EVENT, OversightEventPredicate, cp.size, lambda p: p.system == system_id
    )
    found.attestations = _all(
        store,
        REVIEWER_ATTESTATION,
        ReviewerAttestationPredicate,
        cp.size,
        lambda p: p.system in (None, system_id),
    )
    found.incidents = _all(
        store, INCIDENT, IncidentPredicate, cp.size, lambda p: p.system == system_id
    )
    found.key_events = _all(store, KEY_EVENT, KeyEvent, cp.size)
    return found


def _gpus(store: Store, found: SystemEvidence) -> None:
    newest: dict[str, Found[GpuInventoryPredicate]] = {}
    for entry in scan(store, GPU_INVENTORY, found.size):
        found.gpu_entries += 1
        predicate = _parse(entry, GpuInventoryPredicate, "gpu-inventory")
        newest[predicate.host.hostname] = Found(entry, predicate)
    found.gpus = sorted(newest.values(), key=lambda f: f.entry.index)


def _unique(items: Iterable[Found[Any]]) -> list[Found[Any]]:
    seen: dict[int, Found[Any]] = {}
    for item in items:
        seen.setdefault(item.entry.index, item)
    return [seen[i] for i in sorted(seen)]
