"""Live fan-out: one subscription per web process for each job and person its sockets watch.

Workers and web processes publish each committed event once to Redis (jobs/live/delivery.py).
The station of a web process (one per event loop: ``station()``) subscribes once per watched
job, however many of its sockets watch it, encodes each event once, and offers it to every one
of those sockets, which keep it in a bounded buffer (jobs/live/consumers.py).

Nothing is silently missed. Redis pub/sub delivers at most once (nothing while Redis restarts,
nothing to a process not yet subscribed), so the database stays the record: the station knows
the last sequence number it handed on for each job, and a number that skips ahead is read from
the stored events, once for all its sockets. Every tick it reads the latest sequence number of
every watched job in one query, so an event Redis lost, even a job's last one (after which
nothing else would come), is found within a tick; each socket then gets a heartbeat carrying
that number, which pages and clients compare with what they have. A socket too slow for its
buffer is told of the gap and reads it from the store by itself.

In the embedded profile there is no Redis: the tick is the only delivery, four times a second,
still one query per web process rather than one per socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

import orjson
from django.conf import settings
from django.db import DatabaseError, connections

from hubsite import metrics
from hubsite.redis_breaker import UNREACHABLE, breaker
from jobs.domain.events import EventMessage, events_after
from jobs.live.delivery import job_channel, person_channel
from jobs.models import Job

logger = logging.getLogger(__name__)
T = TypeVar("T")

HEARTBEAT_SECONDS = 1.0  # how often each socket hears its job's latest sequence number
SUBSCRIBE_WAIT = 1.0  # a socket's connect waits this long at most for Redis to confirm
IDLE_CLOSE = 10.0  # a web process with no socket for this long closes its subscription


# The live layer's database steps run on these threads, each keeping its own connection from
# one step to the next: opening a page costs its queries, not a new connection (thousands of
# pages opened at once would otherwise each pay PostgreSQL's connection set-up, twice).
LIVE_DB_THREADS = 8
CONNECTION_LIFETIME = 300.0  # seconds: then a thread's connection is closed and made afresh
_executor = ThreadPoolExecutor(max_workers=LIVE_DB_THREADS, thread_name_prefix="live-db")
_opened = threading.local()  # when this thread's connection was opened (time.monotonic())


def in_thread(function: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    """A database step of the live layer, run on one of its threads (not Channels' one database
    thread, where every socket's reads would queue behind one another's). The context is the
    thread's own, not the caller's (``run_in_executor`` copies none), so its connection is the
    thread's: never shared with a step running at the same time elsewhere."""

    async def step(*args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            _executor, functools.partial(_on_this_threads_connection, function, args, kwargs)
        )

    return step


def _on_this_threads_connection(function: Callable[..., T], args: Any, kwargs: Any) -> T:
    opened = getattr(_opened, "at", None)
    if opened is not None and time.monotonic() - opened > CONNECTION_LIFETIME:
        connections.close_all()
        opened = None
    try:
        result = function(*args, **kwargs)
    except DatabaseError:
        # The connection may be broken (a restarted server): the next step makes a new one.
        connections.close_all()
        _opened.at = None
        raise
    if opened is None:
        _opened.at = time.monotonic()
    return result


def close_connections() -> None:
    """Close the connection of every live thread (tests, before their database goes): one task
    a thread, held at a barrier until each thread has one."""
    barrier = threading.Barrier(LIVE_DB_THREADS)

    def close_here() -> None:
        connections.close_all()
        _opened.at = None
        barrier.wait(timeout=10)

    for done in [_executor.submit(close_here) for _ in range(LIVE_DB_THREADS)]:
        done.result(timeout=30)


def tick_seconds() -> float:
    """How often the station reads the watched jobs' latest sequence numbers: each heartbeat with
    Redis (which delivers the events themselves); four times a second without it."""
    return HEARTBEAT_SECONDS if settings.HUB_LIVE_VIA_REDIS else 0.25


FrameKind = Literal["event", "heartbeat", "stale", "gone", "access", "list", "gap"]


