"""A job's status log entry, however it was written (jobs.domain.state.job_transition is the
one place a status changes): when it is the job's end, its notifications are recorded in the
same transaction. ``jobs`` knows nothing of this app."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver

from jobs.models import StatusLog
from notifications.services import notifications_record

logger = logging.getLogger(__name__)


@receiver(post_save, sender=StatusLog)
def _status_logged(sender: Any, instance: StatusLog, created: bool, raw: bool, **kw: Any) -> None:
    if not created or raw:  # raw: loading fixtures
        return
    try:
        # A savepoint: a fault here must not undo the job's status change, which matters more
        # than a message about it.
        with transaction.atomic():
            notifications_record(entry=instance)
    except Exception:
        logger.exception("Could not record the notifications of job %s", instance.job_id)
