"""What jobs consume and produce: models, datasets and artifacts, each a stored file with its
size and sha256 so a download can be verified end to end."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings
from django.db import models

from jobs.domain.ids import dataset_public_id, model_public_id

if TYPE_CHECKING:
    from jobs.models.job import Job


def _model_path(instance: MLModel, filename: str) -> str:
    return f"models/{instance.public_id}/{filename}"


def _dataset_path(instance: Dataset, filename: str) -> str:
    return f"datasets/{instance.public_id}/{filename}"


def _artifact_path(instance: Artifact, filename: str) -> str:
    return f"artifacts/{instance.job.public_id}/{filename}"


class ModelFormat(models.TextChoices):
    ONNX = "onnx", "ONNX"
    TORCH = "torch", "PyTorch checkpoint (retired tiny-char-lm)"
    HF = "hf", "Hugging Face model"


class MLModel(models.Model):
    """A model file: uploaded by a person, or produced by a job as its target model."""

    public_id = models.CharField(
        max_length=12, unique=True, default=model_public_id, editable=False
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="models"
    )
    name = models.CharField(max_length=200)
    format = models.CharField(max_length=16, choices=ModelFormat.choices)
    file = models.FileField(upload_to=_model_path, max_length=300)
    size = models.PositiveBigIntegerField(help_text="Bytes.")
    sha256 = models.CharField(max_length=64)
    # Inputs, outputs and opset of an ONNX graph; architecture of a checkpoint.
    metadata = models.JSONField(default=dict, blank=True)
    produced_by: models.ForeignKey[Job | None, Job | None] = models.ForeignKey(
        "jobs.Job",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="produced_models",
        help_text="The job whose target model this is; empty for an upload.",
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # Deleted by its owner: the file is gone and nobody reads it any more, but the row stays
    # while finished jobs name it as their input (their pages say "deleted").
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "model"
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["owner", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.public_id})"


class Dataset(models.Model):
    """A JSONL file of prompt/completion records or of chat conversations (jobs.domain.sft_data),
    or named tensors in seed 000's h5 layout or a .npz (inference inputs and outputs, calibration
    data; jobs.domain.tensor_data)."""

    public_id = models.CharField(
        max_length=12, unique=True, default=dataset_public_id, editable=False
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="datasets"
    )
    name = models.CharField(max_length=200)
    file = models.FileField(upload_to=_dataset_path, max_length=300)
    size = models.PositiveBigIntegerField(help_text="Bytes.")
    sha256 = models.CharField(max_length=64)
    num_records = models.PositiveIntegerField()
    format = models.CharField(
        max_length=24,
        choices=[
            ("prompt_completion", "Prompt and completion"),
            ("chat", "Chat messages"),
            ("preference", "Preference pairs (prompt, chosen, rejected)"),
            ("prompt_answer", "Prompts with answers"),
            ("tensors", "Named tensors (h5 or npz)"),
        ],
        default="prompt_completion",
    )
    # Of a tensors dataset (jobs/domain/tensor_data.py): the file's format and each entry's
    # name, dtype and shapes, in order.
    metadata = models.JSONField(default=dict, blank=True)
    # The inference job whose output data it is (None for an upload).
    produced_by = models.ForeignKey(
        "jobs.Job",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="produced_datasets",
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    deleted_at = models.DateTimeField(null=True, blank=True)  # as MLModel.deleted_at

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["owner", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.public_id})"


class ArtifactKind(models.TextChoices):
    TRAINING_LOG = "training_log", "Training log"
    METRICS_CSV = "metrics_csv", "Metrics (CSV)"
    MANIFEST = "manifest", "Link manifest"
    CHECKPOINT = "checkpoint", "Checkpoint"
    ADAPTER = "adapter", "LoRA adapter"
    ONNX = "onnx", "ONNX export"
    PROFILE = "profile", "Profile"
    OUTPUT_DATA = "output_data", "Output data"
    OTHER = "other", "Other"


class Artifact(models.Model):
    """A result file of a job, bundled with the target model by download_results."""

    job = models.ForeignKey("jobs.Job", on_delete=models.CASCADE, related_name="artifacts")
    kind = models.CharField(max_length=32, choices=ArtifactKind.choices)
    name = models.CharField(max_length=200)
    file = models.FileField(upload_to=_artifact_path, max_length=300)
    size = models.PositiveBigIntegerField(help_text="Bytes.")
    sha256 = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["job", "name"]
        constraints = [
            models.UniqueConstraint(fields=["job", "name"], name="artifact_unique_name_per_job")
        ]

    def __str__(self) -> str:
        return self.name
