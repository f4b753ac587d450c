"""Scheduled sweeps judged from the log: which fire times of a sweep's cron schedule have no run.

A sweep's schedule is a 5-field crontab expression read with APScheduler's `CronTrigger`, with
one correction: APScheduler 3 numbers weekdays from Monday = 0, crontab from Sunday = 0 (and 7),
so numeric weekdays are rewritten as names first and `0 3 * * 0` fires on Sundays as cron does.
A schedule restricting both day of month and weekday is refused: cron fires on either, APScheduler
only on both, and a schedule must mean one thing.

A fire time T is *missed* when no sweep-run entry serves it: none records `scheduledFor` T, and
none without a `scheduledFor` started within the grace period after T. Fire times are judged only
once the grace period after them is over, and only from the sweep's first run with its current
schedule (or from a start the caller gives, for a sweep that never ran): before that the sweep
did not exist, so nothing was missed. The schedule of a sweep that is not in the configuration
is the one its newest run records, so an auditor with only the log sees the same gaps.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from apscheduler.triggers.cron import CronTrigger
from pydantic import ValidationError

from evidence.entry import Entry, rfc3339
from evidence.errors import InputError
from evidence.store import Store
from reports.document import Gap
from reports.lineage import entries_of
from schemas.statement import parse_timestamp
from schemas.sweep_run import SWEEP_RUN, SweepRunPredicate

MAX_FIRES = 50_000  # fire times judged per sweep and window: a 1-minute cron over 30 days (~1.5 s)
MAX_GAPS = 10  # missed runs listed one by one per sweep in a report; the rest are counted
DEFAULT_GRACE = timedelta(minutes=15)
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


@dataclass(frozen=True)
class Schedule:
    """When a sweep should run: its cron expression in a time zone, and how late it may start."""

    sweep: str
    cron: str
    timezone: str = "UTC"
    grace: timedelta = DEFAULT_GRACE
    system: str | None = None


# -- cron -----------------------------------------------------------------------------------------


def crontab_trigger(cron: str, timezone: str = "UTC") -> CronTrigger:
    """The trigger of a 5-field crontab expression; ValueError says what is wrong with it."""
    fields = cron.split()
    if len(fields) != 5:
        raise ValueError(
            f"{cron!r} has {len(fields)} fields; a schedule is 5: minute hour day month weekday"
        )
    if fields[2] != "*" and fields[4] != "*":
        raise ValueError(
            f"{cron!r} restricts both the day of month and the weekday: cron runs on either, "
            "APScheduler only on both; declare two sweeps instead"
        )
    fields[4] = crontab_weekdays(fields[4])
    try:
        return CronTrigger.from_crontab(" ".join(fields), timezone=timezone)
    except (ValueError, LookupError) as exc:  # LookupError: an unknown time zone
        raise ValueError(f"{cron!r} ({timezone}): {exc}") from None


def crontab_weekdays(field: str) -> str:
    """A crontab weekday field (0 or 7 = Sunday) as names APScheduler reads the same way."""
    if any(c.isalpha() for c in field):
        return field.lower()  # names mean the same in both
    days: set[int] = set()
    for part in field.split(","):
        base, _, step_text = part.partition("/")
        step = _number(step_text, part) if step_text else 1
        if base == "*":
            first, last = 0, 6
        elif "-" in base:
            low, _, high = base.partition("-")
            first, last = _number(low, part), _number(high, part)
        else:
            first = last = _number(base, part)
        if not 0 <= first <= last <= 7 or step < 1:
            raise ValueError(f"weekday {part!r} is not within 0-7 (0 and 7 are Sunday)")
        days.update(d % 7 for d in range(first, last + 1, step))
    if days == set(range(7)):
        return "*"
    return ",".join(_WEEKDAYS[d] for d in sorted(days))


def _number(text: str, part: str) -> int:
    if not text.isdigit():
        raise ValueError(f"weekday {part!r} is not a number, a range or a step")
    return int(text)


def fire_times(schedule: Schedule, start: datetime, end: datetime) -> list[datetime]:
    """The fire times T with start <= T < end, at most MAX_FIRES of them."""
    trigger = crontab_trigger(schedule.cron, schedule.timezone)
    found: list[datetime] = []
    moment = trigger.get_next_fire_time(None, start)
    while moment is not None and moment < end and len(found) < MAX_FIRES:
        found.append(moment)
        moment = trigger.get_next_fire_time(moment, moment)
    return found


def next_fire_time(schedule: Schedule, after: datetime) -> datetime | None:
    moment: datetime | None = crontab_trigger(schedule.cron, schedule.timezone).get_next_fire_time(
        None, after
    )
    return moment


def scheduled_for(schedule: Schedule, started: datetime) -> datetime | None:
    """The fire time a run that started at `started` serves: the latest within the grace before."""
    times = fire_times(schedule, started - schedule.grace, started + timedelta(microseconds=1))
    return times[-1] if times else None


# -- runs in the log ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One sweep-run entry, as read back."""

    entry: Entry
    predicate: SweepRunPredicate

    @property
    def schedule(self) -> Schedule:
        p = self.predicate
        return Schedule(
            p.sweep, p.schedule, p.timezone, timedelta(minutes=p.grace_minutes), p.system
        )

    @property
    def started(self) -> datetime:
        return parse_timestamp(self.predicate.started_at)

    @property
    def scheduled_for(self) -> datetime | None:
        when = self.predicate.scheduled_for
        return None if when is None else parse_timestamp(when)


