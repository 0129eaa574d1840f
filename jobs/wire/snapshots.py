"""A job as one reader sees it, whole: the job with its inputs, and seed 004's status details.
The API answers with these, and a socket's snapshot carries them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connection, transaction
from django.db.models import Prefetch, QuerySet
from django.utils import timezone

from jobs.domain.metrics import job_metrics
from jobs.domain.selectors import job_inputs_for, job_status_logs
from jobs.models import Artifact, Job, JobInput
from jobs.wire.serializers import (
    InputSerializer,
    JobDetailSerializer,
    JobSerializer,
    StatusLogSerializer,
)

STATUS_DETAIL_POINTS = 1000  # per series, in status details; /metrics/ serves any resolution


@contextmanager
def consistent_reads() -> Iterator[None]:
    """Every read inside sees the database as of one moment (PostgreSQL: a repeatable-read
    transaction; SQLite's transactions already are), so that a snapshot's sequence number, job
    row, status logs and metric points agree: the events after that number are exactly what it
    does not contain yet."""
    if connection.in_atomic_block:  # already inside a transaction: its reads are what they are
        yield
        return
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        yield


def with_inputs(jobs: QuerySet[Job]) -> QuerySet[Job]:
    return jobs.select_related(
        "owner",
        "dataset",
        "validation_dataset",
        "target_model",
        "resubmitted_from",
        "device",
        "ran_device",
    ).prefetch_related("job_inputs__model", "artifacts")


DEVICE_FIELDS = ("slug", "name", "attributes", "specs")


def for_listing(jobs: QuerySet[Job]) -> QuerySet[Job]:
    """``with_inputs`` for many jobs at once: of each related row only what JobSerializer
    shows (a model's or dataset's id, not its metadata, which can be large)."""
    related = ("dataset", "validation_dataset", "target_model", "resubmitted_from")
    job_fields = [f.name for f in Job._meta.concrete_fields]
    return (
        jobs.select_related("owner", "device", "ran_device", *related)
        .only(
            *job_fields,
            "owner__username",
            *(f"{name}__public_id" for name in related),
            *(f"{d}__{f}" for d in ("device", "ran_device") for f in DEVICE_FIELDS),
        )
        .prefetch_related(
            Prefetch(
                "job_inputs",
                queryset=JobInput.objects.select_related("model").only(
                    "job_id", "position", "model__public_id"
                ),
            ),
            Prefetch(
                "artifacts",
                queryset=Artifact.objects.only("job_id", "name", "kind", "size", "sha256"),
            ),
        )
    )


def job_data(job: Job, user: Any) -> dict[str, Any]:
    """The job as ``user`` sees it, inputs included."""
    fresh = with_inputs(Job.objects.filter(pk=job.pk)).get()
    return dict(JobDetailSerializer(fresh, context={"user": user}).data)


def job_data_for_everyone(job: Job) -> dict[str, Any]:
    """The part of ``job_data`` that is the same for every reader (all but ``inputs``): what a
    web process may keep for the next reader of the same job at the same sequence number."""
    fresh = with_inputs(Job.objects.filter(pk=job.pk)).get()
    return dict(JobSerializer(fresh).data)


def inputs_as_seen(job: Job, user: Any) -> list[dict[str, Any]]:
    """``job_data``'s ``inputs``: each input's content only where ``user`` may read it."""
    views = job_inputs_for(user, job)
    return [dict(row) for row in InputSerializer(views, many=True).data]


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
