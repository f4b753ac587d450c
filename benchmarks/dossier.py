"""Dossier benchmark: an Annex IV dossier for a system whose evidence spans 10,000 entries.

Run by hand; prints figures, not a test. Builds the demo log, then adds evidence for the demo
system with the real collectors (oversight feeds, inference-log batches, GPU inventories from the
fake NVML fleet) until the log holds --entries entries. Then, each in its own process so that
peak RSS (the process and its render child) is that run's alone:
- `dossier`: build the Annex IV document and issue it (bundle, PDF/A-3b, REPORT entry);
- `naive`: the same entries as one WeasyPrint table, one row per entry (the peer to beat).

    python benchmarks/dossier.py                  # 10,000 entries
    python benchmarks/dossier.py --entries 2000   # quicker

Target (issue 6): the dossier in < 20 s and < 600 MiB on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SYSTEM = "annex-demo"


def build(home_path: Path, entries: int) -> None:
    """The demo, then oversight events, inference batches and GPU inventories up to `entries`."""
    from api import demo
    from api.cli_oversight import reviewer_pseudonyms
    from collectors.gpu import collect_gpu
    from collectors.inference_log import DEFAULT_CLASS, RetentionPolicy, ingest
    from collectors.nvml_fake import fleet
    from collectors.oversight import ingest_feed
    from evidence.blobs import BlobStore
    from evidence.home import Home
    from evidence.keys import utc_now
    from evidence.vault import Vault
    from schemas.gpu import SiteLabels

    demo.run(home_path, None)
    home = Home(home_path)
    with home.open_store() as store:
        batch = store.query(predicate_type="https://annex.dev/predicates/inference-batch/v1")[0]
        left = entries - store.size()
    now = utc_now().replace(microsecond=0)
    per_kind = max(left, 0) // 10
    work = Path(tempfile.mkdtemp(dir=home_path))
    # 60%: oversight events over eight weeks, in feeds of 1,000 events.
    events = per_kind * 6
    actions = ["review", "approve", "approve", "override", "review", "reverse", "escalate"]
    for start in range(0, events, 1000):
        lines = []
        for n in range(start, min(start + 1000, events)):
            at = now - timedelta(minutes=8 * 7 * 24 * 60 * n // max(events, 1))
            lines.append(
                json.dumps(
                    {
                        "action": actions[n % len(actions)],
                        "reviewer": f"reviewer-{n % 40}@example.invalid",
                        "reason": f"benchmark event {n}",
                        "at": at.isoformat().replace("+00:00", "Z"),
                        "batch": batch.index,
                        "system": SYSTEM,
                    }
                )
            )
        data = ("\n".join(lines) + "\n").encode()
        with home.open_store(write=True) as store, reviewer_pseudonyms(home) as pseudonymise:
            ingest_feed(store, data, source=f"feed-{start}", pseudonymise=pseudonymise, now=now)
    # 30%: inference batches of two lines each, served by the demo adapter.
    log = work / "gateway.jsonl"
    from api.demo_data import write_inference_log
    from api.demo_model import ADAPTER_NAME

    write_inference_log(log, model=ADAPTER_NAME, start=now - timedelta(days=30))
    lines = log.read_text().splitlines()
    batches = per_kind * 3
    with log.open("w") as out:
        for n in range(batches * 2):
            record = json.loads(lines[n % len(lines)])
            record["id"] = f"bench-{n}"
            out.write(json.dumps(record) + "\n")
    policy = RetentionPolicy(content=False, name=DEFAULT_CLASS, days=184)
    with home.open_store(write=True) as store, Vault.open(home_path / "vault") as vault:
        ingest(
            store,
            vault,
            BlobStore(home_path / "blobs"),
            log,
            retention=policy,
            now=now,
            batch_size=2,
        )
    # the rest: GPU inventories of a four-card fleet.
    with home.open_store(write=True) as store:
        size = store.size()
        statements = [
            collect_gpu(fleet(), site=SiteLabels(site="bench"), now=now - timedelta(hours=i))
            for i in range(max(entries - size, 0))
        ]
        for i in range(0, len(statements), 500):
            store.append(statements[i : i + 500])


def run_dossier(home_path: Path, out: Path) -> dict[str, Any]:
    from evidence.home import Home
    from reports.annex_iv import build_annex_iv
    from reports.dossier import issue

    home = Home(home_path)
    started = time.perf_counter()
    with home.open_store(write=True) as store:
        doc = build_annex_iv(store, SYSTEM)
        built = time.perf_counter() - started
        issued = issue(store, doc, out, trust_json=home.trust_path.read_bytes())
    return {
        "seconds": time.perf_counter() - started,
        "build_seconds": built,
        "citations": issued.citations,
        "pdf_bytes": out.stat().st_size,
        "bundle_bytes": issued.bundle.stat().st_size,
    }


def run_naive(home_path: Path, out: Path) -> dict[str, Any]:
    """Every entry as one table row, rendered the same way (PDF/A-3b, in a bounded child)."""
    from evidence.home import Home
    from reports.document import Citation, Document, Item, Point, Section, Source, Table
    from reports.render import RenderLimits, render_pdf_bytes, write_atomically
    from reports.systems import latest_card

    home = Home(home_path)
    started = time.perf_counter()
    with home.open_store() as store:
        card = latest_card(store, SYSTEM)
        rows = []
        first = None
        after = None
        while page := store.query(after=after, limit=1000):
            for e in page:
                first = first or e
                rows.append(
                    (
                        str(e.index),
                        e.predicate_type.split("/")[-2],
                        e.leaf_hash.hex()[:16],
                        e.keyid[:12],
                        e.logged_at.isoformat(timespec="seconds"),
                    )
                )
            after = page[-1].index
        cp = store.checkpoint()
        origin = store.origin
    from reports.document import CheckpointRef, SystemRef

    assert first is not None
    table = Table(("index", "kind", "leaf", "signer", "logged at"), tuple(rows))
    item = Item(Source.COLLECTED, "every entry", (table,), (Citation.of(first),))
    doc = Document(
        kind="annex-iv",
        title="Naive listing",
        subtitle="one row per entry",
        generated_at=cp.issued_at,
        checkpoint=CheckpointRef(origin, cp.size, cp.root.hex(), cp.note, cp.issued_at),
        sections=(Section("Entries", (Point("1", "All entries", "", (item,)),)),),
        system=SystemRef(SYSTEM, card.card.name, card.card.version, card.card.provider.name),
    )
    limits = RenderLimits(seconds=1800, max_memory_bytes=None)
    write_atomically(out, render_pdf_bytes(doc, limits=limits))
    return {"seconds": time.perf_counter() - started, "rows": len(rows)}


def peak_mib() -> dict[str, float]:
    """Peak RSS of this process and of its largest child (the renderer), and the larger."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"peak_mib": max(own, child), "own_mib": own, "child_mib": child}


