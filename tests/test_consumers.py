"""The job websocket, driven through the real ASGI application."""

import asyncio
import threading

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.db import transaction
from rest_framework.authtoken.models import Token

from hubsite.asgi import application
from jobs.domain.events import EventType, next_seq, publish
from jobs.domain.state import job_transition
from jobs.domain.status import JobStatus
from jobs.live import consumers, fanout
from jobs.live.delivery import job_channel
from jobs.live.fanout import HEARTBEAT_SECONDS, station, tick_seconds
from jobs.models import Job, JobEvent
from jobs.services.jobs import job_cancel, job_rename
from tests import factories
from tests.sockets import next_message, stays_quiet

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]
ORIGIN = (b"origin", b"http://127.0.0.1:8000")


def _token_headers(user) -> list[tuple[bytes, bytes]]:
    token, _ = Token.objects.get_or_create(user=user)
    return [ORIGIN, (b"authorization", f"Token {token.key}".encode())]


async def _connect(user, job: Job, query: str = "") -> WebsocketCommunicator:
    headers = await sync_to_async(_token_headers)(user) if user else [ORIGIN]
    communicator = WebsocketCommunicator(
        application, f"/ws/jobs/{job.public_id}/{query}", headers=headers
    )
    return communicator


async def test_owner_gets_a_snapshot_then_each_event_in_order(alice):
    job = await sync_to_async(factories.unqueued_job)(alice)
    ws = await _connect(alice, job)
    connected, _ = await ws.connect()
    assert connected
    snapshot = await next_message(ws, 5)
    assert (snapshot["type"], snapshot["seq"], snapshot["data"]["job"]["status"]) == (
        "snapshot",
        0,
        "created",
    )
    await sync_to_async(job_rename)(job=job, name="renamed")
    await sync_to_async(job_transition)(job=job, to=JobStatus.PENDING, message="queued")
    await sync_to_async(job_cancel)(job=job)
    got = [await next_message(ws, 5) for _ in range(3)]
    assert [(m["seq"], m["event"], m["data"].get("name") or m["data"]["status"]) for m in got] == [
        (1, "job", "renamed"),
        (2, "status", "pending"),
        (3, "status", "cancelled"),
    ]
    await ws.disconnect()


@pytest.mark.parametrize("person", ["bob", "charlie", None])
async def test_anyone_else_is_refused_before_accept(alice, person, request):
    job = await sync_to_async(factories.unqueued_job)(alice)
    user = await sync_to_async(request.getfixturevalue)(person) if person else None
    ws = await _connect(user, job)
    connected, code = await ws.connect()
    assert not connected
    assert code == 4404
    await ws.disconnect()


async def test_unknown_job_is_refused_the_same_way(alice):
    ws = WebsocketCommunicator(
        application, "/ws/jobs/jnosuchjob/", headers=await sync_to_async(_token_headers)(alice)
    )
    connected, code = await ws.connect()
    assert (connected, code) == (False, 4404)


async def test_a_reconnecting_client_gets_what_it_missed(alice):
    job = await sync_to_async(factories.unqueued_job)(alice)
    await sync_to_async(job_transition)(job=job, to=JobStatus.PENDING, message="queued")
    await sync_to_async(job_transition)(job=job, to=JobStatus.RUNNING, message="running")
    await sync_to_async(job_cancel)(job=job)
    ws = await _connect(alice, job, "?after=1")
    assert (await ws.connect())[0]
    replayed = [await next_message(ws, 5) for _ in range(2)]
    assert [(m["type"], m["seq"], m["data"]["status"]) for m in replayed] == [
        ("event", 2, "running"),
        ("event", 3, "cancelling"),
    ]
    await ws.disconnect()


async def test_a_skipped_sequence_number_is_repaired_from_the_stored_events(alice):
    job = await sync_to_async(factories.unqueued_job)(alice)
    ws = await _connect(alice, job)
    assert (await ws.connect())[0]
    await next_message(ws, 5)  # snapshot at seq 0

    def lose_one_then_publish() -> None:
        with transaction.atomic():
            # Event 1 is stored but never sent, as when Redis loses a message.
            JobEvent.objects.create(
                job=job, seq=next_seq(job), type=EventType.LOG, payload={"message": "lost"}
            )
        with transaction.atomic():
            publish(job, EventType.LOG, {"message": "sent"})

    await sync_to_async(lose_one_then_publish)()
    got = [await next_message(ws, 5) for _ in range(2)]
    assert [(m["seq"], m["data"]["message"]) for m in got] == [(1, "lost"), (2, "sent")]
    await ws.disconnect()


