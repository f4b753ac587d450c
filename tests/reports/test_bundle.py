"""The evidence bundle and verify-dossier: every citation checked offline, tampering caught."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from evidence.canonical import canonical_bytes
from evidence.errors import InputError, VerificationError
from evidence.home import Home
from reports import render
from reports.bundle import FORMAT, build_bundle, verify_dossier
from reports.document import Citation, Document, Item, Point, Section, Source
from reports.render import BUNDLE_NAME, Attachment, render_pdf
from tests.conftest import statement
from tests.reports.test_render import checkpoint_ref, make_document, pdf_text


@dataclass(frozen=True)
class Dossier:
    home: Home
    doc: Document
    pdf: Path
    beside: Path
    bundle: bytes


@pytest.fixture(scope="module")
def dossier(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dossier]:
    root = tmp_path_factory.mktemp("dossier")
    home = Home(root / "annex")
    home.init("test.example/log")
    with home.open_store(write=True) as store:
        doc = make_document(store)
        bundle = build_bundle(store, doc, home.trust_path.read_bytes())
    pdf, beside = root / "dossier.pdf", root / "dossier.bundle.json"
    render_pdf(doc, pdf, attachments=[Attachment(BUNDLE_NAME, bundle)])
    beside.write_bytes(bundle)
    yield Dossier(home, doc, pdf, beside, bundle)


def test_dossier_verifies_offline(dossier: Dossier) -> None:
    report = verify_dossier(dossier.pdf, trust=dossier.home.trust(), beside=dossier.beside)
    cited = dossier.doc.citations()
    assert report.entries_checked == len(cited) == report.citations_in_text
    assert report.checkpoint_size == dossier.doc.checkpoint.size
    assert report.checkpoint_root == dossier.doc.checkpoint.root_hex
    assert (report.trust_source, report.bundle_trust_matches, report.beside_checked) == (
        "given",
        True,
        True,
    )
    assert report.summary()[0] == "OK: Annex IV technical documentation (Loan triage 1.4.0)"
    out = report.to_json()
    assert out["ok"] is True and out["signatures"] == [] and out["receipt"] is None
    assert out["document"]["citations"][0] == {"index": cited[0].index, "digest": cited[0].digest}
    assert out["pdf_sha256"] == hashlib.sha256(dossier.pdf.read_bytes()).hexdigest()


def test_without_a_trust_file_the_bundled_one_is_used_and_said(dossier: Dossier) -> None:
    report = verify_dossier(dossier.pdf)
    assert report.trust_source == "bundle"
    assert any("self-asserted" in line for line in report.summary())


def test_bundle_is_canonical_stable_and_complete(dossier: Dossier) -> None:
    with dossier.home.open_store() as store:
        again = build_bundle(store, dossier.doc, dossier.home.trust_path.read_bytes())
    assert again == dossier.bundle
    body = json.loads(dossier.bundle)
    assert canonical_bytes(body) == dossier.bundle
    assert body["format"] == FORMAT
    assert body["checkpoint"] == dossier.doc.checkpoint.note
    assert body["trust"] == dossier.home.trust_path.read_text()
    assert [e["index"] for e in body["entries"]] == [c.index for c in dossier.doc.citations()]
    assert all(e["proof"].startswith("c2sp.org/tlog-proof@v1\n") for e in body["entries"])


def test_a_changed_copy_beside_the_pdf_fails(dossier: Dossier, tmp_path: Path) -> None:
    copy = tmp_path / "copy.json"
    copy.write_bytes(dossier.bundle.replace(b'"format"', b'"format" '))
    with pytest.raises(VerificationError, match="differs from the evidence bundle attached"):
        verify_dossier(dossier.pdf, trust=dossier.home.trust(), beside=copy)


def _tamper_envelope(bundle: bytes, position: int) -> bytes:
    body = json.loads(bundle)
    envelope = body["entries"][position]["envelope"]
    payload = bytearray(base64.b64decode(envelope["payload"]))
    payload[payload.index(b'"n":') + 4] ^= 0x01  # one byte of the signed statement
    envelope["payload"] = base64.b64encode(bytes(payload)).decode()
    return canonical_bytes(body)


def test_one_byte_changed_in_a_bundled_envelope_fails(dossier: Dossier, tmp_path: Path) -> None:
    pdf = tmp_path / "dossier.pdf"
    tampered = _tamper_envelope(dossier.bundle, 1)
    render_pdf(dossier.doc, pdf, attachments=[Attachment(BUNDLE_NAME, tampered)])
    index = dossier.doc.citations()[1].index
    with pytest.raises(VerificationError, match=f"bundled entry #{index}: signature") as caught:
        verify_dossier(pdf, trust=dossier.home.trust())
    assert caught.value.index == index
    # The untouched beside copy no longer matches the attached one either.
    with pytest.raises(VerificationError, match="differs"):
        verify_dossier(pdf, trust=dossier.home.trust(), beside=dossier.beside)


def test_a_listed_citation_must_name_its_entry(dossier: Dossier, tmp_path: Path) -> None:
    body = json.loads(dossier.bundle)
    first = body["document"]["citations"][0]
    first["digest"] = hashlib.sha256(b"another entry").hexdigest()
    pdf = tmp_path / "dossier.pdf"
    render_pdf(dossier.doc, pdf, attachments=[Attachment(BUNDLE_NAME, canonical_bytes(body))])
    with pytest.raises(VerificationError, match=rf"citation #{first['index']} names leaf hash"):
        verify_dossier(pdf, trust=dossier.home.trust())


def test_a_pdf_citing_an_entry_outside_the_bundle_fails(dossier: Dossier, tmp_path: Path) -> None:
    with dossier.home.open_store(write=True) as store:
        wider = make_document(store, extra=1)
    extra = wider.citations()[-1].index
    pdf = tmp_path / "dossier.pdf"
    render_pdf(wider, pdf, attachments=[Attachment(BUNDLE_NAME, dossier.bundle)])
    with pytest.raises(VerificationError, match=f"cites entry #{extra} .*not in the evidence"):
        verify_dossier(pdf, trust=dossier.home.trust())


def test_a_citation_outside_the_log_cannot_be_bundled(dossier: Dossier) -> None:
    with dossier.home.open_store() as store:
        real = Citation.of(store.get(1))
        beyond = Citation(
            index=dossier.doc.checkpoint.size + 50,
            digest=real.digest,
            signer=real.signer,
            predicate_type=real.predicate_type,
            observed_at=None,
            logged_at=real.logged_at,
        )
        doc = Document(
            kind="annex-iv",
            title="t",
            subtitle="",
            generated_at=real.logged_at,
            checkpoint=dossier.doc.checkpoint,
            sections=(
                Section(
                    "s", (Point("1", "p", "", items=(Item(Source.COLLECTED, "h", (), (beyond,)),)),)
                ),
            ),
        )
        with pytest.raises(InputError, match=rf"citation #{beyond.index} lies beyond"):
            build_bundle(store, doc, b"{}")


def test_a_wrong_trust_file_fails(dossier: Dossier, tmp_path: Path) -> None:
    other = Home(tmp_path / "other")
    other.init("test.example/log")
    with pytest.raises(VerificationError, match="not signed by a trusted key"):
        verify_dossier(dossier.pdf, trust=other.trust())


def _receipt(home: Home, pdf: Path, out: Path) -> Path:
    """Logs a report statement naming the PDF's SHA-256 and writes its receipt."""
    digest = hashlib.sha256(pdf.read_bytes()).hexdigest()
    statement = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": pdf.name, "digest": {"sha256": digest}}],
        "predicateType": "https://annex.dev/predicates/report/v1",
        "predicate": {"observedAt": "2026-11-24T12:00:00Z", "kind": "annex-iv"},
    }
    with home.open_store(write=True) as store:
        index = store.append([statement]).first_index
        entry = store.get(index)
        proof = store.inclusion_proof(index)
    out.write_text(
        json.dumps({"envelope": json.loads(entry.envelope_bytes), "proof": proof.format()})
    )
    return out


