"""Deleting a job, a model or a dataset: what else goes, what stops it, and the writes.

Only the owner deletes. A job is deleted once finished; a model or dataset not while a job that
has not finished uses it (a worker may be reading it). What is deleted is gone for everyone at
once: a reader's open page is cut off (a ``sharing`` event), the API answers 404. Files leave
storage after the transaction commits, so a failed deletion never loses a file its rows still
name.

A model or dataset that finished jobs name as their input keeps its row (name, id, size) with
``deleted_at`` set, so those jobs' pages can say "deleted by its owner"; its file is removed
and nobody reads it any more (``selectors`` leave such rows out).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Q, QuerySet
from django.db.models.fields.files import FieldFile
from django.utils import timezone

from audit import services as audit
from audit.models import Action
from hubsite.object_storage import is_remote
from jobs.domain.disk import size_text
from jobs.domain.events import EventType, publish
from jobs.domain.lineage import access_of, jobs_using, share_model
from jobs.domain.selectors import User, dataset_for_user, job_for_owner, model_for_user
from jobs.domain.status import FINISHED
from jobs.models import Artifact, Dataset, Job, MLModel, StatusLog

logger = logging.getLogger(__name__)
Asset = MLModel | Dataset


class StillInUse(Exception):
    """The thing cannot be deleted now; the message says why and what to do."""


@dataclass
class DeletionPlan:
    """What deleting ``target`` does, in words for the confirmation page and the API."""

    kind: str  # "job", "model" or "dataset"
    public_id: str
    name: str
    goes: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    blocked: str = ""  # why it cannot be deleted now; empty if it can

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "id": self.public_id,
            "name": self.name,
            "goes": self.goes,
            "kept": self.kept,
            "blocked": self.blocked,
        }


def _people(count: int) -> str:
    return f"{count} {'person' if count == 1 else 'people'}"


def _share_count(jobs: QuerySet[Job]) -> int:
    return share_model().objects.filter(job__in=jobs).values("email").distinct().count()


def _used_by(asset: Asset) -> QuerySet[Job]:
    return jobs_using(asset).distinct()


def _target_kept_because(job: Job) -> list[Job]:
    """Other jobs that used this job's target model: it outlives the job for them."""
    if job.target_model_id is None:
        return []
    return list(Job.objects.filter(job_inputs__model_id=job.target_model_id).exclude(pk=job.pk))


def _made_data(job: Job) -> list[tuple[Dataset, bool]]:
    """The datasets the job made (an inference job's outputs), each with whether another job
    ran on it (then it outlives the job)."""
    made = Dataset.objects.filter(produced_by=job, deleted_at__isnull=True)
    return [
        (
            dataset,
            Job.objects.filter(Q(dataset=dataset) | Q(validation_dataset=dataset))
            .exclude(pk=job.pk)
            .exists(),
        )
        for dataset in made
    ]


def plan_job(job: Job) -> DeletionPlan:
    plan = DeletionPlan("job", job.public_id, job.name)
    if job.status not in FINISHED:
        plan.blocked = (
            f"Job {job.public_id} is {job.status}: cancel it first, then delete it when it has "
            "stopped."
        )
    plan.goes.append("its status timeline, metrics, logs and events")
    artifacts = list(job.artifacts.all())
    if artifacts:
        size = size_text(sum(a.size for a in artifacts))
        plan.goes.append(f"its {len(artifacts)} result files ({size})")
    target = job.target_model
    if target is not None and target.deleted_at is None:
        users = _target_kept_because(job)
        if users:
            plan.kept.append(
                f"its target model {target.name} ({target.public_id}), which "
                f"{len(users)} other job(s) used: it stays among your models"
            )
        else:
            plan.goes.append(
                f"its target model {target.name} ({target.public_id}, {size_text(target.size)})"
            )
    for dataset, used in _made_data(job):
        if used:
            plan.kept.append(
                f"its output data {dataset.name} ({dataset.public_id}), which other jobs ran "
                "on: it stays among your datasets"
            )
        else:
            plan.goes.append(
                f"its output data {dataset.name} ({dataset.public_id}, {size_text(dataset.size)})"
            )
    readers = _share_count(Job.objects.filter(pk=job.pk))
    if readers:
        plan.goes.append(f"its shares: {_people(readers)} lose access at once")
    plan.kept.append("the models and datasets it used")
    return plan


def plan_asset(asset: Asset) -> DeletionPlan:
    kind = "model" if isinstance(asset, MLModel) else "dataset"
    plan = DeletionPlan(kind, asset.public_id, asset.name)
    users = _used_by(asset)
    active = [job for job in users if job.status not in FINISHED]
    if active:
        ids = ", ".join(job.public_id for job in active[:5] if job.owner_id == asset.owner_id)
        others = sum(1 for job in active if job.owner_id != asset.owner_id)
        named = f" ({ids})" if ids else ""
        also = f", {others} of them someone else's" if others else ""
        plan.blocked = (
            f"{len(active)} job(s) that have not finished use this {kind}{named}{also}: it can "
            "be deleted once they have."
        )
    plan.goes.append(f"the {kind} file ({size_text(asset.size)}), removed from storage")
    readers = access_of(asset.owner, asset).readers
    if readers:
        plan.goes.append(
            "access to it, shared on its own or through shared jobs: "
            f"{_people(len({g.email for g in readers}))} can no longer read it"
        )
    finished = users.count() - len(active)
    if finished:
        plan.kept.append(
            f"the {finished} finished job(s) that used it: their pages show it as deleted, and "
            "they cannot be resubmitted"
        )
    return plan


