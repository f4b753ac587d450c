"""REST API load benchmark over loopback: run by hand, prints figures; not a test.

    python benchmarks/api_load.py                       # 500 req/s for 10 s, 3,000 envelopes
    python benchmarks/api_load.py --rate 200 --seconds 5 --ingest-count 500 --json
    python benchmarks/api_load.py --postgres postgresql://postgres@127.0.0.1:5432/postgres

It starts `annex serve` (uvicorn, one process) on a free loopback port with a fresh data
directory holding --prefill entries (in SQLite; with --postgres, in fresh databases on that
server, dropped at the end), then drives it from this process with a minimal keep-alive
HTTP/1.1 client, which leaves the server nearly all the CPU:

1. reads: GET /entries/{i} and GET /entries/{i}/proof, alternating, on an open-loop schedule
   at --rate requests a second for --seconds. Each request's latency runs from the time the
   schedule said to send it, not from when a free connection let it go, so a server that falls
   behind is charged for the queue it builds (no coordinated omission).
2. ingest: --ingest-count DSSE envelopes, signed beforehand by a collector key the server
   trusts, POSTed by --clients concurrent clients as fast as they are answered, while a poller
   reads /checkpoint every 0.2 s to see how often a new signed checkpoint appears; once for
   each count of clients given (default 8, 32 and 64, each with envelopes of its own). Few
   clients measure the latency of a round trip (each waits for its commit); many, the
   server's throughput.
3. the store's own append rate for the same envelopes, in this process, into a fresh log:
   one envelope a batch (what one POST does) and all in one batch.

Targets (the API issue), on 2 cores with the load generator on the same machine: GET entry p99
< 25 ms at 500 req/s; HTTP ingest >= 1,500 envelopes/s with a checkpoint at least every second.
The machine's load average is printed before and after: other work on it moves every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from api.auth import TokenFile  # noqa: E402
from evidence.canonical import canonical_bytes  # noqa: E402
from evidence.dsse import Envelope, sign_envelope  # noqa: E402
from evidence.home import Home  # noqa: E402
from evidence.keys import Signer  # noqa: E402

API = "/api/v1"
ORIGIN = "bench.example/api-load"
COLLECTOR = "bench-gpu-node"
ENTRY_P99_MS = 25.0
TARGET_RATE = 500.0
INGEST_TARGET = 1500.0
CHECKPOINT_GAP_S = 1.0
POLL_S = 0.2
REQUEST_TIMEOUT_S = 30.0


# What the benchmark's collector posts, and so is registered to sign.
COLLECTOR_KINDS = tuple(
    f"https://annex.dev/predicates/{k}/v1" for k in ("benchmark", "bench-ingest")
)


def statement(i: int, kind: str = "benchmark") -> dict[str, Any]:
    """About 400 bytes, like benchmarks/store.py's: a small piece of evidence."""
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [
            {"name": f"model/file-{i}", "digest": {"sha256": hashlib.sha256(b"%d" % i).hexdigest()}}
        ],
        "predicateType": f"https://annex.dev/predicates/{kind}/v1",
        "predicate": {
            "observedAt": "2026-11-24T08:00:00Z",
            "host": "gpu-node-01",
            "sequence": i,
            "labels": ["bench", "annex"],
        },
    }


