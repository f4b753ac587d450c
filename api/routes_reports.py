"""Routes over reports and the CI gate: list and download issued reports, generate one off the
request path, and judge a model manifest or digest against a gate policy.

Where issued reports live: `reports/<index>/` under the data directory, one folder per REPORT
entry, holding `<kind>-<system|all>.pdf` and, beside it, `.bundle.json` and `.receipt.json` as
`annex report` writes them. A job renders into `reports/.staging/<job>/` and renames that folder
to the entry's index once the entry is logged, so a folder named for an index only ever holds a
complete, logged report. A failure after the PDF was written, or a crash before the rename,
leaves the job's folder under `.staging/`; the next start moves it to its index if its report
was logged, and removes it if not (`clean_staging`). Reports whose folder is not here
(issued by the CLI into another folder, on another host, or caught by such a crash) are listed
from the log with `on_server: false`.

Every file served is checked first: the PDF and bundle must have the size and SHA-256 the log
holds, the receipt must carry the entry's own envelope; a file that differs is never served (a
500-class problem, "file on disk changed"). Generation runs in a bounded job queue (api/jobs.py):
validation answers at POST time; only the build and render run in the job.

The gate is scope `read`: it appends nothing and reveals no more than the log already does.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from starlette.concurrency import run_in_threadpool

from api import state
from api.jobs import RETRY_AFTER_S, Job, JobQueue, QueueFull
from api.problems import NotFound, Unprocessable, problem, problem_response
from api.settings import get_settings
from api.state import (
    DEFAULT_PAGE,
    INT64_MAX,
    MAX_PAGE,
    PREFIX,
    IndexPath,
    Stores,
    StoresDep,
    read,
    read_body,
    require,
)
from evidence.entry import Entry, rfc3339
from evidence.errors import AnnexError, ConfigError, InputError
from evidence.home import Home
from evidence.keys import TrustIndex
from evidence.store import Store
from evidence.verify import latest_extending
from reports.document import Document
from reports.dossier import PdfSigner, beside, issue
from reports.gate import GateContext, Kind, Requirement, Verdict
from reports.policy import default_requirement, parse_policy, requirement_of
from reports.systems import known_history
from schemas.model import MODEL_RELEASE, Manifest, ModelReleasePredicate
from schemas.report import REPORT, SUBJECT_PREFIX, ReportKind, ReportPredicate

report = [Depends(require("report"))]
_JOBS_LOCK = threading.Lock()
M = TypeVar("M", bound=BaseModel)

REPORTS_DIR = "reports"
STAGING = ".staging"
FILES = ("pdf", "bundle", "receipt")


class FileOnDiskChanged(AnnexError):
    """A report file on this server no longer matches what the log holds for it."""

    http_status = 500


# -- bodies --------------------------------------------------------------------------------------


def _parse(model: type[M], body: bytes, what: str) -> M:
    """The body as `model`, or 422 naming the first wrong field."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        if not first["loc"] and first["type"] == "value_error":
            raise Unprocessable(str(first["ctx"]["error"])) from None  # names its fields
        loc = ".".join(str(p) for p in first["loc"]) or what
        raise Unprocessable(f"{loc}: {first['msg']}") from None


