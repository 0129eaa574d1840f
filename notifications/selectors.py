"""Reads of notifications, scoped to the person asking."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import User

from jobs.domain.selectors import jobs_visible_to
from notifications.models import Notification

RECENT = 20


@dataclass(frozen=True)
class DeliveryRow:
    """One delivery as its recipient sees it: the job named only while they may still read it
    (a share taken back takes the name with it)."""

    id: int
    created_at: datetime
    event: str
    event_label: str
    channel: str
    state: str
    state_label: str
    attempts: int
    last_error: str
    sent_at: datetime | None
    job_id: str | None
    job_name: str | None
    job_url: str | None


def recent_deliveries(user: User, limit: int = RECENT) -> list[DeliveryRow]:
    rows = list(
        Notification.objects.filter(user=user)
        .select_related("job")
        .order_by("-created_at", "-id")[:limit]
    )
    readable = set(
        jobs_visible_to(user).filter(pk__in={r.job_id for r in rows}).values_list("pk", flat=True)
    )
    return [
        DeliveryRow(
            id=r.pk,
            created_at=r.created_at,
            event=r.event,
            event_label=r.get_event_display(),
            channel=r.channel,
            state=r.state,
            state_label=r.get_state_display(),
            attempts=r.attempts,
            last_error=r.last_error,
            sent_at=r.sent_at,
            job_id=r.job.public_id if r.job_id in readable else None,
            job_name=r.job.name if r.job_id in readable else None,
            job_url=r.job.get_absolute_url() if r.job_id in readable else None,
        )
        for r in rows
    ]
