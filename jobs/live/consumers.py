"""The websocket of one job: its events, in order, with nothing missed.

On connect the watcher gets a snapshot (the job and its status details, with the sequence number
they reflect) or, when it says what it last saw (``?after=N``), the events it missed. After
that every event is sent once, in sequence order: a number that skips ahead (the channel layer
dropped messages) is repaired from the stored events before anything newer is sent.

In the production profile events arrive through the channel layer; in the embedded profile the
worker is another process with no channel layer in common, so the consumer reads new events from
the database four times a second.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from rest_framework.utils.encoders import JSONEncoder

from jobs.domain.events import LIST_EVENTS, EventMessage, events_after, job_group, user_group
from jobs.domain.jsonlimits import JSONRefused, loads_bounded
from jobs.domain.selectors import jobs_visible_to
from jobs.live.access import access_group, credential_holds
from jobs.models import Job, JobEvent
from jobs.wire.snapshots import job_data, status_details

POLL_SECONDS = 0.25
NOT_FOUND = 4404  # close code: no such job for this person (the same for both cases)
SIGNED_OUT = 4401  # close code: the socket's sign-in no longer holds
RECHECK_SECONDS = 30.0  # production: changes are announced; this only backs the announcements up
MAX_CLIENT_MESSAGE = 4096  # clients send catch-up requests of a few dozen bytes


def _readable(user: Any, public_id: str) -> Job | None:
    return jobs_visible_to(user).filter(public_id=public_id).first()


def _snapshot(job: Job, user: Any) -> dict[str, Any]:
    return {
        "type": "snapshot",
        "job": job.public_id,
        "seq": job.event_seq,
        "data": {"job": job_data(job, user), "status_details": status_details(job)},
    }


def as_client_event(message: EventMessage) -> dict[str, Any]:
    """A channel-layer event as watchers receive it."""
    return {
        "type": "event",
        "job": message["job"],
        "seq": message["seq"],
        "event": message["event"],
        "data": message["data"],
    }


class _HubConsumer(AsyncJsonWebsocketConsumer):
    """What both sockets share: JSON with the API's encoder, one channel-layer group, and in
    the embedded profile a task that reads new events from the database."""

    poller: asyncio.Task[None] | None = None
    watcher: asyncio.Task[None] | None = None
    group: str | None = None
    access: str | None = None

    @classmethod
    async def encode_json(cls, content: Any) -> str:
        import json

        return json.dumps(content, cls=JSONEncoder)

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

    async def _join(self, group: str) -> None:
        if settings.HUB_EVENTS_VIA_CHANNEL_LAYER:
            self.group = group
            await self.channel_layer.group_add(group, self.channel_name)

    def _start_polling(self) -> None:
        if not settings.HUB_EVENTS_VIA_CHANNEL_LAYER:
            self.poller = asyncio.create_task(self._poll())

    async def _poll(self) -> None:
        raise NotImplementedError

    # Access (jobs.live.access): checked again whenever it may have changed, and every few seconds

    async def _follow_access(self) -> None:
        """Hear of access changes of this person, and check on a timer too."""
        if settings.HUB_EVENTS_VIA_CHANNEL_LAYER:
            self.access = access_group(self.scope["user"].pk)
            await self.channel_layer.group_add(self.access, self.channel_name)
        self.watcher = asyncio.create_task(self._recheck_periodically())

    async def _recheck_periodically(self) -> None:
        every = RECHECK_SECONDS if settings.HUB_EVENTS_VIA_CHANNEL_LAYER else POLL_SECONDS * 4
        while True:
            await asyncio.sleep(every)
            await self.access_check({})

    async def access_check(self, message: dict[str, Any]) -> None:
        """Close at once when the person's credential or their access to what this socket
        shows has gone (4401: signed out, token replaced, deactivated; 4404: no such job)."""
        code = await database_sync_to_async(self._refusal)()
        if code is not None:
            self.revoked = True
            await self.close(code=code)

    def _refusal(self) -> int | None:
        return None if credential_holds(self.scope) else SIGNED_OUT

    async def disconnect(self, code: int) -> None:
        for task in (self.poller, self.watcher):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for group in (self.group, self.access):
            if group is not None:
                await self.channel_layer.group_discard(group, self.channel_name)


class JobConsumer(_HubConsumer):
    job: Job
    last_seq: int

    async def connect(self) -> None:
        public_id = self.scope["url_route"]["kwargs"]["job_id"]
        job = await database_sync_to_async(_readable)(self.scope["user"], public_id)
        if job is None:
            await self.close(code=NOT_FOUND)  # before accept: nothing is said about the job
            return
        self.job, self.last_seq = job, 0
        self.lock = asyncio.Lock()
        await self._join(job_group(job.pk))
        await self._follow_access()
        await self.accept()
        after = self._after()
        async with self.lock:
            if after is None or not await self._replay(after):
                await self._send_snapshot()
        self._start_polling()

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

    async def job_event(self, message: EventMessage) -> None:
        async with self.lock:
            if message["seq"] <= self.last_seq:
                return  # already sent (by a replay or a snapshot)
            if message["seq"] > self.last_seq + 1 and not await self._replay(self.last_seq):
                await self._send_snapshot()
                return
            if message["seq"] == self.last_seq + 1:
                await self._send_event(message)

    def _refusal(self) -> int | None:
        if not credential_holds(self.scope):
            return SIGNED_OUT
        return None if _readable(self.scope["user"], self.job.public_id) else NOT_FOUND

    # Helpers

    def _after(self) -> int | None:
        query = dict(
            pair.split("=", 1)
            for pair in self.scope.get("query_string", b"").decode().split("&")
            if "=" in pair
        )
        value = query.get("after", "")
        return int(value) if value.isdigit() else None

    async def _send_event(self, message: EventMessage) -> None:
        if getattr(self, "revoked", False):
            return
        if message["event"] == "sharing":
            # Who may read the job changed: someone who no longer may is cut off at once.
            still = await database_sync_to_async(_readable)(self.scope["user"], self.job.public_id)
            if still is None:
                self.revoked = True
                await self.close(code=NOT_FOUND)
                return
        await self.send_json(as_client_event(message))
        self.last_seq = message["seq"]

    async def _send_snapshot(self) -> None:
        snapshot = await database_sync_to_async(self._fresh_snapshot)()
        await self.send_json(snapshot)
        self.last_seq = snapshot["seq"]

    def _fresh_snapshot(self) -> dict[str, Any]:
        self.job.refresh_from_db()
        return _snapshot(self.job, self.scope["user"])

    async def _replay(self, after: int) -> bool:
        """Send every event after ``after``; False when they cannot all be had."""
        missed = await database_sync_to_async(self._missed)(after)
        if missed is None:
            return False
        self.last_seq = after
        for message in missed:
            await self._send_event(message)
        return True

    def _missed(self, after: int) -> list[EventMessage] | None:
        self.job.refresh_from_db(fields=["event_seq"])
        return events_after(self.job, after)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            async with self.lock:
                missed = await database_sync_to_async(self._missed)(self.last_seq)
                if missed is None:
                    await self._send_snapshot()
                    continue
                for message in missed:
                    await self._send_event(message)


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
        as_client_event(
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
    """A person's job list: status and progress of every job they may read, as it changes.
    Each message names its job and that job's sequence number; the page fetches a row it does
    not have yet (a new job) and reloads its rows when it reconnects."""

    async def connect(self) -> None:
        user = self.scope["user"]
        if not user.is_authenticated:
            await self.close(code=NOT_FOUND)
            return
        self.user = user
        self.last_event_id = await database_sync_to_async(_latest_event_id)()
        await self._join(user_group(user.pk))
        await self._follow_access()
        self._start_polling()
        await self.accept()
        await self.send_json({"type": "hello"})

    async def job_event(self, message: EventMessage) -> None:
        await self.send_json(as_client_event(message))

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS * 2)
            messages, self.last_event_id = await database_sync_to_async(_list_events_after)(
                self.user, self.last_event_id
            )
            for message in messages:
                await self.send_json(message)
