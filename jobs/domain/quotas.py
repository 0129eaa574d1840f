"""Per-person quotas, so that one person cannot fill the queue or the disk for everyone.

Three limits, each a setting (0 turns it off): jobs queued or running at once
(HUB_QUOTA_ACTIVE_JOBS), uploads an hour (HUB_QUOTA_UPLOADS_PER_HOUR), and bytes stored: uploads,
target models and result files together (HUB_QUOTA_STORAGE_BYTES). External runs' log lines
are counted too, per run and per person an hour, in lines and in bytes (check_log_quota). Services check them inside
their transaction under a lock on the person's row, so concurrent requests cannot both take the
last place; the web handler checks the upload quotas again before it reads a large body.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Count, Func, IntegerField, QuerySet, Sum
from django.utils import timezone

from jobs.domain.disk import size_text
from jobs.domain.status import JobStatus
from jobs.models import Artifact, Dataset, Job, JobKind, JobLogLine, MLModel

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
            f"You store {size_text(usage.stored_bytes)}"
            + (f"; this upload of {size_text(size)} would pass" if size else "; that is")
            + f" this hub's limit of {size_text(storage)} a person (HUB_QUOTA_STORAGE_BYTES). "
            "Delete something first. Nothing was stored.",
        )
    return None


def check_upload_quota(user_id: int, size: int) -> None:
    refusal = upload_refusal(user_id, size)
    if refusal is not None:
        raise refusal


class _Bytes(Func):
    """A text column's size in bytes (UTF-8), as it sits on disk: Length counts characters."""

    function = "OCTET_LENGTH"
    output_field = IntegerField()

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(compiler, connection, template="LENGTH(CAST(%(expressions)s AS BLOB))")


def _logged(lines: QuerySet[JobLogLine]) -> tuple[int, int]:
    found = lines.aggregate(count=Count("pk"), size=Sum(_Bytes("text")))
    return found["count"], found["size"] or 0


def check_log_quota(job: Job, texts: list[str]) -> None:
    """Refuse log lines (as they will be stored) that would take an external run or its owner
    past a log quota: lines and bytes a run keeps (HUB_QUOTA_RUN_LOG_LINES, _BYTES), and lines
    and bytes a person's runs send in an hour (HUB_QUOTA_LOG_LINES_PER_HOUR, _BYTES_PER_HOUR).
    Checked on the whole report under the run's lock, before anything of it is written."""
    if not texts:
        return
    size = sum(len(text.encode()) for text in texts)
    hour_ago = timezone.now() - timedelta(hours=1)
    checks = (
        ("run_log_lines", "HUB_QUOTA_RUN_LOG_LINES", "this run keeps", None),
        ("run_log_bytes", "HUB_QUOTA_RUN_LOG_BYTES", "this run keeps", None),
        ("log_lines_per_hour", "HUB_QUOTA_LOG_LINES_PER_HOUR", "your runs sent", hour_ago),
        ("log_bytes_per_hour", "HUB_QUOTA_LOG_BYTES_PER_HOUR", "your runs sent", hour_ago),
    )
    counted: dict[datetime | None, tuple[int, int]] = {}
    for quota, setting, whose, since in checks:
        limit = getattr(settings, setting)
        if not limit:
            continue
        if since not in counted:
            counted[since] = _logged(
                JobLogLine.objects.filter(job=job)
                if since is None
                else JobLogLine.objects.filter(
                    job__owner_id=job.owner_id, job__kind=JobKind.EXTERNAL, at__gte=since
                )
            )
        lines, stored = counted[since]
        in_bytes = "bytes" in quota
        have, adding = (stored, size) if in_bytes else (lines, len(texts))
        if have + adding <= limit:
            continue

        def amount(n: int, in_bytes: bool = in_bytes) -> str:
            return str(size_text(n)) if in_bytes else f"{n:,} lines"

        window = " in the last hour" if since else ""
        raise QuotaExceeded(
            quota,
            f"This report's {len(texts)} log lines ({size_text(size)}) would pass a log "
            f"quota: {whose} {amount(have)}{window}, and this hub allows {amount(limit)}"
            f"{' an hour for a person' if since else ' a run'} ({setting}, which the operator "
            "may raise). Nothing of this report was stored; send it again without its logs.",
        )


def check_generation_quota(user_id: int) -> None:
    """ "Try it" has limits of its own: prompts answering at once, and prompts an hour."""
    from jobs.models import Generation, GenerationStatus

    mine = Generation.objects.filter(requester_id=user_id)
    limit = settings.HUB_GENERATE_CONCURRENT
    now = timezone.now()
    # A prompt no worker took, or whose worker died mid-answer, stops counting after its time.
    waiting = (
        mine.filter(
            status=GenerationStatus.QUEUED,
            created_at__gte=now - timedelta(seconds=settings.HUB_GENERATE_WAIT_SECONDS),
        ).count()
        + mine.filter(
            status=GenerationStatus.RUNNING,
            started_at__gte=now - timedelta(seconds=settings.HUB_GENERATE_SECONDS + 60),
        ).count()
    )
    if waiting >= limit:
        raise QuotaExceeded(
            "concurrent_generations",
            f"You have {waiting} prompts being answered; this hub answers {limit} of a person's "
            "at once (HUB_GENERATE_CONCURRENT). Wait for one to finish.",
        )
    hourly = settings.HUB_GENERATE_PER_HOUR
    recent = mine.filter(created_at__gte=timezone.now() - timedelta(hours=1)).count()
    if recent >= hourly:
        raise QuotaExceeded(
            "generations_per_hour",
            f"You have tried {recent} prompts in the last hour; this hub allows {hourly} an hour "
            "(HUB_GENERATE_PER_HOUR).",
        )
