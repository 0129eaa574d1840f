"""Hyperparameters of a customization job: names, defaults and the ranges they must lie in.

Names and shapes follow NeMo Customizer's (``nemo-microservices`` 1.5.0,
``customization.jobs.create``): ``finetuning_type``, ``training_type``, ``epochs``,
``batch_size``, ``learning_rate``, ``log_every_n_steps``, ``weight_decay``, ``warmup_steps``,
``seed``, ``optimizer``, ``min_learning_rate``, ``lora: {adapter_dim, alpha, adapter_dropout,
target_modules}`` and ``sft: {hidden_dropout, attention_dropout}``. The hub adds
``early_stopping_patience``, ``max_seq_length``, ``gradient_accumulation_steps``,
``overlong_rows`` and ``precision``; NeMo's ``sequence_packing_enabled`` packs SFT rows
(jobs.domain.packing). NeMo options the hub does not run are refused by name rather than
ignored.

``batch_size`` is, as in NeMo, the number of samples per optimizer step (the global batch):
with gradient accumulation each forward pass takes ``batch_size / gradient_accumulation_steps``
of them, so seed 004's ``steps_per_epoch = ceil(n / batch_size)`` stays true.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from django.core.exceptions import ValidationError


@dataclass(frozen=True)
class Range:
    low: float
    high: float
    integer: bool
    low_inclusive: bool = True

    def describe(self) -> str:
        low = "≥" if self.low_inclusive else ">"
        kind = "a whole number" if self.integer else "a number"
        return f"{kind} {low} {self.low:g} and ≤ {self.high:g}"

    def admits(self, value: float) -> bool:
        above = value >= self.low if self.low_inclusive else value > self.low
        return above and value <= self.high


RANGES: dict[str, Range] = {
    "epochs": Range(1, 1000, integer=True),
    "batch_size": Range(1, 4096, integer=True),
    "learning_rate": Range(0, 1, integer=False, low_inclusive=False),
    "log_every_n_steps": Range(1, 100_000, integer=True),
    "early_stopping_patience": Range(0, 1000, integer=True),
    "max_seq_length": Range(8, 131_072, integer=True),
    "gradient_accumulation_steps": Range(1, 1024, integer=True),
    "warmup_steps": Range(0, 1_000_000, integer=True),
    "weight_decay": Range(0, 1, integer=False),
    "min_learning_rate": Range(0, 1, integer=False),
    "seed": Range(0, 2**31 - 1, integer=True),
}
LORA_RANGES: dict[str, Range] = {
    "adapter_dim": Range(1, 1024, integer=True),
    "alpha": Range(1, 4096, integer=True),
    "adapter_dropout": Range(0, 0.9, integer=False),
}
DPO_RANGES: dict[str, Range] = {
    # DPO's beta: how far the trained model may move from the reference (the base model).
    "ref_policy_kl_penalty": Range(0, 100, integer=False, low_inclusive=False),
    "preference_loss_weight": Range(0, 100, integer=False),
    "sft_loss_weight": Range(0, 100, integer=False),
    "max_grad_norm": Range(0, 1_000_000, integer=False, low_inclusive=False),
}
DPO_FLAGS = ("preference_average_log_probs", "sft_average_log_probs")
GRPO_RANGES: dict[str, Range] = {
    "num_generations_per_prompt": Range(2, 64, integer=True),
    "num_prompts_per_step": Range(1, 4096, integer=True),
    "generation_temperature": Range(0, 10, integer=False, low_inclusive=False),
    "generation_top_p": Range(0, 1, integer=False, low_inclusive=False),
    "generation_top_k": Range(1, 1_000_000, integer=True),
    "ref_policy_kl_penalty": Range(0, 100, integer=False),
    "max_grad_norm": Range(0, 1_000_000, integer=False, low_inclusive=False),
    "ratio_clip_min": Range(0, 1, integer=False),
    "ratio_clip_max": Range(0, 10, integer=False),
    "max_completion_length": Range(1, 8192, integer=True),
}
GRPO_FLAGS = ("normalize_rewards", "token_level_loss", "overlong_filtering")
# NeMo's grpo options that TRL's GRPOTrainer, on which the hub runs GRPO, has no equal for.
GRPO_NOT_RUN = {
    "environment": "NeMo's task environments (the hub scores completions against each row's "
    "answer with grpo.reward instead)",
    "generation_batch_size": "a generation batch apart from the training batch",
    "generation_pipeline_parallel_size": "pipeline-parallel generation",
    "logprob_chunk_size": "chunked log-probabilities",
    "ratio_clip_c": "dual-clip PPO",
    "use_importance_sampling_correction": "importance-sampling correction",
    "use_on_policy_kl_approximation": "the on-policy KL approximation",
    "use_rloo": "RLOO baselines",
}
DISTILLATION_RANGES: dict[str, Range] = {
    # Both distributions are softened by it before they are compared (Hinton et al.).
    "temperature": Range(0, 100, integer=False, low_inclusive=False),
}
SFT_RANGES: dict[str, Range] = {
    "hidden_dropout": Range(0, 0.9, integer=False),
    "attention_dropout": Range(0, 0.9, integer=False),
}
CHOICES: dict[str, tuple[str, ...]] = {
    # NeMo's "lora_merged" is LoRA whose merged model is the output: the hub always gives both.
    "finetuning_type": ("lora", "all_weights", "lora_merged"),
    "training_type": ("sft", "dpo", "distillation", "grpo"),
    "optimizer": (
        "adamw_with_flat_lr",
        "adamw_with_cosine_annealing",
        "adam_with_flat_lr",
        "adam_with_cosine_annealing",
    ),
    # What to do with a row longer than max_seq_length once tokenized with the job's model.
    "overlong_rows": ("refuse", "truncate"),
    # "auto": bfloat16 on a GPU that supports it, float32 otherwise.
    "precision": ("auto", "fp32", "bf16", "fp16"),
}
FLAGS = ("sequence_packing_enabled",)
GPU_PRECISIONS = ("bf16", "fp16")
# Metric series a training type records besides its losses (jobs/engine/training/), shown on
# the job page's chart from the start (other series wait behind a click on the legend).
MEASURES = {
    "dpo": ("reward_margin", "val_reward_margin", "preference_accuracy", "val_preference_accuracy"),
    "grpo": ("reward", "val_reward", "reward_std", "kl"),
}
# NeMo Customizer options that this hub does not run: named in the refusal, never ignored.
NOT_SUPPORTED = {
    "val_check_interval": "validation more often than once an epoch",
    "max_steps": "a step limit (use epochs)",
    "adam_beta1": "Adam betas",
    "adam_beta2": "Adam betas",
}
NOT_SUPPORTED_TRAINING: dict[str, str] = {}


@dataclass(frozen=True)
class Lora:
    adapter_dim: int = 8
    alpha: int = 16
    adapter_dropout: float = 0.0
    # None: the default for the model's architecture (jobs.domain.base_models.lora_targets).
    target_modules: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Dpo:
    """NeMo Customizer's ``dpo`` options, run with TRL's DPOTrainer (jobs.engine.training.dpo):
    ``ref_policy_kl_penalty`` is its beta, the preference loss its sigmoid loss (per token with
    ``preference_average_log_probs``), the SFT term on the chosen answers its "sft" loss."""

    ref_policy_kl_penalty: float = 0.1
    preference_loss_weight: float = 1.0
    preference_average_log_probs: bool = False
    sft_loss_weight: float = 0.0
    sft_average_log_probs: bool = False
    max_grad_norm: float = 1.0


@dataclass(frozen=True)
class Distillation:
    """NeMo Customizer's ``distillation``: the ``teacher`` model whose token distributions the
    student (the job's base model) learns, on the completions of the dataset's rows; the hub adds
    the softmax ``temperature``. Stored as the offered model's name or the model's public id."""

    teacher: str | None = None
    temperature: float = 1.0


@dataclass(frozen=True)
class Grpo:
    """NeMo Customizer's ``grpo`` options that TRL's GRPOTrainer honours
    (jobs.engine.training.grpo says how each maps), and the hub's ``reward`` (the rule a
    completion is scored by, jobs.domain.rewards) and ``max_completion_length``. A step takes
    ``num_prompts_per_step`` prompts (the job's ``batch_size``), each answered
    ``num_generations_per_prompt`` times."""

    reward: dict[str, Any] | None = None
    num_generations_per_prompt: int = 4
    generation_temperature: float = 1.0
    generation_top_p: float = 1.0
    generation_top_k: int | None = None
    ref_policy_kl_penalty: float = 0.01
    max_grad_norm: float = 1.0
    normalize_rewards: bool = True
    ratio_clip_min: float = 0.2
    ratio_clip_max: float = 0.2
    token_level_loss: bool = True
    overlong_filtering: bool = False
    max_completion_length: int = 32


@dataclass(frozen=True)
class Sft:
    hidden_dropout: float | None = None  # None keeps the model's own
    attention_dropout: float | None = None


@dataclass(frozen=True)
class Hyperparameters:
    finetuning_type: str = "lora"
    training_type: str = "sft"
    epochs: int = 5
    batch_size: int = 16
    learning_rate: float = 0.0001
    log_every_n_steps: int = 1
    # Epochs without a better validation loss before training stops; 0 turns early stopping off.
    early_stopping_patience: int = 3
    # None: the model's context length, at most 2048 tokens.
    max_seq_length: int | None = None
    gradient_accumulation_steps: int = 1
    warmup_steps: int = 0
    weight_decay: float = 0.0
    optimizer: str = "adamw_with_flat_lr"
    min_learning_rate: float | None = None
    seed: int = 42
    overlong_rows: str = "refuse"
    precision: str = "auto"
    # Several rows per training sequence of max_seq_length tokens (SFT only).
    sequence_packing_enabled: bool = False
    lora: Lora = field(default_factory=Lora)
    sft: Sft = field(default_factory=Sft)
    dpo: Dpo = field(default_factory=Dpo)
    distillation: Distillation = field(default_factory=Distillation)
    grpo: Grpo = field(default_factory=Grpo)

    @property
    def uses_lora(self) -> bool:
        return self.finetuning_type in ("lora", "lora_merged")

    def max_length(self, context: int | None) -> int:
        """max_seq_length, or the model's context length up to 2048 tokens."""
        if self.max_seq_length is not None:
            return self.max_seq_length
        return min(context or 2048, 2048)

    @property
    def micro_batch_size(self) -> int:
        return self.batch_size // self.gradient_accumulation_steps

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if data["lora"]["target_modules"] is not None:
            data["lora"]["target_modules"] = list(data["lora"]["target_modules"])
        return data

    def as_shown(self) -> dict[str, Any]:
        """as_dict without the option groups that do not apply to this job (LoRA's for all
        weights, DPO's for SFT, …): what a page or NeMo's job shape shows."""
        data = self.as_dict()
        applies = {
            "lora": self.uses_lora,
            "sft": self.training_type in ("sft", "distillation"),
            "dpo": self.training_type == "dpo",
            "distillation": self.training_type == "distillation",
            "grpo": self.training_type == "grpo",
        }
        return {k: v for k, v in data.items() if applies.get(k, True)}

    @classmethod
    def from_stored(cls, data: dict[str, Any]) -> Hyperparameters:
        """What a job stored (by as_dict), including jobs stored before a field existed."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known and k not in GROUPS}
        lora = dict(data.get("lora") or {})
        if lora.get("target_modules") is not None:
            lora["target_modules"] = tuple(lora["target_modules"])
        return cls(
            **values,
            lora=Lora(**lora),
            sft=Sft(**(data.get("sft") or {})),
            dpo=Dpo(**(data.get("dpo") or {})),
            distillation=Distillation(**(data.get("distillation") or {})),
            grpo=Grpo(**(data.get("grpo") or {})),
        )


GROUPS = ("lora", "sft", "dpo", "distillation", "grpo")


def _number(name: str, value: object, rule: Range, errors: dict[str, str]) -> float | int | None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (rule.integer and not float(value).is_integer())
        or not math.isfinite(value)
        or not rule.admits(value)
    ):
        errors[name] = f"{name} must be {rule.describe()}, not {value!r}."
        return None
    return int(value) if rule.integer else float(value)


def _group(
    name: str,
    data: object,
    ranges: dict[str, Range],
    extra: tuple[str, ...],
    errors: dict[str, str],
) -> dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        errors[name] = f"{name} must be an object of name: value."
        return {}
    values: dict[str, Any] = {}
    known = sorted([*ranges, *extra])
    for key, value in data.items():
        label = f"{name}.{key}"
        if key in ranges:
            # None is "unset" (what a stored job holds for an option left to its default).
            if value is None:
                continue
            number = _number(label, value, ranges[key], errors)
            if number is not None:
                values[key] = number
        elif key not in extra:
            errors[label] = f"Unknown {name} option {key!r}; known ones: {', '.join(known)}."
    return values


def _target_modules(value: object, errors: dict[str, str]) -> tuple[str, ...] | None:
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or not value
        or len(value) > 64
        or not all(isinstance(v, str) and 0 < len(v) <= 200 for v in value)
    ):
        errors["lora.target_modules"] = (
            "lora.target_modules must be a list of 1 to 64 module names (for example "
            '["q_proj", "v_proj"]), or null for the architecture\'s default.'
        )
        return None
    return tuple(value)


def parse_hyperparameters(data: object) -> Hyperparameters:
    """Validate a mapping of hyperparameters, filling defaults; errors name every bad field."""
    if data is None:
        return Hyperparameters()
    if not isinstance(data, dict):
        raise ValidationError(
            {"hyperparameters": "Hyperparameters must be an object of name: value."}
        )
    known = [f.name for f in fields(Hyperparameters)]
    errors: dict[str, str] = {}
    values: dict[str, Any] = {}
    for name, value in data.items():
        if name in NOT_SUPPORTED:
            errors[name] = (
                f"{name} ({NOT_SUPPORTED[name]}) is a NeMo Customizer option this hub does not "
                "support; leave it out."
            )
        elif name in FLAGS:
            if isinstance(value, bool):
                values[name] = value
            else:
                errors[name] = f"{name} must be true or false, not {value!r}."
        elif name in RANGES:
            if value is None and name in ("max_seq_length", "min_learning_rate"):
                continue
            number = _number(name, value, RANGES[name], errors)
            if number is not None:
                values[name] = number
        elif name in CHOICES:
            if name == "training_type" and value in NOT_SUPPORTED_TRAINING:
                errors[name] = (
                    f"training_type {value!r} ({NOT_SUPPORTED_TRAINING[str(value)]}) is not "
                    f"supported by this hub; it runs {', '.join(CHOICES['training_type'])}."
                )
            elif value not in CHOICES[name]:
                allowed = ", ".join(repr(c) for c in CHOICES[name])
                errors[name] = f"{name} must be one of {allowed}, not {value!r}."
            else:
                values[name] = value
        elif name not in GROUPS:
            errors[name] = (
                f"Unknown hyperparameter {name!r}; known ones: {', '.join(sorted(known))}."
            )
    lora = _group("lora", data.get("lora"), LORA_RANGES, ("target_modules",), errors)
    if isinstance(data.get("lora"), dict) and "target_modules" in data["lora"]:
        lora["target_modules"] = _target_modules(data["lora"]["target_modules"], errors)
    sft = _group("sft", data.get("sft"), SFT_RANGES, (), errors)
    dpo = _group("dpo", data.get("dpo"), DPO_RANGES, DPO_FLAGS, errors)
    _flags("dpo", data.get("dpo"), DPO_FLAGS, dpo, errors)
    grpo = _grpo(data.get("grpo"), values, errors)
    distillation = _group(
        "distillation", data.get("distillation"), DISTILLATION_RANGES, ("teacher",), errors
    )
    if (
        isinstance(data.get("distillation"), dict)
        and data["distillation"].get("teacher") is not None
    ):
        teacher = data["distillation"]["teacher"]
        if isinstance(teacher, str) and 0 < len(teacher.strip()) <= 200:
            distillation["teacher"] = teacher.strip()
        else:
            errors["distillation.teacher"] = (
                "distillation.teacher must name a model: one this hub offers, or a model id."
            )
    params = Hyperparameters(
        **values,
        lora=Lora(**lora),
        sft=Sft(**sft),
        dpo=Dpo(**dpo),
        distillation=Distillation(**distillation),
        grpo=Grpo(**grpo),
    )
    _check_training_type(data, params, errors)
    if (
        "batch_size" not in errors
        and "gradient_accumulation_steps" not in errors
        and params.batch_size % params.gradient_accumulation_steps
    ):
        errors["gradient_accumulation_steps"] = (
            f"batch_size ({params.batch_size}) must be a multiple of "
            f"gradient_accumulation_steps ({params.gradient_accumulation_steps}): each "
            "optimizer step takes batch_size samples in that many forward passes."
        )
    if (
        params.min_learning_rate is not None
        and "learning_rate" not in errors
        and params.min_learning_rate >= params.learning_rate
    ):
        errors["min_learning_rate"] = (
            f"min_learning_rate ({params.min_learning_rate:g}) must be below learning_rate "
            f"({params.learning_rate:g})."
        )
    if errors:
        raise ValidationError(errors)
    return params


def _flags(
    name: str, data: object, flags: tuple[str, ...], into: dict[str, Any], errors: dict[str, str]
) -> None:
    """The true/false options of a group, into ``into``."""
    if not isinstance(data, dict):
        return
    for flag in flags:
        if flag in data and data[flag] is not None:
            value = data[flag]
            if isinstance(value, bool):
                into[flag] = value
            else:
                errors[f"{name}.{flag}"] = f"{name}.{flag} must be true or false, not {value!r}."


def _grpo(data: object, values: dict[str, Any], errors: dict[str, str]) -> dict[str, Any]:
    """The ``grpo`` group: NeMo's options the hub runs, those it refuses by name, the reward."""
    from jobs.domain.rewards import RewardError, parse_reward

    extra = (*GRPO_FLAGS, *GRPO_NOT_RUN, "reward")
    grpo = _group("grpo", data, GRPO_RANGES, extra, errors)
    _flags("grpo", data, GRPO_FLAGS, grpo, errors)
    if not isinstance(data, dict):
        return grpo
    for name, what in GRPO_NOT_RUN.items():
        if name in data:
            errors[f"grpo.{name}"] = (
                f"grpo.{name} ({what}) is a NeMo Customizer option this hub does not run; "
                "leave it out."
            )
    if data.get("reward") is not None:
        try:
            grpo["reward"] = parse_reward(data["reward"]).as_dict()
        except RewardError as error:
            errors["grpo.reward"] = str(error)
    # A step's prompts are the job's batch_size: NeMo's name for them sets it, or agrees with it.
    prompts = grpo.pop("num_prompts_per_step", None)
    if prompts is not None:
        if "batch_size" in values and values["batch_size"] != prompts:
            errors["grpo.num_prompts_per_step"] = (
                f"grpo.num_prompts_per_step ({prompts}) is the job's batch_size "
                f"({values['batch_size']}): give one of them, or the same number."
            )
        values["batch_size"] = prompts
    return grpo


def _check_training_type(
    data: dict[str, Any], params: Hyperparameters, errors: dict[str, str]
) -> None:
    """Options of one training type given for another, and combinations that cannot train."""
    kind = params.training_type
    # A group of another type is refused when it asks for something; left at its defaults (as a
    # stored job's hyperparameters hold every group, given back by a resubmit) it is ignored.
    if params.dpo != Dpo() and kind != "dpo" and "training_type" not in errors:
        errors["dpo"] = f"dpo options apply to training_type 'dpo'; this job's is {kind!r}."
    if (
        params.distillation != Distillation()
        and kind != "distillation"
        and "training_type" not in errors
    ):
        errors["distillation"] = (
            f"distillation options apply to training_type 'distillation'; this job's is {kind!r}."
        )
    if (
        kind == "distillation"
        and not params.distillation.teacher
        and "distillation.teacher" not in errors
    ):
        errors["distillation.teacher"] = (
            "training_type 'distillation' needs distillation.teacher: the model to learn from "
            "(one this hub offers, or a model id you may read)."
        )
    if params.grpo != Grpo() and kind != "grpo" and "training_type" not in errors:
        errors["grpo"] = f"grpo options apply to training_type 'grpo'; this job's is {kind!r}."
    if kind == "grpo" and params.grpo.reward is None and "grpo.reward" not in errors:
        errors["grpo.reward"] = (
            "training_type 'grpo' needs grpo.reward, the rule completions are scored by against "
            'each row\'s answer: {"kind": "exact_match"}, {"kind": "number", "tolerance": 0.01} '
            'or {"kind": "regex", "pattern": "..."}.'
        )
    if kind == "grpo" and params.grpo.ratio_clip_max < params.grpo.ratio_clip_min:
        errors["grpo.ratio_clip_max"] = (
            f"grpo.ratio_clip_max ({params.grpo.ratio_clip_max:g}) must be at least "
            f"grpo.ratio_clip_min ({params.grpo.ratio_clip_min:g})."
        )
    if params.sequence_packing_enabled and kind != "sft":
        errors["sequence_packing_enabled"] = (
            f"sequence_packing_enabled packs SFT rows; training_type {kind!r} does not pack."
        )
    if kind == "dpo":
        if params.dpo.sft_average_log_probs:
            errors["dpo.sft_average_log_probs"] = (
                "dpo.sft_average_log_probs true (each row's SFT loss averaged over its own "
                "tokens) is not run by this hub: its SFT term weighs every chosen token alike "
                "(false, NeMo's default). Leave it out."
            )
        if params.dpo.preference_loss_weight == 0 and params.dpo.sft_loss_weight == 0:
            errors["dpo.preference_loss_weight"] = (
                "dpo.preference_loss_weight and dpo.sft_loss_weight are both 0: nothing would be "
                "learned. Give the preference loss a weight above 0."
            )