def _lose(job: Job, count: int = 1, status: str | None = None) -> None:
    """Events stored and never published, as when Redis loses them (down, restarting)."""
    for n in range(count):
        with transaction.atomic():
            if status is not None:
                payload = {"status": status, "message": "lost on the way"}
                kind = EventType.STATUS
            else:
                payload, kind = {"message": f"lost {n + 1}"}, EventType.LOG
            JobEvent.objects.create(job=job, seq=next_seq(job), type=kind, payload=payload)


async def test_a_watcher_notices_a_lost_last_event_within_a_tick(alice):
    """The job's final event never reaches the web process, and nothing follows it: the
    station's tick reads the job's latest number and brings the event from the store."""
    job = await sync_to_async(factories.unqueued_job)(alice)
    ws = await _connect(alice, job)
    assert (await ws.connect())[0]
    await next_message(ws, 5)  # snapshot: created, seq 0
    await sync_to_async(_lose)(job, status="failed")
    message = await next_message(ws, tick_seconds() + 2)
    assert (message["seq"], message["event"], message["data"]["status"]) == (1, "status", "failed")
    await ws.disconnect()


async def test_a_heartbeat_carries_the_jobs_latest_sequence_number(alice):
    job = await sync_to_async(factories.unqueued_job)(alice)
    ws = await _connect(alice, job)
    assert (await ws.connect())[0]
    await next_message(ws)
    await sync_to_async(job_rename)(job=job, name="renamed")  # seq 1
    beats: list[dict] = []
    while not beats or beats[-1]["seq"] < 1:  # one may come before the rename: seq 0
        message = await ws.receive_json_from(timeout=HEARTBEAT_SECONDS + 2)
        if message["type"] == "heartbeat":
            beats.append(message)
    assert (beats[-1]["job"], beats[-1]["seq"]) == (job.public_id, 1)
    await ws.disconnect()


async def test_a_socket_too_slow_for_its_buffer_is_told_of_the_gap_then_sent_every_event(
    alice, monkeypatch
):
    """Twenty lost events are found at once by the tick and offered together to a socket that
    holds four: it says where the gap starts and sends all twenty from the store, each once."""
    monkeypatch.setattr(consumers, "SOCKET_BUFFER", 4)
    job = await sync_to_async(factories.unqueued_job)(alice)
    ws = await _connect(alice, job)
    assert (await ws.connect())[0]
    await next_message(ws, 5)
    await sync_to_async(_lose)(job, count=20)
    notice = await next_message(ws, tick_seconds() + 2)
    assert notice == {"type": "gap", "job": job.public_id, "after": 0}
    events: list[int] = []
    while len(events) < 20:
        message = await next_message(ws, 5)
        if message["type"] == "event":
            events.append(message["seq"])
    assert events == list(range(1, 21))
    await ws.disconnect()


async def test_sockets_of_one_job_share_one_subscription_in_a_process(alice):
    job = await sync_to_async(factories.unqueued_job)(alice)
    sockets = [await _connect(alice, job) for _ in range(3)]
    for ws in sockets:
        assert (await ws.connect())[0]
        await next_message(ws, 5)
    assert len(station().streams[job.pk].listeners) == 3
    if settings.HUB_LIVE_VIA_REDIS:
        counts = await sync_to_async(_subscribers)(job_channel(job.pk))
        assert counts == 1
    await sync_to_async(job_rename)(job=job, name="renamed")
    for ws in sockets:
        message = await next_message(ws, 5)
        assert (message["seq"], message["event"]) == (1, "job")
    for ws in sockets:
        await ws.disconnect()
    assert job.pk not in station().streams


class _Collecting:
    """A stand-in socket that keeps what the station offers it."""

    def __init__(self) -> None:
        self.frames: list[fanout.Frame] = []

    def offer(self, frame: fanout.Frame) -> None:
        self.frames.append(frame)


@pytest.mark.production
async def test_subscriptions_made_at_the_same_moment_all_hear_redis(alice, monkeypatch):
    """A job's and a person's first sockets subscribe at the same moment on a process with
    no subscription yet: both go through the one connection the station reads, none ends up on
    a connection nobody reads. The tick is pushed out of the way: what arrives came through
    Redis."""
    monkeypatch.setattr(fanout, "tick_seconds", lambda: 60.0)
    job = await sync_to_async(factories.unqueued_job)(alice)
    page, listing = _Collecting(), _Collecting()
    await asyncio.gather(station().watch_job(job, page), station().watch_person(alice.pk, listing))
    await sync_to_async(job_rename)(job=job, name="renamed")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while not (page.frames and listing.frames) and loop.time() < deadline:
        await asyncio.sleep(0.02)
    assert [(f.kind, f.seq, f.event) for f in page.frames] == [("event", 1, "job")]
    assert [(f.kind, f.seq) for f in listing.frames] == [("list", 1)]
    station().unwatch_job(job.pk, page)
    station().unwatch_person(alice.pk, listing)


