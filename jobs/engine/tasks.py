"""Celery tasks: thin, they pass ids and call the code that does the work."""

from celery import Task, shared_task

from jobs.engine import execution, reaper, watchdog  # noqa: F401 (watchdog: worker signals)
from jobs.engine.dispatch import RUN_JOB


@shared_task(name=RUN_JOB, bind=True)
def run_job(self: Task, job_id: int) -> str:
    return execution.execute(job_id, node=self.request.hostname)


@shared_task(name="jobs.tasks.reap_jobs", bind=True)
def reap_jobs(self: Task) -> dict[str, int] | None:
    return reaper.reap_if_due(f"beat on {self.request.hostname}")
