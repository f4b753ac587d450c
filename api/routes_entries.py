"""Routes over the log's entries: list with filters and a cursor, one entry, its inclusion proof,
and appending an envelope a trusted collector signed."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from api import state
from api.problems import Conflict, NotFound, Unprocessable, problem_response
from api.state import (
    DEFAULT_PAGE,
    INT64_MAX,
    MAX_PAGE,
    PREFIX,
    SYSTEM_FIELD_KINDS,
    IndexPath,
    Stores,
    StoresDep,
    aware,
    b64,
    read,
    read_body,
    write,
)
from evidence.canonical import parse_json
from evidence.dsse import Envelope
from evidence.entry import Entry
from evidence.errors import AnnexError, DuplicateEntry, InputError
from evidence.store import Store
from schemas.system_card import SUBJECT_PREFIX

# -- entries -------------------------------------------------------------------------------------


def _system_page(
    store: Store, system: str, filters: dict[str, Any], after: int | None, limit: int
) -> tuple[list[Entry], int | None]:
    """Entries about one system, and the next cursor: subject `system:<id>` (cards, reports) or,
    for oversight events and incidents, predicate `system` equal to the id.

    Each of those kinds scans at most SYSTEM_SCAN entries a request; the page then ends where
    the shortest scan stopped and `next` points there, so a page may be short (even empty) with a
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
    when the scan stopped before the end of the log (a full page, or state.SYSTEM_SCAN reached)."""
    hits: list[Entry] = []
    scanned = 0
    cursor = after
    while True:
        room = min(MAX_PAGE, state.SYSTEM_SCAN - scanned)
        batch = store.query(after=cursor, limit=room, **filters)
        if not batch:
            return hits, None
        hits.extend(e for e in batch if e.statement.get("predicate", {}).get("system") == system)
        cursor = batch[-1].index
        scanned += len(batch)
        if len(hits) >= limit or scanned >= state.SYSTEM_SCAN:
            return hits, cursor


def _entry_json(entry: Entry) -> dict[str, Any]:
    data = entry.to_json()
    data["envelope"] = entry.envelope.to_dict()
    return data


def entry_or_404(store: Store, index: int) -> Entry:
    """The entry, or 404 (the store's own refusal is a 400, right for the CLI)."""
    found = store.query(after=index - 1, limit=1) if index >= 0 else []
    if not found or found[0].index != index:
        raise NotFound(f"no entry {index}: the log holds {store.size()} entries")
    return found[0]


def add_entries(router: APIRouter) -> None:
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
            int | None, Query(ge=-1, le=INT64_MAX, description="cursor: the last index seen")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
    ) -> dict[str, Any]:
        store = stores.read()
        filters: dict[str, Any] = {
            "predicate_type": predicate_type,
            "subject_digest": subject_digest,
            "logged_since": aware(since),
            "logged_until": aware(until),
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
    async def get_entry(stores: StoresDep, index: IndexPath) -> JSONResponse:
        # The two hot reads run on the event loop, not in the thread pool: each is one bounded
        # read (a row by key, or O(log n) stored hashes; on PostgreSQL three or four round trips
        # in autocommit), cheaper than the hand-off to a thread and back, which under load cost
        # more than the read itself on SQLite and on PostgreSQL alike (benchmarks/api_load.py).
        return JSONResponse(_entry_json(entry_or_404(stores.read(), index)))

    @router.get(
        f"{PREFIX}/entries/{{index}}/proof",
        dependencies=read,
        summary="Inclusion proof (C2SP tlog-proof) against a signed checkpoint",
        responses={200: {"content": {"text/plain": {}}}},
    )
    async def get_proof(
        stores: StoresDep,
        index: IndexPath,
        tree_size: Annotated[int | None, Query(alias="treeSize", ge=1, le=INT64_MAX)] = None,
        format: Literal["json", "text"] = "json",
    ) -> Response:
        try:  # one read of the checkpoint, whose tree holds every entry: past it, a 404
            proof = stores.read().inclusion_proof(index, tree_size)
        except InputError as exc:
            if tree_size is None:
                raise NotFound(f"no entry {index}: {exc}") from None
            raise
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


def _parse_envelope(body: bytes) -> Envelope:
    try:
        return Envelope.from_dict(parse_json(body, what="request body"), what="envelope")
    except InputError as exc:
        raise Unprocessable(str(exc)) from None


def add_append(router: APIRouter) -> None:
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
        responses={
            403: problem_response(
                "not signed by a trusted key, or by a revoked one (trust-error), or signed by "
                "a key whose role may not sign this predicate type (authority-error)"
            ),
            409: problem_response("already in the log: the detail names the entry"),
        },
    )
    async def post_entry(request: Request, stores: StoresDep) -> dict[str, Any]:
        envelope = _parse_envelope(await read_body(request))
        return await _append(stores, envelope)


async def _append(stores: Stores, envelope: Envelope) -> dict[str, Any]:
    """Appends one envelope, batched with those posted at the same time (api/group_commit.py);
    a replay is a 409 naming the entry that holds it.

    The store refuses the replay inside its sequencer lock, so two identical envelopes posted at
    the same instant give one 201 and one 409, never two entries.
    """
    try:
        logged = await stores.appends.append(envelope)
    except DuplicateEntry as exc:
        stores.counters.add(refused=1)
        raise Conflict(str(exc)) from None
    except InputError as exc:  # a well-formed envelope around a statement that is not valid
        stores.counters.add(refused=1)
        raise Unprocessable(str(exc)) from None
    except AnnexError:
        stores.counters.add(refused=1)
        raise
    stores.counters.add(appended=1)
    return {
        "index": logged.index,
        "leaf_hash": b64(logged.leaf_hash),
        "checkpoint": logged.checkpoint.note,
        "tlog_proof": logged.proof.format(),
    }
