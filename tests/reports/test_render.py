"""Rendering report documents: HTML escaping, the PDF/A-3b read back, limits, no fetching."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pypdf import PdfReader
from pypdf.generic import ArrayObject, StreamObject

from evidence.home import Home
from evidence.store import Store
from reports.charts import chart_svg
from reports.document import (
    Chart,
    CheckpointRef,
    Citation,
    Document,
    Facts,
    Gap,
    Item,
    Paragraph,
    Point,
    Section,
    Series,
    Source,
    SystemRef,
    Table,
)
from reports.render import (
    TEMPLATES,
    Attachment,
    RenderError,
    RenderLimits,
    asset_fetcher,
    render_html,
    render_pdf,
    write_pdf,
)
from tests.conftest import statement

HOSTILE = '<img src="http://example.invalid/x.png"> <link href="file:///etc/passwd">'
CHART = Chart(
    "Accuracy by group",
    "bar",
    ("group a", "group b", "group c"),
    (Series("accuracy", (0.71, 0.64, 0.69)), Series("f1", (0.66, 0.6, 0.65))),
    y_label="score",
)


def checkpoint_ref(store: Store) -> CheckpointRef:
    cp = store.checkpoint()
    return CheckpointRef(store.origin, cp.size, cp.root.hex(), cp.note, cp.issued_at)


def make_document(
    store: Store, *, paragraph: str = "Ranks loan applications for review.", extra: int = 0
) -> Document:
    """A small Annex IV-like document citing real entries of `store` (appended when missing).

    `extra` > 0 adds a citation of that many further statements, logged after the rest.
    """
    if not store.query(predicate_type="https://annex.dev/predicates/gpu-inventory/v1"):
        store.append([statement(i, kind="gpu-inventory") for i in range(3)])
        store.append([statement(10, kind="eval-run")])
    gpus = [Citation.of(e) for e in store.query(predicate_type=_type("gpu-inventory"))]
    evals = [Citation.of(e) for e in store.query(predicate_type=_type("eval-run"))]
    rows = tuple((f"node-{i}", "NVIDIA H100 80GB HBM3", "550.54.15") for i in range(40))
    hardware = Point(
        "1(e)",
        "Hardware",
        "The hardware the system is intended to run on.",
        items=(
            Item(
                Source.COLLECTED,
                "GPU inventory",
                (
                    Facts((("GPUs", "40 x H100"), ("Driver", "550.54.15"))),
                    Table(("Host", "GPU", "Driver"), rows, caption="GPUs seen", note="40 of 40"),
                ),
                tuple(gpus[:3]),
            ),
        ),
        gaps=(Gap("No minimum hardware statement", "Declare hardware.minimum in the card"),),
    )
    purpose = Point(
        "1(a)",
        "Intended purpose",
        "Intended purpose, provider and version.",
        items=(Item(Source.DECLARED, "Intended purpose", (Paragraph(paragraph),)),),
    )
    photos = Point(
        "1(f)",
        "Product photos",
        "Photographs of the product.",
        gaps=(Gap("No product photographs", "Declare not applicable in the card"),),
    )
    tested = Point(
        "2(g)",
        "Validation and testing",
        "Test procedures, metrics and signed test reports.",
        items=(Item(Source.COLLECTED, "Evaluation runs", (CHART,), tuple(evals)),),
    )
    sections = [
        Section("General description", (purpose, hardware, photos)),
        Section("Development", (tested,)),
    ]
    if extra:
        later = store.append([statement(100 + i, kind="later") for i in range(extra)])
        cited = tuple(Citation.of(store.get(i)) for i in later.indices)
        sections.append(
            Section(
                "Later",
                (
                    Point(
                        "6", "Changes", "Changes.", items=(Item(Source.COLLECTED, "x", (), cited),)
                    ),
                ),
            )
        )
    return Document(
        kind="annex-iv",
        title="Annex IV technical documentation",
        subtitle="Loan triage assistant",
        generated_at=datetime(2026, 11, 24, 12, 0, tzinfo=UTC),
        checkpoint=checkpoint_ref(store),
        sections=tuple(sections),
        system=SystemRef("loan-triage", "Loan triage", "1.4.0", "Example Bank AG", 0),
    )


def _type(kind: str) -> str:
    return f"https://annex.dev/predicates/{kind}/v1"


def xmp_text(reader: PdfReader) -> str:
    """The PDF's XMP metadata packet, where PDF/A declares its part and conformance."""
    stream = reader.root_object["/Metadata"].get_object()
    assert isinstance(stream, StreamObject)
    return stream.get_data().decode()


