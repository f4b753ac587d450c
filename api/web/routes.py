"""The auditor's pages under /web: log in with a token, browse systems, their Annex IV document,
entries with their proofs, issued reports, and check a dossier by upload.

Read-only: every page needs a token of scope read (or admin) and none appends to the log. The
pages are not part of the REST API (`include_in_schema=False`); their data comes from the same
report layer the PDFs are built from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool

from api.auth import TokenRecord
from api.problems import NotFound
from api.routes_entries import entry_or_404
from api.routes_reports import FILES, download_response, file_path, report_predicate
from api.state import IndexPath, StoresDep
from api.web.session import (
    LOGIN,
    WEB,
    WebRoute,
    clear_cookie,
    find_token,
    require_cookie,
    safe_next,
    set_cookie,
)
from api.web.upload import MAX_UPLOAD, read_upload
from api.web.verify import check_upload
from api.web.views import TEMPLATES, document_markup, page
from evidence.errors import AnnexError
from evidence.home import Home
from evidence.store import Store
from reports.annex_iv import build_annex_iv
from reports.document import Coverage
from reports.lineage import entries_of
from reports.render import TEMPLATES as REPORT_TEMPLATES
from reports.systems import system_ids, system_summaries
from schemas.report import REPORT

Reader = Annotated[TokenRecord, Depends(require_cookie("read"))]
# The files a page may load: the report's own stylesheet, the web pages' frame, the icon.
ASSETS = {
    "document.css": (REPORT_TEMPLATES / "document.css", "text/css"),
    "web.css": (TEMPLATES / "web.css", "text/css"),
    "favicon.svg": (TEMPLATES / "favicon.svg", "image/svg+xml"),
}
MAX_COVERAGE_ROWS = 25
PUBLIC_WEB_PATHS = frozenset({LOGIN, f"{WEB}/logout", f"{WEB}/static/{{name}}"})


def _add(router: APIRouter, path: str, endpoint: Any, methods: list[str], **extra: Any) -> None:
    router.add_api_route(
        path,
        endpoint,
        methods=methods,
        include_in_schema=False,
        route_class_override=WebRoute,
        **extra,
    )


# -- login ---------------------------------------------------------------------------------------


def login_form(request: Request, next: str | None = None) -> Response:
    return page(request, "login.html.j2", next=safe_next(next), error=None)


def login(
    request: Request, token: Annotated[str, Form()] = "", next: Annotated[str, Form()] = ""
) -> Response:
    """Checks the token as the API would; on success keeps it in the cookie and goes on."""
    record = find_token(request, token.strip())
    error = None
    if record is None:
        error = (401, "That token is unknown or revoked. Ask the operator for a read token.")
    elif not record.allows("read"):
        error = (403, f"Token {record.id} has scope {record.scope}; these pages need read.")
    if error is not None:
        status, message = error
        return page(request, "login.html.j2", status, next=safe_next(next), error=message)
    response = RedirectResponse(safe_next(next), status_code=303)
    set_cookie(response, request, token.strip())
    return response


def logout(request: Request) -> Response:
    response = RedirectResponse(LOGIN, status_code=303)
    clear_cookie(response, request)
    return response


def asset(name: str) -> Response:
    found = ASSETS.get(name)
    if found is None:
        raise NotFound(f"no file {name!r}")
    path, media_type = found
    cache = {"Cache-Control": "public, max-age=3600"}  # the same for everyone: no log data
    return Response(path.read_bytes(), media_type=media_type, headers=cache)


# -- systems -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SystemRow:
    id: str
    name: str
    version: str
    card_entry: int
    coverage: dict[str, int]
    gaps: int
    error: str | None = None
    counted: bool = True


def _system_rows(store: Store) -> list[SystemRow]:
    """Every system, with the coverage of the first MAX_COVERAGE_ROWS: building one Annex IV
    document reads the system's evidence, so a page of them is capped like any other work."""
    rows = []
    for number, s in enumerate(system_summaries(store)):
        system_id, entry = str(s["system"]), int(s["entry"])
        name, version = str(s["name"]), str(s["version"])
        if number >= MAX_COVERAGE_ROWS:
            rows.append(SystemRow(system_id, name, version, entry, {}, 0, counted=False))
            continue
        try:
            doc = build_annex_iv(store, system_id)
        except AnnexError as exc:
            rows.append(SystemRow(system_id, name, version, entry, {}, 0, str(exc)))
            continue
        coverage = {c.value: n for c, n in doc.coverage().items()}
        rows.append(SystemRow(system_id, name, version, entry, coverage, len(doc.gaps())))
    return rows


def systems(request: Request, record: Reader, stores: StoresDep) -> Response:
    rows = _system_rows(stores.read())
    return page(
        request, "systems.html.j2", user=record, systems=rows, max_counted=MAX_COVERAGE_ROWS
    )


