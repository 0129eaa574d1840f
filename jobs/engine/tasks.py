"""Celery tasks: thin, they pass ids and call the code that does the work."""

from celery import Task, shared_task

from jobs.engine import execution, reaper
from jobs.engine.dispatch import RUN_JOB


@shared_task(name=RUN_JOB, bind=True)
def run_job(self: Task, job_id: int) -> str:
    return execution.execute(job_id, node=self.request.hostname)


@shared_task(name="jobs.tasks.reap_jobs")
def reap_jobs() -> dict[str, int]:
    return reaper.reap()
