"""Supervised fine-tuning of a Hugging Face causal LM with transformers' Trainer, full weights
or LoRA (peft), reporting through a ``Sink`` from a ``TrainerCallback``.

This module knows nothing of Django: the same ``train`` runs inside a Celery worker (the sink
is the job's progress reporter) and in each process of a ``torchrun`` launch (rank 0's sink
writes events for the worker to relay; jobs.engine.training.launch).

Checkpoints: one per epoch, in the job's checkpoint folder on the shared media storage, with
optimizer and scheduler state (Trainer's own format) and ``hub_state.json`` (the status details
at that point); a folder without ``hub_state.json`` was not finished and is never resumed from.
Trainer keeps the best (lowest validation loss) and the latest; the best is loaded at the end.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from jobs.domain.hyperparameters import Hyperparameters
from jobs.domain.redact import library_message
from jobs.engine.training.device import Device, detect, precision_flags

HUB_STATE = "hub_state.json"
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
# Written in the checkpoint folder when training has ended: the Trainer then keeps only the best
# epoch's checkpoint (save_total_limit=1), so without it an attempt lost after training (while
# sampling or exporting) would "resume" from the best epoch and train the later ones again.
TRAINING_ENDED = "hub_training_ended.json"


class TrainingFailed(Exception):
    """Training cannot go on, for a reason the user can act on; ``kind`` is a FailureType value."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind, self.message = kind, message


class Sink(Protocol):
    """Where training reports to: the job's progress reporter, or an event file."""

    def progress(self, **fields: Any) -> None: ...
    def metric(self, key: str, step: int, value: float) -> None: ...
    def log(self, line: str) -> None: ...
    def note(self, message: str) -> None: ...
    def check_stop(self) -> None: ...

    def checkpoint_done(self, folder: str, state: dict[str, Any]) -> None:
        """The checkpoint in ``folder`` is whole: once every report before it is stored, mark
        it finished (write_hub_state), so that a resumed attempt finds exactly what it had."""
        ...


def write_hub_state(folder: str, state: dict[str, Any]) -> None:
    """Written beside and renamed: a checkpoint folder has a whole hub_state.json or none."""
    target = Path(folder) / HUB_STATE
    partial = target.with_suffix(".partial")
    try:
        partial.write_text(json.dumps(state))
        partial.rename(target)
    except FileNotFoundError:
        # Trainer already rotated that checkpoint away (several processes report late): a newer
        # one is being marked, and this one could not be resumed from anyway.
        pass


@dataclass
class TrainSpec:
    base: str  # the base model's folder
    train_file: str
    validation_file: str | None
    kept: int  # rows of train_file that train (the rest validate) when no validation file
    params: dict[str, Any]
    checkpoints: str  # durable folder, shared by the job's attempts
    final: str  # where the trained adapter and merged model are written
    want: str = "any"  # "gpu", "cpu" or "any"
    threads: int = 1
    strategy: str = "ddp"  # or "fsdp" (several GPUs, a model too big for one)
    seed_of_split: int = 0
    teacher: str | None = None  # a distillation's teacher folder

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> TrainSpec:
        return cls(**json.loads(text))


@dataclass
class TrainResult:
    best_epoch: int
    val_loss: float
    train_loss: float | None
    epochs_run: int
    stopped_early: bool
    tokens_trained: int
    seconds: float
    resumed_from: int | None = None  # the step of the checkpoint training resumed from
    # Row tokens over tokens computed in this attempt's training batches (jobs.domain.packing).
    packing_efficiency: float | None = None


# A validation loss this many times the best seen means the training is running away.
DIVERGED_FACTOR = 3.0


@dataclass
class HubState:
    """What a checkpoint records besides the Trainer's own state."""

    epoch: int
    step: int
    best_epoch: int
    best_val_loss: float
    best_train_loss: float | None
    since_best: int
    epoch_losses: dict[str, list[float]] = field(default_factory=dict)  # epoch → step losses
    tokens: int = 0


def latest_checkpoint(folder: Path) -> tuple[Path, HubState] | None:
    """The newest finished checkpoint in the job's checkpoint folder."""
    found = []
    if folder.is_dir():
        for child in folder.iterdir():
            match = CHECKPOINT.match(child.name)
            if match and (child / HUB_STATE).exists():
                found.append((int(match.group(1)), child))
    if not found:
        return None
    _, path = max(found)
    return path, HubState(**json.loads((path / HUB_STATE).read_text()))


