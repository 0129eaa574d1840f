"""PostgreSQL goes away under running jobs: every connection of the workers is cut and new ones
are refused for a few seconds (the database refuses connections, as during a restart). A worker
retries with backoff and goes on: the job is neither failed nor requeued, and no metric point is
lost or written twice."""

from __future__ import annotations

import time

import pytest
from django.db import connection

from jobs.domain.status import JobStatus
from jobs.services.jobs import job_submit_customization
from tests import factories
from tests.workers import WorkerPool, wait_for, wait_for_status

pytestmark = [pytest.mark.production, pytest.mark.django_db(transaction=True)]


def _cut_off(seconds: float) -> int:
    """Refuse new connections to the test database and end every one of them but this test's
    own, for ``seconds`` (done from the server's maintenance database); returns how many
    connections were cut."""
    import psycopg

    own = connection.cursor().connection.info.backend_pid
    params = connection.settings_dict
    name = params["NAME"]
    with psycopg.connect(
        dbname="postgres", user=params["USER"], password=params["PASSWORD"],
        host=params["HOST"], port=params["PORT"] or 5432, autocommit=True,
    ) as admin:  # fmt: skip
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        row = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> %s",
            (name, own),
        ).fetchone()
        time.sleep(seconds)  # the outage itself: the time the workers must outlast
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    return int(row[0]) if row else 0


def test_a_database_outage_of_seconds_pauses_a_training_job_and_loses_nothing(
    alice, workers: WorkerPool, figures
):
    job = job_submit_customization(
        owner=alice,
        dataset=factories.dataset(alice, records=300),
        hyperparameters={"epochs": 12, "early_stopping_patience": 0},
    )

    def training() -> bool:
        job.refresh_from_db()
        return job.status == JobStatus.RUNNING and (job.steps_completed or 0) >= 20

    wait_for(training, 90, "the job to be training")
    cut = _cut_off(4.0)
    assert cut >= 1
    back = time.monotonic()
    at_outage = job.steps_completed or 0

    def moving_again() -> bool:
        job.refresh_from_db()
        return (job.steps_completed or 0) > at_outage or job.status != JobStatus.RUNNING

    wait_for(moving_again, 120, "the job to move again", every=0.1)
    resumed = time.monotonic() - back
    job = wait_for_status(job, {"ready", "failed", "cancelled"}, 180)
    assert job.status == JobStatus.READY, job.failure_message
    assert job.attempts == 1  # outlasted, not requeued
    steps = list(job.metric_series.get(key="train_loss").points.values_list("step", flat=True))
    assert len(steps) == len(set(steps)) == job.total_steps  # none lost, none twice
    assert not job.status_logs.filter(message__contains="stopped answering").exists()
    figures.record(
        fault="PostgreSQL refused connections for 4 s, every connection cut",
        in_flight=f"1 training job, {cut} connections, {len(steps)} metric points",
        lost=0, duplicated=0, recovery_s=round(resumed, 2),
        note="job moved on without a requeue (attempts 1)",
    )  # fmt: skip


def test_during_a_database_outage_the_api_answers_503_json_and_healthz_says_why(
    hub_env, alice, figures
):
    import threading

    import httpx

    url, token = hub_env["HUB_URL"], hub_env["HUB_API_TOKEN"]
    answers: dict[str, httpx.Response] = {}

    def ask() -> None:
        time.sleep(1.5)  # inside the outage
        headers = {"Authorization": f"Token {token}"}
        answers["api"] = httpx.get(f"{url}/api/v1/jobs/", headers=headers, timeout=30)
        answers["healthz"] = httpx.get(f"{url}/healthz", timeout=30)

    asking = threading.Thread(target=ask)
    asking.start()
    _cut_off(5.0)
    asking.join(60)
    api = answers["api"]
    assert api.status_code == 503, api.text
    assert api.headers["content-type"].startswith("application/json")
    assert "database is unavailable" in api.json()["message"]
    assert api.headers["Retry-After"] == "10"
    health = answers["healthz"]
    assert health.status_code == 503
    assert health.json()["database"]["ok"] is False
    assert health.json()["status"] == "degraded"
    # And back: the same request succeeds once the database is.
    started = time.monotonic()
    back = httpx.get(f"{url}/api/v1/jobs/", headers={"Authorization": f"Token {token}"}, timeout=30)
    assert back.status_code == 200
    figures.record(
        fault="PostgreSQL refused connections for 5 s under the web process",
        in_flight="API and /healthz requests", lost=0, duplicated=0,
        recovery_s=round(time.monotonic() - started, 2), note="503 JSON with Retry-After meanwhile",
    )  # fmt: skip
