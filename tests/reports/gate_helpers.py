"""Helpers shared by the gate's report and CLI tests."""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from collectors.hashing import build_manifest
from evidence.entry import rfc3339
from evidence.home import Home
from reports.gate import directory_kind
from schemas.gpu import GPU_INVENTORY
from schemas.model import MODEL_RELEASE, Manifest, ModelReleasePredicate
from schemas.policy import EVAL_RUN
from schemas.statement import STATEMENT_TYPE


def manifest_of(directory: Path) -> Manifest:
    return build_manifest(directory, cache=None, full=True)


def model_signing_key(home: Home) -> str:
    """The home's active model-signing key (made when there is none); returns its keyid."""
    for key in home.trust().trust.keys:
        if key.role == "model-signing" and key.status == "active":
            return key.keyid
    return home.create_model_signing_key("release-signing").keyid


NOW = datetime.now(UTC)


def ago(days: float) -> str:
    return rfc3339(NOW - timedelta(days=days))


def statement(predicate_type: str, digest: str, predicate: dict[str, Any]) -> dict[str, Any]:
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": "model:demo", "digest": {"sha256": digest}}],
        "predicateType": predicate_type,
        "predicate": predicate,
    }


def append(home: Home, *statements: dict[str, Any]) -> int:
    """Appends statements as one batch; returns the index of the first."""
    with home.open_store(write=True) as store:
        return store.append(list(statements)).first_index


def release(
    home: Home,
    directory: Path,
    keyid: str,
    *,
    name: str | None = None,
    signed_by: str | None = None,
) -> int:
    """A release of the directory as it is now, as `annex sign model` records it: naming
    `keyid`, signed by model-signing key `signed_by` (default: the key it names)."""
    manifest = manifest_of(directory)
    kind = directory_kind(directory)
    label = name or directory.name
    predicate = ModelReleasePredicate(
        observedAt=ago(0),
        name=label,
        kind=kind,
        manifest=manifest,
        approvedBy="release-manager",
        signingKeyid=keyid,
    ).to_predicate()
    signed = statement(MODEL_RELEASE, manifest.digest, predicate)
    signed["subject"][0]["name"] = f"{kind}:{label}"
    return home.append_release(signed_by or keyid, signed)


def digest(directory: Path) -> str:
    return manifest_of(directory).digest


def eval_run(directory: Path, results: dict[str, Any], *, days: float = 1) -> dict[str, Any]:
    predicate = {"observedAt": ago(days), "results": results, "lm_eval_version": "0.4.9"}
    return statement(EVAL_RUN, digest(directory), predicate)


def inventory(site: str, *, days: float, status: str = "ok", gpus: int = 1) -> dict[str, Any]:
    predicate = {
        "observedAt": ago(days),
        "status": status,
        "reason": None if status == "ok" else "no NVIDIA driver loaded",
        "site": {"site": site, "country": "DE", "operator": "ACME"},
        "devices": [{"index": i, "name": "NVIDIA H100"} for i in range(gpus)],
    }
    host = hashlib.sha256(site.encode()).hexdigest()
    subject = statement(GPU_INVENTORY, host, predicate)
    subject["subject"][0]["name"] = f"host:{site}-node-1"
    return subject


def change_one_byte(directory: Path) -> None:
    """Flips the last bit of model.safetensors, keeping its size and mtime (as an attacker
    would: the gate re-reads every byte anyway)."""
    weights = directory / "model.safetensors"
    data = bytearray(weights.read_bytes())
    stat = weights.stat()
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