def training_ended(folder: Path) -> tuple[Path, HubState] | None:
    """When an earlier attempt finished training: the checkpoint of the best epoch it kept, and
    the state training ended in (its last epoch and step, its best epoch)."""
    marker = folder / TRAINING_ENDED
    if not marker.is_file():
        return None
    ended = json.loads(marker.read_text())
    kept = folder / ended["kept"]
    if not CHECKPOINT.match(ended["kept"]) or not (kept / HUB_STATE).is_file():
        return None  # the best checkpoint is gone: nothing to go on from without training
    return kept, HubState(**ended["state"])


def _callback_class() -> type:
    from transformers import TrainerCallback

    class HubCallback(TrainerCallback):
        """Seed 004's status details from the Trainer's events: train loss as the mean of
        every ``log_every_n_steps`` steps, validation loss and the best epoch at each epoch's
        checkpoint, early stopping, cancellation at the next step."""

        def __init__(
            self, sink: Sink, params: Hyperparameters, state: HubState | None, rank0: bool
        ) -> None:
            self.sink, self.params, self.rank0 = sink, params, rank0
            self.state = state or HubState(0, 0, 0, math.inf, None, 0)
            self.window: list[float] = []
            self.last_val: float | None = None
            self.base_val: float | None = None  # the base model's, before any training
            self.diverging: tuple[float, float] | None = None  # (val_loss, the best before)
            self.throughput: Throughput | None = None  # set once the trainer exists
            # The training type's own measures: its trainer's log key → the job's series
            # (averaged like train_loss; at validation as "val_" + the series).
            self.measures: dict[str, str] = {}
            self.watch_divergence = True
            self.windows: dict[str, list[float]] = {}

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.throughput is not None:
                self.throughput.start()

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            """Training ran to its end (not stopped by a failure or a cancel, which raise):
            record where it ended and which checkpoint holds the weights kept."""
            if not self.rank0 or not state.best_model_checkpoint:
                return
            folder = Path(args.output_dir)
            ended = {"kept": Path(state.best_model_checkpoint).name, "state": asdict(self.state)}
            partial = folder / (TRAINING_ENDED + ".partial")
            partial.write_text(json.dumps(ended))
            os.replace(partial, folder / TRAINING_ENDED)

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.rank0:
                self.sink.progress(steps_completed=state.global_step)
                self.sink.check_stop()

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if not self.rank0 or not logs or "loss" not in logs:
                return
            loss, step = float(logs["loss"]), state.global_step
            epoch = math.floor(state.epoch - 1e-9) + 1 if state.epoch else 1
            if not math.isfinite(loss):
                self.sink.metric("train_loss", step, loss)
                raise TrainingFailed(
                    "training_diverged",
                    f"The training loss became NaN or infinite at step {step} (epoch {epoch}). "
                    f"Lower learning_rate (now {self.params.learning_rate:g}) and resubmit.",
                )
            self.state.epoch_losses.setdefault(str(epoch), []).append(loss)
            self.window.append(loss)
            for key, name in self.measures.items():
                if key in logs and math.isfinite(float(logs[key])):
                    self.windows.setdefault(name, []).append(float(logs[key]))
            if step % self.params.log_every_n_steps == 0:
                self.sink.metric("train_loss", step, sum(self.window) / len(self.window))
                self.window = []
                for name, values in self.windows.items():
                    if values:
                        self.sink.metric(name, step, sum(values) / len(values))
                self.windows = {}

        def on_evaluate(
            self, args: Any, state: Any, control: Any, metrics: Any = None, **kw: Any
        ) -> None:
            if not self.rank0 or not metrics or "eval_loss" not in metrics:
                return
            value = float(metrics["eval_loss"])
            self.sink.metric("val_loss", state.global_step, value)
            for key, name in self.measures.items():
                if f"eval_{key}" in metrics:
                    self.sink.metric(
                        f"val_{name}", state.global_step, float(metrics[f"eval_{key}"])
                    )
            if not math.isfinite(value) and state.global_step == 0:
                raise TrainingFailed(
                    "invalid_model",
                    "The base model's validation loss is NaN or infinite before any training: "
                    "its weights hold NaN or infinite values (or overflow in this precision).",
                )
            if not math.isfinite(value):
                raise TrainingFailed(
                    "training_diverged",
                    f"The validation loss became NaN or infinite at step {state.global_step}. "
                    f"Lower learning_rate (now {self.params.learning_rate:g}) and resubmit.",
                )
            if state.global_step == 0:
                self.base_val = value
            self.last_val = value
            self._check_divergence(value, state, control)

        def _check_divergence(self, value: float, state: Any, control: Any) -> None:
            """A validation loss far above the best seen (DIVERGED_FACTOR times): the training
            is running away. With an earlier epoch better, stop and keep that epoch's weights
            (on_save says so); with none better than the base model, fail the job."""
            if state.global_step == 0 or not self.watch_divergence:
                return
            known = [v for v in (self.state.best_val_loss, self.base_val) if v is not None]
            best = min((v for v in known if math.isfinite(v)), default=None)
            if best is None or best <= 0 or value <= DIVERGED_FACTOR * best:
                return
            epoch = math.floor(state.epoch - 1e-9) + 1 if state.epoch else 1
            if not self.state.best_epoch:  # no epoch's checkpoint to fall back on
                raise TrainingFailed(
                    "training_diverged",
                    f"The validation loss rose from {best:.4f} before training to {value:.4f} "
                    f"after epoch {epoch}: the training diverged, and no epoch did better than "
                    f"the base model. Lower learning_rate (now {self.params.learning_rate:g}) "
                    "and resubmit.",
                )
            self.diverging = (value, best)
            control.should_training_stop = True

        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            """After the epoch's checkpoint is whole: record the best, mark the checkpoint
            finished, decide early stopping."""
            epoch = round(state.epoch)
            losses = self.state.epoch_losses.get(str(epoch), [])
            train_loss = sum(losses) / len(losses) if losses else None
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            best = state.best_model_checkpoint and Path(state.best_model_checkpoint) == folder
            if best and self.last_val is not None:
                self.state.best_epoch, self.state.best_val_loss = epoch, self.last_val
                self.state.best_train_loss, self.state.since_best = train_loss, 0
            else:
                self.state.since_best += 1
            self.state.epoch, self.state.step = epoch, state.global_step
            if self.throughput is not None:
                self.state.tokens = self.throughput.count.real * self.throughput.processes
            patience = self.params.early_stopping_patience
            stopping = (
                bool(patience) and self.state.since_best >= patience and epoch < self.params.epochs
            )
            if stopping:
                control.should_training_stop = True
            if not self.rank0:
                return
            (folder / HUB_STATE).write_text(json.dumps(asdict(self.state)))
            details: dict[str, Any] = {
                "epochs_completed": epoch,
                "steps_completed": state.global_step,
            }
            if best:
                details.update(
                    best_epoch=epoch, train_loss=train_loss, val_loss=self.state.best_val_loss
                )
            if self.throughput is not None:
                details["summary"] = self.throughput.summary()
            self.sink.progress(**details)
            self.sink.log(
                f"Epoch {epoch}/{self.params.epochs}: train_loss "
                f"{train_loss if train_loss is not None else float('nan'):.4f}, val_loss "
                f"{self.last_val if self.last_val is not None else float('nan'):.4f}"
                + (" (best so far)" if best else "")
            )
            self.sink.checkpoint_done(str(folder), asdict(self.state))
            if self.diverging is not None and not best:
                value, before = self.diverging
                self.sink.note(
                    f"Stopped after epoch {epoch} of {self.params.epochs}: the training is "
                    f"diverging (val_loss {value:.4f}, more than {DIVERGED_FACTOR:g} times the "
                    f"best {before:.4f}). The weights of epoch {self.state.best_epoch} are kept; "
                    f"a lower learning_rate (now {self.params.learning_rate:g}) may do better."
                )
            elif stopping:
                self.sink.note(
                    f"Early stopping after epoch {epoch} of {self.params.epochs}: val_loss has "
                    f"not improved for {self.state.since_best} epochs (best "
                    f"{self.state.best_val_loss:.4f} at epoch {self.state.best_epoch})."
                )

    return HubCallback


