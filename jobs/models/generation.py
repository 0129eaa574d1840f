"""A prompt someone tried on a language model ("Try it"), and the answer a generation worker
streamed for it. The row is the record: the worker writes the answer into it as it grows, and
every reader of the stream (the page, the API's events, the client) reads it from here."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from jobs.domain.ids import generation_public_id


class GenerationStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class Generation(models.Model):
    public_id = models.CharField(
        max_length=12, unique=True, default=generation_public_id, editable=False
    )
    requester = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="generations"
    )
    # One of the two: a model someone uploaded or a job made, or a model the hub offers by name.
    model = models.ForeignKey(
        "jobs.MLModel", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    server_model = models.CharField(max_length=200, blank=True)
    prompt = models.TextField()
    chat = models.BooleanField(default=True, help_text="Read as a user's turn (chat template).")
    max_tokens = models.PositiveIntegerField()
    temperature = models.FloatField()
    status = models.CharField(
        max_length=8, choices=GenerationStatus.choices, default=GenerationStatus.QUEUED
    )
    text = models.TextField(blank=True)
    tokens = models.PositiveIntegerField(default=0)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    worker = models.CharField(max_length=200, blank=True)
    # Whether the worker had the model loaded already (kept from an earlier prompt).
    warm = models.BooleanField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    first_token_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["requester", "status"])]

    def __str__(self) -> str:
        return self.public_id

    @property
    def model_name(self) -> str:
        return self.model.public_id if self.model_id and self.model else self.server_model
