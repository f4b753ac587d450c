"""Routes that take evidence in, and the lineage graph it builds.

- `POST /api/v1/lineage`: OpenLineage run events, on the path OpenLineage's HTTP transport posts
  to (`{url}/api/v1/lineage`, `Authorization: Bearer`, optionally `Content-Encoding: gzip`);
- `POST /api/v1/oversight/events`: a feed of human-oversight events;
- `POST /api/v1/inference/batches`: an inference log (JSON Lines), as batch digests;
- `GET /api/v1/lineage/{digest}`: what lies up- and downstream of a digest, to a depth.

Each write route runs the collector the CLI runs (`annex collect lineage`, `annex oversight
ingest`, `annex collect inference-log`), signed with the service's own key, off the event loop.
The whole body is checked before anything is logged, so a refusal (413, 422) appends nothing;
what the log already holds is answered 200 with its entries and not logged again, a new append
201. Two identical requests at the same instant are serialised by a lock in this process (the
oversight collector also re-checks under the store's lock; the lineage and inference ones do not,
so two service processes can still log the same bytes twice if they race).

An inference log is spooled to a private temporary directory (mode 0700), never held in memory,
and deleted when the request ends; its content never enters the log (the collector's promise).

The request log gets counts, entry indices and digests only: never a token, a reviewer or caller
id, nor any of the body.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import tempfile
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.cli_oversight import reviewer_pseudonyms
from api.problems import NotFound, TooLarge, Unprocessable
from api.state import (
    INT64_MAX,
    MAX_BODY,
    MAX_PAGE,
    PREFIX,
    Stores,
    StoresDep,
    read,
    read_body,
    write,
)
from collectors.inference_log import (
    DEFAULT_CLASS,
    MAX_DAYS,
    RetentionPolicy,
    ingest,
)
from collectors.openlineage import ParsedEvent, RawEvent, check_event, log_events, parse_events
from collectors.oversight import ingest_feed
from evidence.blobs import BlobStore
from evidence.canonical import parse_json
from evidence.errors import AnnexError, CollectorError, InputError
from evidence.keys import utc_now
from evidence.store import Store
from evidence.vault import Vault
from reports.lineage import Graph, build_graph

log = logging.getLogger("annex.api.ingest")

# An inference log is spooled to a temporary file, never held in memory; the cap stays below
# the size at which the collector starts worker processes (collectors/inference_log.py).
MAX_INFERENCE_BODY = 32 << 20
MAX_LINEAGE_DEPTH = 16
DEFAULT_LINEAGE_DEPTH = 4
MAX_LINEAGE_NODES = MAX_PAGE
BODY = "request body"
LINEAGE_SOURCE = "api/v1/lineage"
SOURCE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_DIGEST = re.compile(r"^(?:sha256:)?([0-9a-f]{64})$")
_RUN = re.compile(r"^run:(\d{1,18})$")


@contextmanager
def _refusals(stores: Stores) -> Iterator[None]:
    """Counts a refused request; a malformed body (InputError, CollectorError) becomes a 422."""
    try:
        yield
    except AnnexError as exc:
        stores.counters.add(refused=1)
        if type(exc) in (InputError, CollectorError):
            raise Unprocessable(str(exc)) from None
        raise


def _created(body: dict[str, Any], appended: int) -> JSONResponse:
    return JSONResponse(body, status_code=201 if appended else 200)


# -- OpenLineage ---------------------------------------------------------------------------------


def _decoded(data: bytes, encoding: str | None) -> bytes:
    """The body as sent, or gunzipped (what the transport's `compression: gzip` sends), capped."""
    if encoding is None or encoding.strip().lower() in ("", "identity"):
        return data
    if encoding.strip().lower() != "gzip":
        raise Unprocessable(f"Content-Encoding {encoding!r}: only gzip is accepted")
    inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        plain = inflate.decompress(data, MAX_BODY + 1)
    except zlib.error as exc:
        raise Unprocessable(f"the body is not valid gzip: {exc}") from None
    if len(plain) > MAX_BODY or inflate.unconsumed_tail:
        raise TooLarge(f"the body inflates past the limit of {MAX_BODY} bytes")
    if not inflate.eof:
        raise Unprocessable("the body is not valid gzip: it ends before the gzip stream does")
    return plain


def _lineage_events(data: bytes) -> list[ParsedEvent]:
    """Every event of the body, checked; a refusal in a JSON array names the item (the
    collector names the line, and an array is one line)."""
    try:
        return parse_events(data, BODY)
    except InputError as exc:
        if not data.lstrip().startswith(b"["):
            raise
        try:
            items = parse_json(data, what=BODY)
        except InputError:
            raise exc from None
        for number, item in enumerate(items, start=1):
            try:
                check_event(RawEvent(item, 1), BODY)
            except InputError as inner:
                where = f"{BODY} item {number}:"
                raise InputError(str(inner).replace(f"{BODY}:1:", where, 1)) from None
        raise exc from None


def _log_lineage(stores: Stores, data: bytes) -> tuple[dict[str, Any], int]:
    """Logs the new events of a body; the body of the answer and how many were appended."""
    events = _lineage_events(data)
    sha = hashlib.sha256(data).hexdigest()
    logged = log_events(stores.write(), events, source=LINEAGE_SOURCE, source_sha256=sha)
    plan, where = logged.plan, logged.where()
    stores.counters.add(appended=len(plan.new))
    entries = [where[e.digest] for e in events]
    appended = sorted(where[e.digest] for e in plan.new)
    log.info(
        "lineage: %d event(s), appended %s, already logged %s",
        len(events),
        appended,
        sorted(set(plan.known.values())),
    )
    body: dict[str, Any] = {
        "events": len(events),
        "entries": entries,
        "appended": appended,
        "already_logged": sorted(set(plan.known.values())),
    }
    if len(events) == 1:
        body["index"] = entries[0]
    return body, len(plan.new)


# -- oversight events ----------------------------------------------------------------------------


def _feed_of(data: bytes) -> tuple[bytes, bool]:
    """JSON Lines as given, or a JSON array as JSON Lines (one item a line, in order)."""
    if not data.lstrip().startswith(b"["):
        return data, False
    items = parse_json(data, what=BODY)
    if not isinstance(items, list):
        raise InputError(f"{BODY}: a JSON array of oversight events, or JSON Lines")
    lines = [_compact(item) for item in items]
    return b"\n".join(lines) + b"\n", True


def _compact(item: Any) -> bytes:
    return json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode()


def _log_oversight(stores: Stores, data: bytes) -> tuple[dict[str, Any], int]:
    feed, is_array = _feed_of(data)
    store = stores.write()
    try:
        with reviewer_pseudonyms(stores.home) as pseudonymise:
            done = ingest_feed(store, feed, source=BODY, pseudonymise=pseudonymise, now=utc_now())
    except InputError as exc:
        if is_array and type(exc) is InputError:  # name the array's item, not a line of ours
            raise InputError(str(exc).replace(f"{BODY} line ", f"{BODY} item ", 1)) from None
        raise
    stores.counters.add(appended=done.count)
    entries = list(range(done.first_index, done.first_index + done.count))
    log.info(
        "oversight: feed sha256 %s, %d event(s) appended, already logged: %s",
        done.digest[:16],
        done.count,
        done.already,
    )
    body = {
        "first_index": done.first_index,
        "count": done.count,
        "entries": entries,
        "already_logged": done.already,
        "sha256": done.digest,
    }
    return body, done.count


# -- inference logs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class InferenceOptions:
    """What `annex collect inference-log` takes as options, from the query string."""

    policy: RetentionPolicy
    batch_size: int | None
    source: str | None


async def _spool(request: Request, folder: Path) -> tuple[Path, str]:
    """The body written to a file in `folder` (413 past MAX_INFERENCE_BODY), and its SHA-256."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_INFERENCE_BODY:
        raise TooLarge(f"the body is {declared} bytes; the limit is {MAX_INFERENCE_BODY}")
    path, digest, size = folder / "body", hashlib.sha256(), 0
    async with await anyio.open_file(path, "wb") as out:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_INFERENCE_BODY:
                raise TooLarge(f"the body exceeds the limit of {MAX_INFERENCE_BODY} bytes")
            digest.update(chunk)
            await out.write(chunk)
    return path, digest.hexdigest()


def _log_inference(
    stores: Stores, lock: threading.Lock, spooled: Path, sha: str, options: InferenceOptions
) -> tuple[dict[str, Any], int]:
    name = options.source or f"inference-{sha[:12]}.jsonl"
    path = spooled.rename(spooled.with_name(name))
    home = stores.home
    try:
        with lock, Vault.open(home.path / "vault") as vault:
            done = ingest(
                stores.write(),
                vault,
                BlobStore(home.path / "blobs"),
                path,
                retention=options.policy,
                now=utc_now(),
                batch_size=options.batch_size,
                workers=1,
            )
    except InputError as exc:  # the collector names the file by its path: name the upload
        if type(exc) in (InputError, CollectorError):
            raise type(exc)(str(exc).replace(str(path), name)) from None
        raise
    made = len(done.statements)
    stores.counters.add(appended=made)
    entries = done.entries
    log.info("inference: %s sha256 %s, entries %s (new: %d)", name, sha[:16], entries, made)
    body = {
        "entries": entries,
        "already_logged": done.first_index is None,
        "source": {"name": name, "sha256": sha},
        "batches": [_batch_summary(s["predicate"]) for s in done.statements],
    }
    return body, made


def _batch_summary(predicate: dict[str, Any]) -> dict[str, Any]:
    batch = predicate["batch"]
    return {
        "number": batch["number"],
        "first_line": batch["firstLine"],
        "last_line": batch["lastLine"],
        "requests": predicate["requests"],
        "errors": predicate["errors"],
        "refusals": predicate["refusals"],
        "callers": len(predicate["callers"]),
        "merkle_root": predicate["merkleRoot"],
        "content_retained": predicate["retention"]["content"],
    }


# -- the lineage graph ---------------------------------------------------------------------------


class GraphCache:
    """The lineage graph of the log at its current size, rebuilt only when the log has grown."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._size = -1
        self._graph = Graph()

    def graph(self, store: Store) -> Graph:
        with self._lock:
            size = store.size()
            if size != self._size:
                self._graph, self._size = build_graph(store), size
            return self._graph


def node_of(graph: Graph, digest: str) -> str:
    """The node of a full digest (`sha256:<hex>` or `<hex>`) or a training run (`run:N`)."""
    wanted = digest.strip().lower()
    match = _DIGEST.match(wanted)
    if match is None and _RUN.match(wanted) is None:
        raise Unprocessable(
            f"digest {digest!r}: give sha256:<64 hex digits>, the 64 hex digits, or run:N"
        )
    node_id = f"sha256:{match.group(1)}" if match else wanted
    if node_id not in graph.nodes:
        raise NotFound(
            f"{node_id} is not in the lineage graph: no dataset, model, adapter, run "
            "or OpenLineage job or dataset of that digest is logged"
        )
    return node_id


def _step(graph: Graph, node_id: str, up: bool) -> list[str]:
    edges = graph.incoming(node_id) if up else graph.outgoing(node_id)
    return [e.source if up else e.target for e in edges]


def reach(graph: Graph, start: str, *, up: bool, depth: int, room: int) -> tuple[list[str], bool]:
    """Nodes up- (or down-) stream of `start`, nearest first, at most `depth` edges away and
    `room` in number; and whether more lies beyond either bound."""
    seen, frontier, found = {start}, [start], list[str]()
    for _ in range(depth):
        following = []
        for current in frontier:
            for other in _step(graph, current, up):
                if other in seen:
                    continue
                if len(found) >= room:
                    return found, True
                seen.add(other)
                found.append(other)
                following.append(other)
        frontier = following
    beyond = any(o not in seen for n in frontier for o in _step(graph, n, up))
    return found, beyond


def neighbourhood(graph: Graph, node_id: str, depth: int) -> dict[str, Any]:
    """The node, what lies within `depth` of it up- and downstream, and the edges among them,
    each node and edge with the entries that show it."""
    up, more_up = reach(graph, node_id, up=True, depth=depth, room=MAX_LINEAGE_NODES)
    room = MAX_LINEAGE_NODES - len(up)
    down, more_down = reach(graph, node_id, up=False, depth=depth, room=room)
    keep = {node_id, *up, *down}
    edges = [
        {"from": e.source, "to": e.target, "relation": e.relation, "entries": sorted(ix)}
        for e, ix in sorted(
            graph.edges.items(), key=lambda i: (i[0].relation, i[0].source, i[0].target)
        )
        if e.source in keep and e.target in keep
    ]
    return {
        "subject": graph.nodes[node_id].to_json(),
        "depth": depth,
        "upstream": up,
        "downstream": down,
        "nodes": [graph.nodes[n].to_json() for n in sorted(keep)],
        "edges": edges,
        "truncated": more_up or more_down,
    }


# -- the routes ----------------------------------------------------------------------------------


def _json_body(description: str) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {
                "application/json": {"schema": {}},
                "application/x-ndjson": {"schema": {"type": "string"}},
            },
        }
    }


