"""Sharing emails, sent by workers with retries, and never twice for one invitation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import shared_task
from django.conf import settings
from django.core.mail import send_mail
from django.db.models import QuerySet
from django.urls import reverse

from hubsite.outbox import MAIL_RETRYABLE, send_once
from sharing.models import Invitation, Share
from sharing.services import invitation_token

RETRYABLE = MAIL_RETRYABLE
# The same words for everyone: nothing a user typed (a job's name, a username) goes into a
# subject line, where mail clients show it as if the hub had said it.
SUBJECT = "A job was shared with you on the Model Job Hub"


def _send_once(rows: QuerySet[Any], stamp: str, compose: Callable[[Any], tuple[str, str]]) -> str:
    """Send the row's email unless ``stamp`` says it went out already (a repeated delivery) or
    ``compose`` declines (returns no body): never twice (hubsite.outbox.send_once)."""

    def send(row: Any) -> bool:
        address, body = compose(row)
        if not body:
            return False
        send_mail(subject=SUBJECT, message=body, from_email=None, recipient_list=[address])
        return True

    return send_once(rows, stamp, send)


def _giver(user: Any) -> str:
    return user.get_username() if user else "Someone"


@shared_task(
    name="sharing.tasks.send_invitation", autoretry_for=RETRYABLE, retry_backoff=True, max_retries=6
)
def send_invitation(invitation_id: int) -> str:
    def compose(invitation: Invitation) -> tuple[str, str]:
        if not invitation.pending:
            return invitation.email, ""  # withdrawn or expired since it was queued
        link = settings.HUB_BASE_URL + reverse(
            "sharing:accept", args=[invitation_token(invitation)]
        )
        job = invitation.job
        return invitation.email, (
            f"{_giver(invitation.invited_by)} shared the job “{job.name}” ({job.public_id}) on "
            f"the Model Job Hub with {invitation.email}.\n\nCreate your account and open the "
            f"job:\n{link}\n\nThe link works once, for {invitation.email} only, until "
            f"{invitation.expires_at:%Y-%m-%d %H:%M} UTC.\n"
        )

    rows = Invitation.objects.select_related("job", "invited_by").filter(pk=invitation_id)
    return _send_once(rows, "sent_at", compose)


@shared_task(
    name="sharing.tasks.send_share_notice",
    autoretry_for=RETRYABLE,
    retry_backoff=True,
    max_retries=6,
)
def send_share_notice(share_id: int) -> str:
    def compose(share: Share) -> tuple[str, str]:
        job = share.job
        return share.email, (
            f"{_giver(share.created_by)} shared the job “{job.name}” ({job.public_id}) with you "
            f"on the Model Job Hub:\n{job.url}\n"
        )

    # Only a share that reaches an account (an invitation is sent otherwise); removed: nothing.
    rows = Share.objects.select_related("job", "created_by").filter(pk=share_id, user__isnull=False)
    return _send_once(rows, "notified_at", compose)
