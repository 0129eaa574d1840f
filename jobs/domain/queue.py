"""Where a pending job stands in the queue, and why it waits, in words a person can act on.

Workers take the fairest pending job (jobs/engine/execution.claim_next: one job per person in
turn, a person's own jobs oldest first), so a job's place is an estimate: the owner's own older
pending jobs, plus, for every other person waiting, as many of their jobs as there are turns
before this one (and one more if they have waited longer). Who runs fewer jobs goes first in
the real order; the estimate leaves that out. What the job waits for is read from the workers' own reports (WorkerSeen).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, Min, Q
from django.utils import timezone

from jobs.domain.status import JobStatus
from jobs.models import Hardware, Job, WorkerSeen

WORKER_FRESH = 3  # a worker is alive if it reported within this many reaper intervals


def queue_position(job: Job) -> dict[str, Any] | None:
    """``{"ahead", "running", "workers", "reason"}`` for a pending job; None for any other."""
    if job.status != JobStatus.PENDING:
        return None
    pending = Job.objects.filter(status=JobStatus.PENDING).exclude(pk=job.pk)
    own_before = pending.filter(owner_id=job.owner_id).filter(
        Q(created_at__lt=job.created_at) | Q(created_at=job.created_at, pk__lt=job.pk)
    )
    turn = own_before.count() + 1  # this job goes in its owner's turn number ``turn``
    own_oldest = min(
        [
            job.created_at,
            *own_before.order_by("created_at").values_list("created_at", flat=True)[:1],
        ]
    )
    others = (
        pending.exclude(owner_id=job.owner_id)
        .values("owner_id")
        .annotate(n=Count("pk"), oldest=Min("created_at"))
    )
    # Someone waiting longer goes first in each turn, including this job's; someone waiting
    # less, only in the turns before it.
    ahead = (
        turn
        - 1
        + sum(min(row["n"], turn if row["oldest"] < own_oldest else turn - 1) for row in others)
    )
    running = Job.objects.filter(status__in=[JobStatus.RUNNING, JobStatus.CANCELLING]).count()
    alive = _alive()
    able = [worker for worker in alive if _can_take(worker, job)]
    return {
        "ahead": ahead,
        "running": running,
        "workers": len(able),
        "reason": _reason(job, ahead, running, len(able), len(alive)),
    }


def _alive() -> list[WorkerSeen]:
    fresh = timezone.now() - timedelta(seconds=WORKER_FRESH * settings.HUB_REAPER_INTERVAL)
    return list(WorkerSeen.objects.filter(seen_at__gte=fresh).select_related("device"))


def _can_take(worker: WorkerSeen, job: Job) -> bool:
    """What the worker's claim asks of a job (jobs.engine.execution.jobs_served), here from
    what it last reported."""
    if job.hardware not in (worker.hardware or []):
        return False
    if job.device_id is not None and worker.device_id != job.device_id:
        return False
    attributes = worker.device.attributes if worker.device is not None else []
    return not job.device_attribute or job.device_attribute in attributes


def workers_able(job: Job) -> int:
    """Workers alive now that can take the job."""
    return sum(1 for worker in _alive() if _can_take(worker, job))


def _reason(job: Job, ahead: int, running: int, able: int, alive: int) -> str:
    if able == 0:
        if job.device_id is not None:
            assert job.device is not None
            return (
                f"No worker of device {job.device.name} is online (last seen "
                f"{job.device.last_seen_at:%Y-%m-%d %H:%M} UTC): it starts when one is, or "
                "fails at its time limit."
            )
        if job.device_attribute:
            return (
                f"No worker of a device with {job.device_attribute} is online: it starts when "
                "one is, or fails at its time limit."
            )
        if job.hardware == Hardware.GPU:
            return (
                "No worker with a GPU is running: it starts when one is (a worker on a machine "
                "with a GPU serves GPU jobs), or fails at its time limit."
            )
        if alive == 0:
            return (
                "No worker is running: it starts when one is (./serve.sh runs one beside the "
                "hub; in production, start the Celery job workers)."
            )
        return "No worker that runs this kind of hardware is running."
    jobs = "job" if ahead == 1 else "jobs"
    queue = f"{ahead} {jobs} ahead of it (one job per person in turn)" if ahead else "next in line"
    busy = f"{running} running on {able} worker{'s' if able != 1 else ''}"
    return f"{queue.capitalize() if ahead == 0 else queue}; {busy}."
