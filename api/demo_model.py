"""A small model and LoRA adapter made by `annex demo`, so it has real files to hash and sign.

The weights are seeded random numbers in real safetensors files, with the config files a
Hugging Face model directory carries. It is a stand-in for a downloaded model, never presented as
one: the demo names it `annex-demo-base`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

BASE_NAME = "annex-demo-base"
EVAL_MODEL_NAME = "annex-demo-eval-gpt2"
ADAPTER_NAME = "annex-demo-lora"

_WIDTH, _LAYERS, _VOCAB, _CONTEXT = 64, 2, 256, 128


def _write_json(path: Path, value: object) -> None:
    path.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")


def write_base_model(directory: Path, *, seed: int = 7) -> Path:
    """A two-layer GPT-2-shaped model: config, weights, tokenizer and generation config."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tensors = {
        "wte.weight": rng.standard_normal((_VOCAB, _WIDTH), dtype=np.float32),
        "wpe.weight": rng.standard_normal((_CONTEXT, _WIDTH), dtype=np.float32),
    }
    for layer in range(_LAYERS):
        prefix = f"h.{layer}."
        tensors[prefix + "attn.c_attn.weight"] = rng.standard_normal(
            (_WIDTH, 3 * _WIDTH), dtype=np.float32
        )
        tensors[prefix + "mlp.c_fc.weight"] = rng.standard_normal(
            (_WIDTH, 4 * _WIDTH), dtype=np.float32
        )
        tensors[prefix + "ln_1.weight"] = np.ones(_WIDTH, dtype=np.float32)
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
    _write_json(
        directory / "config.json",
        {
            "architectures": ["GPT2LMHeadModel"],
            "model_type": "gpt2",
            "n_embd": _WIDTH,
            "n_layer": _LAYERS,
            "n_head": 2,
            "n_positions": _CONTEXT,
            "vocab_size": _VOCAB,
            "torch_dtype": "float32",
        },
    )
    vocab = {f"<{i:02x}>": i for i in range(_VOCAB)}
    _write_json(
        directory / "tokenizer.json",
        {"version": "1.0", "model": {"type": "BPE", "vocab": vocab, "merges": []}},
    )
    _write_json(directory / "tokenizer_config.json", {"model_max_length": _CONTEXT})
    _write_json(directory / "generation_config.json", {"max_new_tokens": 32, "do_sample": False})
    return directory


def write_adapter(directory: Path, *, base_name: str = BASE_NAME, seed: int = 11) -> Path:
    """A rank-8 LoRA adapter on the attention projection of every layer."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rank = 8
    tensors = {}
    for layer in range(_LAYERS):
        prefix = f"base_model.model.h.{layer}.attn.c_attn."
        tensors[prefix + "lora_A.weight"] = rng.standard_normal((rank, _WIDTH), dtype=np.float32)
        tensors[prefix + "lora_B.weight"] = np.zeros((3 * _WIDTH, rank), dtype=np.float32)
    save_file(tensors, str(directory / "adapter_model.safetensors"))
    _write_json(
        directory / "adapter_config.json",
        {
            "peft_type": "LORA",
            "r": rank,
            "lora_alpha": 16,
            "target_modules": ["c_attn"],
            "base_model_name_or_path": base_name,
            "task_type": "CAUSAL_LM",
        },
    )
    return directory


CORPUS = [
    "Question: Which planet is closest to the Sun? Answer: Mercury",
    "the quick brown fox jumps over the lazy dog",
    "water boils at one hundred degrees; a week has seven days",
]


def write_eval_model(target: Path) -> Path:
    """A GPT-2 of about 135,000 random parameters that transformers loads, for eval runs.

    Needs the eval extra (torch, tokenizers, transformers); nothing is downloaded.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    target.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(CORPUS * 5, trainer=trainer)
    end = "<|endoftext|>"
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=bpe, eos_token=end, bos_token=end, unk_token=end, pad_token=end
    )
    tokenizer.save_pretrained(target)
    torch.manual_seed(0)
    end_id = bpe.token_to_id(end)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=256,
        n_embd=64,
        n_layer=2,
        n_head=2,
        bos_token_id=end_id,
        eos_token_id=end_id,
    )
    GPT2LMHeadModel(config).save_pretrained(target)
    return target
