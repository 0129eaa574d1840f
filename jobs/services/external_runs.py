"""Runs that train elsewhere and report to the hub (jobs/engine/runners/external.py)."""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction

from jobs.domain import quotas
from jobs.domain.redact import scrub_paths
from jobs.engine.runners import external
from jobs.models import Job, JobKind
from jobs.services.common import check_time_limit, clean_name, clean_where

MAX_RUN_PARAMS_BYTES = 64 * 1024


def external_run_start(
    *,
    owner: User,
    name: str | None = None,
    params: dict[str, Any] | None = None,
    device: str | None = None,
    epochs: int | None = None,
    total_steps: int | None = None,
    time_limit: int | None = None,
) -> Job:
    """Start a run that trains elsewhere and reports here (jobs/engine/runners/external.py).
    ``params`` is what the run wants remembered beside its charts (its hyperparameters, its
    configuration): any JSON object up to 64 KiB."""
    params = params or {}
    if not isinstance(params, dict):
        raise ValidationError({"params": "params is a JSON object (name → value)."})
    if len(json.dumps(params, default=str)) > MAX_RUN_PARAMS_BYTES:
        raise ValidationError(
            {"params": f"params is at most {MAX_RUN_PARAMS_BYTES} bytes as JSON."}
        )
    check_time_limit(time_limit)
    job = Job(
        kind=JobKind.EXTERNAL,
        owner=owner,
        name=clean_name(name, "external run"),
        ran_on=clean_where(device),
        hyperparameters=params,
        planned_epochs=epochs,
        planned_steps=total_steps,
        time_limit=time_limit,
    )
    with transaction.atomic():
        quotas.lock_person(owner.pk)
        quotas.check_job_quota(owner.pk)
        job.save()
        return external.begin(job)


def external_run_report(*, job: Job, report: Any) -> dict[str, Any]:
    """Metric points and status details from a run (checked whole, then written at once)."""
    _require_external(job)
    return external.record_report(job, external.parse_report(report))


def external_run_finish(*, job: Job, outcome: str, message: str = "") -> Job:
    _require_external(job)
    return external.finish(job, outcome, scrub_paths(_clean_message(message)))


def _require_external(job: Job) -> None:
    if job.kind != JobKind.EXTERNAL:
        raise ValidationError(
            {"job": f"Job {job.public_id} is a {job.kind} job, run by the hub; only an external "
             "run reports from outside."}
        )  # fmt: skip


def _clean_message(message: str) -> str:
    if len(message) > 2000:
        raise ValidationError({"message": "message is at most 2000 characters long."})
    return message
