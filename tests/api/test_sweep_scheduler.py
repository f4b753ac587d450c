"""Sweeps on their schedules in `annex serve`: the scheduler fires a job that logs a run, and serve
starts it (one job per sweep, coalescing, one instance, a misfire grace) and stops it at exit.

The firing test uses a short interval trigger in place of the cron one: nobody waits for a
cron minute."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from api.sweeps.config import parse_config
from api.sweeps.runner import Boundaries
from api.sweeps.scheduler import start_scheduler
from collectors import nvml_fake
from evidence.home import Home
from schemas.gpu import GPU_INVENTORY
from schemas.sweep_run import SWEEP_RUN
from tests.api.conftest import Annex, Template, log_size

CONFIG = {
    "sweep": [
        {"name": "gpus", "schedule": "*/5 * * * *", "grace_minutes": 2, "step": [{"kind": "gpu"}]},
        {"name": "nightly", "schedule": "0 2 * * 0", "step": [{"kind": "gpu"}]},
    ]
}


def wait_for_run(home: Home, timeout: float = 15.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with home.open_store() as store:
            found = store.query(predicate_type=SWEEP_RUN, limit=1)
        if found:
            return found[0].index
        time.sleep(0.1)
    raise AssertionError("the scheduler ran no sweep")


def test_the_scheduler_fires_a_sweep_and_logs_the_run(home: Home, tmp_path: Path) -> None:
    config = parse_config({"sweep": CONFIG["sweep"][:1]}, tmp_path / "annex.toml")
    scheduler = start_scheduler(
        home,
        config,
        boundaries=Boundaries(nvml=nvml_fake.fleet),
        trigger_of=lambda sweep: IntervalTrigger(seconds=0.3),
    )
    try:
        index = wait_for_run(home)
    finally:
        scheduler.shutdown(wait=True)
    with home.open_store() as store:
        run = store.get(index).statement["predicate"]
        gpu = store.get(run["steps"][0]["entries"][0])
    assert (run["sweep"], run["trigger"], run["status"]) == ("gpus", "scheduler", "ok")
    assert gpu.predicate_type == GPU_INVENTORY
    assert gpu.statement["predicate"]["status"] == "ok"


def test_each_sweep_is_one_cron_job_that_coalesces_and_never_overlaps(
    sqlite_home: Home, tmp_path: Path
) -> None:
    config = parse_config(CONFIG, tmp_path / "annex.toml")
    scheduler = start_scheduler(sqlite_home, config)
    try:
        jobs = {job.id: job for job in scheduler.get_jobs()}
    finally:
        scheduler.shutdown(wait=False)
    assert set(jobs) == {"sweep:gpus", "sweep:nightly"}
    gpus = jobs["sweep:gpus"]
    assert isinstance(gpus.trigger, CronTrigger)
    assert (gpus.coalesce, gpus.max_instances, gpus.misfire_grace_time) == (True, 1, 120)
    nightly = jobs["sweep:nightly"].trigger
    assert str(nightly.fields[4]) == "sun"  # crontab's 0 is Sunday, not APScheduler's Monday


# -- annex serve ----------------------------------------------------------------------------------


class Served:
    """Stands in for uvicorn.run: records the app and the scheduler while the service 'runs'."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.app: Any = None
        self.scheduler: BackgroundScheduler | None = None
        self.running_while_served = False
        self.jobs: list[str] = []
        original = start_scheduler

        def start(*args: Any, **kwargs: Any) -> BackgroundScheduler:
            self.scheduler = original(*args, **kwargs)
            return self.scheduler

        def run(app: Any, **_: Any) -> None:
            self.app = app
            if self.scheduler is not None:
                self.running_while_served = self.scheduler.running
                self.jobs = sorted(job.id for job in self.scheduler.get_jobs())

        monkeypatch.setattr("api.sweeps.scheduler.start_scheduler", start)
        monkeypatch.setattr("uvicorn.run", run)


def test_serve_runs_the_configured_sweeps_and_stops_them_at_exit(
    fresh: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = Served(monkeypatch)
    (fresh / "annex.toml").write_text(
        '[[sweep]]\nname = "gpus"\nschedule = "*/5 * * * *"\n[[sweep.step]]\nkind = "gpu"\n'
    )
    result = Annex(fresh, tmp_path).fast("serve")
    assert result.code == 0, result.err
    assert served.running_while_served and served.jobs == ["sweep:gpus"]
    assert served.scheduler is not None and not served.scheduler.running
    assert [s.sweep for s in served.app.state.sweep_schedules] == ["gpus"]


def test_serve_without_sweeps_starts_no_scheduler(
    fresh: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = Served(monkeypatch)
    (fresh / "annex.toml").write_text("this is not TOML [")  # the runs' to refuse, not serve's
    bad = Annex(fresh, tmp_path).fast("serve", "--no-sweeps")
    assert bad.code == 0 and "warning: sweeps not shown in the metrics" in bad.err
    assert served.app is not None and served.scheduler is None
    assert served.app.state.sweep_schedules == ()
    (fresh / "annex.toml").write_text(
        '[[sweep]]\nname = "gpus"\nschedule = "*/5 * * * *"\n[[sweep.step]]\nkind = "gpu"\n'
    )
    assert Annex(fresh, tmp_path).fast("serve", "--no-sweeps").code == 0
    assert served.scheduler is None  # cron runs it; the metrics still judge it
    assert [s.sweep for s in served.app.state.sweep_schedules] == ["gpus"]
    (fresh / "annex.toml").unlink()  # no file at the default place: no sweeps, no error
    assert Annex(fresh, tmp_path).fast("serve").code == 0
    assert served.scheduler is None


def test_serve_refuses_to_start_on_a_bad_configuration(
    fresh: Path, tmp_path: Path, template: Template, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = Served(monkeypatch)
    (fresh / "annex.toml").write_text(
        '[[sweep]]\nname = "gpus"\nschedule = "61 * * * *"\n[[sweep.step]]\nkind = "gpu"\n'
    )
    result = Annex(fresh, tmp_path).fast("serve")
    assert result.code == 2
    assert "sweep 'gpus': schedule: '61 * * * *'" in result.err
    missing = Annex(fresh, tmp_path).fast("serve", "--config", str(tmp_path / "absent.toml"))
    assert missing.code == 2 and "no configuration file at" in missing.err
    assert served.app is None and log_size(fresh) == template.size
