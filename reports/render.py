"""Report documents as HTML and as archival PDF (PDF/A-3b), from one Jinja2 template.

The same `Document` feeds the HTML (also served as web pages) and the PDF; the template and its
stylesheet live in reports/templates/. Rendering is treated as handling untrusted input: every
value from the log or a system card is escaped (autoescape on), and WeasyPrint gets a URL fetcher
that serves only files under reports/templates/ and refuses anything else (http, https, data:,
file: outside), so a report can never reach the network or read the file system.

WeasyPrint runs in a child process with a wall-clock bound, and the HTML input and PDF output
have size bounds: a document that asks for too much fails with a `RenderError` naming the limit
instead of hanging a server. The PDF is written atomically (temporary file, then rename), so a
failed or killed render leaves nothing half-written at the target path.
"""

from __future__ import annotations

import errno
import os
import pickle
import resource
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import jinja2
from markupsafe import Markup

from evidence.errors import InputError
from reports.charts import chart_svg
from reports.document import Chart, Citation, Document, Facts, Paragraph, Table

TEMPLATES = Path(__file__).resolve().parent / "templates"
BUNDLE_NAME = "evidence-bundle.json"
_KIND_LABELS = {
    "annex-iv": "AI Act Annex IV technical documentation",
    "oversight": "Human oversight report",
    "ropa": "GDPR record of processing activities",
    "dpia-inputs": "GDPR DPIA inputs",
}


class RenderError(InputError):
    """A report could not be rendered within its limits, or asked for a resource it may not."""


@dataclass(frozen=True)
class RenderLimits:
    """Bounds on one render; a document past any of them fails instead of exhausting a server."""

    seconds: float = 120.0
    max_html_bytes: int = 16 * 1024 * 1024
    max_pdf_bytes: int = 256 * 1024 * 1024
    max_memory_bytes: int | None = 4 * 1024 * 1024 * 1024


DEFAULT_LIMITS = RenderLimits()


@dataclass(frozen=True)
class Attachment:
    """A file embedded in the PDF as a PDF/A-3 associated file (catalog /AF).

    Its MIME type is taken from the name's extension (`.json` -> application/json).
    """

    name: str
    data: bytes
    description: str = ""
    relationship: str = "Data"  # ISO 32000-2 7.11.3: Source, Data, Alternative, Supplement


# -- HTML ---------------------------------------------------------------------------------------


def ts(moment: datetime | None) -> str:
    """A time as the reports and the web pages print it (UTC, to the second)."""
    if moment is None:
        return "—"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _chart(chart: Chart) -> Markup:
    return Markup(chart_svg(chart))  # our own SVG; its labels are escaped by its writer


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=False,
    )
    env.filters["ts"] = ts
    env.filters["chart_svg"] = _chart
    env.tests["paragraph"] = lambda b: isinstance(b, Paragraph)
    env.tests["facts"] = lambda b: isinstance(b, Facts)
    env.tests["table"] = lambda b: isinstance(b, Table)
    env.tests["chart"] = lambda b: isinstance(b, Chart)
    return env


# An item prints at most this many of its citations (the newest) and Appendix A lists every
# citation only up to APPENDIX_ROWS: WeasyPrint lays out long tables slowly (10,000 rows take
# about a minute and a GiB), so past these the PDF summarises and the bundle holds the full list.
CITE_ROWS = 8
APPENDIX_ROWS = 400


@dataclass(frozen=True)
class KindSummary:
    kind: str
    count: int
    first: int
    last: int


def _by_kind(citations: tuple[Citation, ...]) -> list[KindSummary]:
    kinds: dict[str, list[int]] = {}
    for c in citations:
        kinds.setdefault(c.kind, []).append(c.index)
    return [KindSummary(k, len(v), min(v), max(v)) for k, v in sorted(kinds.items())]


def _printed(doc: Document) -> tuple[Citation, ...]:
    """The citations the item tables print, in index order."""
    found: dict[int, Citation] = {}
    for point in doc.points():
        for item in point.items:
            for c in item.citations[-CITE_ROWS:]:
                found.setdefault(c.index, c)
    return tuple(found[i] for i in sorted(found))


