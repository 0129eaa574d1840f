"""The media disk fails: it fills up, or turns read-only (a real tmpfs, mounted by the test).

A stored file is whole or absent: written aside and linked into place, so a disk that fills
mid-write leaves nothing under any name. A job whose files cannot be written fails as
``storage_full`` or ``storage_unavailable`` with a message that says so and names no server
path; a job that cannot fit is refused before it trains; an upload gets a 507 and keeps nothing.
"""

from __future__ import annotations

import errno
import io
import threading
import time

import httpx
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage
from django.db import IntegrityError, connections, transaction
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from hubsite.storage import WholeFileStorage
from jobs.demo import numbers_dataset
from jobs.domain.files import stored_with_its_row
from jobs.domain.state import job_transition
from jobs.domain.status import FailureType, JobStatus
from jobs.engine.checkpoints import folder as checkpoint_folder
from jobs.engine.execution import execute
from jobs.models import Artifact, Dataset, Job, MetricPoint, MLModel
from jobs.services.jobs import job_submit_customization
from tests import factories
from tests.faults.disks import SmallDisk
from tests.faults.ledger import audit
from tests.security.conftest import start_web, stop_web
from tests.workers import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

MB = 1_000_000


def test_a_file_that_does_not_fit_leaves_nothing_under_any_name(small_disk: SmallDisk):
    storage = WholeFileStorage(location=small_disk.path)
    kept = storage.save("models/whole.bin", ContentFile(b"x" * MB))
    with pytest.raises(OSError, match="No space left") as raised:
        storage.save("models/too-big.bin", ContentFile(b"y" * 20 * MB))
    assert raised.value.errno == errno.ENOSPC
    assert small_disk.files() == {kept: MB}
    # Why: Django's own storage leaves the part it wrote under the final name.
    with pytest.raises(OSError, match="No space left"):
        FileSystemStorage(location=small_disk.path).save("plain.bin", ContentFile(b"z" * 20 * MB))
    assert 0 < small_disk.files().get("plain.bin", 0) < 20 * MB


def test_a_file_whose_row_is_not_written_is_removed_again(alice, settings, tmp_path):
    job = factories.unqueued_job(alice)
    settings.MEDIA_ROOT = str(tmp_path / "media")
    artifact = Artifact(job=job, kind="other", name="log.txt", size=-1, sha256="0" * 64)

    def store() -> None:  # a negative size: the database refuses the row
        with stored_with_its_row(artifact.file), transaction.atomic():
            artifact.file.save("log.txt", ContentFile(b"abc"), save=False)
            artifact.save()

    with pytest.raises(IntegrityError):
        store()
    assert artifact.file.name  # it was stored, then removed
    assert not [p for p in (tmp_path / "media").rglob("*") if p.is_file()]


def test_an_upload_to_a_full_disk_answers_507_and_keeps_nothing(alice, small_disk, settings):
    settings.MEDIA_ROOT = str(small_disk.path)
    small_disk.fill()
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(alice)
    response = client.post(
        "/api/v1/datasets/", {"file": io.BytesIO(numbers_dataset(0, 2000))}, format="multipart"
    )
    assert response.status_code == 507, response.content
    assert "storage is full" in response.json()["message"]
    assert not Dataset.objects.exists()
    assert small_disk.files() == {}


@pytest.mark.production
def test_a_body_the_full_disk_cannot_hold_gets_507_json_from_the_web_server(
    alice, small_disk, tmp_path
):
    """Past FILE_UPLOAD_MAX_MEMORY_SIZE the web server spools a body to the media disk before
    Django sees it: that write failing is answered too, not dropped as a bare 500."""
    token = Token.objects.create(user=alice).key
    small_disk.fill()
    web = start_web(small_disk.path, tmp_path / "data", HUB_MAX_UPLOAD_BYTES=str(64 * MB))
    try:
        response = httpx.post(
            f"{web.url}/api/v1/datasets/",
            headers={"Authorization": f"Token {token}"},
            files={"file": ("rows.jsonl", numbers_dataset(0, 1999) * 40)},  # ~5 MB
            timeout=60,
        )
    finally:
        stop_web(web)
    assert response.status_code == 507, response.text
    assert "storage is full" in response.json()["message"]
    assert small_disk.files() == {}
    assert not Dataset.objects.exists()


def _pending(job: Job) -> Job:
    if job.status == JobStatus.CREATED:
        job_transition(job=job, to=JobStatus.PENDING, message="Queued; waiting for a worker.")
    return job


def _training(alice, **hyperparameters) -> Job:
    """All weights (checkpoints of a few MB) for long enough to be caught between epochs."""
    return _pending(
        job_submit_customization(
            owner=alice,
            dataset=factories.dataset(alice, records=300),
            hyperparameters={
                "epochs": 60,
                "early_stopping_patience": 0,
                "finetuning_type": "all_weights",
                **hyperparameters,
            },
        )
    )


