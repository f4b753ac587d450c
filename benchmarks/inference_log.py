"""Inference-log ingest: lines per second and peak memory, beside a plain json.loads loop.

Generates an OpenAI-style JSON Lines log (chat messages, choices, usage, latency, 1,000 callers,
three models), then, each in its own process so that peak RSS is that run's alone:
- `json.loads` over every line of the file (the floor any Python ingest pays);
- `annex collect inference-log FILE` (without, then with, --retain-content) into a fresh home.

    python benchmarks/inference_log.py --lines 1000000 5000000
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LOADS_LOOP = """
import json, sys
n = 0
with open(sys.argv[1], "rb") as f:
    for line in f:
        json.loads(line)
        n += 1
print(n)
"""


def generate(path: Path, lines: int, *, seed: int = 7) -> None:
    """A log of `lines` requests, about 700 bytes each."""
    rng = random.Random(seed)
    words = [f"w{n:03d}" for n in range(400)]
    models = ["llama-3.1-8b-instruct", "mistral-7b-instruct", "qwen2.5-7b-support-lora"]
    with path.open("w", encoding="utf-8") as f:
        for i in range(lines):
            prompt = " ".join(rng.choices(words, k=30))
            answer = " ".join(rng.choices(words, k=50))
            record = {
                "timestamp": f"2026-11-02T{i // 3_600_000 % 24:02d}:{i // 60_000 % 60:02d}:"
                f"{i // 1000 % 60:02d}.{i % 1000:03d}Z",
                "request_id": f"chatcmpl-{i:012d}",
                "model": models[i % 3],
                "user": f"user-{rng.randrange(1000):04d}@example.com",
                "messages": [
                    {"role": "system", "content": "You are a helpful assistant."},
                    {"role": "user", "content": prompt},
                ],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": answer},
                        "finish_reason": "content_filter" if i % 997 == 0 else "stop",
                    }
                ],
                "usage": {"prompt_tokens": 40 + i % 50, "completion_tokens": 60 + i % 80},
                "latency_ms": round(rng.lognormvariate(5.5, 0.6), 1),
                "status": 500 if i % 1009 == 0 else 200,
            }
            f.write(json.dumps(record, separators=(",", ":")) + "\n")


def run(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, int, str]:
    """Wall seconds, peak RSS (bytes) and stdout of one child process."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        child = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        out.seek(0)
        text = out.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{argv[:3]} failed:\n{text}")
    return wall, usage.ru_maxrss * 1024, text


def annex_argv() -> list[str]:
    script = Path(sys.executable).with_name("annex")
    return [str(script)] if script.exists() else [sys.executable, "-m", "api.cli"]


def measure(lines: int, work: Path) -> None:
    log = work / f"log-{lines}.jsonl"
    start = time.perf_counter()
    generate(log, lines)
    size = log.stat().st_size
    print(
        f"\n{lines:,} lines, {size / 2**20:,.0f} MiB generated in "
        f"{time.perf_counter() - start:.1f} s"
    )
    wall, rss, _ = run([sys.executable, "-c", LOADS_LOOP, str(log)])
    loads_rate = lines / wall
    print(f"  json.loads loop           {loads_rate:>10,.0f} lines/s  peak {rss / 2**20:6.0f} MiB")
    for label, extra in (("annex ingest", []), ("annex ingest, retained", ["--retain-content"])):
        home = work / f"home-{lines}-{len(extra)}"
        env = {**os.environ, "ANNEX_HOME": str(home)}
        run([*annex_argv(), "init", "--no-model-signing-key"], env)
        wall, rss, _ = run([*annex_argv(), "collect", "inference-log", str(log), *extra], env)
        rate = lines / wall
        print(
            f"  {label:<25} {rate:>10,.0f} lines/s  peak {rss / 2**20:6.0f} MiB  "
            f"({rate / loads_rate:.0%} of json.loads)"
        )
        shutil.rmtree(home)
    log.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--dir", type=Path, default=None, help="work directory (default: tmp)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for n in args.lines:
            measure(n, Path(tmp))


if __name__ == "__main__":
    main()
