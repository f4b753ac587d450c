"""Prometheus metrics of one Annex service: read from the store at each scrape, plus counters
the app keeps since it started. A registry per app, never the process-global one, so two apps
(or two tests) never share figures."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from evidence.store import Store

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


def render(store: Store, counters: Counters) -> bytes:
    """The Prometheus text exposition of the log's figures now."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_LogCollector(store, counters))
    return generate_latest(registry)