# -- the server ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    base: str
    read_token: str
    write_token: str
    pid: int

    def cpu_seconds(self) -> float:
        """The server process's user + system CPU time so far (Linux /proc)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def prepare_home(path: Path, prefill: int, collector: Signer, url: str | None) -> Home:
    home = Home(path, url)
    home.init(ORIGIN, model_signing_name=None)
    with home.open_store(write=True) as store:
        for start in range(0, prefill, 1000):
            store.append([statement(i) for i in range(start, min(prefill, start + 1000))])
    home.add_collector_key(COLLECTOR, collector.public_bytes, COLLECTOR_KINDS)
    return home


@contextmanager
def serving(home: Home, log: Path) -> Iterator[Server]:
    """`annex serve` in a subprocess on a free loopback port, stopped on the way out."""
    tokens = TokenFile(home.path)
    read_token, write_token = tokens.create("read")[1], tokens.create("write")[1]
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ANNEX_HOME": str(home.path)}
    for name in ("ANNEX_DATABASE_URL", "ANNEX_KEY_PASSPHRASE", "ANNEX_KEY_PASSPHRASE_FILE"):
        env.pop(name, None)
    if home.database_url is not None:
        env["ANNEX_DATABASE_URL"] = home.database_url
    command = [sys.executable, "-c", "from api.cli import main; main()"]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*command, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, process, log)
        yield Server(base, read_token, write_token, process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_ready(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"annex serve exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(base + API + "/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"annex serve was not ready within 30 s:\n{log.read_text()}")


# -- a small HTTP/1.1 client -----------------------------------------------------------------------


class Pool:
    """Keep-alive HTTP/1.1 connections to the server, taken one request at a time.

    A generic client (httpx) costs a few milliseconds of CPU a request here, so with it the load
    generator, not the server, would set the rate; this writes a request and reads a response by
    its Content-Length, nothing more. A request waiting for a free connection is still on the
    clock of whoever measures it.
    """

    def __init__(self, base: str, token: str, size: int) -> None:
        host, port = base.removeprefix("http://").split(":")
        self.host, self.port, self.token, self.size = host, int(port), token, size
        self.free: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )

    async def __aenter__(self) -> Pool:
        for _ in range(self.size):
            self.free.put_nowait(await asyncio.open_connection(self.host, self.port))
        return self

    async def __aexit__(self, *exc: object) -> None:
        while not self.free.empty():
            _, writer = self.free.get_nowait()
            writer.close()

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        reader, writer = await self.free.get()
        try:
            head = (
                f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
                f"Authorization: Bearer {self.token}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            )
            writer.write(head.encode() + body)
            status, length = await _read_head(reader)
            payload = await reader.readexactly(length)
        except BaseException:
            writer.close()
            self.free.put_nowait(await asyncio.open_connection(self.host, self.port))
            raise
        self.free.put_nowait((reader, writer))
        return status, payload


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, int]:
    lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            return status, int(value)
    raise OSError(f"no Content-Length in the answer: {lines[0]}")


# -- reads at a fixed rate -------------------------------------------------------------------------


@dataclass
class Latencies:
    """Per route: seconds from each request's scheduled send time to its answer."""

    seconds: dict[str, list[float]] = field(default_factory=lambda: {"entry": [], "proof": []})
    errors: dict[str, int] = field(default_factory=lambda: {"entry": 0, "proof": 0})
    elapsed: float = 0.0


async def read_load(
    server: Server, size: int, rate: float, seconds: float, connections: int
) -> Latencies:
    """Open loop: request k is due at start + k/rate whatever happened to the ones before it."""
    result = Latencies()
    total = int(rate * seconds)
    async with Pool(server.base, server.read_token, connections) as pool:
        start = time.perf_counter()
        tasks = []
        for k in range(total):
            due = start + k / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            route = "entry" if k % 2 == 0 else "proof"
            index = (k * 7919) % size  # spread over the log, the same sequence every run
            tasks.append(asyncio.create_task(_one_read(pool, route, index, due, result)))
        await asyncio.gather(*tasks)
        result.elapsed = time.perf_counter() - start
    return result


async def _one_read(pool: Pool, route: str, index: int, due: float, into: Latencies) -> None:
    path = f"{API}/entries/{index}" + ("/proof" if route == "proof" else "")
    try:
        status, _ = await asyncio.wait_for(pool.request("GET", path), REQUEST_TIMEOUT_S)
        ok = status == 200
    except (OSError, asyncio.IncompleteReadError, TimeoutError):
        ok = False  # counted as an error, its latency as measured when given up
    into.seconds[route].append(time.perf_counter() - due)
    if not ok:
        into.errors[route] += 1


# -- ingest ----------------------------------------------------------------------------------------


@dataclass
class Ingest:
    appended: int = 0
    refused: int = 0
    elapsed: float = 0.0
    checkpoints: list[tuple[float, int, str]] = field(default_factory=list)  # (t, size, issued)


async def ingest_load(server: Server, bodies: list[bytes], clients: int, limit_s: float) -> Ingest:
    """Each client posts its next envelope as soon as the previous one is answered."""
    result = Ingest()
    pending = iter(bodies)
    async with (
        Pool(server.base, server.write_token, clients) as writers,
        Pool(server.base, server.read_token, 1) as reader,
    ):
        start = time.perf_counter()
        stop_at = start + limit_s
        done = asyncio.Event()
        poller = asyncio.create_task(_poll_checkpoints(reader, start, done, result))

        async def post_until_empty() -> None:
            for body in pending:
                if time.perf_counter() > stop_at:
                    return
                status, _ = await asyncio.wait_for(
                    writers.request("POST", API + "/entries", body), REQUEST_TIMEOUT_S
                )
                if status == 201:
                    result.appended += 1
                else:
                    result.refused += 1

        await asyncio.gather(*(post_until_empty() for _ in range(clients)))
        result.elapsed = time.perf_counter() - start
        done.set()
        await poller
    return result