def test_a_receipt_binds_the_pdf_bytes(dossier: Dossier, tmp_path: Path) -> None:
    pdf = tmp_path / "dossier.pdf"
    pdf.write_bytes(dossier.pdf.read_bytes())
    receipt = _receipt(dossier.home, pdf, tmp_path / "receipt.json")
    report = verify_dossier(pdf, trust=dossier.home.trust(), receipt=receipt)
    assert report.receipt is not None and report.to_json()["receipt"]["index"] > 0
    assert any(f"logged as entry {report.receipt.index}" in line for line in report.summary())
    pdf.write_bytes(pdf.read_bytes() + b"\n%changed\n")
    with pytest.raises(VerificationError, match=r"is for a file with SHA-256 .* not this PDF"):
        verify_dossier(pdf, trust=dossier.home.trust(), receipt=receipt)


def test_a_pdf_without_a_bundle_fails(dossier: Dossier, tmp_path: Path) -> None:
    pdf = tmp_path / "bare.pdf"
    render_pdf(dossier.doc, pdf)
    with pytest.raises(VerificationError, match=f"0 attachments named {BUNDLE_NAME}"):
        verify_dossier(pdf, trust=dossier.home.trust())


def _many(store_home: Home, count: int) -> Document:
    """A document one of whose items cites `count` entries."""
    with store_home.open_store(write=True) as store:
        base = make_document(store)
        first = store.append([statement(500 + i, kind="oversight-event") for i in range(count)])
        entries = store.query(after=first.first_index - 1, limit=count)
        checkpoint = checkpoint_ref(store)
    item = Item(Source.COLLECTED, "Oversight events", (), tuple(Citation.of(e) for e in entries))
    point = Point("2(e)", "Oversight", "Art 14.", (item,))
    return replace(
        base, sections=(*base.sections, Section("Many", (point,))), checkpoint=checkpoint
    )