def read_run(entry: Entry) -> Run:
    try:
        predicate = SweepRunPredicate.model_validate(entry.statement["predicate"])
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InputError(
            f"entry {entry.index}: not a valid sweep-run predicate: {where}: {first['msg']}"
        ) from None
    return Run(entry, predicate)


def runs_by_sweep(store: Store, *, size: int | None = None) -> dict[str, list[Run]]:
    """Every sweep-run entry below `size` (default: all), grouped by sweep, oldest first."""
    found: dict[str, list[Run]] = {}
    for entry in entries_of(store, SWEEP_RUN):
        if size is not None and entry.index >= size:
            break
        run = read_run(entry)
        found.setdefault(run.predicate.sweep, []).append(run)
    return found


# -- missed runs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Missed:
    """The fire times of one sweep in a window that no run served."""

    schedule: Schedule
    times: tuple[datetime, ...]


def missed_runs(
    schedule: Schedule,
    runs: Sequence[Run],
    *,
    since: datetime,
    until: datetime,
    from_first_run: bool = True,
) -> Missed:
    """Fire times in [since, until - grace) that no run served; with `from_first_run`, none
    before the first of `runs` with this schedule (the sweep, as declared now, did not exist)."""
    same = [
        r
        for r in runs
        if (r.predicate.schedule, r.predicate.timezone) == (schedule.cron, schedule.timezone)
    ]
    start = since
    if from_first_run and same:
        start = max(since, min(r.started for r in same) - schedule.grace)
    end = until - schedule.grace
    served = {r.scheduled_for for r in runs if r.scheduled_for is not None}
    loose = sorted(r.started for r in runs if r.scheduled_for is None)
    times = tuple(
        t
        for t in fire_times(schedule, start, end)
        if t not in served and not _started_within(loose, t, t + schedule.grace)
    )
    return Missed(schedule, times)


def _started_within(ordered: Sequence[datetime], low: datetime, high: datetime) -> bool:
    """Whether a start time in `ordered` (sorted) lies in [low, high)."""
    i = bisect_left(ordered, low)
    return i < len(ordered) and ordered[i] < high


def schedules_of(
    runs: dict[str, list[Run]], declared: Iterable[Schedule] = ()
) -> dict[str, Schedule]:
    """Each sweep's schedule: as declared in the configuration, else as its newest run records."""
    chosen = {name: found[-1].schedule for name, found in runs.items() if found}
    chosen.update({s.sweep: s for s in declared})
    return chosen


def missed_gaps(missed: Missed) -> list[Gap]:
    """A report's gaps for one sweep's missed runs: the first MAX_GAPS each, then a count."""
    s = missed.schedule
    fill = (
        f"run the sweep on its schedule ({s.cron}, {s.timezone}): `annex serve`, or "
        f"`annex sweep {s.sweep}` from cron, a systemd timer or a Kubernetes CronJob"
    )
    gaps = [
        Gap(f"sweep {s.sweep} did not run at {rfc3339(t)}", fill) for t in missed.times[:MAX_GAPS]
    ]
    rest = missed.times[MAX_GAPS:]
    if rest:
        gaps.append(
            Gap(
                f"sweep {s.sweep} did not run at {len(rest)} more scheduled times, "
                f"{rfc3339(rest[0])} to {rfc3339(rest[-1])}",
                fill,
            )
        )
    return gaps


