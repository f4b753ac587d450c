"""What a data file holds: records and schema of JSON Lines, CSV/TSV and Parquet files.

Text formats are streamed once, line by line, in constant memory; the bytes read are hashed on
the way and must give the SHA-256 the manifest recorded, so the counts describe exactly the
hashed file (a file changed in between is an error). Parquet is read from its footer only
(row count and Arrow schema), through pyarrow, imported when the first Parquet file is met; its
bytes are not hashed a second time, so a Parquet file rewritten between the hashing and the
footer read would go unnoticed (the manifest digest still binds the hashed bytes).

Every refusal names the file and the line: a malformed JSON line, a line that is not an object,
a byte that is not UTF-8, a CSV row with more or fewer fields than the header.
"""

from __future__ import annotations

import csv
import hashlib
import importlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from evidence.canonical import json_error
from evidence.errors import CollectorError
from schemas.dataset import DataFormat, FileSummary

_CHUNK = 1 << 20
_SUFFIXES: dict[str, DataFormat] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_DOC_STEMS = ("readme", "license", "licence", "notice", "datasheet")


def detect_format(path: str) -> DataFormat | None:
    """The format a file's name says, "documentation" for READMEs and such, None if unknown."""
    name = path.rpartition("/")[2].lower()
    suffix = "." + name.rpartition(".")[2] if "." in name else ""
    if suffix in _SUFFIXES:
        return _SUFFIXES[suffix]
    if name.endswith(".md") or name.startswith(_DOC_STEMS):
        return "documentation"
    return None


def summarise(absolute: Path, path: str, fmt: DataFormat, sha256: str) -> FileSummary:
    """Records and schema of one file of a known format."""
    if fmt == "jsonl":
        records, schema = read_jsonl(absolute, sha256)
    elif fmt in ("csv", "tsv"):
        records, schema = read_csv(absolute, sha256, delimiter="\t" if fmt == "tsv" else ",")
    elif fmt == "parquet":
        records, schema = read_parquet(absolute)
    else:
        return FileSummary(path=path, format=fmt)
    return FileSummary.model_validate(
        {"path": path, "format": fmt, "records": records, "schema": schema}
    )


# -- streaming, hashed as read --------------------------------------------------------------------


def hashed_lines(path: Path, sha256: str) -> Iterator[tuple[int, bytes]]:
    """(line number, raw line) of a file, checked against `sha256` once the last line is read."""
    hasher = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            pending: list[bytes] = []  # the start of a line longer than one chunk
            number = 0
            while chunk := handle.read(_CHUNK):
                hasher.update(chunk)
                if b"\n" not in chunk:
                    pending.append(chunk)
                    continue
                lines = chunk.split(b"\n")
                lines[0] = b"".join([*pending, lines[0]])
                pending = [lines.pop()]
                for line in lines:
                    number += 1
                    yield number, line + b"\n"
            if any(pending):
                yield number + 1, b"".join(pending)
    except OSError as exc:
        raise CollectorError(f"cannot read {path}: {exc.strerror}") from None
    if hasher.hexdigest() != sha256:
        raise CollectorError(f"{path} changed after it was hashed: collect it again")


def _text(path: Path, number: int, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CollectorError(
            f"{path}:{number}: byte {exc.start + 1} of the line is not UTF-8 "
            f"(0x{raw[exc.start]:02x}): data files are read as UTF-8"
        ) from None


# -- JSON Lines -----------------------------------------------------------------------------------


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def read_jsonl(path: Path, sha256: str) -> tuple[int, dict[str, str]]:
    """Record count and the union of top-level keys, each with the JSON types seen."""
    records = 0
    keys: dict[str, set[str]] = {}
    for number, raw in hashed_lines(path, sha256):
        text = _text(path, number, raw)
        if not text.strip():
            continue  # blank lines (a trailing newline, padding) hold no record
        try:
            record = json.loads(text)
        except ValueError as exc:
            raise CollectorError(f"{path}:{number}: not JSON: {json_error(exc)}") from None
        if not isinstance(record, dict):
            raise CollectorError(
                f"{path}:{number}: a JSON Lines record must be an object, not {json_type(record)}"
            )
        records += 1
        for key, value in record.items():
            keys.setdefault(key, set()).add(json_type(value))
    return records, {k: "|".join(sorted(v)) for k, v in sorted(keys.items())}


# -- CSV / TSV ------------------------------------------------------------------------------------


_BOOLEANS = frozenset({"true", "false"})
_INTEGER = re.compile(r"[+-]?\d+")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(inf|nan)", re.IGNORECASE)


def cell_type(cell: str) -> str | None:
    """The type a CSV cell reads as: integer, number, boolean, string; None when empty."""
    if cell.isascii() and cell.isdigit():
        return "integer"  # the common case, without a regular expression
    text = cell.strip()
    if not text:
        return None
    if text.lower() in _BOOLEANS:
        return "boolean"
    if _INTEGER.fullmatch(text):
        return "integer"
    return "number" if _NUMBER.fullmatch(text) else "string"


def column_type(seen: set[str]) -> str:
    if not seen:
        return "empty"
    if len(seen) == 1:
        return next(iter(seen))
    return "number" if seen <= {"integer", "number"} else "string"


def read_csv(path: Path, sha256: str, *, delimiter: str) -> tuple[int, dict[str, str]]:
    """Row count (header excluded) and each header column's sniffed type."""
    lines = (_text(path, number, raw) for number, raw in hashed_lines(path, sha256))
    reader = csv.reader(lines, delimiter=delimiter, strict=True)
    try:
        header = next(reader, None)
        if header is None:
            return 0, {}
        if len(set(header)) != len(header):
            raise CollectorError(f"{path}:1: the header names a column twice: {header}")
        seen: list[set[str]] = [set() for _ in header]
        rows = 0
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                raise CollectorError(
                    f"{path}:{reader.line_num}: {len(row)} fields, the header has {len(header)}"
                )
            rows += 1
            for kinds, cell in zip(seen, row, strict=True):
                if "string" in kinds:
                    continue  # a string column stays one: no need to look further
                kind = cell_type(cell)
                if kind is not None:
                    kinds.add(kind)
    except csv.Error as exc:
        raise CollectorError(f"{path}:{reader.line_num}: malformed CSV: {exc}") from None
    return rows, {name: column_type(kinds) for name, kinds in zip(header, seen, strict=True)}


# -- Parquet --------------------------------------------------------------------------------------


def read_parquet(path: Path) -> tuple[int, dict[str, str]]:
    """Row count and Arrow schema from the footer (pyarrow, imported on first use)."""
    try:
        parquet = importlib.import_module("pyarrow.parquet")
    except ImportError:
        raise CollectorError(
            f"{path}: reading Parquet needs pyarrow (pip install pyarrow)"
        ) from None
    try:
        meta = parquet.ParquetFile(path)
        schema = meta.schema_arrow
        return int(meta.metadata.num_rows), {f.name: str(f.type) for f in schema}
    except (OSError, ValueError) as exc:  # ArrowInvalid is a ValueError
        raise CollectorError(f"{path}: not a readable Parquet file: {exc}") from None
