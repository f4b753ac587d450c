"""What a GGUF file's metadata says (llama.cpp's format), read with the `gguf` package.

GGUFReader maps the file and parses its key/value metadata and tensor table; any failure to
parse (bad magic, unsupported version, a table running past the end) is a CollectorError
naming the file. Only metadata is read; the weights are bound by the manifest's SHA-256.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evidence.errors import CollectorError
from schemas.model import GgufSummary


def read_gguf(path: Path, rel: str) -> GgufSummary:
    """Architecture, name, file type, context length, tensor and parameter counts."""
    from gguf import GGUFReader  # numpy-heavy: loaded only when a GGUF file is present

    try:
        reader = GGUFReader(path)
        fields = {name: _value(field) for name, field in reader.fields.items()}
        parameters = sum(int(t.n_elements) for t in reader.tensors)
        tensors = len(reader.tensors)
    except Exception as exc:  # the reader raises whatever numpy or struct raise on bad input
        raise CollectorError(f"{path}: not a readable GGUF file ({exc})") from None
    architecture = _text(fields.get("general.architecture"))
    return GgufSummary(
        path=rel,
        version=int(fields.get("GGUF.version") or 0),
        tensors=tensors,
        parameters=parameters,
        architecture=architecture,
        name=_text(fields.get("general.name")),
        fileType=_file_type(fields.get("general.file_type")),
        contextLength=_count(fields.get(f"{architecture}.context_length")),
    )


def _value(field: Any) -> Any:
    """A scalar or string field's value; arrays (vocabularies) are not needed and not decoded."""
    from gguf import GGUFValueType

    if not field.types or field.types[0] == GGUFValueType.ARRAY:
        return None
    return field.contents()


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _file_type(value: Any) -> str | None:
    from gguf import LlamaFileType

    if not isinstance(value, int):
        return None
    try:
        return LlamaFileType(value).name
    except ValueError:
        return str(value)