class ReportRequest(BaseModel):
    """What `POST /reports` takes: the same choices as `annex report KIND`."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    kind: ReportKind
    system: str | None = Field(default=None, min_length=1, max_length=200)
    at: int | None = Field(default=None, ge=1)
    start: date | None = Field(default=None, alias="from")
    end: date | None = Field(default=None, alias="to")

    @model_validator(mode="after")
    def _consistent(self) -> ReportRequest:
        if self.system is None and self.kind != "ropa":
            raise ValueError(f"system: the {self.kind} report is about one system: give its id")
        if self.kind == "oversight":
            if self.start is None or self.end is None:
                raise ValueError("from, to: an oversight report needs both (YYYY-MM-DD)")
            if self.end < self.start:
                raise ValueError(f"to: {self.end} is before from {self.start}")
        elif self.start is not None or self.end is not None:
            raise ValueError(f"from, to: only an oversight report covers a period, not {self.kind}")
        return self

    def period(self) -> tuple[datetime, datetime]:
        """[from 00:00, the day after to 00:00) in UTC, as `annex report oversight` takes it."""
        assert self.start is not None and self.end is not None
        since = datetime.combine(self.start, time(), UTC)
        return since, datetime.combine(self.end + timedelta(days=1), time(), UTC)

    def params(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class GateRequest(BaseModel):
    """What `POST /gate` takes: a manifest or a digest, and a policy (text, JSON, or a name)."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    manifest: dict[str, Any] | None = None
    digest: str | None = Field(default=None, pattern=r"^sha256:[0-9a-f]{64}$")
    kind: Kind | None = None
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
    policy: str | dict[str, Any] | None = None
    trusted_checkpoint: str | None = Field(default=None, alias="trustedCheckpoint")

    @model_validator(mode="after")
    def _one_subject(self) -> GateRequest:
        if (self.manifest is None) == (self.digest is None):
            raise ValueError("manifest, digest: give exactly one of them")
        return self


# -- where report files live ---------------------------------------------------------------------


def reports_dir(home: Home) -> Path:
    return home.path / REPORTS_DIR


