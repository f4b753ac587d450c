"""The human-oversight report (AI Act Art 14, 26(2), 26(5), 19, 26(6)) of one system over a period.

What the card declares (the Art 14 measures as designed) is set beside what the log shows was
done: oversight events per ISO week, override and reversal rates, time to review, stops and
resumes, which reviewers acted and whether a valid training attestation covered them, incidents,
the inference volume the reviews sit against and the log-retention statement. Evidence is cut at
one checkpoint (`at`, default the newest), so the same report can be rebuilt and checked later.

Events are placed in the period by their observed time (when the reviewer acted), not by when
they were logged. Every figure cites the entries it counted; tables are bounded (weeks, actions,
reviewers), the full lists live in the evidence bundle.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pydantic import ValidationError

from evidence.entry import Entry, rfc3339
from evidence.errors import InputError
from evidence.keys import utc_now
from evidence.store import Store
from reports.document import (
    Chart,
    Document,
    Facts,
    Gap,
    Item,
    Paragraph,
    Point,
    Section,
    Series,
    Table,
)
from reports.evidence_query import (
    MAX_ROWS,
    SIX_MONTHS_DAYS,
    Served,
    bullets,
    checkpoint_ref,
    collected,
    day,
    declared,
    history,
    model_digests,
    percent,
    retention_text,
    scan,
    served_batches,
    system_ref,
)
from reports.systems import CardVersion
from schemas.incident import INCIDENT, IncidentPredicate
from schemas.inference import INFERENCE_BATCH, InferenceBatchPredicate
from schemas.oversight import (
    OVERSIGHT_EVENT,
    REVIEWER_ATTESTATION,
    OversightAction,
    OversightEventPredicate,
    ReviewerAttestationPredicate,
)
from schemas.statement import parse_timestamp

DECISIONS = (
    OversightAction.REVIEW,
    OversightAction.APPROVE,
    OversightAction.OVERRIDE,
    OversightAction.REVERSE,
    OversightAction.DISREGARD,
)


# -- the events of a period ---------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    entry: Entry
    predicate: OversightEventPredicate
    at: datetime


@dataclass(frozen=True)
class Attestation:
    entry: Entry
    predicate: ReviewerAttestationPredicate
    valid_from: datetime
    valid_until: datetime

    def covers(self, moment: datetime) -> bool:
        return self.valid_from <= moment < self.valid_until


@dataclass
class Period:
    """What the log holds for one system between `start` (included) and `end` (excluded)."""

    system_id: str
    start: datetime
    end: datetime
    size: int
    events: list[Event] = field(default_factory=list)

    def weeks(self) -> list[str]:
        out: list[str] = []
        moment = self.start
        while moment < self.end:
            label = week(moment)
            if label not in out:
                out.append(label)
            moment += timedelta(days=1)
        return out


def week(moment: datetime) -> str:
    year, number, _ = moment.isocalendar()
    return f"{year}-W{number:02d}"


def _events(store: Store, period: Period) -> list[Event]:
    found = []
    for entry in scan(
        store, OVERSIGHT_EVENT, period.size, observed_since=period.start, observed_until=period.end
    ):
        try:
            predicate = OversightEventPredicate.model_validate(entry.statement["predicate"])
        except ValidationError as exc:
            raise InputError(f"entry {entry.index}: not an oversight event: {exc}") from None
        if predicate.system == period.system_id:
            found.append(Event(entry, predicate, parse_timestamp(predicate.observed_at)))
    return found


def _attestations(store: Store, system_id: str, size: int) -> dict[str, list[Attestation]]:
    """Every reviewer's attestations below `size` that are for this system or for any system."""
    found: dict[str, list[Attestation]] = {}
    for entry in scan(store, REVIEWER_ATTESTATION, size):
        p = ReviewerAttestationPredicate.model_validate(entry.statement["predicate"])
        if p.system not in (None, system_id):
            continue
        a = Attestation(entry, p, parse_timestamp(p.valid_from), parse_timestamp(p.valid_until))
        found.setdefault(p.reviewer, []).append(a)
    return found