def test_long_citation_lists_print_the_newest_and_count_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = Home(tmp_path / "annex")
    home.init("test.example/log")
    doc = _many(home, 30)
    monkeypatch.setattr(render, "APPENDIX_ROWS", 10)
    with home.open_store() as store:
        bundle = build_bundle(store, doc, home.trust_path.read_bytes())
    pdf = tmp_path / "dossier.pdf"
    render_pdf(doc, pdf, attachments=[Attachment(BUNDLE_NAME, bundle)])
    text = pdf_text(pdf)
    cited = doc.citations()
    many = [c for c in cited if c.kind == "oversight-event"]
    assert f"#{many[-1].index} {many[-1].digest[:12]}" in " ".join(text.split())
    assert f"#{many[0].index} {many[0].digest[:12]}" not in " ".join(text.split())
    assert f"The newest {render.CITE_ROWS} of 30 entries cited here" in " ".join(text.split())
    assert "oversight-event 30" in " ".join(text.split())
    report = verify_dossier(pdf, trust=home.trust())
    assert report.entries_checked == len(cited)
    assert report.citations_in_text < len(cited)


def test_a_pdf_stating_another_count_than_its_bundle_fails(
    dossier: Dossier, tmp_path: Path
) -> None:
    with dossier.home.open_store() as store:  # the bundle of the whole document
        bundle = build_bundle(store, dossier.doc, dossier.home.trust_path.read_bytes())
    fewer = replace(dossier.doc, sections=dossier.doc.sections[:1])
    assert len(fewer.citations()) < len(dossier.doc.citations())
    pdf = tmp_path / "dossier.pdf"
    render_pdf(fewer, pdf, attachments=[Attachment(BUNDLE_NAME, bundle)])
    with pytest.raises(VerificationError, match=r"the PDF says it cites .* the bundle lists"):
        verify_dossier(pdf, trust=dossier.home.trust())