class Throughput:
    """Tokens trained and computed in this attempt (jobs.domain.packing.TokenCount, filled by
    the trainer from each batch), and the seconds since training began: the job's packing
    efficiency and tokens per second, at every epoch and at the end. Counted in this process;
    with several processes each trains its share, so the rate is this one's times their
    number."""

    def __init__(self, packed: bool, processes: int) -> None:
        import time

        from jobs.domain.packing import TokenCount

        self.count, self.packed, self.processes = TokenCount(), packed, processes
        self._clock = time.monotonic
        self.started = self._clock()

    def start(self) -> None:
        self.started = self._clock()

    @property
    def tokens_per_second(self) -> float | None:
        seconds = self._clock() - self.started
        return self.count.real * self.processes / seconds if seconds > 0 else None

    def summary(self) -> dict[str, Any]:
        efficiency, rate = self.count.efficiency, self.tokens_per_second
        return {
            "sequence_packing": self.packed,
            "packing_efficiency": round(efficiency, 4) if efficiency is not None else None,
            "tokens_per_second": round(rate, 1) if rate is not None else None,
        }


def _trainer_class(base: type) -> type:
    """``base`` (transformers' Trainer or one of TRL's) taking each batch's token counts out
    before the model sees the batch (jobs.engine.training.data.TOKENS), and giving the
    validation loss per token over the whole validation set: Trainer's is a mean of batch means,
    which moves with the batch size, so that two jobs differing only in their batches (packed
    and unpacked) would not measure the same rows alike."""
    import torch

    from jobs.domain.sft_data import IGNORE
    from jobs.engine.training.data import TOKENS

    class Counting(base):
        throughput: Throughput | None = None
        _eval_sum = _eval_tokens = 0.0

        def training_step(self, model: Any, inputs: Any, *args: Any, **kwargs: Any) -> Any:
            if not isinstance(inputs, dict):  # GRPO's: prompts it generates from
                return super().training_step(model, inputs, *args, **kwargs)
            counted = inputs.pop(TOKENS, None)
            if counted is None and "attention_mask" in inputs:  # a TRL trainer's own batch
                mask = inputs["attention_mask"]
                counted = (int(mask.sum()), mask.numel())
            if counted is not None and self.throughput is not None:
                self.throughput.count.add(int(counted[0]), int(counted[1]))
            return super().training_step(model, inputs, *args, **kwargs)

        def prediction_step(self, model: Any, inputs: Any, *args: Any, **kwargs: Any) -> Any:
            if not isinstance(inputs, dict):
                return super().prediction_step(model, inputs, *args, **kwargs)
            inputs.pop(TOKENS, None)
            loss, logits, labels = super().prediction_step(model, inputs, *args, **kwargs)
            if loss is not None and "labels" in inputs:
                # The model's loss is the mean over the batch's predicted tokens (labels after
                # the first of each row): back to a sum, to divide by all of them at the end.
                tokens = int((inputs["labels"][:, 1:] != IGNORE).sum())
                self._eval_sum += float(loss) * tokens
                self._eval_tokens += tokens
            return loss, logits, labels

        def evaluation_loop(self, *args: Any, **kwargs: Any) -> Any:
            self._eval_sum = self._eval_tokens = 0.0
            output = super().evaluation_loop(*args, **kwargs)
            key = f"{kwargs.get('metric_key_prefix', 'eval')}_loss"
            if key in output.metrics:
                totals = torch.tensor([self._eval_sum, self._eval_tokens], device=self.args.device)
                total, tokens = (float(v) for v in self.accelerator.reduce(totals, "sum"))
                if tokens:
                    output.metrics[key] = total / tokens
            return output

    return Counting


