"""Missed sweep runs, judged from the cron schedule and the sweep-run entries: as numbers, as gaps
in a rendered Annex IV report, and in the Prometheus metrics."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import TokenFile
from api.metrics import Counters, render
from collectors.system_card import card_statement, read_card
from evidence.entry import rfc3339
from evidence.home import Home
from evidence.store import Store
from reports.annex_iv import build_annex_iv
from reports.document import Document
from reports.render import render_html
from reports.sweeps import (
    MAX_GAPS,
    Missed,
    Schedule,
    missed_gaps,
    missed_runs,
    runs_by_sweep,
)
from schemas.sweep_run import StepResult, SweepRunPredicate, sweep_run_statement

DAY = datetime(2026, 11, 24, tzinfo=UTC)
NOW = DAY + timedelta(hours=12)
HOURLY = Schedule("hourly", "0 * * * *", grace=timedelta(minutes=15), system="bare")


def run_statement(
    started: datetime,
    *,
    sweep: str = "hourly",
    schedule: str = "0 * * * *",
    serves: bool = True,
    ok: bool = True,
    system: str | None = "bare",
) -> dict[str, Any]:
    """A sweep-run statement as the runner writes it, for a run that started at `started`."""
    step = StepResult(
        kind="gpu",
        status="ok" if ok else "failed",
        entries=(),
        error=None if ok else "NVML_ERROR_GPU_IS_LOST",
        duration_seconds=1.0,
    )
    finished = started + timedelta(seconds=1)
    fire = started.replace(minute=0, second=0, microsecond=0)
    predicate = SweepRunPredicate(
        observed_at=rfc3339(finished),
        sweep=sweep,
        schedule=schedule,
        timezone="UTC",
        grace_minutes=15,
        system=system,
        trigger="command",
        scheduled_for=rfc3339(fire) if serves else None,
        started_at=rfc3339(started),
        finished_at=rfc3339(finished),
        duration_seconds=1.0,
        status="ok" if ok else "failed",
        host="node-1",
        steps=(step,),
    )
    return sweep_run_statement(predicate, hashlib.sha256(sweep.encode()).hexdigest())


def log_hourly_runs(store: Store, base: datetime, skip: set[int], hours: int = 12) -> None:
    """Runs at base + h hours for h < hours, except `skip`; hour 3 failed, hour 9 came late
    (4 minutes) and without a scheduledFor, as an older runner or a hand-run might log it."""
    statements = []
    for h in range(hours):
        if h in skip:
            continue
        started = base + timedelta(hours=h, seconds=2)
        if h == 9:
            statements.append(run_statement(started + timedelta(minutes=4), serves=False))
        else:
            statements.append(run_statement(started, ok=h != 3))
    store.append(statements)


def test_missed_runs_are_the_fire_times_no_run_served(store: Store) -> None:
    log_hourly_runs(store, DAY, skip={5, 7})
    runs = runs_by_sweep(store)["hourly"]
    missed = missed_runs(HOURLY, runs, since=NOW - timedelta(days=30), until=NOW)
    # A failed run ran; the late run without scheduledFor serves 09:00; before the first run
    # (00:00) the sweep did not exist; 12:00 is still within its grace period.
    assert missed.times == (DAY + timedelta(hours=5), DAY + timedelta(hours=7))
    later = missed_runs(
        HOURLY, runs, since=NOW - timedelta(days=30), until=NOW + timedelta(hours=2)
    )
    assert later.times[-2:] == (DAY + timedelta(hours=12), DAY + timedelta(hours=13))


def test_a_declared_sweep_that_never_ran_is_judged_from_the_given_start() -> None:
    missed = missed_runs(HOURLY, [], since=NOW - timedelta(hours=3), until=NOW)
    assert missed.times == (
        NOW - timedelta(hours=3),
        NOW - timedelta(hours=2),
        NOW - timedelta(hours=1),
    )


def test_many_missed_runs_are_listed_up_to_a_bound_then_counted() -> None:
    times = tuple(DAY + timedelta(hours=h) for h in range(MAX_GAPS + 5))
    gaps = missed_gaps(Missed(HOURLY, times))
    assert len(gaps) == MAX_GAPS + 1
    assert gaps[0].what == "sweep hourly did not run at 2026-11-24T00:00:00Z"
    assert "annex sweep hourly" in gaps[0].fill and "0 * * * *" in gaps[0].fill
    assert gaps[-1].what == (
        "sweep hourly did not run at 5 more scheduled times, "
        "2026-11-24T10:00:00Z to 2026-11-24T14:00:00Z"
    )


def add_bare_card(store: Store, tmp_path: Path) -> None:
    card = {"apiVersion": "annex.dev/system-card/v1", "id": "bare", "name": "Bare",
            "version": "0.1", "provider": {"name": "ACME"}}  # fmt: skip
    path = tmp_path / "bare.yaml"
    path.write_text(yaml.safe_dump(card))
    store.append([card_statement(read_card(path), (), previous_entry=None)])


def test_a_missed_run_is_a_gap_in_the_rendered_annex_iv(store: Store, tmp_path: Path) -> None:
    add_bare_card(store, tmp_path)
    log_hourly_runs(store, DAY, skip={5, 7})
    other = run_statement(DAY + timedelta(hours=1), sweep="other-system", system="someone-else")
    fleet = run_statement(
        DAY + timedelta(hours=2), sweep="fleet", schedule="0 2 * * *", system=None
    )
    store.append([other, fleet])
    doc = build_annex_iv(store, "bare", now=NOW)
    p9 = next(p for p in doc.points() if p.ref == "9")
    gaps = [g.what for g in p9.gaps]
    assert "sweep hourly did not run at 2026-11-24T05:00:00Z" in gaps
    assert "sweep hourly did not run at 2026-11-24T07:00:00Z" in gaps
    assert not any("other-system" in g or "sweep fleet" in g for g in gaps)  # not due again yet
    monitoring = next(i for i in p9.items if i.heading == "Monitoring evidence in the log")
    assert len(monitoring.citations) == 10 + 1  # the system's runs and the fleet-wide one
    html = render_html(doc)
    assert "sweep hourly did not run at 2026-11-24T05:00:00Z" in html
    assert "sweep runs, 30 days (1 failed)" in html


def test_a_report_at_an_earlier_checkpoint_judges_up_to_that_checkpoint(
    store: Store, tmp_path: Path
) -> None:
    """The checkpoint's own time and contents bound the judgement: a late run of the missed hour
    logged after the checkpoint fills the gap in the latest report, not in the earlier one.
    (Hours relative to the clock: a report judges the 30 days before its checkpoint.)"""
    add_bare_card(store, tmp_path)
    base = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=20)
    log_hourly_runs(store, base, skip={5}, hours=20)
    size = store.size()
    store.append([run_statement(base + timedelta(hours=5, minutes=1))])  # late, serves 05
    missing = f"sweep hourly did not run at {rfc3339(base + timedelta(hours=5))}"

    def gaps(doc: Document) -> list[str]:
        return [g.what for g in next(p for p in doc.points() if p.ref == "9").gaps]

    assert missing in gaps(build_annex_iv(store, "bare", at=size))
    assert missing not in gaps(build_annex_iv(store, "bare"))


# -- metrics --------------------------------------------------------------------------------------


def metric(text: str, name: str, sweep: str) -> float | None:
    prefix = f'{name}{{sweep="{sweep}"}} '
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.removeprefix(prefix))
    return None


def test_metrics_show_each_sweeps_last_run_status_and_missed_runs(store: Store) -> None:
    log_hourly_runs(store, NOW - timedelta(hours=12), skip={5, 7}, hours=11)
    store.append([run_statement(NOW - timedelta(minutes=30), ok=False)])
    declared = Schedule("declared-only", "0 * * * *")
    text = render(
        store, Counters(), (declared,), declared_since=NOW - timedelta(hours=3), now=NOW
    ).decode()
    last = NOW - timedelta(minutes=30) + timedelta(seconds=1)
    assert metric(text, "annex_sweep_last_run_timestamp_seconds", "hourly") == last.timestamp()
    assert metric(text, "annex_sweep_last_status", "hourly") == 0
    assert metric(text, "annex_sweep_missed_runs", "hourly") == 2
    assert metric(text, "annex_sweep_missed_runs", "declared-only") == 3
    assert metric(text, "annex_sweep_last_status", "declared-only") is None  # never ran
    assert "# TYPE annex_sweep_missed_runs gauge" in text


def test_the_metrics_route_shows_sweeps_from_the_log(sqlite_home: Home) -> None:
    with sqlite_home.open_store(write=True) as store:
        store.append([run_statement(datetime.now(UTC) - timedelta(minutes=1))])
    secret = TokenFile(sqlite_home.path).create("read")[1]
    with TestClient(create_app(sqlite_home)) as client:
        answer = client.get("/api/v1/metrics", headers={"Authorization": f"Bearer {secret}"})
    assert answer.status_code == 200
    assert metric(answer.text, "annex_sweep_last_status", "hourly") == 1
    assert metric(answer.text, "annex_sweep_missed_runs", "hourly") == 0


def test_the_metrics_route_shows_sweeps_serve_declared_that_never_ran(sqlite_home: Home) -> None:
    """`annex serve` puts its declared sweeps on the app; one that has not run counts as missed."""
    secret = TokenFile(sqlite_home.path).create("read")[1]
    app = create_app(sqlite_home)
    app.state.sweep_schedules = (Schedule("nightly", "0 * * * *"),)
    since = datetime.now(UTC) - timedelta(hours=3, minutes=30)
    app.state.sweeps_declared_since = since

    def due(now: datetime) -> int:  # hourly fire times after `since`, their 15 minutes past
        top = now.replace(minute=0, second=0, microsecond=0)
        hours = (top - timedelta(hours=k) for k in range(6))
        return sum(1 for t in hours if since < t <= now - timedelta(minutes=15))

    before = due(datetime.now(UTC))
    with TestClient(app) as client:
        answer = client.get("/api/v1/metrics", headers={"Authorization": f"Bearer {secret}"})
    after = due(datetime.now(UTC))
    assert answer.status_code == 200
    assert metric(answer.text, "annex_sweep_missed_runs", "nightly") in {before, after}
    assert metric(answer.text, "annex_sweep_last_status", "nightly") is None


def test_a_sweep_that_stopped_before_the_window_misses_every_fire_time_in_it(
    sqlite_home: Home,
) -> None:
    """Judged a month after its last run: all 168 hourly fire times of the week are missed, and
    the last run is still found although it was logged before the window. (A sweep neither
    declared nor run in the window is no longer shown: it was removed from the configuration.)"""
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    with sqlite_home.open_store(write=True) as store:
        store.append([run_statement(hour - timedelta(hours=h)) for h in (2, 1)])
        later = hour + timedelta(days=30)
        text = render(store, Counters(), (HOURLY,), now=later).decode()
        undeclared = render(store, Counters(), now=later).decode()
    assert metric(text, "annex_sweep_missed_runs", "hourly") == 7 * 24
    assert metric(undeclared, "annex_sweep_missed_runs", "hourly") is None
    last = hour - timedelta(hours=1) + timedelta(seconds=1)  # when it finished
    assert metric(text, "annex_sweep_last_run_timestamp_seconds", "hourly") == last.timestamp()
