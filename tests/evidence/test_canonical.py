"""Canonical JSON: the fast path must give exactly the bytes of the rfc8785 library."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from evidence.canonical import canonical_bytes, parse_json
from evidence.errors import InputError


@dataclass
class Pair:
    """A type orjson writes as an object on its own and RFC 8785 does not know."""

    a: int
    b: int


def random_sign(n: int) -> int:
    return -1 if n % 2 else 1


_keys = st.text(max_size=6) | st.sampled_from(["\U0001f600", "\uffff", "\ue000", "a", "é", "\x7f"])
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**60), 2**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
    | st.sampled_from(["\u2028", "\x00\x1f", '"\\', "\ud800", "\U0001f600", "1.0,", "2e+5"])
    | st.integers(2**53 - 3, 2**53 + 3).map(lambda n: n * random_sign(n))
    | st.sampled_from([243.0, -0.0, 1e16, 1e15, 1e-6, 1e-7, 1e21, 0.00001, 1.5e300])
    | st.sampled_from([datetime(2026, 11, 25, tzinfo=UTC), Pair(1, 2), uuid.UUID(int=7)])
)
_json = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(_keys, inner, max_size=4)
        | st.dictionaries(st.integers(0, 3) | st.booleans(), inner, max_size=2)
    ),
    max_leaves=20,
)


@settings(max_examples=2000, deadline=None)
@given(_json)
def test_fast_path_equals_the_library(value: Any) -> None:
    try:
        expected = rfc8785.dumps(value)
    except Exception:
        with pytest.raises(InputError):
            canonical_bytes(value)
        return
    assert canonical_bytes(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"b": 1, "a": [True, None, "x"]}, b'{"a":[true,null,"x"],"b":1}'),
        ({"\u20ac": 1, "\r": 2, "1": 3}, b'{"\\r":2,"1":3,"\xe2\x82\xac":1}'),
        (1e21, b"1e+21"),
        (0.5, b"0.5"),
        ("\x1f", b'"\\u001f"'),
    ],
)
def test_known_encodings(value: Any, expected: bytes) -> None:
    assert canonical_bytes(value) == expected


@pytest.mark.parametrize("value", [float("nan"), 2**53, {1: 2}, "\ud800", object()])
def test_what_cannot_be_canonicalised(value: Any) -> None:
    with pytest.raises(InputError, match="cannot be canonicalised"):
        canonical_bytes(value, what="the thing")


def test_parse_json_errors_name_the_input() -> None:
    with pytest.raises(InputError, match="line 3 is not valid JSON"):
        parse_json("{", what="line 3")
    with pytest.raises(InputError, match="duplicate key 'a'"):
        parse_json('{"a":1,"a":2}', what="x")


def test_parse_json_refuses_nesting_deeper_than_python_recurses() -> None:
    """A hostile body of a million brackets is an input error, not a crash of the service."""
    deep = "[" * 1_000_000 + "]" * 1_000_000
    with pytest.raises(InputError, match="the body is nested too deeply"):
        parse_json(deep, what="the body")
