"""Canonical base64: the one text of each byte string is taken, every other text refused."""

from __future__ import annotations

import base64

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from evidence.b64 import b64decode
from evidence.errors import InputError
from tests.conftest import noncanonical_b64

NOT_CANONICAL = "is not canonical base64"
# Byte strings whose encoding ends in padding, so the last data character has unused bits.
PADDED = st.binary(min_size=1, max_size=200).filter(lambda b: len(b) % 3 != 0)


def _refused(text: str) -> None:
    with pytest.raises(InputError, match=f"^sample {NOT_CANONICAL}"):
        b64decode(text, what="sample")


@given(st.binary(max_size=200))
def test_canonical_text_round_trips(data: bytes) -> None:
    assert b64decode(base64.b64encode(data).decode(), what="sample") == data


@given(PADDED, st.data())
def test_unused_bits_set_are_refused(data: bytes, draw: st.DataObject) -> None:
    text = base64.b64encode(data).decode()
    unused = 2 * text.count("=")  # one '=' leaves 2 bits unused, two leave 4
    bits = draw.draw(st.integers(1, (1 << unused) - 1))
    changed = noncanonical_b64(text, bits)
    assert changed != text
    assert base64.b64decode(changed, validate=True) == data  # what made the attack possible
    _refused(changed)


@given(PADDED)
def test_missing_padding_is_refused(data: bytes) -> None:
    text = base64.b64encode(data).decode()
    _refused(text.rstrip("="))
    _refused(text.rstrip("=") + "=" * (3 - text.count("=")))  # wrong padding


@given(st.binary(min_size=1, max_size=200))
def test_url_safe_alphabet_is_refused(data: bytes) -> None:
    url_safe = base64.urlsafe_b64encode(data).decode()
    assume(url_safe != base64.b64encode(data).decode())  # holds a '-' or '_'
    _refused(url_safe)
    _refused(url_safe.rstrip("="))


@given(st.binary(min_size=1, max_size=200), st.sampled_from(["\n", " ", "\r\n", "\t"]), st.data())
def test_whitespace_anywhere_is_refused(data: bytes, space: str, draw: st.DataObject) -> None:
    text = base64.b64encode(data).decode()
    at = draw.draw(st.integers(0, len(text)))
    _refused(text[:at] + space + text[at:])


def test_mime_line_breaks_and_other_text_are_refused() -> None:
    data = bytes(range(256))
    _refused(base64.encodebytes(data).decode())  # lines of 76 characters, as email writes them
    for text in ("***", "AA=A", "AAAA=", "AA==AA==", "ÄA==", "=", "A"):
        _refused(text)


def test_empty_text_is_the_empty_string() -> None:
    assert b64decode("", what="sample") == b""


@pytest.mark.parametrize("value", [None, 3, b"AA==", ["AA=="]])
def test_only_strings_are_read(value: object) -> None:
    with pytest.raises(InputError, match="sample must be a base64 string"):
        b64decode(value, what="sample")
