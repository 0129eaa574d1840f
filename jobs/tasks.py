"""Celery tasks: thin, they pass ids and call the code that does the work."""

from celery import shared_task

from jobs import execution, reaper


@shared_task(name="jobs.tasks.run_job")
def run_job(job_id: int) -> str:
    return execution.execute(job_id)


@shared_task(name="jobs.tasks.reap_jobs")
def reap_jobs() -> dict[str, int]:
    return reaper.reap()
