"""What a safetensors file's header says, read without trusting it.

The format: 8 bytes little-endian N, then N bytes of JSON (tensor name -> dtype, shape,
data_offsets; an optional `__metadata__` of strings), then the data. A header is refused when N
runs past the end of the file or beyond MAX_HEADER_BYTES, when its JSON is invalid or repeats a
key, when a dtype is unknown, or when the tensors' byte ranges overlap, leave holes, run outside
the data section or disagree with their shapes (the rules of the safetensors format itself).
Only the header is read; the weights are bound by the manifest's SHA-256.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collectors.jsonfile import parse_strict
from evidence.errors import CollectorError
from schemas.model import SafetensorsSummary

MAX_HEADER_BYTES = 100 << 20
MAX_METADATA_CHARS = 1024  # longer metadata values are recorded by length and digest

# Bits per element, as the safetensors format defines its dtypes.
DTYPE_BITS: dict[str, int] = {
    "BOOL": 8,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "F8_E4M3FNUZ": 8,
    "F8_E5M2FNUZ": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "F64": 64,
    "I64": 64,
    "U64": 64,
    "C64": 64,
}


@dataclass(frozen=True)
class _Tensor:
    name: str
    dtype: str
    elements: int
    start: int
    end: int


def read_safetensors(path: Path, rel: str, size: int) -> SafetensorsSummary:
    """Parses and checks the header of `path` (listed in the manifest as `rel`, `size` bytes)."""
    header, data_bytes = _read_header(path, size)
    where = f"{path}: safetensors header"
    doc = parse_strict(header, what=where)
    if not isinstance(doc, dict):
        raise CollectorError(f"{where} is not a JSON object")
    metadata = _metadata(doc.pop("__metadata__", None), where)
    tensors = [_tensor(name, info, where) for name, info in doc.items()]
    _check_layout(tensors, data_bytes, where)
    dtypes: dict[str, int] = {}
    for t in tensors:
        dtypes[t.dtype] = dtypes.get(t.dtype, 0) + t.elements
    return SafetensorsSummary(
        path=rel,
        tensors=len(tensors),
        parameters=sum(t.elements for t in tensors),
        dtypes=dict(sorted(dtypes.items())),
        metadata=metadata,
    )


def _read_header(path: Path, size: int) -> tuple[bytes, int]:
    """The header bytes and the length of the data section after them."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise CollectorError(f"cannot open {path}: {exc.strerror}") from None
    try:
        if os.fstat(fd).st_size != size:
            raise CollectorError(f"{path} changed after it was hashed")
        if size < 8:
            raise CollectorError(f"{path}: {size} bytes is too short for a safetensors file")
        length = int.from_bytes(os.pread(fd, 8, 0), "little")
        if length > size - 8:
            raise CollectorError(
                f"{path}: safetensors header length {length} runs past the end of the file "
                f"({size} bytes): truncated or not a safetensors file"
            )
        if length > MAX_HEADER_BYTES:
            raise CollectorError(
                f"{path}: safetensors header length {length} exceeds {MAX_HEADER_BYTES} bytes"
            )
        header = os.pread(fd, length, 8)
    except OSError as exc:
        raise CollectorError(f"cannot read {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(header) != length:
        raise CollectorError(f"{path} changed after it was hashed")
    return header, size - 8 - length


def _metadata(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise CollectorError(f"{where}: __metadata__ must map names to strings")
    return {k: _short(v) for k, v in sorted(value.items())}


def _short(text: str) -> str:
    if len(text) <= MAX_METADATA_CHARS:
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return f"<{len(text)} characters, sha256 {digest}>"


def _tensor(name: str, info: Any, where: str) -> _Tensor:
    if not isinstance(info, dict):
        raise CollectorError(f"{where}: tensor {name!r} is not an object")
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
        raise CollectorError(f"{where}: tensor {name!r} has unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(_natural(d) for d in shape):
        raise CollectorError(f"{where}: tensor {name!r} shape must be a list of integers >= 0")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_natural, offsets))):
        raise CollectorError(f"{where}: tensor {name!r} data_offsets must be [start, end]")
    return _Tensor(name, dtype, math.prod(shape), offsets[0], offsets[1])


def _natural(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_layout(tensors: list[_Tensor], data_bytes: int, where: str) -> None:
    """Byte ranges must tile the data section exactly and match each tensor's shape and dtype."""
    at = 0
    for t in sorted(tensors, key=lambda t: (t.start, t.end)):
        if t.start != at or t.end < t.start:
            gap = "overlaps another tensor" if t.start < at else "leaves a gap before it"
            raise CollectorError(f"{where}: tensor {t.name!r} at {t.start}..{t.end} {gap}")
        if t.end > data_bytes:
            raise CollectorError(
                f"{where}: tensor {t.name!r} ends at {t.end}, past the data section "
                f"({data_bytes} bytes)"
            )
        bits = t.elements * DTYPE_BITS[t.dtype]
        if bits != (t.end - t.start) * 8:
            raise CollectorError(
                f"{where}: tensor {t.name!r} ({t.dtype}, {t.elements} elements) needs "
                f"{bits / 8:g} bytes but its data_offsets span {t.end - t.start}"
            )
        at = t.end
    if at != data_bytes:
        raise CollectorError(
            f"{where}: tensors cover {at} bytes but the data section holds {data_bytes}"
        )