def clean_staging(home: Home, store: Store) -> list[str]:
    """At start, each folder a killed server left under `.staging/`: moved to `reports/<index>/`
    when it holds a PDF the log records as issued (the crash came between logging and the
    rename), else removed (nothing of it was logged). Returns what it did, a line each."""
    staging = reports_dir(home) / STAGING
    if not staging.is_dir():
        return []
    done = []
    for folder in sorted(p for p in staging.iterdir() if p.is_dir()):
        index = _logged_report_in(folder, store)
        final = None if index is None else reports_dir(home) / str(index)
        if final is not None and not final.exists():
            os.rename(folder, final)
            done.append(f"{folder}: report entry {index}, moved to {final}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
            done.append(f"{folder}: removed (no report in it was logged)")
    return done


def _logged_report_in(folder: Path, store: Store) -> int | None:
    """The REPORT entry whose subject is the SHA-256 of a PDF in `folder`, if any."""
    for pdf in folder.glob("*.pdf"):
        digest = hashlib.sha256(pdf.read_bytes()).hexdigest()
        found = store.query(predicate_type=REPORT, subject_digest=f"sha256:{digest}", limit=1)
        if found:
            return found[0].index
    return None


def _safe_name(name: str) -> bool:
    """A plain file name (a REPORT entry anyone with a write token appended may say anything)."""
    return name == Path(name).name and not name.startswith(".") and name.endswith(".pdf")


def file_path(home: Home, entry: Entry, predicate: ReportPredicate, which: str) -> Path | None:
    """Where this server keeps a report's file; None when the logged name is not a plain one."""
    if not _safe_name(predicate.pdf.name):
        return None
    pdf = reports_dir(home) / str(entry.index) / predicate.pdf.name
    if which == "pdf":
        return pdf
    return beside(pdf, f".{which}.json")


def _links(index: int) -> dict[str, str]:
    base = f"{PREFIX}/reports/{index}"
    return {"self": base, **{which: f"{base}/{which}" for which in FILES}}


# -- listing and metadata ------------------------------------------------------------------------


def report_predicate(entry: Entry) -> ReportPredicate | None:
    try:
        return ReportPredicate.model_validate(entry.statement.get("predicate"))
    except ValidationError:
        return None


def _scope_of(entry: Entry) -> tuple[str | None, str | None]:
    """(kind, system or 'all') from the subject `report:<kind>:<scope>`."""
    for subject in entry.subjects:
        if subject.name.startswith(SUBJECT_PREFIX):
            kind, _, scope = subject.name.removeprefix(SUBJECT_PREFIX).partition(":")
            return kind, scope
    return None, None


def _row(home: Home, entry: Entry) -> dict[str, Any]:
    kind, scope = _scope_of(entry)
    predicate = report_predicate(entry)
    row: dict[str, Any] = {
        "index": entry.index,
        "kind": kind,
        "system": scope,
        "logged_at": rfc3339(entry.logged_at),
    }
    if predicate is None:
        return {**row, "valid": False, "on_server": False, "links": _links(entry.index)}
    pdf = file_path(home, entry, predicate, "pdf")
    return {
        **row,
        "valid": True,
        "title": predicate.title,
        "pdf": predicate.pdf.model_dump(by_alias=True),
        "bundle": predicate.bundle.model_dump(by_alias=True),
        "checkpoint": predicate.checkpoint.size,
        "period": predicate.period,
        "pdf_signed": predicate.pdf_signed,
        "on_server": pdf is not None and pdf.is_file(),
        "links": _links(entry.index),
    }


def _matches(entry: Entry, kind: str | None, system: str | None) -> bool:
    found_kind, found_system = _scope_of(entry)
    return (kind is None or kind == found_kind) and (system is None or system == found_system)


def report_page(
    store: Store, kind: str | None, system: str | None, after: int | None, limit: int
) -> tuple[list[Entry], int | None]:
    """REPORT entries after the cursor, filtered; scans at most state.SYSTEM_SCAN entries a
    request, so a page may be short with a `next` (as /entries?system= does)."""
    if kind is not None and system is not None:
        name = f"{SUBJECT_PREFIX}{kind}:{system}"
        page = store.query(predicate_type=REPORT, subject_name=name, after=after, limit=limit)
        return page, page[-1].index if len(page) == limit else None
    hits: list[Entry] = []
    scanned, cursor = 0, after
    while batch := store.query(
        predicate_type=REPORT, after=cursor, limit=min(MAX_PAGE, state.SYSTEM_SCAN - scanned)
    ):
        for entry in batch:
            if _matches(entry, kind, system):
                hits.append(entry)
                if len(hits) == limit:
                    return hits, entry.index
        cursor, scanned = batch[-1].index, scanned + len(batch)
        if scanned >= state.SYSTEM_SCAN:
            return hits, cursor
    return hits, None


def report_entry(store: Store, index: int) -> tuple[Entry, ReportPredicate]:
    """The REPORT entry at `index`, or 404 saying what is there instead."""
    found = store.query(after=index - 1, limit=1) if index >= 0 else []
    if not found or found[0].index != index:
        raise NotFound(f"no entry {index}: the log holds {store.size()} entries")
    entry = found[0]
    if entry.predicate_type != REPORT:
        raise NotFound(f"entry {index} is not a report: it is a {entry.predicate_type}")
    predicate = report_predicate(entry)
    if predicate is None:
        raise NotFound(f"entry {index} is a report whose predicate Annex cannot read")
    return entry, predicate


# -- downloads -----------------------------------------------------------------------------------


def checked_file(home: Home, entry: Entry, predicate: ReportPredicate, which: str) -> bytes:
    """The file's bytes if they are what the log holds; 404 if absent, FileOnDiskChanged if not."""
    path = file_path(home, entry, predicate, which)
    if path is None or not path.is_file():
        raise NotFound(f"the {which} of report entry {entry.index} is not on this server")
    if which == "receipt":
        data = path.read_bytes()
        _check_receipt(data, entry)
        return data
    logged = predicate.pdf if which == "pdf" else predicate.bundle
    if path.stat().st_size != logged.size:
        raise FileOnDiskChanged(_changed(which, entry.index, "its size differs from"))
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != logged.sha256:
        raise FileOnDiskChanged(_changed(which, entry.index, "its SHA-256 differs from"))
    return data


def _changed(which: str, index: int, how: str) -> str:
    return (
        f"file on disk changed: the {which} of report entry {index} on this server is not the "
        f"one logged ({how} the log's); it is not served"
    )


def _check_receipt(data: bytes, entry: Entry) -> None:
    try:
        envelope = json.loads(data)["envelope"]
    except (ValueError, KeyError, TypeError):
        raise FileOnDiskChanged(_changed("receipt", entry.index, "it no longer parses;")) from None
    if envelope != json.loads(entry.envelope_bytes):
        raise FileOnDiskChanged(_changed("receipt", entry.index, "its envelope differs from"))


_MEDIA = {"pdf": "application/pdf", "bundle": "application/json", "receipt": "application/json"}


def download_response(stores: Stores, index: int, which: str) -> Response:
    entry, predicate = report_entry(stores.read(), index)
    data = checked_file(stores.home, entry, predicate, which)
    path = file_path(stores.home, entry, predicate, which)
    assert path is not None
    disposition = f'attachment; filename="{path.name}"'
    return Response(data, media_type=_MEDIA[which], headers={"Content-Disposition": disposition})


def add_reports(router: APIRouter) -> None:
    @router.get(f"{PREFIX}/reports", dependencies=read, summary="Reports the log has issued")
    def list_reports(
        stores: StoresDep,
        kind: Annotated[ReportKind | None, Query()] = None,
        system: Annotated[str | None, Query(description="a system id, or 'all'")] = None,
        after: Annotated[
            int | None, Query(ge=-1, le=INT64_MAX, description="cursor: the last index seen")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
    ) -> dict[str, Any]:
        page, following = report_page(stores.read(), kind, system, after, limit)
        return {"reports": [_row(stores.home, e) for e in page], "next": following}

    @router.get(
        f"{PREFIX}/reports/{{index}}", dependencies=read, summary="One report: what the log holds"
    )
    def get_report(stores: StoresDep, index: IndexPath) -> dict[str, Any]:
        entry, _ = report_entry(stores.read(), index)
        return {**_row(stores.home, entry), "statement": entry.statement}

    def download(which: str, media: str) -> None:
        @router.get(
            f"{PREFIX}/reports/{{index}}/{which}",
            dependencies=read,
            summary=f"The report's {which}, checked against the log",
            response_class=Response,
            responses={200: {"content": {media: {}}}},
            name=f"get_report_{which}",
        )
        def get_file(stores: StoresDep, index: IndexPath) -> Response:
            return download_response(stores, index, which)

    for which in FILES:
        download(which, _MEDIA[which])


# -- generation ----------------------------------------------------------------------------------


def jobs_of(request: Request) -> JobQueue:
    """The app's job queue, made on first use (one per app, in memory)."""
    app_state = request.app.state
    with _JOBS_LOCK:
        if getattr(app_state, "jobs", None) is None:
            app_state.jobs = JobQueue()
    jobs: JobQueue = app_state.jobs
    return jobs


JobsDep = Annotated[JobQueue, Depends(jobs_of)]


def _validate(store: Store, body: ReportRequest) -> None:
    """The refusals a job would meet, answered now: a checkpoint that was never issued (422), a
    system the log does not hold at it (404)."""
    if body.at is not None:
        try:
            store.checkpoint(body.at)
        except InputError as exc:
            raise Unprocessable(f"at: {exc}") from None
    if body.system is not None:
        try:
            known_history(store, body.system, size=body.at)
        except InputError as exc:
            raise NotFound(str(exc)) from None


def _build(store: Store, body: ReportRequest) -> Document:
    if body.kind == "annex-iv":
        from reports.annex_iv import build_annex_iv

        assert body.system is not None
        return build_annex_iv(store, body.system, at=body.at)
    if body.kind == "oversight":
        from reports.oversight import build_oversight

        assert body.system is not None
        return build_oversight(store, body.system, *body.period(), at=body.at)
    from reports.gdpr import build_dpia_inputs, build_ropa

    if body.kind == "ropa":
        return build_ropa(store, system_id=body.system, at=body.at)
    assert body.system is not None
    return build_dpia_inputs(store, body.system, at=body.at)


def _signer() -> PdfSigner | None:
    """PAdES signing when the server's settings name a certificate and key."""
    settings = get_settings()
    cert, key = settings.pdf_sign_cert, settings.pdf_sign_key
    if cert is None or key is None:
        return None
    from reports.pades import sign_pdf

    def sign(data: bytes) -> bytes:
        return sign_pdf(data, cert=cert, key=key, passphrase=settings.passphrase)

    return sign


def generate(stores: Stores, body: ReportRequest, job_id: str) -> dict[str, Any]:
    """The job: build, issue into a staging folder, move it to `reports/<index>/`."""
    store = stores.write()
    doc = _build(store, body)
    staging = reports_dir(stores.home) / STAGING / job_id
    staging.mkdir(parents=True, exist_ok=False)
    name = f"{doc.kind}-{doc.system.id if doc.system else 'all'}.pdf"
    try:
        issued = issue(
            store,
            doc,
            staging / name,
            trust_json=stores.home.trust_path.read_bytes(),
            sign=_signer(),
        )
    except BaseException:
        if not (staging / name).exists():  # else it may be logged: keep it for the operator
            shutil.rmtree(staging, ignore_errors=True)
        raise
    final = reports_dir(stores.home) / str(issued.index)
    try:
        os.rename(staging, final)
    except OSError as exc:
        raise ConfigError(
            f"report entry {issued.index} is logged, but its files could not be moved from "
            f"{staging} to {final}: {exc.strerror}"
        ) from None
    return {
        "index": issued.index,
        "kind": doc.kind,
        "system": doc.system.id if doc.system else None,
        "sha256": issued.sha256,
        "checkpoint": doc.checkpoint.size,
        "citations": issued.citations,
        "gaps": issued.gaps,
        "coverage": {str(k): v for k, v in issued.coverage.items()},
        "signed": issued.signed,
        "links": _links(issued.index),
    }


def _job_json(job: Job) -> dict[str, Any]:
    return {**job.to_json(), "links": {"self": f"{PREFIX}/jobs/{job.id}"}}


def add_report_jobs(router: APIRouter) -> None:
    report_body = {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": ReportRequest.model_json_schema()}},
        }
    }

    @router.post(
        f"{PREFIX}/reports",
        dependencies=report,
        status_code=202,
        summary="Generate a report in the background: 202 and a job to poll",
        openapi_extra=report_body,
        responses={429: problem_response("the job queue is full; see Retry-After")},
    )
    async def post_report(request: Request, stores: StoresDep, jobs: JobsDep) -> Response:
        body = _parse(ReportRequest, await read_body(request), "body")
        await run_in_threadpool(lambda: _validate(stores.read(), body))
        try:
            job = jobs.submit(
                "report", body.params(), lambda job_id: generate(stores, body, job_id)
            )
        except QueueFull as exc:
            refused = problem(429, str(exc), request.url.path, kind="queue-full")
            refused.headers["Retry-After"] = str(RETRY_AFTER_S)
            return refused
        location = f"{PREFIX}/jobs/{job.id}"
        return JSONResponse(_job_json(job), status_code=202, headers={"Location": location})

    @router.get(f"{PREFIX}/jobs/{{job_id}}", dependencies=report, summary="A job's state")
    def get_job(job_id: str, jobs: JobsDep) -> dict[str, Any]:
        job = jobs.get(job_id)
        if job is None:
            raise NotFound(
                f"no job {job_id!r} on this server (jobs live in memory: a restart forgets them)"
            )
        return _job_json(job)


# -- the gate ------------------------------------------------------------------------------------

KNOWN_POLICIES = {"default": "default (signed)"}


def gate_requirement(policy: str | dict[str, Any] | None) -> tuple[Requirement, str]:
    """The requirement and its label: a known name, inline YAML text, or the policy as JSON."""
    if policy is None or (isinstance(policy, str) and policy in KNOWN_POLICIES):
        return default_requirement(), KNOWN_POLICIES["default"]
    text = policy if isinstance(policy, str) else json.dumps(policy)
    try:
        parsed = parse_policy(text, source="policy")
    except InputError as exc:
        raise Unprocessable(str(exc)) from None
    return requirement_of(parsed.require), "policy (inline)"


def gate_manifest(body: GateRequest, store: Store) -> tuple[Manifest, Kind, str]:
    """The manifest to judge, the kind and the name: posted, or a logged release's by digest."""
    if body.manifest is not None:
        try:
            manifest = Manifest.model_validate(body.manifest)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(p) for p in ("manifest", *first["loc"]))
            raise Unprocessable(f"{loc}: {first['msg']}") from None
        top = {f.path for f in manifest.files}
        kind: Kind = body.kind or ("adapter" if "adapter_config.json" in top else "model")
        return manifest, kind, body.name or f"sha256-{manifest.digest[:12]}"
    assert body.digest is not None
    digest = body.digest.removeprefix("sha256:")
    release = _release_of(store, digest)
    if release is None:  # no files known: requirements that need none still judge it
        bare = Manifest.model_construct(
            files=(), digest=digest, model_signing_digest="", ignored=()
        )
        return bare, body.kind or "model", body.name or f"sha256-{digest[:12]}"
    return release.manifest, body.kind or release.kind, body.name or _plain(release.name, digest)


