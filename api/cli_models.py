"""`annex collect model DIR`: hash a model or adapter directory and log its manifest."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from api.cli_base import HomeOpt, JsonOpt, collect_app, command, open_home
from api.output import print_json, progress_bar, stdout
from collectors.hash_cache import CACHE_PATH, HashCache
from collectors.hashing import Progress, build_manifest
from collectors.models import BaseRef, bind, describe, find_base, find_model, statement_of
from evidence.errors import InputError
from evidence.home import Home
from evidence.store import Store
from schemas.model import ModelManifestPredicate

NameOpt = Annotated[
    str | None, typer.Option("--name", help="Name to record (default: the directory's name).")
]
BaseOpt = Annotated[
    Path | None,
    typer.Option(
        "--base",
        help="The adapter's base model directory: hashed too, and logged unless already there.",
    ),
]
FullOpt = Annotated[
    bool, typer.Option("--full", help="Read every file again, ignoring the digest cache.")
]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Print the statement; log nothing.")]


@dataclass(frozen=True)
class Collected:
    """What the command found: the directory's predicate and, for an adapter, its base."""

    predicate: ModelManifestPredicate
    base: BaseRef | None = None
    base_predicate: ModelManifestPredicate | None = None  # to log first (--base, not yet logged)


@command(collect_app, "model")
def collect_model_command(
    directory: Annotated[Path, typer.Argument(help="The model or adapter directory.")],
    name: NameOpt = None,
    base: BaseOpt = None,
    full: FullOpt = False,
    dry_run: DryRunOpt = False,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Record every file's SHA-256 and what the files declare (config, weights, adapter).

    An adapter is bound to its base: --base DIR, or the newest logged model of its base's name.
    """
    if base is not None and not (directory / "adapter_config.json").is_file():
        raise InputError(f"--base: {directory} has no adapter_config.json; it is not an adapter")
    target = open_home(home)
    with ExitStack() as stack:
        store = _store(target, dry_run, stack)
        cache = None if store is None else stack.enter_context(HashCache(target.path / CACHE_PATH))
        progress = stack.enter_context(progress_bar("hashing", enabled=not json_out))
        found = _collect(directory, name, base, store, cache, full, progress)
        indices = _append(store, found) if store is not None and not dry_run else (None, None)
    _report(found, indices, dry_run=dry_run, json_out=json_out)


def _store(target: Home, dry_run: bool, stack: ExitStack) -> Store | None:
    """The log, opened before hashing so a missing key fails fast; optional for --dry-run."""
    if dry_run and not target.trust_path.exists():
        return None  # a dry run needs no data directory (and then uses no cache)
    return stack.enter_context(target.open_store(write=not dry_run))


def _collect(
    directory: Path,
    name: str | None,
    base_dir: Path | None,
    store: Store | None,
    cache: HashCache | None,
    full: bool,
    progress: Progress,
) -> Collected:
    base_predicate = None
    if base_dir is not None:
        base_predicate = _describe(base_dir, None, cache, full, progress)
        if base_predicate.kind != "model":
            raise InputError(f"--base: {base_dir} is itself an adapter, not a base model")
    predicate = _describe(directory, name, cache, full, progress)
    if predicate.adapter is None:
        return Collected(predicate)
    base = _known_base(predicate, base_predicate, store)
    if base is None and base_predicate is not None:
        base = BaseRef(base_predicate.name, base_predicate.manifest.digest)  # logged first
    else:
        base_predicate = None
    bound = predicate if base is None else bind(predicate, base)
    return Collected(bound, base, base_predicate)


def _describe(
    directory: Path, name: str | None, cache: HashCache | None, full: bool, progress: Progress
) -> ModelManifestPredicate:
    manifest = build_manifest(directory, cache=cache, full=full, progress=progress)
    return describe(directory, manifest, name=name)


def _known_base(
    predicate: ModelManifestPredicate,
    base_predicate: ModelManifestPredicate | None,
    store: Store | None,
) -> BaseRef | None:
    """The base already in the log: by --base's digest, else by the adapter's base name."""
    if store is None:
        return None
    if base_predicate is not None:
        return find_model(store, digest=base_predicate.manifest.digest)
    assert predicate.adapter is not None
    return find_base(store, predicate.adapter.base_model_name)


def _append(store: Store, found: Collected) -> tuple[int | None, int | None]:
    """Logs the statement; with a new base, the base first in the same batch, bound by index."""
    if found.base_predicate is None or found.base is None:
        result = store.append([statement_of(found.predicate, found.base)])
        return result.first_index, found.base.entry if found.base else None
    base_predicate, base = found.base_predicate, found.base

    def build(size: int) -> list[dict[str, Any]]:
        at = BaseRef(base.name, base.digest, size)
        return [statement_of(base_predicate, None), statement_of(bind(found.predicate, at), at)]

    result = store.append_locked(build)
    return result.first_index + 1, result.first_index


# -- output ---------------------------------------------------------------------------------------


def _final(found: Collected, base_index: int | None) -> tuple[dict[str, Any], BaseRef | None]:
    """The statement as logged (with the base's entry index once it is known)."""
    base = found.base
    if base is not None and base.entry is None and base_index is not None:
        base = BaseRef(base.name, base.digest, base_index)
    predicate = found.predicate if base is None else bind(found.predicate, base)
    return statement_of(predicate, base), base


def _note(found: Collected) -> str | None:
    adapter = found.predicate.adapter
    if adapter is None or found.base is not None:
        return None
    wanted = adapter.base_model_name or "(adapter_config.json names none)"
    return (
        f"base model {wanted} is not in the log: not bound; collect the base first "
        "(annex collect model BASE_DIR --name NAME) or pass --base BASE_DIR"
    )


def _report(
    found: Collected,
    indices: tuple[int | None, int | None],
    *,
    dry_run: bool,
    json_out: bool,
) -> None:
    index, base_index = indices
    statement, base = _final(found, base_index)
    if json_out:
        print_json(
            {
                "index": index,
                "statement": statement,
                "base": None
                if base is None
                else {"name": base.name, "digest": base.digest, "index": base.entry},
                "baseAppended": found.base_predicate is not None and not dry_run,
                "note": _note(found),
            }
        )
        return
    if dry_run:
        stdout.print(json.dumps(statement, indent=2, ensure_ascii=False))
    for line in summary_lines(found.predicate, base, index, logged_base=found.base_predicate):
        stdout.print(line)
    note = _note(found)
    if note:
        stdout.print(note)


def summary_lines(
    predicate: ModelManifestPredicate,
    base: BaseRef | None,
    index: int | None,
    *,
    logged_base: ModelManifestPredicate | None,
) -> Iterator[str]:
    manifest = predicate.manifest
    yield f"{predicate.kind} {predicate.name}  ({predicate.path})"
    yield f"  files           {len(manifest.files)}, {_size(manifest.total_bytes)}"
    if manifest.ignored:
        yield f"  not hashed      {', '.join(manifest.ignored)}"
    yield f"  manifest        sha256:{manifest.digest}"
    yield f"  model signing   sha256:{manifest.model_signing_digest}"
    if predicate.parameters is not None:
        yield f"  parameters      {predicate.parameters:,}"
    if predicate.adapter is not None:
        a = predicate.adapter
        yield f"  adapter         {a.peft_type or '?'} rank {a.rank} alpha {a.alpha}"
        yield f"  base named      {a.base_model_name or '(none)'}"
    if base is not None:
        how = "logged now" if logged_base is not None and index is not None else "in the log"
        yield f"  bound to base   model:{base.name} sha256:{base.digest}"
        yield f"  base entry      {base.entry} ({how})"
    yield f"  entry           {index}" if index is not None else "  not logged (dry run)"


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    exponent = min(3, (n.bit_length() - 1) // 10)
    return f"{n / 1024**exponent:.1f} {('KiB', 'MiB', 'GiB')[exponent - 1]}"
