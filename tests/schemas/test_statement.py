"""The in-toto Statement model: what it checks when built."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.statement import DIGEST_HEX_LENGTHS, Statement, check_digest, predicate_type
from tests.conftest import statement


def test_a_valid_statement_and_its_observed_time() -> None:
    model = Statement.model_validate(statement(1, observed="2026-02-03T04:05:06+02:00"))
    assert model.observed_at == datetime(2026, 2, 3, 2, 5, 6, tzinfo=UTC)
    assert model.subject[0].name == "artifact-1"


def test_subject_keeps_extra_descriptor_fields() -> None:
    data = statement(1)
    data["subject"][0]["uri"] = "https://example.com/model"
    assert Statement.model_validate(data).subject[0].model_extra == {
        "uri": "https://example.com/model"
    }


@pytest.mark.parametrize(
    ("algorithm", "value", "ok"),
    [
        ("sha256", "a" * 64, True),
        ("sha512", "0" * 128, True),
        ("gitCommit", "1" * 40, True),
        ("dirHash", "abcd", True),  # unknown algorithms: any lowercase hex
        ("sha256", "a" * 63, False),
        ("sha256", "A" * 64, False),
        ("sha256", "g" * 64, False),
        ("sha 256", "a" * 64, False),
        ("sha256", "", False),
    ],
)
def test_digests(algorithm: str, value: str, ok: bool) -> None:
    if ok:
        check_digest(algorithm, value)
    else:
        with pytest.raises(ValueError):
            check_digest(algorithm, value)


def test_statements_are_frozen() -> None:
    model = Statement.model_validate(statement(1))
    with pytest.raises(ValidationError):
        model.predicate_type = "https://example.com/other"  # type: ignore[misc]


def test_predicate_type_uris_are_versioned() -> None:
    assert predicate_type("gpu-inventory") == "https://annex.dev/predicates/gpu-inventory/v1"
    assert predicate_type("eval-run", 2).endswith("/eval-run/v2")


@settings(max_examples=500, deadline=None)
@given(
    algorithm=st.sampled_from(["sha256", "myhash", "x-1", "1bad", "", "sha 256", "é"])
    | st.text(max_size=6),
    value=st.text(alphabet="0123456789abcdefABCDEF g\n\u0661", max_size=70),
)
def test_check_digest_takes_exactly_lowercase_hex_of_a_named_algorithm(
    algorithm: str, value: str
) -> None:
    """`check_digest` avoids regular expressions on its common path; it must still accept
    exactly what they describe."""
    expected_length = DIGEST_HEX_LENGTHS.get(algorithm)
    valid = (
        re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", algorithm) is not None
        and re.fullmatch(r"[0-9a-f]+", value) is not None
        and (expected_length is None or len(value) == expected_length)
    )
    if valid:
        check_digest(algorithm, value)
    else:
        with pytest.raises(ValueError):
            check_digest(algorithm, value)
