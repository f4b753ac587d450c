"""The in-toto Statement model: what it checks when built."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.statement import (
    DIGEST_HEX_LENGTHS,
    STATEMENT_TYPE,
    Statement,
    check_digest,
    known_good,
    predicate_type,
)
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


def test_python_field_names_are_not_statement_fields() -> None:
    """in-toto names the fields `_type` and `predicateType`; the model's own names are extra
    fields, which a statement may not have."""
    data = statement(1)
    data["predicate_type"] = data.pop("predicateType")
    with pytest.raises(ValidationError, match="predicateType"):
        Statement.model_validate(data)
    assert known_good(data) is None


def test_typical_statements_are_known_good_at_a_glance() -> None:
    for data in (statement(1), statement(2, observed="2026-02-03T04:05:06+02:00")):
        assert known_good(data) is not None
    data = statement(3)
    data["subject"] = tuple(data["subject"])  # the model takes it; the quick path asks it
    assert known_good(data) is None
    Statement.model_validate(data)


_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=4))


def _mostly(good: list[object], bad: list[object]) -> st.SearchStrategy[object]:
    """Good values three times in four: a statement has several parts, and each must pass."""
    return st.sampled_from(good * 3 * len(bad) + bad * len(good))


_DIGESTS = st.dictionaries(
    _mostly(["sha256"], ["gitCommit", "dirHash", "sha 256", ""]),
    _mostly(["a" * 64], ["0" * 40, "abcd", "A" * 64, "", "g1", None, 1]),
    min_size=1,
    max_size=3,
)
_SUBJECTS = st.fixed_dictionaries(
    {
        "name": _mostly(["model.safetensors"], ["", None, 3]),
        "digest": _DIGESTS | _mostly([{"sha256": "b" * 64}], ["x", []]),
    },
    optional={"uri": _SCALARS},
)
_OBSERVED = _mostly(
    ["2026-11-24T08:00:00Z", "2026-11-24T08:00:00+02:00", None],
    ["2026-11-24T08:00:00", "soon", 5, ""],
)


@st.composite
def _statements(draw: st.DrawFn) -> dict[str, object]:
    """Statements built from mostly good parts, some with a part missing or one too many."""
    predicate = draw(st.fixed_dictionaries({}, optional={"observedAt": _OBSERVED, "n": _SCALARS}))
    data: dict[str, object] = {
        "_type": draw(_mostly([STATEMENT_TYPE], ["https://in-toto.io/Statement/v0.1", None])),
        "subject": draw(st.lists(_SUBJECTS, min_size=1, max_size=3) | _mostly([[]], ["x", None])),
        "predicateType": draw(
            _mostly(["https://annex.dev/p/v1", "urn:x"], ["no uri", "", 7, None])
        ),
        "predicate": draw(st.just(predicate) | _mostly([{}], [[], "p", None])),
    }
    change = draw(_mostly([None], ["_type", "subject", "predicateType", "predicate", "type_"]))
    if change == "type_":
        data["type_"] = data.pop("_type")
    elif change is not None:
        del data[change]
    return data


@settings(max_examples=1500, deadline=None)
@given(data=_statements())
def test_the_quick_check_agrees_with_the_model_on_json(data: dict[str, object]) -> None:
    """`known_good` skips the model for plain JSON; on JSON it must accept exactly what the
    model accepts, and report the same facts."""
    found = known_good(data)
    try:
        model = Statement.model_validate(data)
    except ValidationError:
        assert found is None
        return
    assert found is not None
    subjects = [
        (s.name, algorithm, value)
        for s in model.subject
        for algorithm, value in sorted(s.digest.items())
    ]
    assert found == (model.predicate_type, subjects, model.observed_at)


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d["subject"][0]["digest"].update({1: "ab" * 32}),
        lambda d: d["predicate"].update({2: "x"}),
        lambda d: d["predicate"].update(observedAt=datetime(2026, 1, 1, tzinfo=UTC)),
        lambda d: d.update(_type=STATEMENT_TYPE.encode()),
    ],
    ids=["int-algorithm", "int-predicate-key", "datetime-observed", "bytes-type"],
)
def test_values_json_cannot_hold_go_to_the_model(change: Any) -> None:
    """What a Python caller may pass and JSON cannot hold is left to the model to judge."""
    data = statement(1)
    change(data)
    assert known_good(data) is None
