"""Routes over the log as a whole and the service itself: checkpoint, consistency proof, systems,
health, readiness and metrics."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from api.metrics import CONTENT_TYPE as METRICS_TYPE
from api.metrics import render as render_metrics
from api.problems import NotFound, problem
from api.state import INT64_MAX, PREFIX, StoresDep, b64, read
from evidence.entry import rfc3339
from evidence.errors import AnnexError
from reports.systems import card_history, system_summaries

# -- checkpoints and systems ---------------------------------------------------------------------


def add_log(router: APIRouter) -> None:
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
        old: Annotated[int, Query(ge=1, le=INT64_MAX)],
        new: Annotated[int | None, Query(ge=1, le=INT64_MAX)] = None,
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


def add_health(router: APIRouter) -> None:
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


def add_metrics(router: APIRouter) -> None:
    @router.get(
        f"{PREFIX}/metrics",
        dependencies=read,
        summary="Prometheus metrics: log size, checkpoint age, API appends",
        response_class=PlainTextResponse,
    )
    def metrics(request: Request, stores: StoresDep) -> Response:
        # The sweeps `annex serve` declared (none for an app built without them).
        state = request.app.state
        body = render_metrics(
            stores.read(),
            stores.counters,
            getattr(state, "sweep_schedules", ()),
            getattr(state, "sweeps_declared_since", None),
        )
        return Response(body, media_type=METRICS_TYPE)
