"""Evaluation jobs: one or several language models scored on the rows of a dataset.

What each row gives (jobs.domain.sft_data's formats):

- prompt/completion, chat (its last assistant turn), prompt/answer: a prompt and the expected
  text. Each model's loss on the expected tokens (per token over all rows; perplexity is its
  exponential) and the text it writes for the prompt, scored against the expected text:
  ``exact_match`` (equal once stripped), ``rouge_l`` (ROUGE-L F-measure, Google's
  ``rouge-score``), ``bleu`` (corpus BLEU from ``sacrebleu``, 0–100), ``string_check`` (the
  expected text appears in the output, any case) and, with a ``pattern``, ``regex`` (the output
  matches it; ``{answer}`` stands for the expected text, as in GRPO's rewards).
- preference rows: the same with the chosen answer as the expected text, and
  ``preference_accuracy``: the share of rows where the model gives the chosen answer a higher
  log-probability than the rejected one.

Settings: ``max_new_tokens``, ``temperature`` (0, the default, is greedy), ``limit`` (the first
rows only), ``pattern``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from django.core.exceptions import ValidationError

GENERATION_METRICS = ("exact_match", "rouge_l", "bleu", "string_check", "regex")
MAX_MODELS = 8
ROW_SCORE = "rouge_l"  # what "worst rows first" sorts by: the lowest mean over the models


@dataclass(frozen=True)
class EvaluationSettings:
    max_new_tokens: int = 32
    temperature: float = 0.0
    limit: int | None = None
    pattern: str | None = None
    seed: int = 42

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_settings(data: object) -> EvaluationSettings:
    """Settings of an evaluation; errors name every bad field."""
    if data is None:
        return EvaluationSettings()
    if not isinstance(data, dict):
        raise ValidationError({"settings": "settings must be an object of name: value."})
    from jobs.domain.rewards import RewardError, parse_reward

    errors: dict[str, str] = {}
    values: dict[str, Any] = {}
    known = ("max_new_tokens", "temperature", "limit", "pattern", "seed")
    for name, value in data.items():
        if name not in known:
            errors[name] = f"Unknown setting {name!r}; known ones: {', '.join(known)}."
        elif name == "pattern":
            if value is None:
                continue
            try:
                parse_reward({"kind": "regex", "pattern": value})
            except RewardError as error:
                errors[name] = str(error).replace("grpo.reward.pattern", "pattern")
            else:
                values[name] = value
        elif name == "temperature":
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not (0 <= value <= 10)
            ):
                errors[name] = f"temperature must be a number from 0 (greedy) to 10, not {value!r}."
            else:
                values[name] = float(value)
        else:
            low, high = {
                "max_new_tokens": (1, 4096),
                "limit": (1, 1_000_000),
                "seed": (0, 2**31 - 1),
            }[name]
            if value is None and name == "limit":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                errors[name] = (
                    f"{name} must be a whole number from {low} to {high:,}, not {value!r}."
                )
            else:
                values[name] = value
    if errors:
        raise ValidationError({f"settings.{k}": v for k, v in errors.items()})
    return EvaluationSettings(**values)


def row_scores(output: str, expected: str, settings: EvaluationSettings) -> dict[str, float]:
    """One output's scores against the expected text (BLEU is a corpus measure: see
    ``corpus_bleu``)."""
    from jobs.domain.rewards import Reward

    scores = {
        "exact_match": 1.0 if output.strip() == expected.strip() else 0.0,
        "rouge_l": _rouge().score(expected, output)["rougeL"].fmeasure if expected.strip() else 0.0,
        "string_check": 1.0 if expected.strip().casefold() in output.casefold() else 0.0,
    }
    if settings.pattern:
        scores["regex"] = Reward("regex", pattern=settings.pattern).score(output, expected)
    return scores


_SCORER: Any = None


def _rouge() -> Any:
    global _SCORER
    if _SCORER is None:
        from rouge_score import rouge_scorer

        _SCORER = rouge_scorer.RougeScorer(["rougeL"])
    return _SCORER


def corpus_bleu(outputs: list[str], expected: list[str]) -> float:
    import sacrebleu

    if not outputs:
        return 0.0
    return float(sacrebleu.corpus_bleu(outputs, [expected]).score)


def perplexity(loss: float | None) -> float | None:
    """exp(loss), None where it overflows or there is no loss."""
    if loss is None or not math.isfinite(loss) or loss > 700:
        return None
    return math.exp(loss)
