"""Workers on many hosts with no shared disk: every file in object storage (a real S3 API server
on loopback, tests/s3.py), each worker with a media and scratch folder of its own. A training job
killed with its host resumes on another host from the checkpoint the first uploaded to the
bucket; nothing of a job is ever read from another host's folder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.conf import settings as django_settings

from jobs.domain.status import TERMINAL, JobStatus
from tests import factories
from tests.s3 import Bucket, Gate, new_bucket
from tests.workers import (
    LOST_BOUND,
    WorkerPool,
    _database_url,
    long_customization,
    wait_for,
    wait_for_status,
    worker_of,
)

pytestmark = [pytest.mark.production, pytest.mark.django_db(transaction=True)]


class Hosts:
    def __init__(self, pool: WorkerPool, bucket: Bucket, root: Path) -> None:
        self.pool, self.bucket, self.root = pool, bucket, root

    def folders(self, name: str) -> dict[str, str]:
        """A host's own folders: nothing here is seen by another host."""
        base = self.root / name
        return {
            "HUB_DATA_DIR": str(base / "data"),
            "HUB_MEDIA_ROOT": str(base / "media"),
            "HUB_SCRATCH_DIR": str(base / "scratch"),
        }

    def start(self, name: str, *extra: str, queue: str | None = None) -> None:
        self.pool.start(name, *extra, queue=queue, env=self.folders(name))


@pytest.fixture(scope="module")
def hosts(
    django_db_setup: None,
    django_db_blocker: Any,
    tmp_path_factory: pytest.TempPathFactory,
    s3_gate: Gate,
) -> Iterator[Hosts]:
    from hubsite.celery import app
    from tests.conftest import _missing_services
    from tests.helpers import free_port

    with django_db_blocker.unblock():
        missing = _missing_services()
        if missing:
            pytest.skip(missing)
    bucket = new_bucket(s3_gate)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "hubsite.settings.base",
        "PYTHONUNBUFFERED": "1",
        "DATABASE_URL": _database_url(),
        "HUB_BASE_URL": f"http://127.0.0.1:{free_port()}",
        **bucket.env(),
    }
    root = tmp_path_factory.mktemp("hosts")
    pool = WorkerPool(env, root / "unused-media", tmp_path_factory.mktemp("host-logs"))
    made = Hosts(pool, bucket, root)
    app.control.purge()
    try:
        made.start("control", "-B", queue=django_settings.HUB_CONTROL_QUEUE)
        yield made
    finally:
        pool.stop()


@pytest.fixture
def on_bucket(hosts: Hosts, settings: Any, tmp_path: Path) -> Hosts:
    """This test process is one more host of the deployment: same bucket, own folders."""
    settings.STORAGES = hosts.bucket.storages()
    settings.HUB_SCRATCH_DIR = str(tmp_path / "scratch")
    return hosts


def test_a_training_job_killed_with_its_host_resumes_on_another_from_the_bucket(
    alice, on_bucket: Hosts
):
    hosts, bucket = on_bucket, on_bucket.bucket
    hosts.start("h1")
    job = long_customization(alice, epochs=30)

    def checkpoint_in_the_bucket() -> bool:
        job.refresh_from_db()
        stored = bucket.keys(f"checkpoints/{job.public_id}/")
        return (job.epochs_completed or 0) >= 2 and any(
            k.endswith("/hub_state.json") for k in stored
        )

    wait_for(checkpoint_in_the_bucket, 180, f"job {job.public_id} to upload a checkpoint")
    assert worker_of(job) == "h1"
    hosts.start("h2")
    hosts.pool.kill("h1")  # the host is gone, and its disk with it
    wait_for(
        lambda: job.status_logs.filter(message__contains="stopped answering").exists(),
        LOST_BOUND,
        "the requeue",
    )
    wait_for_status(job, TERMINAL, 240)
    log = "\n".join(f"{m} | {d}" for m, d in job.status_logs.values_list("message", "detail"))
    assert job.status == JobStatus.READY, log
    assert worker_of(job) == "h2"
    resumed = job.status_logs.get(message__startswith="Resuming from the checkpoint").message
    assert int(resumed.split("epoch ")[1].split(" ")[0]) >= 2, resumed
    assert "fetched its checkpoints" in hosts.pool.output("h2")
    steps = list(job.metric_series.get(key="train_loss").points.values_list("step", flat=True))
    assert len(steps) == len(set(steps)) == job.total_steps  # every step once

    # Nothing of the job on any host's own media folder: the bucket holds it all.
    for host in ("h1", "h2", "control"):
        media = Path(hosts.folders(host)["HUB_MEDIA_ROOT"])
        kept = [p for p in media.rglob("*") if p.is_file() and ".uploads" not in p.parts]
        assert not [p for p in kept if "builtin-models" not in p.parts], kept
    assert job.target_model.file.name in bucket.keys("models/")
    assert bucket.keys(f"checkpoints/{job.public_id}/") == {}  # forgotten once finished

    response = factories.api(alice).get(f"/api/v1/jobs/{job.public_id}/target-model/")
    assert response.status_code == 302
    fetched = httpx.get(response["Location"])
    assert fetched.status_code == 200 and len(fetched.content) == job.target_model.size


