"""Customization jobs: fine-tune a small model on a JSONL dataset with PyTorch on the CPU.

Train loss is recorded every ``log_every_n_steps`` steps (the mean over those steps), validation
loss after every epoch. The best epoch (lowest validation loss) is kept, exported to ONNX as the
target model, and saved as a checkpoint that another customization job can start from.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from django.conf import settings

from jobs.domain.formulas import training_split
from jobs.domain.status import FailureType
from jobs.engine.runners import charlm
from jobs.engine.runners.base import JobFailure, RunContext, Runner, Target, register
from jobs.models import Dataset, Job, ModelFormat

MIN_IMPROVEMENT = 1e-4  # a validation loss must beat the best by this much to count as better


def read_records(dataset: Dataset, role: str) -> list[tuple[str, str]]:
    """(prompt, completion) pairs; a bad line fails the job naming the dataset and the line."""
    label = f"{role} {dataset.public_id} ({dataset.name})"
    records: list[tuple[str, str]] = []
    try:
        handle = dataset.file.open("rb")
    except FileNotFoundError:
        raise JobFailure(
            FailureType.INTERNAL_ERROR, f"The stored file of {label} is missing."
        ) from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
                prompt, completion = record["prompt"], record["completion"]
                if not isinstance(prompt, str) or not isinstance(completion, str):
                    raise TypeError
            except (ValueError, KeyError, TypeError):
                raise JobFailure(
                    FailureType.INVALID_DATASET,
                    f"{label}, line {number}: expected a JSON object with string prompt and completion.",
                ) from None
            records.append((prompt, completion))
    if not records:
        raise JobFailure(FailureType.INVALID_DATASET, f"{label} has no records.")
    return records


@dataclass
class Best:
    epoch: int | None = None
    val_loss: float = math.inf
    train_loss: float | None = None
    state: dict[str, torch.Tensor] | None = None


def _diverged(what: str, step: int, epoch: int, learning_rate: float) -> JobFailure:
    return JobFailure(
        FailureType.TRAINING_DIVERGED,
        f"{what} became NaN or infinite at step {step} (epoch {epoch}). Lower learning_rate "
        f"(now {learning_rate:g}) and resubmit.",
    )


@register
class CustomizationRunner(Runner):
    kind = "customization"

    def run(self, ctx: RunContext) -> Target:
        job, reporter = ctx.job, ctx.reporter
        params = job.params
        torch.set_num_threads(settings.HUB_TORCH_THREADS)
        torch.manual_seed(job.pk)
        shuffler = random.Random(job.pk)

        assert job.dataset is not None
        records = read_records(job.dataset, "dataset")
        if job.validation_dataset is not None:
            train, validation = records, read_records(job.validation_dataset, "validation dataset")
        else:
            shuffler.shuffle(records)
            kept, _ = training_split(len(records), has_validation_dataset=False)
            train, validation = records[:kept], records[kept:]
            if not validation:
                raise JobFailure(
                    FailureType.INVALID_DATASET,
                    f"Dataset {job.dataset.public_id} has {len(records)} record(s): too few to hold "
                    "10% out for validation. Add records or give a validation dataset.",
                )
        reporter.progress(training_samples=len(records), epochs_completed=0, steps_completed=0)
        model = self._base_model(job)
        reporter.log(
            f"Training {job.builtin_base_model or 'a checkpoint'} on {len(train)} records, validating on "
            f"{len(validation)}; {params.epochs} epochs of {job.steps_per_epoch} steps, batch_size "
            f"{params.batch_size}, learning_rate {params.learning_rate:g}."
        )
        encoded_train = [charlm.encode(p, c) for p, c in train]
        encoded_val = [charlm.encode(p, c) for p, c in validation]
        optimizer = torch.optim.Adam(model.parameters(), lr=params.learning_rate)
        best, step, since_best, window = Best(), 0, 0, []
        epoch = 0
        for epoch in range(1, params.epochs + 1):
            model.train()
            order = list(range(len(encoded_train)))
            shuffler.shuffle(order)
            epoch_losses: list[float] = []
            for start in range(0, len(order), params.batch_size):
                reporter.check_stop()
                tokens, targets = charlm.batch(
                    [encoded_train[i] for i in order[start : start + params.batch_size]]
                )
                optimizer.zero_grad()
                loss = charlm.loss_of(model, tokens, targets)
                value = float(loss.item())
                step += 1
                if not math.isfinite(value):
                    reporter.metric("train_loss", step, value)
                    raise _diverged("The training loss", step, epoch, params.learning_rate)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                epoch_losses.append(value)
                window.append(value)
                if step % params.log_every_n_steps == 0:
                    reporter.metric("train_loss", step, float(np.mean(window)))
                    window = []
                reporter.progress(steps_completed=step)
            val_loss = self._evaluate(model, encoded_val, params.batch_size)
            reporter.metric("val_loss", step, val_loss)
            if not math.isfinite(val_loss):
                raise _diverged("The validation loss", step, epoch, params.learning_rate)
            train_loss = float(np.mean(epoch_losses))
            if val_loss < best.val_loss - MIN_IMPROVEMENT:
                best = Best(
                    epoch,
                    val_loss,
                    train_loss,
                    {k: v.clone() for k, v in model.state_dict().items()},
                )
                since_best = 0
                reporter.progress(
                    epochs_completed=epoch,
                    best_epoch=epoch,
                    train_loss=train_loss,
                    val_loss=val_loss,
                )
            else:
                since_best += 1
                reporter.progress(epochs_completed=epoch)
            reporter.log(
                f"Epoch {epoch}/{params.epochs}: train_loss {train_loss:.4f}, val_loss {val_loss:.4f}"
                + (" (best so far)" if best.epoch == epoch else "")
            )
            if params.early_stopping_patience and since_best >= params.early_stopping_patience:
                reporter.note(
                    f"Early stopping after epoch {epoch} of {params.epochs}: val_loss has not improved "
                    f"for {since_best} epochs (best {best.val_loss:.4f} at epoch {best.epoch})."
                )
                break

        assert best.state is not None
        assert best.epoch is not None
        model.load_state_dict(best.state)
        model.eval()
        for prompt, completion in validation[:3]:
            reporter.log(
                f"Sample: {prompt!r} → {charlm.complete(model, prompt)!r} (expected {completion!r})"
            )
        checkpoint = ctx.workdir / "checkpoint.pt"
        charlm.save_checkpoint(
            model, checkpoint, {"best_epoch": best.epoch, "val_loss": best.val_loss}
        )
        reporter.produced_model(
            checkpoint,
            f"{job.name} (checkpoint)",
            ModelFormat.TORCH,
            {"architecture": "tiny-char-lm", "best_epoch": best.epoch, "val_loss": best.val_loss},
        )
        target = ctx.workdir / "model.onnx"
        probe = charlm.export_onnx(model, target)
        metadata: dict[str, Any] = {
            "architecture": "tiny-char-lm",
            "inputs": ["tokens"],
            "outputs": ["logits"],
            "vocabulary": "token = byte 0-255; 256 separates prompt and completion; 257 ends it",
            "best_epoch": best.epoch,
            "val_loss": best.val_loss,
        }
        message = (
            f"Training finished after {epoch} of {params.epochs} epochs; best epoch {best.epoch} "
            f"(val_loss {best.val_loss:.4f})."
        )
        return Target(
            target,
            f"{job.name}.onnx",
            ModelFormat.ONNX,
            metadata,
            message,
            {"model": model, "probe": probe},
        )

    def verify(self, ctx: RunContext, target: Target, stored: Path) -> str:
        import onnxruntime as ort

        model, probe = target.extra["model"], target.extra["probe"]
        with torch.no_grad():
            expected = model(probe).numpy()
        session = ort.InferenceSession(str(stored), providers=["CPUExecutionProvider"])
        (actual,) = session.run(["logits"], {"tokens": probe.numpy()})
        difference = float(np.max(np.abs(actual - expected)))
        if actual.shape != expected.shape or difference > 1e-3:
            raise JobFailure(
                FailureType.INTERNAL_ERROR,
                f"The exported ONNX model does not reproduce the checkpoint (largest difference {difference:.2e}).",
            )
        return (
            "Target model verified with onnxruntime: its logits match the best checkpoint's "
            f"(largest difference {difference:.1e})."
        )

    @staticmethod
    def _base_model(job: Job) -> charlm.CharLM:
        if job.builtin_base_model:
            return charlm.CharLM(charlm.CharLMConfig())
        base = job.job_inputs.select_related("model").get().model
        try:
            return charlm.load_checkpoint(Path(base.file.path))
        except (ValueError, FileNotFoundError) as error:
            raise JobFailure(
                FailureType.INVALID_MODEL,
                f"Model {base.public_id} ({base.name}) cannot be customized: {error}.",
            ) from None

    @staticmethod
    @torch.no_grad()
    def _evaluate(
        model: charlm.CharLM, records: list[tuple[list[int], list[int]]], batch_size: int
    ) -> float:
        """Mean loss per completion byte over the whole validation set."""
        model.eval()
        total, counted = 0.0, 0
        for start in range(0, len(records), batch_size):
            tokens, targets = charlm.batch(records[start : start + batch_size])
            n = int((targets != charlm.IGNORE).sum())
            total += float(charlm.loss_of(model, tokens, targets)) * n
            counted += n
        return total / counted
