"""Eval runs through lm-eval's hf backend on a tiny local model: the record, and refusals."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from collectors.evals import (
    BUNDLED_TASKS,
    EvalOutcome,
    bundled_tasks,
    import_results,
    model_args,
    quiet_subprocess_stderr,
    read_results,
    run_eval,
    torch_of_env_info,
)
from collectors.hashing import build_manifest
from evidence.errors import CollectorError, ConfigError, InputError
from schemas.eval_run import EVAL_RUN
from schemas.policy import EvalRunContract
from schemas.statement import Statement
from tests.collectors.tiny_lm import build_tiny_adapter, build_tiny_lm, lm_eval_results

pytest.importorskip("lm_eval", reason="the eval extra is not installed")
pytestmark = pytest.mark.eval


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_lm(tmp_path_factory.mktemp("tiny") / "tiny-gpt2")


@pytest.fixture(scope="session")
def outcome(tiny_lm: Path) -> EvalOutcome:
    return run_eval(tiny_lm, tasks=["annex_mc"])


def test_a_run_records_real_metrics_bound_to_the_manifest(
    outcome: EvalOutcome, tiny_lm: Path
) -> None:
    statement = Statement.model_validate(outcome.statement)
    assert statement.predicate_type == EVAL_RUN
    digest = build_manifest(tiny_lm).digest
    assert statement.subject[0].digest == {"sha256": digest}
    predicate = outcome.statement["predicate"]
    assert predicate["origin"] == "run"
    assert predicate["model"]["manifestDigest"] == digest
    acc = predicate["results"]["annex_mc"]["acc,none"]
    assert 0.0 <= acc <= 1.0
    assert isinstance(predicate["results"]["annex_mc"]["acc_stderr,none"], float)
    assert EvalRunContract.model_validate(predicate).metric("annex_mc", "acc,none") == acc
    assert all(predicate["versions"][k] for k in ("lmEval", "transformers", "torch"))
    assert predicate["device"] == "cpu" and predicate["dtype"] == "torch.float32"
    assert predicate["seeds"]["random_seed"] == 0
    assert predicate["gpu"]["status"] != "ok" or predicate["gpu"]["devices"]
    assert predicate["durationSeconds"] > 0


def test_tasks_are_recorded_with_config_and_data_digests(outcome: EvalOutcome) -> None:
    (task,) = outcome.statement["predicate"]["tasks"]
    data = BUNDLED_TASKS / "annex_mc" / "annex_mc.jsonl"
    assert task["name"] == "annex_mc" and task["version"] == "1.0"
    assert task["dataFiles"] == [
        {"path": "annex_mc.jsonl", "sha256": hashlib.sha256(data.read_bytes()).hexdigest()}
    ]
    assert len(task["configDigest"]) == 64


def test_the_config_digest_does_not_depend_on_the_temporary_folder(
    outcome: EvalOutcome, tiny_lm: Path
) -> None:
    again = run_eval(tiny_lm, tasks=["annex_mc"], limit=2)
    first = outcome.statement["predicate"]["tasks"][0]["configDigest"]
    assert again.statement["predicate"]["tasks"][0]["configDigest"] == first
    assert again.statement["predicate"]["limit"] == 2


def test_samples_are_kept_and_digested(outcome: EvalOutcome) -> None:
    predicate = outcome.statement["predicate"]
    assert predicate["samplesDigest"] == hashlib.sha256(outcome.samples).hexdigest()
    lines = [json.loads(line) for line in outcome.samples.decode().splitlines()]
    assert len(lines) == 20
    assert {line["task"] for line in lines} == {"annex_mc"}


def test_metrics_per_group_add_up_to_the_overall_metric(outcome: EvalOutcome) -> None:
    predicate = outcome.statement["predicate"]
    groups = predicate["groups"]["annex_mc"]
    assert set(groups) == {"science", "everyday"}
    assert groups["science"]["n"] == groups["everyday"]["n"] == 10
    mean = (groups["science"]["acc,none"] + groups["everyday"]["acc,none"]) / 2
    assert mean == pytest.approx(predicate["results"]["annex_mc"]["acc,none"])


def test_a_model_changed_during_the_run_is_refused(
    tiny_lm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import lm_eval

    model = tmp_path / "model"
    shutil.copytree(tiny_lm, model)
    real = lm_eval.simple_evaluate

    def evaluate_then_touch(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        with (model / "config.json").open("a") as f:
            f.write(" ")
        return result

    monkeypatch.setattr(lm_eval, "simple_evaluate", evaluate_then_touch)
    with pytest.raises(CollectorError, match=r"changed during the eval run.*config\.json"):
        run_eval(model, tasks=["annex_mc"], limit=1)


def test_an_unknown_task_is_refused_with_the_known_ones(tiny_lm: Path) -> None:
    with pytest.raises(InputError, match=r"unknown task\(s\) nope; known: .*annex_mc"):
        run_eval(tiny_lm, tasks=["nope"])


def test_a_missing_model_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"--model .*not a directory"):
        run_eval(tmp_path / "absent", tasks=["annex_mc"])


def test_bundled_tasks_are_listed() -> None:
    assert "annex_mc" in bundled_tasks()


def test_an_imported_results_file_is_labelled_and_bound(tiny_lm: Path, tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text(json.dumps(lm_eval_results(0.61)))
    imported = import_results(path, tiny_lm)
    predicate = imported.statement["predicate"]
    assert predicate["origin"] == "imported"
    assert predicate["results"]["hellaswag"]["acc,none"] == 0.61
    assert predicate["model"]["manifestDigest"] == build_manifest(tiny_lm).digest
    assert predicate["versions"]["lmEval"] == "0.4.8" and predicate["batchSize"] == "auto"
    assert predicate["samplesDigest"] is None and predicate["gpu"] is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not a readable JSON file"),
        ("[1, 2]", "no `results` object"),
        ('{"results": {}}', "no `results` object"),
        ('{"results": {"t": {"acc": 1}}}', "none of `versions`"),
        ('{"results": {"t": 3}, "versions": {}}', "field results.t"),
        ('{"results": {"t": {"alias": "t"}}, "versions": {}}', "no numeric metric"),
    ],
)
def test_what_is_not_an_lm_eval_results_file_is_refused(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "results.json"
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        read_results(path)


def test_the_bundled_generation_task_runs(tiny_lm: Path) -> None:
    done = run_eval(tiny_lm, tasks=["annex_gen"], limit=2)
    predicate = done.statement["predicate"]
    assert isinstance(predicate["results"]["annex_gen"]["exact_match,strip"], float)
    assert set(predicate["groups"]["annex_gen"]) == {"arithmetic"}  # the first two items


def test_a_task_folder_with_relative_data_files(tiny_lm: Path, tmp_path: Path) -> None:
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    rows = [{"q": "Is ice cold?", "choices": ["yes", "no"], "answer": 0}] * 3
    (tasks / "mine.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tasks / "mine.yaml").write_text(
        "task: my_mc\ndataset_path: json\n"
        "dataset_kwargs: {data_files: {test: mine.jsonl}}\ntest_split: test\n"
        "output_type: multiple_choice\ndoc_to_text: '{{q}}'\n"
        "doc_to_choice: '{{choices}}'\ndoc_to_target: answer\nmetadata: {version: 2}\n"
    )
    done = run_eval(tiny_lm, tasks=["my_mc"], tasks_dir=tasks)
    (task,) = done.statement["predicate"]["tasks"]
    assert task["name"] == "my_mc" and task["version"] == "2"
    assert task["dataFiles"][0]["path"] == "mine.jsonl"
    assert "acc,none" in done.statement["predicate"]["results"]["my_mc"]
    assert done.statement["predicate"]["groups"] == {}  # no group field in the data


def test_an_adapter_run_is_bound_to_the_adapter_first(tiny_lm: Path, tmp_path: Path) -> None:
    pytest.importorskip("peft")
    adapter = build_tiny_adapter(tiny_lm, tmp_path / "lora")
    done = run_eval(tiny_lm, adapter_dir=adapter, tasks=["annex_mc"], limit=2)
    subjects = [s["digest"]["sha256"] for s in done.statement["subject"]]
    assert subjects == [build_manifest(adapter).digest, build_manifest(tiny_lm).digest]
    assert done.statement["predicate"]["adapter"]["name"] == "lora"


def test_the_offline_settings_are_restored_after_a_run(
    tiny_lm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "0")
    run_eval(tiny_lm, tasks=["annex_mc"], limit=1)
    assert "HF_HUB_OFFLINE" not in os.environ
    assert os.environ["HF_DATASETS_OFFLINE"] == "0"


def test_without_lm_eval_the_error_says_what_to_install(
    tiny_lm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # what `import lm_eval` sees uninstalled
    with pytest.raises(ConfigError, match=r"annex\[eval\]"):
        run_eval(tiny_lm, tasks=["annex_mc"])


def test_a_task_folder_keeps_includes_working(tiny_lm: Path, tmp_path: Path) -> None:
    tasks = tmp_path / "tasks" / "nested"
    tasks.mkdir(parents=True)
    rows = [{"q": "Is fire hot?", "choices": ["yes", "no"], "answer": 0}] * 2
    (tasks / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tasks / "_base.yaml").write_text(
        "dataset_path: json\ntest_split: test\noutput_type: multiple_choice\n"
        "doc_to_text: '{{q}}'\ndoc_to_choice: '{{choices}}'\ndoc_to_target: answer\n"
    )
    (tasks / "child.yaml").write_text(
        "include: _base.yaml\ntask: child_mc\ndataset_kwargs: {data_files: {test: data.jsonl}}\n"
    )
    done = run_eval(tiny_lm, tasks=["child_mc"], tasks_dir=tmp_path / "tasks")
    assert "acc,none" in done.statement["predicate"]["results"]["child_mc"]


def test_vllm_is_refused_before_any_work_when_not_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ConfigError, match=r"install vllm"):
        run_eval(tmp_path / "absent", tasks=["annex_mc"], backend="vllm")
    with pytest.raises(InputError, match=r"--backend 'tgi'"):
        run_eval(tmp_path / "absent", tasks=["annex_mc"], backend="tgi")


def test_model_args_per_backend(tmp_path: Path) -> None:
    model, adapter = tmp_path / "m", tmp_path / "a"
    adapter.mkdir()
    assert model_args("hf", model, None, "auto") == f"pretrained={model},dtype=auto"
    assert model_args("hf", model, adapter, "float16").endswith(f",peft={adapter}")
    lora = model_args("vllm", model, adapter, "bfloat16")
    assert lora == (f"pretrained={model},dtype=bfloat16,enable_lora=True,lora_local_path={adapter}")
    (adapter / "adapter_config.json").write_text('{"r": 64}')
    assert model_args("vllm", model, adapter, "auto").endswith(",max_lora_rank=64")


def test_a_run_records_its_backend_and_nothing_missing(outcome: EvalOutcome) -> None:
    assert outcome.statement["predicate"]["backend"] == "hf"
    assert outcome.statement["predicate"]["missing"] == []


def test_an_import_with_adapter_samples_and_env_info(tiny_lm: Path, tmp_path: Path) -> None:
    pytest.importorskip("peft")
    adapter = build_tiny_adapter(tiny_lm, tmp_path / "lora")
    raw = lm_eval_results(0.5)
    raw["pretty_env_info"] = "PyTorch version: 2.13.0+cu128\nIs debug build: False\n"
    rows = [
        {"doc_id": i, "doc": {"group": g}, "filter": "none", "metrics": ["acc"], "acc": a}
        for i, (g, a) in enumerate([("x", 1.0), ("x", 0.0), ("y", 1.0)])
    ]
    raw["samples"] = {"hellaswag": rows}
    path = tmp_path / "results.json"
    path.write_text(json.dumps(raw))
    done = import_results(path, tiny_lm, adapter_dir=adapter)
    predicate = done.statement["predicate"]
    subjects = [s["digest"]["sha256"] for s in done.statement["subject"]]
    assert subjects == [build_manifest(adapter).digest, build_manifest(tiny_lm).digest]
    assert predicate["versions"]["torch"] == "2.13.0+cu128" and predicate["missing"] == []
    assert predicate["samplesDigest"] == hashlib.sha256(done.samples).hexdigest()
    assert predicate["groups"]["hellaswag"]["x"] == {"acc,none": 0.5, "n": 2.0}
    assert predicate["backend"] == "hf"


def test_an_import_without_env_info_lists_torch_as_not_given(tiny_lm: Path, tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text(json.dumps(lm_eval_results(0.5)))
    predicate = import_results(path, tiny_lm).statement["predicate"]
    assert predicate["versions"]["torch"] is None
    assert predicate["missing"] == ["versions.torch"]
    assert torch_of_env_info("PyTorch version: N/A\n") is None


def test_a_samples_file_is_read_by_line(tiny_lm: Path, tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text(json.dumps(lm_eval_results(0.5)))
    samples = tmp_path / "samples_hellaswag_2026.jsonl"
    row = {"doc": {"group": "a"}, "filter": "none", "metrics": ["acc"], "acc": 1.0}
    samples.write_text(json.dumps(row) + "\n\n" + json.dumps(row) + "\n")
    done = import_results(path, tiny_lm, samples_path=samples)
    assert done.statement["predicate"]["groups"]["hellaswag"]["a"]["n"] == 2.0
    assert len(done.samples.decode().splitlines()) == 2
    samples.write_text(json.dumps(row) + "\n{oops\n")
    with pytest.raises(InputError, match=r"samples_hellaswag_2026.jsonl: line 2: not JSON"):
        import_results(path, tiny_lm, samples_path=samples)
    samples.write_text("[1]\n")
    with pytest.raises(InputError, match=r"line 1: not a JSON object"):
        import_results(path, tiny_lm, samples_path=samples)


def test_git_noise_from_child_processes_is_dropped(capfd: pytest.CaptureFixture[str]) -> None:
    import subprocess

    with quiet_subprocess_stderr():
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; sys.stderr.write('fatal: not a git repository\\nkept\\n')",
            ],
            check=True,
        )
    err = capfd.readouterr().err
    assert "fatal: not a git repository" not in err
    assert "kept" in err


def test_a_cuda_device_the_host_lacks_is_named_before_lm_eval_runs() -> None:
    from collectors.evals import check_device

    torch = pytest.importorskip("torch")
    check_device("cpu")
    if torch.cuda.is_available():
        pytest.skip("this host has a CUDA device")
    for device in ("cuda", "cuda:0"):
        with pytest.raises(InputError, match=f"--device {device}: no CUDA device on this host"):
            check_device(device)