def test_the_whole_life_of_a_job_on_a_team_deployment(
    alice, bob, on_bucket: Hosts, sso: Any, prometheus: Any, live_server: Any, tmp_path: Path
):
    """Signed in through the team's provider; the dataset up in parts straight to the bucket;
    trained on one host, resumed on another after the first dies; the target downloaded from the
    bucket by a presigned address; shared; deleted, leaving nothing in the bucket; the log says
    who did what; Prometheus saw it all."""
    import re

    from audit.models import AuditEntry
    from hubclient import Client
    from jobs.demo import numbers_dataset
    from jobs.models import Job
    from tests.oidc import sign_in_through

    hosts, bucket = on_bucket, on_bucket.bucket
    earlier = set(bucket.keys())
    sso.setup(
        live_server.url,
        [
            {"username": "alice-idp", "email": alice.email},
            {"username": "bob-idp", "email": bob.email},
        ],
    )
    browser, landed = sign_in_through(live_server.url, "alice-idp")
    assert landed.url.path == "/jobs/"
    page = browser.get(f"{live_server.url}/account/token/").text
    token = next(t for t in re.findall(r"[0-9a-f]{40}", page))
    data = tmp_path / "numbers.jsonl"
    data.write_bytes(numbers_dataset(0, 300))

    hosts.start("h1")
    with Client(url=live_server.url, token=token, part_threshold=1) as hub:
        dataset = hub.upload_dataset(data)
        assert dataset.dataset_id in _dataset_ids(bucket)
        run = hub.submit_customization_job(
            None,
            dataset=dataset.dataset_id,
            hyperparameters={"epochs": 30, "early_stopping_patience": 0},
        )
        job = Job.objects.get(public_id=run.job_id)

        def checkpoint_in_the_bucket() -> bool:
            job.refresh_from_db()
            kept = bucket.keys(f"checkpoints/{job.public_id}/")
            return (job.epochs_completed or 0) >= 2 and any(
                k.endswith("/hub_state.json") for k in kept
            )

        wait_for(checkpoint_in_the_bucket, 180, "a checkpoint in the bucket")
        hosts.start("h2")
        hosts.pool.kill("h1")
        wait_for_status(job, TERMINAL, 300)
        assert job.status == JobStatus.READY
        assert worker_of(job) == "h2" and job.attempts == 2
        target = tmp_path / "target.zip"
        hub.get_job(job.public_id).download_target_model(str(target))
        assert target.stat().st_size == job.target_model.size
        hub.get_job(job.public_id).modify_sharing(add_emails=[bob.email])

    # Bob signs in through the provider too and reads the shared job's target from the bucket.
    reader, _ = sign_in_through(live_server.url, "bob-idp")
    location = reader.get(
        f"{live_server.url}/api/v1/jobs/{job.public_id}/target-model/", follow_redirects=False
    ).headers["location"]
    assert location.startswith(bucket.gate.url + "/")
    assert len(httpx.get(location).content) == job.target_model.size

    # Prometheus, scraping the web process, saw the job finish and the workers on two hosts.
    assert (
        prometheus.wait_for('hub_jobs{kind="customization",status="ready"}', lambda v: v == 1.0)
        == 1.0
    )
    assert (
        prometheus.wait_for(
            'hub_job_duration_seconds_count{kind="customization"}', lambda v: v >= 1
        )
        >= 1
    )

    with Client(url=live_server.url, token=token) as hub:
        hub.get_job(job.public_id).delete()
        hub.get_dataset(dataset.dataset_id).delete()
    # The bucket is the module's: what the other test left in it stays.
    try:
        wait_for(lambda: set(bucket.keys()) <= earlier, 30, "this job's objects to leave")
    except AssertionError as timed_out:
        left = set(bucket.keys()) - earlier
        raise AssertionError(f"{timed_out}; still there: {sorted(left)}") from None
    actions = set(AuditEntry.objects.filter(actor=alice).values_list("action", flat=True))
    assert {"sign_in", "share_given", "deleted", "token_changed"} <= actions
    downloaded = AuditEntry.objects.get(action="downloaded", actor=bob)
    assert downloaded.target_owner == alice


def _dataset_ids(bucket: Bucket) -> set[str]:
    return {name.split("/")[1] for name in bucket.keys("datasets/")}
