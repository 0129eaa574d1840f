"""HTML pages of jobs. Every job is fetched through ``jobs.selectors``."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from jobs.models import JobKind
from jobs.selectors import job_for_user, job_status_logs, jobs_visible_to
from jobs.status import STATUS_MEANINGS, JobStatus

PAGE_SIZE = 25


@login_required
def job_list(request: HttpRequest) -> HttpResponse:
    jobs = jobs_visible_to(request.user).select_related("owner")
    status = request.GET.get("status", "")
    kind = request.GET.get("kind", "")
    query = request.GET.get("q", "").strip()
    if status in JobStatus.values:
        jobs = jobs.filter(status=status)
    if kind in JobKind.values:
        jobs = jobs.filter(kind=kind)
    if query:
        jobs = jobs.filter(name__icontains=query)
    page = Paginator(jobs, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "jobs/list.html",
        {
            "page": page,
            "statuses": JobStatus.choices,
            "kinds": JobKind.choices,
            "filters": {"status": status, "kind": kind, "q": query},
        },
    )


@login_required
def job_detail(request: HttpRequest, public_id: str) -> HttpResponse:
    job = job_for_user(request.user, public_id)
    return render(
        request,
        "jobs/detail.html",
        {
            "job": job,
            "status_meaning": STATUS_MEANINGS[job.status],
            "status_logs": job_status_logs(job),
            "inputs": job.job_inputs.select_related("model"),
            "artifacts": job.artifacts.all(),
        },
    )
