"""`annex system add | list | show` as a user runs them: a card becomes a version in the log,
its components resolved to the digests the log holds; a bad card appends nothing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from collectors.hashing import build_manifest
from evidence.home import Home
from schemas.system_card import SYSTEM_CARD
from tests.api.conftest import Annex, Template, log_size
from tests.collectors.lineage_data import write_dataset
from tests.collectors.model_dirs import write_adapter, write_base_model

EXAMPLE = Path(__file__).parents[2] / "docs" / "system-card.example.yaml"


@pytest.fixture
def annex(fresh: Path, annex_at: Callable[[Path], Annex]) -> Annex:
    """`annex` on a private copy of the template log (these commands append)."""
    return annex_at(fresh)


def card_file(tmp_path: Path, **changes: object) -> Path:
    """The example card with its components written next to it, plus `changes` at top level."""
    doc = yaml.safe_load(EXAMPLE.read_text())
    write_base_model(tmp_path / "models" / "tiny-base")
    write_adapter(tmp_path / "models" / "loan-lora")
    write_dataset(tmp_path / "data" / "loan-notes")
    doc.update(changes)
    path = tmp_path / "card.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_the_example_card_is_recorded_once_with_its_components(
    annex: Annex, fresh: Path, template: Template, tmp_path: Path
) -> None:
    card = card_file(tmp_path)
    collected = annex.fast("collect", "model", tmp_path / "models" / "tiny-base")
    assert collected.code == 0, collected.err
    first = annex.fast("system", "add", card, "--json")
    assert first.code == 0, first.err
    got = first.json()
    assert got["new"] is True and got["index"] == template.size + 1
    roles = {c["role"]: c for c in got["components"]}
    base_digest = build_manifest(tmp_path / "models" / "tiny-base").digest
    assert roles["base-model"]["digest"] == base_digest
    assert roles["base-model"]["entry"] == template.size  # the manifest logged just before
    assert roles["adapter"]["entry"] is None  # never collected: a gap in the reports
    with Home(fresh).open_store() as store:
        entry = store.get(got["index"])
    assert entry.predicate_type == SYSTEM_CARD
    assert entry.subjects[0].name == "system:loan-assistant"
    assert entry.statement["predicate"]["card"]["riskRegister"][0]["id"] == "R1"
    again = annex.fast("system", "add", card)
    assert again.code == 0, again.err
    assert f"already recorded at entry {got['index']}" in again.out
    assert log_size(fresh) == template.size + 2


def test_each_component_resolves_to_its_own_manifest_not_one_naming_it(
    annex: Annex, template: Template, tmp_path: Path
) -> None:
    card = card_file(tmp_path)
    base, adapter = tmp_path / "models" / "tiny-base", tmp_path / "models" / "loan-lora"
    assert annex.fast("collect", "model", base, "--name", "tiny-base").code == 0
    bound = annex.fast("collect", "model", adapter, "--base", base)
    assert bound.code == 0, bound.err  # this entry names the base as its second subject
    got = annex.fast("system", "add", card, "--json").json()
    entries = {c["role"]: c["entry"] for c in got["components"]}
    assert entries == {"base-model": template.size, "adapter": template.size + 1, "dataset": None}


def test_a_new_version_is_a_new_entry_and_a_changed_card_needs_one(
    annex: Annex, fresh: Path, template: Template, tmp_path: Path
) -> None:
    card = card_file(tmp_path)
    assert annex.fast("system", "add", card).code == 0
    changed = card_file(tmp_path, intendedPurpose="Something else entirely.")
    refused = annex.fast("system", "add", changed)
    assert refused.code == 2
    assert "version 1.0.0 of loan-assistant is already recorded" in refused.err
    assert log_size(fresh) == template.size + 1
    bumped = card_file(tmp_path, intendedPurpose="Something else.", version="1.1.0")
    done = annex.fast("system", "add", bumped, "--json")
    assert done.code == 0, done.err
    shown = annex.fast("system", "show", "loan-assistant", "--json").json()
    assert [v["version"] for v in shown["versions"]] == ["1.0.0", "1.1.0"]
    listed = annex.fast("system", "list", "--json").json()
    assert listed == [
        {
            "system": "loan-assistant",
            "name": "Loan Assistant",
            "version": "1.1.0",
            "entry": done.json()["index"],
        }
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("id: x\n", "field apiVersion: Field required"),
        ("- a\n- b\n", "a system card is a mapping"),
        ("apiVersion: annex.dev/system-card/v1\nid: [\n", "not valid YAML"),
        (
            "apiVersion: annex.dev/system-card/v1\nid: Bad Id\nname: n\nversion: '1'\n"
            "provider: {name: p}\n",
            "field id: String should match pattern",
        ),
        (
            "apiVersion: annex.dev/system-card/v1\nid: a\nname: n\nversion: '1'\n"
            "provider: {name: p}\nintendedPurpse: typo\n",
            "field intendedPurpse: Extra inputs are not permitted",
        ),
        (
            "apiVersion: annex.dev/system-card/v1\nid: a\nname: n\nversion: '1'\n"
            "provider: {name: p}\ncomponents: {adapters: [{name: x}]}\n",
            "field components.adapters.0: Value error, x: give exactly one of path or digest",
        ),
        (
            "apiVersion: annex.dev/system-card/v1\nid: a\nname: n\nversion: '1'\n"
            "provider: {name: p}\ncomponents: {baseModel: {name: b, path: nowhere}}\n",
            "components.baseModel.path:",
        ),
        (
            "apiVersion: annex.dev/system-card/v1\nid: a\nname: n\nversion: '1'\n"
            "provider: {name: p}\nrisk: {level: scary, grounds: g}\n",
            "field risk.level:",
        ),
    ],
)
def test_a_bad_card_is_refused_naming_the_field_and_nothing_is_logged(
    annex: Annex, fresh: Path, template: Template, tmp_path: Path, text: str, message: str
) -> None:
    card = tmp_path / "card.yaml"
    card.write_text(text)
    refused = annex.fast("system", "add", card)
    assert refused.code == 2, refused.out
    assert message in refused.err
    assert str(card) in refused.err
    assert log_size(fresh) == template.size


def test_show_of_an_unknown_system_fails(annex: Annex) -> None:
    shown = annex.fast("system", "show", "nope")
    assert shown.code == 2
    assert "no system 'nope'" in shown.err
