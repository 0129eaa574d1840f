"""Real Celery worker processes for production-profile tests.

Two job workers (w1, w2) share this run's queue, and a control worker runs Celery beat and the
reaper, as the README describes for production. They use the test database and a media
directory shared with the test process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection

from jobs.domain.status import JobStatus
from jobs.engine.dispatch import worker_queues
from jobs.models import Job
from jobs.services.jobs import job_submit_customization
from tests import factories
from tests.helpers import ROOT, LineReader

READY_TIMEOUT = 90


class WorkerPool:
    def __init__(self, env: dict[str, str], media_root: Path, logs: Path) -> None:
        self.env, self.media_root, self.logs = env, media_root, logs
        self.processes: dict[str, subprocess.Popen[str]] = {}
        self.readers: dict[str, LineReader] = {}

    def start(
        self,
        name: str,
        *extra: str,
        queue: str | None = None,
        device: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        """A worker named ``name``; with ``device``, of a machine its operator names so
        (HUB_DEVICE_NAME): two workers here are then two devices; ``env`` adds to the pool's
        (a host of its own: its own folders)."""
        if name in self.processes:  # started again: the earlier one must not live on unseen
            process = self.processes.pop(name)
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        env = {**self.env, **(env or {})}
        if device is not None:
            env["HUB_DEVICE_NAME"] = device
        command = [
            sys.executable, "-m", "celery", "-A", "hubsite", "worker",
            "-n", f"{name}@%h", "-Q", queue or worker_queues(),
            "--concurrency", "1", "--pool", "prefork", "--loglevel", "INFO",
            "--without-gossip", "--without-mingle", *extra,
        ]  # fmt: skip
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, start_new_session=True,
        )  # fmt: skip
        self.processes[name], self.readers[name] = process, LineReader(process)
        self.readers[name].wait_for(" ready.", READY_TIMEOUT)

    def kill(self, name: str) -> None:
        """SIGKILL a whole worker: its main process and its pool children."""
        process = self.processes.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def stop(self) -> None:
        for name in list(self.processes):
            process = self.processes.pop(name)
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def output(self, name: str) -> str:
        return "".join(self.readers[name].lines)


class Inbox:
    """A real SMTP server on loopback (aiosmtpd) that keeps what the workers send."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.content.decode())
        return "250 OK"


@pytest.fixture(scope="module")
def smtp_inbox() -> Iterator[tuple[Inbox, int]]:
    from aiosmtpd.controller import Controller

    from tests.helpers import free_port

    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield inbox, controller.port
    finally:
        controller.stop()


def _database_url() -> str:
    db = connection.settings_dict
    return (
        f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"
    )


# Module scope: the workers live only while the tests that need them run, so no other test's
# committed job is taken from under it.
@pytest.fixture(scope="module")
def worker_pool(
    django_db_setup: None,
    django_db_blocker: Any,
    tmp_path_factory: pytest.TempPathFactory,
    smtp_inbox: tuple[Inbox, int],
) -> Iterator[WorkerPool]:
    from tests.conftest import _missing_services
    from tests.helpers import free_port

    with django_db_blocker.unblock():
        missing = _missing_services()
        if missing:
            pytest.skip(missing)
        media = tmp_path_factory.mktemp("worker-media")
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "hubsite.settings.base",
            "PYTHONUNBUFFERED": "1",
            "DATABASE_URL": _database_url(),
            "HUB_MEDIA_ROOT": str(media),
            "HUB_DATA_DIR": str(tmp_path_factory.mktemp("worker-data")),
            # Every process of a deployment knows the address people reach it at (links in emails).
            "HUB_BASE_URL": f"http://127.0.0.1:{free_port()}",
            "HUB_EMAIL_HOST": "127.0.0.1",
            "HUB_EMAIL_PORT": str(smtp_inbox[1]),
        }
        pool = WorkerPool(env, media, tmp_path_factory.mktemp("worker-logs"))
        from hubsite.celery import app

        app.control.purge()  # messages left by earlier tests of this run (their jobs are gone)
    try:
        pool.start("control", "-B", queue=settings.HUB_CONTROL_QUEUE)
        pool.start("w1")
        pool.start("w2")
        yield pool
    finally:
        pool.stop()


@pytest.fixture
def workers(worker_pool: WorkerPool, settings: Any) -> Iterator[WorkerPool]:
    """The pool, with this test's files where the workers look for them. Whatever the test
    left in flight (a fuzzer's submissions) is cancelled and settled before the database is
    emptied for the next test: a worker writing a job's rows while the tables are truncated
    deadlocks the truncation."""
    settings.MEDIA_ROOT = str(worker_pool.media_root)
    for name in ("w1", "w2"):
        if name not in worker_pool.processes:
            worker_pool.start(name)
    yield worker_pool
    _settle()


@pytest.fixture
def generation_worker(workers: WorkerPool) -> WorkerPool:
    """A generation worker ("Try it"), as runhub starts one: its own queue, the solo pool
    that keeps models loaded between prompts. Kept for the module once started."""
    if "gen" not in workers.processes:
        workers.start("gen", "--pool", "solo", queue=settings.HUB_GENERATION_QUEUE)
    return workers


