"""Reaping does not hang on one process: every job worker reaps when it is its turn (a lease
serialises them), so killing the control worker (beat) leaves lost jobs found all the same.
/healthz and `hub doctor` say what is reachable, when the reaper last ran and which workers
live."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from jobs.domain.status import FINISHED
from jobs.engine.reaper import REAPER_LEASE, reap_if_due
from jobs.models import Job, Lease, WorkerSeen
from tests import factories
from tests.helpers import ROOT
from tests.workers import WorkerPool, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_one_reaper_run_an_interval_whoever_asks(alice, settings):
    now = timezone.now()
    assert reap_if_due("w1", now) is not None
    assert reap_if_due("w2", now + timedelta(seconds=settings.HUB_REAPER_INTERVAL * 0.5)) is None
    later = now + timedelta(seconds=settings.HUB_REAPER_INTERVAL)
    assert reap_if_due("w2", later) is not None
    lease = Lease.objects.get(name=REAPER_LEASE)
    assert lease.holder == "w2" and lease.last_run_at is not None


def test_healthz_reports_each_part_and_what_is_missing(client, alice, settings):
    report = client.get("/healthz").json()
    assert report["database"]["ok"] is True
    assert {"broker", "live", "jobs", "workers_seen", "last_reap_s_ago"} <= set(report)
    assert report["status"] == "degraded"
    assert "no worker seen recently" in report["problems"]
    WorkerSeen.objects.create(name="w1@host", hardware=["any", "cpu"], seen_at=timezone.now())
    reap_if_due("w1@host")
    report = client.get("/healthz").json()
    assert report["workers_seen"][0]["name"] == "w1@host"
    assert report["last_reap_s_ago"] is not None and report["last_reap_s_ago"] < 5
    text = json.dumps(report)
    assert settings.SECRET_KEY not in text
    assert "://" not in text  # no server address, so no credentials in one


@pytest.mark.production
def test_with_the_control_worker_dead_job_workers_still_requeue_a_lost_job(
    alice, workers: WorkerPool, settings, figures
):
    workers.kill("control")  # no beat any more
    # A job taken by a "worker" that then died (never queued, so no live worker takes it first).
    job, _ = factories.claimed(factories.unqueued_job(alice))
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=5))
    started = time.monotonic()
    wait_for(
        lambda: job.status_logs.filter(message__contains="stopped answering").exists(),
        settings.HUB_WORKER_LOST_AFTER + 3 * settings.HUB_REAPER_INTERVAL + 15,
        "a job worker to requeue the lost job",
    )
    requeued = time.monotonic() - started
    assert requeued < 30
    holder = Lease.objects.get(name=REAPER_LEASE).holder
    assert holder.startswith(("w1@", "w2@")), holder  # a job worker reaped, not beat
    # Requeued and sent: a job worker runs it to a final status (it has no inputs: it fails).
    wait_for(lambda: Job.objects.get(pk=job.pk).status in FINISHED, 90, "the job to finish")
    assert holder in {w.name for w in WorkerSeen.objects.all()}  # it says it is alive too
    figures.record(
        fault="control worker (beat) SIGKILLed, a job's worker dead", in_flight="1 running job",
        lost=0, duplicated=0, recovery_s=round(requeued, 2),
        note=f"requeued by a job worker (HUB_WORKER_LOST_AFTER {settings.HUB_WORKER_LOST_AFTER} s in tests)",
    )  # fmt: skip


@pytest.mark.production
def test_hub_doctor_prints_the_health_of_a_live_hub(hub_env):
    done = subprocess.run(
        [sys.executable, "-m", "hubclient.cli", "doctor", "--json"],
        cwd=ROOT,
        env={"HUB_URL": hub_env["HUB_URL"], "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    report = json.loads(done.stdout)
    assert report["database"]["ok"] and report["broker"]["ok"] and report["live"]["ok"]
    assert report["workers_seen"], report
    text = subprocess.run(
        [sys.executable, "-m", "hubclient.cli", "doctor"],
        cwd=ROOT,
        env={"HUB_URL": hub_env["HUB_URL"], "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert "database" in text and "workers" in text and "reaper" in text