def pdf_text(path: Path, *, page: int | None = None) -> str:
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) is not installed")
    args = ["pdftotext", "-layout"]
    if page is not None:
        args += ["-f", str(page), "-l", str(page)]
    done = subprocess.run([*args, str(path), "-"], capture_output=True, check=True, text=True)
    return done.stdout


@dataclass(frozen=True)
class Rendered:
    home: Home
    doc: Document
    pdf: Path


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rendered]:
    root = tmp_path_factory.mktemp("render")
    home = Home(root / "annex")
    home.init("test.example/log")
    with home.open_store(write=True) as store:
        doc = make_document(store, paragraph=HOSTILE)
    pdf = root / "dossier.pdf"
    render_pdf(doc, pdf, attachments=[Attachment("evidence-bundle.json", b'{"hello": 1}')])
    yield Rendered(home, doc, pdf)


def test_html_escapes_card_text_and_labels_every_item(rendered: Rendered) -> None:
    html = render_html(rendered.doc)
    assert "&lt;img src=&#34;http://example.invalid/x.png&#34;&gt;" in html
    assert (
        "<img" not in html
        and "<link" not in html
        and "file:///etc" not in html.replace("&lt;link href=&#34;file:///etc/passwd&#34;&gt;", "")
    )
    assert 'class="label label-collected">Collected<' in html
    assert 'class="label label-declared">Declared<' in html
    for c in rendered.doc.citations():
        assert f"#{c.index} <code>{c.digest[:12]}</code>" in html
    assert html.count('class="gap"') == 2
    assert "<svg" in html  # the chart is inline: nothing to fetch


def test_pdf_reads_back_with_sections_citations_and_gaps(rendered: Rendered) -> None:
    text = pdf_text(rendered.pdf)
    pages = len(PdfReader(rendered.pdf).pages)
    for expected in (
        "Annex IV technical documentation",
        "Contents",
        "General description",
        "Validation and testing",
        "Appendix A. Cited entries",
        "Appendix B. Checkpoint and how to verify",
        "annex verify-dossier dossier.pdf --trust trust.json",
        "How to fill: Declare hardware.minimum in the card",
        f"Page {pages} of {pages}",
        '<img src="http://example.invalid/x.png">',  # shown as text, never loaded
    ):
        assert expected in text, expected
    for c in rendered.doc.citations():
        assert re.search(rf"#{c.index}\s+{c.digest[:12]}", text), c.index
        assert c.digest in text  # the full leaf hash in Appendix A
    assert rendered.doc.checkpoint.note.splitlines()[0] in text
    assert "COLLECTED" in text and "DECLARED" in text


def test_page_one_summarises_coverage_and_lists_gaps(rendered: Rendered) -> None:
    first = pdf_text(rendered.pdf, page=1)
    assert "Loan triage" in first and "1.4.0" in first and "Example Bank AG" in first
    assert rendered.doc.checkpoint.root_hex[:40] in first.replace("\n", "")
    assert re.search(r"Points\s+Complete\s+Partial\s+Missing\s+4\s+2\s+1\s+1", first)
    assert "1(e) Hardware: No minimum hardware statement" in first
    assert "1(f) Product photos: No product photographs" in first
    second = pdf_text(rendered.pdf, page=2)
    assert "Loan triage 1.4.0" in second  # the running header names the system and version
    assert "Page 2 of" in second


def test_contents_give_the_pages_sections_start_on(rendered: Rendered) -> None:
    pages = len(PdfReader(rendered.pdf).pages)
    texts = [pdf_text(rendered.pdf, page=n) for n in range(1, pages + 1)]
    toc = texts[1]
    for heading in ("Appendix A. Cited entries", "Appendix B. Checkpoint and how to verify"):
        match = re.search(re.escape(heading) + r" \.+ (\d+)", toc)
        assert match, heading
        page = int(match.group(1))
        body = texts[page - 1].split("\n")
        assert any(line.strip() == heading for line in body), (heading, page)


