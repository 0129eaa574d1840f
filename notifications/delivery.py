"""Sending one outbox row: an email or a webhook, once, to someone who may still read the job,
and what happened written on the row (the person sees it on their settings page)."""

from __future__ import annotations

import logging

from django.core.mail import EmailMessage
from django.db import transaction
from django.utils import timezone

from hubsite.outbox import MAIL_RETRYABLE, send_once
from jobs.domain.selectors import readable_job
from notifications import messages, webhooks
from notifications.models import Channel, Delivery, Notification, NotificationSettings

logger = logging.getLogger(__name__)
# Tries of one row in all (the task's quick retries, then the sweep's), before it is failed.
MAX_ATTEMPTS = 8
MAX_ERROR = 2000


class SendLater(Exception):
    """This try failed in a way that may pass (a timeout, a busy receiver): the task retries."""


def notification_send(notification_id: int) -> str:
    """Send the row unless it went out, was given up or is no longer wanted: "sent",
    "skipped" or "failed"; raises SendLater when a later try may work."""
    rows = Notification.objects.filter(pk=notification_id, state=Delivery.PENDING).select_related(
        "job__owner", "user", "status_log"
    )
    try:
        return send_once(rows, "sent_at", _send)
    except webhooks.WebhookRefused as refused:  # its host resolves elsewhere now
        return _tried(notification_id, str(refused), retry=False)
    except webhooks.WebhookFailed as failed:
        return _tried(notification_id, str(failed), retry=failed.retry)
    except MAIL_RETRYABLE as error:
        return _tried(notification_id, f"The mail server: {error}", retry=True)
    except Exception:
        # A fault of the hub's: counted like any failed try, so that a row that always fails
        # ends failed after MAX_ATTEMPTS instead of being swept again for ever.
        logger.exception("Notification %s could not be sent", notification_id)
        return _tried(notification_id, "The hub hit an internal error sending this.", retry=True)


def _send(row: Notification) -> bool:
    row.attempts += 1
    row.queued_at = timezone.now()
    prefs = NotificationSettings.objects.filter(user_id=row.user_id).first()
    why_not = _why_not(row, prefs)
    if why_not:
        row.state, row.last_error = Delivery.SKIPPED, why_not
        row.save()
        return False
    own = row.job.owner_id == row.user_id
    if row.channel == Channel.EMAIL:
        _email(row, own)
    elif prefs is not None:  # always, for a webhook: _why_not made sure there is one
        _webhook(row, prefs, own)
    row.state, row.last_error = Delivery.SENT, ""
    return True


def _why_not(row: Notification, prefs: NotificationSettings | None) -> str:
    """Why this row is not to be sent now, or nothing. Checked at send time, not only when the
    job ended: a share removed, an account closed or a webhook removed since then wins."""
    person = row.user
    if not person.is_active:
        return "The account is closed."
    if readable_job(person, row.job.public_id) is None:
        return "The job is no longer shared with you."
    if row.channel == Channel.EMAIL and not person.email:
        return "Your account has no email address."
    if row.channel == Channel.WEBHOOK and not (prefs and prefs.webhook_url):
        return "The webhook was removed before this was sent."
    return ""


def _email(row: Notification, own: bool) -> None:
    message = EmailMessage(
        subject=messages.email_subject(row.event, own),
        body=messages.email_body(row.job, row.status_log, row.event, own),
        to=[row.user.email],
        # Out-of-office replies and the like are not sent back to the hub.
        headers={"Auto-Submitted": "auto-generated"},
    )
    message.send()


def _webhook(row: Notification, prefs: NotificationSettings, own: bool) -> None:
    target = webhooks.check_url(prefs.webhook_url)
    payload = messages.webhook_payload(row.job, row.status_log, row.event, own)
    headers = {
        "X-Hub-Event": row.event,
        # The same on every try of this row: a receiver can drop a repeat it already took.
        "X-Hub-Delivery": str(row.pk),
        "X-Hub-Timestamp": str(payload["timestamp"]),
    }
    webhooks.post(target, webhooks.encode(payload), prefs.webhook_secret, headers)


def _tried(notification_id: int, error: str, *, retry: bool) -> str:
    """Write down a failed try (in a transaction of its own: the try's was rolled back); give
    up when trying again cannot help or the tries are used up, else raise SendLater."""
    with transaction.atomic():
        row = (
            Notification.objects.select_for_update()
            .filter(pk=notification_id, state=Delivery.PENDING)
            .first()
        )
        if row is None:
            return "skipped"
        row.attempts += 1
        row.last_error = error[:MAX_ERROR]
        row.queued_at = timezone.now()
        if not retry or row.attempts >= MAX_ATTEMPTS:
            row.state = Delivery.FAILED
        row.save()
    if row.state == Delivery.FAILED:
        return "failed"
    raise SendLater(error)


def webhook_test(settings: NotificationSettings) -> str:
    """POST a test message to the person's webhook now; what happened, in words. Raises
    WebhookRefused or WebhookFailed."""
    target = webhooks.check_url(settings.webhook_url)
    payload = messages.test_payload()
    headers = {"X-Hub-Event": "test", "X-Hub-Timestamp": str(payload["timestamp"])}
    status = webhooks.post(target, webhooks.encode(payload), settings.webhook_secret, headers)
    return f"The test message reached {target.url.host} (HTTP {status})."