# -- declared measures --------------------------------------------------------------------------


_DECLARED = (
    ("assessment", "Why these measures are proportionate (Art 14(3))", "oversight.assessment"),
    ("stop_procedure", "Stop procedure (Art 14(4)(e))", "oversight.stopProcedure"),
    (
        "interpretation_aids",
        "Aids to interpret outputs (Art 14(4)(c))",
        "oversight.interpretationAids",
    ),
    ("reviewer_training", "Reviewer training (Art 26(2))", "oversight.reviewerTraining"),
)


def _declared_point(version: CardVersion) -> Point:
    o = version.card.oversight
    items: list[Item] = []
    gaps: list[Gap] = []
    if o.measures:
        items.append(declared("Oversight measures", *bullets(o.measures)))
    else:
        gaps.append(_card_gap("the oversight measures", "oversight.measures"))
    for attr, heading, key in _DECLARED:
        text = getattr(o, attr)
        if text:
            items.append(declared(heading, Paragraph(text)))
        else:
            gaps.append(_card_gap(heading.lower(), key))
    return Point(
        "14-design",
        "Oversight measures as designed",
        "Art 14(1)-(4), 13(3)(d): the measures that let people oversee the system.",
        tuple(items),
        tuple(gaps),
    )


def _card_gap(what: str, key: str) -> Gap:
    return Gap(
        f"the system card does not declare {what}",
        f"add `{key}` to the card, then annex system add",
    )


# -- what reviewers did -------------------------------------------------------------------------


def _activity_point(period: Period) -> Point:
    asks = "Art 14(4), 26(2): what the assigned people did, per ISO week."
    if not period.events:
        gap = Gap(
            f"no oversight event for system {period.system_id} between "
            f"{day(period.start)} and {day(period.end - timedelta(seconds=1))}",
            "log reviewers' acts: annex oversight record, or annex oversight ingest FEED.jsonl",
        )
        return Point("14-activity", "Oversight activity per week", asks, gaps=(gap,))
    weeks = period.weeks()
    counts: Counter[tuple[str, str]] = Counter(
        (week(e.at), e.predicate.action) for e in period.events
    )
    actions = [a for a in OversightAction if any(k[1] == a for k in counts)]
    rows = tuple(
        (w, *(str(counts[(w, a)]) for a in actions), str(sum(counts[(w, a)] for a in actions)))
        for w in weeks
    )
    total = (
        "total",
        *(str(sum(counts[(w, a)] for w in weeks)) for a in actions),
        str(len(period.events)),
    )
    table = Table(
        ("week", *actions, "all"), (*rows, total), caption="Oversight events per ISO week"
    )
    chart = Chart(
        "Oversight events per week",
        "stacked-bar",
        tuple(weeks),
        tuple(Series(str(a), tuple(float(counts[(w, a)]) for w in weeks)) for a in actions),
        y_label="events",
    )
    item = collected("Events by action and week", (e.entry for e in period.events), table, chart)
    return Point("14-activity", "Oversight activity per week", asks, (item,))


