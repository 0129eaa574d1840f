"""Jobs on a model that is still being made: seed 000's client submits a profile or inference of
a compile job's target model at once (``submit_compile_and_profile_jobs``), before the compile
has made it. Such a job is saved ``created``, waiting for that job (``Job.waits_for``), with what
was asked kept; what can be checked without the model is checked at submit. When the job it
waits for ends (``jobs.domain.state.job_ended``), it is prepared again with the model, exactly as
a submit prepares it, and queued, or it fails saying why: the model was not made (that job
failed or was cancelled), or the model does not fit what was asked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.dispatch import receiver

from jobs.domain import quotas
from jobs.domain.selectors import datasets_visible_to, models_visible_to
from jobs.domain.state import job_ended, job_transition
from jobs.domain.status import FailureType, JobStatus
from jobs.engine.dispatch import enqueue_on_commit
from jobs.models import Dataset, Device, Job, JobInput, JobKind, StatusLog
from jobs.services import device_jobs
from jobs.services.common import check_time_limit, clean_name

logger = logging.getLogger(__name__)
PREPARE: dict[str, Callable[..., Job]] = {
    JobKind.COMPILE: device_jobs.prepare_compile,
    JobKind.PROFILE: device_jobs.prepare_profile,
    JobKind.INFERENCE: device_jobs.prepare_inference,
}
# What a model that does not fit is, by the field a preparation refused.
REFUSED_AS = {"options": FailureType.INVALID_PARAMETERS, "inputs": FailureType.INVALID_DATASET}


def job_submit_after(
    *,
    kind: str,
    owner: User,
    upstream: Job,
    device: Device | str | None,
    name: str | None = None,
    options: str | None = "",
    inputs: Dataset | None = None,
    input_specs: Any = None,
    calibration_data: Dataset | None = None,
    profile: bool = False,
    time_limit: int | None = None,
) -> Job:
    """A compile, profile or inference job of the target model ``upstream`` will make. Its
    options, device, inputs and time limit are checked now; its model's fit when it exists."""
    if kind not in PREPARE:
        raise ValidationError({"kind": f"A {kind} job cannot wait for another job's model."})
    if not upstream.target_public_id or upstream.status in (JobStatus.FAILED, JobStatus.CANCELLED):
        raise ValidationError(
            {"model": f"Job {upstream.public_id} makes no model to wait for ({upstream.status})."}
        )
    parsed = device_jobs.parse_job_options(kind, options)
    target, attribute = device_jobs.resolve_job_device(device, parsed)
    check_time_limit(time_limit)
    for dataset, field in ((inputs, "inputs"), (calibration_data, "calibration_data")):
        if dataset is not None:
            device_jobs.require_tensor_dataset(owner, dataset, field)
    asked: dict[str, Any] = {
        "device": target.pk if target else None,
        "device_attribute": attribute,
        "options": options or "",
        "inputs": inputs.pk if inputs else None,
        "input_specs": input_specs,
        "calibration_data": calibration_data.pk if calibration_data else None,
        "profile": bool(profile),
    }
    job = Job(
        kind=kind,
        owner=owner,
        name=clean_name(name, f"{kind.capitalize()} the model of {upstream.public_id}"[:200]),
        device=target,
        device_attribute=attribute,
        dataset=inputs or calibration_data,
        hyperparameters={"options": options or "", "asked": asked},
        time_limit=time_limit,
        waits_for=upstream,
    )
    with transaction.atomic():
        quotas.lock_person(owner.pk)
        quotas.check_job_quota(owner.pk)
        job.save()
        StatusLog.objects.create(
            job=job,
            status=JobStatus.CREATED,
            message=f"Waiting for job {upstream.public_id} to make its model; then it is checked "
            "against what was asked, and queued.",
            updated_at=job.created_at,
        )
    if upstream.status in (JobStatus.READY, JobStatus.FAILED, JobStatus.CANCELLED):
        transaction.on_commit(lambda: release_followers(upstream))  # it ended meanwhile
    return job


