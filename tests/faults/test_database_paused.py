"""PostgreSQL stopped (SIGSTOP: not dead, so connections are accepted and never answered) while a
job trains and a person watches it: a hub of its own on a private PostgreSQL server and a
private Redis, that the test pauses and resumes. The API answers 503 JSON within its connect
timeout instead of hanging; the job waits for the database and goes on when it is back, with no
requeue; the watcher sees every event once, in order, to the end."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hubclient import Client
from jobs.demo import numbers_dataset
from tests.faults.servers import PrivatePostgres, PrivateRedis
from tests.helpers import ROOT, LineReader, free_port
from tests.workers import WorkerPool

pytestmark = pytest.mark.production

PAUSE = 8  # seconds: past HUB_WORKER_LOST_AFTER (4 s in tests), so the reaper's grace matters

MAKE_PERSON = """
import django
django.setup()
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
user = User.objects.create_user("alice", "alice@example.com", "a long enough password")
print(Token.objects.create(user=user).key)
"""


class PausedHub:
    def __init__(self, database: PrivatePostgres, url: str, token: str) -> None:
        self.database, self.url, self.token = database, url, token


@pytest.fixture
def paused_hub(tmp_path: Path) -> Iterator[PausedHub]:
    database, redis = PrivatePostgres(), PrivateRedis(tmp_path)
    database.start()
    redis.start()
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "hubsite.settings.base",
        "PYTHONUNBUFFERED": "1",
        "DATABASE_URL": database.url,
        "REDIS_URL": redis.url,
        "HUB_MEDIA_ROOT": str(tmp_path / "media"),
        "HUB_DATA_DIR": str(tmp_path / "data"),
        "HUB_BASE_URL": f"http://127.0.0.1:{port}",
        "HUB_DB_CONNECT_TIMEOUT": "2",
    }
    pool = WorkerPool(env, tmp_path / "media", tmp_path)
    web: subprocess.Popen[str] | None = None
    try:

        def run(*args: str) -> str:
            done = subprocess.run(
                [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                timeout=300,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr[-3000:]
            return done.stdout

        run("manage.py", "migrate", "-v0")
        token = run("-c", MAKE_PERSON).strip().splitlines()[-1]
        command = [sys.executable, "-m", "uvicorn", "hubsite.asgi:application"]
        web = subprocess.Popen(
            [*command, "--port", str(port), "--lifespan", "off", "--timeout-graceful-shutdown", "2"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        LineReader(web).wait_for("Uvicorn running", 90)
        pool.start("p1")
        yield PausedHub(database, env["HUB_BASE_URL"], token)
    finally:
        database.resume()
        pool.stop()
        if web is not None:
            web.terminate()
            web.wait(timeout=30)
        redis.stop()
        database.stop()


def test_a_paused_database_answers_503_meanwhile_and_the_job_goes_on_when_it_is_back(
    paused_hub: PausedHub, tmp_path: Path, figures
):
    client = Client(url=paused_hub.url, token=paused_hub.token)
    rows = tmp_path / "rows.jsonl"
    rows.write_bytes(numbers_dataset(0, 300))
    job = client.submit_customization_job(
        None,
        dataset=client.upload_dataset(rows),
        hyperparameters={"epochs": 10, "early_stopping_patience": 0},
    )
    watched: list[dict[str, Any]] = []
    watcher = threading.Thread(
        target=lambda: watched.extend(job.events(deadline=time.monotonic() + 300, stop_when_finished=True)),
        daemon=True,
    )  # fmt: skip
    watcher.start()
    deadline = time.monotonic() + 120
    while (job.get_status_details().epochs_completed or 0) < 2:
        assert time.monotonic() < deadline, "the job did not start training"
        time.sleep(0.2)

    paused_hub.database.pause()
    paused_at = time.monotonic()
    headers = {"Authorization": f"Token {paused_hub.token}"}
    started = time.monotonic()
    answer = httpx.get(f"{paused_hub.url}/api/v1/jobs/{job.job_id}/", headers=headers, timeout=30)
    answered = time.monotonic() - started
    health = httpx.get(f"{paused_hub.url}/healthz", timeout=30)
    time.sleep(max(0.0, PAUSE - (time.monotonic() - paused_at)))
    paused_hub.database.resume()
    resumed = time.monotonic()

    assert answer.status_code == 503, answer.text
    assert "database" in answer.json()["message"] and answer.headers["Retry-After"]
    assert answered < 10  # the connect timeout (2 s here), not the length of the pause
    assert health.status_code == 503 and health.json()["database"]["ok"] is False

    status = job.wait(timeout=300)
    recovered = time.monotonic() - resumed
    assert status.success, status
    watcher.join(60)
    assert not watcher.is_alive()
    data = job.refresh().data
    assert data["attempts"] == 1, "the pause was taken for a dead worker"
    metrics = client.request("GET", f"/api/v1/jobs/{job.job_id}/metrics/?keys=train_loss")
    steps = [point["step"] for point in metrics["metrics"]["train_loss"]]
    assert len(steps) == len(set(steps)) == metrics["total_points"]["train_loss"]
    seqs = [m["seq"] for m in watched if m.get("seq") is not None]
    assert seqs == sorted(set(seqs)) and seqs[-1] == data["event_seq"]
    figures.record(
        fault=f"PostgreSQL paused (SIGSTOP) for {PAUSE} s under a training job and its watcher",
        in_flight=f"1 training job, {len(steps)} loss points, {data['event_seq']} events, 1 open socket",
        lost=0, duplicated=0, recovery_s=round(recovered, 2),
        note=f"API answered 503 in {answered:.1f} s meanwhile; the job went on, attempts 1",
    )  # fmt: skip
