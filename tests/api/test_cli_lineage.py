"""`annex collect dataset | training-run | lineage | energy-counters` and `annex lineage` as a
user runs them: what is logged, what is recognised as already logged, and every refusal
(exit 2, nothing appended)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pynvml
import pytest

from collectors.nvml_fake import FakeNvml
from evidence.home import Home
from schemas.dataset import DATASET
from schemas.lineage import OPENLINEAGE_RUN
from schemas.training_run import TRAINING_RUN
from tests.api.conftest import Annex, Template, log_size
from tests.collectors.lineage_data import complete_event, event, write_dataset
from tests.collectors.model_dirs import write_adapter, write_base_model
from tests.collectors.test_training import gpu

AnnexAt = Callable[[Path], Annex]


def logged(home: Path, index: int) -> dict[str, object]:
    with Home(home).open_store() as store:
        statement: dict[str, object] = store.get(index).statement
    return statement


@pytest.fixture
def annex(fresh: Path, annex_at: AnnexAt) -> Annex:
    """`annex` on a private copy of the template log (these commands append)."""
    return annex_at(fresh)


# -- collect dataset ------------------------------------------------------------------------------


def test_a_dataset_is_logged_once_and_recognised_the_second_time(
    annex: Annex, fresh: Path, template: Template, tmp_path: Path
) -> None:
    directory = write_dataset(tmp_path / "tickets")
    first = annex.fast("collect", "dataset", directory)
    assert first.code == 0, first.err
    assert "dataset support-tickets" in first.out
    assert f"entry           {template.size}" in first.out
    assert "train.jsonl  (jsonl, 2 records, 3 columns)" in first.out
    assert "not declared    description" in first.out
    assert logged(fresh, template.size)["predicateType"] == DATASET
    second = annex("collect", "dataset", directory, "--json")
    assert second.code == 0, second.err
    assert second.json()["alreadyLogged"] is True
    assert second.json()["index"] == template.size
    assert log_size(fresh) == template.size + 1
    text = annex.fast("collect", "dataset", directory)
    assert f"already logged at entry {template.size}: not appended again" in text.out


def test_a_dry_run_prints_and_logs_nothing(
    annex: Annex, fresh: Path, template: Template, tmp_path: Path
) -> None:
    done = annex.fast("collect", "dataset", write_dataset(tmp_path / "d"), "--dry-run")
    assert done.code == 0, done.err
    assert '"predicateType": "https://annex.dev/predicates/dataset/v1"' in done.out
    assert log_size(fresh) == template.size


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("train.jsonl", b'{"a": 1}\n{oops}\n', "train.jsonl:2: not JSON"),
        ("train.jsonl", b'{"a": "\xff"}\n', "train.jsonl:1: byte 8 of the line is not UTF-8"),
        ("eval.csv", b"a,b\n1\n", "eval.csv:2: 1 fields, the header has 2"),
        ("weights.pkl", b"\x80\x04", "weights.pkl: unknown dataset format"),
        ("datasheet.yaml", b"personal_data: maybe\n", "datasheet.yaml: field personal_data"),
    ],
)
def test_bad_input_exits_2_names_file_and_line_and_appends_nothing(
    annex: Annex,
    fresh: Path,
    template: Template,
    tmp_path: Path,
    name: str,
    content: bytes,
    message: str,
) -> None:
    directory = write_dataset(tmp_path / "d")
    (directory / name).write_bytes(content)
    done = annex.fast("collect", "dataset", directory)
    assert done.code == 2
    assert message in done.err
    assert log_size(fresh) == template.size


# -- collect training-run, and the gate ----------------------------------------------------------


@pytest.fixture
def logged_inputs(annex: Annex, tmp_path: Path) -> tuple[Path, Path, Path]:
    """A base model, its adapter and a dataset, collected with the CLI."""
    base, lora = write_base_model(tmp_path / "base"), write_adapter(tmp_path / "lora")
    data = write_dataset(tmp_path / "tickets")
    for args in (("model", base, "--name", "annex-demo-base"), ("model", lora), ("dataset", data)):
        done = annex.fast("collect", *args)
        assert done.code == 0, done.err
    return base, lora, data


def test_a_training_run_is_logged_and_meets_the_gates_lineage_requirement(
    annex: Annex, fresh: Path, logged_inputs: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    _, lora, _ = logged_inputs
    hyper = tmp_path / "hyper.yaml"
    hyper.write_text("learning_rate: 0.0002\nlora_r: 8\nepochs: 3\n")
    args = ["--dataset", "support-tickets", "--base", "annex-demo-base", "--output", str(lora)]
    args += ["--tokens", "2000000", "--gpu-hours", "0.25", "--energy-joules", "900000"]
    args += ["--hyperparameters", str(hyper), "--base-compute", "1e12"]
    done = annex.fast("collect", "training-run", *args, "--json")
    assert done.code == 0, done.err
    out = done.json()
    statement = logged(fresh, out["index"])
    assert statement == out["statement"]
    assert statement["predicateType"] == TRAINING_RUN
    predicate = out["statement"]["predicate"]
    assert predicate["hyperparameters"] == {"learning_rate": 0.0002, "lora_r": 8, "epochs": 3}
    assert (predicate["energyJoules"], predicate["energySource"]) == (900000, "given")
    compute = predicate["compute"]
    assert compute["ratio"] == pytest.approx(compute["flops"] / 1e12)
    assert compute["thresholdOneThird"] is (compute["flops"] > 1e12 / 3)
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\nrequire:\n  lineage: {}\n")
    gate = annex.fast("gate", lora, "--policy", policy, "--json")
    assert gate.code == 0, gate.out
    assert gate.json()["requirements"]["entries"] == [out["index"]]


def test_a_training_run_naming_an_unlogged_dataset_is_refused(
    annex: Annex, fresh: Path, logged_inputs: tuple[Path, Path, Path]
) -> None:
    size = log_size(fresh)
    args = ["--dataset", "nope", "--base", "annex-demo-base", "--output", "lora", "--tokens", "1"]
    done = annex.fast("collect", "training-run", *args)
    assert done.code == 2
    assert "dataset 'nope' is not in the log: collect it first" in done.err
    both = ["--energy-joules", "1", "--energy-from-nvml", "x.json"]
    done = annex.fast("collect", "training-run", *args, *both)
    assert done.code == 2 and "not both" in done.err
    assert log_size(fresh) == size


def test_energy_from_nvml_counters_before_and_after(
    annex: Annex,
    logged_inputs: tuple[Path, Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, call in FakeNvml([gpu("GPU-a", 1_000_000)]).calls().items():
        monkeypatch.setattr(pynvml, name, call)
    start = annex.fast("collect", "energy-counters")
    assert start.code == 0, start.err
    (tmp_path / "start.json").write_text(start.out)
    for name, call in FakeNvml([gpu("GPU-a", 7_000_000)]).calls().items():
        monkeypatch.setattr(pynvml, name, call)
    args = ["--dataset", "support-tickets", "--base", "annex-demo-base", "--output", "lora"]
    done = annex.fast(
        "collect",
        "training-run",
        *args,
        "--tokens",
        "5",
        "--energy-from-nvml",
        tmp_path / "start.json",
        "--json",
    )
    assert done.code == 0, done.err
    predicate = done.json()["statement"]["predicate"]
    assert (predicate["energyJoules"], predicate["energySource"]) == (6000.0, "nvml")


# -- collect lineage, annex lineage ---------------------------------------------------------------


def test_openlineage_events_are_logged_once_from_a_file_and_from_stdin(
    annex: Annex, fresh: Path, template: Template, tmp_path: Path
) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text(json.dumps(event()) + "\n" + json.dumps(complete_event()) + "\n")
    done = annex.fast("collect", "lineage", events, "--json")
    assert done.code == 0, done.err
    assert done.json()["appended"] == [template.size, template.size + 1]
    assert logged(fresh, template.size)["predicateType"] == OPENLINEAGE_RUN
    again = annex("collect", "lineage", "-", stdin=events.read_text())
    assert again.code == 0, again.err
    assert f"already logged at entry {template.size}, {template.size + 1}" in again.out
    assert log_size(fresh) == template.size + 2
    one_more = annex("collect", "lineage", "-", "--json", stdin=json.dumps(event("FAIL")))
    assert one_more.json()["appended"] == [template.size + 2]


def test_a_bad_event_in_a_batch_appends_nothing(
    annex: Annex, fresh: Path, template: Template, tmp_path: Path
) -> None:
    bad = event()
    del bad["run"]["runId"]
    events = tmp_path / "events.jsonl"
    events.write_text(json.dumps(complete_event()) + "\n" + json.dumps(bad) + "\n")
    done = annex.fast("collect", "lineage", events)
    assert done.code == 2
    assert "events.jsonl:2: field run.runId: Field required" in done.err
    events.write_bytes(json.dumps(complete_event()).encode() + b"\n{\xfe}\n")
    done = annex.fast("collect", "lineage", events)
    assert done.code == 2 and "events.jsonl:2: byte 0xfe is not UTF-8" in done.err
    assert log_size(fresh) == template.size


def test_annex_lineage_prints_upstream_and_downstream(
    annex: Annex, logged_inputs: tuple[Path, Path, Path]
) -> None:
    args = ["--dataset", "support-tickets", "--base", "annex-demo-base", "--output", "lora"]
    run = annex.fast("collect", "training-run", *args, "--tokens", "5", "--json").json()["index"]
    tree = annex("lineage", "lora")
    assert tree.code == 0, tree.err
    assert "upstream" in tree.out and "downstream" in tree.out
    assert f"produced: training-run@{run}" in tree.out
    assert "input: dataset:support-tickets  sha256:" in tree.out
    assert "adapter-of: model:annex-demo-base" in tree.out
    down = annex.fast("lineage", "support-tickets", "--json").json()
    assert down["downstream"][0] == f"run:{run}"
    assert {e["relation"] for e in down["edges"]} >= {"input", "produced"}
    missing = annex.fast("lineage", "no-such-thing")
    assert missing.code == 2 and "is not in the lineage graph" in missing.err


def test_a_changed_datasheet_outside_the_data_is_a_new_snapshot(
    annex: Annex, fresh: Path, template: Template, tmp_path: Path
) -> None:
    data = tmp_path / "rows.csv"
    data.write_text("a,b\n1,2\n")
    sheet = tmp_path / "sheet.yaml"
    sheet.write_text("licence: MIT\n")
    assert annex.fast("collect", "dataset", data, "--datasheet", sheet).code == 0
    assert annex.fast("collect", "dataset", data, "--datasheet", sheet).code == 0
    assert log_size(fresh) == template.size + 1  # recognised
    sheet.write_text("licence: CC-BY-4.0\n")
    done = annex.fast("collect", "dataset", data, "--datasheet", sheet, "--json")
    assert done.code == 0, done.err
    assert done.json()["alreadyLogged"] is False
    assert log_size(fresh) == template.size + 2
