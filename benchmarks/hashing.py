"""Model hashing benchmark: run by hand, prints figures; not a test.

    python benchmarks/hashing.py                 # a 4 GiB model directory in 4 shards
    python benchmarks/hashing.py --size-gib 8 --shards 6
    python benchmarks/hashing.py --quick         # 0.5 GiB, one run each

Hashes the same freshly written model directory three ways, in the same run: Annex
(collectors.hashing.build_manifest), model-signing's own hashing (model_signing.hashing,
file serialization, SHA-256, its defaults) and one-process hashlib SHA-256; each from a warm
page cache and from a cold one, best of a few runs (the slow runs measure the neighbours on a
shared machine). Cold means the files' pages were dropped before each run: by writing
/proc/sys/vm/drop_caches when allowed (root), else by fsync and posix_fadvise(DONTNEED) on each
file; the output says which. Then it re-sweeps the unchanged directory with the digest cache.

Targets (issue 3): Annex at least model-signing's throughput warm and cold (ratio >= 1.0, aim
1.2); a re-sweep of an unchanged 4 GiB directory in under 0.2 s.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collectors.hash_cache import HashCache
from collectors.hashing import CHUNK_BYTES, build_manifest

GIB = 1 << 30
DROP_CACHES = Path("/proc/sys/vm/drop_caches")


def write_model(root: Path, size: int, shards: int) -> list[Path]:
    """`shards` weight files of random bytes summing to `size`, plus small config files."""
    root.mkdir(parents=True)
    per = size // shards
    files = []
    for i in range(shards):
        block = os.urandom(64 << 20)  # repeated within a shard; SHA-256 cannot tell
        path = root / f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        with path.open("wb") as out:
            for start in range(0, per, len(block)):
                out.write(block[: min(len(block), per - start)])
        files.append(path)
    for name, text in {"config.json": "{}", "tokenizer.json": '{"model": {}}'}.items():
        (root / name).write_text(text)
        files.append(root / name)
    return files


def drop_cache(files: list[Path]) -> None:
    if can_drop_all():
        os.sync()
        DROP_CACHES.write_text("3\n")
        return
    for path in files:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def can_drop_all() -> bool:
    return os.geteuid() == 0 and os.access(DROP_CACHES, os.W_OK)


# -- the three ways --------------------------------------------------------------------------------


def annex(root: Path) -> dict[str, str]:
    return {f.path: f.sha256 for f in build_manifest(root).files}


def model_signing(root: Path) -> dict[str, str]:
    from model_signing import hashing

    manifest = hashing.Config().use_file_serialization(hashing_algorithm="sha256").hash(root)
    return {d.identifier: d.digest.digest_hex for d in manifest.resource_descriptors()}


def one_process(root: Path) -> dict[str, str]:
    """hashlib on one thread, one file after another, reads of CHUNK_BYTES into one buffer."""
    buffer = bytearray(CHUNK_BYTES)
    view = memoryview(buffer)
    digests = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        hasher = hashlib.sha256()
        with path.open("rb", buffering=0) as handle:
            while n := handle.readinto(buffer):
                hasher.update(view[:n])
        digests[path.relative_to(root).as_posix()] = hasher.hexdigest()
    return digests


METHODS: dict[str, Callable[[Path], dict[str, str]]] = {
    "annex": annex,
    "model-signing": model_signing,
    "hashlib, 1 process": one_process,
}


def measure(root: Path, files: list[Path], runs: int, cold: bool) -> dict[str, float]:
    """Best seconds per method; methods interleaved so each round shares the same neighbours."""
    best: dict[str, float] = {}
    expected: dict[str, str] | None = None
    for _ in range(runs):
        for name, method in METHODS.items():
            if cold:
                drop_cache(files)
            start = time.perf_counter()
            digests = method(root)
            seconds = time.perf_counter() - start
            expected = expected or digests
            if digests != expected:
                raise SystemExit(f"{name} disagrees with the other methods' digests")
            best[name] = min(best.get(name, seconds), seconds)
    return best


def resweep(root: Path, cache_dir: Path, runs: int) -> tuple[float, float]:
    """Seconds for the first sweep with an empty cache, and the best re-sweep of unchanged files."""
    with HashCache(cache_dir / "hashes.sqlite") as cache:
        start = time.perf_counter()
        first = build_manifest(root, cache=cache)
        populate = time.perf_counter() - start
        best = float("inf")
        for _ in range(runs):
            start = time.perf_counter()
            again = build_manifest(root, cache=cache)
            best = min(best, time.perf_counter() - start)
            assert again == first
    return populate, best


def report(title: str, seconds: dict[str, float], size: int) -> None:
    rates = {name: size / s / 1e9 for name, s in seconds.items()}
    print(f"\n{title}")
    for name, value in rates.items():
        print(f"  {name:20s} {value:6.2f} GB/s   ({seconds[name]:.2f} s)")
    ours = rates["annex"]
    print(f"  annex / model-signing   {ours / rates['model-signing']:.2f}")
    print(f"  annex / hashlib 1 proc  {ours / rates['hashlib, 1 process']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-gib", type=float, default=4.0)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="0.5 GiB, one run of each")
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: temp)")
    args = parser.parse_args()
    size_gib, runs = (0.5, 1) if args.quick else (args.size_gib, args.runs)
    size = int(size_gib * GIB) // args.shards * args.shards
    work = Path(tempfile.mkdtemp(prefix="annex-hash-bench-", dir=args.dir))
    try:
        root = work / "model"
        print(f"writing {size / GIB:.2f} GiB in {args.shards} shards under {root} ...")
        files = write_model(root, size, args.shards)
        total = sum(p.stat().st_size for p in files)
        how = "drop_caches (root)" if can_drop_all() else "fsync + posix_fadvise(DONTNEED)"
        print(f"{os.cpu_count()} CPUs; cold runs by {how}; best of {runs}")
        measure(root, files, 1, cold=False)  # warm the page cache and the imports
        report("warm page cache", measure(root, files, runs, cold=False), total)
        report("cold page cache", measure(root, files, runs, cold=True), total)
        populate, again = resweep(root, work / "cache", max(runs, 3))
        print(f"\nre-sweep with the digest cache: first {populate:.2f} s, unchanged {again:.4f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
