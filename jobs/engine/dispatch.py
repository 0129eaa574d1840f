"""Putting jobs on the queue."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from kombu.utils.url import maybe_sanitize_url

from hubsite.redis_breaker import breaker, unreachable
from jobs.domain.devices import attribute_queue_part, device_slug
from jobs.domain.events import EventType, publish
from jobs.domain.state import job_transition
from jobs.domain.status import JobStatus
from jobs.models import Hardware, Job, StatusLog

logger = logging.getLogger(__name__)


RUN_JOB = "jobs.tasks.run_job"  # the Celery task that runs the fairest pending job


def enqueue_on_commit(job: Job) -> None:
    transaction.on_commit(lambda: enqueue(job))


def queue_for(job: Job) -> str:
    """The queue of the workers that can run the job (with the default HUB_NAMESPACE):
    ``hub.device.<device>`` for a job that names a device, ``hub.attr.<key>.<value>`` for one
    that asks for an attribute, ``hub.gpu`` / ``hub.cpu`` for a customization that asks for a
    GPU or the CPU, ``hub`` for any worker. Only the workers that can take the job consume its
    queue: a worker that cannot would take the message and leave the job waiting."""
    default = str(settings.CELERY_TASK_DEFAULT_QUEUE)
    if job.device is not None:
        return f"{default}.device.{device_slug(job.device.name)}"
    if job.device_attribute:
        return f"{default}.attr.{attribute_queue_part(job.device_attribute)}"
    if job.hardware in (Hardware.GPU, Hardware.CPU):
        return f"{default}.{job.hardware}"
    return default


def worker_queues() -> str:
    """The queues a job worker on this machine is started with (celery's -Q): jobs for any
    worker, CPU jobs, and GPU jobs if it has a GPU. Its device's queue and its attributes'
    queues it adds itself as it starts (jobs.engine.watchdog), from what it announces."""
    from jobs.engine.training.device import has_gpu

    default = str(settings.CELERY_TASK_DEFAULT_QUEUE)
    return ",".join([default, f"{default}.cpu", *([f"{default}.gpu"] if has_gpu() else [])])


WAITING = {
    Hardware.GPU: "Queued for a worker with a GPU (queue {queue}); it waits until one is free. "
    "Without a GPU worker serving {queue}, it waits until its time limit.",
    Hardware.CPU: "Queued for a CPU worker (queue {queue}); waiting for a worker.",
    Hardware.ANY: "Queued; waiting for a worker.",
}


def waiting_words(job: Job) -> str:
    """The status log's words for a job put on its queue."""
    if job.device is not None:
        target = f"device {job.device.name}"
    elif job.device_attribute:
        target = f"a device with {job.device_attribute}"
    else:
        return WAITING[Hardware(job.hardware)].format(queue=queue_for(job))
    from jobs.domain.queue import workers_able

    able = workers_able(job)
    if able:
        return f"Queued for {target} (queue {queue_for(job)}; {able} worker{'s' if able != 1 else ''} online)."
    return (
        f"Queued for {target} (queue {queue_for(job)}); no worker of it is online now: it starts "
        "when one is, or fails at its time limit."
    )


def enqueue(job: Job) -> None:
    """CREATED → PENDING, then a message on the queue for a worker."""
    job_transition(job=job, to=JobStatus.PENDING, message=waiting_words(job))
    send(job)


def send(job: Job) -> bool:
    """A message for a pending job; True if the broker took it. If the broker cannot be reached
    (down, or hung: every call has a timeout) the job stays pending: the database is the record
    of what must run, and ``resend_missing`` (run with the reaper) sends it once the broker is
    back. A second message for a job is harmless: a job is claimed once, by token. The task is
    named, not imported: the tasks module sits above this one (it runs what this queues)."""
    try:
        # A broker in Redis that did not answer a moment ago is not asked again (the circuit
        # is open): the job waits pending, as when the send fails, without the wait.
        if settings.HUB_LIVE_VIA_REDIS:
            breaker.check()
        # No time limit of this job's on the message: a worker may take another job with it
        # (fair scheduling); CELERY_TASK_TIME_LIMIT bounds every task by the operator's limit.
        # One attempt, bounded by the transport's socket timeouts (about two seconds on a hung
        # broker): a submission answers at once, its job pending, whatever the broker does;
        # resend_missing is the retry.
        current_app.send_task(RUN_JOB, args=(job.pk,), queue=queue_for(job), retry=False)
    except Exception as error:  # kombu and the transports raise many kinds; all mean "not sent"
        if settings.HUB_LIVE_VIA_REDIS and unreachable(error):
            breaker.trip(error)
        logger.warning("Could not queue job %s (it stays pending): %s", job.public_id, error)
        _note_unsent(job, error)
        return False
    Job.objects.filter(pk=job.pk).update(sent_at=timezone.now())
    return True


def _note_unsent(job: Job, error: Exception) -> None:
    with transaction.atomic():
        entry = StatusLog.objects.create(
            job=job,
            status=JobStatus.PENDING,
            message="The job queue could not be reached; the job waits here and is sent to a "
            "worker as soon as the queue is back.",
            detail=f"{type(error).__name__}: {maybe_sanitize_url(str(error))}"[:2000],
            updated_at=timezone.now(),
        )
        publish(
            job,
            EventType.LOG,
            {
                "status": entry.status,
                "message": entry.message,
                "detail": entry.detail,
                "updated_at": entry.updated_at.isoformat(),
            },
        )


def waiting_messages(queues: list[str]) -> dict[str, int]:
    """Messages the broker holds, per queue (taken but unacknowledged ones are running)."""
    from kombu.exceptions import ChannelError

    if settings.HUB_LIVE_VIA_REDIS:
        breaker.check()
    counts: dict[str, int] = {}
    with current_app.connection_for_read() as connection:
        channel: Any = connection.default_channel  # a kombu virtual channel: queue_declare
        for queue in queues:
            try:
                counts[queue] = channel.queue_declare(queue=queue, passive=True).message_count
            except ChannelError:  # never declared: nothing was ever sent to it
                counts[queue] = 0
    return counts


def resend_missing(now: datetime | None = None) -> int:
    """Send again what the broker lost: per queue, as many messages as pending jobs outnumber
    the messages waiting there (a Redis restart without persistence, a send that failed). Only
    jobs whose last send is older than HUB_PENDING_RESEND_AFTER count, so a message on its way
    is not doubled. Returns the messages sent."""
    now = now or timezone.now()
    bound = now - timedelta(seconds=settings.HUB_PENDING_RESEND_AFTER)
    pending = list(
        Job.objects.filter(status=JobStatus.PENDING)
        .select_related("device")
        .only(
            "pk",
            "public_id",
            "hardware",
            "device_attribute",
            "device__name",
            "sent_at",
            "created_at",
        )
    )
    stale = [job for job in pending if (job.sent_at or job.created_at) < bound]
    if not stale:
        return 0
    by_queue: dict[str, list[Job]] = {}
    for job in pending:
        by_queue.setdefault(queue_for(job), []).append(job)
    try:
        waiting = waiting_messages(sorted(by_queue))
    except Exception as error:  # the broker is still away: try again at the next run
        logger.warning("Cannot count the queued messages: %s", error)
        return 0
    sent = 0
    for queue, jobs in by_queue.items():
        missing = len(jobs) - waiting.get(queue, 0)
        candidates = sorted(
            (j for j in jobs if (j.sent_at or j.created_at) < bound),
            key=lambda j: j.sent_at or j.created_at,
        )
        for job in candidates[: max(missing, 0)]:
            if send(job):
                sent += 1
    if sent:
        logger.info("Sent %d message(s) again for pending jobs the broker did not hold", sent)
    return sent