def render_html(doc: Document) -> str:
    """The document as one self-contained HTML page (stylesheet and charts inlined)."""
    coverage = doc.coverage()
    template = _environment().get_template("document.html.j2")
    citations = doc.citations()
    listed = citations if len(citations) <= APPENDIX_ROWS else _printed(doc)
    return template.render(
        cite_rows=CITE_ROWS,
        appendix=listed,
        appendix_complete=len(listed) == len(citations),
        kinds=_by_kind(citations),
        doc=doc,
        css=Markup((TEMPLATES / "document.css").read_text()),
        kind_label=_KIND_LABELS.get(doc.kind, doc.kind),
        coverage={c.value: n for c, n in coverage.items()},
        points_total=sum(coverage.values()),
        gaps=doc.gaps(),
        citations=doc.citations(),
        bundle_name=BUNDLE_NAME,
    )


# -- PDF ----------------------------------------------------------------------------------------


def asset_fetcher(refused: list[str] | None = None) -> Any:
    """A WeasyPrint URL fetcher serving only files under reports/templates/.

    Every other URL (http, https, data:, file: anywhere else) is appended to `refused` and
    raises; the fetcher is built with `fail_on_errors`, so a refusal stops the render.
    """
    from weasyprint.urls import URLFetcher, URLFetcherResponse

    class _AssetFetcher(URLFetcher):  # type: ignore[misc]
        def fetch(self, url: str, headers: Any = None) -> URLFetcherResponse:
            path = _asset_path(url)
            if path is None:
                if refused is not None:
                    refused.append(url)
                raise RenderError(f"the report asked for {url[:200]!r}: only bundled assets load")
            return URLFetcherResponse(url, path.read_bytes(), {})

    return _AssetFetcher(fail_on_errors=True)


def _asset_path(url: str) -> Path | None:
    parts = urlsplit(url)
    if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
        return None
    path = Path(unquote(parts.path)).resolve()
    if not path.is_relative_to(TEMPLATES) or not path.is_file():
        return None
    return path


def write_pdf(
    html: str, out: Path, attachments: Sequence[Attachment], fetcher: Any | None = None
) -> None:
    """WeasyPrint, in this process and unbounded: the child's work (tests call it directly)."""
    import weasyprint
    from weasyprint.urls import FatalURLFetchingError

    fetcher = fetcher if fetcher is not None else asset_fetcher()
    try:  # a refused URL stops the render; WeasyPrint raises it as a BaseException
        document = weasyprint.HTML(
            string=html, base_url=TEMPLATES.as_uri() + "/", url_fetcher=fetcher
        ).render()
    except FatalURLFetchingError as exc:
        cause = exc.__cause__
        raise RenderError(str(cause) if isinstance(cause, RenderError) else str(exc)) from None
    files = [
        weasyprint.Attachment(
            string=a.data,
            name=a.name,
            description=a.description or None,
            relationship=a.relationship,
            url_fetcher=fetcher,
        )
        for a in attachments
    ]
    document.write_pdf(out, pdf_variant="pdf/a-3b", attachments=files, finisher=_one_af_each)


def _one_af_each(document: Any, pdf: Any) -> None:
    """WeasyPrint 70 lists each embedded file twice in the catalog's /AF array: once is right."""
    import pydyf

    if "AF" in pdf.catalog:
        pdf.catalog["AF"] = pydyf.Array(dict.fromkeys(pdf.catalog["AF"]))


_CHILD = (
    "import pickle, sys; job = pickle.load(sys.stdin.buffer); sys.path[:0] = job['path']; "
    "from reports.render import _child_main; _child_main(job)"
)
_REPORTED = 3  # the child's exit status when it wrote its error to stderr


