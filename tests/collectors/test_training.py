"""Training runs: references resolved in the log, 6ND compute, the one-third test, energy."""

from __future__ import annotations

from pathlib import Path

import pytest

from collectors.energy import Snapshot, energy_between, load_snapshot, read_counters
from collectors.nvml_fake import FakeGpu, FakeNvml, fleet, without_library
from collectors.training import RunFacts, resolve_dataset, resolve_manifest, training_run
from evidence.errors import InputError
from evidence.store import Store
from schemas.statement import Statement
from schemas.training_run import TRAINING_RUN, estimate_compute
from tests.collectors.lineage_data import log_chain


def test_a_run_names_its_output_first_then_datasets_and_base(store: Store, tmp_path: Path) -> None:
    chain = log_chain(store, tmp_path, gpu_hours=1.5, hyperparameters={"lr": 0.0002})
    statement = store.get(chain.run).statement
    Statement.model_validate(statement)
    assert statement["predicateType"] == TRAINING_RUN
    assert [s["name"] for s in statement["subject"]] == [
        "adapter:lora",
        "dataset:support-tickets",
        "model:annex-demo-base",
    ]
    assert statement["subject"][0]["digest"] == {"sha256": chain.adapter_digest}
    predicate = statement["predicate"]
    assert predicate["output"] == {
        "name": "adapter:lora",
        "digest": {"sha256": chain.adapter_digest},
        "entry": chain.adapter,
        "kind": "adapter",
    }
    assert predicate["datasets"][0]["entry"] == chain.dataset
    assert predicate["baseModel"]["entry"] == chain.base
    assert predicate["hyperparameters"] == {"lr": 0.0002}
    assert predicate["gpuHours"] == 1.5
    assert predicate["energyJoules"] is None and predicate["energySource"] == "unknown"
    base_parameters = store.get(chain.base).statement["predicate"]["parameters"]
    assert predicate["compute"]["flops"] == 6 * base_parameters * 1_000_000


def test_compute_ratio_and_the_one_third_test() -> None:
    # An 8B model on 100M tokens: about 5e18 FLOP, far below a third of Llama-3-8B's ~7.2e23.
    lora = estimate_compute(8_000_000_000, 100_000_000, 7.2e23)
    assert lora.flops == pytest.approx(4.8e18)
    assert lora.ratio == pytest.approx(4.8e18 / 7.2e23)
    assert not lora.threshold_one_third and lora.threshold_basis == "base-compute"
    heavy = estimate_compute(8_000_000_000, 6_000_000_000_000, 7.2e23)  # 2.88e23 > 2.4e23
    assert heavy.threshold_one_third
    unknown = estimate_compute(1000, 1000, None)
    assert unknown.ratio is None and unknown.threshold_basis == "gpai-fallback"
    assert unknown.threshold_flops == pytest.approx(1e23 / 3)
    assert "unknown" in unknown.note


def test_unknown_references_are_refused_clearly(store: Store, tmp_path: Path) -> None:
    log_chain(store, tmp_path)
    with pytest.raises(InputError, match="dataset 'nope' is not in the log: collect it first"):
        resolve_dataset(store, "nope")
    with pytest.raises(InputError, match=r"dataset 'sha256:ffffffffffff' is not in the log"):
        resolve_dataset(store, "sha256:ffffffffffff")
    with pytest.raises(InputError, match="--base model 'lora' is not in the log"):
        resolve_manifest(store, "lora", kinds=("model",), what="--base model")  # an adapter
    other = tmp_path / "unlogged"
    other.mkdir()
    (other / "weights.bin").write_bytes(b"x")
    with pytest.raises(InputError, match=r"--output '.*unlogged \(sha256:.*\)' is not in the log"):
        resolve_manifest(store, str(other), kinds=("model", "adapter"), what="--output")


def test_a_digest_prefix_resolves(store: Store, tmp_path: Path) -> None:
    chain = log_chain(store, tmp_path)
    found = resolve_dataset(store, chain.dataset_digest[:12])
    assert found.digest == {"sha256": chain.dataset_digest}
    base = resolve_manifest(store, f"sha256:{chain.base_digest}", kinds=("model",), what="b")
    assert base.entry == chain.base