def add_ingest(router: APIRouter) -> None:
    inference_lock = threading.Lock()

    @router.post(
        f"{PREFIX}/lineage",
        dependencies=write,
        status_code=201,
        summary="Log OpenLineage run events (where OpenLineage's HTTP transport posts)",
        responses={
            200: {"description": "every event was already in the log"},
        },
        openapi_extra=_json_body("One RunEvent, a JSON array of them, or JSON Lines."),
    )
    async def post_lineage(request: Request, stores: StoresDep) -> JSONResponse:
        with _refusals(stores):
            data = _decoded(await read_body(request), request.headers.get("content-encoding"))
            body, appended = await run_in_threadpool(_log_lineage, stores, data)
        return _created(body, appended)

    @router.post(
        f"{PREFIX}/oversight/events",
        dependencies=write,
        status_code=201,
        summary="Log a feed of human-oversight events as one batch (reviewers pseudonymised)",
        responses={
            200: {"description": "this feed was already logged"},
        },
        openapi_extra=_json_body("JSON Lines, one event a line, or a JSON array of events."),
    )
    async def post_oversight(request: Request, stores: StoresDep) -> JSONResponse:
        with _refusals(stores):
            data = await read_body(request)
            body, appended = await run_in_threadpool(_log_oversight, stores, data)
        return _created(body, appended)

    @router.post(
        f"{PREFIX}/inference/batches",
        dependencies=write,
        status_code=201,
        summary="Log an inference log (JSON Lines) as batch digests; content never logged",
        responses={
            200: {"description": "these bytes were already logged"},
        },
        openapi_extra=_json_body(
            f"JSON Lines, one request a line; at most {MAX_INFERENCE_BODY} bytes."
        ),
    )
    async def post_inference(
        request: Request,
        stores: StoresDep,
        source: Annotated[
            str | None,
            Query(pattern=SOURCE_NAME, description="the log's file name (default from its digest)"),
        ] = None,
        retain_content: Annotated[
            bool, Query(alias="retainContent", description="keep content, encrypted per caller")
        ] = False,
        retention: Annotated[str, Query(min_length=1, max_length=64)] = DEFAULT_CLASS,
        retention_days: Annotated[
            int | None, Query(alias="retentionDays", ge=1, le=MAX_DAYS)
        ] = None,
        batch_size: Annotated[int | None, Query(alias="batchSize", ge=1, le=INT64_MAX)] = None,
    ) -> JSONResponse:
        with _refusals(stores):
            options = InferenceOptions(
                RetentionPolicy.of(
                    retain_content, retention, retention_days, option="retentionDays"
                ),
                batch_size,
                source,
            )
            with tempfile.TemporaryDirectory(prefix="annex-upload-") as folder:
                spooled, sha = await _spool(request, Path(folder))
                body, appended = await run_in_threadpool(
                    _log_inference, stores, inference_lock, spooled, sha, options
                )
        return _created(body, appended)


def add_lineage(router: APIRouter) -> None:
    cache = GraphCache()

    @router.get(
        f"{PREFIX}/lineage/{{digest}}",
        dependencies=read,
        summary="Lineage graph of a dataset, model or adapter digest, up- and downstream",
    )
    def get_lineage(
        stores: StoresDep,
        digest: str,
        depth: Annotated[int, Query(ge=1, le=MAX_LINEAGE_DEPTH)] = DEFAULT_LINEAGE_DEPTH,
    ) -> dict[str, Any]:
        graph = cache.graph(stores.read())
        return neighbourhood(graph, node_of(graph, digest), depth)
