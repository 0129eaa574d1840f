"""The read and cancel routes of NeMo Customizer's API (``/v1/customization/jobs…``), with its
JSON shapes, so that the official ``nemo-microservices`` SDK pointed at the hub (``base_url``
and the token in its default headers) can list, retrieve, read the status of and cancel the
hub's customization jobs. Creating jobs through that API is not offered: its configs and targets
have no counterpart here."""

from __future__ import annotations

import math
from typing import Any

from django.urls import path
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from jobs import services
from jobs.domain.selectors import job_for_owner, job_for_user, jobs_visible_to
from jobs.domain.status import JobStatus
from jobs.models import Job, JobKind
from jobs.web.api.params import int_param
from jobs.wire.serializers import StatusDetailsSerializer
from jobs.wire.snapshots import status_details

MAX_PAGE_SIZE = 1000


def _customization(request: Request, job_id: str) -> Job:
    job = job_for_user(request.user, job_id)
    if job.kind != JobKind.CUSTOMIZATION:
        from django.http import Http404

        raise Http404(f"Job {job_id} is not a customization job.")
    return job


def customization_job(job: Job) -> dict[str, Any]:
    """A job as NeMo Customizer's CustomizationJob."""
    params = job.params
    base = job.builtin_base_model or next((ji.model.public_id for ji in job.job_inputs.all()), "")
    return {
        "id": job.public_id,
        "config": base,
        "dataset": job.dataset.public_id if job.dataset else "",
        "hyperparameters": {
            "finetuning_type": "all_weights",
            "training_type": "sft",
            "epochs": params.epochs,
            "batch_size": params.batch_size,
            "learning_rate": params.learning_rate,
            "log_every_n_steps": params.log_every_n_steps,
        },
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "description": job.name,
        "namespace": job.owner.get_username(),
        "ownership": {"created_by": job.owner.get_username()},
        "output_model": job.target_model.public_id if job.target_model else None,
        "status": job.status,
        "status_details": StatusDetailsSerializer(status_details(job)).data,
    }


class NemoJobList(APIView):
    schema = None  # documented by NVIDIA, not in the hub's own schema

    def get(self, request: Request) -> Response:
        jobs = (
            jobs_visible_to(request.user)
            .filter(kind=JobKind.CUSTOMIZATION)
            .select_related("owner", "dataset", "target_model")
        )
        state = request.query_params.get("filter[status]")
        if state in JobStatus.values:
            jobs = jobs.filter(status=state)
        ascending = request.query_params.get("sort") == "created_at"
        jobs = jobs.order_by("created_at" if ascending else "-created_at", "id")
        page = int_param(request, "page", minimum=1, maximum=10**9) or 1
        size = int_param(request, "page_size", minimum=1, maximum=MAX_PAGE_SIZE) or 10
        total = jobs.count()
        items = [
            customization_job(job)
            for job in jobs.prefetch_related("job_inputs__model")[(page - 1) * size : page * size]
        ]
        return Response(
            {
                "object": "list",
                "data": items,
                "pagination": {
                    "page": page,
                    "page_size": size,
                    "current_page_size": len(items),
                    "total_pages": max(1, math.ceil(total / size)),
                    "total_results": total,
                },
                "sort": "created_at" if ascending else "-created_at",
            }
        )


class NemoJobDetail(APIView):
    schema = None

    def get(self, request: Request, job_id: str) -> Response:
        return Response(customization_job(_customization(request, job_id)))


class NemoJobStatus(APIView):
    schema = None

    def get(self, request: Request, job_id: str) -> Response:
        return Response(
            StatusDetailsSerializer(status_details(_customization(request, job_id))).data
        )


class NemoJobCancel(APIView):
    schema = None

    def post(self, request: Request, job_id: str) -> Response:
        job = _customization(request, job_id)
        job_for_owner(request.user, job_id)
        return Response(customization_job(services.job_cancel(job=job)))


urlpatterns = [
    path("jobs", NemoJobList.as_view(), name="nemo-jobs"),
    path("jobs/<slug:job_id>", NemoJobDetail.as_view(), name="nemo-job"),
    path("jobs/<slug:job_id>/status", NemoJobStatus.as_view(), name="nemo-job-status"),
    path("jobs/<slug:job_id>/cancel", NemoJobCancel.as_view(), name="nemo-job-cancel"),
]
