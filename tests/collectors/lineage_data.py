"""Data for the lineage tests: dataset directories, OpenLineage events, a logged chain.

The OpenLineage events follow the spec's own example shape (OpenLineage.json 2-0-2 and its
getting-started START/COMPLETE pair): eventType, eventTime with an offset, run.runId,
job.namespace/name, inputs/outputs with namespace/name/facets, producer, schemaURL.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from collectors.datasets import collect_dataset
from collectors.models import BaseRef, collect_model
from collectors.training import RunFacts, resolve_dataset, resolve_manifest, training_run
from evidence.store import Store
from tests.collectors.model_dirs import write_adapter, write_base_model

PRODUCER = "https://github.com/OpenLineage/OpenLineage/blob/v1-0-0/client"
SCHEMA_URL = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
RUN_ID = "d46e465b-d358-4d32-83d4-df660ff614dd"


def write_dataset(directory: Path, *, datasheet: str | None = None) -> Path:
    """A dataset of JSON Lines, CSV and Parquet files with a datasheet."""
    directory.mkdir(parents=True, exist_ok=True)
    rows = [{"id": 1, "text": "hello", "label": True}, {"id": 2, "text": "bye", "label": None}]
    (directory / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (directory / "eval.csv").write_text('id,text,score\n1,"a, b",0.5\n2,c,1\n3,,2\n')
    table = pa.table({"id": pa.array([1, 2, 3], pa.int64()), "text": ["x", "y", "z"]})
    pq.write_table(table, directory / "test.parquet")
    (directory / "datasheet.yaml").write_text(
        datasheet
        if datasheet is not None
        else (
            "name: support-tickets\n"
            "source: exported from the helpdesk, 2026-10\n"
            "license: CC-BY-4.0\n"
            "legal_basis: legitimate-interests\n"
            "personal_data: true\n"
            "special_categories: [health]\n"
        )
    )
    return directory


def event(
    event_type: str = "START",
    *,
    run_id: str = RUN_ID,
    inputs: list[dict[str, Any]] | None = None,
    outputs: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """An OpenLineage RunEvent shaped as the spec's examples."""
    body: dict[str, Any] = {
        "eventType": event_type,
        "eventTime": "2020-12-28T19:52:00.001+10:00",
        "run": {"runId": run_id},
        "job": {"namespace": "my-namespace", "name": "my-job"},
        "inputs": inputs
        if inputs is not None
        else [{"namespace": "my-namespace", "name": "my-input"}],
        "producer": PRODUCER,
        "schemaURL": SCHEMA_URL,
    }
    if outputs is not None:
        body["outputs"] = outputs
    return {**body, **extra}


def complete_event(**kwargs: Any) -> dict[str, Any]:
    """The COMPLETE event of the getting-started example, with a schema facet on its output."""
    facet = {
        "_producer": PRODUCER,
        "_schemaURL": "https://openlineage.io/spec/facets/1-1-1/SchemaDatasetFacet.json",
        "fields": [{"name": "a", "type": "VARCHAR"}, {"name": "b", "type": "VARCHAR"}],
    }
    outputs = [{"namespace": "my-namespace", "name": "my-output", "facets": {"schema": facet}}]
    return event("COMPLETE", outputs=outputs, **kwargs)


@dataclass(frozen=True)
class Chain:
    """dataset -> training run -> adapter, the adapter bound to its base model; entry indices."""

    base: int
    adapter: int
    dataset: int
    run: int
    base_digest: str
    adapter_digest: str
    dataset_digest: str
    dataset_dir: Path
    adapter_dir: Path


def log_chain(store: Store, tmp: Path, **facts: Any) -> Chain:
    """Collects a base model, its adapter (bound), a dataset, and the run that made the adapter."""
    base_dir, adapter_dir = write_base_model(tmp / "base"), write_adapter(tmp / "lora")
    dataset_dir = write_dataset(tmp / "tickets")
    base_statement = collect_model(base_dir, name="annex-demo-base")
    base = store.append([base_statement]).first_index
    base_digest = base_statement["subject"][0]["digest"]["sha256"]
    adapter_statement = collect_model(
        adapter_dir, base=BaseRef("annex-demo-base", base_digest, base)
    )
    adapter = store.append([adapter_statement]).first_index
    dataset_statement = collect_dataset(dataset_dir)
    dataset = store.append([dataset_statement]).first_index
    run_statement = training_run(
        [resolve_dataset(store, "support-tickets")],
        resolve_manifest(store, "annex-demo-base", kinds=("model",), what="base"),
        resolve_manifest(store, str(adapter_dir), kinds=("model", "adapter"), what="output"),
        RunFacts(**{"tokens": 1_000_000, **facts}),
    )
    run = store.append([run_statement]).first_index
    return Chain(
        base,
        adapter,
        dataset,
        run,
        base_digest,
        adapter_statement["subject"][0]["digest"]["sha256"],
        dataset_statement["subject"][0]["digest"]["sha256"],
        dataset_dir,
        adapter_dir,
    )
