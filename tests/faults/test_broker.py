"""The broker fails: Redis restarted without persistence (its queue gone), or stopped (not
dead) so that every call hangs. The database is the record of what must run: a submission
answers at once with its job pending, and what the broker lost is sent again, once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.faults.servers import PrivateRedis
from tests.helpers import ROOT, child_env

pytestmark = pytest.mark.production

QUEUE = "hub-faults"  # HUB_NAMESPACE of the child processes: their queue's name in Redis

SUBMIT = """
import json, time
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.contrib.auth.models import User
from jobs.models import Job
from tests import factories
owner = User.objects.get_or_create(username="alice")[0]
took = []
for _ in range({n}):
    started = time.monotonic()
    factories.link_job(owner)
    took.append(time.monotonic() - started)
print(json.dumps({{"took": took, "jobs": [
    {{"status": j.status, "sent": j.sent_at is not None,
      "log": list(j.status_logs.values_list("message", flat=True))}}
    for j in Job.objects.order_by("pk")]}}))
"""

RESEND = """
import json
from datetime import timedelta
import django
django.setup()
from django.utils import timezone
from jobs.engine.dispatch import resend_missing
print(json.dumps({"resent": resend_missing(timezone.now() + timedelta(hours=1))}))
"""


def _child(script: str, redis: PrivateRedis, data: Path) -> dict:
    env = child_env(
        HUB_DATA_DIR=str(data),
        REDIS_URL=redis.url,
        HUB_SECRET_KEY="k" * 50,
        HUB_NAMESPACE=QUEUE,
        HUB_BUILTIN_MODEL_DIR=os.environ["HUB_BUILTIN_MODEL_DIR"],
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_redis_restart_without_persistence_loses_no_queued_job(private_redis, tmp_path, figures):
    submitted = _child(SUBMIT.format(n=3), private_redis, tmp_path)
    assert [j["status"] for j in submitted["jobs"]] == ["pending"] * 3
    assert private_redis.length(QUEUE) == 3
    private_redis.restart()  # no persistence: the three messages are gone
    assert private_redis.length(QUEUE) == 0
    started = time.monotonic()
    assert _child(RESEND, private_redis, tmp_path) == {"resent": 3}
    recovered = time.monotonic() - started
    assert private_redis.length(QUEUE) == 3
    # Sent once: the broker holds a message for every pending job, so nothing more goes.
    assert _child(RESEND, private_redis, tmp_path) == {"resent": 0}
    assert private_redis.length(QUEUE) == 3
    figures.record(
        fault="Redis restarted without persistence", in_flight="3 queued jobs", lost=0,
        duplicated=0, recovery_s=round(recovered, 2), note="one reaper run (process start included)",
    )  # fmt: skip


def test_a_hung_broker_answers_a_submission_at_once_and_the_job_runs_once_it_is_back(
    private_redis, tmp_path, figures
):
    _child(SUBMIT.format(n=0), private_redis, tmp_path)  # the database, migrated beforehand
    private_redis.pause()
    started = time.monotonic()
    submitted = _child(SUBMIT.format(n=1), private_redis, tmp_path)
    (job,) = submitted["jobs"]
    assert submitted["took"][0] < 3.5, submitted["took"]  # the "about two seconds"
    assert time.monotonic() - started < 60
    assert (job["status"], job["sent"]) == ("pending", False)
    assert "the job waits here and is sent to a worker as soon as the queue is back" in " ".join(
        job["log"]
    )
    private_redis.resume()
    assert private_redis.length(QUEUE) == 0  # nothing was sent while it hung
    assert _child(RESEND, private_redis, tmp_path) == {"resent": 1}
    assert private_redis.length(QUEUE) == 1
    assert _child(RESEND, private_redis, tmp_path) == {"resent": 0}
    figures.record(
        fault="Redis stopped (SIGSTOP) during a submission", in_flight="1 job", lost=0,
        duplicated=0, submit_s=round(submitted["took"][0], 2),
    )  # fmt: skip
