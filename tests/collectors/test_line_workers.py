"""Worker processes of a large inference-log ingest: answers in order, refusals and deaths named."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

import collectors.line_workers as module
from collectors.inference_lines import digest_chunk
from collectors.line_workers import LineWorkers, split_lines
from evidence.errors import CollectorError

LINE = {"created": 1_700_000_000, "model": "m", "user": "u", "latency_ms": 12.5}


def write(path: Path, count: int, bad: int | None = None) -> list[tuple[int, int, int]]:
    """A log of `count` lines cut into ranges of three lines: (first, offset, length) each."""
    lines = [
        b'{"model": "m"\n' if n == bad else (json.dumps({**LINE, "id": n}) + "\n").encode()
        for n in range(1, count + 1)
    ]
    path.write_bytes(b"".join(lines))
    ranges, offset = [], 0
    for start in range(0, count, 3):
        part = lines[start : start + 3]
        ranges.append((start + 1, offset, sum(map(len, part))))
        offset += sum(map(len, part))
    return ranges


def test_answers_come_in_the_order_asked_and_equal_digesting_here(tmp_path: Path) -> None:
    path = tmp_path / "gw.jsonl"
    ranges = write(path, 40)
    data = path.read_bytes()
    with path.open("rb") as f, LineWorkers(f.fileno(), path, 3) as workers:
        answers = list(workers.run(iter(ranges)))
    here = [digest_chunk(path, a, split_lines(data[b : b + n])) for a, b, n in ranges]
    assert [out for _, out in answers] == [out for _, out in here]
    assert [s.requests for s, _ in answers] == [3] * 13 + [1]


def test_a_bad_line_is_named_by_its_number_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "gw.jsonl"
    ranges = write(path, 20, bad=17)
    with (
        path.open("rb") as f,
        LineWorkers(f.fileno(), path, 2) as workers,
        pytest.raises(CollectorError, match=r"gw\.jsonl line 17: not valid JSON"),
    ):
        list(workers.run(iter(ranges)))


def test_a_range_past_the_end_of_the_file_is_a_changed_file(tmp_path: Path) -> None:
    path = tmp_path / "gw.jsonl"
    write(path, 3)
    size = path.stat().st_size
    with (
        path.open("rb") as f,
        LineWorkers(f.fileno(), path, 1) as workers,
        pytest.raises(CollectorError, match="changed while it was read"),
    ):
        list(workers.run(iter([(1, 0, size + 10)])))


def test_a_worker_that_dies_is_an_error_not_a_hang(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "gw.jsonl"
    ranges = write(path, 9)
    monkeypatch.setattr(module, "_SERVE", "import os; os._exit(3)")
    with (
        path.open("rb") as f,
        LineWorkers(f.fileno(), path, 2) as workers,
        pytest.raises(CollectorError, match=r"stopped before it answered \(exit status 3\)"),
    ):
        list(workers.run(iter(ranges)))


def test_a_collectors_package_in_the_working_directory_is_not_imported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker runs with -P: a `collectors` beside the log is not the one it runs."""
    trap = tmp_path / "collectors"
    trap.mkdir()
    (trap / "__init__.py").write_text("raise SystemExit(9)\n")
    path = tmp_path / "gw.jsonl"
    ranges = write(path, 6)
    monkeypatch.chdir(tmp_path)
    with path.open("rb") as f, LineWorkers(f.fileno(), path, 2) as workers:
        assert sum(s.requests for s, _ in workers.run(iter(ranges))) == 6


def test_workers_read_the_file_the_parent_opened(tmp_path: Path) -> None:
    """The descriptor is passed, not the path: a file put in its place is not read."""
    path = tmp_path / "gw.jsonl"
    ranges = write(path, 6)
    with path.open("rb") as f:
        os.replace(tmp_path / "gw.jsonl", tmp_path / "moved.jsonl")
        write(path, 6, bad=1)  # a different file now has the name
        with LineWorkers(f.fileno(), path, 2) as workers:
            assert sum(s.requests for s, _ in workers.run(iter(ranges))) == 6


def test_a_refusal_stops_the_other_workers_at_once(tmp_path: Path) -> None:
    """A worker part-way through a big chunk is killed, not waited for."""
    path = tmp_path / "gw.jsonl"
    line = (json.dumps({**LINE, "id": 1}) + "\n").encode()
    path.write_bytes(b'{"model": "m"\n' + line * 60_000)
    size = path.stat().st_size
    ranges = iter([(1, 0, len(line) + 14), (2, len(line) + 14, size - len(line) - 14)])
    start = time.monotonic()
    with (
        path.open("rb") as f,
        pytest.raises(CollectorError, match="line 1: not valid JSON"),
        LineWorkers(f.fileno(), path, 2) as workers,
    ):
        list(workers.run(ranges))
    assert time.monotonic() - start < module._STOP_SECONDS