def _rates_point(period: Period) -> Point:
    asks = "Art 14(4)(b), (d): how often people disregarded, overrode or reversed the output."
    decisions = [e for e in period.events if e.predicate.action in DECISIONS]
    if not decisions:
        gap = Gap(
            "no review, approval, override, reversal or disregard in the period",
            "log reviewers' decisions on outputs: annex oversight record or ingest",
        )
        return Point("14-rates", "Override and reversal rates", asks, gaps=(gap,))
    by = Counter(e.predicate.action for e in decisions)
    n = len(decisions)
    facts = Facts(
        (
            ("decisions on outputs", str(n)),
            ("override rate", percent(by[OversightAction.OVERRIDE], n)),
            ("reversal rate", percent(by[OversightAction.REVERSE], n)),
            ("disregard rate", percent(by[OversightAction.DISREGARD], n)),
            (
                "approved or reviewed unchanged",
                percent(by[OversightAction.APPROVE] + by[OversightAction.REVIEW], n),
            ),
            (
                "escalations",
                str(
                    sum(1 for e in period.events if e.predicate.action == OversightAction.ESCALATE)
                ),
            ),
        )
    )
    how = Paragraph(
        "A rate is the events of that action over all decisions on outputs (review, approve, "
        "override, reverse, disregard) in the period; escalations, stops and resumes are not "
        "decisions on an output and are counted apart."
    )
    weeks = period.weeks()
    changed = Counter(
        week(e.at)
        for e in decisions
        if e.predicate.action in (OversightAction.OVERRIDE, OversightAction.REVERSE)
    )
    all_ = Counter(week(e.at) for e in decisions)
    chart = Chart(
        "Overrides and reversals, % of decisions",
        "bar",
        tuple(weeks),
        (
            Series(
                "override + reverse",
                tuple(100 * changed[w] / all_[w] if all_[w] else 0.0 for w in weeks),
            ),
        ),
        y_label="%",
    )
    item = collected("Rates over the period", (e.entry for e in decisions), facts, how, chart)
    return Point("14-rates", "Override and reversal rates", asks, (item,))


@dataclass
class _Targets:
    """Linked entries and the moment each one's output was ready, read once each."""

    store: Store
    size: int
    seen: dict[int, tuple[Entry, datetime]] = field(default_factory=dict)

    def delay(self, event: Event) -> tuple[Entry, float] | None:
        """(linked entry, seconds from it to the event), when the link names an entry."""
        link = event.predicate.link
        if link is None or link.entry is None or link.entry >= self.size:
            return None
        if link.entry not in self.seen:
            self.seen[link.entry] = self._ready(self.store.get(link.entry))
        target, start = self.seen[link.entry]
        return target, max(0.0, (event.at - start).total_seconds())

    @staticmethod
    def _ready(target: Entry) -> tuple[Entry, datetime]:
        start = target.observed_at or target.logged_at
        if target.predicate_type == INFERENCE_BATCH:
            p = InferenceBatchPredicate.model_validate(target.statement["predicate"])
            if p.time_range is not None:
                start = parse_timestamp(p.time_range.last)
        return target, start


def _timing_point(store: Store, period: Period) -> Point:
    asks = "Art 14(4)(a), 26(5): how soon after the output a person looked at it."
    timed: list[tuple[Event, Entry, float]] = []
    untimed = 0
    targets = _Targets(store, period.size)
    for e in period.events:
        if e.predicate.action in (OversightAction.STOP, OversightAction.RESUME):
            continue
        found = targets.delay(e)
        if found is None:
            untimed += 1
        else:
            timed.append((e, *found))
    gaps: list[Gap] = []
    if untimed:
        gaps.append(
            Gap(
                f"{untimed} oversight event(s) link a request by id or nothing: the log holds no "
                "time for a single request, so their time to review cannot be computed",
                "link events to the inference batch (feed field `batch`: its log index)",
            )
        )
    if not timed:
        if not untimed:
            gaps.append(Gap("no oversight event in the period to time", "log reviewers' acts"))
        return Point("14-timing", "Time to review", asks, gaps=tuple(gaps))
    seconds = sorted(s for _, _, s in timed)
    facts = Facts(
        (
            ("events timed", str(len(seconds))),
            ("median", duration(statistics.median(seconds))),
            ("90th percentile", duration(_quantile(seconds, 0.9))),
            ("longest", duration(seconds[-1])),
        )
    )
    how = Paragraph(
        "Time to review runs from the linked inference batch's last request (its timeRange.last) "
        "to the oversight event; for a link to any other entry, from that entry's observed time. "
        "An event before that moment counts as 0. Percentiles are nearest-rank."
    )
    cited = [e.entry for e, _, _ in timed] + [t for _, t, _ in timed]
    return Point(
        "14-timing",
        "Time to review",
        asks,
        (collected("Time to review", cited, facts, how),),
        tuple(gaps),
    )


