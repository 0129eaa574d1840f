"""A job as one reader sees it, whole: the job with its inputs, and seed 004's status details.
The API answers with these, and a socket's snapshot carries them."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from jobs.domain.metrics import job_metrics
from jobs.domain.selectors import job_status_logs
from jobs.models import Job
from jobs.wire.serializers import JobDetailSerializer, StatusLogSerializer

STATUS_DETAIL_POINTS = 1000  # per series, in status details; /metrics/ serves any resolution


def with_inputs(jobs: QuerySet[Job]) -> QuerySet[Job]:
    return jobs.select_related(
        "owner", "dataset", "validation_dataset", "target_model", "resubmitted_from"
    ).prefetch_related("job_inputs__model", "artifacts")


def job_data(job: Job, user: Any) -> dict[str, Any]:
    """The job as ``user`` sees it, inputs included."""
    fresh = with_inputs(Job.objects.filter(pk=job.pk)).get()
    return dict(JobDetailSerializer(fresh, context={"user": user}).data)


def status_details(job: Job) -> dict[str, Any]:
    """Seed 004's status details of a job (the customization fields are null for other kinds)."""
    return {
        "best_epoch": job.best_epoch,
        "created_at": job.started_at or job.created_at,
        "elapsed_time": job.elapsed_time,
        "epochs_completed": job.epochs_completed,
        "metrics": job_metrics(job, points=STATUS_DETAIL_POINTS),
        "percentage_done": job.percentage_done,
        "status": job.status,
        "status_logs": StatusLogSerializer(job_status_logs(job), many=True).data,
        "steps_completed": job.steps_completed,
        "steps_per_epoch": job.steps_per_epoch,
        "train_loss": job.train_loss,
        "updated_at": job.status_logs.values_list("updated_at", flat=True).last()
        or job.updated_at
        or timezone.now(),
        "val_loss": job.val_loss,
    }
