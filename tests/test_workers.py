"""Jobs on real Celery worker processes, in the production profile: PostgreSQL, Redis, two job
workers sharing one queue, and a control worker running beat and the reaper."""

import os
import re
import signal
import time

import pytest
from django.conf import settings

from jobs.domain.status import FailureType, JobStatus
from jobs.models import Job, MLModel
from jobs.services import job_cancel, job_submit_customization
from tests import factories
from tests.workers import WorkerPool, wait_for, wait_for_status

pytestmark = [pytest.mark.production, pytest.mark.django_db(transaction=True)]

FINISHED = {"ready", "failed", "cancelled"}
# The reaper notices a silent worker within HUB_WORKER_LOST_AFTER + HUB_REAPER_INTERVAL; the rest
# is room for a loaded machine to schedule the processes involved.
LOST_BOUND = settings.HUB_WORKER_LOST_AFTER + settings.HUB_REAPER_INTERVAL + 15


def long_customization(owner, epochs: int = 400, **extra) -> Job:
    """Long enough to be caught mid-run (a few hundred milliseconds an epoch)."""
    return job_submit_customization(
        owner=owner,
        dataset=factories.dataset(owner, records=300),
        hyperparameters={"epochs": epochs, "early_stopping_patience": 0, **extra},
    )


def mid_run(job: Job, steps: int = 5) -> Job:
    def training() -> bool:
        job.refresh_from_db()
        return job.status == JobStatus.RUNNING and (job.steps_completed or 0) >= steps

    wait_for(training, 60, f"job {job.public_id} to be training")
    return job


def worker_of(job: Job) -> str:
    return job.worker.split("@")[0]


def test_both_kinds_of_job_run_to_ready_on_workers(alice, workers: WorkerPool):
    link = factories.link_job(alice)
    custom = factories.customization_job(alice, epochs=3)
    for job in (link, custom):
        wait_for_status(job, FINISHED, 90)
        assert job.status == JobStatus.READY, job.failure_message
        assert job.target_model is not None
        assert re.match(r"Running on w[12]@", job.status_logs.get(status="running").message)
    assert custom.epochs_completed == 3
    assert custom.metric_series.get(key="val_loss").points_count == 4  # step 0 and each epoch


def test_cancel_stops_a_running_customization_at_its_next_step(alice, workers: WorkerPool):
    job = mid_run(long_customization(alice))
    job_cancel(job=job)
    assert job.status == JobStatus.CANCELLING  # at once, before the worker has reacted
    wait_for_status(job, FINISHED, 30)
    assert job.status == JobStatus.CANCELLED
    assert re.fullmatch(r"Cancelled at step \d+ of \d+\.", job.status_logs.last().message)
    assert job.target_model is None
    assert not MLModel.objects.filter(produced_by=job).exists()  # no checkpoint kept either
    assert job.artifacts.filter(name="training_log.txt").exists()


def test_the_time_limit_fails_a_job_that_runs_too_long(alice, workers: WorkerPool):
    job = long_customization(alice)
    Job.objects.filter(pk=job.pk).update(time_limit=10)
    wait_for_status(job, FINISHED, 60)
    assert (job.status, job.failure_type) == (JobStatus.FAILED, FailureType.TIME_LIMIT)
    assert "jobs may take 10 s from their creation" in job.failure_message
    assert (job.finished_at - job.created_at).total_seconds() >= 10


def test_a_job_delivered_twice_runs_once(alice, workers: WorkerPool):
    from jobs.engine.tasks import run_job

    job = factories.link_job(alice)
    run_job.apply_async(args=(job.pk,))  # a second message for the same job
    wait_for_status(job, FINISHED, 60)
    assert job.status == JobStatus.READY

    def both():
        return "this delivery does nothing" in workers.output("w1") + workers.output("w2")

    wait_for(both, 30, "the second delivery to be consumed")
    assert list(job.status_logs.values_list("status", flat=True)).count("running") == 1
    assert MLModel.objects.filter(produced_by=job).count() == 1


def test_a_sigkilled_pool_child_gets_its_job_requeued_and_resumed_from_its_checkpoint(
    alice, workers: WorkerPool
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
    assert time.monotonic() - killed_at < LOST_BOUND
    wait_for_status(job, FINISHED, 120)
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
    steps = list(job.metric_series.get(key="train_loss").points.values_list("step", flat=True))
    assert len(steps) == len(set(steps)) == job.total_steps  # every step once: none lost or twice
    val = job.metric_series.get(key="val_loss").points.values_list("step", flat=True)
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


def test_two_workers_share_the_queue_and_survive_one_being_killed(alice, workers: WorkerPool):
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
    assert time.monotonic() - killed_at < LOST_BOUND
    for job in (first, second):
        wait_for_status(job, FINISHED, 180)
        assert job.status == JobStatus.READY, job.failure_message
    assert worker_of(first) != victim  # finished by the survivor