def packing_problem(model: Any, label: str) -> str | None:
    """Why packed rows would not train as they would alone with this model, or None: two short
    rows, given once packed into one sequence (positions restarting at 0, no mask) and once
    apart, must give the same logits. An architecture whose attention is not masked per row from
    the positions (one that ignores position ids, or builds its own causal mask) fails here."""
    import torch

    vocab = int(model.config.vocab_size)
    generator = torch.Generator().manual_seed(0)
    first = torch.randint(0, vocab, (1, 5), generator=generator)
    second = torch.randint(0, vocab, (1, 7), generator=generator)
    packed = torch.cat([first, second], dim=1)
    positions = torch.tensor([[*range(5), *range(7)]])
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            # No cache, as in training: with one, transformers reads no rows from positions.
            alone = torch.cat(
                [model(input_ids=row, use_cache=False).logits for row in (first, second)], 1
            )
            together = model(input_ids=packed, position_ids=positions, use_cache=False).logits
    except Exception as error:  # an architecture that takes no position ids
        return (
            f"sequence_packing_enabled: {label} cannot take packed rows "
            f"({type(error).__name__}: {library_message(error, 200)}). Turn packing off."
        )
    finally:
        model.train(was_training)
    difference = float((alone - together).abs().max())
    if difference > 1e-3 * max(1.0, float(alone.abs().max())):
        return (
            f"sequence_packing_enabled: the attention of {label} does not keep packed rows apart "
            f"(packed and separate logits differ by {difference:.2g}), so rows would see each "
            "other. Turn packing off for this model."
        )
    return None