def system(request: Request, record: Reader, stores: StoresDep, system_id: str) -> Response:
    store = stores.read()
    known = system_ids(store)
    if system_id not in known:
        raise NotFound(f"no system {system_id!r} in the log; systems: {', '.join(known) or 'none'}")
    doc = build_annex_iv(store, system_id)
    counts = doc.coverage()
    return page(
        request,
        "system.html.j2",
        user=record,
        doc=doc,
        document=document_markup(doc),
        complete=counts[Coverage.COMPLETE],
        partial=counts[Coverage.PARTIAL],
        missing=counts[Coverage.MISSING],
        gaps=len(doc.gaps()),
    )


# -- entries -------------------------------------------------------------------------------------


def entry(request: Request, record: Reader, stores: StoresDep, index: IndexPath) -> Response:
    store = stores.read()
    found = entry_or_404(store, index)
    proof = store.inclusion_proof(index)
    return page(
        request,
        "entry.html.j2",
        user=record,
        entry=found,
        statement=json.dumps(found.statement, indent=2, ensure_ascii=False, sort_keys=False),
        proof=proof.format(),
    )


def entry_json(record: Reader, stores: StoresDep, index: IndexPath) -> Response:
    """The envelope as logged and its inclusion proof: the shape of a dossier's receipt."""
    store = stores.read()
    found = entry_or_404(store, index)
    proof = store.inclusion_proof(index).format()
    body = {"envelope": json.loads(found.envelope_bytes), "proof": proof}
    return Response(
        json.dumps(body, indent=2) + "\n",
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="entry-{index}.json"'},
    )


def entry_proof(record: Reader, stores: StoresDep, index: IndexPath) -> Response:
    """The inclusion proof alone, as `annex verify-entry` reads it beside the JSON above."""
    store = stores.read()
    entry_or_404(store, index)
    return Response(
        store.inclusion_proof(index).format(),
        media_type="text/plain",
        headers={"Content-Disposition": f'attachment; filename="entry-{index}.proof"'},
    )


# -- reports -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportRow:
    index: int
    kind: str
    title: str
    system: str | None
    pdf_name: str
    pdf_sha256: str
    checkpoint: int
    logged: datetime
    download: str | None  # None: issued elsewhere (the CLI), its files are not on this server


def _report_rows(home: Home, store: Store) -> list[ReportRow]:
    """The REPORT entries Annex can read, newest first. One a write token appended with a
    predicate that is not a report's is left out, as the API's listing marks it invalid."""
    rows = []
    for e in entries_of(store, REPORT):
        p = report_predicate(e)
        if p is None:
            continue
        path = file_path(home, e, p, "pdf")
        here = path is not None and path.is_file()
        rows.append(
            ReportRow(
                index=e.index,
                kind=p.kind,
                title=p.title,
                system=p.system.id if p.system else None,
                pdf_name=p.pdf.name,
                pdf_sha256=p.pdf.sha256,
                checkpoint=p.checkpoint.size,
                logged=e.logged_at,
                download=f"{WEB}/reports/{e.index}/pdf" if here else None,
            )
        )
    rows.reverse()  # newest first
    return rows


def reports(request: Request, record: Reader, stores: StoresDep) -> Response:
    rows = _report_rows(stores.home, stores.read())
    return page(request, "reports.html.j2", user=record, reports=rows)


def report_file(record: Reader, stores: StoresDep, index: IndexPath, which: str) -> Response:
    """A report's PDF, bundle or receipt for a browser: the API's download, checked against the
    log the same way (a file changed on disk is refused), behind the session cookie."""
    if which not in FILES:
        raise NotFound(f"a report has no file {which!r}: it has {', '.join(FILES)}")
    return download_response(stores, index, which)


# -- verify --------------------------------------------------------------------------------------


def verify_form(request: Request, record: Reader) -> Response:
    return page(request, "verify.html.j2", user=record, outcome=None, limit=MAX_UPLOAD)


async def verify(request: Request, record: Reader) -> Response:
    """Checks an uploaded dossier (and the auditor's trust file) offline; keeps neither."""
    upload = await read_upload(request)
    outcome = await run_in_threadpool(check_upload, upload.pdf, upload.trust)
    return page(
        request,
        "verify.html.j2",
        200 if outcome.verified else 422,
        user=record,
        outcome=outcome,
        limit=MAX_UPLOAD,
    )


def add_web(router: APIRouter) -> None:
    """The pages, on the app's router, outside /api/v1 and the OpenAPI document."""
    _add(router, LOGIN, login_form, ["GET"])
    _add(router, LOGIN, login, ["POST"])
    _add(router, f"{WEB}/logout", logout, ["POST"])
    _add(router, f"{WEB}/static/{{name}}", asset, ["GET"])
    _add(router, f"{WEB}/", systems, ["GET"])
    _add(router, f"{WEB}/systems/{{system_id}}", system, ["GET"])
    _add(router, f"{WEB}/entries/{{index}}", entry, ["GET"])
    _add(router, f"{WEB}/entries/{{index}}/envelope.json", entry_json, ["GET"])
    _add(router, f"{WEB}/entries/{{index}}/proof", entry_proof, ["GET"])
    _add(router, f"{WEB}/reports", reports, ["GET"])
    _add(router, f"{WEB}/reports/{{index}}/{{which}}", report_file, ["GET"])
    _add(router, f"{WEB}/verify", verify_form, ["GET"])
    _add(router, f"{WEB}/verify", verify, ["POST"])
