"""Shares and invitations of jobs, models and datasets (seed 000's get_sharing /
modify_sharing / disable_sharing, which its client offers on all three).

A share gives one email address read access to one target. A job's share reaches everything the
job touches (its models, datasets, artifacts, target model, and the upstream jobs whose target
models it used); a model's or dataset's share reaches that asset only, never the jobs that made
or used it. ``jobs.domain.selectors`` derives all of that from the shares at read time, so
removing a share removes exactly what it granted. A share points at a job, a model or a dataset,
so this app imports ``jobs`` and never the other way round.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings
from django.db import models

if TYPE_CHECKING:
    from jobs.models import Dataset, Job, MLModel

# What a share, an audit entry or an invitation points at: exactly one of these.
TARGET_FIELDS = ("job", "model", "dataset")


def _exactly_one_target() -> models.Q:
    """Exactly one of ``TARGET_FIELDS`` is set."""
    return (
        models.Q(job__isnull=False, model__isnull=True, dataset__isnull=True)
        | models.Q(job__isnull=True, model__isnull=False, dataset__isnull=True)
        | models.Q(job__isnull=True, model__isnull=True, dataset__isnull=False)
    )


class Targeted:
    """The job, model or dataset a row points at, and which of the three it is."""

    job: Job | None
    model: MLModel | None
    dataset: Dataset | None
    job_id: int | None
    model_id: int | None
    dataset_id: int | None

    @property
    def target(self) -> Job | MLModel | Dataset:
        found = self.job or self.model or self.dataset
        assert found is not None  # the check constraint guarantees one
        return found

    @property
    def target_kind(self) -> str:
        """One of "job", "model" or "dataset"."""
        if self.job_id is not None:
            return "job"
        return "model" if self.model_id is not None else "dataset"

    @property
    def target_id(self) -> int | None:
        return self.job_id or self.model_id or self.dataset_id


class Share(Targeted, models.Model):
    # Exactly one of the three (a check constraint says so).
    job = models.ForeignKey(
        "jobs.Job", on_delete=models.CASCADE, null=True, blank=True, related_name="shares"
    )
    model = models.ForeignKey(
        "jobs.MLModel", on_delete=models.CASCADE, null=True, blank=True, related_name="shares"
    )
    dataset = models.ForeignKey(
        "jobs.Dataset", on_delete=models.CASCADE, null=True, blank=True, related_name="shares"
    )
    email = models.EmailField(max_length=254, help_text="Normalised: trimmed and lower-case.")
    # The account reading through this share: set at once when the address has one, or when
    # its invitation is accepted.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="shares",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # When the share notice email went out to an address that had an account: never twice.
    notified_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["job", "email"]
        constraints = [
            models.UniqueConstraint(fields=["job", "email"], name="share_unique_email_per_job"),
            models.UniqueConstraint(fields=["model", "email"], name="share_unique_email_per_model"),
            models.UniqueConstraint(
                fields=["dataset", "email"], name="share_unique_email_per_dataset"
            ),
            models.CheckConstraint(condition=_exactly_one_target(), name="share_one_target"),
        ]
        indexes = [models.Index(fields=["user", "job"]), models.Index(fields=["email"])]

    def __str__(self) -> str:
        return f"{self.target_kind} {self.target_id} → {self.email}"


class ShareAction(models.TextChoices):
    ADDED = "added", "Shared"
    REMOVED = "removed", "Share removed"
    DISABLED = "disabled", "All sharing disabled"


class ShareAuditEntry(Targeted, models.Model):
    """Who shared what with whom and when, and who took it back: kept when the share is gone."""

    # Exactly one of the three (a check constraint says so).
    job = models.ForeignKey(
        "jobs.Job", on_delete=models.CASCADE, null=True, blank=True, related_name="share_audit"
    )
    model = models.ForeignKey(
        "jobs.MLModel", on_delete=models.CASCADE, null=True, blank=True, related_name="share_audit"
    )
    dataset = models.ForeignKey(
        "jobs.Dataset", on_delete=models.CASCADE, null=True, blank=True, related_name="share_audit"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    action = models.CharField(max_length=16, choices=ShareAction.choices)
    email = models.EmailField(max_length=254)
    at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name_plural = "share audit entries"
        constraints = [
            models.CheckConstraint(condition=_exactly_one_target(), name="share_audit_one_target")
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.email}"


class Invitation(Targeted, models.Model):
    """The email a share sends to an address with no account: a signed link that lets that
    address sign up and land on the shared job, model or dataset. It works once, for that
    address only, until it expires or is withdrawn (removing the share withdraws it)."""

    share = models.OneToOneField(
        Share, on_delete=models.SET_NULL, null=True, blank=True, related_name="invitation"
    )
    # Exactly one of the three (a check constraint says so).
    job = models.ForeignKey(
        "jobs.Job", on_delete=models.CASCADE, null=True, blank=True, related_name="invitations"
    )
    model = models.ForeignKey(
        "jobs.MLModel", on_delete=models.CASCADE, null=True, blank=True, related_name="invitations"
    )
    dataset = models.ForeignKey(
        "jobs.Dataset", on_delete=models.CASCADE, null=True, blank=True, related_name="invitations"
    )
    email = models.EmailField(max_length=254)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    expires_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    accepted_at = models.DateTimeField(null=True, blank=True)
    withdrawn_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=_exactly_one_target(), name="invitation_one_target")
        ]

    def __str__(self) -> str:
        return f"invitation of {self.email} to {self.target_kind} {self.target_id}"

    @property
    def pending(self) -> bool:
        from django.utils import timezone

        return (
            self.accepted_at is None
            and self.withdrawn_at is None
            and self.expires_at > timezone.now()
        )


class InvitationQuota(models.Model):
    """Invitation emails an owner has sent on one day: counted with a row lock, so the daily cap
    holds however many requests arrive at once."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    sent = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["owner", "day"], name="invitation_quota_per_day")
        ]

    def __str__(self) -> str:
        return f"{self.owner_id} {self.day}: {self.sent}"
