"""An upload the qai-hub client is making: it asks for the model or dataset first, gets an id,
sends the file to signed addresses (in parts for a model), then says it is complete. Until then
no model or dataset exists; at completion the assembled file goes through the same checks,
limits and quotas as every upload (jobs.services.assets), and the id the client keeps is that of
the model or dataset made."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from jobs.domain.ids import new_public_id


def transfer_public_id() -> str:
    return new_public_id("u")


class TransferKind(models.TextChoices):
    MODEL = "model", "Model"
    DATASET = "dataset", "Dataset"


class Transfer(models.Model):
    public_id = models.CharField(
        max_length=12, unique=True, default=transfer_public_id, editable=False
    )
    # The secret the part addresses are signed for (seed 000's ``upload_id``): a new one for each
    # time the client asks for addresses, so older addresses stop working.
    upload_id = models.CharField(max_length=40, blank=True)
    # In object storage: the bucket's own multipart upload the part addresses send to (parts go
    # straight to the bucket, never through the hub).
    storage_upload_id = models.CharField(max_length=1024, blank=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=8, choices=TransferKind.choices)
    name = models.CharField(max_length=200)
    # The file's own name, where the hub's client says it (its suffix says what the file is).
    filename = models.CharField(max_length=200, blank=True)
    # A model the client zipped (a folder: an ONNX model with its data files).
    is_directory = models.BooleanField(default=False)
    size = models.PositiveBigIntegerField(null=True, blank=True, help_text="Declared bytes.")
    part_size = models.PositiveBigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # What completing it made: the model's or dataset's public id (the same again if the client
    # says "complete" twice).
    made = models.CharField(max_length=12, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["owner", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.kind} upload {self.public_id}"
