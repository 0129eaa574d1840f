"""Reads that depend on who asks. Every page, API view, download and socket comes through here,
so no place can forget the access rule; ``sharing`` will widen ``jobs_visible_to``."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet
from django.http import Http404

from jobs.models import Dataset, Job, MLModel, StatusLog

User = AbstractBaseUser | AnonymousUser


def jobs_visible_to(user: User) -> QuerySet[Job]:
    if not user.is_authenticated:
        return Job.objects.none()
    return Job.objects.filter(owner_id=user.pk)


def models_visible_to(user: User) -> QuerySet[MLModel]:
    if not user.is_authenticated:
        return MLModel.objects.none()
    return MLModel.objects.filter(owner_id=user.pk)


def datasets_visible_to(user: User) -> QuerySet[Dataset]:
    if not user.is_authenticated:
        return Dataset.objects.none()
    return Dataset.objects.filter(owner_id=user.pk)


def job_for_user(user: User, public_id: str) -> Job:
    """The job, or 404 for anyone who may not read it: a stranger learns nothing, not even that
    the id exists."""
    job = jobs_visible_to(user).select_related("owner").filter(public_id=public_id).first()
    if job is None:
        raise Http404("No such job.")
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
