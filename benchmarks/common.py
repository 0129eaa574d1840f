"""What the benchmarks share: a scratch PostgreSQL database of their own, dropped afterwards, and
a job held as a worker holds one."""

from __future__ import annotations

import os
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
