"""The REST service: a thin FastAPI shell over the store and the report layer, under /api/v1.

`create_app(home)` builds a fresh app for one data directory (no module-level state): the store
is opened on first use and closed at shutdown. Every route but the health checks and the OpenAPI
documents depends on `require(scope)` (api/auth.py); every failure is a problem+json body
(api/problems.py). Work per request is bounded: pages of at most MAX_PAGE entries, bodies of at
most MAX_BODY bytes, a system filter that scans at most SYSTEM_SCAN entries per kind.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool

from api.auth import TokenFile, require
from api.metrics import CONTENT_TYPE as METRICS_TYPE
from api.metrics import Counters
from api.metrics import render as render_metrics
from api.problems import Conflict, NotFound, TooLarge, Unprocessable, install, problem
from api.settings import get_settings
from evidence.canonical import parse_json
from evidence.dsse import Envelope
from evidence.entry import Entry, rfc3339
from evidence.errors import AnnexError, InputError
from evidence.home import Home
from evidence.merkle import leaf_hash
from evidence.store import Store
from reports.systems import card_history, system_summaries
from schemas.incident import INCIDENT
from schemas.oversight import OVERSIGHT_EVENT
from schemas.system_card import SUBJECT_PREFIX

PREFIX = "/api/v1"
MAX_PAGE = 500
DEFAULT_PAGE = 100
MAX_BODY = 1 << 20
SYSTEM_SCAN = 5_000
# Kinds that name their system in the predicate's `system` field rather than as a subject.
SYSTEM_FIELD_KINDS = (OVERSIGHT_EVENT, INCIDENT)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Stores:
    """The app's two store handles, opened on first use: reading needs no signing key."""

    def __init__(self, home: Home) -> None:
        self.home = home
        self._lock = threading.Lock()
        self._read: Store | None = None
        self._write: Store | None = None
        self.counters = Counters()

    def read(self) -> Store:
        with self._lock:
            if self._read is None:
                self._read = self.home.open_store()
            return self._read

    def write(self) -> Store:
        with self._lock:
            if self._write is None:
                self._write = self.home.open_store(write=True)
            return self._write

    def close(self) -> None:
        for store in (self._read, self._write):
            if store is not None:
                store.close()


def _stores(request: Request) -> Stores:
    stores: Stores = request.app.state.stores
    return stores


StoresDep = Annotated[Stores, Depends(_stores)]
read = [Depends(require("read"))]
write = [Depends(require("write"))]


