"""Shares and invitations of jobs (seed 000's get_sharing / modify_sharing / disable_sharing).

A share gives one email address read access to one job, and through it to everything the job
touches (its models, datasets, artifacts, target model, and the upstream jobs whose target models
it used); ``jobs.domain.selectors`` derives all of that from the shares at read time, so removing a
share removes exactly what it granted. A share points at a job, so this app imports ``jobs`` and
never the other way round.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Share(models.Model):
    job = models.ForeignKey("jobs.Job", on_delete=models.CASCADE, related_name="shares")
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
            models.UniqueConstraint(fields=["job", "email"], name="share_unique_email_per_job")
        ]
        indexes = [models.Index(fields=["user", "job"]), models.Index(fields=["email"])]

    def __str__(self) -> str:
        return f"{self.job_id} → {self.email}"


class ShareAction(models.TextChoices):
    ADDED = "added", "Shared"
    REMOVED = "removed", "Share removed"
    DISABLED = "disabled", "All sharing disabled"


class ShareAuditEntry(models.Model):
    """Who shared what with whom and when, and who took it back: kept when the share is gone."""

    job = models.ForeignKey("jobs.Job", on_delete=models.CASCADE, related_name="share_audit")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    action = models.CharField(max_length=16, choices=ShareAction.choices)
    email = models.EmailField(max_length=254)
    at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name_plural = "share audit entries"

    def __str__(self) -> str:
        return f"{self.action} {self.email}"


class Invitation(models.Model):
    """The email a share sends to an address with no account: a signed link that lets that
    address sign up and land on the job. It works once, for that address only, until it
    expires or is withdrawn (removing the share withdraws it)."""

    share = models.OneToOneField(
        Share, on_delete=models.SET_NULL, null=True, blank=True, related_name="invitation"
    )
    job = models.ForeignKey("jobs.Job", on_delete=models.CASCADE, related_name="invitations")
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

    def __str__(self) -> str:
        return f"invitation of {self.email} to {self.job_id}"

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
