"""Celery tasks: thin, they pass ids and call the code that does the work."""

from celery import Task, shared_task

from jobs.engine import execution, generation, reaper, watchdog  # noqa: F401 (watchdog: worker signals)
from jobs.engine.dispatch import RUN_JOB


@shared_task(name=RUN_JOB, bind=True)
def run_job(self: Task, job_id: int) -> str:
    return execution.execute(job_id, node=self.request.hostname)


@shared_task(name="jobs.tasks.reap_jobs", bind=True)
def reap_jobs(self: Task) -> dict[str, int] | None:
    return reaper.reap_if_due(f"beat on {self.request.hostname}")


@shared_task(name="jobs.tasks.generate", bind=True, acks_late=False)
def generate(self: Task, generation_id: int) -> str:
    """A "Try it" prompt (routed to the generation queue). Taken when received, not on
    finishing: a prompt is worth answering only now, so a lost one is failed, never re-run."""
    return generation.run(generation_id, worker=self.request.hostname or "")