def _quantile(ordered: list[float], q: float) -> float:
    rank = max(1, -(-len(ordered) * q // 1))
    return ordered[int(rank) - 1]


def duration(seconds: float) -> str:
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 86400} d {s % 86400 // 3600:02d} h"


def _stops_point(period: Period) -> Point:
    asks = "Art 14(4)(e): the system was interrupted or halted, by whom, and resumed."
    stops = [
        e
        for e in period.events
        if e.predicate.action in (OversightAction.STOP, OversightAction.RESUME)
    ]
    if not stops:
        gap = Gap(
            "no stop or resume of the system in the period: neither a use nor a test of the stop "
            "procedure is evidenced",
            "log each stop and resume, or a stop test: annex oversight record --action stop",
        )
        return Point("14-stop", "Stops and resumes", asks, gaps=(gap,))
    shown = stops[:MAX_ROWS]
    rows = tuple(
        (
            rfc3339(e.at),
            str(e.predicate.action),
            e.predicate.reviewer,
            e.predicate.reason,
            str(e.entry.index),
        )
        for e in shown
    )
    note = (
        None if len(stops) <= MAX_ROWS else f"first {MAX_ROWS} of {len(stops)}; all in the bundle"
    )
    table = Table(("time", "action", "by (pseudonym)", "reason", "entry"), rows, note=note)
    n_stop = sum(1 for e in stops if e.predicate.action == OversightAction.STOP)
    summary = Paragraph(f"{n_stop} stop(s) and {len(stops) - n_stop} resume(s) in the period.")
    return Point(
        "14-stop",
        "Stops and resumes",
        asks,
        (collected("Stops and resumes", (e.entry for e in stops), summary, table),),
    )


@dataclass(frozen=True)
class Reviewer:
    """One reviewer's acts in the period and the attestations that bear on them."""

    pseudonym: str
    events: list[Event]
    valid: list[Attestation]  # attestations whose window overlaps the period
    outside: list[Event]  # acts no attestation of theirs covered at the time

    def row(self) -> tuple[str, str, str, str]:
        trainings = "; ".join(
            f"{a.predicate.training} ({day(a.valid_from)} to {day(a.valid_until)})"
            for a in self.valid
        )
        covered = f"{len(self.outside)} outside" if self.outside else "all"
        return (
            self.pseudonym,
            str(len(self.events)),
            trainings or "none valid in the period",
            covered,
        )


def _reviewers(store: Store, period: Period) -> list[Reviewer]:
    """Every reviewer who acted, busiest first."""
    held = _attestations(store, period.system_id, period.size)
    by_reviewer: dict[str, list[Event]] = {}
    for e in period.events:
        by_reviewer.setdefault(e.predicate.reviewer, []).append(e)
    out = []
    for pseudonym, events in by_reviewer.items():
        mine = held.get(pseudonym, [])
        valid = [a for a in mine if a.valid_from < period.end and a.valid_until > period.start]
        outside = [e for e in events if not any(a.covers(e.at) for a in mine)]
        out.append(Reviewer(pseudonym, events, valid, outside))
    return sorted(out, key=lambda r: (-len(r.events), r.pseudonym))


def _coverage_point(store: Store, period: Period) -> Point:
    asks = "Art 26(2): oversight assigned to people with the competence, training and authority."
    if not period.events:
        gap = Gap("no reviewer acted in the period", "log reviewers' acts: annex oversight record")
        return Point("26-2", "Reviewers and their training", asks, gaps=(gap,))
    reviewers = _reviewers(store, period)
    uncovered = [r.pseudonym for r in reviewers if r.outside]
    note = None
    if len(reviewers) > MAX_ROWS:
        note = f"first {MAX_ROWS} of {len(reviewers)} reviewers, busiest first"
    table = Table(
        ("reviewer (pseudonym)", "events", "training attested", "events covered"),
        tuple(r.row() for r in reviewers[:MAX_ROWS]),
        note=note,
    )
    facts = Facts(
        (
            ("reviewers active", str(len(reviewers))),
            ("events per reviewer (mean)", f"{len(period.events) / len(reviewers):.1f}"),
            (
                "reviewers with every event under a valid attestation",
                str(len(reviewers) - len(uncovered)),
            ),
        )
    )
    cited = [e.entry for e in period.events] + [a.entry for r in reviewers for a in r.valid]
    item = collected("Reviewer coverage", cited, facts, table)
    gaps: tuple[Gap, ...] = ()
    if uncovered:
        gaps = (
            Gap(
                f"{len(uncovered)} reviewer(s) acted without a valid training attestation at the "
                f"time: {', '.join(uncovered[:MAX_ROWS])}",
                "log each reviewer's training, valid when they act: annex oversight attest",
            ),
        )
    return Point("26-2", "Reviewers and their training", asks, (item,), gaps)


def _incidents_point(store: Store, period: Period) -> Point:
    asks = "Art 26(5), 73: serious incidents of the system in the period."
    newest: dict[str, tuple[Entry, IncidentPredicate]] = {}
    entries: list[Entry] = []
    for entry in scan(
        store, INCIDENT, period.size, observed_since=period.start, observed_until=period.end
    ):
        p = IncidentPredicate.model_validate(entry.statement["predicate"])
        if p.system == period.system_id:
            newest[p.incident_id] = (entry, p)
            entries.append(entry)
    if not newest:
        gap = Gap(
            f"no incident of system {period.system_id} was logged in the period (if none occurred, "
            "nothing is missing)",
            "an incident that occurred is logged with annex incident open",
        )
        return Point("26-5", "Incidents", asks, gaps=(gap,))
    rows = tuple(
        (
            p.incident_id,
            str(p.category),
            p.awareness_at,
            p.deadline_at,
            p.reported_at or "not reported",
            "closed" if p.action == "close" else "open",
        )
        for _, p in sorted(newest.values(), key=lambda x: x[0].index)[:MAX_ROWS]
    )
    table = Table(("incident", "category", "aware", "deadline", "reported", "state"), rows)
    return Point("26-5", "Incidents", asks, (collected("Incidents in the period", entries, table),))


def _weekly_volume(period: Period, served: list[Served]) -> tuple[Table, Chart]:
    """Requests (by each batch's first request) and decisions on outputs, per ISO week."""
    weeks = period.weeks()
    requests: Counter[str] = Counter()
    for s in served:
        requests[week(s.first or s.entry.logged_at)] += s.requests
    decided = Counter(week(e.at) for e in period.events if e.predicate.action in DECISIONS)
    rows = tuple((w, str(requests[w]), str(decided[w])) for w in weeks)
    table = Table(("week", "requests", "decisions on outputs"), rows)
    chart = Chart(
        "Requests and decisions per week",
        "bar",
        tuple(weeks),
        (
            Series("requests", tuple(float(requests[w]) for w in weeks)),
            Series("decisions on outputs", tuple(float(decided[w]) for w in weeks)),
        ),
    )
    return table, chart


def _volume_point(period: Period, served: list[Served], reviewed: int) -> Point:
    asks = "Art 12, 26(5): the requests the system served, beside the reviews done."
    if not served:
        gap = Gap(
            "no inference batch in the period served the system's base model or adapters",
            "log the serving logs: annex collect inference-log LOG.jsonl (models logged first)",
        )
        return Point("12-volume", "Inference volume", asks, gaps=(gap,))
    requests = sum(s.requests for s in served)
    facts = Facts(
        (
            ("inference batches", str(len(served))),
            ("requests served by the system's models", str(requests)),
            ("oversight decisions on outputs", str(reviewed)),
            (
                "decisions per 100 requests",
                "n/a" if not requests else f"{100 * reviewed / requests:.1f}",
            ),
        )
    )
    how = Paragraph(
        "A batch is in the period when its first request is; its requests are those its `models` "
        "counts for a digest of the card's base model or adapters (any card version)."
    )
    return Point(
        "12-volume",
        "Inference volume",
        asks,
        (
            collected(
                "Requests and reviews",
                [s.entry for s in served] + [e.entry for e in period.events],
                facts,
                *_weekly_volume(period, served),
                how,
            ),
        ),
    )


def _retention_point(served: list[Served]) -> Point:
    asks = "Art 19(1), 26(6): logs kept six months at least, unless data protection law says less."
    if not served:
        gap = Gap(
            "log retention is unknown: no inference batch of the system's models in the period",
            "annex collect inference-log LOG.jsonl (with --retain-content: --retention-days)",
        )
        return Point("19-retention", "Log retention", asks, gaps=(gap,))
    groups: dict[str, list[Served]] = {}
    for s in served:
        groups.setdefault(retention_text(s.predicate), []).append(s)
    rows = tuple(
        (text, str(len(group)), str(sum(s.requests for s in group)))
        for text, group in sorted(groups.items())
    )
    table = Table(("retention", "batches", "requests"), rows)
    statement = Paragraph(
        "Each batch's record (counts, times, models, pseudonymous callers) and the digest of every "
        "request line are entries of the append-only log, kept with it and never expired; retained "
        f"content is kept for its class's days. The minimum is six months ({SIX_MONTHS_DAYS} days)."
    )
    short = [
        s
        for s in served
        if s.predicate.retention.content and (s.predicate.retention.days or 0) < SIX_MONTHS_DAYS
    ]
    gaps: tuple[Gap, ...] = ()
    if short:
        classes = sorted(
            {f"{s.predicate.retention.class_} ({s.predicate.retention.days} days)" for s in short}
        )
        gaps = (
            Gap(
                f"{len(short)} batch(es) keep content under six months: {', '.join(classes)}",
                f"keep logs {SIX_MONTHS_DAYS} days or more, or record the legal ground for less",
            ),
        )
    item = collected("Retention of the inference logs", (s.entry for s in served), statement, table)
    return Point("19-retention", "Log retention", asks, (item,), gaps)


# -- the report ---------------------------------------------------------------------------------


def build_oversight(
    store: Store,
    system_id: str,
    start: datetime,
    end: datetime,
    *,
    at: int | None = None,
    now: datetime | None = None,
) -> Document:
    """The oversight report of `system_id` for start <= observed time < end, cut at `at`."""
    if start.tzinfo is None or end.tzinfo is None:
        raise InputError("the period's start and end need a UTC offset")
    if end <= start:
        raise InputError(f"the period ends ({rfc3339(end)}) before it starts ({rfc3339(start)})")
    cp = checkpoint_ref(store, at)
    versions = history(store, system_id, cp.size)
    period = Period(system_id, start, end, cp.size)
    period.events = _events(store, period)
    served = served_batches(store, model_digests(versions), cp.size, (start, end))
    reviewed = sum(1 for e in period.events if e.predicate.action in DECISIONS)
    sections = (
        Section("Declared oversight measures", (_declared_point(versions[-1]),)),
        Section(
            "What reviewers did",
            (
                _activity_point(period),
                _rates_point(period),
                _timing_point(store, period),
                _stops_point(period),
                _coverage_point(store, period),
            ),
        ),
        Section(
            "Operation, incidents and logs",
            (
                _volume_point(period, served, reviewed),
                _incidents_point(store, period),
                _retention_point(served),
            ),
        ),
    )
    card = versions[-1].card
    return Document(
        kind="oversight",
        title=f"Human oversight: {card.name}",
        subtitle=f"{day(start)} to {day(end - timedelta(microseconds=1))} (AI Act Art 14, 26)",
        generated_at=now or utc_now(),
        checkpoint=cp,
        sections=sections,
        system=system_ref(versions[-1]),
        period=(start, end),
        notes=(
            "Events are placed in the period by when the reviewer acted (observed time).",
            "Reviewers and callers appear only as pseudonyms.",
        ),
    )
