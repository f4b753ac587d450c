"""`annex sweep NAME`: run one declared sweep once (for cron, systemd timers, Kubernetes
CronJobs); `annex sweep list`: the declared sweeps, their next fire time and last run.

Exit codes of a run: 0 every step succeeded, 1 a step failed (the run is logged either way),
2 the configuration is bad or names no such sweep (nothing is logged).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from api.cli_base import HomeOpt, JsonOpt, app, command
from api.cli_gpu import site_labels
from api.output import print_json, stdout
from api.settings import Settings, get_settings
from api.sweeps.config import SweepConfig, load_config
from api.sweeps.runner import Boundaries, Done, run_sweep
from evidence.entry import rfc3339
from evidence.keys import utc_now
from reports.sweeps import SweepStatus, next_fire_time, sweep_statuses

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", help="Configuration file (default: $ANNEX_CONFIG, else HOME/annex.toml)."
    ),
]


def config_path(settings: Settings, given: Path | None) -> Path:
    return given.expanduser().absolute() if given is not None else settings.config_file


def declared_since(path: Path) -> datetime | None:
    """When the configuration took effect, as far as the file tells: its modification time."""
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except OSError:
        return None


@command(app, "sweep")
def sweep_command(
    name: Annotated[str, typer.Argument(help="The sweep to run once, or `list` to list them.")],
    config: ConfigOpt = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Run a sweep declared in the configuration file once and log the run (or `list` them)."""
    settings = get_settings(home)
    path = config_path(settings, config)
    loaded = load_config(path)
    if name == "list":
        _list(settings, loaded, path, json_out)
        return
    sweep = loaded.find(name, path)
    labels = site_labels(settings, site=None, country=None, operator=None)
    done = run_sweep(
        settings.open_home(), loaded, sweep, trigger="command", boundaries=Boundaries(site=labels)
    )
    _report(done, json_out)
    if done.predicate.status != "ok":
        raise typer.Exit(1)


def _report(done: Done, json_out: bool) -> None:
    p = done.predicate
    if json_out:
        print_json({"entry": done.entry, "run": p.to_predicate()})
        return
    ok = sum(1 for s in p.steps if s.status == "ok")
    stdout.print(
        f"sweep {p.sweep}: {ok} of {len(p.steps)} steps ok, {p.duration_seconds:.1f} s; "
        f"run logged at entry {done.entry}"
    )
    for s in p.steps:
        what = f"{s.kind} {s.target}" if s.target else s.kind
        if s.status == "ok":
            entries = ", ".join(str(i) for i in s.entries) or "-"
            stdout.print(f"  ok      {what}: entry {entries}")
        else:
            stdout.print(f"  failed  {what}: {s.error}")


# -- annex sweep list -----------------------------------------------------------------------------


def _list(settings: Settings, config: SweepConfig, path: Path, json_out: bool) -> None:
    now = utc_now()
    with settings.open_home().open_store() as store:
        statuses = sweep_statuses(
            store,
            now=now,
            declared=[config.schedule(s) for s in config.sweeps],
            declared_since=declared_since(path),
        )
    rows = [_row(s, now) for s in statuses]
    if json_out:
        print_json({"config": str(path), "sweeps": rows})
        return
    if not rows:
        stdout.print(f"no sweeps declared in {path}")
    for r in rows:
        last = r["lastRun"]
        ran = "never ran" if last is None else f"last {last['startedAt']} {last['status']}"
        where = "" if r["declared"] else "  (not in the configuration: from the log)"
        stdout.print(f"{r['name']}  {r['schedule']} ({r['timezone']}){where}")
        stdout.print(f"  next {r['nextRun'] or '-'}; {ran}; missed {r['missedRuns']} in 7 days")


def _row(status: SweepStatus, now: datetime) -> dict[str, Any]:
    s = status.schedule
    following = next_fire_time(s, now) if status.declared else None
    last = status.last
    return {
        "name": s.sweep,
        "schedule": s.cron,
        "timezone": s.timezone,
        "system": s.system,
        "declared": status.declared,
        "nextRun": None if following is None else rfc3339(following),
        "lastRun": None
        if last is None
        else {
            "entry": last.entry.index,
            "startedAt": last.predicate.started_at,
            "status": last.predicate.status,
            "durationSeconds": last.predicate.duration_seconds,
        },
        "missedRuns": len(status.missed.times),
        "missed": [rfc3339(t) for t in status.missed.times],
    }
