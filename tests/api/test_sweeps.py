"""`annex sweep NAME` and `annex sweep list` as an operator runs them from cron: every step through
the collectors, one sweep-run entry per run, exit codes 0 / 1 / 2.

Fake GPUs come in at the boundary: pynvml's functions are replaced by the fake's in-process
(`Annex.fast`), as in the `collect gpu` tests; the runner on both databases gets the fake backend.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pynvml
import pytest

from api.sweeps.config import parse_config
from api.sweeps.runner import Boundaries, only_run, run_sweep
from collectors import nvml_fake
from evidence.errors import ConfigError
from evidence.home import Home
from schemas.dataset import DATASET
from schemas.gpu import GPU_INVENTORY
from schemas.model import MODEL_MANIFEST
from schemas.sweep_run import SWEEP_RUN
from tests.api.conftest import Annex, Template, log_size

AnnexAt = Callable[[Path], Annex]


@pytest.fixture(autouse=True)
def no_site_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ANNEX_SITE", "ANNEX_COUNTRY", "ANNEX_OPERATOR", "ANNEX_CONFIG"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fleet(monkeypatch: pytest.MonkeyPatch) -> nvml_fake.FakeNvml:
    fake = nvml_fake.fleet()
    for name, call in fake.calls().items():
        monkeypatch.setattr(pynvml, name, call)
    return fake


def make_targets(root: Path) -> tuple[Path, Path]:
    """A small model directory and a JSON Lines dataset."""
    model = root / "models" / "tiny"
    model.mkdir(parents=True)
    (model / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_layer": 2}))
    (model / "weights.bin").write_bytes(bytes(range(256)) * 4)
    data = root / "data" / "train.jsonl"
    data.parent.mkdir()
    data.write_text('{"text": "a"}\n{"text": "b"}\n{"text": "c"}\n')
    return model, data


def config_text(model: Path, data: Path, *, extra_model: str | None = None) -> str:
    dirs = [str(model)] + ([extra_model] if extra_model else [])
    return f"""
[[sweep]]
name = "nightly"
schedule = "0 2 * * *"
system = "loan-assistant"

[[sweep.step]]
kind = "gpu"

[[sweep.step]]
kind = "model"
dirs = {json.dumps(dirs)}

