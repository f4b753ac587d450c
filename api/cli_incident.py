"""`annex incident ...`: serious incidents (Art 73) with their reporting deadlines and legal holds.

Deadlines default to Art 73's calendar days per category (schemas/incident.py); an installation
changes them in `<home>/incident-deadlines.json` ({"death": 10, ...}), or one incident with
`--deadline-days`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from api.cli_base import HomeOpt, JsonOpt, app, command, open_home
from api.cli_oversight import parse_moment
from api.output import print_json, stdout
from collectors.incidents import (
    MAX_DAYS,
    Change,
    DeadlineTable,
    IncidentState,
    OpenRequest,
    close_incident,
    incident_states,
    load_deadline_table,
    open_incident,
    time_left,
    update_incident,
)
from evidence.entry import rfc3339
from evidence.home import Home
from evidence.keys import utc_now
from schemas.incident import IncidentCategory, IncidentPredicate
from schemas.statement import parse_timestamp

incident_app = typer.Typer(
    help="Serious incidents (Art 73): deadlines, frozen snapshots, legal holds."
)
app.add_typer(incident_app, name="incident", no_args_is_help=True)

DEADLINES_FILE = "incident-deadlines.json"

IdArg = Annotated[str, typer.Argument(help="The incident id (annex incident list).")]
NoteOpt = Annotated[str | None, typer.Option(help="What happened, what was done.")]


def deadlines(home: Home) -> DeadlineTable:
    return load_deadline_table(home.path / DEADLINES_FILE)


@command(incident_app, "open")
def open_command(
    system: Annotated[str, typer.Option(help="The AI system concerned, e.g. triage-prod.")],
    category: Annotated[
        IncidentCategory,
        typer.Option(
            help="Sets the deadline (Art 73): death 10 days; critical-infrastructure and "
            "widespread-infringement 2; the others 15."
        ),
    ],
    aware_at: Annotated[
        str, typer.Option(help="When the provider became aware (RFC 3339; default now).")
    ] = "now",
    description: Annotated[str | None, typer.Option(help="What happened.")] = None,
    incident_id: Annotated[
        str | None, typer.Option("--id", help="An id of your own (default: inc-DATE-RANDOM).")
    ] = None,
    config: Annotated[
        list[Path] | None,
        typer.Option(help="A configuration file in force; its SHA-256 is frozen (repeatable)."),
    ] = None,
    deadline_days: Annotated[
        int | None,
        typer.Option(min=0, max=MAX_DAYS, help="Days to report, instead of the category's."),
    ] = None,
    legal_hold: Annotated[
        bool, typer.Option(help="Hold evidence from erasure until the incident is closed.")
    ] = True,
    hold_scope: Annotated[
        str | None, typer.Option(help="What the hold covers: a system id, or '*' for all.")
    ] = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Record a serious incident: awareness time, deadline, a frozen snapshot, a legal hold."""
    now = utc_now()
    request = OpenRequest(
        system=system,
        category=category,
        aware_at=parse_moment(aware_at, "--aware-at", now=now),
        description=description,
        incident_id=incident_id,
        legal_hold=legal_hold,
        hold_scope=hold_scope,
        deadline_days=deadline_days,
    )
    target = open_home(home)
    table = deadlines(target)
    with target.open_store(write=True) as store:
        index, predicate = open_incident(store, request, now=now, table=table, configs=config or ())
    _say(index, predicate, now, json_out)


