"""Model directories for the model collector's tests: real files, and broken ones made on purpose.

Weights are written with the `safetensors` and `gguf` packages themselves, so the parser is
checked against the real formats; malformed files are built byte by byte from a valid layout.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file

from api.demo_model import write_adapter, write_base_model

__all__ = [
    "gguf_file",
    "raw_safetensors",
    "sharded_model",
    "write_adapter",
    "write_base_model",
    "write_json",
]


def write_json(path: Path, value: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value), encoding="utf-8")
    return path


def raw_safetensors(
    path: Path, header: dict[str, Any] | bytes, data: bytes, *, length: int | None = None
) -> Path:
    """A safetensors file from a header (object or raw bytes), its data, and a length to claim."""
    body = header if isinstance(header, bytes) else json.dumps(header).encode()
    claimed = len(body) if length is None else length
    path.write_bytes(struct.pack("<Q", claimed) + body + data)
    return path


def sharded_model(directory: Path, *, with_consolidated: bool = True) -> Path:
    """Two shards named by an index, plus (as Mistral's repositories have) a consolidated copy."""
    directory.mkdir(parents=True, exist_ok=True)
    first = {"a": np.zeros((4, 4), dtype=np.float16)}
    second = {"b": np.zeros((10,), dtype=np.float32), "c": np.zeros((2, 3), dtype=np.int8)}
    save_file(first, str(directory / "model-00001-of-00002.safetensors"))
    save_file(second, str(directory / "model-00002-of-00002.safetensors"))
    if with_consolidated:
        save_file({**first, **second}, str(directory / "consolidated.safetensors"))
    write_json(
        directory / "model.safetensors.index.json",
        {
            "metadata": {"total_size": 0},
            "weight_map": {
                "a": "model-00001-of-00002.safetensors",
                "b": "model-00002-of-00002.safetensors",
                "c": "model-00002-of-00002.safetensors",
            },
        },
    )
    return directory


def gguf_file(path: Path, *, rows: int = 16, name: str = "tiny", context: int = 4096) -> Path:
    """A small llama-architecture GGUF file written by the gguf package's own writer."""
    import gguf

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(name)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_context_length(context)
    writer.add_tensor("token_embd.weight", np.ones((rows, 8), dtype=np.float32))
    writer.add_tensor("output_norm.weight", np.ones((8,), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
