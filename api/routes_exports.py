"""Routes for GRC tools: a system's OSCAL assessment results and its CycloneDX ML-BOM.

Both are cut at a signed checkpoint (`at`, default the latest), so a tool that polls with the
same `at` gets the same bytes. Work per request is bounded: an OSCAL export holds at most
MAX_EXPORT_ENTRIES observations (each with its inclusion proof; the newest entries, the findings
count the rest), an ML-BOM at most MAX_EXPORT_ENTRIES GPU hosts (the newest inventories; the
BOM's `annex:platforms-left-out` property counts the rest). `annex export` has no cap.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from api.problems import NotFound
from api.state import INT64_MAX, PREFIX, StoresDep, read
from evidence.errors import InputError
from evidence.store import Store
from reports.evidence_query import checkpoint_ref
from reports.systems import known_history

MAX_EXPORT_ENTRIES = 1_000
OSCAL_JSON = "application/json"

AtQuery = Annotated[
    int | None,
    Query(ge=1, le=INT64_MAX, description="A checkpoint's tree size; default: the latest."),
]


def _known(store: Store, system_id: str, at: int | None) -> None:
    """404 for a system without a card below the checkpoint (a bad `at` stays a 400)."""
    size = checkpoint_ref(store, at).size
    try:
        known_history(store, system_id, size=size)
    except InputError as exc:
        raise NotFound(str(exc)) from None


def add_exports(router: APIRouter) -> None:
    @router.get(
        f"{PREFIX}/systems/{{system_id}}/oscal",
        dependencies=read,
        summary="OSCAL assessment-results of the system's Annex IV points",
        responses={200: {"content": {OSCAL_JSON: {}}}},
    )
    def get_oscal(stores: StoresDep, system_id: str, at: AtQuery = None) -> Response:
        from reports.oscal import assessment_results, to_json

        store = stores.read()
        _known(store, system_id, at)
        results = assessment_results(store, system_id, at, max_entries=MAX_EXPORT_ENTRIES)
        return Response(to_json(results), media_type=OSCAL_JSON)

    @router.get(
        f"{PREFIX}/systems/{{system_id}}/mlbom",
        dependencies=read,
        summary="CycloneDX 1.6 ML-BOM of the system",
        responses={200: {"content": {"application/vnd.cyclonedx+json": {}}}},
    )
    def get_mlbom(stores: StoresDep, system_id: str, at: AtQuery = None) -> Response:
        from reports.mlbom import MEDIA_TYPE, ml_bom_json

        store = stores.read()
        _known(store, system_id, at)
        text = ml_bom_json(store, system_id, at, max_platforms=MAX_EXPORT_ENTRIES)
        return Response(text, media_type=MEDIA_TYPE)
