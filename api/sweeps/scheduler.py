"""Sweeps on their schedules inside `annex serve`: an APScheduler BackgroundScheduler, one job
per sweep.

A job never runs twice at once (max_instances 1); runs piled up while the process was busy or
asleep collapse into one (coalesce); a run later than the sweep's grace period is skipped, and
then shows as missed in reports and metrics rather than running at a time nobody expects. Each
run opens its own store handle, so the scheduler's thread never shares one with a request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger

from api.sweeps.config import Sweep, SweepConfig
from api.sweeps.runner import Boundaries, run_sweep
from evidence.errors import AnnexError
from evidence.home import Home
from reports.sweeps import crontab_trigger

log = logging.getLogger("annex.sweeps")

TriggerOf = Callable[[Sweep], BaseTrigger]


def start_scheduler(
    home: Home,
    config: SweepConfig,
    *,
    boundaries: Boundaries | None = None,
    trigger_of: TriggerOf | None = None,
) -> BackgroundScheduler:
    """A started scheduler running every sweep of `config` (stop it with `.shutdown()`).

    `trigger_of` replaces the cron trigger of each sweep (a test gives a short interval).
    """
    scheduler = BackgroundScheduler(timezone=config.timezone)
    for sweep in config.sweeps:
        trigger = (
            trigger_of(sweep)
            if trigger_of is not None
            else crontab_trigger(sweep.schedule, config.timezone)
        )
        scheduler.add_job(
            _run,
            trigger,
            args=(home, config, sweep, boundaries),
            id=f"sweep:{sweep.name}",
            name=f"sweep {sweep.name}",
            coalesce=True,
            max_instances=1,
            misfire_grace_time=sweep.grace_minutes * 60,
        )
    scheduler.start()
    return scheduler


def _run(home: Home, config: SweepConfig, sweep: Sweep, boundaries: Boundaries | None) -> None:
    """One scheduled run; a log that cannot be opened is reported here, never raised into
    APScheduler (the run then shows as missed)."""
    try:
        done = run_sweep(home, config, sweep, trigger="scheduler", boundaries=boundaries)
    except AnnexError as exc:
        log.error("sweep %s could not run: %s", sweep.name, exc)
        return
    failed = [s for s in done.predicate.steps if s.status == "failed"]
    if failed:
        log.warning(
            "sweep %s: %d of %d steps failed; run logged at entry %d",
            sweep.name,
            len(failed),
            len(done.predicate.steps),
            done.entry,
        )
    else:
        log.info("sweep %s ok; run logged at entry %d", sweep.name, done.entry)
