"""Dataset evidence: hash a dataset (a directory or one file), read its files and datasheet.

`collect_dataset` returns a DATASET statement whose subject is `dataset:<name>` with the
manifest digest (hashed as models are: collectors/hashing.py). Every file must be of a format
Annex reads (JSON Lines, CSV, TSV, Parquet) or documentation (README, LICENSE, *.md, the
datasheet); anything else is refused as an unknown format, unless the datasheet says
`format: binary`, which records such files as opaque (hashed, no record count).

The datasheet is `datasheet.yaml` (or `.yml`) in the directory, or beside a single file, or the
file given. Inside the directory it is part of the manifest; outside, its own SHA-256 is
recorded. What it does not say is recorded as missing.
"""

from __future__ import annotations

import os
import socket
import stat
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from collectors.dataset_formats import detect_format, summarise
from collectors.hash_cache import HashCache
from collectors.hashing import Progress, hash_files, hash_tree, manifest_of
from collectors.tree import Tree, TreeFile
from collectors.yamlfile import read_yaml_model
from evidence.entry import rfc3339
from evidence.errors import CollectorError
from evidence.keys import utc_now
from evidence.store import Store
from schemas.dataset import (
    DATASET,
    DECLARED_FIELDS,
    DatasetPredicate,
    Datasheet,
    FileSummary,
)
from schemas.model import Manifest
from schemas.statement import STATEMENT_TYPE

DATASHEET_NAMES = ("datasheet.yaml", "datasheet.yml")


@dataclass(frozen=True)
class LoadedDatasheet:
    sheet: Datasheet
    path: Path
    sha256: str


def read_datasheet(path: Path) -> LoadedDatasheet:
    """The datasheet at `path`; InputError naming the file and the field when it is wrong."""
    sheet, sha256 = read_yaml_model(
        path, Datasheet, what="datasheet", shape="a mapping of fields (source, licence, ...)"
    )
    return LoadedDatasheet(sheet, path, sha256)


def find_datasheet(target: Path) -> Path | None:
    """datasheet.yaml in a dataset directory, or beside a single dataset file."""
    folder = target if target.is_dir() else target.parent
    return next((folder / n for n in DATASHEET_NAMES if (folder / n).is_file()), None)


def dataset_manifest(
    target: Path, *, cache: HashCache | None = None, progress: Progress | None = None
) -> Manifest:
    """The manifest of a dataset directory, or of one file (a manifest of that file alone)."""
    try:
        st = os.lstat(target)
    except OSError as exc:
        raise CollectorError(f"{target} does not exist or cannot be read: {exc.strerror}") from None
    if target.is_dir():  # the walk resolves a symlinked root, and refuses links inside
        return hash_tree(target, cache=cache, progress=progress)
    if stat.S_ISLNK(st.st_mode):
        raise CollectorError(f"{target} is a symbolic link: give the file itself")
    if not stat.S_ISREG(st.st_mode):
        raise CollectorError(f"{target} is neither a regular file nor a directory")
    absolute = target.resolve()
    one = TreeFile.of(absolute.name, absolute, st)
    tree = Tree(absolute.parent, (one,), (), time.time_ns())
    return manifest_of(tree, hash_files([one], progress=progress))


def summarise_files(
    root: Path, manifest: Manifest, sheet: Datasheet | None, datasheet_path: str | None
) -> tuple[FileSummary, ...]:
    """Each file's format, records and schema; an unknown format is refused."""
    summaries = []
    for file in manifest.files:
        fmt = "documentation" if file.path == datasheet_path else detect_format(file.path)
        if fmt is None:
            if sheet is None or sheet.format != "binary":
                raise CollectorError(
                    f"{root / file.path}: unknown dataset format (Annex reads .jsonl, .ndjson, "
                    ".csv, .tsv, .parquet); declare `format: binary` in the datasheet to record "
                    "such files as opaque"
                )
            fmt = "binary"
        summaries.append(summarise(root / file.path, file.path, fmt, file.sha256))
    return tuple(summaries)


@dataclass(frozen=True)
class Snapshot:
    """A dataset hashed, its datasheet read: enough to tell whether the log already holds it."""

    target: Path
    root: Path  # the directory the manifest's paths are relative to
    manifest: Manifest
    datasheet: LoadedDatasheet | None
    inside: str | None  # the datasheet's path in the manifest, when it is one of the files
    name: str


