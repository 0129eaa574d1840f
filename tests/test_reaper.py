"""The reaper: lost workers and time limits, decided from stored heartbeats and deadlines."""

from datetime import timedelta

import pytest
from django.utils import timezone

from jobs.domain.state import job_transition
from jobs.domain.status import FailureType, JobStatus
from jobs.engine.reaper import reap
from jobs.models import Job, JobEvent
from jobs.services.jobs import job_cancel
from tests import factories


def _silent_for(job: Job, seconds: float) -> None:
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=seconds))


def test_a_job_whose_worker_went_silent_is_requeued(
    alice, settings, django_capture_on_commit_callbacks
):
    job, _ = factories.claimed(factories.link_job(alice))
    _silent_for(job, settings.HUB_WORKER_LOST_AFTER + 1)
    with django_capture_on_commit_callbacks() as sends:
        assert reap()["requeued"] == 1
    job.refresh_from_db()
    assert job.status == JobStatus.PENDING
    assert (job.claim_token, job.worker) == ("", "")
    assert "stopped answering" in job.status_logs.last().message
    assert "attempt 2 of 2" in job.status_logs.last().message
    # A new message for the next attempt, sent after commit (besides the status event).
    assert [c.__qualname__.split(".")[0] for c in sends].count("_recover") == 1


def test_a_job_out_of_attempts_fails_as_the_hubs_fault(alice, settings):
    job, _ = factories.claimed(factories.link_job(alice))
    Job.objects.filter(pk=job.pk).update(attempts=settings.HUB_MAX_ATTEMPTS)
    _silent_for(job, settings.HUB_WORKER_LOST_AFTER + 1)
    assert reap()["worker_lost"] == 1
    job.refresh_from_db()
    assert (job.status, job.failure_type) == (JobStatus.FAILED, FailureType.WORKER_LOST)
    assert not job.failed_by_user_error
    assert "resubmit" in job.failure_message


def test_a_cancelling_job_whose_worker_died_is_cancelled(alice, settings):
    job, _ = factories.claimed(factories.link_job(alice))
    job_cancel(job=job)
    _silent_for(job, settings.HUB_WORKER_LOST_AFTER + 1)
    assert reap()["cancelled"] == 1
    assert Job.objects.get(pk=job.pk).status == JobStatus.CANCELLED


def test_a_job_with_a_live_worker_is_left_alone(alice, settings):
    job, token = factories.claimed(factories.link_job(alice))
    _silent_for(job, settings.HUB_WORKER_LOST_AFTER - 2)
    assert reap() == dict.fromkeys(
        [
            "timed_out",
            "requeued",
            "worker_lost",
            "cancelled",
            "events_deleted",
            "checkpoints_removed",
            "resent",
            "temp_bytes_swept",
            "runs_out_of_contact",
            "followers_released",
            "orphans_removed",
            "storage_errors",
        ],
        0,
    )
    job.refresh_from_db()
    assert (job.status, job.claim_token) == (JobStatus.RUNNING, token)


def test_a_queued_job_past_its_time_limit_fails(alice):
    job = factories.link_job(alice)
    job_transition(job=job, to=JobStatus.PENDING, message="queued")
    Job.objects.filter(pk=job.pk).update(created_at=timezone.now() - timedelta(hours=7))
    assert reap()["timed_out"] == 1
    job.refresh_from_db()
    assert (job.status, job.failure_type) == (JobStatus.FAILED, FailureType.TIME_LIMIT)
    assert "21600 s from their creation, queue time included" in job.failure_message
    assert "still in the queue" in job.failure_message


def test_a_per_job_time_limit_counts(alice):
    job = factories.customization_job(alice)
    Job.objects.filter(pk=job.pk).update(
        time_limit=60, created_at=timezone.now() - timedelta(seconds=61)
    )
    assert reap()["timed_out"] == 1
    assert Job.objects.get(pk=job.pk).failure_type == FailureType.TIME_LIMIT


def test_a_running_job_past_its_limit_gets_a_grace_period_to_stop_itself(alice, settings):
    job, _ = factories.claimed(factories.link_job(alice))
    Job.objects.filter(pk=job.pk).update(
        time_limit=60, created_at=timezone.now() - timedelta(seconds=61)
    )
    assert reap()["timed_out"] == 0  # its worker is alive and will stop it at its next step
    later = timezone.now() + timedelta(seconds=settings.HUB_WORKER_LOST_AFTER + 1)
    Job.objects.filter(pk=job.pk).update(heartbeat_at=later)  # still beating, but too late
    assert reap(later)["timed_out"] == 1
    assert Job.objects.get(pk=job.pk).status == JobStatus.FAILED


