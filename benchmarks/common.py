"""What the benchmarks share: a scratch PostgreSQL database of their own, dropped afterwards, and
a job held as a worker holds one."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit


def scratch_database(url: str, suffix: str = "") -> tuple[str, str]:
    """A new, empty database on the same server; (its URL, its name)."""
    import psycopg

    name = f"hub_bench_{os.getpid()}{suffix}"
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}".encode())
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}")), name


def drop_database(url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())


def running_job(owner: Any, name: str) -> tuple[Any, str]:
    """A job claimed by this process, as a worker holds one while it runs."""
    from jobs.domain.state import job_transition
    from jobs.domain.status import JobStatus
    from jobs.engine.execution import claim
    from jobs.models import Job, JobKind

    job = Job.objects.create(kind=JobKind.LINK, owner=owner, name=name)
    job_transition(job=job, to=JobStatus.PENDING, message="Queued; waiting for a worker.")
    taken = claim(job.pk)
    assert taken is not None
    return taken


@contextlib.contextmanager
def runhub(checkout: Path, env: dict[str, str]) -> Iterator[tuple[str, int]]:
    """A checkout's ``manage.py runhub`` (web in that process, its workers as children) on a
    free port, started with ``env`` and stopped afterwards: its URL and the web process's pid,
    once ``/healthz`` answers."""
    import requests

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    process = subprocess.Popen(
        [sys.executable, "manage.py", "runhub", "--port", str(port), "--no-demo"],
        cwd=checkout,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{url}/healthz", timeout=5).status_code in (200, 503):
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the hub of {checkout} did not start")
            time.sleep(0.5)  # a process starting: polled, nothing else to wait on
        yield url, process.pid
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)
