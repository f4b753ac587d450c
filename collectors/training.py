"""Training-run evidence: resolve what a run used and produced in the log, estimate its compute.

Everything a run names must already be logged: each dataset (`annex collect dataset`), the base
model and the output model or adapter (`annex collect model`). They are named by manifest
digest (`sha256:<hex>`, the bare hex, or a prefix of at least 12 hex digits) or by the name they
were collected under; an output may also be given as its directory, which is hashed and looked
up by digest. Anything not found is refused with the command that would log it.

N for C = 6 * N * D is the base model's parameter count from its logged manifest (or
--parameters when the manifest has none); see schemas/training_run.py for the method.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from collectors.datasets import find_datasets
from collectors.hashing import build_manifest
from evidence.entry import Entry, rfc3339
from evidence.errors import InputError
from evidence.keys import utc_now
from evidence.store import Store
from schemas.model import MODEL_MANIFEST
from schemas.statement import STATEMENT_TYPE
from schemas.training_run import (
    TRAINING_RUN,
    Artifact,
    Output,
    TrainingRunPredicate,
    estimate_compute,
)

_HEX = re.compile(r"(?:sha256:)?([0-9a-f]{12,64})")
_PAGE = 500


@dataclass(frozen=True)
class Logged:
    """A logged model or adapter manifest: its kind, name, digest, entry and parameters."""

    kind: str
    name: str
    digest: str
    entry: int
    parameters: int | None
    bound_base: str | None = None  # an adapter's base, as its manifest entry bound it

    def artifact(self) -> Artifact:
        return Artifact(
            name=f"{self.kind}:{self.name}", digest={"sha256": self.digest}, entry=self.entry
        )


def digest_of(reference: str) -> str | None:
    """The hex digest (or prefix) a reference spells, None when it is a name."""
    found = _HEX.fullmatch(reference.lower())
    return None if found is None else found.group(1)


def _manifests(store: Store) -> list[Logged]:
    """Every logged model or adapter manifest (its own subject, first), oldest first."""
    found: list[Logged] = []
    after: int | None = None
    while page := store.query(predicate_type=MODEL_MANIFEST, after=after, limit=_PAGE):
        found.extend(_logged(e) for e in page)
        after = page[-1].index
    return found


def _logged(entry: Entry) -> Logged:
    first = entry.subjects[0]
    kind, _, name = first.name.partition(":")
    predicate = entry.statement.get("predicate", {})
    parameters = predicate.get("parameters")
    adapter = predicate.get("adapter")
    bound = adapter.get("baseManifestDigest") if isinstance(adapter, dict) else None
    return Logged(
        kind,
        name,
        first.digest,
        entry.index,
        parameters if isinstance(parameters, int) else None,
        bound if isinstance(bound, str) else None,
    )


def _one(matches: list[Logged], reference: str, what: str, hint: str) -> Logged:
    digests = {m.digest for m in matches}
    if not matches:
        raise InputError(f"{what} {reference!r} is not in the log: {hint}")
    if len(digests) > 1:
        raise InputError(
            f"{what} {reference!r} names {len(digests)} different manifests in the log: "
            "give the full digest"
        )
    return matches[-1]  # the newest entry of that manifest


def resolve_manifest(store: Store, reference: str, *, kinds: tuple[str, ...], what: str) -> Logged:
    """A logged model/adapter by digest (or prefix), `kind:name`, name, or directory."""
    path = Path(reference)
    hint = "collect it first with `annex collect model DIR`"
    if path.is_dir():
        hashed = build_manifest(path).digest
        found = [m for m in _manifests(store) if m.digest == hashed and m.kind in kinds]
        return _one(found, f"{reference} (sha256:{hashed[:12]}…)", what, hint)
    digest = digest_of(reference)
    every = [m for m in _manifests(store) if m.kind in kinds]
    if digest is not None:
        found = [m for m in every if m.digest.startswith(digest)]
    else:
        found = [m for m in every if reference in (m.name, f"{m.kind}:{m.name}")]
    return _one(found, reference, what, hint)


def resolve_dataset(store: Store, reference: str) -> Artifact:
    """A logged dataset by manifest digest (or prefix), `dataset:name` or name."""
    digest = digest_of(reference)
    every = find_datasets(store)
    if digest is not None:
        found = [d for d in every if d.digest.startswith(digest)]
    else:
        found = [d for d in every if reference in (d.name, f"dataset:{d.name}")]
    if not found:
        raise InputError(
            f"dataset {reference!r} is not in the log: collect it first with "
            "`annex collect dataset PATH`"
        )
    if len({d.digest for d in found}) > 1:
        raise InputError(
            f"dataset {reference!r} names {len({d.digest for d in found})} different snapshots "
            "in the log: give the digest"
        )
    newest = found[-1]
    return Artifact(
        name=f"dataset:{newest.name}", digest={"sha256": newest.digest}, entry=newest.entry
    )


def read_hyperparameters(path: Path) -> dict[str, Any]:
    """A JSON or YAML object of hyperparameters, as given."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the hyperparameters {path}: {exc}") from None
    try:
        doc = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise InputError(
            f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}"
        ) from None
    if not isinstance(doc, dict):
        raise InputError(f"{path}: hyperparameters must be an object (name: value)")
    return doc