@receiver(job_ended, dispatch_uid="jobs-release-followers")
def _on_job_ended(sender: Any, job: Job, **kwargs: Any) -> None:
    release_followers(job)


def release_followers(upstream: Job) -> None:
    """Start, or fail, every job still waiting for ``upstream``'s target model."""
    upstream.refresh_from_db()
    waiting = Job.objects.filter(waits_for=upstream, status=JobStatus.CREATED)
    for follower in waiting.select_related("owner"):
        try:
            _release(follower, upstream)
        except Exception:  # one follower's trouble must not hold the others
            logger.exception("Could not release job %s", follower.public_id)


def _release(follower: Job, upstream: Job) -> None:
    model = upstream.target_model
    if upstream.status != JobStatus.READY or model is None:
        why = upstream.failure_message or f"it was {upstream.status}"
        _fail(
            follower,
            FailureType.INPUT_UNAVAILABLE,
            f"Job {upstream.public_id}, which was to make this job's model, did not: {why}",
        )
        return
    if not models_visible_to(follower.owner).filter(pk=model.pk).exists():
        _fail(
            follower,
            FailureType.INPUT_UNAVAILABLE,
            f"Model {model.public_id}, made by job {upstream.public_id}, is not shared with you "
            "any more.",
        )
        return
    asked = dict(follower.hyperparameters.get("asked") or {})
    try:
        prepared = PREPARE[follower.kind](
            owner=follower.owner, model=model, **_arguments(follower, asked)
        )
    except ValidationError as refused:
        field = next(iter(getattr(refused, "message_dict", {}) or {"": None}))
        words = "; ".join(refused.messages)
        _fail(follower, REFUSED_AS.get(field, FailureType.INVALID_MODEL), words)
        return
    with transaction.atomic():
        locked = Job.objects.select_for_update().get(pk=follower.pk)
        if locked.status != JobStatus.CREATED or locked.job_inputs.exists():
            return  # cancelled meanwhile, or released by another process
        for field in ("hyperparameters", "training_samples", "device", "device_attribute"):
            setattr(locked, field, getattr(prepared, field))
        locked.save(
            update_fields=["hyperparameters", "training_samples", "device", "device_attribute"]
        )
        JobInput.objects.create(job=locked, model=model, position=0)
        enqueue_on_commit(locked)


def _arguments(follower: Job, asked: dict[str, Any]) -> dict[str, Any]:
    """What was asked at submit, as the kind's preparation takes it (the datasets read again:
    they must still be the owner's to use)."""
    readable = datasets_visible_to(follower.owner)
    device: Device | str | None = (
        Device.objects.filter(pk=int(asked["device"])).first()
        if asked.get("device")
        else asked.get("device_attribute") or "any"
    )
    common: dict[str, Any] = {
        "device": device,
        "name": follower.name,
        "options": asked.get("options", ""),
        "time_limit": follower.time_limit,
    }
    if follower.kind == JobKind.INFERENCE:
        inputs = readable.filter(pk=int(asked.get("inputs") or 0)).first()
        if inputs is None:
            raise ValidationError({"inputs": "Its inputs are not shared with you any more."})
        return {**common, "inputs": inputs, "profile": bool(asked.get("profile"))}
    if follower.kind == JobKind.COMPILE:
        calibration = None
        if asked.get("calibration_data"):
            calibration = readable.filter(pk=int(asked["calibration_data"])).first()
            if calibration is None:
                raise ValidationError(
                    {"calibration_data": "Its calibration data is not shared with you any more."}
                )
        return {**common, "input_specs": asked.get("input_specs"), "calibration_data": calibration}
    return common


def _fail(job: Job, failure: FailureType, message: str) -> None:
    try:
        job_transition(job=job, to=JobStatus.FAILED, message=message, failure_type=failure)
    except Exception:  # cancelled meanwhile: nothing to fail
        job.refresh_from_db()
        if job.status == JobStatus.CREATED:
            raise
