"""Two devices on one machine, told apart as an operator would (HUB_DEVICE_NAME): real Celery
workers on PostgreSQL and Redis announce them, a job named for one runs only on a worker of it,
and a job for a device with no worker online waits saying so until one starts."""

from __future__ import annotations

import pytest

from jobs.domain.devices import Announcement, register, this_machine
from jobs.domain.queue import queue_position
from jobs.domain.status import JobStatus
from jobs.models import Device, WorkerSeen
from jobs.services.jobs import job_submit_link
from tests import factories
from tests.workers import WorkerPool, wait_for, wait_for_status

pytestmark = [pytest.mark.production, pytest.mark.django_db(transaction=True)]


def test_a_job_named_for_a_device_runs_on_its_worker_and_waits_while_none_is_online(
    alice, workers: WorkerPool
):
    workers.start("box-a", device="Box A")
    try:
        box_a = wait_for(
            lambda: Device.objects.filter(name="Box A").first(), 60, "Box A to be announced"
        )
        assert WorkerSeen.objects.get(name__startswith="box-a@").device == box_a
        assert box_a.specs["name_override"] == "Box A"
        assert box_a.attributes == Announcement.from_dict(this_machine().as_dict()).attributes

        # Box B: announced once (a worker ran there before), none online now.
        box_b = register(
            Announcement.from_dict({**this_machine().as_dict(), "name_override": "Box B"})
        )
        waiting = job_submit_link(
            owner=alice, models=[factories.onnx_model(alice, "b", seed=2)], device=box_b
        )
        wait_for(
            lambda: waiting.status_logs.filter(status=JobStatus.PENDING).exists(),
            30,
            "the job to be queued",
        )
        queued = waiting.status_logs.get(status=JobStatus.PENDING).message
        assert "Queued for device Box B" in queued and "no worker of it is online" in queued

        on_a = job_submit_link(
            owner=alice, models=[factories.onnx_model(alice, "a", seed=1)], device=box_a
        )
        wait_for_status(on_a, [JobStatus.READY, JobStatus.FAILED], 120)
        assert on_a.status == JobStatus.READY, on_a.failure_message
        assert on_a.ran_device == box_a and on_a.worker.startswith("box-a@")

        waiting.refresh_from_db()
        assert waiting.status == JobStatus.PENDING  # nobody of Box B took it, w1/w2 neither
        place = queue_position(waiting)
        assert place is not None and place["reason"].startswith("No worker of device Box B")

        workers.start("box-b", device="Box B")
        wait_for_status(waiting, [JobStatus.READY, JobStatus.FAILED], 120)
        assert waiting.status == JobStatus.READY, waiting.failure_message
        assert waiting.ran_device == box_b and waiting.worker.startswith("box-b@")
    finally:
        for name in ("box-a", "box-b"):
            if name in workers.processes:
                workers.kill(name)
