"""`annex collect inference-log`, `annex erase`, `annex retention expire`, `annex inference ...`
as a user runs them: results, refusals (exit 2, nothing appended), and memory on a large log."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from evidence.home import Home
from schemas.statement import STATEMENT_TYPE, predicate_type
from tests.api.conftest import Annex, Template, annex_command, log_size

AnnexAt = Callable[[Path], Annex]

SECRET = "prompt text that must never be logged"


def line(i: int, *, user: str | None = None) -> str:
    caller = user or f"user-{i % 7}@example.com"
    return json.dumps(
        {
            "timestamp": f"2026-11-02T10:{i // 60 % 60:02d}:{i % 60:02d}Z",
            "request_id": f"req-{i}",
            "model": "llama-3-8b",
            "user": caller,
            "messages": [{"role": "user", "content": f"{SECRET} {i}"}],
            "response": f"answer {i}",
            "usage": {"prompt_tokens": 12, "completion_tokens": 30},
            "latency_ms": 80 + i % 50,
            "status": 200,
        }
    )


def write(path: Path, count: int) -> Path:
    path.write_text("".join(line(i) + "\n" for i in range(count)), encoding="utf-8")
    return path


def test_ingest_prove_and_recognise_the_same_file(
    fresh: Path, annex_at: AnnexAt, template: Template, tmp_path: Path
) -> None:
    annex = annex_at(fresh)
    log = write(tmp_path / "gateway.jsonl", 30)
    done = annex("collect", "inference-log", log, "--retain-content", "--json")
    assert done.code == 0, done.err
    body = done.json()
    assert body["entries"] == [template.size]
    predicate = body["statements"][0]["predicate"]
    assert predicate["requests"] == 30
    assert predicate["retention"]["class"] == "logs"
    assert SECRET not in done.out and "@example.com" not in done.out
    proof = annex("inference", "prove", str(template.size), "7", "--json")
    assert proof.code == 0, proof.err
    assert proof.json()["verified"] is True
    assert proof.json()["root"] == predicate["merkleRoot"]
    again = annex("collect", "inference-log", log)
    assert again.code == 0
    assert "already logged" in again.out
    assert log_size(fresh) == template.size + 1
    assert annex("verify").code == 0


def test_bad_line_exits_2_naming_the_line_and_appends_nothing(
    fresh: Path, annex_at: AnnexAt, template: Template, tmp_path: Path
) -> None:
    log = tmp_path / "gateway.jsonl"
    log.write_text(line(1) + "\n" + '{"model": "m", "id": "x"}\n', encoding="utf-8")
    done = annex_at(fresh).fast("collect", "inference-log", str(log), "--retain-content")
    assert done.code == 2
    assert f"{log} line 2: missing required field timestamp" in done.err
    assert log_size(fresh) == template.size
    assert not list((fresh / "blobs").rglob("sha256/*/*"))


def test_dry_run_logs_nothing(
    fresh: Path, annex_at: AnnexAt, template: Template, tmp_path: Path
) -> None:
    log = write(tmp_path / "gateway.jsonl", 5)
    done = annex_at(fresh).fast("collect", "inference-log", str(log), "--dry-run", "--json")
    assert done.code == 0, done.err
    assert done.json()["entries"] == [] and len(done.json()["statements"]) == 1
    assert log_size(fresh) == template.size


def test_erase_then_verify_and_erase_again(
    fresh: Path, annex_at: AnnexAt, template: Template, tmp_path: Path
) -> None:
    annex = annex_at(fresh)
    log = write(tmp_path / "gateway.jsonl", 14)
    assert annex("collect", "inference-log", log, "--retain-content").code == 0
    before = annex("inference", "content", str(template.size), "--subject", "user-1@example.com")
    assert f"{SECRET} 1" in before.out
    done = annex("erase", "user-1@example.com", "--reason", "request 2026-17", "--json")
    assert done.code == 0, done.err
    receipt = done.json()["receipt"]
    assert receipt["keysDestroyed"] == 1 and receipt["batches"] == [template.size]
    assert "user-1@example.com" not in done.out
    assert annex("verify").code == 0
    gone = annex("inference", "content", str(template.size), "--subject", "user-1@example.com")
    assert gone.code == 2 and "no such data subject" in gone.err
    assert annex("inference", "prove", str(template.size), "2").code == 0
    again = annex.fast("erase", "user-1@example.com")
    assert again.code == 2 and "no such data subject" in again.err


def test_legal_hold_blocks_erase_with_exit_2(
    fresh: Path, annex_at: AnnexAt, template: Template, tmp_path: Path
) -> None:
    annex = annex_at(fresh)
    assert annex("collect", "inference-log", write(tmp_path / "g.jsonl", 3)).code == 0
    incident = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": "incident:INC-2026-0042", "digest": {"sha256": "ef" * 32}}],
        "predicateType": predicate_type("incident"),
        "predicate": {
            "observedAt": "2026-11-24T08:00:00Z",
            "incidentId": "INC-2026-0042",
            "action": "open",
            "legalHold": True,
        },
    }
    with Home(fresh).open_store(write=True) as store:
        held = store.append([incident]).first_index
    size = log_size(fresh)
    done = annex.fast("erase", "user-1@example.com")
    assert done.code == 2
    assert f"legal hold by incident INC-2026-0042 (entry {held}) blocks erasure" in done.err
    expired = annex.fast("retention", "expire", "--now", "2030-01-01T00:00:00Z")
    assert expired.code == 2 and "blocks retention expiry" in expired.err
    assert log_size(fresh) == size


def test_retention_expire(
    fresh: Path, annex_at: AnnexAt, template: Template, tmp_path: Path
) -> None:
    annex = annex_at(fresh)
    log = write(tmp_path / "g.jsonl", 7)
    refused = annex.fast(
        "collect", "inference-log", str(log), "--retain-content", "--retention", "short"
    )
    assert refused.code == 2 and "--retention-days" in refused.err
    short = ("--retain-content", "--retention", "short", "--retention-days", "1")
    assert annex("collect", "inference-log", log, *short).code == 0
    nothing = annex("retention", "expire", "--json")
    assert nothing.code == 0 and nothing.json()["entry"] is None
    done = annex("retention", "expire", "--now", "2099-01-01T00:00:00Z", "--json")
    assert done.code == 0, done.err
    assert done.json()["receipt"]["keysDestroyed"] == 7
    assert done.json()["entry"] == template.size + 1
    assert annex("verify").code == 0


# -- memory on a large log --------------------------------------------------------------------

_PEAK = (
    "import resource, subprocess, sys\n"
    "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
)


def _peak_kib(annex: Annex, *args: str | Path) -> int:
    """Peak RSS of one `annex` process, measured by a parent of its own."""
    done = subprocess.run(
        [sys.executable, "-c", _PEAK, *annex_command(), *(str(a) for a in args)],
        capture_output=True,
        text=True,
        env=annex.env(),
        timeout=300,
        check=True,
    )
    return int(done.stdout.strip())


def _big_log(path: Path, megabytes: int) -> int:
    """About `megabytes` MB of requests from 500 callers; returns the line count."""
    filler = "x" * 450
    count = 0
    with path.open("w", encoding="utf-8") as f:
        while f.tell() < megabytes * 1_000_000:
            chunk: list[str] = []
            for i in range(count, count + 10_000):
                record: dict[str, Any] = {
                    "created": 1_793_000_000 + i,
                    "id": f"cmpl-{i}",
                    "model": ("llama-3-8b", "qwen-7b")[i % 2],
                    "user": f"u{i % 500}",
                    "prompt": f"{filler} {i}",
                    "response": "ok",
                    "latency_ms": 50 + i % 400,
                    "status": 200,
                }
                chunk.append(json.dumps(record))
            f.write("\n".join(chunk) + "\n")
            count += 10_000
    return count


@pytest.mark.slow
def test_a_large_log_is_ingested_in_constant_memory(
    fresh: Path, annex_at: AnnexAt, tmp_path: Path
) -> None:
    annex = annex_at(fresh)
    small = tmp_path / "small.jsonl"
    small.write_text("".join(line(i) + "\n" for i in range(1000)), encoding="utf-8")
    big = tmp_path / "big.jsonl"
    lines = _big_log(big, 250)
    small_peak = _peak_kib(annex, "collect", "inference-log", small, "--retain-content")
    big_peak = _peak_kib(annex, "collect", "inference-log", big, "--retain-content")
    print(f"peak RSS: {small_peak} KiB for 1,000 lines, {big_peak} KiB for {lines:,} lines")
    assert big_peak < small_peak + 24 * 1024  # 250 MB of log, at most 24 MiB more
    with Home(fresh).open_store() as store:
        logged = store.get(store.size() - 1).statement["predicate"]
    assert logged["requests"] == lines
