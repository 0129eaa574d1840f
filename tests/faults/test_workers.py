"""Workers fail: a job's message delivered twice, a pool child SIGKILLed mid-training, a whole
worker SIGKILLed while another shares its queue, ten jobs queued on one worker. Real Celery
worker processes on PostgreSQL and Redis (tests/workers.py). Each test counts what was in flight
(tests/faults/ledger.py) and asserts that nothing was lost or written twice."""

import os
import signal
import time

import pytest

from jobs.domain.status import TERMINAL, JobStatus
from jobs.models import MLModel
from tests import factories
from tests.faults.ledger import audit
from tests.workers import (
    LOST_BOUND,
    WorkerPool,
    long_customization,
    mid_run,
    wait_for,
    wait_for_status,
    worker_of,
)

pytestmark = [pytest.mark.production, pytest.mark.django_db(transaction=True)]


def test_a_job_delivered_twice_runs_once(alice, workers: WorkerPool, figures):
    from jobs.engine.tasks import run_job

    job = factories.link_job(alice)
    run_job.apply_async(args=(job.pk,))  # a second message for the same job
    wait_for_status(job, TERMINAL, 60)
    assert job.status == JobStatus.READY

    def both():
        return "this delivery does nothing" in workers.output("w1") + workers.output("w2")

    wait_for(both, 30, "the second delivery to be consumed")
    assert list(job.status_logs.values_list("status", flat=True)).count("running") == 1
    assert MLModel.objects.filter(produced_by=job).count() == 1
    ledger = audit([job])
    assert ledger.lost == ledger.duplicated == []
    figures.record(
        fault="a job's message delivered twice", **ledger.figures(), recovery_s=0,
        note="the second delivery finds the job claimed and does nothing",
    )  # fmt: skip


def test_a_sigkilled_pool_child_gets_its_job_requeued_and_resumed_from_its_checkpoint(
    alice, workers: WorkerPool, figures
):
    job = long_customization(alice, epochs=30)

    def past_a_checkpoint() -> bool:
        job.refresh_from_db()
        return (job.epochs_completed or 0) >= 2 and (job.steps_completed or 0) > 2 * (
            job.steps_per_epoch or 0
        )

    wait_for(past_a_checkpoint, 120, f"job {job.public_id} to pass its second checkpoint")
    child = int(job.worker.rsplit(" pid ", 1)[1])
    killed_at = time.monotonic()
    os.kill(child, signal.SIGKILL)
    wait_for(
        lambda: job.status_logs.filter(message__contains="stopped answering").exists(),
        LOST_BOUND,
        "the requeue",
    )
    requeued = time.monotonic() - killed_at
    assert requeued < LOST_BOUND
    wait_for_status(job, TERMINAL, 120)
    assert job.status == JobStatus.READY, "\n".join(
        f"{m} | {d}" for m, d in job.status_logs.values_list("message", "detail")
    )
    assert job.attempts == 2
    requeue = job.status_logs.get(message__contains="stopped answering").message
    assert "requeued for attempt 2; the lost one reached a new checkpoint" in requeue
    assert "which resumes from the checkpoint of epoch" in requeue
    assert job.progressed_attempts == 1  # so a second death would not be worker_lost
    resumed = job.status_logs.get(message__startswith="Resuming from the checkpoint").message
    epoch = int(resumed.split("epoch ")[1].split(" ")[0])
    assert epoch >= 2 and "not from step 0" in resumed
    # The second attempt says so where people look: timeline, job page and log.
    running = (
        job.status_logs.filter(status="running", message__startswith="Running on")
        .order_by("updated_at", "id")
        .last()
    )
    assert running is not None and "(attempt 2 of" in running.message
    assert "resuming from the checkpoint of epoch" in running.message
    from django.test import Client as Browser

    browser = Browser()
    browser.force_login(alice)
    page = browser.get(job.get_absolute_url()).content.decode()
    assert 'id="attempt-info"' in page
    assert f"resuming from step {job.attempt_started_step}" in page
    assert any(
        "resuming from the checkpoint" in line
        for line in job.log_lines.values_list("text", flat=True)
    )
    steps = list(job.metric_series.get(key="train_loss").points.values_list("step", flat=True))
    assert len(steps) == len(set(steps)) == job.total_steps  # every step once: none lost or twice
    # In step order (rows come back in whatever order the table holds them: a requeue's deleted
    # points leave room that later ones fill): each epoch's point once.
    val = (
        job.metric_series.get(key="val_loss").points.order_by("step").values_list("step", flat=True)
    )
    assert list(val) == sorted(set(val)) and len(val) == 31  # step 0, then one an epoch
    # A watcher replaying every event from the start sees each step once, with its attempt.
    from jobs.domain.events import events_after

    replay = events_after(job, 0)
    assert replay is not None
    replayed = [
        point["step"]
        for message in replay
        if message["event"] == "metrics"
        for point in message["data"]["series"].get("train_loss", [])
    ]
    assert sorted(replayed) == sorted(set(replayed)) == sorted(steps)
    ledger = audit([job])
    assert ledger.lost == ledger.duplicated == []
    figures.record(
        fault="SIGKILL of the pool child training a job", **ledger.figures(),
        recovery_s=round(requeued, 2),
        note=f"requeued, resumed from the checkpoint of epoch {epoch}, every step once",
    )  # fmt: skip


def test_two_workers_share_the_queue_and_survive_one_being_killed(
    alice, workers: WorkerPool, figures
):
    first, second = long_customization(alice, epochs=40), long_customization(alice, epochs=40)
    mid_run(first)
    mid_run(second)
    assert {worker_of(first), worker_of(second)} == {"w1", "w2"}  # one job each
    victim = worker_of(first)
    killed_at = time.monotonic()
    workers.kill(victim)
    wait_for(
        lambda: first.status_logs.filter(message__contains="stopped answering").exists(),
        LOST_BOUND,
        "the requeue",
    )
    requeued = time.monotonic() - killed_at
    assert requeued < LOST_BOUND
    for job in (first, second):
        wait_for_status(job, TERMINAL, 180)
        assert job.status == JobStatus.READY, job.failure_message
    assert worker_of(first) != victim  # finished by the survivor
    ledger = audit([first, second])
    assert ledger.lost == ledger.duplicated == []
    figures.record(
        fault="SIGKILL of a whole worker (main process and pool) mid-job", **ledger.figures(),
        recovery_s=round(requeued, 2), note="the survivor finished both jobs",
    )  # fmt: skip


def test_ten_jobs_on_one_worker_each_run_once(alice, workers: WorkerPool, figures):
    workers.kill("w2")  # one job worker left (the next test's fixture starts w2 again)
    jobs = [factories.link_job(alice) for _ in range(5)]
    jobs += [factories.customization_job(alice, epochs=1) for _ in range(5)]
    started = time.monotonic()
    for job in jobs:
        wait_for_status(job, TERMINAL, 300)
        assert job.status == JobStatus.READY, job.failure_message
        assert worker_of(job) == "w1"
    ledger = audit(jobs)
    assert ledger.lost == ledger.duplicated == []
    assert all(job.attempts == 1 for job in jobs)
    figures.record(
        fault="ten jobs queued at once on one worker", **ledger.figures(),
        recovery_s=round(time.monotonic() - started, 2), note="all ready, each run once, in turn",
    )  # fmt: skip
