"""RFC 8785 JSON Canonicalization Scheme: the only bytes Annex hashes or signs.

The `rfc8785` library defines the canonical bytes. It is written in pure Python and costs
about 20 µs for a small statement, more than an Ed25519 signature, so values made only of
strings, safe integers, booleans, null, lists and objects with plain keys take a fast path
through the C JSON encoder, whose output is identical for exactly that subset (sorted keys,
no whitespace, the same escapes). Anything else (floats, integers beyond 2**53, keys outside
the Basic Multilingual Plane, where UTF-16 and code point order differ) goes to the library.
A property test holds the two paths equal.
"""

from __future__ import annotations

import json
from typing import Any

import rfc8785

from evidence.errors import InputError

_SAFE_INT = 2**53 - 1


def _fast_path_applies(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is str or item is None or kind is bool:
            continue
        if kind is int:
            if -_SAFE_INT <= item <= _SAFE_INT:
                continue
            return False
        if kind is dict:
            for key in item:
                if type(key) is not str or not (key.isascii() or max(key) <= "\uffff"):
                    return False
            stack.extend(item.values())
        elif kind is list or kind is tuple:
            stack.extend(item)
        else:
            return False
    return True


def canonical_bytes(value: Any, *, what: str = "value") -> bytes:
    """The RFC 8785 encoding of a JSON value."""
    if _fast_path_applies(value):
        try:
            text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            return text.encode("utf-8")
        except UnicodeEncodeError:
            pass  # a lone surrogate: let the library say what is wrong
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
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
