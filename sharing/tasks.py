"""Sharing emails, sent by workers with retries, and never twice for one invitation."""

from __future__ import annotations

import smtplib

from celery import shared_task
from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from sharing.models import Invitation, Share

RETRYABLE = (smtplib.SMTPException, OSError)
# The same words for everyone: nothing a user typed (a job's name, a username) goes into a
# subject line, where mail clients show it as if the hub had said it.
SUBJECT = "A job was shared with you on the Model Job Hub"


@shared_task(
    name="sharing.tasks.send_invitation", autoretry_for=RETRYABLE, retry_backoff=True, max_retries=6
)
def send_invitation(invitation_id: int) -> str:
    from sharing.services import invitation_token

    with transaction.atomic():
        invitation = (
            Invitation.objects.select_for_update(of=("self",))
            .select_related("job", "invited_by")
            .filter(pk=invitation_id)
            .first()
        )
        if invitation is None or invitation.sent_at is not None or not invitation.pending:
            return "skipped"  # already sent (a repeated delivery), withdrawn, or expired
        link = settings.HUB_BASE_URL + reverse(
            "sharing:accept", args=[invitation_token(invitation)]
        )
        who = invitation.invited_by.get_username() if invitation.invited_by else "Someone"
        send_mail(
            subject=SUBJECT,
            message=(
                f"{who} shared the job “{invitation.job.name}” ({invitation.job.public_id}) on the Model Job Hub "
                f"with {invitation.email}.\n\nCreate your account and open the job:\n{link}\n\n"
                f"The link works once, for {invitation.email} only, until "
                f"{invitation.expires_at:%Y-%m-%d %H:%M} UTC.\n"
            ),
            from_email=None,
            recipient_list=[invitation.email],
        )
        invitation.sent_at = timezone.now()
        invitation.save(update_fields=["sent_at"])
    return "sent"


@shared_task(
    name="sharing.tasks.send_share_notice",
    autoretry_for=RETRYABLE,
    retry_backoff=True,
    max_retries=6,
)
def send_share_notice(share_id: int) -> str:
    with transaction.atomic():
        share = (
            Share.objects.select_for_update(of=("self",))
            .select_related("job", "created_by")
            .filter(pk=share_id, user__isnull=False)
            .first()
        )
        if share is None or share.notified_at is not None:
            return "skipped"  # removed since, or already told (a repeated delivery)
        who = share.created_by.get_username() if share.created_by else "Someone"
        send_mail(
            subject=SUBJECT,
            message=(
                f"{who} shared the job “{share.job.name}” ({share.job.public_id}) with you on "
                f"the Model Job Hub:\n{share.job.url}\n"
            ),
            from_email=None,
            recipient_list=[share.email],
        )
        share.notified_at = timezone.now()
        share.save(update_fields=["notified_at"])
    return "sent"
