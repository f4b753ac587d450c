"""Reading the small JSON files of a model directory: strictly, and as the collector's error."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from evidence.canonical import parse_json
from evidence.errors import CollectorError, InputError

MAX_JSON_BYTES = 16 << 20  # config files are kilobytes; anything this big is not one


def parse_strict(data: bytes, *, what: str) -> Any:
    """JSON refusing duplicate keys, invalid UTF-8 and absurd nesting, as a CollectorError."""
    try:
        return parse_json(data, what=what)
    except InputError as exc:
        raise CollectorError(str(exc)) from None
    except RecursionError:
        raise CollectorError(f"{what} is nested too deeply to be parsed") from None


def read_json_file(path: Path, sha256: str | None = None) -> Any:
    """A JSON file's value; with `sha256`, refused unless the bytes are the ones hashed."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_JSON_BYTES + 1)
    except OSError as exc:
        raise CollectorError(f"cannot read {path}: {exc.strerror}") from None
    if len(data) > MAX_JSON_BYTES:
        raise CollectorError(f"{path} is larger than {MAX_JSON_BYTES} bytes: not a config file")
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise CollectorError(f"{path} changed after it was hashed")
    return parse_strict(data, what=str(path))
