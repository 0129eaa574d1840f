"""Every write of notifications: a person's settings, and the outbox rows of a job's end."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from celery import current_app
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from jobs.domain.status import JobStatus
from jobs.engine.runners import kinds_run_outside
from jobs.models import Job, StatusLog
from notifications import webhooks
from notifications.models import (
    Channel,
    Delivery,
    Event,
    Notification,
    NotificationSettings,
    new_webhook_secret,
)

logger = logging.getLogger(__name__)
SEND_TASK = "notifications.tasks.send_notification"
# A row still unsent this long after its last message to the broker (or its last try) is sent
# again: longer than the task's longest wait between retries, so a retry in flight is not
# doubled by the sweep (and a double would be harmless: rows are sent once, under a lock).
RESEND_AFTER = timedelta(seconds=60)
# The statuses that may end a job (event_of decides for each job).
ENDS = frozenset({JobStatus.READY, JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})
EDITABLE = (
    "email_own_jobs",
    "email_shared_jobs",
    "webhook_url",
    "webhook_shared_jobs",
    "when_finished",
    "when_failed",
    "when_cancelled",
)


# Settings


def settings_of(user: User) -> NotificationSettings:
    """The person's settings, made with the defaults the first time they are asked for."""
    found, _ = NotificationSettings.objects.get_or_create(user=user)
    return found


def notification_settings_update(*, user: User, **fields: Any) -> NotificationSettings:
    """Change some of the person's settings; a webhook URL is checked first (where it resolves
    to), and a refusal names it and changes nothing."""
    unknown = set(fields) - set(EDITABLE)
    if unknown:
        raise ValidationError({sorted(unknown)[0]: "Not a notification setting."})
    if fields.get("webhook_url"):
        fields["webhook_url"] = webhook_url_checked(fields["webhook_url"])
    with transaction.atomic():
        current = settings_of(user)
        for name, value in fields.items():
            setattr(current, name, value)
        current.save()
    return current


def webhook_url_checked(raw: str) -> str:
    try:
        return str(webhooks.check_url(raw).url)
    except webhooks.WebhookRefused as refused:
        raise ValidationError({"webhook_url": str(refused)}) from None


def notification_secret_rotate(*, user: User) -> NotificationSettings:
    """A new webhook secret; messages from now on are signed with it alone."""
    with transaction.atomic():
        current = settings_of(user)
        current.webhook_secret = new_webhook_secret()
        current.save(update_fields=["webhook_secret", "updated_at"])
    return current


# The outbox


def event_of(job: Job, status: str) -> Event | None:
    """The end a status is, if any. A job the hub runs ends ``ready`` (``completed`` is the
    step before it: its target model is being stored and verified, and may still fail); a job
    run elsewhere ends ``completed``."""
    if status == JobStatus.READY:
        return Event.FINISHED
    if status == JobStatus.COMPLETED and job.kind in kinds_run_outside():
        return Event.FINISHED
    if status == JobStatus.FAILED:
        return Event.FAILED
    if status == JobStatus.CANCELLED:
        return Event.CANCELLED
    return None


def _wants(prefs: NotificationSettings, event: str) -> bool:
    return {
        Event.FINISHED: prefs.when_finished,
        Event.FAILED: prefs.when_failed,
        Event.CANCELLED: prefs.when_cancelled,
    }[Event(event)]


def _channels(prefs: NotificationSettings, person: User, own: bool) -> list[str]:
    channels: list[str] = []
    if person.email and (prefs.email_own_jobs if own else prefs.email_shared_jobs):
        channels.append(Channel.EMAIL)
    if prefs.webhook_url and (own or prefs.webhook_shared_jobs):
        channels.append(Channel.WEBHOOK)
    return channels


def _people(job: Job) -> list[tuple[User, bool]]:
    """The owner, and each active account the job is shared with (its shares as they stand in
    this transaction: a share removed before the event counts no more), with whether they own
    it. Nobody else: a reader of an upstream job is not told of this one."""
    accounts = get_user_model().objects.filter(is_active=True)
    readers = accounts.filter(shares__job_id=job.pk).exclude(pk=job.owner_id).distinct()
    owner = [(job.owner, True)] if job.owner.is_active else []
    return owner + [(reader, False) for reader in readers.order_by("pk")]


def _preferences(people: Iterable[User]) -> dict[int, NotificationSettings]:
    ids = [person.pk for person in people]
    found = {s.user_id: s for s in NotificationSettings.objects.filter(user_id__in=ids)}
    return {pk: found.get(pk) or NotificationSettings(user_id=pk) for pk in ids}


def notifications_record(*, entry: StatusLog) -> list[Notification]:
    """The outbox rows of a status log entry that ends its job, in the entry's transaction,
    and their messages to the workers once it commits. An entry that repeats an end already
    recorded (a note written after the job ended) makes none: one message per event."""
    if entry.status not in ENDS:  # most entries: decided without reading the job
        return []
    job = entry.job
    event = event_of(job, entry.status)
    if event is None:
        return []
    earlier = StatusLog.objects.filter(job_id=job.pk, status__in=ENDS, pk__lt=entry.pk)
    if any(event_of(job, status) for status in earlier.values_list("status", flat=True)):
        return []
    people = _people(job)
    prefs = _preferences(person for person, _ in people)
    rows = [
        Notification.objects.create(
            user=person, job=job, status_log=entry, event=event, channel=channel
        )
        for person, own in people
        if _wants(prefs[person.pk], event)
        for channel in _channels(prefs[person.pk], person, own)
    ]
    if rows:
        transaction.on_commit(partial(_queue, [row.pk for row in rows]))
    return rows


def _queue(ids: list[int]) -> None:
    """Hand rows to the workers. One try each, bounded by the broker's timeouts: whatever the
    broker does, the rows are in the database and the sweep sends what did not get through."""
    sent = []
    for pk in ids:
        try:
            current_app.send_task(SEND_TASK, args=(pk,), retry=False)
        except Exception as error:  # kombu and the transports raise many kinds
            logger.warning("Could not queue notification %s (the sweep will): %s", pk, error)
            continue
        sent.append(pk)
    Notification.objects.filter(pk__in=sent).update(queued_at=timezone.now())


def notifications_resend(*, now: datetime | None = None, limit: int = 500) -> int:
    """Send again the rows still waiting RESEND_AFTER after their last message or try: their
    message was lost (a Redis restart, a broker that was down) or its retries ran out. A row
    being sent right now is locked and left alone. Returns how many were sent again."""
    now = now or timezone.now()
    cutoff = now - RESEND_AFTER
    quiet = Q(queued_at__lt=cutoff) | Q(queued_at__isnull=True, created_at__lt=cutoff)
    with transaction.atomic():
        waiting = Notification.objects.select_for_update(skip_locked=True).filter(
            quiet, state=Delivery.PENDING
        )
        ids = list(waiting.order_by("created_at").values_list("pk", flat=True)[:limit])
        Notification.objects.filter(pk__in=ids).update(queued_at=now)
    _queue(ids)
    return len(ids)
