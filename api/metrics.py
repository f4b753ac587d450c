"""Prometheus metrics of one Annex service: read from the store at each scrape, plus counters
the app keeps since it started. A registry per app, never the process-global one, so two apps
(or two tests) never share figures."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from evidence.keys import utc_now
from evidence.store import Store
from reports.sweeps import Schedule, sweep_statuses
from schemas.statement import parse_timestamp

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Counters:
    """What the app counts as it runs: envelopes appended over HTTP, refused appends."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.appended = 0
        self.refused = 0

    def add(self, *, appended: int = 0, refused: int = 0) -> None:
        with self._lock:
            self.appended += appended
            self.refused += refused


class _LogCollector(Collector):
    def __init__(self, store: Store, counters: Counters) -> None:
        self.store = store
        self.counters = counters

    def collect(self) -> Iterator[Any]:
        checkpoint = self.store.checkpoint()
        size = GaugeMetricFamily("annex_log_entries", "Entries in the log (latest checkpoint).")
        size.add_metric([], checkpoint.size)
        yield size
        age = GaugeMetricFamily(
            "annex_checkpoint_age_seconds", "Seconds since the latest checkpoint was signed."
        )
        age.add_metric([], max(0.0, time.time() - checkpoint.issued_at.timestamp()))
        yield age
        appended = CounterMetricFamily(
            "annex_api_envelopes_appended", "Envelopes appended through the API since start."
        )
        appended.add_metric([], self.counters.appended)
        yield appended
        refused = CounterMetricFamily(
            "annex_api_envelopes_refused", "Envelopes the API refused since start."
        )
        refused.add_metric([], self.counters.refused)
        yield refused


class _SweepCollector(Collector):
    """Each sweep the configuration declares or the log has runs of: its newest run and the
    runs it missed over the last 7 days (reports/sweeps.py judges them)."""

    def __init__(
        self,
        store: Store,
        schedules: Sequence[Schedule],
        declared_since: datetime | None,
        now: datetime | None,
    ) -> None:
        self.store = store
        self.schedules = schedules
        self.declared_since = declared_since
        self.now = now

    def collect(self) -> Iterator[Any]:
        statuses = sweep_statuses(
            self.store,
            now=self.now or utc_now(),
            declared=self.schedules,
            declared_since=self.declared_since,
        )
        last = GaugeMetricFamily(
            "annex_sweep_last_run_timestamp_seconds",
            "When the sweep's newest run finished (Unix time); absent if it never ran.",
            labels=["sweep"],
        )
        status = GaugeMetricFamily(
            "annex_sweep_last_status",
            "1 if every step of the sweep's newest run succeeded, 0 if one failed.",
            labels=["sweep"],
        )
        missed = GaugeMetricFamily(
            "annex_sweep_missed_runs",
            "Scheduled runs of the sweep over the last 7 days that did not happen.",
            labels=["sweep"],
        )
        for s in statuses:
            name = s.schedule.sweep
            if s.last is not None:
                finished = parse_timestamp(s.last.predicate.finished_at)
                last.add_metric([name], finished.timestamp())
                status.add_metric([name], 1 if s.last.predicate.status == "ok" else 0)
            missed.add_metric([name], len(s.missed.times))
        yield last
        yield status
        yield missed


def render(
    store: Store,
    counters: Counters,
    schedules: Sequence[Schedule] = (),
    declared_since: datetime | None = None,
    now: datetime | None = None,
) -> bytes:
    """The Prometheus text exposition of the log's figures now.

    `schedules` are the sweeps the configuration declares, `declared_since` when it took
    effect; sweeps that ran are read from the log without them. `now` fixes the moment missed
    runs are judged at (default: the clock).
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_LogCollector(store, counters))
    registry.register(_SweepCollector(store, schedules, declared_since, now))
    return generate_latest(registry)