@dataclass(frozen=True, slots=True)
class Frame:
    """What the station offers a socket. ``text`` is the message for the client, encoded once
    for every socket; ``stale`` asks for a fresh snapshot (the missed events are no longer
    stored), ``gone`` says the job no longer exists, ``access`` to check access again, ``list``
    is an event for a person's job list, and ``gap`` is what a socket whose buffer overflowed
    leaves itself in place of what it dropped."""

    kind: FrameKind
    seq: int = 0
    text: str = ""
    event: str = ""


class Listener(Protocol):
    def offer(self, frame: Frame) -> None:
        """Take a frame without waiting (a socket buffers it or notes that it fell behind)."""


def client_event(message: EventMessage) -> dict[str, Any]:
    """An event as watchers receive it."""
    return {
        "type": "event",
        "job": message["job"],
        "seq": message["seq"],
        "event": message["event"],
        "data": message["data"],
    }


def _encoded(content: dict[str, Any]) -> str:
    return orjson.dumps(content).decode()


@dataclass(eq=False)
class _Stream:
    """One watched job in this process: its sockets and the last sequence number handed on."""

    job_id: int
    public_id: str
    seen: int
    listeners: set[Listener] = field(default_factory=set)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    beat_at: float = 0.0
    subscribed: bool = False  # Redis confirmed the subscription (the tick retries until it does)


