"""The websocket of one job: its events, in order, with nothing missed; and a person's job list.

On connect the watcher gets a snapshot (the job and its status details, with the sequence number
they reflect) or, when it says what it last saw (``?after=N``), the events it missed. After
that every event is sent once, in sequence order. Events come from this process's station
(jobs/live/fanout.py), which subscribes once per watched job and offers each event, encoded
once, to every socket that watches it. A socket keeps what it is offered in a bounded buffer
that one task writes out: a client too slow to keep up overflows it, is sent a ``gap`` notice
and then the missed events read from the store. Every second a ``heartbeat`` carries the job's
latest sequence number, so a page or client that has less knows it at once and asks again
(``{"type": "catch_up", "after": N}``).
"""

from __future__ import annotations

import asyncio
import contextlib
import decimal
import json
import logging
import threading
from collections import OrderedDict
from typing import Any

import orjson
from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.utils.functional import Promise

from hubsite import metrics
from jobs.domain.events import LIST_EVENTS, EventMessage, events_after
from jobs.domain.jsonlimits import JSONRefused, loads_bounded
from jobs.domain.selectors import jobs_visible_to, readable_job
from jobs.live.access import credential_holds
from jobs.live.fanout import Frame, client_event, in_thread, station
from jobs.models import Job, JobEvent
from jobs.wire.snapshots import (
    consistent_reads,
    inputs_as_seen,
    job_data_for_everyone,
    status_details,
)

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.25
NOT_FOUND = 4404  # close code: no such job for this person (the same for both cases)
SIGNED_OUT = 4401  # close code: the socket's sign-in no longer holds
RECHECK_SECONDS = 30.0  # with Redis: changes are announced; this only backs the announcements up
MAX_CLIENT_MESSAGE = 4096  # clients send catch-up requests of a few dozen bytes
SOCKET_BUFFER = 256  # frames a socket holds for a slow client before it falls back to the store


def _readable(user: Any, public_id: str) -> Job | None:
    return readable_job(user, public_id)


SNAPSHOTS_KEPT = 256  # jobs whose shared part of a snapshot a web process keeps
_kept: OrderedDict[tuple[int, int, Any], tuple[dict[str, Any], dict[str, Any]]] = OrderedDict()
_kept_lock = threading.Lock()


def _snapshot(job: Job, user: Any) -> dict[str, Any]:
    """The job as ``user`` sees it, at its current sequence number. Call inside
    ``consistent_reads()`` with a freshly read ``job``. All but the inputs is the same for
    every reader, and is built once per job and sequence number: a page link opened by a whole
    team costs the database a few queries a page, not the whole job each time."""
    shared = _kept_part(job)
    if shared is None:
        shared = (job_data_for_everyone(job), status_details(job))
        with _kept_lock:
            _kept[(job.pk, job.event_seq, job.updated_at)] = shared
            while len(_kept) > SNAPSHOTS_KEPT:
                _kept.popitem(last=False)
    return _with_inputs(job, user, shared)


def _kept_part(job: Job) -> tuple[dict[str, Any], dict[str, Any]] | None:
    key = (job.pk, job.event_seq, job.updated_at)
    with _kept_lock:
        shared = _kept.get(key)
        if shared is not None:
            _kept.move_to_end(key)
    return shared


def _with_inputs(
    job: Job, user: Any, shared: tuple[dict[str, Any], dict[str, Any]]
) -> dict[str, Any]:
    everyone, details = shared
    return {
        "type": "snapshot",
        "job": job.public_id,
        "seq": job.event_seq,
        "data": {
            "job": {**everyone, "inputs": inputs_as_seen(job, user)},
            "status_details": details,
        },
    }


Opening = tuple[Job, int | None, list[EventMessage] | dict[str, Any]]


