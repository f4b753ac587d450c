"""The oversight report from a real log: weeks, rates, time to review, stops, reviewers'
training, incidents, volume, retention; the period and the `at` cut-off; unknown systems."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import pytest

from collectors.inference_log import RetentionPolicy
from evidence.errors import InputError
from evidence.home import Home
from reports.document import Chart, Coverage, Document, Facts, Point, Source, Table
from reports.oversight import build_oversight
from reports.render import render_html
from tests.reports.oversight_fixture import END, NOW, START, SYSTEM, Rig, populate, pseudonym

T = TypeVar("T")


@pytest.fixture
def rig(sqlite_home: Home, tmp_path: Path) -> Iterator[Rig]:
    r = Rig(sqlite_home, tmp_path)
    yield r
    r.close()


def point(doc: Document, ref: str) -> Point:
    return next(p for p in doc.points() if p.ref == ref)


def facts(p: Point) -> dict[str, str]:
    return {
        k: v for item in p.items for b in item.blocks if isinstance(b, Facts) for k, v in b.rows
    }


def block(p: Point, kind: type[T]) -> T:
    return next(b for item in p.items for b in item.blocks if isinstance(b, kind))


def gap_text(p: Point) -> str:
    return " | ".join(g.what for g in p.gaps)


@pytest.fixture
def report(rig: Rig) -> Document:
    populate(rig)
    return build_oversight(rig.store, SYSTEM, START, END, now=NOW)


def test_weeks_count_each_action_and_leave_out_other_periods_and_systems(report: Document) -> None:
    activity = point(report, "14-activity")
    table = block(activity, Table)
    assert table.columns == (
        "week",
        "review",
        "approve",
        "override",
        "reverse",
        "stop",
        "resume",
        "all",
    )
    assert table.rows == (
        ("2026-W45", "1", "3", "1", "0", "0", "0", "5"),
        ("2026-W46", "0", "2", "0", "1", "1", "1", "5"),
        ("total", "1", "5", "1", "1", "1", "1", "10"),
    )
    chart = block(activity, Chart)
    assert chart.kind == "stacked-bar" and chart.categories == ("2026-W45", "2026-W46")
    assert dict((s.name, s.values) for s in chart.series)["approve"] == (3.0, 2.0)
    cited = {c.kind for c in activity.items[0].citations}
    assert cited == {"oversight-event"} and len(activity.items[0].citations) == 10
    assert report.kind == "oversight" and report.period == (START, END)


def test_override_and_reversal_rates(report: Document) -> None:
    rates = facts(point(report, "14-rates"))
    assert rates["decisions on outputs"] == "8"
    assert rates["override rate"] == "12.5% (1 of 8)"
    assert rates["reversal rate"] == "12.5% (1 of 8)"
    assert rates["approved or reviewed unchanged"] == "75.0% (6 of 8)"


def test_time_to_review_runs_from_the_batch_and_names_what_cannot_be_timed(
    report: Document,
) -> None:
    timing = point(report, "14-timing")
    got = facts(timing)
    assert got["events timed"] == "7"
    # 30 min, 1 h, 1 d, 1 d 2 h, ... from the batch's last request (10:00:09): median 1 d 02 h
    assert got["median"] == "1 d 02 h"
    assert got["longest"] == "8 d 22 h"
    assert "1 oversight event(s) link a request by id" in gap_text(timing)
    assert timing.coverage is Coverage.PARTIAL
    assert "inference-batch" in {c.kind for c in timing.items[0].citations}


def test_stops_and_resumes_name_the_pseudonym_never_the_person(report: Document) -> None:
    stops = point(report, "14-stop")
    rows = block(stops, Table).rows
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("2026-11-12T14:00:00Z", "stop", pseudonym("dave")),
        ("2026-11-12T15:00:00Z", "resume", pseudonym("dave")),
    ]
    assert not stops.gaps


def test_reviewers_without_a_valid_attestation_are_a_gap(report: Document) -> None:
    cover = point(report, "26-2")
    got = facts(cover)
    assert got["reviewers active"] == "4"
    assert got["events per reviewer (mean)"] == "2.5"
    gap = gap_text(cover)
    assert "2 reviewer(s) acted without a valid training attestation" in gap
    assert pseudonym("carol") in gap and pseudonym("dave") in gap
    assert pseudonym("alice") not in gap and pseudonym("bob") not in gap
    rows = {r[0]: r for r in block(cover, Table).rows}
    assert rows[pseudonym("alice")][1:] == ("5", rows[pseudonym("alice")][2], "all")
    assert rows[pseudonym("carol")][2] == "none valid in the period"
    assert "reviewer-attestation" in {c.kind for c in cover.items[0].citations}


def test_incident_volume_and_retention(report: Document) -> None:
    incidents = block(point(report, "26-5"), Table)
    assert [r[0] for r in incidents.rows] == ["inc-1"]
    volume = facts(point(report, "12-volume"))
    assert volume["requests served by the system's models"] == "10"
    assert volume["oversight decisions on outputs"] == "8"
    assert volume["decisions per 100 requests"] == "80.0"
    weekly = block(point(report, "12-volume"), Table)
    assert weekly.rows == (("2026-W45", "10", "5"), ("2026-W46", "0", "3"))
    retention = point(report, "19-retention")
    assert block(retention, Table).rows == (
        ("content retained encrypted, class logs, 184 days", "1", "10"),
    )
    assert retention.coverage is Coverage.COMPLETE


def test_declared_measures_come_from_the_card(report: Document) -> None:
    design = point(report, "14-design")
    assert design.coverage is Coverage.COMPLETE
    assert all(i.source is Source.DECLARED for i in design.items)
    assert report.system is not None and report.system.id == SYSTEM


def test_retention_under_six_months_is_a_finding(rig: Rig) -> None:
    populate(rig, retention=RetentionPolicy(content=True, name="short", days=30))
    doc = build_oversight(rig.store, SYSTEM, START, END, now=NOW)
    retention = point(doc, "19-retention")
    assert "1 batch(es) keep content under six months: short (30 days)" in gap_text(retention)


def test_a_period_with_nothing_shows_gaps_not_blanks(rig: Rig) -> None:
    populate(rig)
    doc = build_oversight(rig.store, SYSTEM, END + timedelta(days=30), END + timedelta(days=37))
    for ref in ("14-activity", "14-rates", "14-stop", "26-2", "12-volume", "19-retention"):
        p = point(doc, ref)
        assert p.coverage is Coverage.MISSING and p.gaps, ref
    assert "log retention is unknown" in gap_text(point(doc, "19-retention"))


def test_at_cuts_the_evidence_and_names_the_checkpoint(rig: Rig) -> None:
    sizes = populate(rig)
    doc = build_oversight(rig.store, SYSTEM, START, END, at=sizes["after_w45"], now=NOW)
    assert doc.checkpoint.size == sizes["after_w45"]
    assert doc.checkpoint.root_hex == rig.store.root(sizes["after_w45"]).hex()
    rows = block(point(doc, "14-activity"), Table).rows
    assert rows[-1][-1] == "5"  # week 46 not logged yet at that checkpoint
    assert all(c.index < sizes["after_w45"] for c in doc.citations())
    assert point(doc, "26-5").coverage is Coverage.MISSING


def test_unknown_system_and_bad_period_are_input_errors(rig: Rig) -> None:
    populate(rig)
    with pytest.raises(InputError, match=r"no system 'nope'.*loan-assistant"):
        build_oversight(rig.store, "nope", START, END)
    with pytest.raises(InputError, match="before it starts"):
        build_oversight(rig.store, SYSTEM, END, START)


def test_the_renderer_draws_it(report: Document) -> None:
    html = render_html(report)
    assert "2026-W45" in html and "<svg" in html
    assert "alice" not in html
