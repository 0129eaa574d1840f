"""Committed events published to the web processes that watch them, through Redis pub/sub.

The domain records each event and, once it is committed, sends ``event_committed``
(jobs/domain/events.py); this module publishes it once to the job's Redis channel (and, for
events a job list shows, once to each reader's channel). Each web process subscribes once per job
its sockets watch and fans the event out to them (jobs/live/fanout.py): one Redis operation per
event, whatever number of sockets watch it.

Publishing never blocks its caller: events are handed to one thread per process, which sends
whatever has accumulated in one pipelined round trip, each bounded by a timeout. Failure is
logged, not raised: the event is stored, and every web process reads what Redis lost from the
database at its next tick. In the embedded profile there is no Redis: nothing is published, the
web process reads new events from the database.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
from collections.abc import Iterable
from typing import Any

import orjson
import redis
from django.conf import settings
from django.dispatch import receiver

from hubsite.redis_breaker import GuardedPool
from jobs.domain.events import EventMessage, event_committed

logger = logging.getLogger(__name__)

SEND_TIMEOUT = 2.0  # one round trip; a hung Redis costs the sending thread this, never the caller
MAX_BACKLOG = 10_000  # messages waiting for Redis; past it the oldest are dropped (and repaired)
ACCESS_CHECK = {"type": "access.check"}  # on a person's channel: their sockets check access again


def job_channel(job_id: int) -> str:
    return f"{settings.HUB_NAMESPACE}:live:job:{job_id}"


def person_channel(user_id: int) -> str:
    """A person's job list events and access checks, heard by all their sockets."""
    return f"{settings.HUB_NAMESPACE}:live:person:{user_id}"


@receiver(event_committed)
def _deliver(
    sender: Any, job_id: int, readers: Iterable[int], message: EventMessage, **kwargs: Any
) -> None:
    payload = orjson.dumps(message)
    publish([(job_channel(job_id), payload)] + [(person_channel(r), payload) for r in readers])


def announce_to_person(user_id: int, message: dict[str, Any]) -> None:
    publish([(person_channel(user_id), orjson.dumps(message))])


def publish(messages: list[tuple[str, bytes]]) -> None:
    """Hand (channel, payload) pairs to this process's publisher; returns at once."""
    if not settings.HUB_LIVE_VIA_REDIS or not messages:
        return
    _publisher().hand_over(messages)


def connect_sync(timeout: float = SEND_TIMEOUT) -> redis.Redis:
    """A Redis client whose every call has a deadline: a stopped Redis must not hang its caller."""
    assert settings.REDIS_URL is not None
    # Through the process's circuit breaker: a Redis that just timed out is not waited for again.
    pool = GuardedPool.from_url(
        settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=timeout
    )
    return redis.Redis(connection_pool=pool)


class _Publisher:
    """One thread that publishes this process's events in the order they were committed."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.queue: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.pending = 0  # handed over and not yet sent or given up on
        self.settled = threading.Condition()
        self.client = connect_sync()
        threading.Thread(target=self._run, name="hub-live-publisher", daemon=True).start()

    def hand_over(self, messages: list[tuple[str, bytes]]) -> None:
        with self.settled:
            self.pending += len(messages)
        for message in messages:
            if self.queue.qsize() >= MAX_BACKLOG:
                with contextlib.suppress(queue.Empty):
                    channel, _ = self.queue.get_nowait()
                    self._done(1)
                    logger.warning("Live publisher backlog full: dropped a message on %s", channel)
            self.queue.put(message)

    def _done(self, count: int) -> None:
        with self.settled:
            self.pending -= count
            if self.pending <= 0:
                self.settled.notify_all()

    def _run(self) -> None:
        while True:
            batch = [self.queue.get()]
            while len(batch) < 1000:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            try:
                pipeline = self.client.pipeline(transaction=False)
                for channel, payload in batch:
                    pipeline.publish(channel, payload)
                pipeline.execute()
            except Exception:
                logger.warning(
                    "Could not publish %d live message(s) to Redis: watchers read them from "
                    "the database at their next tick",
                    len(batch),
                    exc_info=True,
                )
            self._done(len(batch))

    def flush(self, timeout: float) -> bool:
        """Wait until what was handed over has been sent (or given up on): for tests, benchmarks
        and a process about to exit."""
        with self.settled:
            return self.settled.wait_for(lambda: self.pending <= 0, timeout)


def flush(timeout: float = 5.0) -> bool:
    if not settings.HUB_LIVE_VIA_REDIS:
        return True
    return _publisher().flush(timeout)


_instance: _Publisher | None = None
_lock = threading.Lock()


def _publisher() -> _Publisher:
    global _instance
    with _lock:
        # A forked worker child inherits the parent's object but not its thread: make its own.
        if _instance is None or _instance.pid != os.getpid():
            _instance = _Publisher()
        return _instance
