"""The job state machine: allowed transitions, refusals that change nothing, status logs."""

import threading

import pytest
from django.db import IntegrityError, connection, transaction

from jobs.domain.state import job_transition
from jobs.domain.status import FINISHED, TRANSITIONS, FailureType, InvalidTransition, JobStatus
from jobs.models import Job, StatusLog
from jobs.models.job import StatusChangeOutsideMachine
from tests import factories


def _walk(job: Job, *path: JobStatus) -> Job:
    for status in path:
        failure = FailureType.INTERNAL_ERROR if status == JobStatus.FAILED else None
        job = job_transition(job=job, to=status, message=f"to {status}", failure_type=failure)
    return job


def test_every_status_of_seed_004_exists_with_its_wire_name():
    assert [s.value for s in JobStatus] == [
        "created", "pending", "running", "cancelling", "cancelled",
        "failed", "completed", "ready", "unknown",
    ]  # fmt: skip
    assert set(TRANSITIONS) == set(JobStatus.values)


def test_finished_means_completed_ready_failed_or_cancelled():
    assert {"completed", "ready", "failed", "cancelled"} == FINISHED


def test_happy_path_writes_a_status_log_entry_per_transition(alice):
    job = _walk(
        factories.link_job(alice),
        JobStatus.PENDING,
        JobStatus.RUNNING,
        JobStatus.COMPLETED,
        JobStatus.READY,
    )
    assert job.status == JobStatus.READY
    logs = list(job.status_logs.values_list("status", "message"))
    assert logs == [
        ("pending", "to pending"),
        ("running", "to running"),
        ("completed", "to completed"),
        ("ready", "to ready"),
    ]
    assert job.queued_at is not None
    assert job.started_at is not None
    assert job.finished_at is not None
    assert job.queued_at <= job.started_at <= job.finished_at


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ((), JobStatus.RUNNING),
        ((), JobStatus.READY),
        (
            (JobStatus.PENDING, JobStatus.RUNNING, JobStatus.COMPLETED, JobStatus.READY),
            JobStatus.RUNNING,
        ),
        ((JobStatus.CANCELLED,), JobStatus.PENDING),
        ((JobStatus.PENDING, JobStatus.RUNNING, JobStatus.CANCELLING), JobStatus.COMPLETED),
        ((JobStatus.PENDING,), JobStatus.CREATED),
    ],
)
def test_illegal_transition_is_refused_and_changes_nothing(alice, path, target):
    job = _walk(factories.link_job(alice), *path)
    before = (job.status, job.status_logs.count(), job.updated_at)
    with pytest.raises(InvalidTransition, match=f"cannot become {target}"):
        job_transition(job=job, to=target, message="nope")
    job.refresh_from_db()
    assert (job.status, job.status_logs.count(), job.updated_at) == before


def test_refusal_of_a_finished_job_says_it_is_finished(alice):
    job = _walk(factories.link_job(alice), JobStatus.CANCELLED)
    with pytest.raises(InvalidTransition, match="it is already cancelled"):
        job_transition(job=job, to=JobStatus.PENDING, message="again")


def test_failing_needs_a_failure_type_and_records_it_with_the_message(alice):
    job = _walk(factories.link_job(alice), JobStatus.PENDING, JobStatus.RUNNING)
    with pytest.raises(ValueError, match="failure_type"):
        job_transition(job=job, to=JobStatus.FAILED, message="broke")
    job = job_transition(
        job=job,
        to=JobStatus.FAILED,
        message="Time limit of 60 s reached.",
        failure_type=FailureType.TIME_LIMIT,
    )
    assert (job.failure_type, job.failure_message) == ("time_limit", "Time limit of 60 s reached.")
    assert not job.failed_by_user_error
    assert job.finished_at is not None


def test_only_a_failure_carries_a_failure_type(alice):
    job = factories.link_job(alice)
    with pytest.raises(ValueError, match="only a failed job"):
        job_transition(
            job=job, to=JobStatus.PENDING, message="queued", failure_type=FailureType.WORKER_LOST
        )
    assert job.status_logs.count() == 0


def test_a_requeued_job_keeps_its_first_start_time(alice):
    job = _walk(factories.link_job(alice), JobStatus.PENDING, JobStatus.RUNNING)
    first_start = job.started_at
    job = _walk(job, JobStatus.PENDING, JobStatus.RUNNING)
    assert job.started_at == first_start


def test_assigning_status_directly_is_refused(alice):
    job = factories.link_job(alice)
    job.status = JobStatus.READY
    with pytest.raises(StatusChangeOutsideMachine, match="job_transition"):
        job.save()
    assert Job.objects.get(pk=job.pk).status == JobStatus.CREATED


def test_database_refuses_a_failed_job_without_a_reason(alice):
    job = factories.link_job(alice)
    with pytest.raises(IntegrityError), transaction.atomic():
        Job.objects.filter(pk=job.pk).update(status=JobStatus.FAILED)


def test_database_refuses_a_best_epoch_beyond_the_completed_ones(alice):
    job = factories.customization_job(alice)
    with pytest.raises(IntegrityError), transaction.atomic():
        Job.objects.filter(pk=job.pk).update(epochs_completed=2, best_epoch=3)


def test_transition_updates_the_callers_instance(alice):
    job = factories.link_job(alice)
    returned = job_transition(job=job, to=JobStatus.PENDING, message="queued")
    assert returned is job
    assert job.status == JobStatus.PENDING


@pytest.mark.production
@pytest.mark.django_db(transaction=True)
def test_racing_transitions_are_serialised_so_exactly_one_wins(alice):
    """A worker completing and a user cancelling at the same moment: the row lock lets one
    through and refuses the other, never both."""
    job = _walk(factories.unqueued_job(alice), JobStatus.PENDING, JobStatus.RUNNING)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def attempt(target: JobStatus) -> None:
        barrier.wait()
        try:
            job_transition(job=Job.objects.get(pk=job.pk), to=target, message=str(target))
            outcomes.append(f"won:{target}")
        except InvalidTransition:
            outcomes.append(f"lost:{target}")
        finally:
            connection.close()

    threads = [
        threading.Thread(target=attempt, args=(t,))
        for t in (JobStatus.COMPLETED, JobStatus.CANCELLING)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(o.split(":")[0] for o in outcomes) == ["lost", "won"]
    job.refresh_from_db()
    assert StatusLog.objects.filter(job=job).count() == 3  # pending, running, and the winner
    assert f"won:{job.status}" in outcomes


@pytest.mark.parametrize(
    "change",
    [{"status": "done"}, {"kind": "quantize"}, {"failure_type": "bad_luck"}],
)
def test_database_refuses_values_outside_the_enums(alice, change):
    job = factories.link_job(alice)
    with pytest.raises(IntegrityError), transaction.atomic():
        Job.objects.filter(pk=job.pk).update(**change)
