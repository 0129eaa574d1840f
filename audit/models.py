"""The audit log: what matters to a team (sign-ins, shares, invitations, deletions, downloads of
another person's files, token changes, admin actions), with who, what, when and from where.

Append-only: a row is written once, in the transaction of what it records, and never changed
(``save`` refuses an update, ``delete`` refuses; on PostgreSQL a trigger refuses an UPDATE
whoever sends it). Rows older than HUB_AUDIT_RETENTION_DAYS are removed by the reaper, the only
deletion there is.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models


class Action(models.TextChoices):
    SIGN_IN = "sign_in", "Signed in"
    SIGN_IN_FAILED = "sign_in_failed", "Sign-in failed"
    SIGN_OUT = "sign_out", "Signed out"
    SHARE_GIVEN = "share_given", "Shared"
    SHARE_REVOKED = "share_revoked", "Stopped sharing"
    INVITATION_SENT = "invitation_sent", "Invited"
    INVITATION_ACCEPTED = "invitation_accepted", "Accepted an invitation"
    DELETED = "deleted", "Deleted"
    DOWNLOADED = "downloaded", "Downloaded another person's file"
    TOKEN_CHANGED = "token_changed", "Changed an API token"
    ADMIN_ACTION = "admin_action", "Admin action"


class AuditEntry(models.Model):
    at = models.DateTimeField(auto_now_add=True, db_index=True)
    action = models.CharField(max_length=32, choices=Action.choices, db_index=True)
    # Who: the account (kept as a name too, so the row outlives the account).
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    actor_name = models.CharField(max_length=254, blank=True)
    # What: the job, model, dataset or account acted on, and its owner (who sees the row too).
    target_kind = models.CharField(max_length=16, blank=True)
    target_id = models.CharField(max_length=150, blank=True, db_index=True)
    target_owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    detail = models.JSONField(default=dict, blank=True)
    # From where: the client's address (the socket's, or a named proxy's X-Forwarded-For).
    address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=200, blank=True)
    via = models.CharField(max_length=16, blank=True)  # web, api, aihub, admin, server (no request)

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name = "audit entry"
        verbose_name_plural = "audit log"
        indexes = [
            models.Index(fields=["actor", "-at"]),
            models.Index(fields=["target_owner", "-at"]),
        ]

    def __str__(self) -> str:
        return (
            f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor_name or '-'} {self.action} {self.target_id}"
        )

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise PermissionError("An audit entry is never changed.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise PermissionError("An audit entry is removed only when its retention ends.")
