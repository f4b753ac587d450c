"""What the files of a model directory say: config.json, adapter_config.json, tokenizer files.

These files are small JSON documents written by many tools, so missing keys are normal and
tolerated; invalid JSON, repeated keys or a key of the wrong type are not (a CollectorError
names the file and the key). Digests of the tokenizer and generation files come from the
manifest, so nothing is read twice and the digest is the one the manifest binds.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from collectors.jsonfile import read_json_file
from evidence.errors import CollectorError
from schemas.model import AdapterSummary, Manifest, ModelConfigSummary

CONFIG_NAME = "config.json"
ADAPTER_CONFIG_NAME = "adapter_config.json"
GENERATION_CONFIG_NAME = "generation_config.json"
# Files besides the weights that decide what a model does with text (top level only).
TOKENIZER_NAMES = frozenset(
    {
        "tokenizer.json",
        "tokenizer_config.json",
        "tokenizer.model",
        "special_tokens_map.json",
        "added_tokens.json",
        "vocab.json",
        "vocab.txt",
        "merges.txt",
        "spiece.model",
        "chat_template.jinja",
        "chat_template.json",
    }
)

# Summary field -> the config.json keys that hold it in the model families seen in practice.
_CONFIG_KEYS: dict[str, tuple[str, ...]] = {
    "model_type": ("model_type",),
    "hidden_size": ("hidden_size", "n_embd", "d_model", "dim"),
    "num_layers": ("num_hidden_layers", "n_layer", "num_layers", "n_layers"),
    "num_attention_heads": ("num_attention_heads", "n_head", "num_heads", "n_heads"),
    "vocab_size": ("vocab_size",),
    "context_length": (
        "max_position_embeddings",
        "n_positions",
        "max_sequence_length",
        "seq_length",
        "n_ctx",
    ),
    "torch_dtype": ("torch_dtype", "dtype"),
}


def read_config(path: Path, sha256: str | None = None) -> ModelConfigSummary:
    """The architecture summary of a Hugging Face config.json (text_config used as fallback)."""
    doc = _object(read_json_file(path, sha256), path)
    nested = doc.get("text_config")
    layers = [doc, nested] if isinstance(nested, dict) else [doc]
    values: dict[str, Any] = {}
    for field, keys in _CONFIG_KEYS.items():
        kind = str if field in ("model_type", "torch_dtype") else int
        values[field] = _first(layers, keys, kind, path)
    architectures = doc.get("architectures") or ()
    if not isinstance(architectures, list | tuple) or not all(
        isinstance(a, str) for a in architectures
    ):
        raise CollectorError(f"{path}: architectures must be a list of strings")
    return ModelConfigSummary(architectures=tuple(architectures), **values)


def read_adapter_config(path: Path, sha256: str | None = None) -> AdapterSummary:
    """A PEFT adapter's type, rank, alpha, target modules and the base it was trained on."""
    doc = _object(read_json_file(path, sha256), path)
    targets = doc.get("target_modules")
    if isinstance(targets, str):
        targets = [targets]  # PEFT also accepts one regular expression as a string
    if targets is None:
        targets = []
    if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
        raise CollectorError(f"{path}: target_modules must be a string or a list of strings")
    alpha = _typed(doc, "lora_alpha", (int, float), path)
    return AdapterSummary(
        peft_type=_typed(doc, "peft_type", str, path),
        rank=_typed(doc, "r", int, path),
        alpha=None if alpha is None else float(alpha),
        target_modules=tuple(sorted(targets)),
        base_model_name=_typed(doc, "base_model_name_or_path", str, path),
    )


def tokenizer_digests(manifest: Manifest) -> dict[str, str]:
    return {f.path: f.sha256 for f in manifest.files if f.path in TOKENIZER_NAMES}


def generation_config_digest(manifest: Manifest) -> str | None:
    found = manifest.by_path().get(GENERATION_CONFIG_NAME)
    return None if found is None else found.sha256


def _object(doc: Any, path: Path) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise CollectorError(f"{path} is not a JSON object")
    return doc


def _first(layers: list[dict[str, Any]], keys: tuple[str, ...], kind: type, path: Path) -> Any:
    for layer in layers:
        for key in keys:
            if layer.get(key) is not None:
                return _typed(layer, key, kind, path)
    return None


def _typed(doc: Mapping[str, Any], key: str, kind: type | tuple[type, ...], path: Path) -> Any:
    value = doc.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, kind):
        raise CollectorError(f"{path}: {key} has the wrong type ({type(value).__name__})")
    return value