@dataclass(frozen=True)
class RunFacts:
    """What the caller states about a run: tokens, GPU-hours, energy, hyperparameters."""

    tokens: int
    gpu_hours: float | None = None
    energy_joules: float | None = None
    energy_source: str = "unknown"
    energy_note: str | None = None
    hyperparameters: dict[str, Any] | None = None
    base_compute: float | None = None
    parameters: int | None = None  # N, when the base's manifest has no parameter count


def training_run(
    datasets: list[Artifact],
    base: Logged,
    output: Logged,
    facts: RunFacts,
    *,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The TRAINING_RUN statement: output first among the subjects, then datasets and base."""
    if output.kind not in ("model", "adapter"):
        raise InputError(f"--output {output.name} is a {output.kind}, not a model or adapter")
    if output.digest == base.digest:
        raise InputError("--output and --base are the same manifest: a run produces something new")
    if output.bound_base is not None and output.bound_base != base.digest:
        raise InputError(
            f"--output adapter {output.name} (entry {output.entry}) is bound to the base "
            f"sha256:{output.bound_base[:12]}…, not to --base {base.name} "
            f"sha256:{base.digest[:12]}…: name the base it was trained on"
        )
    parameters = facts.parameters if facts.parameters is not None else base.parameters
    if parameters is None:
        raise InputError(
            f"base model {base.name} (entry {base.entry}) has no parameter count in its manifest: "
            "give --parameters N"
        )
    predicate = TrainingRunPredicate.model_validate(
        {
            "observedAt": rfc3339(now or utc_now()),
            "datasets": [d.model_dump() for d in datasets],
            "baseModel": base.artifact().model_dump(),
            "output": {**output.artifact().model_dump(), "kind": output.kind},
            "hyperparameters": facts.hyperparameters or {},
            "gpuHours": facts.gpu_hours,
            "energyJoules": facts.energy_joules,
            "energySource": facts.energy_source,
            "energyNote": facts.energy_note,
            "compute": estimate_compute(parameters, facts.tokens, facts.base_compute),
        }
    )
    subjects = [_subject(predicate.output), *(_subject(d) for d in predicate.datasets)]
    subjects.append(_subject(predicate.base_model))
    return {
        "_type": STATEMENT_TYPE,
        "subject": subjects,
        "predicateType": TRAINING_RUN,
        "predicate": predicate.to_predicate(),
    }


def _subject(artifact: Artifact | Output) -> dict[str, Any]:
    return {"name": artifact.name, "digest": dict(artifact.digest)}
