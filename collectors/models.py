"""Model and adapter evidence: a directory's manifest and what its files say, as a statement.

`collect_model` hashes a directory (collectors/hashing.py), reads what its files declare
(config.json, safetensors headers, GGUF metadata, tokenizer and generation files, a PEFT
adapter_config.json) and returns an in-toto statement of type MODEL_MANIFEST. Its subject is
`model:<name>` or `adapter:<name>` with the manifest digest; an adapter bound to a known base
names the base's manifest digest too, as a second subject `model:<base>`, so the log shows that
what is deployed is exactly this base plus this adapter.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from collectors.formats import (
    ADAPTER_CONFIG_NAME,
    CONFIG_NAME,
    generation_config_digest,
    read_adapter_config,
    read_config,
    tokenizer_digests,
)
from collectors.gguf_metadata import read_gguf
from collectors.hash_cache import HashCache
from collectors.hashing import Progress, build_manifest
from collectors.jsonfile import read_json_file
from collectors.safetensors_header import read_safetensors
from evidence.entry import Entry, rfc3339
from evidence.errors import CollectorError
from evidence.keys import utc_now
from evidence.store import Store
from schemas.model import (
    MODEL_MANIFEST,
    GgufSummary,
    Manifest,
    ManifestFile,
    ModelManifestPredicate,
    SafetensorsSummary,
)
from schemas.statement import STATEMENT_TYPE

__all__ = [
    "BaseRef",
    "bind",
    "build_manifest",
    "collect_model",
    "describe",
    "find_base",
    "find_model",
    "statement_of",
]

_GGUF_SPLIT = re.compile(r"-\d{5}-of-\d{5}\.gguf$")


@dataclass(frozen=True)
class BaseRef:
    """The base model an adapter is bound to: its name, manifest digest and log entry."""

    name: str
    digest: str
    entry: int | None = None


@dataclass(frozen=True)
class Weights:
    safetensors: tuple[SafetensorsSummary, ...]
    gguf: tuple[GgufSummary, ...]
    parameters: int | None


def collect_model(
    root: Path,
    *,
    name: str | None = None,
    base: BaseRef | None = None,
    cache: HashCache | None = None,
    full: bool = False,
    progress: Progress | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The MODEL_MANIFEST statement of a model or adapter directory."""
    manifest = build_manifest(root, cache=cache, full=full, progress=progress)
    predicate = describe(root.resolve(), manifest, name=name, base=base, now=now)
    return statement_of(predicate, base)


def describe(
    root: Path,
    manifest: Manifest,
    *,
    name: str | None = None,
    base: BaseRef | None = None,
    now: datetime | None = None,
) -> ModelManifestPredicate:
    """What the hashed files of `root` say, with the manifest that binds them."""
    root = root.resolve()
    files = manifest.by_path()
    adapter_file, config_file = files.get(ADAPTER_CONFIG_NAME), files.get(CONFIG_NAME)
    adapter = (
        None
        if adapter_file is None
        else read_adapter_config(root / adapter_file.path, adapter_file.sha256)
    )
    if not (name or root.name):
        raise CollectorError(f"{root} has no name of its own: give the model a name")
    weights = read_weights(root, manifest)
    predicate = ModelManifestPredicate(
        observed_at=rfc3339(now or utc_now()),
        kind="adapter" if adapter is not None else "model",
        name=name or root.name,
        host=socket.gethostname(),
        path=str(root),
        manifest=manifest,
        config=None if config_file is None else read_config(root / CONFIG_NAME, config_file.sha256),
        safetensors=weights.safetensors,
        gguf=weights.gguf,
        parameters=weights.parameters,
        tokenizer_digests=tokenizer_digests(manifest),
        generation_config_digest=generation_config_digest(manifest),
        adapter=adapter,
    )
    return predicate if base is None else bind(predicate, base)


def bind(predicate: ModelManifestPredicate, base: BaseRef) -> ModelManifestPredicate:
    """The adapter's predicate naming the base's manifest digest and log entry."""
    if predicate.adapter is None:
        raise CollectorError(
            f"{predicate.path} has no {ADAPTER_CONFIG_NAME}: only an adapter is bound to a base"
        )
    adapter = predicate.adapter.model_copy(
        update={"base_manifest_digest": base.digest, "base_manifest_entry": base.entry}
    )
    return predicate.model_copy(update={"adapter": adapter})


