"""Reads that depend on who asks. Every page, API view, download and socket comes through here,
so no place can forget the access rule; ``sharing`` will widen ``jobs_visible_to``."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Q, QuerySet
from django.http import Http404

from jobs.models import Dataset, Job, MLModel, StatusLog

User = AbstractBaseUser | AnonymousUser


UPSTREAM_DEPTH = 8  # link of a link of a customization …: deeper chains are not followed


def _shared_job_ids(user: User) -> set[int]:
    """Jobs shared with the user, and every upstream job whose target model one of them used
    (seed 000: sharing a job shares the jobs it was built on). Derived from the shares (the
    reverse relation ``shares`` of the sharing app) each time, so a revoked share takes away
    exactly what it gave."""
    frontier = set(
        Job.objects.filter(shares__user_id=int(user.pk or 0)).values_list("pk", flat=True)
    )
    seen = set(frontier)
    for _ in range(UPSTREAM_DEPTH):
        if not frontier:
            break
        upstream = set(
            Job.objects.filter(produced_models__job_inputs__job__in=frontier)
            .exclude(pk__in=seen)
            .values_list("pk", flat=True)
        )
        seen |= upstream
        frontier = upstream
    return seen


def jobs_visible_to(user: User) -> QuerySet[Job]:
    """The owner's jobs, and the jobs shared with the user (with their upstream jobs)."""
    if not user.is_authenticated:
        return Job.objects.none()
    shared = _shared_job_ids(user)
    if not shared:
        return Job.objects.filter(owner_id=user.pk)
    return Job.objects.filter(Q(owner_id=user.pk) | Q(pk__in=shared))


def models_visible_to(user: User) -> QuerySet[MLModel]:
    """Own models, and those a readable job used or produced."""
    if not user.is_authenticated:
        return MLModel.objects.none()
    shared = _shared_job_ids(user)
    if not shared:
        return MLModel.objects.filter(owner_id=user.pk)
    via_jobs = Q(produced_by__in=shared) | Q(job_inputs__job__in=shared)
    return MLModel.objects.filter(
        Q(owner_id=user.pk) | Q(pk__in=MLModel.objects.filter(via_jobs).values("pk"))
    )


def datasets_visible_to(user: User) -> QuerySet[Dataset]:
    """Own datasets, and those a readable job trained or validated on."""
    if not user.is_authenticated:
        return Dataset.objects.none()
    shared = _shared_job_ids(user)
    if not shared:
        return Dataset.objects.filter(owner_id=user.pk)
    via_jobs = Q(training_jobs__in=shared) | Q(validation_jobs__in=shared)
    return Dataset.objects.filter(
        Q(owner_id=user.pk) | Q(pk__in=Dataset.objects.filter(via_jobs).values("pk"))
    )


def job_for_user(user: User, public_id: str) -> Job:
    """The job, or 404 for anyone who may not read it: a stranger learns nothing, not even that
    the id exists."""
    job = jobs_visible_to(user).select_related("owner").filter(public_id=public_id).first()
    if job is None:
        raise Http404("No such job.")
    return job


def job_for_owner(user: User, public_id: str) -> Job:
    """The job for a change only its owner may make: 404 for those who may not read it, 403
    (with the reason) for those who may read but not change it."""
    from django.core.exceptions import PermissionDenied

    job = job_for_user(user, public_id)
    if job.owner_id != user.pk:
        raise PermissionDenied("Only the job's owner can rename, cancel or resubmit it.")
    return job


def model_for_user(user: User, public_id: str) -> MLModel:
    model = models_visible_to(user).filter(public_id=public_id).first()
    if model is None:
        raise Http404("No such model.")
    return model


def dataset_for_user(user: User, public_id: str) -> Dataset:
    dataset = datasets_visible_to(user).filter(public_id=public_id).first()
    if dataset is None:
        raise Http404("No such dataset.")
    return dataset


def job_status_logs(job: Job) -> QuerySet[StatusLog]:
    return job.status_logs.order_by("updated_at", "id")