@command(incident_app, "update")
def update_command(
    incident_id: IdArg,
    note: NoteOpt = None,
    category: Annotated[
        IncidentCategory | None, typer.Option(help="Reclassify (the deadline follows).")
    ] = None,
    reported_at: Annotated[
        str | None, typer.Option(help="When it was reported to the authority (or 'now').")
    ] = None,
    release_hold: Annotated[
        bool, typer.Option("--release-hold", help="Release the legal hold.")
    ] = False,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Add a note, reclassify, record the report to the authority or release the hold."""
    now = utc_now()
    change = Change(
        note=note,
        category=category,
        reported_at=None
        if reported_at is None
        else parse_moment(reported_at, "--reported-at", now=now),
        release_hold=release_hold,
    )
    target = open_home(home)
    table = deadlines(target)
    with target.open_store(write=True) as store:
        index, predicate = update_incident(store, incident_id, change, now=now, table=table)
    _say(index, predicate, now, json_out)


@command(incident_app, "close")
def close_command(
    incident_id: IdArg,
    note: NoteOpt = None,
    release_hold: Annotated[
        bool,
        typer.Option("--release-hold", help="Required when a hold is set: closing releases it."),
    ] = False,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Close an incident; its legal hold ends with it, so say --release-hold when one is set."""
    now = utc_now()
    with open_home(home).open_store(write=True) as store:
        index, predicate = close_incident(
            store, incident_id, Change(note=note, release_hold=release_hold), now=now
        )
    _say(index, predicate, now, json_out)


@command(incident_app, "list")
def list_command(
    overdue: Annotated[
        bool, typer.Option("--overdue", help="Only open incidents past their deadline.")
    ] = False,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Every incident with its deadline: time left, overdue, reported or closed."""
    now = utc_now()
    with open_home(home).open_store() as store:
        states = incident_states(store)
    if overdue:
        states = [s for s in states if s.overdue(now)]
    if json_out:
        print_json({"now": rfc3339(now), "incidents": [_state_json(s, now) for s in states]})
        return
    if not states:
        stdout.print("no overdue incidents" if overdue else "no incidents")
        return
    rows = [("ID", "SYSTEM", "CATEGORY", "HOLD", "DEADLINE", "STATUS")]
    for state in states:
        p = state.predicate
        hold = "held" if p.held else "-"
        rows.append(
            (p.incident_id, p.system, p.category.value, hold, p.deadline_at, status(state, now))
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        stdout.print("  ".join([*cells, row[-1]]))


def status(state: IncidentState, now: datetime) -> str:
    """Closed, reported (late or not), overdue by, or time left."""
    p = state.predicate
    if p.reported_at is not None:
        late = parse_timestamp(p.reported_at) > parse_timestamp(p.deadline_at)
        reported = f"reported {p.reported_at}{' (late)' if late else ''}"
        return f"closed, {reported}" if state.closed else reported
    if state.closed:
        return "closed, not reported"
    left = time_left(p, now)
    if left < timedelta(0):
        return f"OVERDUE by {_span(-left)}"
    return f"{_span(left)} left"


def _span(delta: timedelta) -> str:
    hours, rest = divmod(int(delta.total_seconds()), 3600)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours}h"
    return f"{hours}h {rest // 60}m"


def _state_json(state: IncidentState, now: datetime) -> dict[str, Any]:
    p = state.predicate
    return {
        "incidentId": p.incident_id,
        "entry": state.entry,
        "openedEntry": state.opened_entry,
        "state": "closed" if state.closed else "open",
        "system": p.system,
        "category": p.category.value,
        "awarenessAt": p.awareness_at,
        "deadlineAt": p.deadline_at,
        "deadlineDays": p.deadline_days,
        "reportedAt": p.reported_at,
        "legalHold": p.held,
        "secondsLeft": int(time_left(p, now).total_seconds()),
        "overdue": state.overdue(now),
        "status": status(state, now),
    }


def _say(index: int, predicate: IncidentPredicate, now: datetime, json_out: bool) -> None:
    state = IncidentState(index, predicate)
    if json_out:
        print_json({**_state_json(state, now), "predicate": predicate.to_predicate()})
        return
    verb = {"open": "opened", "update": "updated", "close": "closed"}[predicate.action]
    stdout.print(f"{verb} incident {predicate.incident_id} at entry {index}: {status(state, now)}")
    if predicate.action == "open":
        snapshot = predicate.snapshot
        size = "an empty log" if snapshot.checkpoint is None else f"{snapshot.checkpoint.size}"
        stdout.print(
            f"  deadline {predicate.deadline_at} ({predicate.deadline_days} days); snapshot: "
            f"{len(snapshot.manifests)} manifests, {len(snapshot.configs)} configs, "
            f"checkpoint at {size}; legal hold {'set' if predicate.held else 'not set'}"
        )