def statement_of(predicate: ModelManifestPredicate, base: BaseRef | None) -> dict[str, Any]:
    subjects = [
        {
            "name": f"{predicate.kind}:{predicate.name}",
            "digest": {"sha256": predicate.manifest.digest},
        }
    ]
    if base is not None:
        subjects.append({"name": f"model:{base.name}", "digest": {"sha256": base.digest}})
    return {
        "_type": STATEMENT_TYPE,
        "subject": subjects,
        "predicateType": MODEL_MANIFEST,
        "predicate": predicate.to_predicate(),
    }


def read_weights(root: Path, manifest: Manifest) -> Weights:
    """Every safetensors and GGUF file's header, and the model's parameter count."""
    tensors = tuple(
        read_safetensors(root / f.path, f.path, f.size)
        for f in manifest.files
        if f.path.endswith(".safetensors")
    )
    ggufs = tuple(
        read_gguf(root / f.path, f.path) for f in manifest.files if f.path.endswith(".gguf")
    )
    if tensors:
        return Weights(tensors, ggufs, _safetensors_parameters(root, manifest, tensors))
    return Weights(tensors, ggufs, _gguf_parameters(ggufs))


def _safetensors_parameters(
    root: Path, manifest: Manifest, tensors: tuple[SafetensorsSummary, ...]
) -> int:
    """All shards' parameters; where an index names the shards, only those (no duplicates)."""
    indexes = [f for f in manifest.files if f.path.endswith(".safetensors.index.json")]
    if not indexes:
        return sum(t.parameters for t in tensors)
    shards: set[str] = set()
    for index in indexes:
        shards |= _index_shards(root, index)
    by_path = {t.path: t for t in tensors}
    missing = sorted(shards - by_path.keys())
    if missing:
        raise CollectorError(f"{root}: the safetensors index names missing shards: {missing}")
    return sum(by_path[s].parameters for s in shards)


def _index_shards(root: Path, index: ManifestFile) -> set[str]:
    doc = read_json_file(root / index.path, index.sha256)
    weight_map = doc.get("weight_map") if isinstance(doc, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise CollectorError(f"{root / index.path}: weight_map must map tensor names to files")
    folder = index.path.rpartition("/")[0]
    return {f"{folder}/{v}" if folder else v for v in weight_map.values()}


def _gguf_parameters(ggufs: tuple[GgufSummary, ...]) -> int | None:
    """One model in GGUF: the same count in every file (quantisations), or split parts summed."""
    if not ggufs:
        return None
    if all(_GGUF_SPLIT.search(g.path) for g in ggufs):
        return sum(g.parameters for g in ggufs)
    counts = {g.parameters for g in ggufs}
    return counts.pop() if len(counts) == 1 else None


# -- finding a base already in the log --------------------------------------------------------


def find_model(
    store: Store, *, name: str | None = None, digest: str | None = None
) -> BaseRef | None:
    """The newest MODEL_MANIFEST entry of a model (not an adapter) by subject name or digest."""
    found: BaseRef | None = None
    after: int | None = None
    subject_name = None if name is None else f"model:{name}"
    while page := store.query(
        predicate_type=MODEL_MANIFEST,
        subject_name=subject_name,
        subject_digest=None if digest is None else f"sha256:{digest}",
        after=after,
        limit=500,
    ):
        for entry in page:
            found = _as_base(entry, subject_name, digest) or found
        after = page[-1].index
    return found


def _as_base(entry: Entry, subject_name: str | None, digest: str | None) -> BaseRef | None:
    """The entry's first subject, if it is a model's own manifest matching the query."""
    first = entry.subjects[0] if entry.subjects else None
    if first is None or not first.name.startswith("model:") or first.algorithm != "sha256":
        return None  # an adapter entry names its base as a second subject: not a match
    if subject_name is not None and first.name != subject_name:
        return None
    if digest is not None and first.digest != digest:
        return None
    return BaseRef(first.name.removeprefix("model:"), first.digest, entry.index)


def base_names(base_model_name: str | None) -> list[str]:
    """Names a base may have been collected under: as written, and its last path component."""
    if not base_model_name:
        return []
    names = [base_model_name]
    last = base_model_name.rstrip("/").rpartition("/")[2]
    if last and last != base_model_name:
        names.append(last)
    return names


def find_base(store: Store, base_model_name: str | None) -> BaseRef | None:
    """The newest logged model whose name is the adapter's base_model_name_or_path (or its tail)."""
    candidates = [find_model(store, name=n) for n in base_names(base_model_name)]
    found = [c for c in candidates if c is not None]
    return max(found, key=lambda c: c.entry or -1) if found else None
