"""The periodic reaper (Celery beat runs it every HUB_REAPER_INTERVAL seconds).

* A running job whose heartbeat is older than HUB_WORKER_LOST_AFTER lost its worker (killed,
  out of memory, its machine gone): it is requeued while it has attempts left, else failed with
  failure type worker_lost; a cancelling one is simply cancelled. This never waits for the
  broker's visibility timeout.
* An external run (jobs/engine/runners/external.py) that has not reported for
  HUB_EXTERNAL_SILENT_AFTER becomes unknown (no worker of the hub can be lost or requeued).
* A job past its time limit is failed with failure type time_limit. A running job with a live
  worker stops itself at its next step; the reaper steps in only if the worker has not done so
  HUB_WORKER_LOST_AFTER seconds later.
* Stored events of jobs finished more than HUB_EVENT_RETENTION_HOURS ago are deleted: nobody
  needs to catch up on them any more.
* Pending jobs whose messages the broker does not hold (lost in a restart without persistence,
  or never sent while it was away) are sent again (dispatch.resend_missing).
* Training checkpoints kept for a next attempt are removed once their job is finished (however
  it finished: by its worker, cancelled while requeued, failed here).
"""

from __future__ import annotations

import functools
import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from audit import services as audit
from hubsite import metrics, object_storage
from hubsite.uploads import sweep_upload_temp_files
from jobs.domain import inventory
from jobs.domain.state import job_ended, job_transition
from jobs.domain.status import FINISHED, TERMINAL, FailureType, JobStatus
from jobs.engine import checkpoints, dispatch
from jobs.engine.runners import external, kinds_run_outside, runner_for
from jobs.models import Job, JobEvent, Lease

UNFINISHED = [
    JobStatus.CREATED,
    JobStatus.PENDING,
    JobStatus.RUNNING,
    JobStatus.CANCELLING,
    JobStatus.UNKNOWN,
]
HELD = [JobStatus.RUNNING, JobStatus.CANCELLING]


REAPER_LEASE = "reaper"
logger = logging.getLogger(__name__)


def reap_if_due(holder: str, now: datetime | None = None) -> dict[str, int] | None:
    """Reap, unless another process did within HUB_REAPER_INTERVAL: every job worker (and the
    control worker's beat) calls this, so reaping goes on while any one of them is alive, and
    the lease makes it one run an interval whoever calls. None when it was not this caller's
    turn."""
    now = now or timezone.now()
    interval = timedelta(seconds=settings.HUB_REAPER_INTERVAL)
    Lease.objects.get_or_create(name=REAPER_LEASE, defaults={"expires_at": now - interval})
    # Slightly short of the interval, so that the caller on the same schedule gets it again.
    taken = Lease.objects.filter(name=REAPER_LEASE, expires_at__lte=now).update(
        holder=holder[:200], expires_at=now + interval * 0.9
    )
    if not taken:
        return None
    lease = Lease.objects.get(name=REAPER_LEASE)
    grace_until = lease.grace_until
    if lease.last_run_at is not None and now - lease.last_run_at > interval * 3:
        # Nobody could reap for a while: the database (or every process) was away, and so were
        # the workers' heartbeats. Give them HUB_WORKER_LOST_AFTER to beat again before any is
        # presumed dead, so that an outage the workers outlasted requeues nothing.
        grace_until = now + timedelta(seconds=settings.HUB_WORKER_LOST_AFTER)
    counts = reap(now, judge_heartbeats=grace_until is None or now >= grace_until)
    Lease.objects.filter(name=REAPER_LEASE).update(
        last_run_at=now, last_result=counts, grace_until=grace_until
    )
    return counts


