"""RFC 8785 JSON Canonicalization Scheme: the only bytes Annex hashes or signs.

The `rfc8785` library defines the canonical bytes. It is pure Python and costs more than an
Ed25519 signature for a small statement, so values that orjson already writes canonically take
a fast path (`fast_canonical`): orjson sorts keys and escapes strings as RFC 8785 does, and
writes a float's shortest digits that read back, which RFC 8785 also does except for integral
floats ("243.0", RFC 8785 "243") and the magnitudes where the two switch to an exponent at
different points. So orjson's bytes are kept unless they hold ".0" before a delimiter or at the
end, or an exponent ("e" with a sign between digits); unless they hold a character outside the
Basic Multilingual Plane (orjson sorts keys by code point, RFC 8785 by UTF-16 unit); and, for
values that did not come from a JSON parser, unless reading them back gives the same value
(tuples, non-JSON types orjson writes on its own: dataclasses, datetimes). Integers past 2**53
make orjson refuse. A string that merely looks like one of those numbers sends its value the
exact way, never to wrong bytes. Anything else goes to the library; a property test holds the
two paths equal.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson
import rfc8785

from evidence.errors import InputError

SAFE_INT = 2**53 - 1  # past it ECMAScript reads an integer as a nearby double
_SORTED = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER
# Each pattern starts with a literal byte, which the regular expression engine scans for quickly;
# one starting with a character class (a digit) costs ten times as much on a typical statement.
_INTEGRAL = re.compile(rb"\.0(?:[,\]}]|\Z)")
_EXPONENT = re.compile(rb"e(?<=\de)[-+]\d")  # "1e-7"; "file-5" is no exponent
_FOUR_BYTE_UTF8 = re.compile(rb"[\xf0-\xf7]")  # the lead byte of a character past U+FFFF


def fast_canonical(value: Any) -> bytes | None:
    """orjson's bytes of a value made of JSON types, where they are RFC 8785's; else None.

    Cheaper than `canonical_bytes` for values just read by a JSON parser (no tuples, no other
    types), whose read-back check it skips; anything else must go through `canonical_bytes`.
    """
    try:
        data = orjson.dumps(value, option=_SORTED)
    except TypeError:  # orjson.JSONEncodeError: past 2**53, lone surrogates, unknown types
        return None
    if (
        _INTEGRAL.search(data)
        or _EXPONENT.search(data)
        or not (data.isascii() or _FOUR_BYTE_UTF8.search(data) is None)
    ):
        return None
    return data


def _fast(value: Any) -> bytes | None:
    """The canonical bytes when orjson's are already canonical, else None."""
    data = fast_canonical(value)
    if data is None or orjson.loads(data) != value:
        return None  # orjson changed something: tuples, a type JSON does not have
    return data


def canonical_bytes(value: Any, *, what: str = "value") -> bytes:
    """The RFC 8785 encoding of a JSON value."""
    fast = _fast(value)
    if fast is not None:
        return fast
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError, RecursionError) as exc:
        raise InputError(f"{what} cannot be canonicalised (RFC 8785): {exc}") from exc


def parse_json(data: bytes | str, *, what: str) -> Any:
    """Parses JSON, rejecting duplicate object keys (they make signatures ambiguous)."""

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        for key, value in pairs:
            if key in obj:
                raise InputError(f"{what}: duplicate key {key!r}")
            obj[key] = value
        return obj

    try:
        value = json.loads(data, object_pairs_hook=no_duplicates)
    except InputError:
        raise
    except ValueError as exc:  # bad JSON, bad UTF-8, or a number past Python's digit limit
        raise InputError(f"{what} is not valid JSON: {json_error(exc)}") from None
    except RecursionError:
        raise InputError(f"{what} is nested too deeply to be evidence") from None
    escaped = b"\\u" in data if isinstance(data, bytes) else "\\u" in data
    if escaped:  # only an escape can make a lone surrogate, which is no text
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise InputError(
                f"{what} holds an unpaired surrogate (\\ud800-\\udfff): not text"
            ) from None
    return value


def json_error(exc: ValueError) -> str:
    """What is wrong with text that `json.loads` refused, in a few words.

    Besides malformed JSON and bad UTF-8, `json.loads` refuses an integer of more digits than
    Python converts (4,300): a plain ValueError, which callers that catch only JSONDecodeError
    let escape as a traceback."""
    if "integer string conversion" in str(exc):
        return "a number has more digits than Annex reads (4,300 at most)"
    return str(exc)
