"""Applying the state machine of ``jobs.domain.status`` to stored jobs."""

from __future__ import annotations

from django.db import transaction
from django.dispatch import Signal
from django.utils import timezone

from jobs.domain.events import ClaimLost, EventType, StatusPayload, publish
from jobs.domain.redact import scrub_paths
from jobs.domain.status import (
    FINISHED,
    TERMINAL,
    USER_FAILURES,
    FailureType,
    InvalidTransition,
    JobStatus,
    can_transition,
)
from jobs.models import Job, StatusLog

# Sent, after the transaction commits, when a job has ended (ready, failed or cancelled):
# jobs.services.followers starts or fails the jobs that wait for its target model. The reaper
# sends it again for a follower still waiting on a job that ended (its first send was lost).
job_ended = Signal()  # kwargs: job


def status_payload(job: Job, entry: StatusLog) -> StatusPayload:
    return {
        "status": entry.status,
        "message": entry.message,
        "detail": entry.detail,
        "updated_at": entry.updated_at.isoformat(),
        "failure_type": job.failure_type,
        "failure_label": job.get_failure_type_display() if job.failure_type else "",
        "failure_by_user": job.failure_type in USER_FAILURES,
        "failure_message": job.failure_message,
    }


def job_transition(
    *,
    job: Job,
    to: JobStatus,
    message: str,
    detail: str = "",
    failure_type: FailureType | None = None,
    claim_token: str | None = None,
) -> Job:
    """Move a job to ``to``, write its status log entry and publish the change, in one
    transaction.

    The row is locked and re-read first, so two writers (a worker finishing, a user cancelling)
    are serialised and the loser gets ``InvalidTransition`` instead of overwriting the winner.
    With ``claim_token`` the change is made only while that worker still holds the job
    (``ClaimLost`` otherwise). ``job`` is updated in place and returned.
    """
    if (to == JobStatus.FAILED) != (failure_type is not None):
        raise ValueError("A failed job needs a failure_type, and only a failed job has one.")
    if not message.strip():
        raise ValueError("A status change needs a message a person can read.")
    message, detail = scrub_paths(message), scrub_paths(detail)  # people read these
    with transaction.atomic():
        locked = Job.objects.select_for_update().get(pk=job.pk)
        if claim_token is not None and locked.claim_token != claim_token:
            raise ClaimLost(f"Job {locked.public_id} is no longer held by this worker.")
        if not can_transition(locked.status, to):
            raise InvalidTransition(locked.public_id, locked.status, to)
        now = timezone.now()
        locked.status = to
        if to == JobStatus.PENDING:
            locked.queued_at = now
        elif to == JobStatus.RUNNING and locked.started_at is None:
            locked.started_at = now
        if to in FINISHED and locked.finished_at is None:
            locked.finished_at = now
        if failure_type is not None:
            locked.failure_type = failure_type
            locked.failure_message = message
        locked._status_change_allowed = True
        locked.save()
        entry = StatusLog.objects.create(
            job=locked, status=to, message=message, detail=detail, updated_at=now
        )
        publish(locked, EventType.STATUS, dict(status_payload(locked, entry)))
        if to in TERMINAL:
            ended = locked
            transaction.on_commit(lambda: job_ended.send(sender=Job, job=ended))
    job.refresh_from_db()
    return job
