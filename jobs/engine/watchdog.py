"""Every job worker keeps the hub healthy beside running jobs: a thread in its main process
says every HUB_REAPER_INTERVAL seconds that the worker is alive and what machine it runs on
(WorkerSeen and its Device, for the device pages, /healthz and `hub doctor`) and reaps when it is
its turn (reaper.reap_if_due). A job worker also consumes its device's queues, whatever -Q it
was started with. So reaping does not depend on
one control worker: while any worker lives, lost jobs are requeued and lost messages resent.
A database that is away makes a round fail and the next one try again; nothing here raises."""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery.signals import (
    celeryd_after_setup,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)
from django.conf import settings
from django.db import connections
from django.utils import timezone

from jobs.domain.devices import register, this_machine, worker_queue_names
from jobs.engine.execution import hardware_served
from jobs.engine.reaper import reap_if_due
from jobs.models import WorkerSeen

logger = logging.getLogger(__name__)

_stop = threading.Event()


def beat_once(name: str, queues: str) -> dict[str, int] | None:
    """One round: say this worker is alive, then reap if it is this worker's turn."""
    try:
        # One UPDATE (an INSERT the first time), not update_or_create's locking transaction.
        device = register(this_machine())
        seen = {
            "hardware": hardware_served(),
            "queues": queues[:1000],
            "seen_at": timezone.now(),
            "device": device,
        }
        if not WorkerSeen.objects.filter(name=name[:200]).update(**seen):
            WorkerSeen.objects.get_or_create(
                name=name[:200], defaults={**seen, "started_at": seen["seen_at"]}
            )
        return reap_if_due(name)
    finally:
        connections.close_all()  # a round after an outage must not reuse a dead connection


def _loop(name: str, queues: str) -> None:
    while not _stop.wait(settings.HUB_REAPER_INTERVAL):
        try:
            beat_once(name, queues)
        except Exception as error:  # the database or the broker is away: the next round retries
            logger.warning("Watchdog round of %s failed: %s", name, error)


def runs_jobs(queues: Any) -> bool:
    """Whether a worker consuming ``queues`` runs jobs: not the control worker, nor a worker
    that only answers "Try it" prompts (it announces no device and takes no device's jobs)."""
    special = {settings.HUB_CONTROL_QUEUE, settings.HUB_GENERATION_QUEUE}
    names = set(queues)
    return settings.HUB_CONTROL_QUEUE not in names and not names <= special


@celeryd_after_setup.connect
def _device_queues(sender: Any = None, instance: Any = None, **kwargs: Any) -> None:
    """A job worker takes its device's and its attributes' queues too, whatever -Q says: a job
    that names the device is sent there, and only there."""
    if instance is None:
        return
    queues = instance.app.amqp.queues
    if not runs_jobs(queues.consume_from):
        return
    for name in worker_queue_names(str(settings.CELERY_TASK_DEFAULT_QUEUE), this_machine()):
        if name not in queues.consume_from:
            queues.select_add(name)


@worker_ready.connect
def _start(sender: Any = None, **kwargs: Any) -> None:
    name = getattr(sender, "hostname", None) or "worker"
    queues = (
        ",".join(sorted(q.name for q in getattr(sender.app.amqp, "queues", {}).values()))
        if sender
        else ""
    )
    if not runs_jobs(queues.split(",")):
        return  # the control worker reaps from beat already; a generation worker runs no job
    _stop.clear()
    # Announced at once, not after the first interval: a job naming this device is accepted
    # (and its page says a worker is online) as soon as the worker runs.
    try:
        beat_once(name, queues)
    except Exception as error:
        logger.warning("Worker %s could not announce itself: %s", name, error)
    threading.Thread(target=_loop, args=(name, queues), name="hub-watchdog", daemon=True).start()


@worker_shutdown.connect
def _shutdown(**kwargs: Any) -> None:
    _stop.set()


@worker_ready.connect
def _serve_metrics(sender: Any = None, **kwargs: Any) -> None:
    """On a host with no web process: this host's metrics on HUB_METRICS_PORT (hubsite/metrics)."""
    if settings.HUB_METRICS_PORT:
        from hubsite.metrics import serve_host_metrics

        try:
            serve_host_metrics(settings.HUB_METRICS_PORT)
        except OSError as error:  # another worker of this host serves them already
            logger.info("Metrics port %s: %s", settings.HUB_METRICS_PORT, error)


@worker_process_shutdown.connect
def _forget_process(pid: int | None = None, **kwargs: Any) -> None:
    from hubsite.metrics import process_exited

    process_exited(pid)
