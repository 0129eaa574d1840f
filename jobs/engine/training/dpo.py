"""Direct preference optimisation (``training_type: "dpo"``) on TRL's DPOTrainer.

The rows are preference pairs (jobs.domain.sft_data: ``prompt`` with ``chosen`` and ``rejected``,
or NeMo's ``chosen_response`` and ``rejected_response``); chat prompts are rendered with the
model's template here, so TRL sees text. NeMo's ``dpo`` options map onto TRL's by name:

- ``ref_policy_kl_penalty`` → ``beta``;
- the preference loss → TRL's ``sigmoid`` loss, or ``sigmoid_norm`` (log-probabilities averaged
  per token) with ``preference_average_log_probs``, weighted by ``preference_loss_weight``;
- ``sft_loss_weight`` > 0 adds TRL's ``sft`` loss on the chosen answers with that weight;
- ``max_grad_norm`` → gradient clipping.

The reference model is the base model: with LoRA, the same weights with the adapter switched off
(no second copy in memory); with all weights, a second copy loaded from the base folder.

TRL logs, beside the loss, the rewards of the chosen and rejected answers (beta times their log
ratio to the reference), their margin and the share of pairs where the chosen one scores higher;
the hub keeps them as metric series (``METRICS``), for training and validation.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jobs.domain.hyperparameters import Hyperparameters
from jobs.domain.sft_data import preference_pair, prompt_text

# TRL's log keys → the job's metric series (validation ones get "val_" before them).
METRICS = {
    "rewards/margins": "reward_margin",
    "rewards/chosen": "reward_chosen",
    "rewards/rejected": "reward_rejected",
    "rewards/accuracies": "preference_accuracy",
}


def _pairs(path: Path, offsets: list[int], tokenizer: Any) -> Iterator[dict[str, str]]:
    with path.open("rb") as handle:
        for offset in offsets:
            handle.seek(offset)
            prompt, chosen, rejected = preference_pair(json.loads(handle.readline()))
            yield {
                "prompt": prompt_text(tokenizer, prompt),
                "chosen": chosen,
                "rejected": rejected,
            }


def dataset(path: Path, offsets: list[int], tokenizer: Any, cache: Path) -> Any:
    """The rows as a datasets.Dataset written in Arrow files under ``cache`` (memory-mapped,
    so memory does not grow with the dataset); TRL tokenizes it there too."""
    from datasets import Dataset

    cache.mkdir(parents=True, exist_ok=True)
    rows = list(_pairs(path, offsets[:1], tokenizer))  # the schema, from the first row
    if not rows:
        return Dataset.from_list([])
    return Dataset.from_generator(
        _pairs,
        gen_kwargs={"path": path, "offsets": offsets, "tokenizer": tokenizer},
        cache_dir=str(cache),
        keep_in_memory=False,
    )


def config_options(params: Hyperparameters, max_length: int) -> dict[str, Any]:
    """DPOConfig's options beyond TrainingArguments', from the job's ``dpo`` options."""
    dpo = params.dpo
    losses = ["sigmoid_norm" if dpo.preference_average_log_probs else "sigmoid"]
    weights = [dpo.preference_loss_weight]
    if dpo.sft_loss_weight > 0:
        losses.append("sft")
        weights.append(dpo.sft_loss_weight)
    return {
        "beta": dpo.ref_policy_kl_penalty,
        "loss_type": losses,
        "loss_weights": weights,
        "max_grad_norm": dpo.max_grad_norm,
        "max_length": max_length,
        # The hub's own checks refuse (or truncate, when asked) rows over max_seq_length
        # before training; what TRL truncates past that is the end of an answer.
        "truncation_mode": "keep_start",
        "disable_dropout": True,
        "dataset_num_proc": None,
    }


def reference_model(base: str, model: Any, params: Hyperparameters) -> Any | None:
    """The frozen reference: none to pass with LoRA (TRL switches the adapter off), a second
    copy of the base weights with all weights."""
    if params.uses_lora:
        return None
    from transformers import AutoModelForCausalLM

    reference = AutoModelForCausalLM.from_pretrained(base, local_files_only=True, dtype=model.dtype)
    reference.config.use_cache = False
    return reference.eval()