async def _poll_checkpoints(pool: Pool, start: float, done: asyncio.Event, into: Ingest) -> None:
    while not done.is_set():
        status, body = await pool.request("GET", API + "/checkpoint?format=json")
        if status == 200:
            seen = json.loads(body)
            into.checkpoints.append((time.perf_counter() - start, seen["size"], seen["issued_at"]))
        with suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), POLL_S)


def checkpoint_gaps(seen: list[tuple[float, int, str]], elapsed: float) -> dict[str, Any]:
    """How long the poller saw the same checkpoint: the longest run without a new one."""
    changes = [t for k, (t, size, _) in enumerate(seen) if k == 0 or size != seen[k - 1][1]]
    marks = [0.0, *changes, elapsed]
    longest = max((b - a for a, b in itertools.pairwise(marks)), default=elapsed)
    return {"polls": len(seen), "new_checkpoints_seen": len(changes), "longest_gap_s": longest}


# -- the store in this process ---------------------------------------------------------------------


def store_rates(
    path: Path, envelopes: list[Envelope], collector: Signer, databases: Databases
) -> dict[str, float]:
    """The same envelopes appended in-process into fresh logs: one a batch, and all in one."""
    rates = {}
    for name, batch in (("batch_1", 1), ("batch_all", len(envelopes))):
        home = Home(path / name, databases.new())
        home.init(ORIGIN, model_signing_name=None)
        home.add_collector_key(COLLECTOR, collector.public_bytes, COLLECTOR_KINDS)
        with home.open_store(write=True) as store:
            start = time.perf_counter()
            for k in range(0, len(envelopes), batch):
                store.append_envelopes(envelopes[k : k + batch])
            rates[name] = len(envelopes) / (time.perf_counter() - start)
    return rates


# -- the run ---------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 10) - 1]


def run(args: argparse.Namespace) -> dict[str, Any]:
    collector = Signer.generate(COLLECTOR)
    envelopes = [
        sign_envelope(canonical_bytes(statement(10**9 + i, "bench-ingest")), collector)
        for i in range(args.ingest_count * len(args.clients))
    ]
    bodies = [json.dumps(e.to_dict()).encode() for e in envelopes]
    count = args.ingest_count
    load_before = os.getloadavg()
    with (
        tempfile.TemporaryDirectory(prefix="annex-api-load-") as tmp,
        Databases(args.postgres) as databases,
    ):
        home = prepare_home(Path(tmp) / "served", args.prefill, collector, databases.new())
        size = args.prefill + 1  # the key event at 0
        with serving(home, Path(tmp) / "serve.log") as server:
            cpu: dict[str, dict[str, float]] = {}
            with cpu_of(server, cpu, "reads"):
                reads = asyncio.run(
                    read_load(server, size, args.rate, args.seconds, args.connections)
                )
            ingests = []
            for n, clients in enumerate(args.clients):
                mine = bodies[n * count : (n + 1) * count]
                with cpu_of(server, cpu, f"ingest, {clients} clients"):
                    done = asyncio.run(ingest_load(server, mine, clients, args.ingest_seconds))
                ingests.append((clients, done))
        in_process = store_rates(Path(tmp) / "in-process", envelopes[:count], collector, databases)
    figures = report(args, reads, ingests, in_process, load_before, os.getloadavg())
    return {**figures, "cores_used": cpu}


class Databases:
    """None (SQLite in the data directory) each time; with a PostgreSQL server URL, a fresh
    database on it each time, all dropped at the end."""

    def __init__(self, server: str | None) -> None:
        self.server = server
        self.made: list[str] = []

    def __enter__(self) -> Databases:
        return self

    def new(self) -> str | None:
        if self.server is None:
            return None
        name = f"annex_load_{os.getpid()}_{len(self.made)}"
        self._admin(f"CREATE DATABASE {name}")
        self.made.append(name)
        return self.server.rsplit("/", 1)[0] + "/" + name

    def __exit__(self, *exc: object) -> None:
        for name in self.made:
            self._admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def _admin(self, sql: str) -> None:
        from sqlalchemy import create_engine, text

        assert self.server is not None
        engine = create_engine(self.server, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(sql))
        engine.dispose()


@contextmanager
def cpu_of(server: Server, into: dict[str, dict[str, float]], phase: str) -> Iterator[None]:
    """Cores the server and this load generator each kept busy during a phase, on average."""
    client, served, wall = time.process_time(), server.cpu_seconds(), time.perf_counter()
    yield
    wall = time.perf_counter() - wall
    into[phase] = {
        "server": (server.cpu_seconds() - served) / wall,
        "load_generator": (time.process_time() - client) / wall,
    }


