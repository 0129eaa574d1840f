"""The device pages: every device the workers announced, and one device with its workers, the
reader's jobs on it and the models profiled there."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from jobs.domain.device_selectors import device_for_user, devices_listed
from jobs.wire.snapshots import for_listing

PAGE_JOBS = 50


@login_required
def device_list(request: HttpRequest) -> HttpResponse:
    return render(request, "jobs/devices.html", {"devices": devices_listed()})


@login_required
def device_detail(request: HttpRequest, device_id: str) -> HttpResponse:
    page = device_for_user(request.user, device_id)
    context = {
        "device": page.device,
        "specs": page.device.specs,
        "workers": page.workers,
        "jobs": for_listing(page.jobs)[:PAGE_JOBS],
        "profiled": page.profiled.order_by("name"),
    }
    return render(request, "jobs/device.html", context)