REPORT_WINDOW = timedelta(days=30)


@dataclass(frozen=True)
class SweepEvidence:
    """For a report: the missed-run gaps of a system's sweeps and their runs in the window."""

    gaps: tuple[Gap, ...]
    runs: tuple[Run, ...]


def sweep_evidence(
    store: Store,
    *,
    system: str | None,
    size: int,
    until: datetime,
    window: timedelta = REPORT_WINDOW,
    declared: Iterable[Schedule] = (),
) -> SweepEvidence:
    """The sweeps for `system` and the fleet-wide ones (no system), as the log below `size`
    shows them over `window` before `until`."""
    runs = runs_by_sweep(store, size=size)
    since = until - window
    gaps: list[Gap] = []
    cited: list[Run] = []
    for name, schedule in sorted(schedules_of(runs, declared).items()):
        if schedule.system not in (None, system):
            continue
        found = runs.get(name, [])
        cited.extend(r for r in found if since <= r.started < until)
        gaps.extend(missed_gaps(missed_runs(schedule, found, since=since, until=until)))
    cited.sort(key=lambda r: r.entry.index)
    return SweepEvidence(tuple(gaps), tuple(cited))


# -- the state of every sweep now (`annex sweep list`, metrics) -----------------------------------


@dataclass(frozen=True)
class SweepStatus:
    """One sweep now: its schedule, whether the configuration declares it, its newest run and
    the fire times of the window that no run served."""

    schedule: Schedule
    declared: bool
    last: Run | None
    missed: Missed


LOGGED_MARGIN = timedelta(days=1)  # a run is logged when it ends: read a day more than the window


def sweep_statuses(
    store: Store,
    *,
    now: datetime,
    window: timedelta = timedelta(days=7),
    declared: Sequence[Schedule] = (),
    declared_since: datetime | None = None,
) -> list[SweepStatus]:
    """Every sweep the configuration declares or that ran in the window, by name.

    Reads the runs logged in the window (plus LOGGED_MARGIN) and, per sweep, its first run, so a
    scrape costs the same after years of runs. A declared sweep that never ran is judged from
    `declared_since` (when the configuration took effect, e.g. the file's modification time)
    if that is later than the window's start.
    """
    since = now - window
    recent = _runs_logged_since(store, since - LOGGED_MARGIN)
    names = {s.sweep for s in declared}
    statuses = []
    for name, schedule in sorted(schedules_of(recent, declared).items()):
        found = recent.get(name, [])
        first = found[0] if found and found[0].started < since else _first_run(store, name)
        start = since
        if first is None and declared_since is not None:
            start = max(since, declared_since)
        existed = first is not None and first.started < since
        one_schedule = len({(r.predicate.schedule, r.predicate.timezone) for r in found}) <= 1
        missed = missed_runs(
            schedule, found, since=start, until=now, from_first_run=not (existed and one_schedule)
        )
        last = found[-1] if found else None if first is None else _newest_run(store, name)
        statuses.append(SweepStatus(schedule, name in names, last, missed))
    return statuses


def _runs_logged_since(store: Store, since: datetime) -> dict[str, list[Run]]:
    found: dict[str, list[Run]] = {}
    after: int | None = None
    while page := store.query(predicate_type=SWEEP_RUN, logged_since=since, after=after, limit=500):
        for entry in page:
            if not store.signed_by_authority(entry):
                continue  # only the log key records a sweep's run
            run = read_run(entry)
            found.setdefault(run.predicate.sweep, []).append(run)
        after = page[-1].index
    return found


def _first_run(store: Store, name: str) -> Run | None:
    after: int | None = None
    while page := store.query(
        predicate_type=SWEEP_RUN, subject_name=f"sweep:{name}", after=after, limit=50
    ):
        for entry in page:
            if store.signed_by_authority(entry):
                return read_run(entry)
        after = page[-1].index
    return None


def _newest_run(store: Store, name: str) -> Run | None:
    """Only for a sweep with no run in the window: pages through its runs by subject name."""
    newest: Entry | None = None
    last: Entry | None = None  # the newest signed with authority
    while page := store.query(
        predicate_type=SWEEP_RUN,
        subject_name=f"sweep:{name}",
        after=None if newest is None else newest.index,
        limit=500,
    ):
        newest = page[-1]
        signed = [e for e in page if store.signed_by_authority(e)]
        last = signed[-1] if signed else last
    return None if last is None else read_run(last)
