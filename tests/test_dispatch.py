"""Submitting when the job queue cannot be reached: an answer within seconds, the job pending in
the database with a status log that says so (tests/faults/ sends it once the queue is back)."""

import json
import os
import sys

from tests.helpers import ROOT, child_env

SCRIPT = """
import json, time
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.contrib.auth.models import User
from jobs.models import Job
from tests import factories
owner = User.objects.create_user("alice")
started = time.monotonic()
factories.link_job(owner)
job = Job.objects.get()
print(json.dumps({"seconds": time.monotonic() - started, "status": job.status,
                  "sent": job.sent_at is not None, "log": job.status_logs.last().message,
                  "detail": job.status_logs.last().detail}))
"""


def test_submitting_while_the_broker_is_down_answers_fast_and_keeps_the_job_pending(tmp_path):
    import subprocess

    # Port 9 on loopback: nothing listens there, so every connection is refused.
    env = child_env(
        HUB_DATA_DIR=str(tmp_path),
        REDIS_URL="redis://127.0.0.1:9/0",
        HUB_SECRET_KEY="k" * 50,
        HUB_BUILTIN_MODEL_DIR=os.environ["HUB_BUILTIN_MODEL_DIR"],
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
    assert report["seconds"] < 5  # the "about two seconds", with room for a slow start
    assert (report["status"], report["sent"]) == ("pending", False)
    assert "The job queue could not be reached; the job waits here" in report["log"]
    assert "127.0.0.1:9" in report["detail"]


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
