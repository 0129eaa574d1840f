"""Delivery of committed events to the sockets that watch them, through the channel layer.

The domain records each event and, once it is committed, sends ``event_committed``
(jobs/domain/events.py); this module listens and pushes the event to the channel layer groups it
names. Failure is logged, not raised: the event is stored, and a watcher repairs the gap from
its sequence numbers. In the embedded profile there is no shared channel layer: sockets read new
events from the database instead, and nothing is pushed from here.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Iterable
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings
from django.dispatch import receiver

from jobs.domain.events import EventMessage, event_committed

logger = logging.getLogger(__name__)

SEND_TIMEOUT = 2.0  # one group send; a hung Redis costs the sender this, never the caller
MAX_BACKLOG = 10_000  # events waiting for the channel layer; past it the oldest are dropped


@receiver(event_committed)
def _deliver(sender: Any, groups: Iterable[str], message: EventMessage, **kwargs: Any) -> None:
    send(groups, message)


def send(groups: Iterable[str], message: EventMessage) -> None:
    """Push a committed event to channel layer groups. Failure is logged, not raised: the event
    is stored, and a watcher repairs the gap from its sequence numbers."""
    if not settings.HUB_EVENTS_VIA_CHANNEL_LAYER:
        return
    try:
        _sender().send(list(groups), dict(message))
    except Exception:
        logger.warning(
            "Could not push event %s#%s to the channel layer",
            message["job"],
            message["seq"],
            exc_info=True,
        )


class _Sender:
    """One event loop on a thread of its own, so that every send of this process reuses the
    channel layer's connection pool instead of opening one per call (async_to_sync would).
    Callers hand events over and go on: one task sends them in order, each send bounded by
    SEND_TIMEOUT, so a stopped Redis delays events (which watchers then repair from their
    sequence numbers), never the request or the training step that made them."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="hub-events", daemon=True).start()
        self.queue: asyncio.Queue[tuple[list[str], dict[str, Any]]] = (
            asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout=5)
        )

    async def _start(self) -> asyncio.Queue[tuple[list[str], dict[str, Any]]]:
        queue: asyncio.Queue[tuple[list[str], dict[str, Any]]] = asyncio.Queue()
        self._drainer = self.loop.create_task(self._drain(queue))
        return queue

    def send(self, groups: list[str], message: dict[str, Any]) -> None:
        self.loop.call_soon_threadsafe(self._put, groups, message)

    def _put(self, groups: list[str], message: dict[str, Any]) -> None:
        if self.queue.qsize() >= MAX_BACKLOG:
            dropped = self.queue.get_nowait()[1]
            logger.warning(
                "Channel layer backlog full: dropped event %s#%s",
                dropped.get("job"),
                dropped.get("seq"),
            )
        self.queue.put_nowait((groups, message))

    async def _drain(self, queue: asyncio.Queue[tuple[list[str], dict[str, Any]]]) -> None:
        while True:
            groups, message = await queue.get()
            try:
                await asyncio.wait_for(self._send(groups, message), SEND_TIMEOUT)
            except Exception:
                logger.warning(
                    "Could not push event %s#%s to the channel layer",
                    message.get("job"),
                    message.get("seq"),
                    exc_info=True,
                )

    def flush(self, timeout: float) -> None:
        """Wait until what was handed over has been sent (or given up on): for tests and for a
        process about to exit."""

        async def empty() -> None:
            while not self.queue.empty():
                await asyncio.sleep(0.01)

        asyncio.run_coroutine_threadsafe(empty(), self.loop).result(timeout=timeout)

    @staticmethod
    async def _send(groups: list[str], message: dict[str, Any]) -> None:
        layer = get_channel_layer()
        assert layer is not None
        for group in groups:
            await layer.group_send(group, message)


def run_on_sender(coroutine: Any, timeout: float) -> Any:
    """Run a channel-layer coroutine on this process's sender loop (from synchronous code)."""
    sender = _sender()
    return asyncio.run_coroutine_threadsafe(coroutine, sender.loop).result(timeout=timeout)


_sender_instance: _Sender | None = None
_sender_lock = threading.Lock()


def _sender() -> _Sender:
    global _sender_instance
    with _sender_lock:
        # A forked worker child inherits the parent's object but not its thread: make its own.
        if _sender_instance is None or _sender_instance.pid != os.getpid():
            _sender_instance = _Sender()
        return _sender_instance
