"""What model files say: safetensors headers (and lies in them), GGUF metadata, JSON configs."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save_file

from collectors.formats import read_adapter_config, read_config
from collectors.gguf_metadata import read_gguf
from collectors.safetensors_header import MAX_HEADER_BYTES, read_safetensors
from evidence.errors import CollectorError
from schemas.model import SafetensorsSummary
from tests.collectors.model_dirs import gguf_file, raw_safetensors, write_json


def summary(path: Path) -> SafetensorsSummary:
    return read_safetensors(path, path.name, path.stat().st_size)


def refused(path: Path) -> str:
    with pytest.raises(CollectorError) as caught:
        summary(path)
    message = str(caught.value)
    assert str(path) in message
    return message


# -- safetensors: real files ----------------------------------------------------------------------


def test_real_safetensors_file(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    tensors = {
        "embed": np.zeros((10, 4), dtype=np.float16),
        "norm": np.ones((4,), dtype=np.float32),
        "mask": np.zeros((3, 3), dtype=np.bool_),
        "ids": np.arange(6, dtype=np.int64).reshape(2, 3),
        "scalar": np.array(1.0, dtype=np.float32),
        "empty": np.zeros((0, 7), dtype=np.uint8),
    }
    save_file(tensors, str(path), metadata={"format": "pt", "note": "x" * 2000})
    found = summary(path)
    assert found.tensors == 6
    assert found.parameters == 40 + 4 + 9 + 6 + 1 + 0
    assert found.dtypes == {"BOOL": 9, "F16": 40, "F32": 5, "I64": 6, "U8": 0}
    assert found.metadata["format"] == "pt"
    assert found.metadata["note"].startswith("<2000 characters, sha256 ")


def test_header_may_be_padded_with_spaces(tmp_path: Path) -> None:
    header = json.dumps({"w": {"dtype": "U8", "shape": [3], "data_offsets": [0, 3]}}) + "    "
    path = raw_safetensors(tmp_path / "pad.safetensors", header.encode(), b"abc")
    assert summary(path).parameters == 3


# -- safetensors: files that lie ------------------------------------------------------------------


def valid_header() -> dict[str, Any]:
    return {
        "a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
        "b": {"dtype": "F16", "shape": [4], "data_offsets": [16, 24]},
    }


def test_truncated_data_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cut.safetensors"
    save_file({"w": np.zeros((64, 64), dtype=np.float32)}, str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    assert "data section" in refused(path)


def test_truncated_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cut.safetensors"
    save_file({"w": np.zeros((4,), dtype=np.float32)}, str(path))
    header_length = int.from_bytes(path.read_bytes()[:8], "little")
    path.write_bytes(path.read_bytes()[: 8 + header_length // 2])
    assert "runs past the end of the file" in refused(path)


def test_header_length_bomb_is_refused_without_reading_it(tmp_path: Path) -> None:
    path = raw_safetensors(tmp_path / "bomb.safetensors", b"{}", b"", length=2**63)
    assert "runs past the end of the file" in refused(path)


def test_header_longer_than_the_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "huge.safetensors"
    with path.open("wb") as handle:  # sparse: claims a 100 MiB + 1 header, costs no disk
        handle.write((MAX_HEADER_BYTES + 1).to_bytes(8, "little"))
        handle.truncate(MAX_HEADER_BYTES + 64)
    assert f"exceeds {MAX_HEADER_BYTES}" in refused(path)


def test_files_too_short_or_not_safetensors_are_refused(tmp_path: Path) -> None:
    assert "too short" in refused(raw_file(tmp_path / "tiny.safetensors", b"abc"))
    pointer = b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n"
    assert "runs past the end" in refused(raw_file(tmp_path / "lfs.safetensors", pointer))


def raw_file(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"a": {}, "a": {}}', "duplicate key 'a'"),
        (b"[1, 2]", "not a JSON object"),
        (b"\xff\xfe{}", "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ],
)
def test_malformed_headers_are_refused(tmp_path: Path, header: bytes, expected: str) -> None:
    path = raw_safetensors(tmp_path / "bad.safetensors", header, b"")
    assert expected in refused(path)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda h: h["b"].update(data_offsets=[12, 20]), "overlaps"),
        (lambda h: h["b"].update(data_offsets=[20, 28]), "gap"),
        (lambda h: h["b"].update(shape=[5]), "needs 10 bytes"),
        (lambda h: h["b"].update(dtype="F12"), "unknown dtype 'F12'"),
        (lambda h: h["b"].update(shape=[-4]), "shape"),
        (lambda h: h["b"].update(shape=[True, 4]), "shape"),
        (lambda h: h["b"].update(data_offsets=[16]), "data_offsets"),
        (lambda h: h["b"].update(data_offsets=[16, 40]), "past the data section"),
        (lambda h: h.pop("b"), "cover 16 bytes but the data section holds 24"),
        (lambda h: h.update(__metadata__={"n": 1}), "__metadata__"),
        (lambda h: h.update(c="tensor"), "not an object"),
    ],
)
def test_headers_that_lie_about_the_data_are_refused(
    tmp_path: Path, change: Any, expected: str
) -> None:
    header = valid_header()
    change(header)
    path = raw_safetensors(tmp_path / "lie.safetensors", header, bytes(24))
    assert expected in refused(path)


def test_the_valid_layout_used_above_is_accepted(tmp_path: Path) -> None:
    path = raw_safetensors(tmp_path / "ok.safetensors", valid_header(), bytes(24))
    assert summary(path).dtypes == {"F16": 4, "F32": 4}


def test_huge_shapes_cannot_inflate_the_parameter_count(tmp_path: Path) -> None:
    header = {"w": {"dtype": "U8", "shape": [2**40, 2**40], "data_offsets": [0, 4]}}
    path = raw_safetensors(tmp_path / "inflated.safetensors", header, bytes(4))
    assert "needs" in refused(path)


def test_a_file_changed_since_hashing_is_refused(tmp_path: Path) -> None:
    path = raw_safetensors(tmp_path / "w.safetensors", valid_header(), bytes(24))
    with pytest.raises(CollectorError, match="changed after it was hashed"):
        read_safetensors(path, "w.safetensors", path.stat().st_size + 1)


# -- GGUF -----------------------------------------------------------------------------------------


def test_gguf_metadata(tmp_path: Path) -> None:
    found = read_gguf(gguf_file(tmp_path / "m.gguf", rows=16), "m.gguf")
    assert found.version == 3
    assert found.architecture == "llama"
    assert found.name == "tiny"
    assert found.file_type == "ALL_F32"
    assert found.context_length == 4096
    assert (found.tensors, found.parameters) == (2, 16 * 8 + 8)


@pytest.mark.parametrize("damage", ["magic", "truncated", "empty"])
def test_broken_gguf_is_refused_naming_the_file(tmp_path: Path, damage: str) -> None:
    path = gguf_file(tmp_path / "m.gguf")
    data = path.read_bytes()
    path.write_bytes(
        {"magic": b"NOPE" + data[4:], "truncated": data[: len(data) // 2], "empty": b""}[damage]
    )
    with pytest.raises(CollectorError, match="not a readable GGUF file") as caught:
        read_gguf(path, "m.gguf")
    assert str(path) in str(caught.value)


# -- config.json and adapter_config.json ----------------------------------------------------------


def test_llama_style_config(tmp_path: Path) -> None:
    path = write_json(
        tmp_path / "config.json",
        {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_size": 4096,
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "vocab_size": 128256,
            "max_position_embeddings": 131072,
            "torch_dtype": "bfloat16",
            "rope_scaling": {"factor": 8.0},
        },
    )
    found = read_config(path)
    assert found.architectures == ("LlamaForCausalLM",)
    assert (found.hidden_size, found.num_layers, found.num_attention_heads) == (4096, 32, 32)
    assert (found.vocab_size, found.context_length, found.torch_dtype) == (
        128256,
        131072,
        "bfloat16",
    )


def test_gpt2_style_keys_and_nested_text_config(tmp_path: Path) -> None:
    gpt2 = read_config(
        write_json(tmp_path / "a.json", {"n_embd": 768, "n_layer": 12, "n_positions": 1024})
    )
    assert (gpt2.hidden_size, gpt2.num_layers, gpt2.context_length) == (768, 12, 1024)
    nested = read_config(
        write_json(
            tmp_path / "b.json",
            {"model_type": "gemma3", "text_config": {"hidden_size": 2560, "num_hidden_layers": 34}},
        )
    )
    assert (nested.model_type, nested.hidden_size, nested.num_layers) == ("gemma3", 2560, 34)


def test_missing_keys_are_tolerated(tmp_path: Path) -> None:
    found = read_config(write_json(tmp_path / "config.json", {}))
    assert found.architectures == ()
    assert found.hidden_size is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b"{", "not valid JSON"),
        (b'{"hidden_size": 1, "hidden_size": 2}', "duplicate key"),
        (b'{"hidden_size": "big"}', "hidden_size has the wrong type"),
        (b'{"num_hidden_layers": true}', "num_hidden_layers has the wrong type"),
        (b'{"architectures": "Llama"}', "architectures"),
        (b"[]", "not a JSON object"),
    ],
)
def test_bad_config_is_refused_naming_the_file(tmp_path: Path, text: bytes, expected: str) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(text)
    with pytest.raises(CollectorError, match=expected) as caught:
        read_config(path)
    assert str(path) in str(caught.value)


def test_config_that_is_not_the_hashed_file_is_refused(tmp_path: Path) -> None:
    path = write_json(tmp_path / "config.json", {})
    with pytest.raises(CollectorError, match="changed after it was hashed"):
        read_config(path, "0" * 64)


def test_oversized_config_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    with path.open("wb") as handle:
        handle.truncate(17 << 20)
    with pytest.raises(CollectorError, match="not a config file"):
        read_config(path)


def test_adapter_config(tmp_path: Path) -> None:
    found = read_adapter_config(
        write_json(
            tmp_path / "adapter_config.json",
            {
                "peft_type": "LORA",
                "r": 16,
                "lora_alpha": 32,
                "target_modules": ["v_proj", "q_proj"],
                "base_model_name_or_path": "meta-llama/Llama-3.1-8B",
            },
        )
    )
    assert (found.peft_type, found.rank, found.alpha) == ("LORA", 16, 32.0)
    assert found.target_modules == ("q_proj", "v_proj")
    assert found.base_model_name == "meta-llama/Llama-3.1-8B"
    assert found.base_manifest_digest is None


def test_adapter_target_modules_as_one_pattern(tmp_path: Path) -> None:
    path = write_json(tmp_path / "adapter_config.json", {"target_modules": ".*proj"})
    assert read_adapter_config(path).target_modules == (".*proj",)


@pytest.mark.parametrize(
    "doc", [{"r": "8"}, {"lora_alpha": "x"}, {"target_modules": [1]}, {"peft_type": 3}]
)
def test_adapter_config_with_wrong_types_is_refused(tmp_path: Path, doc: dict[str, Any]) -> None:
    path = write_json(tmp_path / "adapter_config.json", doc)
    with pytest.raises(CollectorError, match=re.escape(str(path))):
        read_adapter_config(path)
