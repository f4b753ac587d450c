"""The documented example card is valid and shows every field the schema accepts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from collectors.system_card import card_digest, read_card
from schemas.system_card import SystemCard

EXAMPLE = Path(__file__).parents[2] / "docs" / "system-card.example.yaml"


def aliases(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Every field path of a card model, by the names a card is written with."""
    found: set[str] = set()
    for name, field in model.model_fields.items():
        path = prefix + (field.alias or name)
        found.add(path)
        for arg in _types(field.annotation):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                found |= aliases(arg, path + ".")
    return found


def _types(annotation: Any) -> list[Any]:
    args = getattr(annotation, "__args__", None)
    if not args:
        return [annotation]
    return [t for a in args for t in _types(a)]


def present(doc: Any, prefix: str = "") -> set[str]:
    found: set[str] = set()
    if isinstance(doc, dict):
        for key, value in doc.items():
            found.add(prefix + key)
            found |= present(value, prefix + key + ".")
    elif isinstance(doc, list):
        for value in doc:
            found |= present(value, prefix)
    return found


def test_the_example_card_is_valid_and_documents_every_field() -> None:
    loaded = read_card(EXAMPLE)
    written = present(loaded.card.to_json())
    # optional fields the example leaves out on purpose, each for a stated reason
    omitted = {
        "previousVersion",  # the first version
        "provider.authorisedRepresentative",  # an EU provider needs none
        "provider.authorisedRepresentative.name",
        "provider.authorisedRepresentative.address",
        "provider.authorisedRepresentative.contact",
        "components.baseModel.digest",  # given by path here
        "components.adapters.digest",
        "components.datasets.digest",
        "declarationOfConformity.notifiedBody",  # internal control, Annex VI
        "documentation.productIllustrations",  # not a product component: a gap, on purpose
        "documentation.noStandardsSolutions",  # a standard is applied
        "standards.parts",
        "deployers.address",  # contact details only, for brevity
        "gdpr.controller.address",
        "gdpr.dpo.address",
    }
    missing = aliases(SystemCard) - written - omitted
    assert not missing, f"document these fields in {EXAMPLE.name}: {sorted(missing)}"


def test_the_card_digest_ignores_formatting_but_not_content(tmp_path: Path) -> None:
    text = EXAMPLE.read_text()
    reformatted = tmp_path / "card.yaml"
    reformatted.write_text("# a comment\n" + text.replace("version: 1.0.0", "version: '1.0.0'"))
    same = read_card(reformatted)
    assert card_digest(same.card) == card_digest(read_card(EXAMPLE).card)
    changed = tmp_path / "changed.yaml"
    changed.write_text(text.replace("version: 1.0.0", "version: 1.0.1"))
    assert card_digest(read_card(changed).card) != card_digest(same.card)
