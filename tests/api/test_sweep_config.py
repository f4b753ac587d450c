"""The sweep configuration file (annex.toml) and cron schedules: what is accepted, what is refused
and how the refusal names the file, the sweep and the field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from api.sweeps.config import EvalStep, InferenceLogStep, ModelStep, load_config, parse_config
from api.sweeps.runner import load_suite
from evidence.errors import ConfigError
from reports.sweeps import Schedule, crontab_weekdays, fire_times, scheduled_for

GOOD = """
timezone = "Europe/Berlin"

[[sweep]]
name = "nightly"
schedule = "0 2 * * *"
system = "loan-assistant"
grace_minutes = 30

[[sweep.step]]
kind = "gpu"

[[sweep.step]]
kind = "model"
dirs = ["models/base", "/abs/adapter"]

[[sweep.step]]
kind = "dataset"
paths = ["data/train.jsonl"]

[[sweep.step]]
kind = "inference-log"
files = ["/var/log/vllm/*.jsonl"]

[[sweep.step]]
kind = "eval"
suite = "evals.toml"

[[sweep]]
name = "hourly-gpu"
schedule = "5 * * * 1-5"

[[sweep.step]]
kind = "gpu"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "annex.toml"
    path.write_text(text)
    return path


def one(**sweep: Any) -> dict[str, Any]:
    table = {"name": "nightly", "schedule": "0 2 * * *", "step": [{"kind": "gpu"}], **sweep}
    return {"sweep": [table]}


def test_a_full_file_is_read_with_paths_from_its_directory(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    assert config.timezone == "Europe/Berlin"
    nightly, hourly = config.sweeps
    assert (nightly.name, nightly.schedule, nightly.system) == (
        "nightly",
        "0 2 * * *",
        "loan-assistant",
    )
    assert [s.kind for s in nightly.steps] == ["gpu", "model", "dataset", "inference-log", "eval"]
    model = nightly.steps[1]
    assert isinstance(model, ModelStep)
    assert model.dirs == (tmp_path / "models" / "base", Path("/abs/adapter"))
    logs = nightly.steps[3]
    assert isinstance(logs, InferenceLogStep) and logs.files == ("/var/log/vllm/*.jsonl",)
    suite = nightly.steps[4]
    assert isinstance(suite, EvalStep) and suite.suite == tmp_path / "evals.toml"
    assert hourly.grace_minutes == 15 and hourly.system is None
    schedule = config.schedule(nightly)
    assert schedule == Schedule(
        "nightly", "0 2 * * *", "Europe/Berlin", timedelta(minutes=30), "loan-assistant"
    )


def test_the_declaration_digest_changes_with_the_declaration(tmp_path: Path) -> None:
    a = parse_config(one(), tmp_path / "annex.toml").sweeps[0]
    b = parse_config(one(schedule="0 3 * * *"), tmp_path / "annex.toml").sweeps[0]
    assert (
        a.declaration_sha256()
        == parse_config(one(), tmp_path / "x.toml").sweeps[0].declaration_sha256()
    )
    assert a.declaration_sha256() != b.declaration_sha256()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (one(schedule="0 2 * *"), "sweep 'nightly': schedule: '0 2 * *' has 4 fields"),
        (one(schedule="0 25 * * *"), "sweep 'nightly': schedule: '0 25 * * *'"),
        (one(schedule="0 2 * * 8"), "weekday '8' is not within 0-7"),
        (one(schedule="@daily"), "has 1 fields"),
        (one(schedule="0 2 1 * 1"), "restricts both the day of month and the weekday"),
        (one(step=[]), "sweep 'nightly': step: "),
        (one(step=[{"kind": "model", "dirs": []}]), "sweep 'nightly', step 1 (model): dirs:"),
        (one(step=[{"kind": "model"}]), "step 1 (model): dirs: Field required"),
        (one(step=[{"kind": "gpu", "target": "x"}]), "step 1 (gpu): target: Extra inputs"),
        (one(step=[{"kind": "tpu"}]), "sweep 'nightly', step 1: Input tag 'tpu'"),
        (one(name="no spaces"), "sweep 'no spaces': name: String should match"),
        (one(name="list"), "'list' is reserved"),
        (one(grace_minutes=0), "sweep 'nightly': grace_minutes:"),
        (one(sweeps=1), "sweep 'nightly': sweeps: Extra inputs"),
        (
            {"sweep": [{"schedule": "0 2 * * *", "step": [{"kind": "gpu"}]}]},
            "sweep 1: name: Field required",
        ),
        ({"timezone": "Mars/Olympus", **one()}, "timezone: unknown time zone 'Mars/Olympus'"),
        ({"sweeps": []}, "sweeps: Extra inputs are not permitted"),
        ({"sweep": one()["sweep"] * 2}, "sweep 'nightly' is declared twice"),
    ],
)
def test_a_bad_declaration_names_the_file_the_sweep_and_the_field(
    tmp_path: Path, raw: dict[str, Any], message: str
) -> None:
    path = tmp_path / "annex.toml"
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, path)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)


