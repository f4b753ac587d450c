"""The REST service: a thin FastAPI shell over the store and the report layer, under /api/v1.

`create_app(home)` builds a fresh app for one data directory (no module-level state): the store
is opened on first use and closed at shutdown. Every route but the health checks and the OpenAPI
documents depends on `require(scope)` (api/auth.py); every failure is a problem+json body
(api/problems.py). Work per request is bounded: pages of at most MAX_PAGE entries, bodies of at
most MAX_BODY bytes (MAX_INFERENCE_BODY for an inference-log batch), a system filter that
scans at most SYSTEM_SCAN entries per kind, exports of at most MAX_EXPORT_ENTRIES entries.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from api import routes_entries, routes_exports, routes_ingest, routes_log, routes_reports, web
from api.auth import TokenFile
from api.problems import document_problems, install
from api.settings import get_settings
from api.state import MAX_BODY, MAX_PAGE, PREFIX, Stores
from api.web.session import WEB
from evidence.home import Home

__all__ = ["MAX_BODY", "MAX_PAGE", "PREFIX", "PUBLIC_PATHS", "create_app"]

# Each adds one group of routes straight onto the app's router (no include_router), so
# app.routes lists every route and the test that walks them sees each one a change adds.
ROUTE_GROUPS: tuple[Callable[[APIRouter], None], ...] = (
    routes_log.add_health,
    routes_entries.add_entries,
    routes_entries.add_append,
    routes_log.add_log,
    routes_log.add_metrics,
    routes_reports.add_reports,
    routes_reports.add_report_jobs,
    routes_reports.add_gate,
    routes_ingest.add_ingest,
    routes_ingest.add_lineage,
    routes_exports.add_exports,
    web.add_web,
)

# -- the app -------------------------------------------------------------------------------------

PUBLIC_PATHS = frozenset(
    {
        f"{PREFIX}/healthz",
        f"{PREFIX}/readyz",
        f"{PREFIX}/openapi.json",
        f"{PREFIX}/docs",
        f"{PREFIX}/docs/assets",  # Swagger UI's scripts and styles, served from the package
        "/",  # a redirect to the web pages
    }
)


def create_app(home: Home | None = None) -> FastAPI:
    """The service for one data directory (default: the one the settings name)."""
    chosen = home if home is not None else get_settings().open_home()
    stores = Stores(chosen)

    @asynccontextmanager
    async def lifespan(started: FastAPI) -> AsyncIterator[None]:
        routes_reports.clean_staging(chosen, stores.read())  # what a killed server left
        yield
        jobs = getattr(started.state, "jobs", None)
        if jobs is not None:
            jobs.close()
        stores.close()

    app = FastAPI(
        title="Annex",
        version="1",
        summary="Signed, append-only evidence for AI systems.",
        openapi_url=f"{PREFIX}/openapi.json",
        docs_url=None,  # served below from the package's own assets, not a CDN
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        lifespan=lifespan,
    )
    app.state.stores = stores
    app.state.tokens = TokenFile(chosen.path)
    install(app)
    for add in ROUTE_GROUPS:
        add(app.router)
    _add_docs(app)
    document_problems(app, PUBLIC_PATHS)
    return app


DOCS_ASSETS = f"{PREFIX}/docs/assets"


def _add_docs(app: FastAPI) -> None:
    """Swagger UI at /api/v1/docs with every asset served from the installed package, so the
    page works on an air-gapped network; `/` leads a browser to the auditor's pages."""
    from swagger_ui_bundle import swagger_ui_path  # the assets only, no web framework

    app.mount(DOCS_ASSETS, StaticFiles(directory=swagger_ui_path), name="docs-assets")

    @app.get(f"{PREFIX}/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=f"{PREFIX}/openapi.json",
            title="Annex API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png",
        )

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse(WEB, status_code=307)