def report(
    args: argparse.Namespace,
    reads: Latencies,
    ingests: list[tuple[int, Ingest]],
    in_process: dict[str, float],
    load_before: tuple[float, float, float],
    load_after: tuple[float, float, float],
) -> dict[str, Any]:
    routes = {}
    for route, values in reads.seconds.items():
        routes[route] = {
            "requests": len(values),
            "errors": reads.errors[route],
            "p50_ms": 1000 * percentile(values, 50),
            "p99_ms": 1000 * percentile(values, 99),
            "max_ms": 1000 * max(values, default=float("nan")),
        }
    done = sum(len(v) for v in reads.seconds.values())
    return {
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "cpus": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": load_after,
        "reads": {"achieved_rate": done / reads.elapsed, "elapsed_s": reads.elapsed, **routes},
        "ingest": [
            {
                "clients": clients,
                **{k: v for k, v in asdict(ingest).items() if k != "checkpoints"},
                "rate": ingest.appended / ingest.elapsed if ingest.elapsed else 0.0,
                **checkpoint_gaps(ingest.checkpoints, ingest.elapsed),
            }
            for clients, ingest in ingests
        ],
        "store_in_process": in_process,
    }


def print_table(figures: dict[str, Any]) -> None:
    s, reads, ingest = figures["settings"], figures["reads"], figures["ingest"]
    store = figures["store_in_process"]
    print(
        f"{figures['cpus']} CPUs; load average {figures['load_average_before'][0]:.2f} before, "
        f"{figures['load_average_after'][0]:.2f} after; log of {s['prefill'] + 1} entries in "
        f"{'PostgreSQL' if s['postgres'] else 'SQLite'}"
    )
    print(
        f"reads: {s['rate']:.0f} req/s scheduled for {s['seconds']} s, achieved "
        f"{reads['achieved_rate']:.0f} req/s"
    )
    print("| what | p50 | p99 | max | errors | target |")
    print("| --- | --- | --- | --- | --- | --- |")
    for route, target in (("entry", f"p99 < {ENTRY_P99_MS:.0f} ms"), ("proof", "")):
        r = reads[route]
        ratio = f" ({r['p99_ms'] / ENTRY_P99_MS:.2f}x the limit)" if target else ""
        print(
            f"| GET {route} | {r['p50_ms']:.1f} ms | {r['p99_ms']:.1f} ms | {r['max_ms']:.1f} ms "
            f"| {r['errors']} / {r['requests']} | {target}{ratio} |"
        )
    print()
    print(f"ingest: {s['ingest_count']} envelopes for each count of clients")
    print("| what | rate | against |")
    print("| --- | --- | --- |")
    for run in ingest:
        print(
            f"| HTTP ingest, {run['clients']} clients | {run['rate']:,.0f}/s | "
            f"{run['rate'] / INGEST_TARGET:.0%} of the {INGEST_TARGET:,.0f}/s target; "
            f"{run['rate'] / store['batch_1']:.0%} of the store, batch 1; "
            f"{run['refused']} refused |"
        )
    print(f"| store, in process, batch 1 | {store['batch_1']:,.0f}/s | what one POST does |")
    print(f"| store, in process, one batch | {store['batch_all']:,.0f}/s | |")
    for phase, used in figures["cores_used"].items():
        print(
            f"cores busy during {phase}: server {used['server']:.2f}, "
            f"load generator {used['load_generator']:.2f}"
        )
    for run in ingest:
        print(
            f"checkpoints, {run['clients']} clients: {run['new_checkpoints_seen']} new ones seen "
            f"in {run['polls']} polls; longest gap {run['longest_gap_s']:.2f} s "
            f"(target <= {CHECKPOINT_GAP_S:.0f} s)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=TARGET_RATE, help="reads a second")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long the reads run")
    parser.add_argument("--prefill", type=int, default=10_000, help="entries in the log")
    parser.add_argument("--connections", type=int, default=32, help="reader connections")
    parser.add_argument("--ingest-count", type=int, default=3_000, help="envelopes to POST")
    parser.add_argument(
        "--clients",
        type=int,
        nargs="+",
        default=[8, 32, 64],
        help="concurrent ingest clients: one ingest run for each count",
    )
    parser.add_argument("--ingest-seconds", type=float, default=60.0, help="ingest time limit")
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="a PostgreSQL server URL whose user may create databases: the served log and the "
        "in-process ones go there (default: SQLite in the temporary data directory)",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    if args.rate <= 0 or args.seconds <= 0 or args.prefill < 1 or args.ingest_count < 1:
        parser.error("--rate, --seconds, --prefill and --ingest-count must be positive")
    if min(args.clients) < 1:
        parser.error("--clients must be positive")
    figures = run(args)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print_table(figures)


if __name__ == "__main__":
    main()
