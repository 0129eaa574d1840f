"""The hub's Redis (broker and live events) restarts without persistence while a job trains,
another waits in the queue, and people watch both: a hub of its own (a job worker and a web
process on a private Redis) that the test restarts under them. The training job goes on, the
queued job's lost message is sent again, and every watcher ends with the final status having
seen each event in order, none twice."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rest_framework.authtoken.models import Token

from hubclient import Client
from jobs.domain.status import TERMINAL, JobStatus
from jobs.models import Job
from tests import factories
from tests.faults.ledger import audit
from tests.faults.servers import PrivateRedis, production_web
from tests.workers import WorkerPool, wait_for, wait_for_status

pytestmark = [pytest.mark.production, pytest.mark.django_db(transaction=True)]


class RedisHub:
    def __init__(self, redis: PrivateRedis, pool: WorkerPool, url: str) -> None:
        self.redis, self.pool, self.url = redis, pool, url


@pytest.fixture
def redis_hub(tmp_path: Path, settings: Any) -> Iterator[RedisHub]:
    settings.MEDIA_ROOT = str(tmp_path / "media")  # where this hub's processes find the files
    redis = PrivateRedis(tmp_path)
    redis.start()
    # The lost message of the queued job, sent again soon.
    web = production_web(tmp_path, redis.url, HUB_PENDING_RESEND_AFTER="3")
    try:
        with web as env:
            pool = WorkerPool(env, tmp_path / "media", tmp_path)
            pool.start("r1")
            try:
                yield RedisHub(redis, pool, env["HUB_BASE_URL"])
            finally:
                pool.stop()
    finally:
        redis.stop()


class Watcher:
    """A person's open page, as the client sees it: every message of the job's socket."""

    def __init__(self, client: Client, job_id: str) -> None:
        self.remote = client.get_job(job_id)
        self.messages: list[dict[str, Any]] = []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        try:
            deadline = time.monotonic() + 300
            for message in self.remote.events(deadline=deadline, stop_when_finished=True):
                self.messages.append(message)
        except BaseException as error:  # the test asserts there is none
            self.error = error

    def seqs(self) -> list[int]:
        return [m["seq"] for m in self.messages if m.get("seq") is not None]


def test_a_redis_restart_under_running_jobs_and_open_pages_loses_nothing(
    alice, redis_hub: RedisHub, figures
):
    token = Token.objects.create(user=alice).key
    client = Client(url=redis_hub.url, token=token)
    dataset = factories.dataset(alice, records=300)
    training = client.submit_customization_job(
        None,
        dataset=dataset.public_id,
        hyperparameters={"epochs": 12, "early_stopping_patience": 0},
    )
    queued = client.submit_customization_job(
        None, dataset=dataset.public_id, hyperparameters={"epochs": 1}
    )
    jobs = [Job.objects.get(public_id=j.job_id) for j in (training, queued)]
    watchers = [Watcher(client, j.public_id) for j in jobs for _ in range(2)]

    def training_midway() -> bool:
        jobs[0].refresh_from_db()
        return jobs[0].status == JobStatus.RUNNING and (jobs[0].epochs_completed or 0) >= 2

    wait_for(training_midway, 120, "the first job to be training")
    redis_hub.redis.restart()  # no persistence: the queued job's message and the groups are gone
    restarted = time.monotonic()
    for job in jobs:
        wait_for_status(job, TERMINAL, 240)
        assert job.status == JobStatus.READY, job.failure_message
    recovered = time.monotonic() - restarted
    for watcher in watchers:
        watcher.thread.join(120)
        assert not watcher.thread.is_alive() and watcher.error is None, watcher.error
        seqs = watcher.seqs()
        assert seqs == sorted(set(seqs)), "an event seen twice or out of order"
        job = next(j for j in jobs if j.public_id == watcher.remote.job_id)
        final = job.events.order_by("-seq").values_list("seq", flat=True).first()
        assert seqs and seqs[-1] == final, f"ended at {seqs[-1:]} of {final}"
    ledger = audit(jobs)
    assert ledger.lost == ledger.duplicated == []
    assert jobs[0].attempts == 1  # the training job was never interrupted
    figures.record(
        fault="Redis (broker and live events) restarted without persistence",
        **{**ledger.figures(), "in_flight": ledger.figures()["in_flight"] + ", 4 open sockets"},
        recovery_s=round(recovered, 2),
        note="training went on; the queued job's lost message sent again; every watcher saw "
        "each event once, in order, to the end",
    )  # fmt: skip
