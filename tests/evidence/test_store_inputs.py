"""Input the store refuses before SQL sees it, the same way on both databases: a NUL character
(PostgreSQL refuses it, SQLite stores it); and a database that cannot be reached is said to be
unreachable."""

from __future__ import annotations

import pytest

from evidence.errors import InputError, StoreError
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


def test_an_unreachable_database_is_said_to_be_unreachable() -> None:
    """Not "run annex init": the log may well exist on a server that is down."""
    with pytest.raises(StoreError, match="cannot reach the database") as caught:
        Store.open("postgresql+psycopg://annex:secret@127.0.0.1:1/annex")
    assert "secret" not in str(caught.value) and "annex init" not in str(caught.value)
