"""The Art 30 record and the DPIA inputs from a real log: declared card facts, what the
inference batches show, erasures counted by pseudonym, gaps named when the card is silent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from evidence.errors import InputError
from evidence.home import Home
from reports.document import Coverage, Document, Facts, Paragraph, Point, Section, Source, Table
from reports.gdpr import build_dpia_inputs, build_ropa
from reports.render import render_html
from tests.reports.oversight_fixture import ALICE, NOW, SYSTEM, Rig, populate

T = TypeVar("T")


@pytest.fixture
def rig(sqlite_home: Home, tmp_path: Path) -> Iterator[Rig]:
    r = Rig(sqlite_home, tmp_path)
    yield r
    r.close()


def section(doc: Document, starts: str) -> Section:
    return next(s for s in doc.sections if s.title.startswith(starts))


def point(s: Section, ref: str) -> Point:
    return next(p for p in s.points if p.ref == ref)


def facts(p: Point) -> dict[str, str]:
    return {
        k: v for item in p.items for b in item.blocks if isinstance(b, Facts) for k, v in b.rows
    }


def blocks(p: Point, kind: type[T]) -> list[T]:
    return [b for item in p.items for b in item.blocks if isinstance(b, kind)]


def text(doc: Document) -> str:
    """Every word the document shows."""
    out: list[str] = []
    for p in doc.points():
        out += [g.what for g in p.gaps] + [g.fill for g in p.gaps]
        for item in p.items:
            for b in item.blocks:
                if isinstance(b, Paragraph):
                    out.append(b.text)
                elif isinstance(b, Facts):
                    out += [f"{k} {v}" for k, v in b.rows]
                elif isinstance(b, Table):
                    out += [" ".join(r) for r in b.rows]
    return "\n".join(out)


def test_ropa_records_inference_logging_and_erasures_by_pseudonym(rig: Rig) -> None:
    populate(rig)
    receipt, alias = rig.erase_alice()
    doc = build_ropa(rig.store, now=NOW)
    assert doc.kind == "ropa"
    logging = section(doc, "Processing activity: inference logging of Loan Assistant")
    assert all(p.coverage is Coverage.COMPLETE for p in logging.points), [
        (p.ref, p.gaps) for p in logging.points
    ]
    controller = point(logging, "30(1)(a)")
    assert controller.items[0].source is Source.DECLARED
    assert ("name", "Example Credit Union eG") in blocks(controller, Facts)[0].rows
    held = facts(point(logging, "30(1)(c)"))
    assert held["callers (distinct pseudonyms)"] == "2"
    assert held["batches with prompts and completions retained"] == "1 of 1"
    retention = point(logging, "30(1)(f)")
    erased = blocks(retention, Table)[-1]
    assert [(r[1], r[2], r[4]) for r in erased.rows] == [("request", alias, str(receipt))]
    assert receipt in {c.index for c in retention.items[0].citations}
    assert "1 erasure receipt(s) touch these batches" in text(doc)
    assert ALICE not in text(doc) and "alice" not in text(doc)


def test_ropa_evidence_store_counts_pseudonyms_and_names_crypto_shredding(rig: Rig) -> None:
    populate(rig)
    rig.erase_alice()
    store = section(build_ropa(rig.store, now=NOW), "Processing activity: the evidence store")
    people = facts(point(store, "30(1)(c)"))
    assert people["reviewer pseudonyms (oversight events, attestations)"] == "5"
    assert people["caller pseudonyms (inference batches)"] == "2"
    erasure = point(store, "30(1)(f)")
    said = " ".join(b.text for b in blocks(erasure, Paragraph))
    assert "crypto-shredding" in said and "1 erasure receipt(s) logged." in said
    security = point(store, "30(1)(g)")
    assert {c.kind for c in security.items[-1].citations} == {"key-event"}
    assert [i.source for i in security.items] == [Source.DECLARED, Source.COLLECTED]


def test_a_card_without_gdpr_shows_named_gaps(rig: Rig) -> None:
    populate(rig)
    rig.card(gdpr=False, system_id="bare")
    doc = build_ropa(rig.store, system_id="bare", now=NOW)
    logging = section(doc, "Processing activity: inference logging")
    gaps = " | ".join(g.what for p in logging.points for g in p.gaps)
    for missing in ("controller", "data protection officer", "purposes", "recipients", "transfers"):
        assert missing in gaps
    assert all("gdpr." in g.fill for p in logging.points[:5] for g in p.gaps)
    assert point(logging, "30(1)(d)").coverage is Coverage.MISSING
    assert doc.system is not None and doc.system.id == "bare"


def test_ropa_at_a_checkpoint_before_the_erasure_counts_none(rig: Rig) -> None:
    sizes = populate(rig)
    rig.erase_alice()
    doc = build_ropa(rig.store, system_id=SYSTEM, at=sizes["end"], now=NOW)
    assert "0 erasure receipt(s) touch these batches" in text(doc)
    assert doc.checkpoint.size == sizes["end"]


def test_dpia_inputs_read_datasheets_scale_risks_and_safeguards(rig: Rig) -> None:
    populate(rig)
    doc = build_dpia_inputs(rig.store, SYSTEM, now=NOW)
    assert doc.kind == "dpia-inputs"
    processing = section(doc, "The processing")
    data = point(processing, "35(7)(a)-data")
    assert blocks(data, Table)[0].rows == (("loan-notes", "contract", "yes", "health"),)
    assert "Art 9) in the data: health" in blocks(data, Paragraph)[-1].text
    scale = facts(point(processing, "35(7)(a)-scale"))
    assert scale["requests by the system's models"] == "10"
    assert scale["callers (distinct pseudonyms)"] == "2"
    assessment = section(doc, "Assessment")
    assert point(assessment, "35(7)(b)").coverage is Coverage.COMPLETE  # dpiaReference given
    risks = point(assessment, "35(7)(c)")
    assert [r[0] for r in blocks(risks, Table)[0].rows] == ["R1", "R2"]
    assert [r[0] for r in blocks(risks, Table)[1].rows] == ["inc-1"]
    safeguards = point(section(doc, "Measures"), "35(7)(d)")
    assert "11 oversight event(s) logged for the system." in text(doc)
    assert safeguards.coverage is Coverage.COMPLETE


def test_dpia_inputs_name_missing_datasheet_fields_and_gdpr_gaps(rig: Rig) -> None:
    rig.models()
    rig.dataset("source: branch files\n")
    rig.card(gdpr=False, system_id="bare")
    doc = build_dpia_inputs(rig.store, "bare", now=NOW)
    gaps = " | ".join(g.what for _, g in doc.gaps())
    assert "dataset loan-notes's datasheet does not give legalBasis, personalData" in gaps
    assert "the necessity and proportionality assessment" in gaps
    assert "no inference batch in the log served" in gaps
    assert "no oversight event logged for the system" in gaps
    assert "the categories of data subjects are not declared" in gaps
    fills = " | ".join(g.fill for _, g in doc.gaps())
    assert "add `gdpr.dpiaReference` to the system card" in fills
    data = point(section(doc, "The processing"), "35(7)(a)-data")
    assert blocks(data, Table)[0].rows == (
        ("loan-notes", "not declared", "not declared", "not declared"),
    )


def test_unknown_system_is_an_input_error(rig: Rig) -> None:
    populate(rig)
    with pytest.raises(InputError, match="no system 'nope'"):
        build_dpia_inputs(rig.store, "nope")
    with pytest.raises(InputError, match="no system 'nope'"):
        build_ropa(rig.store, system_id="nope")


def test_the_renderer_draws_both(rig: Rig) -> None:
    populate(rig)
    for doc in (build_ropa(rig.store, now=NOW), build_dpia_inputs(rig.store, SYSTEM, now=NOW)):
        html = render_html(doc)
        assert "Example Credit Union eG" in html and "alice" not in html


def test_ropa_of_an_empty_log_names_the_missing_systems(rig: Rig) -> None:
    doc = build_ropa(rig.store, now=NOW)
    gaps = " | ".join(g.what for _, g in doc.gaps())
    assert "no AI system is recorded" in gaps
    assert "no entry holds a pseudonym yet" in gaps
    assert doc.system is None