def load_tokenizer(folder: str) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


def _model(spec: TrainSpec, params: Hyperparameters, device: Device) -> Any:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(spec.base, local_files_only=True)
    for name, value in (
        ("hidden_dropout", params.sft.hidden_dropout),
        ("attention_dropout", params.sft.attention_dropout),
    ):
        if value is not None and hasattr(config, name):
            setattr(config, name, value)
    dtype = torch.float32
    if device.is_gpu and precision_flags(params.precision, device)["bf16"]:
        dtype = torch.bfloat16
    model = AutoModelForCausalLM.from_pretrained(
        spec.base, config=config, local_files_only=True, dtype=dtype
    )
    model.config.use_cache = False
    if params.sequence_packing_enabled:
        problem = packing_problem(model, f"this {model.config.model_type} model")
        if problem:
            raise TrainingFailed("invalid_parameters", problem)
    if not params.uses_lora:
        return model
    from peft import LoraConfig, get_peft_model

    from jobs.domain.base_models import lora_targets

    targets = (
        list(params.lora.target_modules)
        if params.lora.target_modules
        else lora_targets(model.config.model_type)
    )
    lora = LoraConfig(
        r=params.lora.adapter_dim,
        lora_alpha=params.lora.alpha,
        lora_dropout=params.lora.adapter_dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
    )
    try:
        return get_peft_model(model, lora)
    except ValueError as error:  # peft names the target modules it could not find
        raise TrainingFailed(
            "invalid_parameters", f"lora.target_modules: {library_message(error)}"
        ) from None


