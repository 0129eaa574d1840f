"""Per-person quotas, so that one person cannot fill the queue or the disk for everyone.

Three limits, each a setting (0 turns it off): jobs queued or running at once
(HUB_QUOTA_ACTIVE_JOBS), uploads an hour (HUB_QUOTA_UPLOADS_PER_HOUR), and bytes stored: uploads,
target models and result files together (HUB_QUOTA_STORAGE_BYTES). Services check them inside
their transaction under a lock on the person's row, so concurrent requests cannot both take the
last place; the web handler checks the upload quotas again before it reads a large body.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Sum
from django.template.defaultfilters import filesizeformat
from django.utils import timezone

from jobs.domain.status import JobStatus
from jobs.models import Artifact, Dataset, Job, MLModel

ACTIVE = (JobStatus.CREATED, JobStatus.PENDING, JobStatus.RUNNING, JobStatus.CANCELLING)


class QuotaExceeded(Exception):
    """A request that would pass one of the person's quotas; nothing was created."""

    def __init__(self, quota: str, message: str) -> None:
        super().__init__(message)
        self.quota = quota
        self.message = message


@dataclass(frozen=True)
class Usage:
    active_jobs: int
    uploads_last_hour: int
    stored_bytes: int

    @property
    def limits(self) -> dict[str, int]:
        return {
            "active_jobs": settings.HUB_QUOTA_ACTIVE_JOBS,
            "uploads_per_hour": settings.HUB_QUOTA_UPLOADS_PER_HOUR,
            "storage_bytes": settings.HUB_QUOTA_STORAGE_BYTES,
        }


def usage_of(user_id: int) -> Usage:
    hour_ago = timezone.now() - timedelta(hours=1)
    uploads = (
        MLModel.objects.filter(
            owner_id=user_id, produced_by__isnull=True, created_at__gte=hour_ago
        ).count()
        + Dataset.objects.filter(owner_id=user_id, created_at__gte=hour_ago).count()
    )
    stored = sum(
        query.aggregate(total=Sum("size"))["total"] or 0
        for query in (
            MLModel.objects.filter(owner_id=user_id, deleted_at__isnull=True),
            Dataset.objects.filter(owner_id=user_id, deleted_at__isnull=True),
            Artifact.objects.filter(job__owner_id=user_id),
        )
    )
    active = Job.objects.filter(owner_id=user_id, status__in=ACTIVE).count()
    return Usage(active_jobs=active, uploads_last_hour=uploads, stored_bytes=stored)


def lock_person(user_id: int) -> None:
    """Serialise one person's quota-checked writes (inside a transaction)."""
    get_user_model().objects.select_for_update().filter(pk=user_id).exists()


def check_job_quota(user_id: int) -> None:
    limit = settings.HUB_QUOTA_ACTIVE_JOBS
    active = Job.objects.filter(owner_id=user_id, status__in=ACTIVE).count()
    if limit and active >= limit:
        raise QuotaExceeded(
            "active_jobs",
            f"You have {active} jobs queued or running; this hub allows {limit} at once "
            "(HUB_QUOTA_ACTIVE_JOBS). Wait for one to finish or cancel one. Nothing was submitted.",
        )


def upload_refusal(user_id: int, size: int | None) -> QuotaExceeded | None:
    """Why an upload of ``size`` bytes (None: not known yet) would pass a quota, if it would."""
    usage = usage_of(user_id)
    per_hour, storage = settings.HUB_QUOTA_UPLOADS_PER_HOUR, settings.HUB_QUOTA_STORAGE_BYTES
    if per_hour and usage.uploads_last_hour >= per_hour:
        return QuotaExceeded(
            "uploads_per_hour",
            f"You have uploaded {usage.uploads_last_hour} files in the last hour; this hub allows "
            f"{per_hour} an hour (HUB_QUOTA_UPLOADS_PER_HOUR). Try again later. Nothing was stored.",
        )
    if storage and usage.stored_bytes + (size or 0) > storage:
        return QuotaExceeded(
            "storage_bytes",
            f"You store {filesizeformat(usage.stored_bytes)}"
            + (f"; this upload of {filesizeformat(size)} would pass" if size else "; that is")
            + f" this hub's limit of {filesizeformat(storage)} a person (HUB_QUOTA_STORAGE_BYTES). "
            "Delete something first. Nothing was stored.",
        )
    return None


def check_upload_quota(user_id: int, size: int) -> None:
    refusal = upload_refusal(user_id, size)
    if refusal is not None:
        raise refusal