def test_a_missing_or_broken_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no configuration file at .*--config or ANNEX_CONFIG"):
        load_config(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match=r"annex\.toml: not valid TOML"):
        load_config(write(tmp_path, "[[sweep]\nname = 1"))


def test_an_eval_suite_is_read_with_paths_from_its_directory(tmp_path: Path) -> None:
    suite = tmp_path / "evals.toml"
    suite.write_text('[[eval]]\nmodel = "models/base"\ntasks = ["annex_mc"]\nlimit = 20\n')
    (spec,) = load_suite(suite)
    assert spec.model == tmp_path / "models" / "base"
    assert (spec.tasks, spec.limit, spec.device) == (("annex_mc",), 20, "cpu")
    suite.write_text('[[eval]]\nmodel = "m"\ntasks = []\n')
    with pytest.raises(ConfigError, match=r"evals.toml: eval\.0\.tasks"):
        load_suite(suite)


# -- cron -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "names"),
    [
        ("0", "sun"),
        ("7", "sun"),
        ("1-5", "mon,tue,wed,thu,fri"),
        ("5-7", "sun,fri,sat"),
        ("*/2", "sun,tue,thu,sat"),
        ("*", "*"),
        ("0-7", "*"),
        ("1,3", "mon,wed"),
        ("MON-FRI", "mon-fri"),
    ],
)
def test_crontab_weekdays_count_from_sunday(field: str, names: str) -> None:
    assert crontab_weekdays(field) == names


def test_a_weekly_schedule_fires_on_sunday_as_cron_does() -> None:
    week = datetime(2026, 11, 23, tzinfo=UTC)  # a Monday
    (sunday,) = fire_times(Schedule("w", "0 3 * * 0"), week, week + timedelta(days=7))
    assert sunday == datetime(2026, 11, 29, 3, tzinfo=UTC)
    assert sunday.weekday() == 6


def test_fire_times_follow_the_time_zone() -> None:
    day = datetime(2026, 11, 24, tzinfo=UTC)
    (fire,) = fire_times(Schedule("n", "0 2 * * *", "Europe/Berlin"), day, day + timedelta(days=1))
    assert fire.astimezone(UTC) == datetime(2026, 11, 24, 1, tzinfo=UTC)  # 02:00 CET (UTC+1)


def test_a_run_serves_the_latest_fire_time_within_its_grace() -> None:
    hourly = Schedule("h", "0 * * * *", grace=timedelta(minutes=15))
    on_time = datetime(2026, 11, 24, 10, 3, tzinfo=UTC)
    assert scheduled_for(hourly, on_time) == datetime(2026, 11, 24, 10, tzinfo=UTC)
    assert scheduled_for(hourly, datetime(2026, 11, 24, 10, 0, tzinfo=UTC)) == datetime(
        2026, 11, 24, 10, tzinfo=UTC
    )
    assert scheduled_for(hourly, datetime(2026, 11, 24, 10, 20, tzinfo=UTC)) is None  # ad hoc