def test_pdf_is_pdfa3b_with_the_bundle_as_associated_file(rendered: Rendered) -> None:
    reader = PdfReader(rendered.pdf)
    xmp = xmp_text(reader)
    assert re.search(r"pdfaid:part(=\"|>)3", xmp) and re.search(r"pdfaid:conformance(=\"|>)B", xmp)
    catalog = reader.root_object
    files = catalog["/AF"]
    assert isinstance(files, ArrayObject)
    associated = [ref.get_object() for ref in files]
    assert [(f["/F"], f["/AFRelationship"]) for f in associated] == [
        ("evidence-bundle.json", "/Data")
    ]
    assert reader.attachments["evidence-bundle.json"] == [b'{"hello": 1}']
    assert catalog["/OutputIntents"]  # sRGB output intent, as PDF/A asks


def test_chart_svg_is_deterministic_and_self_contained() -> None:
    first, second = chart_svg(CHART), chart_svg(CHART)
    assert first == second
    assert first.lstrip().startswith("<svg") and "<?xml" not in first
    assert "<dc:date>" not in first and 'href="http' not in first
    stacked = chart_svg(Chart("t", "stacked-bar", ("a", "b"), (Series("s", (1.0, 2.0)),)))
    line = chart_svg(Chart("t", "line", ("a", "b"), (Series("s", (1.0, 2.0)),)))
    assert stacked != line


def test_chart_labels_are_never_markup() -> None:
    hostile = '</svg><img src="http://example.invalid/y.png"> --> $x$ & <script>'
    svg = chart_svg(Chart(hostile, "bar", (hostile, "b"), (Series(hostile, (1.0, 2.0)),), hostile))
    assert "<img" not in svg and "<script" not in svg and svg.count("</svg>") == 1


def test_fetcher_serves_only_bundled_assets() -> None:
    refused: list[str] = []
    fetcher = asset_fetcher(refused)
    assert fetcher.fetch((TEMPLATES / "document.css").as_uri()).read().startswith(b"/*")
    for url in (
        "http://example.invalid/x.png",
        "https://example.invalid/x.css",
        "file:///etc/passwd",
        (TEMPLATES / ".." / "render.py").as_uri(),
        "data:text/plain,hello",
    ):
        with pytest.raises(RenderError, match="only bundled assets"):
            fetcher.fetch(url)
    assert len(refused) == 5


def test_hostile_card_text_fetches_nothing(rendered: Rendered, tmp_path: Path) -> None:
    refused: list[str] = []
    write_pdf(render_html(rendered.doc), tmp_path / "a.pdf", (), asset_fetcher(refused))
    assert refused == []
    # The same markup let through unescaped would be refused, and the render stopped.
    raw = f"<html><head>{HOSTILE.split(' ', 2)[-1]}</head><body>{HOSTILE}</body></html>"
    raw = raw.replace("<link ", '<link rel="stylesheet" ')
    with pytest.raises(RenderError, match="only bundled assets load"):
        write_pdf(raw, tmp_path / "b.pdf", (), asset_fetcher(refused))
    assert refused and all(u.startswith(("http://", "file:///etc")) for u in refused)
    assert not (tmp_path / "b.pdf").exists() or (tmp_path / "b.pdf").stat().st_size == 0


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        (RenderLimits(max_html_bytes=1000), r"over the 1000 byte limit .*max_html_bytes"),
        (RenderLimits(max_pdf_bytes=1000), r"over the 1000 byte limit .*max_pdf_bytes"),
        (RenderLimits(seconds=0.05), r"longer than 0.05 s \(RenderLimits.seconds\)"),
        (RenderLimits(max_memory_bytes=30 * 2**20), r"memory.*RenderLimits.max_memory_bytes"),
    ],
)
def test_limits_fail_clearly_and_leave_the_old_file(
    rendered: Rendered, tmp_path: Path, limits: RenderLimits, message: str
) -> None:
    out = tmp_path / "dossier.pdf"
    out.write_bytes(b"old")
    with pytest.raises(RenderError, match=message) as caught:
        render_pdf(rendered.doc, out, limits=limits)
    assert caught.value.exit_code == 2
    assert out.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dossier.pdf"]


def test_pdf_metadata_names_the_document(rendered: Rendered) -> None:
    info = PdfReader(io.BytesIO(rendered.pdf.read_bytes())).metadata
    assert info is not None and info.title == "Annex IV technical documentation"
