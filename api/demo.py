"""`annex demo`: a signed store built from example evidence, a proof exported, all verified.

The example statements describe one made-up deployment (a GPU node, a base model, a LoRA
adapter, a dataset, an eval run, an inference-log batch and oversight events). Their shapes
are illustrative until the collectors that produce each kind exist; the log does not care.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evidence.dsse import Envelope
from evidence.errors import ConfigError
from evidence.home import Home
from evidence.note import TlogProof
from evidence.store import Store
from evidence.verify import verify_entry, verify_log
from schemas.statement import STATEMENT_TYPE, predicate_type

MARKER = ".annex-demo"
ORIGIN = "demo.annex.invalid/log"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _statement(kind: str, name: str, observed: str, **predicate: Any) -> dict[str, Any]:
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {"sha256": _digest(name + kind)}}],
        "predicateType": predicate_type(kind),
        "predicate": {"observedAt": observed, **predicate},
    }


def example_batches() -> list[list[dict[str, Any]]]:
    """Three sweeps of evidence, as collectors on one GPU node would log them."""
    sweep1 = [
        _statement(
            "gpu-inventory",
            "host:gpu-node-01",
            "2026-11-02T08:00:00Z",
            selfReported=True,
            driverVersion="580.65.06",
            devices=[{"index": 0, "name": "NVIDIA H100 80GB HBM3", "memoryTotalMiB": 81559}],
        ),
        _statement(
            "model-manifest",
            "model:llama-3.1-8b-instruct",
            "2026-11-02T08:01:10Z",
            files=4,
            totalBytes=16_060_522_496,
        ),
        _statement(
            "adapter",
            "adapter:cv-screening-lora-r16",
            "2026-11-02T08:01:40Z",
            rank=16,
            alpha=32,
            baseModel="model:llama-3.1-8b-instruct",
        ),
        _statement(
            "dataset",
            "dataset:cv-screening-train-2026q3",
            "2026-11-02T08:02:05Z",
            records=48_210,
            legalBasis="GDPR Art 6(1)(b)",
        ),
    ]
    sweep2 = [
        _statement(
            "eval-run",
            "eval:cv-screening-mc-2026-11-02",
            "2026-11-02T09:30:00Z",
            task="cv-screening-mc",
            metrics={"acc": 0.87, "acc_stderr": 0.011},
        ),
        _statement(
            "inference-batch",
            "inference:gateway-2026-11-02",
            "2026-11-02T23:59:59Z",
            requests=12_877,
            errors=14,
        ),
    ]
    sweep3 = [
        _statement(
            "oversight-event",
            f"oversight:review-{n}",
            f"2026-11-03T10:{n:02d}:00Z",
            action=action,
            reviewer="pseudonym:7f3a",
        )
        for n, action in enumerate(["approve", "override", "approve"])
    ]
    return [sweep1, sweep2, sweep3]


def _prepare(path: Path) -> None:
    if path.exists() and any(path.iterdir()):
        if not (path / MARKER).exists():
            raise ConfigError(f"{path} exists and is not an earlier demo: pass --home NEWDIR")
        shutil.rmtree(path)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    (path / MARKER).write_text("made by `annex demo`; safe to delete\n")


def run(path: Path, say: Callable[[str], None] | None) -> dict[str, Any]:
    """Builds the demo store under `path` and returns what was done."""
    tell = say or (lambda _msg: None)
    _prepare(path)
    home = Home(path)
    home.init(ORIGIN)
    tell(f"created a log at {path} (origin {ORIGIN}) with its first key")
    batches = example_batches()
    with home.open_store(write=True) as store:
        for n, batch in enumerate(batches[:2], start=1):
            result = store.append(batch)
            tell(f"sweep {n}: appended entries {result.first_index}..{result.indices[-1]}")
    old, new = home.rotate(reason="demo: scheduled rotation")
    tell(f"rotated the log key: {old.keyid[:16]} retired, {new.keyid[:16]} active")
    with home.open_store(write=True) as store:
        result = store.append(batches[2])
        tell(f"sweep 3: appended entries {result.first_index}..{result.indices[-1]}")
        exported = _export(store, path / "exports", index=2)
    tell(f"exported entry 2 with its proof to {exported.envelope_path.parent}")
    trust = home.trust()
    report = verify_entry(exported.envelope, exported.proof, trust)
    tell(f"offline check of entry {report.index}: ok (tree size {report.tree_size})")
    with home.open_store() as store:
        log = verify_log(store, trust)
    tell(f"full verification: {log.size} entries, {log.signatures} signatures, ok")
    tell("")
    tell("try next:")
    tell(f"  annex --help; annex log checkpoint --home {path}")
    tell(
        f"  annex verify-entry {exported.envelope_path} {exported.proof_path} "
        f"--trust {path / 'trust.json'}"
    )
    return {
        "home": str(path),
        "origin": ORIGIN,
        "entries": log.size,
        "signatures_checked": log.signatures,
        "checkpoints_checked": log.checkpoints,
        "exported_envelope": str(exported.envelope_path),
        "exported_proof": str(exported.proof_path),
        "checkpoint": log.latest_checkpoint,
    }


@dataclass(frozen=True)
class Exported:
    """One entry as an auditor would receive it: its envelope and its tlog-proof, on disk."""

    envelope: Envelope
    proof: TlogProof
    envelope_path: Path
    proof_path: Path


def _export(store: Store, directory: Path, *, index: int) -> Exported:
    directory.mkdir(exist_ok=True)
    out = Exported(
        envelope=store.get(index).envelope,
        proof=store.inclusion_proof(index),
        envelope_path=directory / f"entry-{index}.dsse.json",
        proof_path=directory / f"entry-{index}.tlog-proof",
    )
    out.envelope_path.write_text(json.dumps(out.envelope.to_dict(), indent=2) + "\n")
    out.proof_path.write_text(out.proof.format())
    return out
