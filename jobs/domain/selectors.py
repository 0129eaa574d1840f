"""Reads that depend on who asks. Every page, API view, download and socket comes through here,
so no place can forget the access rule.

The rule (DESIGN.md, "Sharing"): a share grants only what its giver owns. A share of job J gives
its reader J itself and, following J's inputs upstream, every job and asset that J's owner owns:
the inputs, datasets and target models of J, and the jobs whose target models J used, as long as
the owner of J owns them too. What J's owner got from someone else is not theirs to pass on; it
stays visible to the reader by name and id only. Everything is derived from the shares at read
time, in one SQL query (a recursive CTE), so a revoked share takes away exactly what it gave.

A model or dataset may also be shared on its own (seed 000's ``model.modify_sharing``): such a
share gives that asset only (to read, download and use in the reader's own jobs), never the jobs
that made or used it. Only an owner shares, so it too grants only what its giver owns.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.db.models.expressions import RawSQL
from django.http import Http404

from jobs.domain.disk import size_text
from jobs.models import Dataset, Job, JobInput, MLModel, StatusLog

User = AbstractBaseUser | AnonymousUser


def _share_model() -> Any:
    """The sharing app's Share, reached through the relation (jobs never imports sharing)."""
    share_model = Job._meta.get_field("shares").related_model
    assert not isinstance(share_model, str)
    return share_model


def _shared_directly(user_id: int, target: str) -> QuerySet[Any]:
    """The ids of the models (``target`` "model") or datasets ("dataset") shared with
    ``user_id`` on their own."""
    return (
        _share_model()
        .objects.filter(user_id=user_id, **{f"{target}__isnull": False})
        .values(f"{target}_id")
    )


def _shared_jobs_sql(user_id: int) -> RawSQL:
    """The ids of the jobs readable through shares held by ``user_id``: each shared job, and
    upstream from it every job of the same owner whose target model or output data (also the
    owner's) it used: seed 000's "inference and profile jobs share their compile and link jobs".
    ``grantor`` is the owner of the shared job; the walk never leaves what the grantor owns, so a
    reader who builds on a shared asset can never pass it on. UNION drops repeats, so the walk
    ends however the jobs are linked."""
    share = _share_model()._meta.db_table
    job, model, job_input = Job._meta.db_table, MLModel._meta.db_table, JobInput._meta.db_table
    dataset = Dataset._meta.db_table
    return RawSQL(
        f"""
        WITH RECURSIVE readable(job_id, grantor) AS (
            -- The owner by a lookup a share, not a join: the planner would hash the whole
            -- job table for a reader of a few thousand shares (docs/performance.md).
            -- Job shares only: a model's or dataset's own share reaches no job.
            SELECT s.job_id, (SELECT j.owner_id FROM {job} j WHERE j.id = s.job_id)
            FROM {share} s WHERE s.user_id = %s AND s.job_id IS NOT NULL
          UNION
            -- Upstream: the job that made a model this job used, or the dataset it ran on (an
            -- inference job's outputs); one recursive term, as PostgreSQL requires.
            SELECT up.id, r.grantor FROM readable r
            JOIN (
                SELECT ji.job_id AS down_id, m.produced_by_id AS up_id, m.owner_id AS holder
                FROM {job_input} ji JOIN {model} m ON m.id = ji.model_id
              UNION ALL
                SELECT j.id, d.produced_by_id, d.owner_id
                FROM {job} j JOIN {dataset} d ON d.id = j.dataset_id
            ) e ON e.down_id = r.job_id AND e.holder = r.grantor
            JOIN {job} up ON up.id = e.up_id AND up.owner_id = r.grantor
        )
        SELECT job_id FROM readable""",
        (user_id,),
    )


def jobs_visible_to(user: User) -> QuerySet[Job]:
    """The user's own jobs, and what shares held by the user give (see the module's rule)."""
    if not user.is_authenticated:
        return Job.objects.none()
    return Job.objects.filter(Q(owner_id=user.pk) | Q(pk__in=_shared_jobs_sql(int(user.pk))))


def models_visible_to(user: User) -> QuerySet[MLModel]:
    """Own models, those shared with the user on their own, and those that a shared job
    produced or used, where the job's owner owns them."""
    if not user.is_authenticated:
        return MLModel.objects.none()
    shared = _shared_jobs_sql(int(user.pk))
    used_by_its_owner = JobInput.objects.filter(
        model_id=OuterRef("pk"), job_id__in=shared, job__owner_id=OuterRef("owner_id")
    )
    return MLModel.objects.filter(
        Q(owner_id=user.pk)
        | Q(pk__in=_shared_directly(int(user.pk), "model"))
        | Q(produced_by_id__in=shared)
        | Exists(used_by_its_owner),
        deleted_at__isnull=True,
    )


