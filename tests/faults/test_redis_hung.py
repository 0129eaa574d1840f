"""Redis stopped (SIGSTOP), not dead, under a web process: its first call waits for its timeout,
and then the process's circuit breaker is open, so that the requests after it make no Redis
call at all (throttles let them through, jobs wait pending, live events come from the
database) and /healthz says so; once Redis answers again, a probe closes the breaker."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from rest_framework.authtoken.models import Token

from hubclient import Client
from jobs.demo import numbers_dataset
from jobs.models import Job
from tests.faults.servers import CountingProxy, PrivateRedis, production_web
from tests.helpers import ROOT
from tests.workers import wait_for

pytestmark = [pytest.mark.production, pytest.mark.django_db(transaction=True)]

PROBE = "PING"  # the breaker's probe while open; every other command is a caller's


class HungHub:
    def __init__(self, redis: PrivateRedis, proxy: CountingProxy, url: str) -> None:
        self.redis, self.proxy, self.url = redis, proxy, url

    def health(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/healthz", timeout=30).json()


@pytest.fixture
def hung_hub(tmp_path: Path, settings: Any) -> Iterator[HungHub]:
    settings.MEDIA_ROOT = str(tmp_path / "media")
    redis = PrivateRedis(tmp_path)
    redis.start()
    proxy = CountingProxy(redis.port)
    try:
        with production_web(tmp_path, proxy.url, HUB_NAMESPACE="hub-hung") as env:
            yield HungHub(redis, proxy, env["HUB_BASE_URL"])
    finally:
        proxy.close()
        redis.stop()


def test_after_one_timeout_a_hung_redis_costs_requests_nothing_and_healthz_says_so(
    alice, hung_hub: HungHub, tmp_path: Path, figures
):
    client = Client(url=hung_hub.url, token=Token.objects.create(user=alice).key)
    dataset = tmp_path / "numbers.jsonl"
    dataset.write_bytes(numbers_dataset(0, 120))
    hyperparameters = {"epochs": 1}
    # Redis answering: the process has its connections (throttles, the broker) open.
    client.submit_customization_job(None, dataset, hyperparameters=hyperparameters)
    assert hung_hub.health()["redis"]["circuit"] == "closed"
    assert hung_hub.proxy.besides(PROBE) > 0

    hung_hub.redis.pause()
    started = time.monotonic()
    first = client.submit_customization_job(None, dataset, hyperparameters=hyperparameters)
    upload_and_submit = time.monotonic() - started
    sent = hung_hub.proxy.besides(PROBE)
    started = time.monotonic()
    second = client.submit_customization_job(
        None, first.data["dataset"], hyperparameters=hyperparameters
    )
    submit = time.monotonic() - started
    health = hung_hub.health()

    # The second submission made no Redis call: not the throttles', the broker's nor the
    # live events'. (Bytes sent to a paused Redis still reach the proxy.)
    assert hung_hub.proxy.besides(PROBE) == sent
    assert health["redis"]["circuit"] == "open"
    assert "redis: circuit open" in health["problems"]
    assert health["database"]["ok"] and health["status"] == "degraded"
    doctor = subprocess.run(
        [sys.executable, "-m", "hubclient.cli", "doctor"], cwd=ROOT, capture_output=True,
        text=True, timeout=120, env={"HUB_URL": hung_hub.url, "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert doctor.returncode == 1 and "circuit open" in doctor.stdout, doctor.stdout
    for job in (first, second):
        stored = Job.objects.get(public_id=job.job_id)
        assert (stored.status, stored.sent_at) == ("pending", None)
        assert "the job waits here and is sent to a worker as soon as the queue is back" in (
            " ".join(stored.status_logs.values_list("message", flat=True))
        )

    hung_hub.redis.resume()
    resumed = time.monotonic()
    wait_for(lambda: hung_hub.health()["redis"]["circuit"] == "closed", 60, "the breaker to close")
    recovered = time.monotonic() - resumed
    health = hung_hub.health()
    assert health["broker"]["ok"] and health["live"]["ok"], health
    client.submit_customization_job(None, first.data["dataset"], hyperparameters=hyperparameters)
    assert hung_hub.proxy.besides(PROBE) > sent  # Redis is called again
    figures.record(
        fault="Redis stopped (SIGSTOP) under a web process, then resumed",
        in_flight="an upload and submit, then a submit (2 jobs)", lost=0, duplicated=0,
        recovery_s=round(recovered, 2),
        note=f"meanwhile an upload and submit answered in {upload_and_submit:.2f} s (one "
        f"timeout opened the circuit), a submit in {submit:.2f} s with no Redis call; "
        "/healthz said 'redis: circuit open'; the jobs waited pending",
    )  # fmt: skip
