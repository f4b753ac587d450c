"""RFC 8785 JSON Canonicalization Scheme: the only bytes Annex hashes or signs.

Canonical bytes are produced by the `rfc8785` library; this module only turns its failures
(floats that are not finite, integers outside the I-JSON range, non-string keys) into
`InputError`s that say what was wrong.
"""

from __future__ import annotations

import json
from typing import Any

import rfc8785

from evidence.errors import InputError


def canonical_bytes(value: Any, *, what: str = "value") -> bytes:
    """The RFC 8785 encoding of a JSON value."""
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