def _child_main(job: dict[str, Any]) -> None:
    """Runs in the render process: exit 0, or exit 3 with the error's message on stderr."""
    import sys

    try:
        if job["memory"] is not None:
            resource.setrlimit(resource.RLIMIT_AS, (job["memory"], job["memory"]))
        # No file it writes may grow past the PDF limit (Python ignores SIGXFSZ: EFBIG).
        resource.setrlimit(resource.RLIMIT_FSIZE, (job["max_pdf"] + 1, job["max_pdf"] + 1))
        write_pdf(job["html"], Path(job["out"]), job["attachments"])
    except MemoryError:
        sys.stderr.write("the renderer ran out of memory (RenderLimits.max_memory_bytes)")
        sys.exit(_REPORTED)
    except OSError as exc:
        if exc.errno != errno.EFBIG:
            raise
        sys.stderr.write(_too_big(f"more than {job['max_pdf']}", job["max_pdf"]))
        sys.exit(_REPORTED)
    except Exception as exc:  # reported to the parent, which raises RenderError
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        sys.stderr.write(f"{type(cause).__name__}: {cause}")
        sys.exit(_REPORTED)


def _render_bounded(
    html: str, out: Path, attachments: Sequence[Attachment], limits: RenderLimits
) -> None:
    """WeasyPrint in a child Python process, killed past `limits.seconds`.

    A fresh interpreter (not fork: the caller may be a threaded server; not multiprocessing's
    spawn: it re-imports the caller's main module) gets the job as a pickle on stdin.
    """
    job = {
        "path": [p for p in sys.path if p],
        "html": html,
        "out": str(out),
        "attachments": tuple(attachments),
        "memory": limits.max_memory_bytes,
        "max_pdf": limits.max_pdf_bytes,
    }
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-c", _CHILD],
            input=pickle.dumps(job),
            capture_output=True,
            timeout=limits.seconds,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise RenderError(
            f"rendering took longer than {limits.seconds:g} s (RenderLimits.seconds): "
            "summarise the document (long tables render slowly) or raise the limit"
        ) from None
    if done.returncode == _REPORTED:
        message = done.stderr.decode(errors="replace")[-2000:]
        raise RenderError(f"rendering failed: {message}")
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip()[-1000:]
        hint = (
            ""
            if limits.max_memory_bytes is None
            else f" (out of memory? RenderLimits.max_memory_bytes is {limits.max_memory_bytes})"
        )
        raise RenderError(f"the renderer exited with status {done.returncode}{hint}: {tail}")


def render_pdf_bytes(
    doc: Document,
    *,
    attachments: Sequence[Attachment] = (),
    limits: RenderLimits = DEFAULT_LIMITS,
    workdir: Path | None = None,
) -> bytes:
    """The PDF/A-3b of a document, as bytes (for a caller that signs it before writing)."""
    html = render_html(doc)
    size = len(html.encode())
    if size > limits.max_html_bytes:
        raise RenderError(
            f"the report's HTML is {size} bytes, over the {limits.max_html_bytes} byte limit "
            "(RenderLimits.max_html_bytes): summarise the document or raise the limit"
        )
    with tempfile.TemporaryDirectory(dir=workdir, prefix=".annex-render-") as tmp:
        out = Path(tmp) / "report.pdf"
        _render_bounded(html, out, attachments, limits)
        written = out.stat().st_size
        if written > limits.max_pdf_bytes:
            raise RenderError(_too_big(str(written), limits.max_pdf_bytes))
        return out.read_bytes()


def _too_big(size: str, limit: int) -> str:
    return (
        f"the PDF is {size} bytes, over the {limit} byte limit (RenderLimits.max_pdf_bytes): "
        "summarise the document or raise the limit"
    )


def write_atomically(out: Path, data: bytes) -> None:
    """Temporary file beside `out`, fsync, rename: `out` is the old file or the new one."""
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def render_pdf(
    doc: Document,
    out: Path,
    *,
    attachments: Sequence[Attachment] = (),
    limits: RenderLimits = RenderLimits(),
) -> None:
    """Writes the document as PDF/A-3b to `out`, the attachments as associated files."""
    data = render_pdf_bytes(doc, attachments=attachments, limits=limits, workdir=out.parent)
    write_atomically(out, data)