def datasets_visible_to(user: User) -> QuerySet[Dataset]:
    """Own datasets, those shared with the user on their own, those a shared job made (an
    inference job's outputs), and those a shared job trained, validated or ran on, where the
    job's owner owns them."""
    if not user.is_authenticated:
        return Dataset.objects.none()
    shared = _shared_jobs_sql(int(user.pk))
    used = Job.objects.filter(pk__in=shared, owner_id=OuterRef("owner_id"))
    return Dataset.objects.filter(
        Q(owner_id=user.pk)
        | Q(pk__in=_shared_directly(int(user.pk), "dataset"))
        | Q(produced_by_id__in=shared)
        | Exists(used.filter(dataset_id=OuterRef("pk")))
        | Exists(used.filter(validation_dataset_id=OuterRef("pk"))),
        deleted_at__isnull=True,
    )


def readable_producer_ids(user: User, assets: Iterable[MLModel | Dataset]) -> set[int]:
    """The pks of the jobs that made ``assets`` that ``user`` may read (``jobs_visible_to``),
    in one query for all of them (a page of a list, not a query a row). A model or dataset
    names the job that made it only to those: its own share, or a job share that reaches it
    but not its maker, gives the asset alone, not the id or name of a job that is not theirs."""
    made_by = {a.produced_by_id for a in assets if a.produced_by_id is not None}
    if not made_by:
        return set()
    return set(jobs_visible_to(user).filter(pk__in=made_by).values_list("pk", flat=True))


@dataclass(frozen=True)
class _Someone:
    """A stand-in person for building a query once (``_readable_job_sql``)."""

    pk: int
    is_authenticated: bool = True


_SOMEONE, _SOME_JOB = -7_310_991, "\x00job\x00"  # values no real person or job has


@functools.cache
def _readable_job_sql() -> tuple[str, tuple[Any, ...]]:
    """The SQL of ``jobs_visible_to(person).filter(public_id=…)``, built once per process with
    stand-in values that ``readable_job`` replaces: building the query costs more than running
    it, and every socket that opens asks it."""
    someone: Any = _Someone(_SOMEONE)
    query = jobs_visible_to(someone).filter(public_id=_SOME_JOB)[:1].query
    sql, params = query.sql_with_params()
    assert _SOMEONE in params and _SOME_JOB in params, params
    return sql, params


def readable_job(user: User, public_id: str) -> Job | None:
    """The job if ``user`` may read it (``jobs_visible_to``), in one prepared query."""
    if not user.is_authenticated:
        return None
    sql, template = _readable_job_sql()
    values = {_SOMEONE: int(user.pk), _SOME_JOB: public_id}
    params = [values.get(p, p) if isinstance(p, int | str) else p for p in template]
    return next(iter(Job.objects.raw(sql, params)), None)


def job_for_user(user: User, public_id: str) -> Job:
    """The job, or 404 for anyone who may not read it: a stranger learns nothing, not even that
    the id exists."""
    job = jobs_visible_to(user).select_related("owner").filter(public_id=public_id).first()
    if job is None:
        raise Http404("No such job.")
    return job


def job_for_owner(user: User, public_id: str, *, action: str) -> Job:
    """The job for a change only its owner may make: 404 for those who may not read it, 403
    for those who may read but not change it, naming what they asked (``action``: "cancel
    it", "delete it"), not everything else an owner may do."""
    job = job_for_user(user, public_id)
    if job.owner_id != user.pk:
        raise PermissionDenied(f"Only the job's owner can {action}; it is shared with you.")
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


@dataclass(frozen=True)
class InputView:
    """An input of a job as one reader sees it: always its name and id, its content only when
    the reader may read it ("not shared with you" otherwise)."""

    role: str  # "model", "dataset" or "validation_dataset"
    public_id: str
    name: str
    readable: bool
    summary: str  # size or record count; empty when not readable
    deleted: bool = False  # its owner deleted it (then it is readable by nobody)


def job_inputs_for(user: User, job: Job) -> list[InputView]:
    models = [ji.model for ji in job.job_inputs.select_related("model")]
    datasets = [("dataset", job.dataset), ("validation_dataset", job.validation_dataset)]
    # Each access query only where there is something to check: building one costs more than
    # running it, and every page a socket opens comes through here.
    readable_models = (
        set(
            models_visible_to(user)
            .filter(pk__in=[m.pk for m in models])
            .values_list("pk", flat=True)
        )
        if models
        else set()
    )
    dataset_ids = [d.pk for _, d in datasets if d is not None]
    readable_datasets = (
        set(datasets_visible_to(user).filter(pk__in=dataset_ids).values_list("pk", flat=True))
        if dataset_ids
        else set()
    )
    views = [
        InputView(
            "model",
            m.public_id,
            m.name,
            m.pk in readable_models,
            size_text(m.size),
            m.deleted_at is not None,
        )
        for m in models
    ]
    for role, dataset in datasets:
        if dataset is not None:
            readable = dataset.pk in readable_datasets
            summary = f"{dataset.num_records} records"
            deleted = dataset.deleted_at is not None
            views.append(
                InputView(role, dataset.public_id, dataset.name, readable, summary, deleted)
            )
    return [
        v if v.readable else InputView(v.role, v.public_id, v.name, False, "", v.deleted)
        for v in views
    ]


def inputs_unreadable_by_owner(job: Job) -> list[InputView]:
    """The inputs a job's own owner may no longer read (a share of them was revoked): such a
    job cannot start, since the hub would be reading them for someone it no longer lets see
    them."""
    return [view for view in job_inputs_for(job.owner, job) if not view.readable]