def test_events_of_long_finished_jobs_are_deleted(alice, settings):
    old, recent = factories.link_job(alice), factories.link_job(alice)
    for job in (old, recent):
        job_cancel(job=job)
    Job.objects.filter(pk=old.pk).update(finished_at=timezone.now() - timedelta(hours=25))
    stored = JobEvent.objects.filter(job=old).count()
    assert stored > 0
    assert reap()["events_deleted"] == stored
    assert not JobEvent.objects.filter(job=old).exists()
    assert JobEvent.objects.filter(job=recent).exists()


@pytest.mark.parametrize("status", [JobStatus.READY, JobStatus.CANCELLED])
def test_finished_jobs_are_never_touched(alice, status):
    job = factories.link_job(alice)
    path = {
        JobStatus.READY: [
            JobStatus.PENDING,
            JobStatus.RUNNING,
            JobStatus.COMPLETED,
            JobStatus.READY,
        ]
    }
    for step in path.get(status, [status]):
        job_transition(job=job, to=step, message=str(step))
    Job.objects.filter(pk=job.pk).update(created_at=timezone.now() - timedelta(days=2))
    reap()
    assert Job.objects.get(pk=job.pk).status == status


def test_checkpoints_of_finished_or_deleted_jobs_are_removed_and_others_kept(alice):
    from jobs.engine.checkpoints import folder as checkpoint_folder
    from jobs.engine.checkpoints import root as checkpoints_root

    running = factories.unqueued_job(alice)
    finished = factories.unqueued_job(alice)
    job_transition(job=finished, to=JobStatus.CANCELLED, message="cancelled")
    for job in (running, finished):
        (checkpoint_folder(job) / "checkpoint-7").mkdir(parents=True)
    (checkpoints_root() / "jgone12345").mkdir()  # its job was deleted
    assert reap()["checkpoints_removed"] == 2
    assert checkpoint_folder(running).exists()
    assert not checkpoint_folder(finished).exists()
    assert not (checkpoints_root() / "jgone12345").exists()


def test_after_a_gap_in_reaping_workers_get_time_to_beat_again_before_any_is_lost(alice, settings):
    from jobs.engine.reaper import REAPER_LEASE, reap_if_due
    from jobs.models import Lease

    now = timezone.now()
    job, _ = factories.claimed(factories.link_job(alice))
    _silent_for(job, settings.HUB_WORKER_LOST_AFTER + 30)  # silent through a database outage
    Lease.objects.create(
        name=REAPER_LEASE,
        expires_at=now - timedelta(hours=1),
        last_run_at=now - timedelta(minutes=1),
    )
    first = reap_if_due("w1", now)
    assert first is not None and first["requeued"] == 0  # reaping just came back: no verdict yet
    assert Job.objects.get(pk=job.pk).status == JobStatus.RUNNING
    # Reaping goes on every interval; the job stays silent: lost once the grace is over.
    requeued_at = None
    for tick in range(1, 3 * settings.HUB_WORKER_LOST_AFTER):
        at = now + timedelta(seconds=tick * settings.HUB_REAPER_INTERVAL)
        counts = reap_if_due("w1", at)
        if counts and counts["requeued"]:
            requeued_at = at
            break
    assert requeued_at is not None
    assert (requeued_at - now).total_seconds() >= settings.HUB_WORKER_LOST_AFTER


def test_a_job_whose_worker_died_after_progress_is_requeued_even_out_of_attempts(alice, settings):
    import json

    from jobs.engine.checkpoints import folder as checkpoint_folder

    job, _ = factories.claimed(factories.customization_job(alice))
    Job.objects.filter(pk=job.pk).update(
        attempts=settings.HUB_MAX_ATTEMPTS, attempt_started_step=10
    )
    folder = checkpoint_folder(job) / "checkpoint-20"  # a checkpoint past where it started
    folder.mkdir(parents=True)
    state = {"epoch": 2, "step": 20, "best_epoch": 2, "best_val_loss": 1.0,
             "best_train_loss": 1.1, "since_best": 0}  # fmt: skip
    (folder / "hub_state.json").write_text(json.dumps(state))
    _silent_for(job, settings.HUB_WORKER_LOST_AFTER + 1)
    assert reap()["requeued"] == 1
    job.refresh_from_db()
    assert (job.status, job.progressed_attempts) == (JobStatus.PENDING, 1)
    assert "reached a new checkpoint" in job.status_logs.last().message