def reap(now: datetime | None = None, *, judge_heartbeats: bool = True) -> dict[str, int]:
    now = now or timezone.now()
    counts = {
        "timed_out": 0,
        "requeued": 0,
        "worker_lost": 0,
        "cancelled": 0,
        "events_deleted": 0,
        "checkpoints_removed": 0,
        "resent": 0,
        "temp_bytes_swept": 0,
        "runs_out_of_contact": 0,
        "followers_released": 0,
        "orphans_removed": 0,
        "storage_errors": 0,
    }
    for job in _past_deadline(now):
        if _expire(job.pk, now):
            counts["timed_out"] += 1
    lost_before = now - timedelta(seconds=settings.HUB_WORKER_LOST_AFTER)
    silent = Job.objects.filter(status__in=HELD, heartbeat_at__lt=lost_before).exclude(
        kind__in=kinds_run_outside()
    )
    for job_id in silent.values_list("pk", flat=True) if judge_heartbeats else []:
        outcome = _recover(job_id, lost_before, now)
        if outcome:
            counts[outcome] += 1
    if judge_heartbeats:
        counts["runs_out_of_contact"] = external.silent_runs(now)
    retention = now - timedelta(hours=settings.HUB_EVENT_RETENTION_HOURS)
    # Two statements, one table each (no join in the DELETE): a run that locks one table at a
    # time cannot deadlock with anything that locks many (a TRUNCATE of the test database).
    done = list(Job.objects.filter(finished_at__lt=retention).values_list("pk", flat=True)[:1000])
    counts["events_deleted"] = JobEvent.objects.filter(job_id__in=done).delete()[0] if done else 0
    try:
        counts["checkpoints_removed"] = _sweep_checkpoints()
        counts["orphans_removed"] = _sweep_orphans_if_due(now)
    except Exception as error:
        if not object_storage.unreachable(error):
            raise
        # The storage is away: what it holds is swept on a later run, the rest goes on now.
        logger.warning("The reaper could not sweep the storage: %s", object_storage.words(error))
        counts["storage_errors"] += 1
        metrics.STORAGE_ERRORS.labels("sweep").inc()
    counts["resent"] = dispatch.resend_missing(now)
    counts["followers_released"] = _tell_of_ended_jobs()
    # What killed processes of this host left half-written (uploads, files being stored): also
    # found here, not only when a web process starts, since workers store files too.
    counts["temp_bytes_swept"] = sweep_upload_temp_files()
    return counts


def _tell_of_ended_jobs() -> int:
    """Say again that a job ended where a job still waits for its model (the first word of it
    was lost with the process that sent it): the waiting jobs start or fail."""
    waited = (
        Job.objects.filter(status=JobStatus.CREATED, waits_for__status__in=TERMINAL)
        .values_list("waits_for", flat=True)
        .distinct()
    )
    ended = list(Job.objects.filter(pk__in=list(waited[:100])))
    for job in ended:
        job_ended.send(sender=Job, job=job)
    return len(ended)


ORPHAN_LEASE = "orphan-sweep"


def _sweep_orphans_if_due(now: datetime) -> int:
    """Files no row names, swept once every HUB_ORPHAN_SWEEP_SECONDS by whichever reaper takes
    the lease (listing a bucket is not for every run)."""
    every = timedelta(seconds=settings.HUB_ORPHAN_SWEEP_SECONDS)
    Lease.objects.get_or_create(name=ORPHAN_LEASE, defaults={"expires_at": now})
    if not Lease.objects.filter(name=ORPHAN_LEASE, expires_at__lte=now).update(
        expires_at=now + every
    ):
        return 0
    audit.expire(now)
    removed = inventory.sweep_orphans(
        older_than=timedelta(seconds=settings.HUB_ORPHAN_GRACE_SECONDS)
    )
    Lease.objects.filter(name=ORPHAN_LEASE).update(
        last_run_at=now, last_result={"removed": removed}
    )
    return removed


def _sweep_checkpoints() -> int:
    """Remove the checkpoints of jobs that are finished or gone (on the shared disk, or in the
    bucket and this host's scratch folder)."""
    kept = checkpoints.stored_jobs()
    here = checkpoints.root()
    if object_storage.is_remote() and here.is_dir():
        kept |= {p.name for p in here.iterdir() if p.is_dir()}
    if not kept:
        return 0
    unfinished = set(
        Job.objects.filter(public_id__in=list(kept), status__in=UNFINISHED).values_list(
            "public_id", flat=True
        )
    )
    removed = 0
    for name in kept - unfinished:
        checkpoints.forget(name)
        removed += 1
    return removed


def _past_deadline(now: datetime) -> list[Job]:
    default_cutoff = now - timedelta(seconds=settings.HUB_JOB_TIME_LIMIT)
    candidates = Job.objects.filter(status__in=UNFINISHED).filter(
        Q(time_limit__isnull=True, created_at__lt=default_cutoff) | Q(time_limit__isnull=False)
    )
    return [job for job in candidates.only("pk", "created_at", "time_limit") if job.deadline <= now]


