"""Eval test material: the demo's tiny GPT-2 (built locally), an lm-eval results file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from api.demo_model import write_eval_model

build_tiny_lm = write_eval_model


def lm_eval_results(acc: float = 0.5) -> dict[str, Any]:
    """A results file in the shape lm-eval's CLI writes (--output_path)."""
    return {
        "results": {"hellaswag": {"alias": "hellaswag", "acc,none": acc, "acc_stderr,none": 0.01}},
        "versions": {"hellaswag": 1.0},
        "n-shot": {"hellaswag": 0},
        "config": {"model": "hf", "batch_size": "auto", "device": "cuda:0", "limit": None},
        "lm_eval_version": "0.4.8",
        "transformers_version": "4.50.0",
        "date": 1795514116.08,
    }


def build_tiny_adapter(model_dir: Path, target: Path) -> Path:
    """A LoRA adapter (PEFT) on the tiny model's attention, saved with save_pretrained."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import GPT2LMHeadModel

    torch.manual_seed(1)
    base = GPT2LMHeadModel.from_pretrained(model_dir)
    config = LoraConfig(r=2, lora_alpha=4, target_modules=["c_attn"], fan_in_fan_out=True)
    get_peft_model(base, config).save_pretrained(target)
    return target