def _aware(moment: datetime | None) -> datetime | None:
    """A time without an offset is taken as UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


# -- entries -------------------------------------------------------------------------------------


def _system_page(
    store: Store, system: str, filters: dict[str, Any], after: int | None, limit: int
) -> tuple[list[Entry], int | None]:
    """Entries about one system, and the next cursor: subject `system:<id>` (cards, reports) or,
    for oversight events and incidents, predicate `system` equal to the id.

    Each of those kinds scans at most SYSTEM_SCAN entries a request; the page then ends where the
    shortest scan stopped and `next` points there, so a page may be short (even empty) with a
    `next`, and the cursor never skips an entry.
    """
    found = store.query(subject_name=SUBJECT_PREFIX + system, after=after, limit=limit, **filters)
    stop: int | None = None
    wanted = filters.get("predicate_type")
    for kind in SYSTEM_FIELD_KINDS:
        if wanted is not None and wanted != kind:
            continue
        hits, reached = _scan_kind(store, system, {**filters, "predicate_type": kind}, after, limit)
        found.extend(hits)
        if reached is not None:
            stop = reached if stop is None else min(stop, reached)
    merged = sorted({e.index: e for e in found}.values(), key=lambda e: e.index)
    if stop is not None:
        merged = [e for e in merged if e.index <= stop]
    page = merged[:limit]
    if len(page) == limit:
        return page, page[-1].index
    return page, stop


def _scan_kind(
    store: Store, system: str, filters: dict[str, Any], after: int | None, limit: int
) -> tuple[list[Entry], int | None]:
    """Matches after the cursor naming `system` in the predicate; and the last index scanned
    when the scan stopped before the end of the log (a full page, or SYSTEM_SCAN reached)."""
    hits: list[Entry] = []
    scanned = 0
    cursor = after
    while True:
        batch = store.query(after=cursor, limit=min(MAX_PAGE, SYSTEM_SCAN - scanned), **filters)
        if not batch:
            return hits, None
        hits.extend(e for e in batch if e.statement.get("predicate", {}).get("system") == system)
        cursor = batch[-1].index
        scanned += len(batch)
        if len(hits) >= limit or scanned >= SYSTEM_SCAN:
            return hits, cursor


def _entry_json(entry: Entry) -> dict[str, Any]:
    data = entry.to_json()
    data["envelope"] = entry.envelope.to_dict()
    return data


def _get_entry(store: Store, index: int) -> Entry:
    """The entry, or 404 (the store's own refusal is a 400, right for the CLI)."""
    found = store.query(after=index - 1, limit=1) if index >= 0 else []
    if not found or found[0].index != index:
        raise NotFound(f"no entry {index}: the log holds {store.size()} entries")
    return found[0]


def _entries_routes(router: APIRouter) -> None:
    @router.get(f"{PREFIX}/entries", dependencies=read, summary="Entries, filtered, in index order")
    def list_entries(
        stores: StoresDep,
        predicate_type: Annotated[str | None, Query(alias="predicateType")] = None,
        subject_digest: Annotated[
            str | None, Query(alias="subjectDigest", description="hex, or algorithm:hex")
        ] = None,
        since: Annotated[datetime | None, Query(description="logged at or after")] = None,
        until: Annotated[datetime | None, Query(description="logged before")] = None,
        system: Annotated[str | None, Query(description="a system id")] = None,
        after: Annotated[
            int | None, Query(ge=-1, description="cursor: the last index seen")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
    ) -> dict[str, Any]:
        store = stores.read()
        filters: dict[str, Any] = {
            "predicate_type": predicate_type,
            "subject_digest": subject_digest,
            "logged_since": _aware(since),
            "logged_until": _aware(until),
        }
        if system is None:
            page = store.query(after=after, limit=limit, **filters)
            following = page[-1].index if len(page) == limit else None
        else:
            page, following = _system_page(store, system, filters, after, limit)
        return {"entries": [_entry_json(e) for e in page], "next": following}

    @router.get(
        f"{PREFIX}/entries/{{index}}", dependencies=read, summary="One entry and its envelope"
    )
    def get_entry(stores: StoresDep, index: int) -> dict[str, Any]:
        return _entry_json(_get_entry(stores.read(), index))

    @router.get(
        f"{PREFIX}/entries/{{index}}/proof",
        dependencies=read,
        summary="Inclusion proof (C2SP tlog-proof) against a signed checkpoint",
        responses={200: {"content": {"text/plain": {}}}},
    )
    def get_proof(
        stores: StoresDep,
        index: int,
        tree_size: Annotated[int | None, Query(alias="treeSize", ge=1)] = None,
        format: Literal["json", "text"] = "json",
    ) -> Response:
        store = stores.read()
        if tree_size is None and not 0 <= index < store.size():
            raise NotFound(f"no entry {index}: the log holds {store.size()} entries")
        proof = store.inclusion_proof(index, tree_size)
        if format == "text":
            return PlainTextResponse(proof.format())
        return JSONResponse(
            {
                "index": proof.index,
                "hashes": [b64(h) for h in proof.hashes],
                "checkpoint": proof.checkpoint,
                "tlog_proof": proof.format(),
            }
        )


# -- appending -----------------------------------------------------------------------------------


async def _read_body(request: Request) -> bytes:
    """The body, refused with 413 past MAX_BODY whether or not Content-Length says so."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        raise TooLarge(f"the body is {declared} bytes; the limit is {MAX_BODY}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise TooLarge(f"the body exceeds the limit of {MAX_BODY} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_envelope(body: bytes) -> Envelope:
    try:
        return Envelope.from_dict(parse_json(body, what="request body"), what="envelope")
    except InputError as exc:
        raise Unprocessable(str(exc)) from None


def _already_logged(store: Store, envelope: Envelope) -> int | None:
    """The index of an entry with this envelope's leaf hash, found through its first subject.

    Not atomic with the append: two identical envelopes posted at the same instant can both be
    appended. A unique leaf index checked in the sequencer would close that (evidence/store.py).
    """
    leaf = leaf_hash(envelope.canonical())
    try:
        statement = parse_json(envelope.payload, what="envelope payload")
        subject = statement["subject"][0]
        algorithm, digest = sorted(subject["digest"].items())[0]
        predicate_type = statement["predicateType"]
    except (InputError, KeyError, IndexError, TypeError, AttributeError):
        return None  # malformed: the append refuses it with a precise message
    after = None
    while page := store.query(
        predicate_type=predicate_type,
        subject_digest=f"{algorithm}:{digest}",
        after=after,
        limit=MAX_PAGE,
    ):
        for entry in page:
            if entry.leaf_hash == leaf:
                return entry.index
        after = page[-1].index
    return None


def _append_routes(router: APIRouter) -> None:
    envelope_body = {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["payload", "payloadType", "signatures"],
                        "properties": {
                            "payload": {"type": "string"},
                            "payloadType": {"type": "string"},
                            "signatures": {"type": "array", "items": {"type": "object"}},
                        },
                    }
                }
            },
        }
    }

    @router.post(
        f"{PREFIX}/entries",
        dependencies=write,
        status_code=201,
        summary="Append a DSSE envelope signed by a trusted collector key",
        openapi_extra=envelope_body,
    )
    async def post_entry(request: Request, stores: StoresDep) -> dict[str, Any]:
        envelope = _parse_envelope(await _read_body(request))
        return await run_in_threadpool(_append, stores, envelope)


def _append(stores: Stores, envelope: Envelope) -> dict[str, Any]:
    store = stores.write()
    existing = _already_logged(store, envelope)
    if existing is not None:
        stores.counters.add(refused=1)
        raise Conflict(f"this envelope is already in the log at entry {existing}")
    try:
        result = store.append_envelopes([envelope], labels=["envelope"])
    except AnnexError:
        stores.counters.add(refused=1)
        raise
    stores.counters.add(appended=1)
    index = result.first_index
    proof = store.inclusion_proof(index, result.checkpoint.size)
    return {
        "index": index,
        "leaf_hash": b64(result.leaf_hashes[0]),
        "checkpoint": result.checkpoint.note,
        "tlog_proof": proof.format(),
    }


# -- checkpoints and systems ---------------------------------------------------------------------


def _log_routes(router: APIRouter) -> None:
    @router.get(
        f"{PREFIX}/checkpoint",
        dependencies=read,
        summary="The latest signed checkpoint (C2SP signed note)",
        responses={200: {"content": {"text/plain": {}}}},
    )
    def get_checkpoint(stores: StoresDep, format: Literal["text", "json"] = "text") -> Response:
        cp = stores.read().checkpoint()
        if format == "text":
            return PlainTextResponse(cp.note)
        return JSONResponse(
            {
                "size": cp.size,
                "root": b64(cp.root),
                "note": cp.note,
                "issued_at": rfc3339(cp.issued_at),
            }
        )

    @router.get(f"{PREFIX}/consistency", dependencies=read, summary="RFC 9162 consistency proof")
    def get_consistency(
        stores: StoresDep,
        old: Annotated[int, Query(ge=1)],
        new: Annotated[int | None, Query(ge=1)] = None,
    ) -> dict[str, Any]:
        proof = stores.read().consistency_proof(old, new)
        return {
            "old_size": proof.old_size,
            "new_size": proof.new_size,
            "old_root": b64(proof.old_root),
            "new_root": b64(proof.new_root),
            "hashes": [b64(h) for h in proof.hashes],
        }

    @router.get(
        f"{PREFIX}/systems", dependencies=read, summary="Every system with a card in the log"
    )
    def list_systems(stores: StoresDep) -> dict[str, Any]:
        return {"systems": system_summaries(stores.read())}

    @router.get(
        f"{PREFIX}/systems/{{system_id}}", dependencies=read, summary="A system's card versions"
    )
    def get_system(stores: StoresDep, system_id: str) -> dict[str, Any]:
        history = card_history(stores.read(), system_id)
        if not history:
            raise NotFound(f"no system {system_id!r} in the log")
        versions = [
            {
                "version": v.card.version,
                "entry": v.entry.index,
                "logged_at": rfc3339(v.entry.logged_at),
                "card": v.predicate.card,
                "components": [
                    c.model_dump(mode="json", by_alias=True) for c in v.predicate.components
                ],
            }
            for v in history
        ]
        return {"system": system_id, "versions": versions}


def _health_routes(router: APIRouter) -> None:
    @router.get(f"{PREFIX}/healthz", summary="The process is up (no auth)")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get(f"{PREFIX}/readyz", summary="The store opens (no auth)")
    def readyz(request: Request, stores: StoresDep) -> Response:
        try:
            size = stores.read().size()
        except AnnexError as exc:
            return problem(503, f"the store is not ready: {exc}", request.url.path)
        return JSONResponse({"status": "ready", "size": size})


def _metrics_routes(router: APIRouter) -> None:
    @router.get(
        f"{PREFIX}/metrics",
        dependencies=read,
        summary="Prometheus metrics: log size, checkpoint age, API appends",
        response_class=PlainTextResponse,
    )
    def metrics(stores: StoresDep) -> Response:
        return Response(render_metrics(stores.read(), stores.counters), media_type=METRICS_TYPE)


# -- the app -------------------------------------------------------------------------------------

PUBLIC_PATHS = frozenset(
    {
        f"{PREFIX}/healthz",
        f"{PREFIX}/readyz",
        f"{PREFIX}/openapi.json",
        f"{PREFIX}/docs",
    }
)


def create_app(home: Home | None = None) -> FastAPI:
    """The service for one data directory (default: the one the settings name)."""
    chosen = home if home is not None else get_settings().open_home()
    stores = Stores(chosen)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        stores.close()

    app = FastAPI(
        title="Annex",
        version="1",
        summary="Signed, append-only evidence for AI systems.",
        openapi_url=f"{PREFIX}/openapi.json",
        docs_url=f"{PREFIX}/docs",
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        lifespan=lifespan,
    )
    app.state.stores = stores
    app.state.tokens = TokenFile(chosen.path)
    install(app)
    # Routes go straight on the app's router (no include_router), so app.routes lists each one
    # and the test that walks them sees every route a change adds.
    for add in (_health_routes, _entries_routes, _append_routes, _log_routes, _metrics_routes):
        add(app.router)
    return app
