"""Every job worker keeps the hub healthy beside running jobs: a thread in its main process
says every HUB_REAPER_INTERVAL seconds that the worker is alive (WorkerSeen, for /healthz and
`hub doctor`) and reaps when it is its turn (reaper.reap_if_due). So reaping does not depend on
one control worker: while any worker lives, lost jobs are requeued and lost messages resent.
A database that is away makes a round fail and the next one try again; nothing here raises."""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery.signals import worker_ready, worker_shutdown
from django.conf import settings
from django.db import connections
from django.utils import timezone

from jobs.engine.execution import hardware_served
from jobs.engine.reaper import reap_if_due
from jobs.models import WorkerSeen

logger = logging.getLogger(__name__)

_stop = threading.Event()


def beat_once(name: str, queues: str) -> dict[str, int] | None:
    """One round: say this worker is alive, then reap if it is this worker's turn."""
    try:
        # One UPDATE (an INSERT the first time), not update_or_create's locking transaction.
        seen = {"hardware": hardware_served(), "queues": queues[:300], "seen_at": timezone.now()}
        if not WorkerSeen.objects.filter(name=name[:200]).update(**seen):
            WorkerSeen.objects.get_or_create(name=name[:200], defaults=seen)
        return reap_if_due(name)
    finally:
        connections.close_all()  # a round after an outage must not reuse a dead connection


def _loop(name: str, queues: str) -> None:
    while not _stop.wait(settings.HUB_REAPER_INTERVAL):
        try:
            beat_once(name, queues)
        except Exception as error:  # the database or the broker is away: the next round retries
            logger.warning("Watchdog round of %s failed: %s", name, error)


@worker_ready.connect
def _start(sender: Any = None, **kwargs: Any) -> None:
    name = getattr(sender, "hostname", None) or "worker"
    queues = (
        ",".join(sorted(q.name for q in getattr(sender.app.amqp, "queues", {}).values()))
        if sender
        else ""
    )
    if settings.HUB_CONTROL_QUEUE in queues.split(","):
        return  # the control worker reaps from beat already
    _stop.clear()
    threading.Thread(target=_loop, args=(name, queues), name="hub-watchdog", daemon=True).start()


@worker_shutdown.connect
def _shutdown(**kwargs: Any) -> None:
    _stop.set()
