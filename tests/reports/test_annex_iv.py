"""The Annex IV builder on real logs: every point in order, collected items citing the entries
they were read from, declared items naming card fields, and gaps (never blanks) for the rest."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from api.demo import _collect_lineage, _collect_models
from collectors.gpu import collect_gpu
from collectors.nvml_fake import fleet
from collectors.system_card import card_statement, read_card, resolve_components
from evidence.errors import InputError
from evidence.home import Home
from reports.annex_iv import build_annex_iv
from reports.document import Coverage, Document, Point, Source
from reports.render import render_html
from schemas.gpu import SiteLabels
from schemas.policy import EVAL_RUN
from schemas.statement import STATEMENT_TYPE

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "system-card.example.yaml"
REFS = [
    "1(a)", "1(b)", "1(c)", "1(d)", "1(e)", "1(f)", "1(g)", "1(h)",
    "2(a)", "2(b)", "2(c)", "2(d)", "2(e)", "2(f)", "2(g)", "2(h)",
    "3", "4", "5", "6", "7", "8", "9",
]  # fmt: skip


@dataclass
class Logged:
    home: Home
    base: Path
    adapter: Path
    dataset: Path
    tmp: Path

    def add_card(self, **changes: Any) -> int:
        doc = yaml.safe_load(EXAMPLE.read_text())
        doc["components"] = {
            "baseModel": {"name": "annex-demo-base", "path": str(self.base)},
            "adapters": [{"name": "annex-demo-lora", "path": str(self.adapter)}],
            "datasets": [{"name": "tickets", "path": str(self.dataset), "role": "training"}],
        }
        doc.update(changes)
        path = self.tmp / f"card-{doc['version']}.yaml"
        path.write_text(yaml.safe_dump(doc))
        loaded = read_card(path)
        with self.home.open_store(write=True) as store:
            statement = card_statement(
                loaded, resolve_components(loaded, store), previous_entry=None
            )
            return store.append([statement]).first_index

    def digest(self, role: str) -> str:
        with self.home.open_store() as store:
            kind = "model" if role == "base" else "adapter"
            name = "annex-demo-base" if role == "base" else "annex-demo-lora"
            found = store.query(subject_name=f"{kind}:{name}")
            return found[0].subjects[0].digest

    def add_eval(self) -> int:
        base, adapter = self.digest("base"), self.digest("adapter")
        predicate = {
            "observedAt": "2026-11-20T10:00:00Z",
            "origin": "run",
            "model": {"name": "annex-demo-base", "manifestDigest": base},
            "adapter": {"name": "annex-demo-lora", "manifestDigest": adapter},
            "tasks": [{"name": "annex_mc"}],
            "results": {"annex_mc": {"acc,none": 0.75, "acc_stderr,none": 0.05}},
            "groups": {"annex_mc": {"en": {"acc,none": 0.8}, "de": {"acc,none": 0.7}}},
        }
        statement = {
            "_type": STATEMENT_TYPE,
            "subject": [
                {"name": "adapter:annex-demo-lora", "digest": {"sha256": adapter}},
                {"name": "model:annex-demo-base", "digest": {"sha256": base}},
            ],
            "predicateType": EVAL_RUN,
            "predicate": predicate,
        }
        with self.home.open_store(write=True) as store:
            return store.append([statement]).first_index


@pytest.fixture
def logged(tmp_path: Path) -> Logged:
    home = Home(tmp_path / "annex")
    home.init("test.example/log")
    base, adapter = _collect_models(home, tmp_path / "models", lambda _: None)
    _collect_lineage(home, tmp_path / "data", lambda _: None)
    with home.open_store(write=True) as store:
        store.append([collect_gpu(fleet(), site=SiteLabels(site="fra-1"))])
    dataset = next((tmp_path / "data").iterdir())
    return Logged(home, base, adapter, dataset, tmp_path)


def build(logged: Logged, system: str = "loan-assistant", **kwargs: Any) -> Document:
    with logged.home.open_store() as store:
        return build_annex_iv(store, system, **kwargs)


def points(doc: Document) -> dict[str, Point]:
    return {p.ref: p for p in doc.points()}


def gap_text(point: Point) -> str:
    return " | ".join(g.what for g in point.gaps)


def test_every_point_in_order_with_citations_of_the_entries_read(logged: Logged) -> None:
    logged.add_card()
    evaluated = logged.add_eval()
    doc = build(logged)
    assert [p.ref for p in doc.points()] == REFS
    found = points(doc)
    tested = [i for i in found["2(g)"].items if i.source is Source.COLLECTED]
    assert [c.index for c in tested[0].citations] == [evaluated]
    assert "no eval run" not in gap_text(found["2(g)"])
    assert found["2(g)"].coverage is Coverage.COMPLETE
    groups = [i for i in found["3"].items if i.heading.startswith("Accuracy per group")]
    assert groups and groups[0].citations[0].index == evaluated
    bound = [i for i in found["2(a)"].items if i.heading == "adapter annex-demo-lora"]
    assert "Bound to the base model's manifest" in str(bound[0].blocks)
    assert found["2(c)"].coverage is Coverage.COMPLETE  # the training run is logged
    assert any(i.heading == "GPU fleet" for i in found["1(e)"].items)
    declared = [i for i in found["1(a)"].items if i.source is Source.DECLARED]
    assert declared[0].heading == "Intended purpose (card: intendedPurpose)"
    assert found["1(f)"].coverage is Coverage.MISSING  # the example card leaves it out
    assert "documentation.productIllustrations" in found["1(f)"].gaps[0].fill


def test_without_an_eval_the_adapter_is_a_named_gap_in_2g(logged: Logged) -> None:
    logged.add_card()
    found = points(build(logged))
    assert "no eval run is bound to adapter annex-demo-lora" in gap_text(found["2(g)"])
    assert "annex eval run" in found["2(g)"].gaps[-1].fill
    assert found["4"].coverage is Coverage.PARTIAL
    assert "risk R1 is monitored by eval-run evidence" in gap_text(found["5"])


def test_a_bare_card_gives_gaps_never_blanks(logged: Logged) -> None:
    card = {"apiVersion": "annex.dev/system-card/v1", "id": "bare", "name": "Bare",
            "version": "0.1", "provider": {"name": "ACME"}}  # fmt: skip
    path = logged.tmp / "bare.yaml"
    path.write_text(yaml.safe_dump(card))
    loaded = read_card(path)
    with logged.home.open_store(write=True) as store:
        store.append([card_statement(loaded, (), previous_entry=None)])
    doc = build(logged, "bare")
    found = points(doc)
    for ref in ("1(f)", "1(g)", "1(h)", "2(f)", "7", "8"):
        assert found[ref].coverage is Coverage.MISSING, ref
        assert found[ref].gaps, ref
    assert "the system card does not declare the intended purpose" in gap_text(found["1(a)"])
    assert "the base model" in gap_text(found["2(a)"])
    for p in doc.points():
        assert p.items or p.gaps, p.ref  # nothing is left blank
    html = render_html(doc)
    assert "TODO" not in html and "lorem" not in html.lower()


def test_a_dossier_at_an_earlier_checkpoint_sees_nothing_after_it(logged: Logged) -> None:
    card = logged.add_card()
    logged.add_eval()
    earlier = build(logged, at=card + 1)
    assert earlier.checkpoint.size == card + 1
    assert max(c.index for c in earlier.citations()) <= card
    assert "no eval run is bound" in gap_text(points(earlier)["2(g)"])
    with logged.home.open_store() as store:
        sizes = store.size()
    with pytest.raises(InputError, match="no system 'loan-assistant' in the log at checkpoint"):
        build(logged, at=card)
    assert sizes > card


def test_an_unknown_system_names_the_known_ones(logged: Logged) -> None:
    logged.add_card()
    with pytest.raises(InputError, match=r"no system 'nope'.*systems: loan-assistant"):
        build(logged, "nope")


def test_a_second_version_shows_what_changed_in_point_6(logged: Logged) -> None:
    logged.add_card()
    (logged.adapter / "adapter_config.json").write_text(
        (logged.adapter / "adapter_config.json").read_text().replace("}", ', "note": "v2"}', 1)
    )
    logged.add_card(version="1.1.0", previousVersion="1.0.0", intendedPurpose="Changed purpose.")
    found = points(build(logged))
    history = found["6"].items[0]
    assert len(history.citations) == 2
    table = history.blocks[0]
    rows = table.rows
    assert rows[1][0] == "1.1.0"
    assert "adapter annex-demo-lora:" in rows[1][3]
    assert "intendedPurpose" in rows[1][4]


def test_card_text_is_escaped_never_fetched(logged: Logged) -> None:
    hostile = '<img src="http://example.invalid/x.png"><link href="file:///etc/passwd">'
    logged.add_card(intendedPurpose=hostile)
    html = render_html(build(logged))
    assert "&lt;img src=&#34;http://example.invalid/x.png&#34;&gt;" in html
    assert '<img src="http://example.invalid' not in html
