"""The device pages: every device the workers announced, and one device with its workers, the
jobs waiting for and running on it, the reader's jobs on it and the models profiled there.
Every signed-in person sees the devices and how busy they are; the jobs and models named are
only those the reader may read (``device_for_user`` scopes them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth.decorators import login_required
from django.db.models import Prefetch, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from jobs.domain.device_selectors import device_for_user, devices_listed
from jobs.domain.measures import memory_text, ms_text
from jobs.domain.profiles import PAGE_COLUMNS
from jobs.domain.selectors import jobs_visible_to
from jobs.domain.status import JobStatus
from jobs.models import Job, JobInput, JobKind
from jobs.wire.snapshots import for_listing

PAGE_JOBS = 50
PAGE_PROFILES = 50
ACTIVE = (JobStatus.CREATED, JobStatus.PENDING, JobStatus.RUNNING, JobStatus.CANCELLING)


@login_required
def device_list(request: HttpRequest) -> HttpResponse:
    visible = jobs_visible_to(request.user)
    # Devices are few (the kinds of machine a hub has): a count each reads plainly.
    rows = [
        (device, visible.filter(Q(device=device) | Q(ran_device=device)).count())
        for device in devices_listed()
    ]
    return render(request, "jobs/devices.html", {"rows": rows})


@dataclass
class ProfiledModel:
    """A model's latest profile on the device, as the reader may see it."""

    job: Job
    model_id: str
    model_name: str
    readable: bool
    median: str
    peak_memory: str
    runs: Any


def result_of(job: Job) -> str:
    """A finished job's headline, for the device page's table."""
    summary = job.summary if isinstance(job.summary, dict) else {}
    if not summary:
        return ""
    if job.kind == JobKind.PROFILE:
        return f"median {ms_text((summary.get('latency_us') or {}).get('median'))}"
    if job.kind == JobKind.COMPILE:
        largest = summary.get("largest_difference")
        kind = summary.get("quantize_full_type") or "float32"
        return f"{kind}, largest difference {float(largest):.3g}" if largest is not None else kind
    if job.kind == JobKind.INFERENCE and summary.get("samples") is not None:
        return f"{summary['samples']} sample{'s' * (summary['samples'] != 1)}"
    return ""


def _profiled(jobs: Any, readable: set[int]) -> list[ProfiledModel]:
    """The latest finished profile of each model among the reader's jobs on the device."""
    finished = (
        jobs.filter(kind=JobKind.PROFILE, status__in=[JobStatus.READY, JobStatus.COMPLETED])
        .prefetch_related(Prefetch("job_inputs", queryset=JobInput.objects.select_related("model")))
        .order_by("-created_at", "-id")[:PAGE_PROFILES]
    )
    seen: set[int] = set()
    rows = []
    for job in finished:
        inputs = list(job.job_inputs.all())
        if not inputs or inputs[0].model_id in seen:
            continue
        model = inputs[0].model
        seen.add(model.pk)
        summary = job.summary if isinstance(job.summary, dict) else {}
        execution = summary.get("execution_summary") or {}
        rows.append(
            ProfiledModel(
                job=job,
                model_id=model.public_id,
                model_name=model.name,
                readable=model.pk in readable and model.deleted_at is None,
                median=ms_text((summary.get("latency_us") or {}).get("median")),
                peak_memory=memory_text(execution.get("estimated_inference_peak_memory")),
                runs=summary.get("runs", "—"),
            )
        )
    return rows


@login_required
def device_detail(request: HttpRequest, device_id: str) -> HttpResponse:
    page = device_for_user(request.user, device_id)
    jobs = [(job, result_of(job)) for job in for_listing(page.jobs)[:PAGE_JOBS]]
    profiled = _profiled(page.jobs, set(page.profiled.values_list("pk", flat=True)))
    context = {
        "device": page.device,
        "specs": page.device.specs,
        "workers": page.workers,
        "online": [w for w in page.workers if w["online"]],
        "active": [job for job, _ in jobs if job.status in ACTIVE],
        "jobs": jobs,
        "more_jobs": len(jobs) == PAGE_JOBS and page.jobs.count() > PAGE_JOBS,
        "profiled": profiled,
        "compare_ids": ",".join(p.job.public_id for p in profiled[:PAGE_COLUMNS]),
    }
    return render(request, "jobs/device.html", context)
