"""Putting jobs on the queue."""

from __future__ import annotations

import logging

from celery import current_app
from django.conf import settings
from django.db import transaction
from kombu.utils.url import maybe_sanitize_url

from jobs.domain.state import job_transition
from jobs.domain.status import FailureType, JobStatus
from jobs.models import Hardware, Job

logger = logging.getLogger(__name__)

# Publishing gives up after about a second and a half: a submission whose broker is down must
# answer within seconds, not hang.
RETRY_POLICY = {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1.0}


RUN_JOB = "jobs.tasks.run_job"  # the Celery task that runs the fairest pending job


class QueueUnavailable(Exception):
    """The broker could not be reached; the job was marked failed rather than left waiting."""


def enqueue_on_commit(job: Job) -> None:
    transaction.on_commit(lambda: enqueue(job))


def queue_for(job: Job) -> str:
    """The queue of the workers that can run the job: ``hub.gpu`` for a job that asks for a GPU,
    ``hub.cpu`` for one that asks for the CPU, ``hub`` for any worker (with the default
    HUB_NAMESPACE)."""
    if job.hardware in (Hardware.GPU, Hardware.CPU):
        return f"{settings.CELERY_TASK_DEFAULT_QUEUE}.{job.hardware}"
    return str(settings.CELERY_TASK_DEFAULT_QUEUE)


def worker_queues() -> str:
    """The queues a job worker on this machine consumes (celery's -Q): every job queue its
    hardware serves."""
    from jobs.engine.training.device import has_gpu

    default = str(settings.CELERY_TASK_DEFAULT_QUEUE)
    return ",".join([default, f"{default}.cpu", *([f"{default}.gpu"] if has_gpu() else [])])


WAITING = {
    Hardware.GPU: "Queued for a worker with a GPU (queue {queue}); it waits until one is free. "
    "Without a GPU worker serving {queue}, it waits until its time limit.",
    Hardware.CPU: "Queued for a CPU worker (queue {queue}); waiting for a worker.",
    Hardware.ANY: "Queued; waiting for a worker.",
}


def enqueue(job: Job) -> None:
    """CREATED → PENDING, then a message on the queue for a worker."""
    message = WAITING[Hardware(job.hardware)].format(queue=queue_for(job))
    job_transition(job=job, to=JobStatus.PENDING, message=message)
    send(job)


def send(job: Job) -> None:
    """A message for a pending job; if the broker is unreachable the job fails at once. The task
    is named, not imported: the tasks module sits above this one (it runs what this queues)."""
    try:
        # No time limit of this job's on the message: a worker may take another job with it
        # (fair scheduling); CELERY_TASK_TIME_LIMIT bounds every task by the operator's limit.
        current_app.send_task(
            RUN_JOB, args=(job.pk,), queue=queue_for(job), retry=True, retry_policy=RETRY_POLICY
        )
    except Exception as error:  # kombu and the transports raise many kinds; all mean "not queued"
        logger.error("Could not queue job %s: %s", job.public_id, error)
        job_transition(
            job=job,
            to=JobStatus.FAILED,
            message="The job queue could not be reached, so this job was never queued. "
            "Resubmit it once the hub's queue is back.",
            detail=f"{type(error).__name__}: {error}"[:2000],
            failure_type=FailureType.QUEUE_UNAVAILABLE,
        )
        raise QueueUnavailable(
            f"The job queue ({maybe_sanitize_url(settings.CELERY_BROKER_URL)}) is unreachable; "
            f"job {job.public_id} was not queued and is marked failed."
        ) from error
