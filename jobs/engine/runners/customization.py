"""Customization jobs: fine-tune a Hugging Face causal LM on a JSONL dataset, with LoRA or all
weights, on transformers' Trainer (jobs.engine.training.sft), on a GPU when the worker has one.

The run: unpack the base model; complete a few validation prompts with it; train, with a
checkpoint every epoch in the job's checkpoint folder on the media storage (a requeued job
resumes from the newest); keep the best epoch; complete the same prompts with the trained
model; export the merged model to ONNX and check it against PyTorch with onnxruntime. The
target model is the merged Hugging Face folder (zip); the results hold the LoRA adapter, the
ONNX file, the metrics and the training log.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError

from jobs.domain import base_models, files, formulas, hf_models, sft_data
from jobs.domain.redact import library_message
from jobs.domain.status import FailureType
from jobs.engine import checkpoints
from jobs.engine.reporter import Reporter
from jobs.engine.runners.base import JobFailure, RunContext, Runner, Space, Target, register
from jobs.engine.scratch import local_path
from jobs.engine.training import outputs
from jobs.engine.training.device import detect
from jobs.engine.training.launch import train_in_processes
from jobs.engine.training.sft import (
    HUB_STATE,
    TrainingFailed,
    TrainSpec,
    latest_checkpoint,
    train,
    training_ended,
    write_hub_state,
)
from jobs.models import (
    BASE_POSITION,
    TEACHER_POSITION,
    ArtifactKind,
    Dataset,
    Job,
    ModelFormat,
)


def memory_available() -> int | None:
    """Bytes this machine has free for a new job (Linux's MemAvailable), None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


@dataclass
class ResumePoint:
    step: int
    epoch: int
    details: dict[str, Any]
    training_ended: bool = False  # the lost attempt had trained to the end; none is left to do

    @property
    def words(self) -> str:
        """Where the next attempt goes on from, for the timeline."""
        if self.training_ended:
            best = self.details.get("best_epoch")
            return (
                f"the end of training (epoch {self.epoch}, step {self.step}; the weights of "
                f"its best epoch {best} are kept and nothing is trained again)"
            )
        return f"the checkpoint of epoch {self.epoch} (step {self.step})"


class ReporterSink:
    """What training reports, to the job's progress reporter; a checkpoint is marked finished
    only once the reports before it are stored."""

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter

    def progress(self, **fields: Any) -> None:
        self.reporter.progress(**fields)

    def metric(self, key: str, step: int, value: float) -> None:
        self.reporter.metric(key, step, value)

    def log(self, line: str) -> None:
        self.reporter.log(line)

    def note(self, message: str) -> None:
        self.reporter.note(message)

    def check_stop(self) -> None:
        self.reporter.check_stop()

    def checkpoint_done(self, folder: str, state: dict[str, Any]) -> None:
        self.reporter.flush()
        write_hub_state(folder, state)
        if Path(folder, HUB_STATE).is_file():  # not rotated away meanwhile
            checkpoints.push(self.reporter.job, Path(folder))


@register
class CustomizationRunner(Runner):
    kind = "customization"

    def resume_point(self, job: Job) -> ResumePoint | None:
        with checkpoints.states(job) as folder:
            ended = training_ended(folder)
            found = ended or latest_checkpoint(folder)
        if found is None:
            return None
        _, state = found
        details: dict[str, Any] = {
            "epochs_completed": state.epoch,
            "steps_completed": state.step,
            "best_epoch": state.best_epoch or None,
            "train_loss": state.best_train_loss if state.best_epoch else None,
            "val_loss": state.best_val_loss if state.best_epoch else None,
        }
        return ResumePoint(state.step, state.epoch, details, training_ended=ended is not None)

    def space_needed(self, job: Job) -> Space:
        """Measured on runs of this runner: a checkpoint of all weights holds the weights and
        Adam's two moments (3× the model), a LoRA checkpoint a small fraction; up to three are on
        disk at once (the best, the latest, the one being written). The work folder holds the
        unpacked base, the merged model, its zip and its ONNX export; the media storage keeps
        the merged zip and the ONNX file."""
        if job.builtin_base_model:
            try:
                folder = base_models.server_model(job.builtin_base_model).folder
            except Exception:
                return Space(media=0, work=0)  # run() says the model is gone
            model = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        else:
            first = job.input_at(BASE_POSITION)
            model = first.size if first else 0
        checkpoint = model // 4 if job.params.uses_lora else model * 3
        return Space(media=3 * checkpoint + 2 * model, work=5 * model)

    def finished(self, job: Job) -> None:
        checkpoints.forget(job)

    def run(self, ctx: RunContext) -> Target:
        job, reporter = ctx.job, ctx.reporter
        params = job.params
        threads = settings.HUB_TORCH_THREADS
        device = detect(want=job.hardware, threads=threads)
        if job.hardware == "gpu" and not device.is_gpu:
            raise JobFailure(
                FailureType.INTERNAL_ERROR,
                "This job asks for a GPU, but the worker that took it has none (a worker without "
                "a GPU is consuming the GPU queue). Resubmit it once a GPU worker serves it.",
            )
        reporter.progress(ran_on=device.label)
        self._check_memory(job)
        base = self._base_folder(ctx)
        assert job.dataset is not None
        train_file = local_path(job.dataset.file)
        validation_file = (
            local_path(job.validation_dataset.file) if job.validation_dataset else None
        )
        kept, _ = formulas.training_split(
            job.dataset.num_records, has_validation_dataset=validation_file is not None
        )
        reporter.progress(training_samples=job.dataset.num_records)
        for role, dataset in (
            ("dataset", job.dataset),
            ("validation dataset", job.validation_dataset),
        ):
            if dataset is not None:
                _check_stored(dataset, role)

        import torch

        torch.set_num_threads(threads)
        tokenizer = _tokenizer(base)
        self._check_fit(ctx, tokenizer)
        teacher = (
            self._teacher_folder(ctx, tokenizer) if params.training_type == "distillation" else None
        )
        prompts = outputs.sample_prompts(
            _validation_records(train_file, validation_file, kept, params.seed), tokenizer
        )
        before = outputs.complete(_load(base), tokenizer, prompts)
        samples = [
            {"prompt": p["shown"], "expected": p["expected"], "before": b, "after": None}
            for p, b in zip(prompts, before, strict=True)
        ]
        reporter.progress(samples=samples)

        checkpoints_here = checkpoints.restore(job)  # another host's attempt's, if any
        ended = training_ended(checkpoints_here)
        resumed = latest_checkpoint(checkpoints_here)
        if ended is not None:
            reporter.note(
                f"Training ended in an earlier attempt (epoch {ended[1].epoch} of {params.epochs}"
                f"); going on with the weights of its best epoch {ended[1].best_epoch}, nothing "
                "is trained again."
            )
        elif resumed is not None:
            reporter.note(
                f"Resuming from the checkpoint of epoch {resumed[1].epoch} (step "
                f"{resumed[1].step}) with its optimizer and scheduler state, not from step 0."
            )
        spec = TrainSpec(
            base=str(base),
            train_file=str(train_file),
            validation_file=str(validation_file) if validation_file else None,
            kept=kept,
            params=job.hyperparameters,
            checkpoints=str(checkpoints_here),
            final=str(ctx.workdir / "final"),
            want=job.hardware,
            threads=threads,
            strategy=settings.HUB_TRAIN_STRATEGY,
            seed_of_split=params.seed,
            teacher=str(teacher) if teacher else None,
        )
        processes = settings.HUB_TRAIN_PROCESSES or max(device.count, 1)
        try:
            sink = ReporterSink(reporter)
            result = (
                train_in_processes(spec, processes, ctx.workdir, sink)
                if processes > 1
                else train(spec, sink)
            )
        except TrainingFailed as failure:
            raise JobFailure(FailureType(failure.kind), failure.message) from None
        checkpoints.push(job)  # the end-of-training mark: a later attempt trains nothing again
        if result.tokens_trained and result.seconds:
            rate = result.tokens_trained / result.seconds
            efficiency = result.packing_efficiency
            reporter.log(
                f"Trained {result.tokens_trained:,} tokens in {result.seconds:.1f} s "
                f"({rate:,.0f} tokens/s"
                + (f"; {efficiency:.1%} of the tokens computed were rows'" if efficiency else "")
                + ")."
            )
            reporter.progress(
                summary={
                    "sequence_packing": params.sequence_packing_enabled,
                    "packing_efficiency": round(efficiency, 4) if efficiency else None,
                    "tokens_per_second": round(rate, 1),
                }
            )

        final = ctx.workdir / "final"
        merged_folder = final / "merged"
        merged = _load(merged_folder)
        after = outputs.complete(merged, tokenizer, prompts)
        for sample, text in zip(samples, after, strict=True):
            sample["after"] = text
            reporter.log(
                f"Sample: {sample['prompt']!r} → before {sample['before']!r}, after {text!r} "
                f"(expected {sample['expected']!r})"
            )
        reporter.progress(samples=samples)

        if params.uses_lora:
            adapter = hf_models.normalised_zip(final / "adapter", ctx.workdir / "adapter.zip")
            reporter.artifact(ArtifactKind.ADAPTER, "adapter.zip", adapter)
        onnx_message = self._export_onnx(ctx, merged)

        metadata = hf_models.describe(merged_folder, "the merged model")
        metadata.update(
            {
                "base_model": job.builtin_base_model or self._uploaded_base(job),
                "finetuning_type": params.finetuning_type,
                "best_epoch": result.best_epoch,
                "val_loss": result.val_loss,
            }
        )
        target = hf_models.normalised_zip(merged_folder, ctx.workdir / "merged.zip")
        message = (
            f"Training finished after {result.epochs_run} of {params.epochs} epochs; best epoch "
            f"{result.best_epoch} (val_loss {result.val_loss:.4f})."
        )
        return Target(
            target,
            f"{job.name} (merged)",
            ModelFormat.HF,
            metadata,
            message,
            {"model": merged, "onnx": onnx_message, "vocab": merged.config.vocab_size},
        )

    def verify(self, ctx: RunContext, target: Target, stored: Path) -> str:
        """The stored zip is what people download: it must load with transformers and give the
        trained model's logits."""
        import torch

        folder = hf_models.unpack_stored(stored, ctx.workdir / "verify")
        loaded = _load(folder)
        probe = torch.randint(
            0, target.extra["vocab"], (2, 12), generator=torch.Generator().manual_seed(1)
        )
        with torch.no_grad():
            expected = target.extra["model"](input_ids=probe).logits
            actual = loaded(input_ids=probe).logits
        difference = float((expected - actual).abs().max())
        if difference > 1e-4:
            raise JobFailure(
                FailureType.INTERNAL_ERROR,
                "The stored merged model does not reproduce the trained one "
                f"(largest logit difference {difference:.2e}).",
            )
        return (
            "Merged model verified: the stored folder loads with AutoModelForCausalLM and "
            f"reproduces the trained model's logits (largest difference {difference:.1e}). "
            + target.extra["onnx"]
        )

    # Helpers

    def _base_folder(self, ctx: RunContext) -> Path:
        job = ctx.job
        if job.builtin_base_model:
            try:
                return base_models.server_model(job.builtin_base_model).folder
            except Exception:
                raise JobFailure(
                    FailureType.INVALID_MODEL,
                    f"The base model {job.builtin_base_model!r} is no longer offered by this hub.",
                ) from None
        base = job.input_at(BASE_POSITION)
        assert base is not None  # an offered base is named in builtin_base_model
        try:
            return hf_models.unpack_stored(local_path(base.file), ctx.workdir / "base")
        except ValidationError as error:
            raise JobFailure(
                FailureType.INVALID_MODEL,
                f"Model {base.public_id} ({base.name}) is refused: {' '.join(error.messages)}",
            ) from None
        except (OSError, zipfile.BadZipFile) as error:
            raise JobFailure(
                FailureType.INVALID_MODEL,
                f"Model {base.public_id} ({base.name}) cannot be read: {type(error).__name__}.",
            ) from None

    def _teacher_folder(self, ctx: RunContext, tokenizer: Any) -> Path:
        """The distillation teacher's folder, once its tokenizer is known to be the student's
        (the same tokens with the same ids: their distributions are compared token by token)."""
        job = ctx.job
        name = job.params.distillation.teacher or ""
        model = job.input_at(TEACHER_POSITION)
        if model is None:
            try:
                folder, label = base_models.server_model(name).folder, name
            except ValidationError:
                raise JobFailure(
                    FailureType.INVALID_PARAMETERS,
                    f"The teacher {name!r} is no longer offered by this hub.",
                ) from None
        else:
            label = f"{model.name} ({model.public_id})"
            try:
                folder = hf_models.unpack_stored(local_path(model.file), ctx.workdir / "teacher")
            except (ValidationError, OSError, zipfile.BadZipFile) as error:
                raise JobFailure(
                    FailureType.INVALID_MODEL,
                    f"The teacher {label} cannot be read: {type(error).__name__}.",
                ) from None
        theirs = _tokenizer(folder)
        if theirs.get_vocab() != tokenizer.get_vocab():
            student = job.builtin_base_model or self._uploaded_base(job)
            raise JobFailure(
                FailureType.INVALID_PARAMETERS,
                f"The teacher {label}'s tokenizer ({len(theirs):,} tokens) is not the student "
                f"{student}'s ({len(tokenizer):,} tokens): distillation compares their token "
                "distributions, so both must use the same tokenizer.",
            )
        ctx.reporter.log(f"Distilling from the teacher {label}.")
        return folder

    @staticmethod
    def _check_memory(job: Job) -> None:
        """Before anything is loaded: the memory training needs, counted from the parameters
        the weights really hold (checked against the config at upload), against what this
        machine has free. fp32 weights, and for all weights their gradients and Adam's two
        moments too; activations and LoRA's own weights are small beside them on these sizes."""
        parameters = int(_metadata(job, BASE_POSITION).get("parameters") or 0)
        params = job.params
        needed = parameters * 4 * (1 if params.uses_lora else 4)
        if params.training_type == "dpo" and not params.uses_lora:
            needed += parameters * 4  # the frozen reference, a second copy of the weights
        teacher = ""
        if params.training_type == "distillation":  # the teacher's weights, for inference only
            taught = int(_metadata(job, TEACHER_POSITION).get("parameters") or 0)
            needed += taught * 4
            teacher = f" with its teacher ({taught:,} parameters)"
        available = memory_available()
        if available is not None and needed > available:
            raise JobFailure(
                FailureType.INVALID_MODEL,
                f"Training this model ({parameters:,} parameters, {params.training_type} "
                f"{params.finetuning_type}){teacher} needs about {needed / 1024**3:.1f} GiB of "
                f"memory; the worker that took it has {available / 1024**3:.1f} GiB free. Use "
                "LoRA, a smaller model"
                + (" or teacher" if teacher else "")
                + ", or a worker with more memory.",
            )

    @staticmethod
    def _check_fit(ctx: RunContext, tokenizer: Any) -> None:
        """The rows fit the model, tokenized with its own tokenizer (the check a submit would
        make, made here because it renders every row): a refusal in the submit's words."""
        job, params = ctx.job, ctx.job.params
        ctx.reporter.log("Checking the dataset against the model's tokenizer.")
        datasets = [
            sft_data.FitInput(
                field,
                f"Dataset {d.public_id} ({d.name})",
                d.public_id,
                d.format,
                partial(_local_rows, d),
            )
            for field, d in (
                ("dataset", job.dataset),
                ("validation_dataset", job.validation_dataset),
            )
            if d is not None
        ]
        first = job.input_at(BASE_POSITION)
        uploaded = f"{first.name} ({first.public_id})" if first else "its model"
        model_label = job.builtin_base_model or uploaded
        metadata = _metadata(job, BASE_POSITION)
        limit = params.max_length(metadata.get("context_length"))
        problem = sft_data.fit_problem(
            tokenizer, model_label, datasets, limit if params.overlong_rows == "refuse" else None
        )
        if problem is not None:
            raise JobFailure(FailureType.INVALID_DATASET, problem[1])

    @staticmethod
    def _uploaded_base(job: Job) -> str:
        first = job.input_at(BASE_POSITION)
        return first.public_id if first else ""

    def _export_onnx(self, ctx: RunContext, merged: Any) -> str:
        target = ctx.workdir / "model.onnx"
        try:
            check = outputs.export_onnx(merged, target, merged.config.vocab_size)
        except Exception as error:  # the exporter fails in many ways on many architectures
            ctx.reporter.note(
                "No ONNX export: this architecture does not export with torch.onnx "
                f"({type(error).__name__}: {library_message(error, 200)}). "
                "The merged model and adapter are complete."
            )
            return "No ONNX export for this architecture."
        if outputs.external_data(merged):  # the weights lie beside the graph: one zip of both
            bundle = ctx.workdir / "onnx"
            bundle.mkdir()
            for path in ctx.workdir.glob("model.onnx*"):
                path.rename(bundle / path.name)
            ctx.reporter.artifact(
                ArtifactKind.ONNX,
                "model.onnx.zip",
                hf_models.normalised_zip(bundle, ctx.workdir / "onnx.zip"),
            )
        else:
            ctx.reporter.artifact(ArtifactKind.ONNX, "model.onnx", target)
        return (
            "ONNX export checked with onnxruntime against PyTorch's logits (largest difference "
            f"{check.largest_difference:.1e})."
        )


def _metadata(job: Job, position: int) -> dict[str, Any]:
    """What the upload check recorded of the job's base model (BASE_POSITION) or teacher
    (TEACHER_POSITION): an input model's, or the offered model's of that name."""
    model = job.input_at(position)
    if model is not None:
        return model.metadata
    name = job.builtin_base_model if position == BASE_POSITION else job.params.distillation.teacher
    try:
        return base_models.server_model(name or "").metadata
    except ValidationError:
        return {}  # no longer offered: run() says so


def _check_stored(dataset: Dataset, role: str) -> None:
    """The stored file is still what was checked at upload (a line per row, each valid)."""
    label = f"{role} {dataset.public_id} ({dataset.name})"
    try:
        with local_path(dataset.file).open("rb") as handle:
            files.check_jsonl_dataset(handle, label)
    except FileNotFoundError:
        raise JobFailure(
            FailureType.INTERNAL_ERROR, f"The stored file of {label} is missing."
        ) from None
    except ValidationError as error:
        raise JobFailure(FailureType.INVALID_DATASET, error.messages[0]) from None


def _tokenizer(folder: Path) -> Any:
    from jobs.engine.training.sft import load_tokenizer

    return load_tokenizer(str(folder))


def _load(folder: Path) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
    return model.eval()


def _validation_records(
    train_file: Path, validation_file: Path | None, kept: int, seed: int
) -> list[dict[str, Any]]:
    """The first validation rows, as training will hold them out."""
    import json

    from jobs.engine.training.data import line_offsets, split

    if validation_file is not None:
        path, offsets = validation_file, line_offsets(validation_file)[: outputs.SAMPLE_ROWS]
    else:
        path = train_file
        offsets = split(line_offsets(train_file), kept, seed)[1][: outputs.SAMPLE_ROWS]
    rows = []
    with path.open("rb") as handle:
        for offset in offsets:
            handle.seek(offset)
            rows.append(json.loads(handle.readline()))
    return rows


def _local_rows(dataset: Dataset) -> Any:
    """The dataset's rows, opened from this worker's copy (the scratch cache in object storage)."""
    return local_path(dataset.file).open("rb")
