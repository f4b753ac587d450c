"""RFC 8785 JSON Canonicalization Scheme: the only bytes Annex hashes or signs.

The `rfc8785` library defines the canonical bytes. It is pure Python and costs more than an
Ed25519 signature for a small statement, so values that the C JSON encoder already writes
canonically take a fast path: the encoder's output (sorted keys, no whitespace, the same string
escapes) is kept when reading it back gives the same value, with no float written with an
exponent or as an integer (Python's repr and ECMAScript agree on the others: the shortest digits
that read back, in fixed notation), no integer beyond 2**53 and no character outside the Basic
Multilingual Plane (where UTF-16 and code point key order differ). Anything else goes to the
library. A property test holds the two paths equal.
"""

from __future__ import annotations

import json
from typing import Any

import rfc8785

from evidence.errors import InputError

SAFE_INT = 2**53 - 1  # past it ECMAScript reads an integer as a nearby double


class _NotPlain(Exception):
    pass


def _plain_float(token: str) -> float:
    if "e" in token or "E" in token or token.endswith(".0"):
        raise _NotPlain  # an exponent, or an integral float (RFC 8785 writes 243.0 as 243)
    return float(token)


def _safe_int(token: str) -> int:
    value = int(token)
    if not -SAFE_INT <= value <= SAFE_INT:
        raise _NotPlain
    return value


_CHECKER = json.JSONDecoder(parse_float=_plain_float, parse_int=_safe_int)


def _fast(value: Any) -> bytes | None:
    """The canonical bytes when the C encoder's output is already canonical, else None."""
    try:
        text = json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
        if not (text.isascii() or max(text) <= "\uffff"):
            return None
        data = text.encode("utf-8")  # fails on lone surrogates
        if _CHECKER.decode(text) != value:
            return None  # the encoder changed something: tuples, non-string keys
        return data
    except (_NotPlain, TypeError, ValueError, RecursionError):
        return None


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
        return json.loads(data, object_pairs_hook=no_duplicates)
    except InputError:
        raise
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{what} is not valid JSON: {exc}") from exc
    except RecursionError:
        raise InputError(f"{what} is nested too deeply to be evidence") from None
