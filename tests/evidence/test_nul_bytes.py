"""A NUL character in text that reaches SQL: PostgreSQL refuses it and SQLite stores it, so
Annex refuses it first, and both databases answer the same input the same way."""

from __future__ import annotations

import pytest

from evidence.errors import InputError
from evidence.store import Store
from tests.conftest import statement


def test_a_subject_name_with_a_nul_is_refused_on_both_databases(store: Store) -> None:
    size = store.size()
    bad = statement(1)
    bad["subject"][0]["name"] = "model:\x00base"
    with pytest.raises(InputError, match="must not contain a NUL character"):
        store.append([bad])
    bad = statement(2)
    bad["predicateType"] = "https://annex.dev/predicates/x\x00/v1"
    with pytest.raises(InputError, match="predicateType"):
        store.append([bad])
    assert store.size() == size


@pytest.mark.parametrize("field", ["predicate_type", "subject_digest", "subject_name"])
def test_a_search_for_text_with_a_nul_is_refused_on_both_databases(
    store: Store, field: str
) -> None:
    with pytest.raises(InputError, match="holds a NUL character"):
        store.query(**{field: "a\x00b"})