def _plain(name: str, digest: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "._-" else "-" for c in name).lstrip("._-")
    return cleaned[:128] or f"sha256-{digest[:12]}"


def _release_of(store: Store, digest: str) -> ModelReleasePredicate | None:
    """The newest release whose signed manifest has this digest (proven later, by the gate)."""
    found = store.query(predicate_type=MODEL_RELEASE, subject_digest=f"sha256:{digest}", limit=100)
    for entry in reversed(found):
        try:
            release = ModelReleasePredicate.model_validate(entry.statement.get("predicate"))
        except ValidationError:
            continue
        if release.manifest.digest == digest:
            return release
    return None


def judge(
    store: Store, trust: TrustIndex, body: GateRequest, requirement: Requirement, label: str
) -> dict[str, Any]:
    """The gate's verdict on a manifest, as `annex gate --json` prints it.

    The requirements see an empty directory named for the model: no file on this server stands
    in for the model's, so a policy asking for a model.sig beside the files fails here.
    """
    if store.origin != trust.trust.origin:
        raise InputError(f"the trust file is for log {trust.trust.origin!r}, not {store.origin!r}")
    if body.trusted_checkpoint is not None:
        latest_extending(store, trust, body.trusted_checkpoint)
    manifest, kind, name = gate_manifest(body, store)
    tree_size = store.checkpoint().size
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="annex-gate-") as tmp:
        directory = Path(tmp) / name
        directory.mkdir()
        context = GateContext(directory, kind, manifest, store, trust, now, tree_size)
        verdict = Verdict(
            directory, kind, manifest, label, now, tree_size, requirement.evaluate(context)
        )
        text = json.dumps(verdict.to_json()).replace(json.dumps(f"{tmp}/")[1:-1], "")
    answer: dict[str, Any] = json.loads(text)
    answer["pass"] = verdict.passed
    answer["directory"] = None
    answer["name"] = name
    answer["source"] = "manifest" if body.manifest is not None else "digest"
    return answer


def add_gate(router: APIRouter) -> None:
    gate_body = {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": GateRequest.model_json_schema()}},
        }
    }

    @router.post(
        f"{PREFIX}/gate",
        dependencies=read,
        summary="Judge a model manifest or digest against a gate policy (200, pass or not)",
        openapi_extra=gate_body,
    )
    async def post_gate(request: Request, stores: StoresDep) -> dict[str, Any]:
        body = _parse(GateRequest, await read_body(request), "body")
        # YAML is parsed off the event loop: other requests go on meanwhile
        requirement, label = await run_in_threadpool(gate_requirement, body.policy)

        def run() -> dict[str, Any]:
            return judge(stores.read(), stores.home.trust(), body, requirement, label)

        return await run_in_threadpool(run)
