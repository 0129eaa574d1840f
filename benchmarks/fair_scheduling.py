"""How long one person's first job waits behind another person's long queue.

Alice queues N link jobs; once the workers are busy with them, Bob submits one. The figure is
Bob's wait (from his submission to his job starting) beside the run time of one of Alice's jobs.
Real Celery workers, real PostgreSQL and Redis (the production profile), a database of its own
that is dropped afterwards.

    DATABASE_URL=postgres://hub:hub@127.0.0.1:5432/hub REDIS_URL=redis://127.0.0.1:6379/0 \\
        .venv/bin/python benchmarks/fair_scheduling.py [--queued 1000] [--workers 2]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's code, wherever the script is run from

from benchmarks.common import drop_database, scratch_database  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queued", type=int, default=1000, help="Alice's queued jobs")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    base_url = os.environ["DATABASE_URL"]
    database_url, name = scratch_database(base_url)
    data = Path(tempfile.mkdtemp(prefix="hub-bench-"))
    os.environ.update(
        DATABASE_URL=database_url,
        DJANGO_SETTINGS_MODULE="hubsite.settings.base",
        HUB_SECRET_KEY="benchmark-only-" + "x" * 40,
        HUB_DATA_DIR=str(data),
        HUB_NAMESPACE=f"bench-{os.getpid()}",
        HUB_QUOTA_ACTIVE_JOBS="0",  # Alice's queue is the point
        HUB_LOG_LEVEL="WARNING",
    )
    workers: list[subprocess.Popen[bytes]] = []
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, check=True)
        queue = os.environ["HUB_NAMESPACE"]
        for n in range(args.workers):
            command = [sys.executable, "-m", "celery", "-A", "hubsite", "worker"]
            command += ["-n", f"b{n}@%h", "-Q", queue, "--concurrency", "1", "-l", "WARNING"]
            workers.append(
                subprocess.Popen(
                    command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
            )
        print(run(args.queued, args.workers))
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=30)
        from django.db import connections

        connections.close_all()
        drop_database(base_url, name)


def run(queued: int, worker_count: int) -> str:
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.files.base import ContentFile

    from jobs.demo import tiny_mlp_onnx
    from jobs.domain.status import InvalidTransition, JobStatus
    from jobs.models import Job
    from jobs.services.assets import model_upload
    from jobs.services.jobs import job_cancel, job_submit_link

    def models_of(user: User) -> list:
        return [
            model_upload(
                owner=user, file=ContentFile(tiny_mlp_onnx(name=f"m{i}", seed=i), f"m{i}.onnx")
            )
            for i in range(2)
        ]

    alice, bob = (User.objects.create_user(n, f"{n}@example.com", "pw") for n in ("alice", "bob"))
    alices, bobs = models_of(alice), models_of(bob)
    one_job = calibrate(alice, alices)
    started = time.monotonic()
    queue = [job_submit_link(owner=alice, models=alices) for _ in range(queued)]
    submitting = time.monotonic() - started
    while Job.objects.filter(pk__in=[j.pk for j in queue], status=JobStatus.READY).count() < 2:
        time.sleep(0.2)  # waiting for real work: the workers are busy with Alice's queue
    job = job_submit_link(owner=bob, models=bobs)
    while Job.objects.get(pk=job.pk).started_at is None:
        time.sleep(0.05)
    job = Job.objects.get(pk=job.pk)
    assert job.started_at is not None
    waited = (job.started_at - job.created_at).total_seconds()
    ahead = Job.objects.filter(
        pk__in=[j.pk for j in queue], started_at__gt=job.created_at, started_at__lt=job.started_at
    ).count()
    for pending in Job.objects.filter(owner=alice, status=JobStatus.PENDING):
        with contextlib.suppress(InvalidTransition):  # a worker took it meanwhile
            job_cancel(job=pending)
    return (
        f"Alice queued {queued} link jobs ({submitting:.1f} s to submit), {worker_count} workers.\n"
        f"Bob's first job waited {waited:.2f} s; {ahead} of Alice's jobs started before it; "
        f"one job takes a worker {one_job:.2f} s (start to next start, measured alone "
        f"first), so Bob waited {waited / one_job:.1f} jobs' time."
    )


def calibrate(owner: Any, models: list, jobs: int = 20) -> float:
    """A job's share of a worker, measured with nothing else going on: the median time from one
    job's start to the next start on the same worker (taking the message, claiming, running,
    storing and verifying the target model)."""
    from jobs.domain.status import FINISHED
    from jobs.models import Job
    from jobs.services.jobs import job_submit_link

    batch = [job_submit_link(owner=owner, models=models).pk for _ in range(jobs)]
    while Job.objects.filter(pk__in=batch, status__in=FINISHED).count() < jobs:
        time.sleep(0.2)  # waiting for the workers' real work
    starts: dict[str, list] = {}
    for worker, started_at in (
        Job.objects.filter(pk__in=batch).order_by("started_at").values_list("worker", "started_at")
    ):
        starts.setdefault(worker, []).append(started_at)
    return statistics.median(
        (later - earlier).total_seconds()
        for times in starts.values()
        for earlier, later in itertools.pairwise(times)
    )


if __name__ == "__main__":
    main()