@pytest.mark.production
async def test_a_subscription_redis_did_not_confirm_is_made_again(alice):
    """Redis was away when a job's first socket came, so its subscription never held: the tick
    subscribes again, and events come through Redis from then on."""
    job = await sync_to_async(factories.unqueued_job)(alice)
    ws = await _connect(alice, job)
    assert (await ws.connect())[0]
    await next_message(ws)
    here = station()
    channel = job_channel(job.pk)
    async with here.commands:  # as if it had never been confirmed
        await here.pubsub.unsubscribe(channel)
    here.streams[job.pk].subscribed = False
    loop = asyncio.get_running_loop()
    deadline = loop.time() + tick_seconds() * 2 + 3
    while not here.streams[job.pk].subscribed and loop.time() < deadline:
        await asyncio.sleep(0.05)
    assert here.streams[job.pk].subscribed
    assert await sync_to_async(_subscribers)(channel) == 1
    await ws.disconnect()


def _subscribers(channel: str) -> int:
    from jobs.live.delivery import connect_sync

    counts: list[tuple[bytes, int]] = connect_sync().pubsub_numsub(channel)  # type: ignore[assignment]
    return dict(counts)[channel.encode()]


async def test_a_client_too_far_behind_gets_a_fresh_snapshot(alice):
    job = await sync_to_async(factories.unqueued_job)(alice)
    await sync_to_async(job_transition)(job=job, to=JobStatus.PENDING, message="queued")
    await sync_to_async(JobEvent.objects.filter(job=job).delete)()  # pruned, as the reaper does
    ws = await _connect(alice, job, "?after=0")
    assert (await ws.connect())[0]
    message = await next_message(ws, 5)
    assert (message["type"], message["seq"], message["data"]["job"]["status"]) == (
        "snapshot",
        1,
        "pending",
    )
    await ws.disconnect()


async def test_the_job_list_socket_hears_of_the_owners_jobs_only(alice, charlie):
    headers = await sync_to_async(_token_headers)(alice)
    ws = WebsocketCommunicator(application, "/ws/jobs/", headers=headers)
    assert (await ws.connect())[0]
    assert (await next_message(ws, 5)) == {"type": "hello"}
    theirs = await sync_to_async(factories.unqueued_job)(charlie)
    mine = await sync_to_async(factories.unqueued_job)(alice)
    await sync_to_async(job_cancel)(job=theirs)
    await sync_to_async(job_cancel)(job=mine)
    message = await next_message(ws, 5)
    assert (message["job"], message["event"], message["data"]["status"]) == (
        mine.public_id,
        "status",
        "cancelled",
    )
    assert await stays_quiet(ws, 1)
    await ws.disconnect()


async def test_the_job_list_socket_refuses_nobody(alice):
    ws = WebsocketCommunicator(application, "/ws/jobs/", headers=[ORIGIN])
    connected, code = await ws.connect()
    assert (connected, code) == (False, 4404)


async def test_opening_pages_costs_no_new_database_connection_each(alice, bob):
    """A link opened by a whole team: twenty pages, one after another, cost their queries on the
    live layer's kept connections, not a connection each (it was two: auth and snapshot)."""
    from django.db.backends.signals import connection_created

    from sharing.services import sharing_modify

    job = await sync_to_async(factories.unqueued_job)(alice)
    await sync_to_async(sharing_modify)(target=job, actor=alice, add_emails=[bob.email])
    made = []

    from asgiref.sync import SyncToAsync

    # The test's own steps (sync_to_async here) make theirs on asgiref's thread: not counted.
    tests_thread = SyncToAsync.single_thread_executor.submit(threading.get_ident).result()

    def count(sender, connection, **kwargs):
        if threading.get_ident() != tests_thread:
            made.append(threading.current_thread().name)

    for user in (alice, bob):  # the threads have their connections once
        ws = await _connect(user, job)
        assert (await ws.connect())[0]
        await next_message(ws, 5)
        await ws.disconnect()
    connection_created.connect(count)
    try:
        for i in range(20):
            ws = await _connect(alice if i % 2 else bob, job)
            assert (await ws.connect())[0]
            snapshot = await next_message(ws, 5)
            assert snapshot["type"] == "snapshot" and snapshot["job"] == job.public_id
            await ws.disconnect()
    finally:
        connection_created.disconnect(count)
    assert len(made) <= fanout.LIVE_DB_THREADS, made
