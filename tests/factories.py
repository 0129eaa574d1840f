"""Factories for people, and helpers that make real assets through the services."""

from __future__ import annotations

from typing import Any, cast

import factory
import numpy as np
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core.files.base import ContentFile

from jobs.demo import numbers_dataset, tiny_mlp_onnx
from jobs.models import Dataset, Job, MLModel
from jobs.services.assets import dataset_upload, model_upload
from jobs.services.jobs import job_submit_customization, job_submit_link

PASSWORD = "correct horse battery staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def _save(obj: User, create: bool, extracted: Any, **kwargs: Any) -> None:
        if create:
            obj.save()


def api(user: User) -> Any:
    """A REST client that sends ``user``'s API token."""
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def person(username: str) -> User:
    return cast(User, UserFactory(username=username))


def onnx_model(
    owner: User, name: str = "mlp", seed: int = 1, shared: np.ndarray | None = None
) -> MLModel:
    data = tiny_mlp_onnx(name=name, seed=seed, shared=shared)
    return model_upload(owner=owner, file=ContentFile(data, f"{name}.onnx"))


def dataset(owner: User, records: int = 50, name: str = "numbers") -> Dataset:
    return dataset_upload(
        owner=owner, file=ContentFile(numbers_dataset(0, records), f"{name}.jsonl")
    )


def link_job(owner: User, models: int = 2) -> Job:
    return job_submit_link(
        owner=owner, models=[onnx_model(owner, f"m{i}", seed=i) for i in range(models)]
    )


def customization_job(owner: User, **hyperparameters: Any) -> Job:
    return job_submit_customization(
        owner=owner, dataset=dataset(owner), hyperparameters=hyperparameters or None
    )


def claimed(job: Job) -> tuple[Job, str]:
    """The job taken by this process as a worker would take it: pending, then claimed."""
    from jobs.domain.state import job_transition
    from jobs.domain.status import JobStatus
    from jobs.engine.execution import claim

    job_transition(job=job, to=JobStatus.PENDING, message="Queued; waiting for a worker.")
    taken = claim(job.pk)
    assert taken is not None
    return taken


def run_here(job: Job) -> Job:
    """Run the job in this process exactly as a worker runs it (queued first if it was not)."""
    from jobs.domain.state import job_transition
    from jobs.domain.status import JobStatus
    from jobs.engine.execution import execute

    if job.status == JobStatus.CREATED:
        job_transition(job=job, to=JobStatus.PENDING, message="Queued; waiting for a worker.")
    execute(job.pk)
    job.refresh_from_db()
    return job


def unqueued_job(owner: User) -> Job:
    """A created job that no worker will ever be sent (for state-machine tests that commit)."""
    from jobs.models import JobKind

    return Job.objects.create(kind=JobKind.LINK, owner=owner, name="not queued")


def ready_job(job: Job, *, verified: bool = True) -> Job:
    """Bring a job to READY with a target model and an artifact, as a worker would (the access
    tests need finished jobs, not the work itself, which test_execution runs for real); with
    ``verified=False``, to FAILED instead: its target model stored, then refused by verification."""
    from django.core.files.base import ContentFile

    from jobs.domain.state import job_transition
    from jobs.domain.status import JobStatus
    from jobs.models import Artifact

    target = onnx_model(job.owner, f"target-{job.pk}", seed=job.pk)
    job.refresh_from_db()
    steps = (JobStatus.PENDING, JobStatus.RUNNING, JobStatus.COMPLETED)
    for status in steps[steps.index(job.status) + 1 if job.status in steps else 0 :]:
        job_transition(job=job, to=status, message=str(status))
    Job.objects.filter(pk=job.pk).update(target_model=target)
    target.produced_by = job
    target.save()
    artifact = Artifact(job=job, kind="manifest", name="manifest.json", size=2, sha256="0" * 64)
    artifact.file.save("manifest.json", ContentFile(b"{}"))
    if verified:
        job_transition(job=job, to=JobStatus.READY, message="ready")
    else:
        from jobs.domain.status import FailureType

        job_transition(
            job=job,
            to=JobStatus.FAILED,
            message="The target model gives other outputs than its inputs.",
            failure_type=FailureType.INVALID_MODEL,
        )
    job.refresh_from_db()
    return job


def invitation(job: Job, email: str = "newcomer@example.com") -> Any:
    """Share ``job`` with an address that has no account, as its owner: the invitation."""
    from sharing.models import Invitation
    from sharing.services import sharing_modify

    sharing_modify(target=job, actor=job.owner, add_emails=[email])
    return Invitation.objects.get(job=job, email=email)
