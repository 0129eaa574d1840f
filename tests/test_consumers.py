"""The job websocket, driven through the real ASGI application."""

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import transaction
from rest_framework.authtoken.models import Token

from hubsite.asgi import application
from jobs.domain.events import EventType, next_seq, publish
from jobs.domain.state import job_transition
from jobs.domain.status import JobStatus
from jobs.models import Job, JobEvent
from jobs.services import job_cancel, job_rename
from tests import factories

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
    snapshot = await ws.receive_json_from(timeout=5)
    assert (snapshot["type"], snapshot["seq"], snapshot["data"]["job"]["status"]) == (
        "snapshot",
        0,
        "created",
    )
    await sync_to_async(job_rename)(job=job, name="renamed")
    await sync_to_async(job_transition)(job=job, to=JobStatus.PENDING, message="queued")
    await sync_to_async(job_cancel)(job=job)
    first = await ws.receive_json_from(timeout=5)
    second = await ws.receive_json_from(timeout=5)
    assert [(first["seq"], first["data"]["status"]), (second["seq"], second["data"]["status"])] == [
        (1, "pending"),
        (2, "cancelled"),
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
    replayed = [await ws.receive_json_from(timeout=5) for _ in range(2)]
    assert [(m["type"], m["seq"], m["data"]["status"]) for m in replayed] == [
        ("event", 2, "running"),
        ("event", 3, "cancelling"),
    ]
    await ws.disconnect()


async def test_a_skipped_sequence_number_is_repaired_from_the_stored_events(alice):
    job = await sync_to_async(factories.unqueued_job)(alice)
    ws = await _connect(alice, job)
    assert (await ws.connect())[0]
    await ws.receive_json_from(timeout=5)  # snapshot at seq 0

    def lose_one_then_publish() -> None:
        with transaction.atomic():
            # Event 1 is stored but never sent, as when a channel layer drops a message.
            JobEvent.objects.create(
                job=job, seq=next_seq(job), type=EventType.LOG, payload={"message": "lost"}
            )
        with transaction.atomic():
            publish(job, EventType.LOG, {"message": "sent"})

    await sync_to_async(lose_one_then_publish)()
    got = [await ws.receive_json_from(timeout=5) for _ in range(2)]
    assert [(m["seq"], m["data"]["message"]) for m in got] == [(1, "lost"), (2, "sent")]
    await ws.disconnect()


async def test_a_client_too_far_behind_gets_a_fresh_snapshot(alice):
    job = await sync_to_async(factories.unqueued_job)(alice)
    await sync_to_async(job_transition)(job=job, to=JobStatus.PENDING, message="queued")
    await sync_to_async(JobEvent.objects.filter(job=job).delete)()  # pruned, as the reaper does
    ws = await _connect(alice, job, "?after=0")
    assert (await ws.connect())[0]
    message = await ws.receive_json_from(timeout=5)
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
    assert (await ws.receive_json_from(timeout=5)) == {"type": "hello"}
    theirs = await sync_to_async(factories.unqueued_job)(charlie)
    mine = await sync_to_async(factories.unqueued_job)(alice)
    await sync_to_async(job_cancel)(job=theirs)
    await sync_to_async(job_cancel)(job=mine)
    message = await ws.receive_json_from(timeout=5)
    assert (message["job"], message["event"], message["data"]["status"]) == (
        mine.public_id,
        "status",
        "cancelled",
    )
    assert await ws.receive_nothing(timeout=1)
    await ws.disconnect()


async def test_the_job_list_socket_refuses_nobody(alice):
    ws = WebsocketCommunicator(application, "/ws/jobs/", headers=[ORIGIN])
    connected, code = await ws.connect()
    assert (connected, code) == (False, 4404)