class Station:
    def __init__(self) -> None:
        self.streams: dict[int, _Stream] = {}
        self.people: dict[int, set[Listener]] = {}
        self.redis: Any = None
        self.pubsub: Any = None
        self.reader: asyncio.Task[None] | None = None
        self.ticker: asyncio.Task[None] | None = None
        self.confirmations: dict[str, asyncio.Future[None]] = {}
        self.commands = asyncio.Lock()  # subscribe and unsubscribe, one at a time

    # Sockets come and go

    async def watch_job(self, job: Job, listener: Listener) -> int:
        """Offer ``listener`` every event of ``job`` from now on; returns the last sequence
        number handed on, so that a socket whose snapshot is older reads the difference from
        the store. ``job`` is as the socket just read it. The first socket of a job in this
        process waits until Redis confirms the subscription (at most SUBSCRIBE_WAIT), then
        reads the job's latest number: what was committed in between is handed on too."""
        stream = self.streams.get(job.pk)
        if stream is not None:
            stream.listeners.add(listener)
            return stream.seen
        stream = self.streams[job.pk] = _Stream(job.pk, job.public_id, job.event_seq)
        stream.listeners.add(listener)
        self._start_ticking()
        if settings.HUB_LIVE_VIA_REDIS:
            await self._subscribe(job_channel(job.pk))
            latest = await in_thread(_latest_seq)(job.pk)
            async with stream.lock:
                if latest > stream.seen:
                    await self._repair(stream)
        return stream.seen

    def unwatch_job(self, job_id: int, listener: Listener) -> None:
        stream = self.streams.get(job_id)
        if stream is None:
            return
        stream.listeners.discard(listener)
        if not stream.listeners:
            del self.streams[job_id]
            self._unsubscribe(job_channel(job_id))

    async def watch_person(self, user_id: int, listener: Listener) -> None:
        """Offer ``listener`` the person's job list events and access checks (with Redis; the
        embedded profile's sockets check and read on their own)."""
        if not settings.HUB_LIVE_VIA_REDIS:
            return
        listeners = self.people.setdefault(user_id, set())
        listeners.add(listener)
        if len(listeners) == 1:
            await self._subscribe(person_channel(user_id))

    def unwatch_person(self, user_id: int, listener: Listener) -> None:
        listeners = self.people.get(user_id)
        if listeners is None:
            return
        listeners.discard(listener)
        if not listeners:
            del self.people[user_id]
            self._unsubscribe(person_channel(user_id))

    def idle(self) -> bool:
        return not self.streams and not self.people

    # Redis

    async def _subscribe(self, channel: str) -> None:
        if not settings.HUB_LIVE_VIA_REDIS:
            return
        if breaker.is_open:  # Redis hangs: the tick delivers, and subscribes once it is back
            return
        confirmed = asyncio.get_running_loop().create_future()
        self.confirmations[channel] = confirmed
        try:
            # One command at a time: two subscribes racing on a fresh subscription would each
            # open a connection, and messages on the one not read would never arrive.
            async with self.commands:
                if self.pubsub is None:
                    self.redis = _connect_async()
                    self.pubsub = self.redis.pubsub()
                await asyncio.wait_for(self.pubsub.subscribe(channel), SUBSCRIBE_WAIT)
                if self.reader is None:
                    self.reader = asyncio.create_task(self._read(), name="hub-live-reader")
            await asyncio.wait_for(asyncio.shield(confirmed), SUBSCRIBE_WAIT)
        except Exception as error:  # the tick delivers what Redis does not
            logger.warning("Live subscription to %s not confirmed: %s", channel, repr(error))
            if isinstance(error, UNREACHABLE):  # asyncio's TimeoutError too: Redis hangs
                breaker.trip(error)
        finally:
            self.confirmations.pop(channel, None)

    def _unsubscribe(self, channel: str) -> None:
        if self.pubsub is not None:
            self._in_background(self._send_unsubscribe(channel))

    @staticmethod
    def _in_background(work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        _background.add(task)  # kept until done: the loop holds tasks only weakly
        task.add_done_callback(_background.discard)

    async def _send_unsubscribe(self, channel: str) -> None:
        async with self.commands:
            if self.pubsub is None or self._wanted(channel):
                return  # closed meanwhile, or watched again since: keep it
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.pubsub.unsubscribe(channel), SUBSCRIBE_WAIT)

    def _wanted(self, channel: str) -> bool:
        _, kind, ident = channel.rsplit(":", 2)
        return int(ident) in (self.streams if kind == "job" else self.people)

    async def _read(self) -> None:
        """Hand on what Redis brings, until no socket of this process has watched anything for
        IDLE_CLOSE seconds (then the subscription's connection is closed)."""
        loop = asyncio.get_running_loop()
        idle_since: float | None = None
        while True:
            if self.idle():
                idle_since = idle_since or loop.time()
                if loop.time() - idle_since >= IDLE_CLOSE and await self._close_if_idle():
                    return
            else:
                idle_since = None
            try:
                message = await self.pubsub.get_message(timeout=1.0)
            except Exception as error:  # Redis went away: its reconnect resubscribes
                logger.warning("Live subscription interrupted: %s", repr(error))
                await asyncio.sleep(0.5)
                continue
            if message is None:
                continue
            try:
                await self._arrived(message)
            except Exception as error:  # the database away during a repair: the tick retries
                logger.warning("Live event not handed on: %s", repr(error))

    async def _close_if_idle(self) -> bool:
        async with self.commands:
            if not self.idle():
                return False
            pubsub, client = self.pubsub, self.redis
            self.reader = self.pubsub = self.redis = None
        with contextlib.suppress(Exception):
            await pubsub.aclose()
            await client.aclose()
        return True

    async def _arrived(self, message: dict[str, Any]) -> None:
        channel = message["channel"].decode()
        if message["type"] == "subscribe":
            confirmed = self.confirmations.get(channel)
            if confirmed is not None and not confirmed.done():
                confirmed.set_result(None)
            _, kind, ident = channel.rsplit(":", 2)
            if kind == "job" and (stream := self.streams.get(int(ident))) is not None:
                stream.subscribed = True
            return
        if message["type"] != "message":
            return
        _, kind, ident = channel.rsplit(":", 2)  # {namespace}:live:{kind}:{id}
        content = orjson.loads(message["data"])
        if kind == "job":
            stream = self.streams.get(int(ident))
            if stream is not None:
                async with stream.lock:
                    await self._take(stream, content)
        elif kind == "person":
            if content.get("type") == "access.check":
                frame = Frame("access")
            else:
                frame = Frame("list", content["seq"], _encoded(client_event(content)))
            for listener in list(self.people.get(int(ident), ())):
                listener.offer(frame)

    async def _take(self, stream: _Stream, message: EventMessage) -> None:
        """One event from Redis: handed on if it is the next, read from the store with what
        was skipped if it is further on, dropped if already handed on."""
        if message["seq"] == stream.seen + 1:
            stream.seen = message["seq"]
            self._hand_on(stream, message)
        elif message["seq"] > stream.seen:
            await self._repair(stream)

    # The database: the record of every event

    async def _repair(self, stream: _Stream) -> None:
        metrics.GAPS_REPAIRED.inc()
        latest, missed = await in_thread(_stored_after)(stream.job_id, stream.seen)
        if latest is None:
            self._offer(stream, Frame("gone"))
            return
        if missed is None:  # no longer all stored: each socket takes a fresh snapshot
            stream.seen = latest
            self._offer(stream, Frame("stale", latest))
            return
        for message in missed:
            if message["seq"] > stream.seen:
                stream.seen = message["seq"]
                self._hand_on(stream, message)

    def _start_ticking(self) -> None:
        if self.ticker is None:
            self.ticker = asyncio.create_task(self._tick(), name="hub-live-tick")

    async def _tick(self) -> None:
        """Read the latest sequence number of every watched job, repair what was lost, and
        send each socket a heartbeat. Ends when no socket of this process watches a job."""
        loop = asyncio.get_running_loop()
        try:
            while self.streams:
                await asyncio.sleep(tick_seconds())
                if not self.streams:
                    break
                try:
                    latest = await in_thread(_latest_seqs)(list(self.streams))
                except Exception as error:  # the database is away: sockets keep what they have
                    logger.warning("Live tick could not read the database: %s", error)
                    continue
                for job_id, stream in list(self.streams.items()):
                    channel = job_channel(job_id)
                    if (
                        settings.HUB_LIVE_VIA_REDIS
                        and not stream.subscribed
                        and channel not in self.confirmations
                    ):
                        # Redis was away when the first socket came: subscribe again, meanwhile
                        # the tick delivers.
                        self._in_background(self._subscribe(channel))
                    async with stream.lock:
                        if job_id not in latest:
                            self._offer(stream, Frame("gone"))
                            continue
                        if latest[job_id] > stream.seen:
                            try:
                                await self._repair(stream)
                            except Exception as error:  # tried again at the next tick
                                logger.warning("Live repair failed: %s", repr(error))
                        if loop.time() - stream.beat_at >= HEARTBEAT_SECONDS - 0.01:
                            stream.beat_at = loop.time()
                            beat = {
                                "type": "heartbeat",
                                "job": stream.public_id,
                                "seq": stream.seen,
                            }
                            self._offer(stream, Frame("heartbeat", stream.seen, _encoded(beat)))
        finally:
            self.ticker = None
            if self.streams:  # a socket came between the last check and here
                self._start_ticking()

    def _hand_on(self, stream: _Stream, message: EventMessage) -> None:
        frame = Frame("event", message["seq"], _encoded(client_event(message)), message["event"])
        self._offer(stream, frame)

    @staticmethod
    def _offer(stream: _Stream, frame: Frame) -> None:
        for listener in list(stream.listeners):
            listener.offer(frame)


def _connect_async() -> Any:
    import redis.asyncio

    assert settings.REDIS_URL is not None
    # No socket timeout: a subscription waits for messages; get_message bounds each wait.
    return redis.asyncio.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1)


def _latest_seq(job_id: int) -> int:
    return Job.objects.filter(pk=job_id).values_list("event_seq", flat=True).first() or 0


def _latest_seqs(job_ids: list[int]) -> dict[int, int]:
    return dict(Job.objects.filter(pk__in=job_ids).values_list("pk", "event_seq"))


def _stored_after(job_id: int, after: int) -> tuple[int | None, list[EventMessage] | None]:
    """The job's latest sequence number and its stored events after ``after`` (None: not all
    stored any more); (None, None) when the job no longer exists."""
    job = Job.objects.filter(pk=job_id).only("id", "public_id", "event_seq").first()
    if job is None:
        return None, None
    return job.event_seq, events_after(job, after)


_background: set[asyncio.Task[None]] = set()
_stations: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Station] = (
    weakref.WeakKeyDictionary()
)


def station() -> Station:
    """This event loop's station (a web process has one loop; tests make one per test)."""
    loop = asyncio.get_running_loop()
    found = _stations.get(loop)
    if found is None:
        found = _stations[loop] = Station()
    return found