def _settle(timeout: float = 60) -> None:
    from jobs.domain.status import TERMINAL
    from jobs.engine.runners import external
    from jobs.services.jobs import job_cancel

    for job in Job.objects.exclude(status__in=[*TERMINAL, "completed"]):
        try:
            if job.kind == "external":  # nobody runs it to hear of a cancel: end it here
                external.finish(job, "cancelled", "The test that started it is over.")
            elif job.status != "cancelling":
                job_cancel(job=job)
        except Exception:  # finished or cancelled meanwhile: nothing to settle
            continue
    wait_for(
        # An external run ends completed: nothing of the hub's makes it ready.
        lambda: (
            not Job.objects.exclude(status__in=TERMINAL)
            .exclude(kind="external", status="completed")
            .exists()
        ),
        timeout,
        "the jobs a test left running to stop",
    )
    # Their ends are told by email or webhook: a worker sending one holds its outbox row while
    # the tables are truncated, which deadlocks the truncation as a job's writes would.
    from notifications.models import Delivery, Notification

    wait_for(
        lambda: not Notification.objects.filter(state=Delivery.PENDING).exists(),
        timeout,
        "the notifications of the jobs a test left to be sent",
    )


def wait_for(check: Callable[[], Any], timeout: float, what: str, every: float = 0.2) -> Any:
    """Poll until ``check`` returns something truthy: waiting on real work, with a deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(every)
    raise AssertionError(f"Timed out after {timeout} s waiting for {what}")


def wait_for_status(job: Job, statuses: Collection[str], timeout: float) -> Job:
    def reached() -> Job | None:
        job.refresh_from_db()
        return job if job.status in statuses else None

    try:
        return wait_for(
            reached, timeout, f"job {job.public_id} to become {' or '.join(sorted(statuses))}"
        )
    except AssertionError:
        logs = list(job.status_logs.values_list("status", "message"))
        raise AssertionError(f"{job.public_id} is {job.status}; status log: {logs}") from None


class LiveHub:
    def __init__(self, url: str, process: subprocess.Popen[str], reader: LineReader) -> None:
        self.url, self.process, self.reader = url, process, reader


@pytest.fixture(scope="module")
def live_hub(worker_pool: WorkerPool) -> Iterator[LiveHub]:
    """The ASGI application served by uvicorn over real HTTP, beside the workers."""
    url = worker_pool.env["HUB_BASE_URL"]
    port = int(url.rsplit(":", 1)[1])
    # A small upload limit, so the test of it sends megabytes rather than gigabytes.
    # Small parts for seed 000's client's uploads, so that a model of a few hundred kilobytes
    # goes up in several.
    env = {
        **worker_pool.env,
        "HUB_BASE_URL": url,
        "HUB_MAX_UPLOAD_BYTES": str(2 * 1024 * 1024),
        "HUB_UPLOAD_PART_BYTES": str(128 * 1024),
    }
    # As a deployment does: static files collected first (the manifest storage needs them).
    collect = [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"]
    subprocess.run(collect, cwd=ROOT, env=env, check=True)
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "hubsite.asgi:application",
        "--port",
        str(port),
        "--lifespan",
        "off",
        # Open websockets (a browser still on a page) must not hold the teardown for long.
        "--timeout-graceful-shutdown",
        "5",
    ]
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    reader = LineReader(process)
    try:
        reader.wait_for("Uvicorn running", READY_TIMEOUT)
        yield LiveHub(url, process, reader)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def hub_env(live_hub: LiveHub, workers: WorkerPool, alice: Any) -> dict[str, str]:
    """Environment for the client and the ``hub`` command, signed in as Alice."""
    from rest_framework.authtoken.models import Token

    token, _ = Token.objects.get_or_create(user=alice)
    return {"HUB_URL": live_hub.url, "HUB_API_TOKEN": token.key}


# Jobs caught mid-run

# The reaper notices a silent worker within HUB_WORKER_LOST_AFTER + HUB_REAPER_INTERVAL; the rest
# is room for a loaded machine to schedule the processes involved.
LOST_BOUND = settings.HUB_WORKER_LOST_AFTER + settings.HUB_REAPER_INTERVAL + 15


def long_customization(owner: Any, epochs: int = 400, **extra: Any) -> Job:
    """Long enough to be caught mid-run (a few hundred milliseconds an epoch)."""
    return job_submit_customization(
        owner=owner,
        dataset=factories.dataset(owner, records=300),
        hyperparameters={"epochs": epochs, "early_stopping_patience": 0, **extra},
    )


def mid_run(job: Job, steps: int = 5) -> Job:
    def training() -> bool:
        job.refresh_from_db()
        return job.status == JobStatus.RUNNING and (job.steps_completed or 0) >= steps

    wait_for(training, 60, f"job {job.public_id} to be training")
    return job


def worker_of(job: Job) -> str:
    return job.worker.split("@")[0]