def _expire(job_id: int, now: datetime) -> bool:
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job_id)
        if job.status in FINISHED or job.deadline > now:
            return False
        grace = timedelta(seconds=settings.HUB_WORKER_LOST_AFTER)
        alive = (
            job.status in HELD and job.heartbeat_at is not None and job.heartbeat_at > now - grace
        )
        if alive and now < job.deadline + grace:
            return False  # the worker will stop it at its next step, with a better message
        waited = (
            "in the queue" if job.status in (JobStatus.CREATED, JobStatus.PENDING) else "running"
        )
        _release(job)
        job_transition(
            job=job,
            to=JobStatus.FAILED,
            message=f"Time limit reached: jobs may take {job.time_limit_seconds} s from their creation, "
            f"queue time included, and this one was still {waited}.",
            failure_type=FailureType.TIME_LIMIT,
        )
    return True


def _recover(job_id: int, lost_before: datetime, now: datetime) -> str | None:
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job_id)
        if job.status not in HELD or job.heartbeat_at is None or job.heartbeat_at >= lost_before:
            return None  # it moved on since we looked
        silent = int((now - job.heartbeat_at).total_seconds())
        who = job.worker or "its worker"
        _release(job)
        if job.status == JobStatus.CANCELLING:
            job_transition(
                job=job,
                to=JobStatus.CANCELLED,
                message=f"{who} stopped answering while cancelling; cancelled.",
            )
            return "cancelled"
        resume = runner_for(job.kind).resume_point(job)
        progressed = resume is not None and resume.step > (job.attempt_started_step or 0)
        if progressed:
            # It got further (a checkpoint past where it started): not a failed attempt, so a
            # job whose workers keep dying after progress is not given up as worker_lost.
            job.progressed_attempts += 1
            Job.objects.filter(pk=job.pk).update(progressed_attempts=job.progressed_attempts)
        if job.attempts - job.progressed_attempts < settings.HUB_MAX_ATTEMPTS:
            counted = (
                f"{job.attempts + 1}; the lost one reached a new checkpoint, so it does not "
                f"count against the {settings.HUB_MAX_ATTEMPTS} allowed"
                if progressed
                else f"{job.attempts + 1} of {settings.HUB_MAX_ATTEMPTS}"
            )
            job_transition(
                job=job,
                to=JobStatus.PENDING,
                message=f"{who} stopped answering (last heartbeat {silent} s ago); requeued for "
                f"attempt {counted}"
                + (f", which resumes from {resume.words}." if resume else ", from the start."),
            )
            transaction.on_commit(lambda: dispatch.send(job))
            return "requeued"
        job_transition(
            job=job,
            to=JobStatus.FAILED,
            message=f"{who} stopped answering (last heartbeat {silent} s ago) and the job has had all "
            f"{settings.HUB_MAX_ATTEMPTS} attempts. This was the hub's problem, not the job's; resubmit it.",
            failure_type=FailureType.WORKER_LOST,
        )
        return "worker_lost"


def requeue_held_by(node: str) -> int:
    """Put back the jobs that the workers of ``node`` (a Celery node name, ``jobs@host``) are
    running, because that hub is being stopped on purpose: each goes back to the queue at once
    (its worker, finding its claim gone, stops at its next step) and the stopped attempt does not
    count against HUB_MAX_ATTEMPTS. A job being cancelled is cancelled. Returns how many."""
    count = 0
    for job_id in Job.objects.filter(status__in=HELD, worker__startswith=f"{node} ").values_list(
        "pk", flat=True
    ):
        with transaction.atomic():
            job = Job.objects.select_for_update().get(pk=job_id)
            if job.status not in HELD:
                continue
            _release(job)
            if job.status == JobStatus.CANCELLING:
                job_transition(
                    job=job, to=JobStatus.CANCELLED, message="Cancelled as the hub stopped."
                )
            else:
                Job.objects.filter(pk=job.pk).update(attempts=max(job.attempts - 1, 0))
                job_transition(
                    job=job,
                    to=JobStatus.PENDING,
                    message="The hub was stopped while this job ran; it is back in the queue and "
                    "continues when the hub runs again"
                    + (
                        " (from its last checkpoint)."
                        if runner_for(job.kind).resume_point(job)
                        else "."
                    ),
                )
                transaction.on_commit(functools.partial(dispatch.send, job))
            count += 1
    return count


def _release(job: Job) -> None:
    """Take the job from its worker: any write it still tries is refused (ClaimLost)."""
    Job.objects.filter(pk=job.pk).update(claim_token="", worker="")
    job.claim_token, job.worker = "", ""