def test_base_and_output_must_differ_and_n_must_be_known(store: Store, tmp_path: Path) -> None:
    log_chain(store, tmp_path)
    data = [resolve_dataset(store, "support-tickets")]
    base = resolve_manifest(store, "annex-demo-base", kinds=("model",), what="b")
    with pytest.raises(InputError, match="same manifest"):
        training_run(data, base, base, RunFacts(tokens=1))
    lora = resolve_manifest(store, "lora", kinds=("adapter",), what="o")
    no_count = type(base)(base.kind, base.name, base.digest, base.entry, None)
    with pytest.raises(InputError, match="no parameter count in its manifest: give --parameters"):
        training_run(data, no_count, lora, RunFacts(tokens=1))
    given = training_run(data, no_count, lora, RunFacts(tokens=10, parameters=7))
    assert given["predicate"]["compute"]["flops"] == 420


# -- energy from NVML counters -------------------------------------------------------------------


def gpu(uuid: str, millijoules: int) -> FakeGpu:
    return FakeGpu(
        name="NVIDIA H100 80GB HBM3",
        uuid=uuid,
        serial="1",
        pci_bus_id="00000000:01:00.0",
        board_part_number="x",
        vbios_version="x",
        memory_total=80 << 30,
        compute_capability=(9, 0),
        total_energy=millijoules,
    )


def test_energy_is_the_increase_of_the_counters_between_two_snapshots() -> None:
    before = read_counters(FakeNvml([gpu("GPU-a", 1_000_000), gpu("GPU-b", 5_000)]))
    after = read_counters(FakeNvml([gpu("GPU-a", 4_000_000), gpu("GPU-b", 6_000)]))
    measured = energy_between(before, after)
    assert measured.joules == pytest.approx(3001.0)
    assert "2 GPU(s)" in measured.note


def test_energy_is_unknown_without_nvml_or_when_a_counter_goes_down() -> None:
    none = read_counters(without_library())
    assert none.counters == {} and "NVML library not found" in (none.reason or "")
    assert energy_between(none, none).joules is None
    before = Snapshot({"GPU-a": 10}, "2026-01-01T00:00:00Z")
    after = Snapshot({"GPU-a": 5}, "2026-01-02T00:00:00Z")
    dropped = energy_between(before, after)
    assert dropped.joules is None and "went down" in dropped.note


def test_gpus_without_a_counter_are_left_out_and_said_so() -> None:
    snapshot = read_counters(fleet())
    assert len(snapshot.counters) == 2
    assert "no energy counter on GPU 2" in (snapshot.reason or "")


def test_a_snapshot_file_round_trips_and_bad_ones_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "start.json"
    path.write_text('{"counters": {"GPU-a": 5}, "takenAt": "2026-01-01T00:00:00Z"}')
    assert load_snapshot(path).counters == {"GPU-a": 5}
    path.write_text('{"counters": {"GPU-a": -1}, "takenAt": "x"}')
    with pytest.raises(InputError, match=r"field counters.GPU-a"):
        load_snapshot(path)
    path.write_text("[]")
    with pytest.raises(InputError, match="an energy snapshot has `counters`"):
        load_snapshot(path)


def test_an_adapter_bound_to_another_base_is_refused(store: Store, tmp_path: Path) -> None:
    from collectors.models import collect_model
    from tests.collectors.model_dirs import write_base_model

    chain = log_chain(store, tmp_path)
    other = collect_model(write_base_model(tmp_path / "other-base", seed=11), name="other-base")
    store.append([other])
    data = [resolve_dataset(store, chain.dataset_digest)]
    lora = resolve_manifest(store, "lora", kinds=("adapter",), what="o")
    wrong = resolve_manifest(store, "other-base", kinds=("model",), what="b")
    with pytest.raises(
        InputError, match=r"--output adapter lora \(entry \d+\) is bound to the base"
    ):
        training_run(data, wrong, lora, RunFacts(tokens=1))
