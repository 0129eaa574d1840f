"""Notifications are sent by workers, with retries, and never twice for one row."""

from __future__ import annotations

from celery import shared_task

from notifications.delivery import SendLater, notification_send
from notifications.services import notifications_resend


@shared_task(
    name="notifications.tasks.send_notification",
    autoretry_for=(SendLater,),
    # 2, 4, 8 and 16 s at most (jittered), all shorter than RESEND_AFTER: the sweep takes over
    # from a row whose quick retries ran out, until the row's MAX_ATTEMPTS are used.
    retry_backoff=2,
    retry_backoff_max=30,
    retry_jitter=True,
    max_retries=4,
)
def send_notification(notification_id: int) -> str:
    return notification_send(notification_id)


@shared_task(name="notifications.tasks.resend_unsent")
def resend_unsent() -> int:
    return notifications_resend()