def _arguments(
    spec: TrainSpec,
    params: Hyperparameters,
    device: Device,
    processes: int,
    resuming: bool,
    kind: type | None = None,
    **more: Any,
) -> Any:
    """``kind`` (TrainingArguments, or a TRL config built on it) with the job's options and
    ``more`` of the kind's own."""
    from transformers import TrainingArguments

    kind = kind or TrainingArguments
    cosine = params.optimizer.endswith("cosine_annealing")
    scheduler: dict[str, Any] = {"lr_scheduler_type": "constant_with_warmup"}
    if cosine:
        scheduler = {
            "lr_scheduler_type": "cosine_with_min_lr",
            "lr_scheduler_kwargs": {
                "min_lr": params.min_learning_rate
                if params.min_learning_rate is not None
                else 0.1 * params.learning_rate
            },
        }
    extra: dict[str, Any] = {}
    if spec.strategy == "fsdp" and device.is_gpu and processes > 1:
        extra["fsdp"] = "full_shard auto_wrap"
    options: dict[str, Any] = {
        **precision_flags(params.precision, device),
        **scheduler,
        **extra,
        **more,
    }
    arguments: dict[str, Any] = {
        "output_dir": spec.checkpoints,
        "num_train_epochs": params.epochs,
        "per_device_train_batch_size": max(1, params.micro_batch_size // processes),
        "per_device_eval_batch_size": max(1, params.micro_batch_size // processes),
        "gradient_accumulation_steps": params.gradient_accumulation_steps,
        "learning_rate": params.learning_rate,
        "weight_decay": params.weight_decay,
        "warmup_steps": params.warmup_steps,
        # NeMo's adam_* and adamw_* both run as AdamW: they differ only when weight_decay > 0,
        # and decoupled weight decay is what fine-tuning wants.
        "optim": "adamw_torch",
        "seed": params.seed,
        "data_seed": params.seed,
        "eval_strategy": "epoch",
        # The base model's validation loss at step 0: where the chart starts, what training beat.
        "eval_on_start": not resuming,
        "save_strategy": "epoch",
        "save_total_limit": 1,  # with load_best_model_at_end: the best and the latest stay
        "load_best_model_at_end": True,
        "metric_for_best_model": "eval_loss",
        "greater_is_better": False,
        "logging_strategy": "steps",
        "logging_steps": 1,  # every step's loss reaches the callback, which averages per setting
        "logging_nan_inf_filter": False,  # a NaN loss must be seen, not skipped
        "use_cpu": not device.is_gpu,
        "disable_tqdm": True,
        "report_to": "none",
        "remove_unused_columns": False,
        "dataloader_num_workers": 0,
        "ddp_backend": "gloo" if not device.is_gpu and processes > 1 else None,
        "log_level": "warning",
    }
    return kind(**{**arguments, **options})


def train(spec: TrainSpec, sink: Sink) -> TrainResult:
    """Fine-tune, checkpointing every epoch (resuming from the latest finished one), and write
    the best weights to ``spec.final``: ``adapter/`` (LoRA) and ``merged/`` (always)."""
    import time

    import torch
    from transformers import PrinterCallback, Trainer, set_seed

    from jobs.engine.training.data import Collator, PackedRows, Rows, line_offsets, split

    params = Hyperparameters.from_stored(spec.params)
    torch.set_num_threads(spec.threads)
    set_seed(params.seed)
    processes = int(os.environ.get("WORLD_SIZE", "1"))
    rank0 = int(os.environ.get("RANK", "0")) == 0
    device = detect(want=spec.want, threads=spec.threads)
    tokenizer = load_tokenizer(spec.base)
    model = _model(spec, params, device)
    context = getattr(model.config, "max_position_embeddings", None)
    max_length = params.max_length(context)

    train_path = Path(spec.train_file)
    offsets = line_offsets(train_path)
    if spec.validation_file:
        train_rows, val_path = offsets, Path(spec.validation_file)
        val_rows = line_offsets(val_path)
    else:
        train_rows, val_rows = split(offsets, spec.kept, spec.seed_of_split)
        val_path = train_path

    ended = training_ended(Path(spec.checkpoints))
    resumed = ended or latest_checkpoint(Path(spec.checkpoints))
    state = resumed[1] if resumed else None
    # Before training moves it on: the callback goes on writing into the same HubState.
    resumed_step = state.step if state else None
    callback = _callback_class()(sink, params, state, rank0)
    throughput = Throughput(params.sequence_packing_enabled, processes)
    resuming = resumed is not None
    if params.training_type == "dpo":
        from trl import DPOConfig, DPOTrainer

        from jobs.engine.training import dpo

        cache = Path(spec.final).parent / f"datasets-{os.environ.get('RANK', '0')}"
        trainer = _trainer_class(DPOTrainer)(
            model=model,
            ref_model=dpo.reference_model(spec.base, model, params),
            args=_arguments(
                spec, params, device, processes, resuming, DPOConfig,
                **dpo.config_options(params, max_length),
            ),
            train_dataset=dpo.dataset(train_path, train_rows, tokenizer, cache / "train"),
            eval_dataset=dpo.dataset(val_path, val_rows, tokenizer, cache / "validation"),
            processing_class=tokenizer,
            callbacks=[callback],
        )  # fmt: skip
        callback.measures = dpo.METRICS
        train_size: int = len(trainer.train_dataset)
        val_size: int = len(trainer.eval_dataset)
    elif params.training_type == "grpo":
        from trl import GRPOConfig, GRPOTrainer

        from jobs.engine.training import grpo

        cache = Path(spec.final).parent / f"datasets-{os.environ.get('RANK', '0')}"
        trainer = _trainer_class(GRPOTrainer)(
            model=model,
            reward_funcs=[grpo.reward_function(grpo.rule(params))],
            args=_arguments(
                spec, params, device, processes, resuming, GRPOConfig,
                **grpo.config_options(params),
            ),
            train_dataset=grpo.dataset(train_path, train_rows, cache / "train"),
            eval_dataset=grpo.dataset(val_path, val_rows, cache / "validation"),
            processing_class=tokenizer,
            callbacks=[callback],
        )  # fmt: skip
        callback.measures = grpo.METRICS
        # Its loss is a policy gradient's, not a likelihood: no divergence to read from it.
        callback.watch_divergence = False
        train_size, val_size = len(trainer.train_dataset), len(trainer.eval_dataset)
    else:
        rows_set = Rows(train_path, train_rows, tokenizer, max_length)
        train_set: Rows | PackedRows = rows_set
        # Validation stays unpacked: its loss is then comparable between packed and unpacked jobs.
        val_set = Rows(val_path, val_rows, tokenizer, max_length)
        if params.sequence_packing_enabled:
            train_set = PackedRows(rows_set, max_length, params.seed)
            per_epoch = math.ceil(len(train_set) / params.batch_size)
            if rank0:
                sink.progress(planned_steps=per_epoch * params.epochs)
                sink.log(
                    f"Sequence packing: {len(rows_set)} training rows ({train_set.tokens:,} "
                    f"tokens) in {len(train_set)} sequences of at most {max_length} tokens; "
                    f"{per_epoch} steps an epoch."
                )
        kind = _trainer_class(Trainer)
        if params.training_type == "distillation":
            from jobs.engine.training import distill

            assert spec.teacher is not None
            teacher = distill.teacher_model(spec.teacher, model.dtype)
            kind = distill.trainer_class(kind, teacher, params.distillation.temperature)
        trainer = kind(
            model=model,
            args=_arguments(spec, params, device, processes, resuming),
            train_dataset=train_set,
            eval_dataset=val_set,
            data_collator=Collator(tokenizer.pad_token_id),
            callbacks=[callback],
        )
        train_size, val_size = len(rows_set), len(val_set)
    trainer.remove_callback(PrinterCallback)
    trainer.throughput = callback.throughput = throughput
    if rank0 and ended is None:
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
        sink.log(
            f"Training on {device.label}"
            + (f" in {processes} processes ({spec.strategy})" if processes > 1 else "")
            + f": {params.training_type}, {params.finetuning_type}, {trainable:,} of {total:,} "
            f"parameters trainable; {train_size} training rows, {val_size} validation rows, "
            "max_seq_length "
            f"{max_length}; {params.epochs} epochs, batch_size {params.batch_size}"
            + (
                f" ({params.gradient_accumulation_steps} × {params.micro_batch_size})"
                if params.gradient_accumulation_steps > 1
                else ""
            )
            + f", learning_rate {params.learning_rate:g}."
        )
    started = time.monotonic()
    if ended is not None:  # an earlier attempt trained to the end: its best weights, no more
        trainer._load_from_checkpoint(str(ended[0]))
    else:
        trainer.train(resume_from_checkpoint=str(resumed[0]) if resumed else None)
    seconds = time.monotonic() - started
    final_state = callback.state
    if rank0:
        _write_final(trainer, tokenizer, params, Path(spec.final))
    return TrainResult(
        best_epoch=final_state.best_epoch,
        val_loss=final_state.best_val_loss,
        train_loss=final_state.best_train_loss,
        epochs_run=final_state.epoch,
        stopped_early=final_state.epoch < params.epochs,
        tokens_trained=0 if ended else throughput.count.real * processes,
        seconds=seconds,
        resumed_from=resumed_step,
        packing_efficiency=throughput.count.efficiency,
    )


def _write_final(trainer: Any, tokenizer: Any, params: Hyperparameters, final: Path) -> None:
    """The best weights (Trainer loaded them at the end): the LoRA adapter in peft's format,
    and the merged model as a Hugging Face folder, both with the tokenizer."""
    import torch

    model = trainer.model
    if hasattr(model, "module"):  # unwrapped from DistributedDataParallel
        model = model.module
    if final.exists():
        shutil.rmtree(final)
    final.mkdir(parents=True)
    if params.uses_lora:
        model.save_pretrained(final / "adapter")
        tokenizer.save_pretrained(final / "adapter")
        model = model.merge_and_unload()
    model = model.to(torch.float32) if model.dtype != torch.float32 else model
    model.config.use_cache = True
    model.save_pretrained(final / "merged")
    tokenizer.save_pretrained(final / "merged")
