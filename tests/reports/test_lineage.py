"""The lineage graph (dataset -> run -> adapter, base -> adapter, OpenLineage jobs joined by path)
and the gate's lineage requirement met by a recorded training run."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from collectors.openlineage import parse_events, statement_of
from evidence.errors import InputError
from evidence.home import Home
from evidence.store import Store
from reports.gate import GateContext, directory_kind
from reports.lineage import build_graph
from reports.requirements import Lineage
from tests.collectors.lineage_data import Chain, event, log_chain
from tests.reports.gate_helpers import manifest_of


@pytest.fixture
def chain(store: Store, tmp_path: Path) -> Chain:
    return log_chain(store, tmp_path)


def test_the_graph_runs_from_dataset_through_the_run_to_the_adapter_and_its_base(
    store: Store, chain: Chain
) -> None:
    graph = build_graph(store)
    dataset, adapter = f"sha256:{chain.dataset_digest}", f"sha256:{chain.adapter_digest}"
    base, run = f"sha256:{chain.base_digest}", f"run:{chain.run}"
    assert graph.reach(dataset, up=False) == [run, adapter]
    assert set(graph.reach(adapter, up=True)) == {run, dataset, base}
    assert set(graph.reach(base, up=False)) == {adapter, run}
    around = graph.around(adapter)
    edges = {(e["from"], e["to"], e["relation"]): e["entries"] for e in around["edges"]}
    assert edges[(dataset, run, "input")] == [chain.run]
    assert edges[(base, run, "base-model")] == [chain.run]
    assert edges[(run, adapter, "produced")] == [chain.run]
    assert edges[(base, adapter, "adapter-of")] == [chain.adapter]  # the manifest's binding
    kinds = {n["id"]: n["kind"] for n in around["nodes"]}
    assert kinds == {dataset: "dataset", run: "training-run", adapter: "adapter", base: "model"}


def test_subjects_are_found_by_digest_prefix_name_or_run(store: Store, chain: Chain) -> None:
    graph = build_graph(store)
    assert graph.find(chain.dataset_digest[:10]) == f"sha256:{chain.dataset_digest}"
    assert graph.find(f"sha256:{chain.adapter_digest}") == f"sha256:{chain.adapter_digest}"
    assert graph.find("support-tickets") == f"sha256:{chain.dataset_digest}"
    assert graph.find("adapter:lora") == f"sha256:{chain.adapter_digest}"
    assert graph.find(f"run:{chain.run}") == f"run:{chain.run}"
    with pytest.raises(InputError, match="'nothing' is not in the lineage graph"):
        graph.find("nothing")


def test_openlineage_jobs_join_the_graph_by_file_path(store: Store, chain: Chain) -> None:
    path = str(chain.dataset_dir.resolve())
    events = [
        event("START", inputs=[{"namespace": "file", "name": path}]),
        event(
            "COMPLETE",
            inputs=[{"namespace": "file", "name": path}],
            outputs=[{"namespace": "s3://bucket", "name": "features"}],
        ),
    ]
    data = b"".join(json.dumps(e).encode() + b"\n" for e in events)
    parsed = parse_events(data, "ol.jsonl")
    first = store.append([statement_of(p, "ol.jsonl", "00" * 32) for p in parsed]).first_index
    graph = build_graph(store)
    dataset = f"sha256:{chain.dataset_digest}"
    job = graph.find("ol:my-namespace/my-job")
    features = graph.find("ol:s3://bucket/features")
    assert graph.nodes[dataset].names == ["dataset:support-tickets", f"ol:file/{path}"]
    assert set(graph.reach(dataset, up=False)) == {
        f"run:{chain.run}",
        graph.find("lora"),
        job,
        features,
    }
    edges = graph.around(job)["edges"]
    assert {
        "from": dataset,
        "to": job,
        "relation": "ol-input",
        "entries": [first, first + 1],
    } in edges


def test_an_openlineage_dataset_logged_before_the_dataset_stays_apart(
    store: Store, tmp_path: Path
) -> None:
    path = str((tmp_path / "tickets").resolve())
    parsed = parse_events(
        json.dumps(event(inputs=[{"namespace": "file", "name": path}])).encode(), "e"
    )
    store.append([statement_of(parsed[0], "e", "00" * 32)])
    chain = log_chain(store, tmp_path)  # the dataset at that path is collected afterwards
    graph = build_graph(store)
    assert graph.find(f"ol:file/{path}") != f"sha256:{chain.dataset_digest}"


# -- the gate's lineage requirement ---------------------------------------------------------------


def judge(home: Home, directory: Path) -> tuple[bool, str, tuple[int, ...]]:
    with home.open_store() as store:
        context = GateContext(
            directory=directory,
            kind=directory_kind(directory),
            manifest=manifest_of(directory),
            store=store,
            trust=home.trust(),
            now=datetime.now(UTC),
            tree_size=store.size(),
        )
        outcome = Lineage().evaluate(context)
    return outcome.passed, outcome.reason, outcome.entries


def test_a_recorded_training_run_satisfies_the_lineage_requirement(
    home: Home, tmp_path: Path
) -> None:
    with home.open_store(write=True) as store:
        chain = log_chain(store, tmp_path)
    passed, reason, entries = judge(home, chain.adapter_dir)
    assert passed, reason
    assert entries == (chain.run,)
    log_key = home.trust().trust.keys[0]
    signer = f"signed by {log_key.name} (log key {log_key.keyid[:16]})"
    assert reason == f"training run entry {chain.run} ({signer}): datasets dataset:support-tickets"


def test_a_run_is_not_lineage_of_its_base_model(home: Home, tmp_path: Path) -> None:
    with home.open_store(write=True) as store:
        log_chain(store, tmp_path)
    passed, reason, _ = judge(home, tmp_path / "base")  # the run names the base as a subject
    assert not passed
    assert reason.startswith("no dataset-lineage evidence for model sha256:")
    assert "annex collect training-run" in reason
