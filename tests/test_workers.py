"""Jobs on real Celery worker processes, in the production profile: PostgreSQL, Redis, two job
workers sharing one queue, and a control worker running beat and the reaper. Workers that die
or get a message twice: tests/faults/test_workers.py."""

import re

import pytest

from jobs.domain.status import TERMINAL, FailureType, JobStatus
from jobs.models import Job, MLModel
from jobs.services.jobs import job_cancel
from tests import factories
from tests.workers import WorkerPool, long_customization, mid_run, wait_for_status

pytestmark = [pytest.mark.production, pytest.mark.django_db(transaction=True)]


def test_both_kinds_of_job_run_to_ready_on_workers(alice, workers: WorkerPool):
    link = factories.link_job(alice)
    custom = factories.customization_job(alice, epochs=3)
    for job in (link, custom):
        wait_for_status(job, TERMINAL, 90)
        assert job.status == JobStatus.READY, job.failure_message
        assert job.target_model is not None
        assert re.match(r"Running on w[12]@", job.status_logs.get(status="running").message)
    assert custom.epochs_completed == 3
    assert custom.metric_series.get(key="val_loss").points_count == 4  # step 0 and each epoch


def test_cancel_stops_a_running_customization_at_its_next_step(alice, workers: WorkerPool):
    job = mid_run(long_customization(alice))
    job_cancel(job=job)
    assert job.status == JobStatus.CANCELLING  # at once, before the worker has reacted
    wait_for_status(job, TERMINAL, 30)
    assert job.status == JobStatus.CANCELLED
    assert re.fullmatch(r"Cancelled at step \d+ of \d+\.", job.status_logs.last().message)
    assert job.target_model is None
    assert not MLModel.objects.filter(produced_by=job).exists()  # no checkpoint kept either
    assert job.artifacts.filter(name="training_log.txt").exists()


def test_the_time_limit_fails_a_job_that_runs_too_long(alice, workers: WorkerPool):
    job = long_customization(alice)
    Job.objects.filter(pk=job.pk).update(time_limit=10)
    wait_for_status(job, TERMINAL, 60)
    assert (job.status, job.failure_type) == (JobStatus.FAILED, FailureType.TIME_LIMIT)
    assert "jobs may take 10 s from their creation" in job.failure_message
    assert (job.finished_at - job.created_at).total_seconds() >= 10
