"""Tests' worker processes that start together: spawned (engines are not fork-safe), held at a
barrier until all are ready, each reporting once on a queue."""

from __future__ import annotations

import multiprocessing
import queue
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest

TIMEOUT_S = 120


def run_spawned(target: Callable[..., None], args: Sequence[tuple[Any, ...]]) -> list[Any]:
    """Runs `target(*a, start, results)` for each `a` in a process of its own; every report
    each put on `results`, in the order they came. `start` is a barrier for all of them."""
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(len(args))
    results = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*a, start, results)) for a in args]
    for p in procs:
        p.start()
    try:
        reports = [_report(results, procs) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=TIMEOUT_S)
            if p.is_alive():
                p.kill()
    assert [p.exitcode for p in procs] == [0] * len(procs)
    return reports


def _report(results: Any, procs: list[Any]) -> Any:
    """The next worker's report; fails at once if every worker is gone without one."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            return results.get(timeout=1)
        except queue.Empty:
            if not any(p.is_alive() for p in procs):
                pytest.fail(f"workers died without reporting: {[p.exitcode for p in procs]}")
    pytest.fail(f"no report from the workers within {TIMEOUT_S} s")