class Worker:
    """``execute`` on a thread of this process, exactly as a worker runs a job."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            execute(self.job.pk)
        finally:
            connections.close_all()

    def past_a_checkpoint(self) -> None:
        def whole_checkpoint() -> bool:
            folder = checkpoint_folder(self.job)
            return folder.is_dir() and any(folder.glob("checkpoint-*/hub_state.json"))

        wait_for(whole_checkpoint, 120, f"job {self.job.public_id} to keep a checkpoint")

    def finished(self) -> Job:
        self.thread.join(timeout=180)
        assert not self.thread.is_alive(), "the job did not end"
        self.job.refresh_from_db()
        return self.job


def _stored_files(job: Job) -> dict[str, int]:
    """What the database says is on the media disk for this job and its owner."""
    rows: list[Dataset | MLModel | Artifact] = [
        *Dataset.objects.filter(owner=job.owner),
        *MLModel.objects.filter(owner=job.owner),
        *Artifact.objects.filter(job=job),
    ]
    return {row.file.name: row.size for row in rows}


def test_a_job_that_cannot_store_its_outputs_is_refused_before_it_trains(
    alice, small_disk, settings
):
    settings.MEDIA_ROOT = str(small_disk.path)
    job = _training(alice)
    small_disk.fill(leave=2 * MB)  # all weights need about 3× the model a checkpoint, 3 at once
    job = Worker(job).finished()
    assert (job.status, job.failure_type) == (JobStatus.FAILED, FailureType.STORAGE_FULL)
    assert "needs about" in job.failure_message and "it was not started" in job.failure_message
    assert not job.steps_completed
    assert not job.metric_series.filter(points_count__gt=0).exists()
    assert not checkpoint_folder(job).exists()


def test_a_disk_that_fills_during_training_fails_the_job_as_storage_full_leaving_no_partial_file(
    alice, small_disk, settings, figures
):
    settings.MEDIA_ROOT = str(small_disk.path)
    job = _training(alice)
    worker = Worker(job)
    worker.past_a_checkpoint()
    points_before = MetricPoint.objects.filter(series__job=job).count()
    small_disk.fill()
    filled = time.monotonic()
    job = worker.finished()
    ended = time.monotonic() - filled
    assert (job.status, job.failure_type) == (JobStatus.FAILED, FailureType.STORAGE_FULL), (
        job.failure_message
    )
    assert "storage is full" in job.failure_message
    assert "no partial file was kept" in job.failure_message
    detail = job.status_logs.last().detail
    assert "ENOSPC" in detail or "ENOSPC" in job.failure_message or detail == ""
    assert str(small_disk.path) not in job.failure_message + detail  # no server path
    assert not checkpoint_folder(job).exists()  # a job that ended keeps no checkpoint
    # Every file on the disk is one the database knows, whole (its recorded size).
    assert small_disk.files() == _stored_files(job)
    ledger = audit([job])  # every point reported before the fault kept, none twice
    assert ledger.lost == ledger.duplicated == [] and ledger.points >= points_before > 0
    figures.record(
        fault="media disk filled during training (tmpfs, ENOSPC)", **ledger.figures(),
        recovery_s=round(ended, 2),
        note="failed as storage_full; no partial checkpoint or file left",
    )  # fmt: skip


def test_a_media_disk_turned_read_only_fails_the_job_as_storage_unavailable(
    alice, small_disk, settings, client, figures
):
    settings.MEDIA_ROOT = str(small_disk.path)
    job = _training(alice)
    worker = Worker(job)
    worker.past_a_checkpoint()
    small_disk.read_only()
    turned = time.monotonic()
    job = worker.finished()
    ended = time.monotonic() - turned
    assert (job.status, job.failure_type) == (JobStatus.FAILED, FailureType.STORAGE_UNAVAILABLE), (
        job.failure_message
    )
    assert "refused a write" in job.failure_message
    assert str(small_disk.path) not in job.failure_message
    # A read-only disk keeps what it had, which was whole: each checkpoint marked finished.
    checkpoints = sorted(checkpoint_folder(job).glob("checkpoint-*"))
    assert checkpoints and all((c / "hub_state.json").exists() for c in checkpoints)
    health = client.get("/healthz").json()
    assert health["storage"]["ok"] is False and "storage" in health["problems"]
    ledger = audit([job])
    assert ledger.lost == ledger.duplicated == []
    figures.record(
        fault="media disk remounted read-only during training (EROFS)", **ledger.figures(),
        recovery_s=round(ended, 2),
        note="failed as storage_unavailable; /healthz reports the storage",
    )  # fmt: skip