def _open(user: Any, public_id: str, after: int | None) -> Opening | None:
    """What a socket starts with: the job if ``user`` may read it, and either the events after
    ``after`` (with ``after``) or a snapshot (a dict). None: no such job.

    The common case (a page of a job others opened at this sequence number) is two or three
    queries outside any transaction: the job row says which kept snapshot part is current, and
    only the reader's view of the inputs is read. Otherwise the snapshot is read in one
    consistent step, so that its sequence number agrees with its data."""
    job = _readable(user, public_id)
    if job is None:
        return None
    if after is not None:
        missed = events_after(job, after)
        if missed is not None:
            return job, after, missed
    shared = _kept_part(job)
    if shared is not None:
        return job, None, _with_inputs(job, user, shared)
    with consistent_reads():
        job = _readable(user, public_id)
        if job is None:
            return None
        return job, None, _snapshot(job, user)


def _json_default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, Promise):  # a lazily translated string
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


class _HubConsumer(AsyncJsonWebsocketConsumer):
    """What both sockets share: JSON in and out within limits, access followed as it changes,
    and the station's subscriptions given back on disconnect."""

    watcher: asyncio.Task[None] | None = None
    writer: asyncio.Task[None] | None = None
    kind = "socket"
    counted = False  # in hub_live_sockets

    async def accept(self, subprotocol: str | None = None, headers: Any = None) -> None:
        await super().accept(subprotocol, headers)
        metrics.SOCKETS.labels(self.kind).inc()
        self.counted = True

    poller: asyncio.Task[None] | None = None
    person: int | None = None
    revoked = False
    frames: asyncio.Queue[Frame]  # what the station offered, for the writer (SOCKET_BUFFER)

    async def dispatch(self, message: dict[str, Any]) -> None:
        """As Channels' own, without closing old database connections before every message
        (a trip to its database thread each time): this layer's database steps run in
        ``in_thread``, which takes and gives back its connection itself."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    @classmethod
    async def encode_json(cls, content: Any) -> str:
        try:
            return orjson.dumps(content, default=_json_default).decode()
        except TypeError:  # an integer past 64 bits (a run's params, as jsonb gives them back)
            return json.dumps(content, default=_json_default)

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        """A client's message, read with the limits every JSON the hub takes has: a malformed
        or oversized one gets an error message back and changes nothing."""
        if text_data is None or len(text_data) > MAX_CLIENT_MESSAGE:
            await self.send_json(
                {"type": "error", "message": "Send JSON text messages of at most 4 KiB."}
            )
            return
        try:
            content = loads_bounded(text_data)
        except JSONRefused as refused:
            await self.send_json({"type": "error", "message": f"Message refused: {refused}."})
            return
        await self.receive_json(content)

    # Access (jobs.live.access): checked again whenever it may have changed, and on a timer

    async def _follow_access(self) -> None:
        """Hear of access changes of this person (with Redis), and check on a timer too."""
        self.person = self.scope["user"].pk
        await station().watch_person(self.scope["user"].pk, self)
        self.watcher = asyncio.create_task(self._recheck_periodically())

    async def _recheck_periodically(self) -> None:
        every = RECHECK_SECONDS if settings.HUB_LIVE_VIA_REDIS else POLL_SECONDS * 4
        while True:
            await asyncio.sleep(every)
            await self.access_check()

    async def access_check(self) -> None:
        """Close at once when the person's credential or their access to what this socket
        shows has gone (4401: signed out, token replaced, deactivated; 4404: no such job)."""
        if self.revoked:
            return
        code = await in_thread(self._refusal)()
        if code is not None:
            await self._refuse(code)

    async def _refuse(self, code: int) -> None:
        self.revoked = True
        await self.close(code=code)

    def _refusal(self) -> int | None:
        return None if credential_holds(self.scope) else SIGNED_OUT

    def offer(self, frame: Frame) -> None:
        raise NotImplementedError

    def _buffer(self, frame: Frame) -> None:
        """Keep a frame for the writer. A client too slow for its buffer: forget what is
        buffered and, once the writer gets to it, say so and read the gap from the store."""
        try:
            self.frames.put_nowait(frame)
        except asyncio.QueueFull:
            while not self.frames.empty():
                self.frames.get_nowait()
            self.frames.put_nowait(Frame("gap"))

    async def disconnect(self, code: int) -> None:
        if self.counted:
            metrics.SOCKETS.labels(self.kind).dec()
            self.counted = False
        self.revoked = True
        for task in (self.writer, self.watcher, self.poller):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.person is not None:
            station().unwatch_person(self.person, self)


class JobConsumer(_HubConsumer):
    kind = "job"
    job: Job
    last_seq: int
    watching = False

    async def connect(self) -> None:
        public_id = self.scope["url_route"]["kwargs"]["job_id"]
        opened = await in_thread(_open)(self.scope["user"], public_id, self._after())
        if opened is None:
            await self.close(code=NOT_FOUND)  # before accept: nothing is said about the job
            return
        self.job, after, first = opened
        self.last_seq = 0
        self.lock = asyncio.Lock()
        self.frames = asyncio.Queue(SOCKET_BUFFER)
        seen = await station().watch_job(self.job, self)
        self.watching = True
        await self._follow_access()
        await self.accept()
        async with self.lock:
            if isinstance(first, dict):
                await self.send_json(first)
                self.last_seq = first["seq"]
            else:
                assert after is not None
                self.last_seq = after
                for message in first:
                    await self._send_event(message)
            if seen > self.last_seq:
                # Events came between the read above and the subscription: from the store.
                await self._catch_up()
        self.writer = asyncio.create_task(self._write())

    def offer(self, frame: Frame) -> None:
        if frame.kind == "list":
            return  # the person's job list events: for their list sockets
        self._buffer(frame)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """``{"type": "catch_up", "after": N}``: send what came after N (or a snapshot)."""
        if (
            isinstance(content, dict)
            and content.get("type") == "catch_up"
            and isinstance(content.get("after"), int)
        ):
            async with self.lock:
                if not await self._replay(content["after"]):
                    await self._send_snapshot()

    async def _write(self) -> None:
        """Send what the station offers, in order, one frame at a time."""
        while not self.revoked:
            frame = await self.frames.get()
            try:
                async with self.lock:
                    await self._handle(frame)
            except asyncio.CancelledError:
                raise
            except OSError:  # the client went away while it was sent to (the server says so)
                self.revoked = True
                return
            except Exception:
                # The client reconnects with the last number it has and misses nothing.
                logger.warning(
                    "Job socket of %s failed; closing it", self.job.public_id, exc_info=True
                )
                await self._refuse(1011)

    async def _handle(self, frame: Frame) -> None:
        if self.revoked:
            return
        if frame.kind == "event":
            if frame.seq == self.last_seq + 1:
                await self._send_frame(frame)
            elif frame.seq > self.last_seq:
                await self._catch_up()
        elif frame.kind == "heartbeat":
            if frame.seq > self.last_seq:
                await self._catch_up()
            await self.send(text_data=frame.text)
        elif frame.kind == "gap":
            await self.send_json({"type": "gap", "job": self.job.public_id, "after": self.last_seq})
            await self.access_check()
            if not self.revoked:
                await self._catch_up()
        elif frame.kind == "stale":
            if frame.seq > self.last_seq:
                await self._send_snapshot()
        elif frame.kind == "gone":
            await self._refuse(NOT_FOUND)
        elif frame.kind == "access":
            await self.access_check()

    def _refusal(self) -> int | None:
        if not credential_holds(self.scope):
            return SIGNED_OUT
        return None if _readable(self.scope["user"], self.job.public_id) else NOT_FOUND

    async def disconnect(self, code: int) -> None:
        await super().disconnect(code)
        if self.watching:
            station().unwatch_job(self.job.pk, self)

    # Helpers

    def _after(self) -> int | None:
        query = dict(
            pair.split("=", 1)
            for pair in self.scope.get("query_string", b"").decode().split("&")
            if "=" in pair
        )
        value = query.get("after", "")
        return int(value) if value.isdigit() else None

    async def _send_frame(self, frame: Frame) -> None:
        if frame.event == "sharing" and not await self._still_readable():
            return
        await self.send(text_data=frame.text)
        metrics.EVENTS_SENT.inc()
        self.last_seq = frame.seq

    async def _send_event(self, message: EventMessage) -> None:
        if message["event"] == "sharing" and not await self._still_readable():
            return
        await self.send_json(client_event(message))
        metrics.EVENTS_SENT.inc()
        self.last_seq = message["seq"]

    async def _still_readable(self) -> bool:
        """Who may read the job changed: someone who no longer may is cut off at once."""
        if await in_thread(_readable)(self.scope["user"], self.job.public_id):
            return True
        await self._refuse(NOT_FOUND)
        return False

    async def _send_snapshot(self) -> None:
        snapshot = await in_thread(self._fresh_snapshot)()
        if snapshot is None:
            await self._refuse(NOT_FOUND)
            return
        await self.send_json(snapshot)
        self.last_seq = snapshot["seq"]

    def _fresh_snapshot(self) -> dict[str, Any] | None:
        with consistent_reads():
            try:
                self.job.refresh_from_db()
            except Job.DoesNotExist:
                return None
            return _snapshot(self.job, self.scope["user"])

    async def _catch_up(self) -> None:
        if not await self._replay(self.last_seq):
            await self._send_snapshot()

    async def _replay(self, after: int) -> bool:
        """Send every event after ``after``; False when they cannot all be had."""
        missed = await in_thread(self._missed)(after)
        if missed is None:
            return False
        self.last_seq = after
        for message in missed:
            if self.revoked:
                break
            await self._send_event(message)
        return True

    def _missed(self, after: int) -> list[EventMessage] | None:
        with consistent_reads():
            try:
                self.job.refresh_from_db(fields=["event_seq"])
            except Job.DoesNotExist:
                return None
            return events_after(self.job, after)


def _list_events_after(user: Any, after_id: int) -> tuple[list[dict[str, Any]], int]:
    """Stored list-relevant events of every job the user may read, newer than ``after_id``."""
    rows = (
        JobEvent.objects.filter(
            pk__gt=after_id, job__in=jobs_visible_to(user), type__in=[str(e) for e in LIST_EVENTS]
        )
        .select_related("job")
        .order_by("pk")[:500]
    )
    messages = [
        client_event(
            {
                "type": "job.event",
                "job": r.job.public_id,
                "seq": r.seq,
                "event": r.type,
                "data": r.payload,
            }
        )
        for r in rows
    ]
    last = rows[len(rows) - 1].pk if rows else after_id
    return messages, last


def _latest_event_id() -> int:
    return JobEvent.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


class JobListConsumer(_HubConsumer):
    kind = "job_list"
    """A person's job list: status and progress of every job they may read, as it changes.
    Each message names its job and that job's sequence number; the page fetches a row it does
    not have yet (a new job), and reloads its rows when it reconnects or is sent a ``gap``
    (its buffer overflowed). With Redis the events come through the person's channel; in the
    embedded profile the socket reads them from the database."""

    async def connect(self) -> None:
        user = self.scope["user"]
        if not user.is_authenticated:
            await self.close(code=NOT_FOUND)
            return
        self.user = user
        self.frames = asyncio.Queue(SOCKET_BUFFER)
        if not settings.HUB_LIVE_VIA_REDIS:
            self.last_event_id = await in_thread(_latest_event_id)()
        await self._follow_access()
        await self.accept()
        await self.send_json({"type": "hello"})
        if settings.HUB_LIVE_VIA_REDIS:
            self.writer = asyncio.create_task(self._write())
        else:
            self.poller = asyncio.create_task(self._poll())

    def offer(self, frame: Frame) -> None:
        self._buffer(frame)

    async def _write(self) -> None:
        while not self.revoked:
            frame = await self.frames.get()
            try:
                if frame.kind == "list":
                    await self.send(text_data=frame.text)
                elif frame.kind == "access":
                    await self.access_check()
                elif frame.kind == "gap":
                    await self.send_json({"type": "gap"})
                    await self.access_check()
            except asyncio.CancelledError:
                raise
            except OSError:  # the client went away while it was sent to
                self.revoked = True
                return
            except Exception:
                # A writer that died silently would leave the socket open past its access
                # (an access check that failed must close, not keep the list flowing).
                logger.warning("Job list socket failed; closing it", exc_info=True)
                self.revoked = True
                await self.close(code=SIGNED_OUT)
                return

    async def _poll(self) -> None:
        while not self.revoked:
            await asyncio.sleep(POLL_SECONDS * 2)
            messages, self.last_event_id = await in_thread(_list_events_after)(
                self.user, self.last_event_id
            )
            for message in messages:
                await self.send_json(message)
