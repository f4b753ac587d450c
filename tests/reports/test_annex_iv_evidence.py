"""The Annex IV dossier from a real log: every point in order, collected items citing the entries
they came from, declared items naming card fields, gaps instead of blanks, the `at` cut-off, an
unknown system, and the card's history as point 6."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from collectors.models import BaseRef, collect_model
from evidence.errors import InputError
from evidence.home import Home
from reports.annex_iv import build_annex_iv
from reports.document import Coverage, Document, Paragraph, Point, Source, Table
from schemas.oversight import OversightAction
from tests.reports.annex_iv_fixture import ADAPTER, BASE, NOW, SYSTEM, AnnexRig, Logged, populate

REFS = (
    *(f"1({c})" for c in "abcdefgh"),
    *(f"2({c})" for c in "abcdefgh"),
    *(str(n) for n in range(3, 10)),
)
# points only a person can fill: with a bare card, each must show a gap, never a blank
DECLARED_ONLY = ("1(d)", "1(f)", "1(g)", "1(h)", "2(f)", "7", "8")


@pytest.fixture
def rig(sqlite_home: Home, tmp_path: Path) -> Iterator[AnnexRig]:
    r = AnnexRig(sqlite_home, tmp_path)
    yield r
    r.close()


def point(doc: Document, ref: str) -> Point:
    return next(p for p in doc.points() if p.ref == ref)


def cited(p: Point, source: Source = Source.COLLECTED) -> set[int]:
    return {c.index for item in p.items if item.source is source for c in item.citations}


def gap_text(p: Point) -> str:
    return " | ".join(f"{g.what} -> {g.fill}" for g in p.gaps)


def test_every_point_of_annex_iv_in_order_under_its_section(rig: AnnexRig) -> None:
    populate(rig)
    doc = build_annex_iv(rig.store, SYSTEM, now=NOW)
    assert doc.kind == "annex-iv"
    assert tuple(p.ref for p in doc.points()) == REFS
    sections = [s.title.split()[0] for s in doc.sections]
    assert sections == [str(n) for n in range(1, 10)]
    for section in doc.sections:
        for p in section.points:
            assert p.ref.startswith(section.title.split()[0]), (section.title, p.ref)
            assert p.asks and p.title


def test_collected_items_cite_the_entries_they_were_read_from(rig: AnnexRig) -> None:
    logged = populate(rig)
    chain = logged.chain
    doc = build_annex_iv(rig.store, SYSTEM, now=NOW)
    assert doc.checkpoint.size == rig.store.size() == logged.card + 1
    assert doc.system is not None and doc.system.card_entry == logged.card
    assert logged.card in cited(point(doc, "1(a)"))
    assert cited(point(doc, "1(b)")) == {logged.batch}
    assert logged.gpu in cited(point(doc, "1(c)")) and cited(point(doc, "1(e)")) == {logged.gpu}
    assert {chain.base, chain.adapter} <= cited(point(doc, "2(a)"))
    assert chain.run in cited(point(doc, "2(c)"))
    assert cited(point(doc, "2(d)")) == {chain.dataset}
    assert set(logged.events) <= cited(point(doc, "2(e)"))
    assert logged.eval_run in cited(point(doc, "2(g)"))
    assert logged.eval_run in cited(point(doc, "4"))
    assert logged.incident in cited(point(doc, "9"))
    # every citation is the entry itself: leaf hash, signer, kind and times as the log holds them
    for c in doc.citations():
        entry = rig.store.get(c.index)
        assert (c.digest, c.signer, c.predicate_type) == (
            entry.leaf_hash.hex(),
            entry.keyid,
            entry.predicate_type,
        )
        assert c.logged_at == entry.logged_at


def test_a_full_card_declares_its_narratives_naming_each_card_field(rig: AnnexRig) -> None:
    populate(rig)
    doc = build_annex_iv(rig.store, SYSTEM, now=NOW)
    for ref, key in (
        ("1(a)", "intendedPurpose"),
        ("1(g)", "documentation.userInterface"),
        ("2(f)", "predeterminedChanges"),
        ("4", "documentation.metricsRationale"),
        ("7", "standards"),
    ):
        headings = [i.heading for i in point(doc, ref).items if i.source is Source.DECLARED]
        assert any(key in h for h in headings), (ref, headings)
    assert point(doc, "2(g)").coverage in (Coverage.COMPLETE, Coverage.PARTIAL)
    draft = point(doc, "8")
    text = " ".join(b.text for i in draft.items for b in i.blocks if isinstance(b, Paragraph))
    assert "draft" in text.lower() + " ".join(i.heading.lower() for i in draft.items)
    assert draft.coverage is not Coverage.MISSING


def test_without_eval_runs_2g_is_a_gap_naming_the_adapter(rig: AnnexRig) -> None:
    logged = populate(rig, evals=False)
    doc = build_annex_iv(rig.store, SYSTEM, now=NOW)
    p = point(doc, "2(g)")
    assert not cited(p)
    text = gap_text(p)
    assert f"adapter {ADAPTER}" in text and logged.chain.adapter_digest[:12] in text
    assert f"base-model {BASE}" not in text  # deployed is the adapter on its base: test that
    assert "annex eval" in text
    assert not cited(point(doc, "4"))
    assert point(doc, "4").gaps


def test_a_bare_card_shows_gaps_not_blanks(rig: AnnexRig) -> None:
    populate(rig, minimal_card=True)
    doc = build_annex_iv(rig.store, SYSTEM, now=NOW)
    for ref in DECLARED_ONLY:
        p = point(doc, ref)
        assert p.coverage is Coverage.MISSING, (ref, p.items)
        assert p.gaps and all(g.what and g.fill for g in p.gaps), ref
    # a point that evidence fills still lists what the card should have said
    for ref, key in (("1(a)", "intendedPurpose"), ("1(g)", "userInterface"), ("5", "risk")):
        assert key in gap_text(point(doc, ref)), ref
    assert "declarationOfConformity" in gap_text(point(doc, "8"))
    # nothing anywhere is blank or a placeholder
    for p in doc.points():
        for item in p.items:
            for b in item.blocks:
                if isinstance(b, Paragraph):
                    assert b.text.strip() and "TODO" not in b.text, (p.ref, item.heading)
    counts = doc.coverage()
    assert counts[Coverage.MISSING] >= len(DECLARED_ONLY)
    assert sum(counts.values()) == len(REFS)


def test_at_cuts_evidence_and_uses_that_checkpoint(rig: AnnexRig) -> None:
    logged = populate(rig)
    at = rig.store.size()
    later_eval = rig.eval_run(observed="2026-11-20T10:00:00Z")
    later_gpu = rig.gpu("gpu-node-02")
    now = build_annex_iv(rig.store, SYSTEM, now=NOW)
    then = build_annex_iv(rig.store, SYSTEM, at=at, now=NOW)
    assert then.checkpoint.size == at
    assert then.checkpoint.root_hex == rig.store.checkpoint(at).root.hex()
    assert now.checkpoint.size == rig.store.size()
    assert all(c.index < at for c in then.citations())
    assert later_eval not in cited(point(then, "2(g)"))
    assert later_eval in cited(point(now, "2(g)"))
    assert later_gpu not in cited(point(then, "1(e)")) and later_gpu in cited(point(now, "1(e)"))
    assert logged.eval_run in cited(point(then, "2(g)"))


def test_at_before_the_card_or_at_no_checkpoint_is_refused(rig: AnnexRig) -> None:
    logged = populate(rig)
    with pytest.raises(InputError, match=f"no system '{SYSTEM}'"):
        build_annex_iv(rig.store, SYSTEM, at=logged.card, now=NOW)
    with pytest.raises(InputError, match="no checkpoint was issued at tree size 999"):
        build_annex_iv(rig.store, SYSTEM, at=999, now=NOW)


def test_an_unknown_system_is_refused_listing_the_systems(rig: AnnexRig) -> None:
    populate(rig)
    with pytest.raises(InputError, match=f"no system 'nope'.*systems: {SYSTEM}"):
        build_annex_iv(rig.store, "nope", now=NOW)


def test_a_second_card_version_shows_in_point_6_with_what_changed(
    rig: AnnexRig, tmp_path: Path
) -> None:
    logged = populate(rig)
    chain = logged.chain
    retrained = tmp_path / "lora-v2"
    shutil.copytree(chain.adapter_dir, retrained)
    (retrained / "NOTES.md").write_text("retrained on Q4 data\n", encoding="utf-8")
    statement = collect_model(
        retrained, name=ADAPTER, base=BaseRef(BASE, chain.base_digest, chain.base)
    )
    rig.store.append([statement])
    new_digest = statement["subject"][0]["digest"]["sha256"]
    doc = rig.card_doc(version="1.1.0", previousVersion="1.0.0", intendedPurpose="Changed.")
    doc["components"]["adapters"] = [{"name": ADAPTER, "digest": new_digest}]
    second = rig.add_card(doc, previous=logged.card)

    report = build_annex_iv(rig.store, SYSTEM, now=NOW)
    p6 = point(report, "6")
    assert {logged.card, second} <= cited(p6)
    table = next(b for i in p6.items for b in i.blocks if isinstance(b, Table))
    row = " ".join(next(r for r in table.rows if "1.1.0" in r))
    assert f"adapter {ADAPTER}" in row
    assert chain.adapter_digest[:12] in row and new_digest[:12] in row
    assert "intendedPurpose" in row
    first = " ".join(next(r for r in table.rows if "1.0.0" in r[0]))
    assert "first" in first
    # the new adapter has no eval run yet: 2(g) says so, by its new digest
    assert new_digest[:12] in gap_text(point(report, "2(g)"))
    assert report.subtitle.endswith("1.1.0")


def test_tables_are_bounded_with_a_note_of_the_rest(rig: AnnexRig) -> None:
    populate(rig)
    for i in range(24):
        rig.gpu(f"gpu-node-{i + 2:02d}")
    doc = build_annex_iv(rig.store, SYSTEM, now=NOW)
    table = next(b for i in point(doc, "1(e)").items for b in i.blocks if isinstance(b, Table))
    assert len(table.rows) == 20
    assert table.note is not None and "5 more" in table.note


def test_coverage_counts_match_the_points(rig: AnnexRig) -> None:
    logged: Logged = populate(rig)
    doc = build_annex_iv(rig.store, SYSTEM, now=NOW)
    counts = doc.coverage()
    assert sum(counts.values()) == len(REFS)
    assert counts[Coverage.COMPLETE] == sum(p.coverage is Coverage.COMPLETE for p in doc.points())
    assert all(p.items or p.gaps for p in doc.points())
    assert logged.card in {c.index for c in doc.citations()}


def test_evidence_of_another_system_is_left_out(rig: AnnexRig) -> None:
    populate(rig)
    other_event = rig.event(
        OversightAction.OVERRIDE, "erin", "2026-11-05T10:00:00Z", system="other"
    )
    doc = build_annex_iv(rig.store, SYSTEM, now=NOW)
    assert other_event not in {c.index for c in doc.citations()}
    assert other_event < doc.checkpoint.size


def test_a_component_the_log_does_not_hold_is_a_gap(rig: AnnexRig) -> None:
    logged = populate(rig)
    doc = rig.card_doc(version="2.0.0")
    doc["components"]["adapters"] = [{"name": "ghost", "digest": "ef" * 32}]
    rig.add_card(doc, previous=logged.card)
    report = build_annex_iv(rig.store, SYSTEM, now=NOW)
    assert "adapter ghost (sha256 efefefefefef" in gap_text(point(report, "2(a)"))
    assert "adapter ghost" in gap_text(point(report, "2(g)"))
    assert logged.chain.adapter not in cited(point(report, "2(a)"))