def take_snapshot(
    target: Path,
    *,
    datasheet: Path | None = None,
    name: str | None = None,
    cache: HashCache | None = None,
    progress: Progress | None = None,
) -> Snapshot:
    """Reads the datasheet (first: a bad one fails before any hashing) and hashes the data."""
    sheet_path = datasheet or find_datasheet(target)
    loaded = None if sheet_path is None else read_datasheet(sheet_path)
    manifest = dataset_manifest(target, cache=cache, progress=progress)
    root = target.resolve() if target.is_dir() else target.resolve().parent
    inside = _inside(root, manifest, loaded)
    chosen = name or (loaded.sheet.name if loaded else None) or target.resolve().name
    return Snapshot(target, root, manifest, loaded, inside, chosen)


def collect_dataset(
    target: Path,
    *,
    datasheet: Path | None = None,
    name: str | None = None,
    cache: HashCache | None = None,
    progress: Progress | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The DATASET statement of a directory or file, with its datasheet's declarations."""
    snap = take_snapshot(target, datasheet=datasheet, name=name, cache=cache, progress=progress)
    return statement_of(describe(snap, now=now))


def _inside(root: Path, manifest: Manifest, loaded: LoadedDatasheet | None) -> str | None:
    """The datasheet's path in the manifest, when it is one of the dataset's own files."""
    if loaded is None:
        return None
    try:
        relative = loaded.path.resolve().relative_to(root).as_posix()
    except ValueError:
        return None
    return relative if relative in manifest.by_path() else None


def describe(snap: Snapshot, *, now: datetime | None = None) -> DatasetPredicate:
    """Reads every file (records, schema) and combines it with the datasheet's declarations."""
    loaded = snap.datasheet
    sheet = loaded.sheet if loaded is not None else Datasheet()
    files = summarise_files(snap.root, snap.manifest, sheet if loaded else None, snap.inside)
    declared = {
        "description": sheet.description,
        "source": sheet.source,
        "licence": sheet.licence,
        "legal_basis": sheet.legal_basis,
        "personal_data": sheet.personal_data,
        "special_categories": sheet.special_categories,
    }
    missing = tuple(
        alias
        for alias, value in zip(DECLARED_FIELDS, declared.values(), strict=True)
        if value is None
    )
    data = [f for f in files if f.format not in ("documentation", "binary")]
    counts = [f.records for f in data]
    records = None if not data or None in counts else sum(c or 0 for c in counts)
    return DatasetPredicate(
        observed_at=rfc3339(now or utc_now()),
        name=snap.name,
        host=socket.gethostname(),
        path=str(snap.target.resolve()),
        manifest=snap.manifest,
        files=files,
        records=records,
        datasheet=None if loaded is None else snap.inside or str(loaded.path.resolve()),
        datasheet_sha256=None if loaded is None else loaded.sha256,
        missing=missing,
        **declared,
    )


def statement_of(predicate: DatasetPredicate) -> dict[str, Any]:
    return {
        "_type": STATEMENT_TYPE,
        "subject": [
            {"name": f"dataset:{predicate.name}", "digest": {"sha256": predicate.manifest.digest}}
        ],
        "predicateType": DATASET,
        "predicate": predicate.to_predicate(),
    }


# -- finding datasets in the log ------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetRef:
    name: str  # without the `dataset:` prefix
    digest: str
    entry: int


def find_datasets(
    store: Store, *, name: str | None = None, digest: str | None = None
) -> list[DatasetRef]:
    """Logged datasets by name or manifest digest (full hex), oldest first."""
    found: list[DatasetRef] = []
    after: int | None = None
    while page := store.query(
        predicate_type=DATASET,
        subject_name=None if name is None else f"dataset:{name}",
        subject_digest=None if digest is None else f"sha256:{digest}",
        after=after,
        limit=500,
    ):
        for entry in page:
            first = entry.subjects[0]
            if first.name.startswith("dataset:") and first.algorithm == "sha256":
                found.append(
                    DatasetRef(first.name.removeprefix("dataset:"), first.digest, entry.index)
                )
        after = page[-1].index
    return found


def already_logged(store: Store, snap: Snapshot) -> int | None:
    """The entry that logged this same snapshot: same name, manifest and datasheet bytes."""
    sheet_sha = None if snap.datasheet is None else snap.datasheet.sha256
    for ref in find_datasets(store, name=snap.name, digest=snap.manifest.digest):
        logged = store.get(ref.entry).statement["predicate"]
        if logged.get("datasheetSha256") == sheet_sha:
            return ref.entry
    return None
