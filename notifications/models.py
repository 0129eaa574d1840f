"""What each person wants to be told, and the outbox of what is to be told.

An outbox row is written in the transaction that records a job's final status, so no event is
lost to a broker that drops a message: the row stays unsent until a worker sends it, and a sweep
hands unsent rows to the workers again (notifications.tasks)."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone


def new_webhook_secret() -> str:
    return secrets.token_urlsafe(32)


class NotificationSettings(models.Model):
    """One per person, made the first time they look or change something; a person without
    one is told as the defaults say (email about their own jobs, nothing else)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_settings"
    )
    email_own_jobs = models.BooleanField(default=True)
    email_shared_jobs = models.BooleanField(default=False)
    # Checked when saved and again before each delivery (notifications.webhooks).
    webhook_url = models.CharField(max_length=2000, blank=True)
    webhook_shared_jobs = models.BooleanField(default=False)
    # Signs every webhook body (X-Hub-Signature-256), so the receiver can tell it is the hub's.
    webhook_secret = models.CharField(max_length=64, default=new_webhook_secret)
    # Which ends of a job are worth a message, for both channels.
    when_finished = models.BooleanField(default=True)
    when_failed = models.BooleanField(default=True)
    when_cancelled = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "notification settings"

    def __str__(self) -> str:
        return f"notification settings of {self.user_id}"


class Event(models.TextChoices):
    FINISHED = "job.finished", "finished"
    FAILED = "job.failed", "failed"
    CANCELLED = "job.cancelled", "was cancelled"


class Channel(models.TextChoices):
    EMAIL = "email", "Email"
    WEBHOOK = "webhook", "Webhook"


class Delivery(models.TextChoices):
    PENDING = "pending", "Waiting to be sent"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"  # gave up: last_error says why
    SKIPPED = "skipped", "Not sent"  # no longer wanted or allowed: last_error says why


class Notification(models.Model):
    """One message about one event of one job, to one person, by one channel."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications"
    )
    job = models.ForeignKey("jobs.Job", on_delete=models.CASCADE, related_name="+")
    # The final status entry that is the event: a repeated event cannot make a second row.
    status_log = models.ForeignKey("jobs.StatusLog", on_delete=models.CASCADE, related_name="+")
    event = models.CharField(max_length=16, choices=Event.choices)
    channel = models.CharField(max_length=8, choices=Channel.choices)
    state = models.CharField(max_length=8, choices=Delivery.choices, default=Delivery.PENDING)
    created_at = models.DateTimeField(default=timezone.now)
    # When a message for it was last handed to the broker, or a worker last tried it: the sweep
    # sends again what has been quiet for too long.
    queued_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["status_log", "user", "channel"], name="notification_once_per_event"
            ),
            models.CheckConstraint(
                name="notification_state_known", condition=models.Q(state__in=Delivery.values)
            ),
        ]
        indexes = [
            models.Index(fields=["state", "queued_at"]),
            models.Index(fields=["user", "-created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.channel} to {self.user_id}: {self.job_id} {self.event}"