[[sweep.step]]
kind = "dataset"
paths = ["{data}"]
"""


def logged(home: Path, index: int) -> dict[str, Any]:
    with Home(home).open_store() as store:
        statement: dict[str, Any] = store.get(index).statement
    return statement


# -- annex sweep NAME -----------------------------------------------------------------------------


def test_a_sweep_runs_every_step_and_logs_the_run(
    fresh: Path, annex_at: AnnexAt, template: Template, fleet: nvml_fake.FakeNvml, tmp_path: Path
) -> None:
    model, data = make_targets(tmp_path)
    (fresh / "annex.toml").write_text(config_text(model, data))
    result = annex_at(fresh).fast("sweep", "nightly", "--json")
    assert result.code == 0, result.err
    printed = result.json()
    first = template.size
    assert printed["entry"] == first + 3
    run = printed["run"]
    assert (run["sweep"], run["status"], run["trigger"]) == ("nightly", "ok", "command")
    assert run["system"] == "loan-assistant" and run["schedule"] == "0 2 * * *"
    assert [(s["kind"], s["status"], s["entries"]) for s in run["steps"]] == [
        ("gpu", "ok", [first]),
        ("model", "ok", [first + 1]),
        ("dataset", "ok", [first + 2]),
    ]
    kinds = [logged(fresh, first + k)["predicateType"] for k in range(4)]
    assert kinds == [GPU_INVENTORY, MODEL_MANIFEST, DATASET, SWEEP_RUN]
    gpu = logged(fresh, first)["predicate"]
    assert gpu["status"] == "ok" and len(gpu["devices"]) == len(fleet.gpus)
    statement = logged(fresh, first + 3)
    assert statement["predicate"] == run
    assert statement["subject"][0]["name"] == "sweep:nightly"


def test_a_failed_step_is_recorded_and_the_others_still_run(
    fresh: Path, annex_at: AnnexAt, template: Template, fleet: nvml_fake.FakeNvml, tmp_path: Path
) -> None:
    model, data = make_targets(tmp_path)
    missing = str(tmp_path / "models" / "gone")
    (fresh / "annex.toml").write_text(config_text(model, data, extra_model=missing))
    result = annex_at(fresh).fast("sweep", "nightly")
    assert result.code == 1
    assert f"failed  model {missing}: {missing} does not exist" in result.out
    assert "ok      dataset" in result.out
    run = logged(fresh, log_size(fresh) - 1)["predicate"]
    assert run["status"] == "failed"
    statuses = [(s["kind"], s["status"]) for s in run["steps"]]
    assert statuses == [("gpu", "ok"), ("model", "ok"), ("model", "failed"), ("dataset", "ok")]
    failed = run["steps"][2]
    assert failed["entries"] == [] and missing in failed["error"]
    assert log_size(fresh) == template.size + 4  # gpu, model, dataset, the run


def test_a_dataset_already_logged_is_named_not_logged_again(
    fresh: Path, annex_at: AnnexAt, fleet: nvml_fake.FakeNvml, tmp_path: Path
) -> None:
    model, data = make_targets(tmp_path)
    (fresh / "annex.toml").write_text(config_text(model, data))
    first = annex_at(fresh).fast("sweep", "nightly", "--json").json()["run"]["steps"]
    second = annex_at(fresh).fast("sweep", "nightly", "--json").json()["run"]["steps"]
    assert second[2]["entries"] == first[2]["entries"]  # the dataset
    assert second[1]["entries"] != first[1]["entries"]  # a model is observed again, as the CLI does


def test_the_console_script_runs_a_sweep_from_annex_config(
    fresh: Path, annex_at: AnnexAt, template: Template, tmp_path: Path
) -> None:
    """As cron runs it: a real process, the file named by ANNEX_CONFIG, no NVML on this host."""
    model, data = make_targets(tmp_path)
    config = tmp_path / "etc" / "sweeps.toml"
    config.parent.mkdir()
    config.write_text(config_text(model, data))
    result = annex_at(fresh).with_env(ANNEX_CONFIG=str(config))("sweep", "nightly")
    assert result.code == 0, result.err
    assert result.out.startswith("sweep nightly: 3 of 3 steps ok")
    assert f"run logged at entry {template.size + 3}" in result.out
    assert logged(fresh, template.size)["predicate"]["status"] == "no-nvml"


@pytest.mark.parametrize(
    ("args", "text", "message"),
    [
        (("sweep", "weekly"), None, "no sweep named 'weekly' (declared: nightly)"),
        (("sweep", "nightly"), "[[sweep]]\nname = 'nightly'\n", "sweep 'nightly': schedule: Field"),
        (("sweep", "nightly"), "[[sweep]", "not valid TOML"),
        (("sweep", "nightly", "--config", "absent.toml"), None, "no configuration file at"),
    ],
)
def test_bad_configuration_exits_2_and_logs_nothing(
    fresh: Path,
    annex_at: AnnexAt,
    template: Template,
    tmp_path: Path,
    args: tuple[str, ...],
    text: str | None,
    message: str,
) -> None:
    model, data = make_targets(tmp_path)
    (fresh / "annex.toml").write_text(text if text is not None else config_text(model, data))
    result = annex_at(fresh).fast(*args)
    assert result.code == 2
    assert message in result.err
    assert log_size(fresh) == template.size
    as_json = annex_at(fresh).fast(*args, "--json")
    assert as_json.code == 2 and as_json.json()["error"] == "ConfigError"


def test_a_sweep_already_running_on_this_host_is_refused_and_logs_nothing(
    fresh: Path, annex_at: AnnexAt, template: Template, tmp_path: Path
) -> None:
    """Cron starting a run while the last one still goes: refused, exit 2, nothing logged; the
    lock goes with the run that held it."""
    model, data = make_targets(tmp_path)
    (fresh / "annex.toml").write_text(config_text(model, data))
    with only_run(Home(fresh), "nightly"):
        result = annex_at(fresh).fast("sweep", "nightly", "--json")
        assert result.code == 2
        assert result.json()["error"] == "SweepRunning"
        assert "sweep nightly is already running on this host" in result.json()["message"]
        assert log_size(fresh) == template.size
        other = annex_at(fresh).fast("sweep", "list")  # listing takes no lock
        assert other.code == 0, other.err
    assert annex_at(fresh).fast("sweep", "nightly").code == 0
    assert log_size(fresh) == template.size + 4


# -- annex sweep list -----------------------------------------------------------------------------


def test_list_shows_next_fire_time_and_last_run(
    fresh: Path, annex_at: AnnexAt, fleet: nvml_fake.FakeNvml, tmp_path: Path
) -> None:
    model, data = make_targets(tmp_path)
    text = config_text(model, data) + (
        '\n[[sweep]]\nname = "weekly"\nschedule = "0 3 * * 0"\n[[sweep.step]]\nkind = "gpu"\n'
    )
    (fresh / "annex.toml").write_text(text)
    entry = annex_at(fresh).fast("sweep", "nightly", "--json").json()["entry"]
    listed = annex_at(fresh).fast("sweep", "list", "--json")
    assert listed.code == 0, listed.err
    rows = {r["name"]: r for r in listed.json()["sweeps"]}
    assert rows["nightly"]["lastRun"]["entry"] == entry
    assert rows["nightly"]["lastRun"]["status"] == "ok"
    assert rows["nightly"]["nextRun"].endswith("T02:00:00Z")
    assert rows["weekly"]["lastRun"] is None and rows["weekly"]["declared"] is True
    assert rows["weekly"]["missedRuns"] == 0  # the file is new: nothing was due yet
    human = annex_at(fresh).fast("sweep", "list")
    assert "weekly  0 3 * * 0 (UTC)" in human.out and "never ran" in human.out


# -- the runner on both databases -----------------------------------------------------------------


def test_the_runner_logs_on_sqlite_and_postgresql(home: Home, tmp_path: Path) -> None:
    model, data = make_targets(tmp_path)
    raw = {
        "sweep": [
            {
                "name": "nightly",
                "schedule": "*/10 * * * *",
                "step": [
                    {"kind": "gpu"},
                    {"kind": "model", "dirs": [str(model)]},
                    {"kind": "dataset", "paths": [str(data), str(tmp_path / "nope")]},
                    {"kind": "inference-log", "files": [str(tmp_path / "logs" / "*.jsonl")]},
                    {"kind": "eval", "suite": str(tmp_path / "evals.toml")},
                ],
            }
        ]
    }
    config = parse_config(raw, tmp_path / "annex.toml")
    done = run_sweep(
        home,
        config,
        config.sweeps[0],
        trigger="command",
        boundaries=Boundaries(nvml=nvml_fake.without_driver),
    )
    p = done.predicate
    assert p.status == "failed"
    errors = {s.kind: s.error for s in p.steps if s.error}
    assert "no file matches" in errors["inference-log"]
    assert "cannot read eval suite" in errors["eval"]
    assert [s.status for s in p.steps if s.kind == "dataset"] == ["ok", "failed"]
    with home.open_store() as store:
        assert store.size() == done.entry + 1
        run = store.get(done.entry)
        assert run.predicate_type == SWEEP_RUN
        assert run.statement["predicate"]["steps"][0]["entries"] == [done.entry - 3]
        gpu = store.get(done.entry - 3).statement["predicate"]
        assert gpu["status"] == "no-driver"


def test_inference_logs_a_glob_matches_are_each_logged_once(
    sqlite_home: Home, tmp_path: Path
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    for name, count in (("a.jsonl", 3), ("b.jsonl", 2)):
        lines = (
            json.dumps(
                {
                    "timestamp": f"2026-11-02T10:00:{i:02d}Z",
                    "request_id": f"{name}-{i}",
                    "model": "llama-3-8b",
                    "user": "someone@example.com",
                    "latency_ms": 80,
                    "status": 200,
                }
            )
            for i in range(count)
        )
        (logs / name).write_text("".join(line + "\n" for line in lines))
    raw = {
        "sweep": [
            {
                "name": "logs",
                "schedule": "0 * * * *",
                "step": [{"kind": "inference-log", "files": ["logs/*.jsonl"]}],
            }
        ]
    }
    config = parse_config(raw, tmp_path / "annex.toml")
    first = run_sweep(sqlite_home, config, config.sweeps[0], trigger="command").predicate
    assert [(Path(s.target or "").name, s.status) for s in first.steps] == [
        ("a.jsonl", "ok"),
        ("b.jsonl", "ok"),
    ]
    again = run_sweep(sqlite_home, config, config.sweeps[0], trigger="command").predicate
    assert [s.entries for s in again.steps] == [s.entries for s in first.steps]  # known files
    with sqlite_home.open_store() as store:
        batch = store.get(first.steps[0].entries[0]).statement["predicate"]
    assert batch["requests"] == 3 and "someone@example.com" not in json.dumps(batch)


def test_an_inference_log_step_takes_the_commands_retention_options(
    sqlite_home: Home, tmp_path: Path
) -> None:
    """retain_content, retention, retention_days and batch_size, as `annex collect inference-log`
    takes them: texts kept encrypted under a 30-day class, two lines an entry."""
    lines = (
        json.dumps(
            {
                "timestamp": f"2026-11-02T10:00:{i:02d}Z",
                "request_id": f"r-{i}",
                "model": "llama-3-8b",
                "user": "someone@example.com",
                "prompt": f"question {i}",
                "completion": f"answer {i}",
                "latency_ms": 80,
                "status": 200,
            }
        )
        for i in range(5)
    )
    (tmp_path / "gw.jsonl").write_text("".join(line + "\n" for line in lines))
    step = {
        "kind": "inference-log",
        "files": ["gw.jsonl"],
        "retain_content": True,
        "retention": "support-30d",
        "retention_days": 30,
        "batch_size": 2,
    }
    raw = {"sweep": [{"name": "logs", "schedule": "0 * * * *", "step": [step]}]}
    config = parse_config(raw, tmp_path / "annex.toml")
    run = run_sweep(sqlite_home, config, config.sweeps[0], trigger="command").predicate
    (result,) = run.steps
    assert result.status == "ok" and len(result.entries) == 3  # lines 1-2, 3-4, 5
    with sqlite_home.open_store() as store:
        retention = store.get(result.entries[0]).statement["predicate"]["retention"]
    assert retention["content"] is True and retention["class"] == "support-30d"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"retention": "short"}, "give it for a retention class other than logs"),
        ({"retention_days": 30}, "keeps logs at least 184 days"),
        ({"batch_size": 0}, "batch_size"),
        ({"retention_days": 10**6}, "retention_days"),
    ],
)
def test_a_bad_retention_option_is_refused_with_the_configuration(
    tmp_path: Path, extra: dict[str, Any], message: str
) -> None:
    step = {"kind": "inference-log", "files": ["gw.jsonl"], **extra}
    raw = {"sweep": [{"name": "logs", "schedule": "0 * * * *", "step": [step]}]}
    with pytest.raises(ConfigError, match=message) as refused:
        parse_config(raw, tmp_path / "annex.toml")
    assert "sweep 'logs'" in str(refused.value)