def _tell_the_jobs_it_came_from(model: MLModel) -> None:
    """A job whose target model goes says so in its timeline (its results no longer offer it)."""
    now = timezone.now()
    message = f"Its target model {model.name} ({model.public_id}) was deleted by its owner."
    for job in Job.objects.filter(target_model=model):
        entry = StatusLog.objects.create(
            job=job, status=job.status, message=message, updated_at=now
        )
        publish(
            job,
            EventType.LOG,
            {
                "status": entry.status,
                "message": message,
                "detail": "",
                "updated_at": now.isoformat(),
            },
        )


def _remove_files_after_commit(files: list[FieldFile]) -> None:
    names = [(f.storage, f.name) for f in files if f.name]

    def remove() -> None:
        for storage, name in names:
            try:
                storage.delete(name)
                if is_remote(storage):
                    continue  # a bucket has no folders to tidy
                folder = Path(storage.path(name)).parent
                if folder != Path(settings.MEDIA_ROOT) and not any(folder.iterdir()):
                    folder.rmdir()  # models/<id>/ and the like, now empty
            except Exception as error:
                # The rows are gone: a stray file is only space, which the orphan sweep
                # (jobs.engine.reaper) takes back once the storage answers again.
                logger.warning("Could not remove %s after deleting its record: %s", name, error)

    transaction.on_commit(remove)


def job_delete(*, job: Job) -> DeletionPlan:
    """Delete a finished job (the caller checked that the person owns it)."""
    with transaction.atomic():
        locked = Job.objects.select_for_update().get(pk=job.pk)
        plan = plan_job(locked)
        if plan.blocked:
            raise StillInUse(plan.blocked)
        files: list[FieldFile] = [a.file for a in Artifact.objects.filter(job=locked)]
        target = locked.target_model
        if target is not None and target.deleted_at is None:
            if _target_kept_because(locked):
                # It stays a model of the owner's; say where it came from (the job is gone).
                target.metadata = {**target.metadata, "made_by_deleted_job": locked.name}
                target.save(update_fields=["metadata"])
            else:
                files.append(target.file)
                Job.objects.filter(pk=locked.pk).update(target_model=None)
                target.delete()
        for dataset, used in _made_data(locked):
            if used:
                dataset.metadata = {**dataset.metadata, "made_by_deleted_job": locked.name}
                dataset.save(update_fields=["metadata"])
            else:
                files.append(dataset.file)
                dataset.delete()
        # Watchers check they may still read it, find they may not, and are cut off.
        publish(locked, EventType.SHARING, {"deleted": True})
        audit.record(Action.DELETED, actor=locked.owner, target=locked, name=locked.name)
        locked.delete()
        _remove_files_after_commit(files)
    return plan


def asset_delete(*, asset: Asset) -> DeletionPlan:
    """Delete a model or dataset (the caller checked that the person owns it)."""
    model = type(asset)
    with transaction.atomic():
        locked = model.objects.select_for_update().get(pk=asset.pk)
        if locked.deleted_at is not None:
            return plan_asset(locked)
        plan = plan_asset(locked)
        if plan.blocked:
            raise StillInUse(plan.blocked)
        files = [locked.file]
        audit.record(Action.DELETED, actor=locked.owner, target=locked, name=locked.name)
        if isinstance(locked, MLModel):
            _tell_the_jobs_it_came_from(locked)
        if _used_by(locked).exists():
            locked.deleted_at = timezone.now()
            locked.save(update_fields=["deleted_at"])
            if isinstance(locked, MLModel):
                # A finished job's target model that is gone: no download offered.
                Job.objects.filter(target_model=locked).update(target_model=None)
        else:
            locked.delete()  # a job whose target model it was keeps its record (SET_NULL)
        _remove_files_after_commit(files)
    asset.deleted_at = timezone.now()
    return plan


def owned(user: User, kind: str, public_id: str) -> Job | Asset:
    """The job, model or dataset ``user`` wants to delete: 404 if they may not read it, 403
    (with the reason) if they read it through a share."""
    if kind == "job":
        return job_for_owner(user, public_id, action="delete it")
    asset: Asset = (model_for_user if kind == "model" else dataset_for_user)(user, public_id)
    if asset.owner_id != user.pk:
        raise PermissionDenied(f"Only the {kind}'s owner can delete it; it is shared with you.")
    return asset


def plan_for(target: Job | Asset) -> DeletionPlan:
    return plan_job(target) if isinstance(target, Job) else plan_asset(target)


def delete(target: Job | Asset) -> DeletionPlan:
    """Delete it (StillInUse if it cannot be now); the plan says what went."""
    return job_delete(job=target) if isinstance(target, Job) else asset_delete(asset=target)
