"""Evidence store benchmark: run by hand, prints figures; not a test.

    python benchmarks/store.py            # full run, grows a log to 10^6 entries (a few minutes)
    python benchmarks/store.py --quick    # up to 10^5 entries

Machines are shared and noisy, so every rate is printed beside the raw Ed25519 rate measured
in the same run, on one thread and on every core, and as a ratio to them. Targets (issue 2):
batched signed append >= 70% of the raw signing rate, full verify >= 70% of the raw
verification rate, inclusion proof < 2 ms at 10^6 entries.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evidence.canonical import canonical_bytes
from evidence.dsse import Envelope, sign_envelope
from evidence.home import Home
from evidence.keys import Signer
from evidence.lookup import MERGE_EVERY
from evidence.parallel import map_chunked
from evidence.verify import verify_log

BENCH_KIND = "https://annex.dev/predicates/benchmark/v1"


def statement(i: int) -> dict[str, Any]:
    """A statement the size of a typical small piece of evidence (about 400 bytes)."""
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [
            {"name": f"model/file-{i}", "digest": {"sha256": hashlib.sha256(b"%d" % i).hexdigest()}}
        ],
        "predicateType": BENCH_KIND,
        "predicate": {
            "observedAt": "2026-11-24T08:00:00Z",
            "host": "gpu-node-01",
            "sequence": i,
            "labels": ["bench", "annex"],
        },
    }


GROWTH_BATCH = 1000
GROWTH_WINDOW = -(-MERGE_EVERY // GROWTH_BATCH) * GROWTH_BATCH  # whole batches, one merge


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds else float("inf")


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def best(fn: Callable[[], float], runs: int = 3) -> float:
    """The best of a few runs: on a shared machine the slow ones measure the neighbours."""
    return max(fn() for _ in range(runs))


def raw_rates() -> dict[str, float]:
    signer = Signer.generate("bench.example/raw")
    public = signer.private_key.public_key()
    messages = [canonical_bytes(statement(i)) for i in range(20000)]
    sigs = [signer.sign(m) for m in messages]
    pairs = list(zip(sigs, messages, strict=True))[:8000]

    def verify(pair: tuple[bytes, bytes]) -> None:
        public.verify(*pair)

    return {
        "sign_1": best(
            lambda: rate(len(messages), timed(lambda: [signer.sign(m) for m in messages]))
        ),
        "sign_all": best(
            lambda: rate(len(messages), timed(lambda: map_chunked(signer.sign, messages)))
        ),
        "verify_1": best(lambda: rate(len(pairs), timed(lambda: [verify(p) for p in pairs]))),
        "verify_all": best(lambda: rate(len(pairs), timed(lambda: map_chunked(verify, pairs)))),
    }


def new_home(root: Path, name: str) -> Home:
    home = Home(root / name)
    home.init("bench.example/log")
    return home


def bench_append(root: Path, batch: int, total: int, run: int) -> float:
    home = new_home(root, f"append-{batch}-{run}")
    batches = [[statement(i + b) for i in range(batch)] for b in range(0, total, batch)]
    with home.open_store(write=True) as store:
        seconds = timed(lambda: [store.append(b) for b in batches])
    return rate(total, seconds)


def bench_ingest(root: Path, total: int) -> tuple[float, Home]:
    home = new_home(root, "ingest")
    collector = Signer.generate("gpu-node-01.example/collector")
    home.add_collector_key(collector.name, collector.public_bytes, [BENCH_KIND])
    envelopes = [sign_envelope(canonical_bytes(statement(i)), collector) for i in range(total)]
    dicts = [e.to_dict() for e in envelopes]  # as they arrive: parsed JSON
    with home.open_store(write=True) as store:

        def ingest() -> None:
            for b in range(0, total, 1000):
                store.append_envelopes([Envelope.from_dict(d) for d in dicts[b : b + 1000]])

        seconds = timed(ingest)
    return rate(total, seconds), home


def bench_verify(home: Home) -> float:
    with home.open_store() as store:
        start = time.perf_counter()
        report = verify_log(store, home.trust())
        return rate(report.size, time.perf_counter() - start)


def bench_proofs(root: Path, sizes: list[int], raw_sign: float) -> list[tuple[int, float, float]]:
    """Grows one log through each size in batches of 1000, timing the appends of the last
    MERGE_EVERY entries before each size (they include one merge of the recent lookup keys:
    evidence/lookup.py; appends slow down as the log grows: README, Performance); times random
    inclusion and consistency proofs at each size."""
    home = new_home(root, "proofs")
    out = []
    rng = random.Random(7)
    with home.open_store(write=True) as store:
        for target in sizes:
            timed_from = target - GROWTH_WINDOW
            appended, seconds = 0, 0.0
            while (have := store.size()) < target:
                n = min(GROWTH_BATCH, target - have)
                statements = [statement(have + i) for i in range(n)]
                spent = timed(lambda s=statements: store.append(s))
                if have >= timed_from:
                    appended, seconds = appended + n, seconds + spent
            size = store.size()
            inclusion, consistency = [], []
            for _ in range(300):
                index = rng.randrange(size)
                inclusion.append(timed(lambda i=index: store.inclusion_proof(i)))
                old = rng.randrange(1, size)
                consistency.append(timed(lambda o=old: store.consistency_proof(o)))
            out.append((size, statistics.median(inclusion), statistics.median(consistency)))
            grown = rate(appended, seconds)
            growth = (
                f"; appends (batch {GROWTH_BATCH}) of the {appended:,} entries before: "
                f"{grown:,.0f}/s = {grown / raw_sign:.0%} of raw signing"
                if appended >= 5 * GROWTH_BATCH  # the first size holds one batch, starting up
                else ""
            )
            print(
                f"  {size:>9,} entries: inclusion proof {out[-1][1] * 1e3:.3f} ms, "
                f"consistency proof {out[-1][2] * 1e3:.3f} ms (medians of 300){growth}",
                flush=True,
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="proof sizes up to 10^5 only")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    raw = raw_rates()
    print(
        f"raw Ed25519 ({'cryptography'}): sign {raw['sign_1']:,.0f}/s on one thread, "
        f"{raw['sign_all']:,.0f}/s on all cores; verify {raw['verify_1']:,.0f}/s, "
        f"{raw['verify_all']:,.0f}/s"
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        print("signed appends (SQLite, synchronous=FULL):")
        for batch, total in ((1, 300), (100, 10000), (1000, 30000)):
            runs = iter(range(3))
            r = best(lambda b=batch, t=total, n=runs: bench_append(root, b, t, next(n)))
            print(
                f"  batch {batch:>5}: {r:>9,.0f} entries/s = {r / raw['sign_1']:.0%} of raw "
                f"signing on one thread, {r / raw['sign_all']:.0%} of all cores"
            )
        r, home = bench_ingest(root, 20000)
        print(
            f"ingest of signed envelopes (batch 1000): {r:,.0f}/s = {r / raw['verify_1']:.0%} of "
            f"raw verification on one thread, {r / raw['verify_all']:.0%} of all cores"
        )
        r = best(lambda: bench_verify(home))
        print(
            f"full verify: {r:,.0f} entries/s = {r / raw['verify_1']:.0%} of raw verification "
            f"on one thread, {r / raw['verify_all']:.0%} of all cores"
        )
        sizes = [10**3, 10**4, 10**5] + ([] if args.quick else [10**6])
        print("proofs (one query of O(log n) stored hashes) and appends as the log grows:")
        bench_proofs(root, sizes, raw["sign_1"])


if __name__ == "__main__":
    main()
