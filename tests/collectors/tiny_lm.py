"""Eval test material: a tiny randomly initialised GPT-2 built locally, an lm-eval results file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

CORPUS = [
    "Question: Which planet is closest to the Sun? Answer: Mercury",
    "the quick brown fox jumps over the lazy dog",
    "water boils at one hundred degrees; a week has seven days",
]


def build_tiny_lm(target: Path) -> Path:
    """About 135,000 parameters (2 layers, 64 wide), saved with save_pretrained; no download."""
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
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token=end, bos_token=end, unk_token=end, pad_token=end
    )
    tokenizer.save_pretrained(target)
    torch.manual_seed(0)
    end_id = tokenizer.convert_tokens_to_ids(end)
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
