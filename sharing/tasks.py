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
from sharing.models import TARGET_FIELDS, Invitation, Share
from sharing.services import invitation_token, page_of

RETRYABLE = MAIL_RETRYABLE


def subject(kind: str) -> str:
    """The same words for everyone but the kind ("job", "model", "dataset"): nothing a user typed
    (a name, a username) goes into a subject line, where mail clients show it as if the hub had
    said it."""
    return f"A {kind} was shared with you on the Model Job Hub"


SUBJECT = subject("job")  # a job's, as it always was


def _send_once(rows: QuerySet[Any], stamp: str, compose: Callable[[Any], tuple[str, str]]) -> str:
    """Send the row's email unless ``stamp`` says it went out already (a repeated delivery) or
    ``compose`` declines (returns no body): never twice (hubsite.outbox.send_once)."""

    def send(row: Any) -> bool:
        address, body = compose(row)
        if not body:
            return False
        send_mail(
            subject=subject(row.target_kind),
            message=body,
            from_email=None,
            recipient_list=[address],
        )
        return True

    return send_once(rows, stamp, send)


def _giver(user: Any) -> str:
    return user.get_username() if user else "Someone"


def _gone(row: Invitation | Share) -> bool:
    """Its model or dataset was deleted since the email was queued: there is nothing to open."""
    return getattr(row.target, "deleted_at", None) is not None


def _what(row: Invitation | Share) -> str:
    """The job “name” (id), the model “name” (id) or the dataset “name” (id)."""
    target = row.target
    return f"the {row.target_kind} “{target.name}” ({target.public_id})"


@shared_task(
    name="sharing.tasks.send_invitation", autoretry_for=RETRYABLE, retry_backoff=True, max_retries=6
)
def send_invitation(invitation_id: int) -> str:
    def compose(invitation: Invitation) -> tuple[str, str]:
        if not invitation.pending or _gone(invitation):
            return invitation.email, ""  # withdrawn or expired since it was queued
        link = settings.HUB_BASE_URL + reverse(
            "sharing:accept", args=[invitation_token(invitation)]
        )
        return invitation.email, (
            f"{_giver(invitation.invited_by)} shared {_what(invitation)} on the Model Job Hub "
            f"with {invitation.email}.\n\nCreate your account and open the "
            f"{invitation.target_kind}:\n{link}\n\nThe link works once, for "
            f"{invitation.email} only, until {invitation.expires_at:%Y-%m-%d %H:%M} UTC.\n"
        )

    rows = Invitation.objects.select_related(*TARGET_FIELDS, "invited_by").filter(pk=invitation_id)
    return _send_once(rows, "sent_at", compose)


@shared_task(
    name="sharing.tasks.send_share_notice",
    autoretry_for=RETRYABLE,
    retry_backoff=True,
    max_retries=6,
)
def send_share_notice(share_id: int) -> str:
    def compose(share: Share) -> tuple[str, str]:
        if _gone(share):
            return share.email, ""
        link = settings.HUB_BASE_URL + page_of(share.target)
        return share.email, (
            f"{_giver(share.created_by)} shared {_what(share)} with you on the Model Job "
            f"Hub:\n{link}\n"
        )

    # Only a share that reaches an account (an invitation is sent otherwise); removed: nothing.
    rows = Share.objects.select_related(*TARGET_FIELDS, "created_by").filter(
        pk=share_id, user__isnull=False
    )
    return _send_once(rows, "notified_at", compose)
