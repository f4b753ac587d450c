"""Reads a system card and resolves its components to the digests the log knows them by.

A component given by path is hashed the way its collector hashes it (model manifest, dataset
manifest) so the card names exactly the bytes on disk; a component given by digest is taken as
written. Either way the newest log entry recording that digest is noted, or none: the reports
show a component the log does not hold as a gap.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from collectors.datasets import dataset_manifest, find_datasets
from collectors.hash_cache import HashCache
from collectors.hashing import Progress, build_manifest
from collectors.yamlfile import read_yaml_model
from evidence.canonical import canonical_bytes
from evidence.entry import rfc3339
from evidence.errors import InputError
from evidence.keys import utc_now
from evidence.store import Store
from schemas.model import MODEL_MANIFEST
from schemas.statement import STATEMENT_TYPE
from schemas.system_card import (
    SUBJECT_PREFIX,
    SYSTEM_CARD,
    CardSource,
    ComponentRef,
    ResolvedComponent,
    SystemCard,
    SystemCardPredicate,
)


@dataclass(frozen=True)
class LoadedCard:
    card: SystemCard
    path: Path
    sha256: str


def read_card(path: Path) -> LoadedCard:
    """The card at `path`; InputError naming the file and the field path when it is wrong."""
    card, sha256 = read_yaml_model(
        path, SystemCard, what="system card", shape="a mapping (apiVersion, id, name, ...)"
    )
    return LoadedCard(card, path, sha256)


def resolve_components(
    loaded: LoadedCard,
    store: Store,
    *,
    cache: HashCache | None = None,
    progress: Progress | None = None,
) -> tuple[ResolvedComponent, ...]:
    """Every model, adapter and dataset of the card with its digest and log entry."""
    parts = loaded.card.components
    where = f"{loaded.path}: components"
    out: list[ResolvedComponent] = []
    if parts.base_model is not None:
        out.append(
            _model(
                loaded, parts.base_model, "base-model", f"{where}.baseModel", store, cache, progress
            )
        )
    for i, adapter in enumerate(parts.adapters):
        out.append(
            _model(loaded, adapter, "adapter", f"{where}.adapters.{i}", store, cache, progress)
        )
    for i, ds in enumerate(parts.datasets):
        path = None if ds.path is None else _path(loaded, ds.path, f"{where}.datasets.{i}.path")
        digest = ds.digest or dataset_manifest(path, cache=cache, progress=progress).digest  # type: ignore[arg-type]
        found = find_datasets(store, digest=digest)
        out.append(
            ResolvedComponent(
                role="dataset",
                name=ds.name,
                digest=digest,
                path=None if path is None else str(path),
                entry=found[-1].entry if found else None,
                dataset_role=ds.role,
            )
        )
    return tuple(out)


def _path(loaded: LoadedCard, written: str, where: str) -> Path:
    path = Path(written).expanduser()
    if not path.is_absolute():
        path = loaded.path.resolve().parent / path
    if not path.exists():
        raise InputError(f"{where}: {path} does not exist")
    return path.resolve()


def _model(
    loaded: LoadedCard,
    ref: ComponentRef,
    role: Literal["base-model", "adapter"],
    where: str,
    store: Store,
    cache: HashCache | None,
    progress: Progress | None,
) -> ResolvedComponent:
    path = None if ref.path is None else _path(loaded, ref.path, f"{where}.path")
    if path is not None and not path.is_dir():
        raise InputError(f"{where}.path: {path} is not a model directory")
    digest = ref.digest or build_manifest(path, cache=cache, progress=progress).digest  # type: ignore[arg-type]
    return ResolvedComponent(
        role=role,
        name=ref.name,
        digest=digest,
        path=None if path is None else str(path),
        entry=_manifest_entry(store, digest),
    )


def _manifest_entry(store: Store, digest: str) -> int | None:
    """The newest manifest entry of exactly these files (an adapter's entry also names its
    base as a second subject: that is not the base's manifest)."""
    found: int | None = None
    after: int | None = None
    while page := store.query(
        predicate_type=MODEL_MANIFEST, subject_digest=f"sha256:{digest}", after=after, limit=500
    ):
        found = next((e.index for e in reversed(page) if e.subjects[0].digest == digest), found)
        after = page[-1].index
    return found


def card_statement(
    loaded: LoadedCard,
    components: tuple[ResolvedComponent, ...],
    *,
    previous_entry: int | None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The SYSTEM_CARD statement: subject `system:<id>` with the digest of the canonical card."""
    predicate = SystemCardPredicate(
        observed_at=rfc3339(now or utc_now()),
        card=loaded.card.to_json(),
        source=CardSource(name=loaded.path.name, sha256=loaded.sha256),
        components=components,
        previous_entry=previous_entry,
    )
    body = predicate.model_dump(mode="json", by_alias=True, exclude_none=True)
    return {
        "_type": STATEMENT_TYPE,
        "subject": [
            {
                "name": SUBJECT_PREFIX + loaded.card.id,
                "digest": {"sha256": card_digest(loaded.card)},
            }
        ],
        "predicateType": SYSTEM_CARD,
        "predicate": body,
    }


def card_digest(card: SystemCard) -> str:
    return hashlib.sha256(canonical_bytes(card.to_json(), what="system card")).hexdigest()
