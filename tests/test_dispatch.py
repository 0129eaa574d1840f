"""Submitting when the job queue cannot be reached: a clear error within seconds, and no job
left waiting for a worker that will never hear of it."""

import json
import sys

from tests.helpers import ROOT, child_env

SCRIPT = """
import json, time
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.contrib.auth.models import User
from jobs.engine.dispatch import QueueUnavailable
from jobs.models import Job
from tests import factories
owner = User.objects.create_user("alice")
started = time.monotonic()
try:
    factories.link_job(owner)
    outcome = "queued"
except QueueUnavailable as error:
    outcome = str(error)
job = Job.objects.get()
print(json.dumps({"outcome": outcome, "seconds": time.monotonic() - started, "status": job.status,
                  "failure_type": job.failure_type, "failure_message": job.failure_message}))
"""


def test_submitting_while_the_broker_is_down_fails_fast_and_says_so(tmp_path):
    import subprocess

    # Port 9 on loopback: nothing listens there, so every connection is refused.
    env = child_env(
        HUB_DATA_DIR=str(tmp_path), REDIS_URL="redis://127.0.0.1:9/0", HUB_SECRET_KEY="k" * 50
    )
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert "The job queue (redis://127.0.0.1:9/0) is unreachable" in report["outcome"]
    assert "was not queued and is marked failed" in report["outcome"]
    assert report["seconds"] < 10  # the "within seconds"; retries give up after ~1.5 s
    assert (report["status"], report["failure_type"]) == ("failed", "queue_unavailable")
    assert "never queued" in report["failure_message"]


def test_the_reaper_and_jobs_use_separate_queues(settings):
    from hubsite.celery import app

    assert (
        app.amqp.router.route({}, "jobs.tasks.reap_jobs")["queue"].name
        == settings.HUB_CONTROL_QUEUE
    )
    assert (
        app.amqp.router.route({}, "jobs.tasks.run_job")["queue"].name
        == settings.CELERY_TASK_DEFAULT_QUEUE
    )
