"""Jobs run in this process exactly as a worker runs them (jobs.engine.execution.execute): real ONNX
linking, real files. Training is in test_customization.py; the worker-process tests
(test_workers.py) add the queue."""

import hashlib
import json
from datetime import timedelta
from pathlib import Path

import onnx
import pytest
from django.core.files.base import ContentFile

from jobs.domain.state import job_transition
from jobs.domain.status import FailureType, JobStatus
from jobs.engine.execution import execute
from jobs.models import Job, MLModel
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)


_run = factories.run_here


def _statuses(job: Job) -> list[str]:
    return list(job.status_logs.values_list("status", flat=True))


def test_link_job_reaches_ready_with_a_verified_target_and_manifest(alice):
    job = _run(factories.link_job(alice, models=3))
    assert job.status == JobStatus.READY, job.failure_message
    assert _statuses(job) == ["pending", "running", "completed", "ready"]
    target = job.target_model
    assert target is not None
    assert target.format == "onnx"
    assert target.produced_by == job
    data = Path(target.file.path).read_bytes()
    assert hashlib.sha256(data).hexdigest() == target.sha256
    assert len(data) == target.size
    assert [o.name for o in onnx.load_from_string(data).graph.output] == ["m0/y", "m1/y", "m2/y"]
    manifest = json.loads(job.artifacts.get(name="manifest.json").file.read())
    assert [m["model"] for m in manifest["models"]] == [
        i.model.public_id for i in job.job_inputs.all()
    ]
    assert "all 3 outputs match" in job.status_logs.last().message
    assert job.finished_at
    assert job.started_at
    assert job.attempts == 1


def test_a_dataset_line_that_is_not_json_fails_the_job_naming_the_line(alice):
    job = factories.customization_job(alice)
    dataset = job.dataset
    dataset.file.save(
        "broken.jsonl", ContentFile(b'{"prompt": "1", "completion": "one"}\nnot json\n')
    )
    job = _run(job)
    assert (job.status, job.failure_type) == (JobStatus.FAILED, FailureType.INVALID_DATASET)
    assert f"dataset {dataset.public_id} (numbers), line 2" in job.failure_message


def test_a_stored_model_that_is_not_onnx_fails_the_link_naming_it(alice):
    job = factories.link_job(alice)
    bad = job.job_inputs.first().model
    bad.file.save("bad.onnx", ContentFile(b"garbage"))
    job = _run(job)
    assert (job.status, job.failure_type) == (JobStatus.FAILED, FailureType.INVALID_MODEL)
    assert f"model {bad.public_id} (m0) is not a valid ONNX model" in job.failure_message


def test_a_second_delivery_of_the_same_job_does_nothing(alice):
    job = _run(factories.link_job(alice))
    assert execute(job.pk) == "skipped"
    job.refresh_from_db()
    assert _statuses(job).count("running") == 1
    assert job.attempts == 1
    assert MLModel.objects.filter(produced_by=job).count() == 1


def test_a_job_past_its_time_limit_when_taken_fails_at_once(alice):
    job = factories.customization_job(alice)
    Job.objects.filter(pk=job.pk).update(
        time_limit=30, created_at=job.created_at - timedelta(seconds=31)
    )
    job = _run(job)
    assert (job.status, job.failure_type) == (JobStatus.FAILED, FailureType.TIME_LIMIT)
    assert "Time limit reached: jobs may take 30 s" in job.failure_message
    assert not job.failed_by_user_error


def test_a_cancelled_job_is_not_run(alice):
    from jobs.services.jobs import job_cancel

    job = factories.link_job(alice)  # queued at once: these tests commit
    assert job.status == JobStatus.PENDING
    job_cancel(job=job)
    assert execute(job.pk) == "skipped"
    assert Job.objects.get(pk=job.pk).status == JobStatus.CANCELLED


def test_a_requeued_job_starts_again_from_nothing(alice):
    from jobs.engine.execution import claim
    from jobs.engine.reaper import _release
    from jobs.engine.reporter import Reporter

    job = factories.customization_job(alice, epochs=2)  # queued at once: these tests commit
    job, token = claim(job.pk)
    reporter = Reporter(job, token)
    reporter.progress(
        epochs_completed=1, steps_completed=3, best_epoch=1, train_loss=2.0, val_loss=2.1
    )
    reporter.metric("train_loss", 3, 2.0)
    reporter.flush()
    _release(job)
    job_transition(job=job, to=JobStatus.PENDING, message="requeued")
    job, _ = claim(job.pk)
    assert (job.epochs_completed, job.best_epoch, job.val_loss, job.attempts) == (
        None,
        None,
        None,
        2,
    )
    assert not job.metric_series.exists()
    assert job.events.filter(type="job", payload__reset=True).count() == 1
    # A replay from the start: every number once, the lost attempt's metric event kept in
    # place but with no points (those steps are the next attempt's to report).
    from jobs.domain.events import events_after

    replay = events_after(job, 0)
    assert replay is not None
    assert [m["seq"] for m in replay] == list(range(1, job.event_seq + 1))
    assert all(m["data"]["series"] == {} for m in replay if m["event"] == "metrics")
    assert execute(job.pk) == "skipped"  # it is running under the new claim
