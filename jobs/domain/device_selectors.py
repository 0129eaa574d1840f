"""Reads about devices: which exist, which workers of each are online, what runs there. Every
signed-in person sees the devices (they are the hub's machines, not anyone's data) and the
counts of jobs on them; the jobs and models listed are only those the reader may read."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, Q, QuerySet
from django.http import Http404
from django.utils import timezone

from jobs.domain.queue import WORKER_FRESH
from jobs.domain.selectors import User, jobs_visible_to, models_visible_to
from jobs.domain.status import JobStatus
from jobs.models import Device, Job, JobKind, MLModel, WorkerSeen


def online_since() -> datetime:
    """A worker that reported after this is online."""
    return timezone.now() - timedelta(seconds=WORKER_FRESH * settings.HUB_REAPER_INTERVAL)


def devices_listed(
    *, name: str = "", os: str = "", attributes: list[str] | None = None
) -> QuerySet[Device]:
    """Devices with how many workers are online and how many jobs wait for and run on each,
    filtered as seed 000's ``get_devices(name, os, attributes)``: a name's part, an OS's part,
    and every attribute given."""
    devices = Device.objects.annotate(
        workers_online=Count(
            "workers", filter=Q(workers__seen_at__gte=online_since()), distinct=True
        ),
        jobs_queued=Count("jobs", filter=Q(jobs__status=JobStatus.PENDING), distinct=True),
        jobs_running=Count(
            "jobs_ran",
            filter=Q(jobs_ran__status__in=[JobStatus.RUNNING, JobStatus.CANCELLING]),
            distinct=True,
        ),
    ).order_by("name")
    if name:
        devices = devices.filter(Q(name__icontains=name) | Q(slug=name.lower()))
    if os:
        wanted = os.lower()
        kept = [d.pk for d in devices if wanted in str(d.specs.get("os_release", "")).lower()
                or wanted == str(d.specs.get("os", "")).lower()]  # fmt: skip
        devices = devices.filter(pk__in=kept)
    for attribute in attributes or []:
        # In Python: SQLite's JSON has no "contains" lookup, and devices are few.
        kept = [d.pk for d in devices if attribute in d.attributes]
        devices = devices.filter(pk__in=kept)
    return devices


@dataclass
class DevicePage:
    device: Device
    workers: list[dict[str, Any]]
    jobs: QuerySet[Job]  # the reader's, waiting for or run on it, newest first
    profiled: QuerySet[MLModel]  # models the reader may read that were profiled on it


def device_for_user(user: User, slug: str) -> DevicePage:
    device = devices_listed().filter(slug=slug).first()
    if device is None:
        raise Http404(f"No device {slug!r}.")
    fresh = online_since()
    workers = [
        {
            "name": w.name,
            "online": w.seen_at >= fresh,
            "started_at": w.started_at,
            "last_seen_at": w.seen_at,
        }
        for w in WorkerSeen.objects.filter(device=device).order_by("-seen_at", "name")
    ]
    jobs = (
        jobs_visible_to(user)
        .filter(Q(device=device) | Q(ran_device=device))
        .select_related("owner", "device", "ran_device")
        .order_by("-created_at", "-id")
    )
    profiled = (
        models_visible_to(user)
        .filter(used_by_jobs__kind=JobKind.PROFILE, used_by_jobs__ran_device=device)
        .distinct()
    )
    return DevicePage(device, workers, jobs, profiled)
