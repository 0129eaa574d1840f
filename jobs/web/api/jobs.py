"""API views of jobs: list, detail, rename, submit, cancel, resubmit, status details, metrics."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from hubsite.api.auth import user_of
from jobs.domain.base_models import server_models
from jobs.domain.joblog import PAGE_LINES, lines_after
from jobs.domain.metrics import MAX_POINTS, PAGE_POINTS, job_metrics
from jobs.domain.paging import job_page
from jobs.domain.queue import queue_position
from jobs.domain.selectors import (
    dataset_for_user,
    job_for_owner,
    job_for_user,
    job_status_logs,
    jobs_visible_to,
    model_for_user,
)
from jobs.domain.status import FINISHED, JobStatus
from jobs.models import Dataset, Job, JobKind, LogLevel, MLModel
from jobs.services.external_runs import external_run_finish, external_run_report, external_run_start
from jobs.services.jobs import (
    job_cancel,
    job_rename,
    job_resubmit,
    job_submit_customization,
    job_submit_evaluation,
    job_submit_link,
)
from jobs.web.api.deletion import DELETE_RESPONSES, delete_response
from jobs.web.api.params import choice_param, int_param
from jobs.web.api.serializers import (
    CustomizationSubmitSerializer,
    EvaluationSubmitSerializer,
    ExternalFinishSerializer,
    ExternalReportAnswerSerializer,
    ExternalReportSerializer,
    ExternalRunSerializer,
    JobRenameSerializer,
    LinkSubmitSerializer,
)
from jobs.wire.serializers import (
    JobDetailSerializer,
    JobSerializer,
    MetricsSerializer,
    StatusDetailsSerializer,
    StatusLogSerializer,
    job_summaries,
)
from jobs.wire.snapshots import for_listing, job_data, status_details

PAGE = 50  # jobs a page when the asker names no size
MAX_PAGE = 1000


def job_response(job: Job, user: Any, code: int = status.HTTP_200_OK) -> Response:
    """The job as ``user`` sees it, inputs included."""
    return Response(job_data(job, user), status=code)


def lookup_input(kind: str, lookup: Any, public_id: str, field: str) -> Any:
    """An input named by id, or a 400 naming the field (never a 404: the request is at fault)."""
    try:
        return lookup(public_id)
    except Http404:
        raise ValidationError({field: f"No {kind} {public_id} that you may use."}) from None


class JobListPageSerializer(serializers.Serializer):
    results = JobSerializer(many=True)
    next = serializers.URLField(allow_null=True, help_text="The page of older jobs.")
    previous = serializers.URLField(allow_null=True, help_text="The page of newer jobs.")


class JobList(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("kind", str, enum=JobKind.values),
            OpenApiParameter("status", str, enum=JobStatus.values),
            OpenApiParameter("owner", str, description="Username of the job's owner."),
            OpenApiParameter("search", str, description="Part of the job's name."),
            OpenApiParameter(
                "limit", int, description=f"Jobs a page (1–{MAX_PAGE}, default {PAGE}). "
            ),
            OpenApiParameter("after", str, description="A cursor from `next`: the older jobs."),
            OpenApiParameter(
                "before", str, description="A cursor from `previous`: the newer jobs."
            ),
        ],
        responses=JobListPageSerializer,
        summary="Jobs you may read, newest first",
        operation_id="v1_jobs_list",
    )
    def get(self, request: Request) -> Response:
        """Jobs you may read, newest first, a page at a time: follow ``next`` (keyset pages:
        no total count, and each page costs the same however far in)."""
        if "offset" in request.query_params:
            raise ValidationError(
                {"offset": "The job list pages by cursor: follow the answer's next link "
                 "(?after=…) instead of an offset."}
            )  # fmt: skip
        page = job_page(
            self._jobs(request),
            limit=int_param(request, "limit", minimum=1, maximum=MAX_PAGE) or PAGE,
            after=request.query_params.get("after") or None,
            before=request.query_params.get("before") or None,
        )
        return Response(
            {
                "results": job_summaries(page.jobs),
                "next": self._link(request, "after", page.older),
                "previous": self._link(request, "before", page.newer),
            }
        )

    def _jobs(self, request: Request) -> QuerySet[Job]:
        jobs = for_listing(jobs_visible_to(request.user))
        kind = choice_param(request, "kind", JobKind.values)
        state = choice_param(request, "status", JobStatus.values)
        if kind:
            jobs = jobs.filter(kind=kind)
        if state:
            jobs = jobs.filter(status=state)
        if owner := request.query_params.get("owner"):
            jobs = jobs.filter(owner__username=owner)
        if search := request.query_params.get("search", "").strip():
            jobs = jobs.filter(name__icontains=search)
        return jobs

    @staticmethod
    def _link(request: Request, key: str, cursor: str | None) -> str | None:
        if cursor is None:
            return None
        query = request.query_params.copy()
        for name in ("after", "before"):
            query.pop(name, None)
        query[key] = cursor
        return request.build_absolute_uri(f"{request.path}?{query.urlencode()}")


class JobDetail(APIView):
    @extend_schema(responses=JobDetailSerializer)
    def get(self, request: Request, job_id: str) -> Response:
        return job_response(job_for_user(request.user, job_id), request.user)

    @extend_schema(
        request=JobRenameSerializer, responses=JobDetailSerializer, summary="Rename a job"
    )
    def patch(self, request: Request, job_id: str) -> Response:
        job = job_for_owner(request.user, job_id, action="rename it")
        data = JobRenameSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        renamed = job_rename(job=job, name=data.validated_data["name"])
        return job_response(renamed, request.user)

    @extend_schema(
        responses=DELETE_RESPONSES, summary="Delete a finished job, its results and its shares"
    )
    def delete(self, request: Request, job_id: str) -> Response:
        return delete_response(request, "job", job_id)


class LinkSubmit(APIView):
    @extend_schema(
        request=LinkSubmitSerializer,
        responses={201: JobDetailSerializer},
        summary="Submit a link job",
    )
    def post(self, request: Request) -> Response:
        data = LinkSubmitSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        models = [
            lookup_input("model", lambda i: model_for_user(request.user, i), model_id, "models")
            for model_id in data.validated_data["models"]
        ]
        job = job_submit_link(
            owner=user_of(request),
            models=models,
            name=data.validated_data.get("name"),
            device=data.validated_data.get("device"),
        )
        return job_response(job, request.user, status.HTTP_201_CREATED)


class CustomizationSubmit(APIView):
    @extend_schema(
        request=CustomizationSubmitSerializer,
        responses={201: JobDetailSerializer},
        summary="Submit a customization job",
    )
    def post(self, request: Request) -> Response:
        data = CustomizationSubmitSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        user = user_of(request)
        dataset: Dataset = lookup_input(
            "dataset", lambda i: dataset_for_user(user, i), values["dataset"], "dataset"
        )
        validation = values.get("validation_dataset")
        if validation:
            validation = lookup_input(
                "dataset", lambda i: dataset_for_user(user, i), validation, "validation_dataset"
            )
        named: str | None = values.get("model")
        base: MLModel | str | None = named
        offered = server_models()
        if named and named not in offered:
            known = ", ".join(sorted(offered))
            try:
                base = model_for_user(user, named)
            except Http404:
                message = (
                    f"No model {named} that you may use, and no base model of that name on this "
                    f"hub ({known})."
                )
                raise ValidationError({"model": message}) from None
        job = job_submit_customization(
            owner=user,
            dataset=dataset,
            validation_dataset=validation or None,
            base_model=base,
            hyperparameters=values.get("hyperparameters"),
            name=values.get("name"),
            device=values.get("device"),
            time_limit=values.get("time_limit"),
            hardware=values.get("hardware"),
        )
        return job_response(job, request.user, status.HTTP_201_CREATED)


class EvaluationSubmit(APIView):
    @extend_schema(
        request=EvaluationSubmitSerializer,
        responses={201: JobDetailSerializer},
        summary="Submit an evaluation job",
    )
    def post(self, request: Request) -> Response:
        data = EvaluationSubmitSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        user = user_of(request)
        dataset: Dataset = lookup_input(
            "dataset", lambda i: dataset_for_user(user, i), values["dataset"], "dataset"
        )
        offered = server_models()
        models: list[MLModel | str] = [
            name
            if name in offered
            else lookup_input("model", lambda i: model_for_user(user, i), name, "models")
            for name in values["models"]
        ]
        job = job_submit_evaluation(
            owner=user,
            models=models,
            dataset=dataset,
            settings=values.get("settings"),
            name=values.get("name"),
            time_limit=values.get("time_limit"),
        )
        return job_response(job, request.user, status.HTTP_201_CREATED)


class ExternalRunStart(APIView):
    @extend_schema(
        request=ExternalRunSerializer,
        responses={201: JobDetailSerializer},
        summary="Start a run that trains elsewhere and reports here",
    )
    def post(self, request: Request) -> Response:
        data = ExternalRunSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        job = external_run_start(owner=user_of(request), **data.validated_data)
        return job_response(job, request.user, status.HTTP_201_CREATED)


class ExternalRunReport(APIView):
    @extend_schema(
        request=ExternalReportSerializer,
        responses=ExternalReportAnswerSerializer,
        summary="Report metric points and status details of an external run",
    )
    def post(self, request: Request, job_id: str) -> Response:
        job = job_for_owner(request.user, job_id, action="report to it")
        return Response(external_run_report(job=job, report=request.data))


class ExternalRunFinish(APIView):
    @extend_schema(
        request=ExternalFinishSerializer,
        responses=JobDetailSerializer,
        summary="End an external run: completed, failed or cancelled",
    )
    def post(self, request: Request, job_id: str) -> Response:
        job = job_for_owner(request.user, job_id, action="finish it")
        data = ExternalFinishSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        finished = external_run_finish(
            job=job,
            outcome=data.validated_data["status"],
            message=data.validated_data.get("message", ""),
        )
        return job_response(finished, request.user)


class JobCancel(APIView):
    @extend_schema(request=None, responses=JobDetailSerializer, summary="Cancel a job")
    def post(self, request: Request, job_id: str) -> Response:
        cancelled = job_cancel(job=job_for_owner(request.user, job_id, action="cancel it"))
        return job_response(cancelled, request.user)


class JobResubmit(APIView):
    @extend_schema(
        request=None,
        responses={201: JobDetailSerializer},
        summary="Submit a finished job again with the same inputs",
    )
    def post(self, request: Request, job_id: str) -> Response:
        job = job_for_owner(request.user, job_id, action="resubmit it")
        clone = job_resubmit(job=job, owner=user_of(request))
        return job_response(clone, request.user, status.HTTP_201_CREATED)


class JobStatusDetails(APIView):
    @extend_schema(responses=StatusDetailsSerializer, summary="Status details (seed 004)")
    def get(self, request: Request, job_id: str) -> Response:
        job = job_for_user(request.user, job_id)
        return Response(StatusDetailsSerializer(status_details(job)).data)


class JobQueuePosition(APIView):
    @extend_schema(
        responses=inline_serializer(
            "QueuePosition",
            {
                "status": serializers.CharField(),
                "queue": inline_serializer(
                    "Queue",
                    {
                        "ahead": serializers.IntegerField(),
                        "running": serializers.IntegerField(),
                        "workers": serializers.IntegerField(),
                        "reason": serializers.CharField(),
                    },
                    allow_null=True,
                ),
            },
        ),
        summary="Where a pending job stands in the queue, and why it waits",
    )
    def get(self, request: Request, job_id: str) -> Response:
        job = job_for_user(request.user, job_id)
        return Response({"status": job.status, "queue": queue_position(job)})


class JobStatusLogs(APIView):
    @extend_schema(responses=StatusLogSerializer(many=True))
    def get(self, request: Request, job_id: str) -> Response:
        job = job_for_user(request.user, job_id)
        return Response(StatusLogSerializer(job_status_logs(job), many=True).data)


class LogLineSerializer(serializers.Serializer):
    n = serializers.IntegerField(help_text="The line's number, from 1.")
    at = serializers.DateTimeField()
    level = serializers.ChoiceField(choices=LogLevel.choices)
    text = serializers.CharField()


class JobLogSerializer(serializers.Serializer):
    lines = LogLineSerializer(many=True)
    last = serializers.IntegerField(
        help_text="The number of the last line given (or `after`): ask for the lines after it."
    )
    more = serializers.BooleanField(help_text="More lines are stored after `last` already.")
    finished = serializers.BooleanField(
        help_text="The job has finished: once `more` is false, no line will be added."
    )


class JobLog(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("after", int, description="Only lines numbered above this."),
            OpenApiParameter(
                "limit", int, description=f"At most this many lines (1–{PAGE_LINES}, the default)."
            ),
        ],
        responses=JobLogSerializer,
        summary="The job's log: what its runner did, warnings, training lines, a failure's summary",
    )
    def get(self, request: Request, job_id: str) -> Response:
        job = job_for_user(request.user, job_id)
        after = int_param(request, "after", minimum=0) or 0
        limit = int_param(request, "limit", minimum=1, maximum=PAGE_LINES) or PAGE_LINES
        lines = lines_after(job, after, limit + 1)
        more = len(lines) > limit
        lines = lines[:limit]
        return Response(
            {
                "lines": lines,
                "last": lines[-1]["n"] if lines else after,
                "more": more,
                "finished": job.status in FINISHED,
            }
        )


class JobMetrics(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter(
                "keys", str, description="Comma-separated series names; all when left out."
            ),
            OpenApiParameter("after_step", int, description="Only points after this step."),
            OpenApiParameter(
                "after_seq", int, description="Only points published after this event number."
            ),
            OpenApiParameter(
                "points",
                int,
                description=f"Downsample each series to about this many points (2–{MAX_POINTS}), keeping spikes.",
            ),
            OpenApiParameter(
                "limit",
                int,
                description=f"Without `points`: at most this many whole points a series (1–{MAX_POINTS}, "
                f"default {PAGE_POINTS}); `next_after_step` says where the next page starts.",
            ),
        ],
        responses=MetricsSerializer,
    )
    def get(self, request: Request, job_id: str) -> Response:
        job = job_for_user(request.user, job_id)
        keys = [k for k in request.query_params.get("keys", "").split(",") if k]
        metrics = job_metrics(
            job,
            keys=keys or None,
            after_step=int_param(request, "after_step", minimum=0),
            after_seq=int_param(request, "after_seq", minimum=0),
            until_step=int_param(request, "until_step", minimum=0),
            points=int_param(request, "points", minimum=2, maximum=MAX_POINTS),
            limit=int_param(request, "limit", minimum=1, maximum=MAX_POINTS) or PAGE_POINTS,
        )
        return Response(metrics)