def phase(name: str, home: Path, out: Path) -> dict[str, Any]:
    """Runs one phase in a fresh process and returns its figures and peak RSS."""
    done = subprocess.run(
        [sys.executable, __file__, "--phase", name, "--home", str(home), "--out", str(out)],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--phase", choices=["build", "dossier", "naive"], help=argparse.SUPPRESS)
    parser.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase == "build":
        build(args.home, args.entries)
        return
    if args.phase:
        run = run_dossier if args.phase == "dossier" else run_naive
        result = run(args.home, args.out)
        print(json.dumps({**result, **peak_mib()}))
        return
    work = args.dir or Path(tempfile.mkdtemp(prefix="annex-dossier-bench-"))
    home = work / "home"
    started = time.perf_counter()
    # Built in a child too: a process started by a big parent inherits its peak RSS figure.
    subprocess.run(
        [
            sys.executable,
            __file__,
            "--phase",
            "build",
            "--home",
            str(home),
            "--entries",
            str(args.entries),
        ],
        check=True,
        capture_output=True,
    )
    from evidence.home import Home

    with Home(home).open_store() as store:
        size = store.size()
    print(f"log of {size:,} entries built in {time.perf_counter() - started:.1f} s ({work})")
    dossier = phase("dossier", home, work / "dossier.pdf")
    print(
        f"  dossier          {dossier['seconds']:6.1f} s  peak {dossier['peak_mib']:5.0f} MiB  "
        f"(builder {dossier['own_mib']:.0f}, renderer {dossier['child_mib']:.0f}) "
        f"(document {dossier['build_seconds']:.1f} s; {dossier['citations']:,} entries cited; "
        f"PDF {dossier['pdf_bytes'] / 2**20:.1f} MiB, "
        f"bundle {dossier['bundle_bytes'] / 2**20:.1f} MiB)"
    )
    if args.skip_naive:
        return
    naive = phase("naive", home, work / "naive.pdf")
    print(
        f"  naive table      {naive['seconds']:6.1f} s  peak {naive['peak_mib']:5.0f} MiB  "
        f"({naive['rows']:,} rows)"
    )
    print(
        f"  dossier / naive: {dossier['seconds'] / naive['seconds']:.2f} of the time, "
        f"{dossier['peak_mib'] / naive['peak_mib']:.2f} of the memory; "
        f"target < 20 s and < 600 MiB"
    )


if __name__ == "__main__":
    main()
