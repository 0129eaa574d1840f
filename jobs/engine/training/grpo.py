"""Group-relative policy optimisation (``training_type: "grpo"``) on TRL's GRPOTrainer, with a
verifiable reward: each prompt of a step is answered ``num_generations_per_prompt`` times by the
model being trained, each completion is scored against the row's answer by the job's
``grpo.reward`` (jobs.domain.rewards), and the model learns from each completion's advantage
over its group.

NeMo's ``grpo`` options → TRL's GRPOConfig:

- ``num_generations_per_prompt`` → ``num_generations``; a step's prompts are ``batch_size``
  (NeMo's ``num_prompts_per_step``), so a step trains on prompts × generations completions;
- ``generation_temperature``/``_top_p``/``_top_k`` → ``temperature``/``top_p``/``top_k``;
- ``ref_policy_kl_penalty`` → ``beta`` (the KL to the base model; 0 loads no reference);
- ``normalize_rewards`` → ``scale_rewards`` "group" (advantages divided by their group's spread)
  or "none"; ``ratio_clip_min``/``_max`` → ``epsilon``/``epsilon_high``;
- ``token_level_loss`` → ``loss_type`` "dapo" (every token of the step alike) or "grpo" (each
  completion's tokens averaged first); ``overlong_filtering`` → ``mask_truncated_completions``;
- ``max_grad_norm`` → gradient clipping; the hub's ``max_completion_length`` → TRL's.

TRL logs the reward's mean and spread within groups, the KL and the completions' lengths: the
job keeps them as metric series (``METRICS``), at validation too (its prompts answered the same
way). The best epoch is the one whose validation reward is highest.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jobs.domain.hyperparameters import Hyperparameters
from jobs.domain.rewards import Reward, parse_reward
from jobs.domain.sft_data import answer_text

METRICS = {
    "reward": "reward",
    "reward_std": "reward_std",
    "kl": "kl",
    "completions/mean_length": "completion_length",
}


def _rows(path: Path, offsets: list[int]) -> Iterator[dict[str, str]]:
    with path.open("rb") as handle:
        for offset in offsets:
            handle.seek(offset)
            record = json.loads(handle.readline())
            yield {"prompt": record["prompt"], "answer": answer_text(record)}


def dataset(path: Path, offsets: list[int], cache: Path) -> Any:
    """The prompts and answers as a datasets.Dataset in Arrow files under ``cache``."""
    from datasets import Dataset

    cache.mkdir(parents=True, exist_ok=True)
    return Dataset.from_generator(
        _rows, gen_kwargs={"path": path, "offsets": offsets}, cache_dir=str(cache)
    )


def reward_function(rule: Reward) -> Any:
    """TRL's reward function: each completion scored against its row's answer."""

    def answer(completions: list[Any], answer: list[str], **kwargs: Any) -> list[float]:
        texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
        return [rule.score(text, expected) for text, expected in zip(texts, answer, strict=True)]

    return answer


def config_options(params: Hyperparameters) -> dict[str, Any]:
    """GRPOConfig's options beyond TrainingArguments', from the job's ``grpo`` options."""
    grpo = params.grpo
    completions = params.micro_batch_size * grpo.num_generations_per_prompt
    return {
        "num_generations": grpo.num_generations_per_prompt,
        "per_device_train_batch_size": completions,
        "per_device_eval_batch_size": completions,
        "max_completion_length": grpo.max_completion_length,
        "temperature": grpo.generation_temperature,
        "top_p": grpo.generation_top_p,
        "top_k": grpo.generation_top_k or 0,
        "beta": grpo.ref_policy_kl_penalty,
        "scale_rewards": "group" if grpo.normalize_rewards else "none",
        "epsilon": grpo.ratio_clip_min,
        "epsilon_high": grpo.ratio_clip_max,
        "loss_type": "dapo" if grpo.token_level_loss else "grpo",
        "mask_truncated_completions": grpo.overlong_filtering,
        "max_grad_norm": grpo.max_grad_norm,
        "metric_for_best_model": "eval_reward",
        "greater_is_better": True,
        "disable_dropout": True,
        "log_completions": False,
    }


def rule(params: Hyperparameters) -> Reward:
    assert params.grpo.reward is not None  # the submit requires one
    return parse_reward(params.grpo.reward)
