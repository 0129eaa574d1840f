"""Jobs as seed 000's client submits and reads them, through the hub's own services: compile,
profile and inference on the hub's devices, link jobs read (the client's own ``submit_link_job``
takes only Qualcomm DLC models, which the hub does not make), names, summaries, results, the
compiled model and the job's log."""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet
from django.http import Http404, HttpResponse
from django.urls import reverse
from qai_hub import public_api_pb2 as pb
from rest_framework.exceptions import ValidationError as BadRequest
from rest_framework.request import Request

from aihub import transfers
from aihub.views.account import best_first, matching, offered, onnxruntime_version
from aihub.views.assets import download_answer, model_or_reserved
from aihub.views.base import AiHubView, absolute, hub_version, parse, proto
from aihub.wire import (
    AIHUB_KINDS,
    job_pb,
    job_result_pb,
    job_summary_pb,
    specs_of,
    stamp,
)
from hubsite.api.auth import user_of
from jobs.domain.selectors import (
    dataset_for_user,
    job_for_owner,
    job_for_user,
    jobs_visible_to,
    models_visible_to,
)
from jobs.domain.status import JobStatus
from jobs.models import Dataset, Device, Job, JobKind, MLModel
from jobs.services.device_jobs import (
    job_submit_compile,
    job_submit_inference,
    job_submit_profile,
)
from jobs.services.followers import job_submit_after
from jobs.services.jobs import job_rename, job_submit_link
from jobs.web.api.params import int_param

MAX_PAGE = 1000
S = pb.JobState
WORKING = [JobStatus.RUNNING, JobStatus.COMPLETED, JobStatus.CANCELLING, JobStatus.UNKNOWN]
PROFILING = Q(kind=JobKind.PROFILE) | Q(kind=JobKind.INFERENCE, hyperparameters__profile=True)
# The jobs in each of the client's states (aihub.wire.client_state, as a query).
IN_STATE: dict[pb.JobState.ValueType, Q] = {
    S.JOB_STATE_DONE: Q(status=JobStatus.READY),
    S.JOB_STATE_FAILED: Q(status__in=[JobStatus.FAILED, JobStatus.CANCELLED]),
    S.JOB_STATE_CREATED: Q(status=JobStatus.CREATED)
    | Q(status=JobStatus.PENDING, kind__in=[JobKind.COMPILE, JobKind.LINK]),
    S.JOB_STATE_PROVISIONING_DEVICE: Q(
        status=JobStatus.PENDING, kind__in=[JobKind.PROFILE, JobKind.INFERENCE]
    ),
    S.JOB_STATE_OPTIMIZING_MODEL: Q(status__in=WORKING, kind=JobKind.COMPILE),
    S.JOB_STATE_LINKING_MODELS: Q(status__in=WORKING, kind=JobKind.LINK),
    S.JOB_STATE_MEASURING_PERFORMANCE: Q(status__in=WORKING) & PROFILING,
    S.JOB_STATE_RUNNING_INFERENCE: Q(status__in=WORKING, kind=JobKind.INFERENCE) & ~PROFILING,
}
OF_TYPE: dict[str, Q] = {
    "compile": Q(kind=JobKind.COMPILE),
    "link": Q(kind=JobKind.LINK),
    # The client has one type for both since 0.56 (ProfileJob is InferenceJob).
    "inference": Q(kind__in=[JobKind.INFERENCE, JobKind.PROFILE]),
    "profile": PROFILING,
    "quantize": Q(pk__in=[]),  # the hub makes none
}


def _aihub_job(request: Request, job_id: str, owner_action: str = "") -> Job:
    job = (
        job_for_owner(request.user, job_id, action=owner_action)
        if owner_action
        else job_for_user(request.user, job_id)
    )
    if job.kind not in AIHUB_KINDS:
        raise BadRequest(
            f"Job {job_id} is a {job.get_kind_display().lower()} job, which qai-hub has no type "
            f"for: read it on its page ({job.url}) or with the hub's own client (hubclient)."
        )
    return job


def _with_everything(jobs: QuerySet[Job]) -> QuerySet[Job]:
    return jobs.select_related(
        "owner", "device", "ran_device", "target_model", "dataset__owner", "waits_for__owner"
    ).prefetch_related("job_inputs__model__owner", "job_inputs__model__produced_by")


def _listed(request: Request) -> tuple[QuerySet[Job], int, int]:
    """The asker's jobs (own and shared) of the kinds the client knows, filtered as it asks:
    ``creator`` (an email address or user name), ``state`` (its state numbers, comma-separated),
    ``type``; newest first."""
    offset = int_param(request, "offset", minimum=0) or 0
    asked = int_param(request, "limit", minimum=0)
    limit = min(50 if asked is None else asked, MAX_PAGE)  # more than a page: a page
    jobs = jobs_visible_to(request.user).filter(kind__in=AIHUB_KINDS)
    if creator := request.query_params.get("creator", "").strip():
        jobs = jobs.filter(Q(owner__email__iexact=creator) | Q(owner__username__iexact=creator))
    if states := request.query_params.get("state", "").strip():
        wanted = Q(pk__in=[])
        for part in states.split(","):
            if not part.strip().isdigit() or int(part) not in S.values():
                known = ", ".join(f"{name} ({int(value)})" for name, value in S.items())
                raise BadRequest(f"state {part.strip()!r} is not a job state: {known}.")
            # A state of the client's that the hub never gives (QUANTIZING_MODEL): no job.
            wanted |= IN_STATE.get(pb.JobState.ValueType(int(part)), Q(pk__in=[]))
        jobs = jobs.filter(wanted)
    if kind := request.query_params.get("type", "").strip():
        if kind not in OF_TYPE:
            raise BadRequest(f"type {kind!r} is not one of {', '.join(OF_TYPE)}.")
        jobs = jobs.filter(OF_TYPE[kind])
    return jobs.order_by("-created_at", "-id"), offset, limit


def _model(request: Request, model_id: str, field: str) -> MLModel | Job:
    """The model, or the job that is making it (its target model's id was given out at
    submit): a job on it then waits for that job (jobs.services.followers)."""
    if not model_id:
        raise BadRequest(f"{field}: name a model (its model_id).")
    found = models_visible_to(request.user).filter(public_id=model_id).first()
    if found is not None:
        return found
    model_or_reserved(request, model_id)  # 404 unless a job is still making it; 400 if it failed
    making = jobs_visible_to(request.user).filter(target_public_id=model_id).get()
    made = making.target_model_id
    if making.status == JobStatus.READY and made is not None:  # made since: the model itself
        model = models_visible_to(request.user).filter(pk=made).first()
        if model is not None:
            return model
    return making


def _one_model(request: Request, model_id: str, field: str) -> MLModel:
    model = _model(request, model_id, field)
    if isinstance(model, Job):
        raise BadRequest(
            f"Model {model_id} is the target model of job {model.public_id}, which has not "
            "finished: a link job takes models that exist; wait for the job (job.wait())."
        )
    return model


def _device(asked: pb.Device) -> Device:
    """The hub's device the client's Device names (the client picked it from get_devices)."""
    found = matching(asked.name, asked.os, list(asked.attributes))
    if not found:
        shown = asked.name or ", ".join(asked.attributes) or "any device"
        raise BadRequest(
            f"This hub has no device {shown!r}{f' with os {asked.os!r}' if asked.os else ''}. "
            f"Its devices run ONNX models with ONNX Runtime: {offered()}."
        )
    found.sort(key=best_first)
    return found[0]


def _dataset(request: Request, dataset_id: str) -> Dataset | None:
    return dataset_for_user(request.user, dataset_id) if dataset_id else None


def _submit(request: Request, job: pb.Job) -> Job:
    which = job.WhichOneof("job")
    owner: Any = request.user
    if which == "compile_job":
        asked = job.compile_job
        devices = list(asked.devices.devices) or (
            [asked.device] if asked.HasField("device") else []
        )
        if not devices:
            raise BadRequest("A compile job names its device.")
        # Several (seed 000's single_compile): one model for them all. The hub's compiled model
        # is an ONNX model that any of its devices runs; it is made and checked on the first.
        compiled: dict[str, Any] = {
            "owner": owner,
            "device": _device(devices[0]),
            "name": asked.name or None,
            "input_specs": specs_of(asked.tensor_type_list) or None,
            "options": asked.options,
            "calibration_data": _dataset(request, asked.calibration_dataset.dataset_id),
        }
        source = _model(request, asked.model.model_id, "model")
        if isinstance(source, Job):
            return job_submit_after(kind=JobKind.COMPILE, upstream=source, **compiled)
        return job_submit_compile(model=source, **compiled)
    if which in ("inference_job", "profile_job"):
        asked_run: Any = job.inference_job if which == "inference_job" else job.profile_job
        model = _model(request, asked_run.model.model_id, "model")
        run: dict[str, Any] = {
            "owner": owner,
            "device": _device(asked_run.device),
            "name": asked_run.name or None,
            "options": asked_run.options,
        }
        inputs = _dataset(request, asked_run.dataset.dataset_id)
        if inputs is None:  # random inputs: a profile
            if isinstance(model, Job):
                return job_submit_after(kind=JobKind.PROFILE, upstream=model, **run)
            return job_submit_profile(model=model, **run)
        run.update(inputs=inputs, profile=which == "profile_job" or asked_run.is_profiling_on)
        if isinstance(model, Job):
            return job_submit_after(kind=JobKind.INFERENCE, upstream=model, **run)
        return job_submit_inference(model=model, **run)
    if which == "link_job":
        asked_link = job.link_job
        models = [_one_model(request, m.model_id, "models") for m in asked_link.models.models]
        return job_submit_link(owner=owner, models=models, name=asked_link.name or None)
    if which == "quantize_job":
        raise BadRequest(
            "The hub runs no quantize jobs: a compile job quantizes, with ONNX Runtime "
            "(options '--quantize_full_type int8' with calibration_data, or "
            "'--quantize_full_type float16')."
        )
    raise BadRequest("The body names no job (compile_job, inference_job or link_job).")


class Jobs(AiHubView):
    def get(self, request: Request) -> HttpResponse:
        jobs, offset, limit = _listed(request)
        page = _with_everything(jobs)[offset : offset + limit]
        reader, version = self.person(request), hub_version()
        return proto(
            pb.JobList(
                jobs=[job_pb(j, reader, version) for j in page], total_query_count=jobs.count()
            )
        )

    def post(self, request: Request) -> HttpResponse:
        job = _submit(request, parse(request, pb.Job))
        return proto(pb.CreateUpdateResponse(id=job.public_id, creation_time=stamp(job.created_at)))


class JobSummaries(AiHubView):
    def get(self, request: Request) -> HttpResponse:
        jobs, offset, limit = _listed(request)
        page = jobs.select_related("owner", "device", "ran_device")[offset : offset + limit]
        return proto(
            pb.JobSummaryList(
                job_summaries=[job_summary_pb(j) for j in page], total_query_count=jobs.count()
            )
        )


class JobDetail(AiHubView):
    def get(self, request: Request, job_id: str) -> HttpResponse:
        _aihub_job(request, job_id)
        job = _with_everything(Job.objects.filter(public_id=job_id)).get()
        return proto(job_pb(job, self.person(request), hub_version()))

    def patch(self, request: Request, job_id: str) -> HttpResponse:
        job = _aihub_job(request, job_id, owner_action="rename it")
        update = parse(request, pb.JobPublicUpdate)
        if not update.HasField("name"):
            raise BadRequest("Only a job's name changes here (JobPublicUpdate.name).")
        job_rename(job=job, name=update.name)
        return proto(pb.CreateUpdateResponse(id=job.public_id, creation_time=stamp(job.created_at)))


class JobResult(AiHubView):
    def get(self, request: Request, job_id: str) -> HttpResponse:
        job = _aihub_job(request, job_id)
        return proto(job_result_pb(job, onnxruntime_version()))


class CompiledModel(AiHubView):
    def get(self, request: Request, job_id: str) -> HttpResponse:
        job = _aihub_job(request, job_id)
        model = job.target_model
        if model is None or job.status != JobStatus.READY:
            raise BadRequest(f"Job {job_id} has no target model ({job.get_status_display()}).")
        if not models_visible_to(request.user).filter(pk=model.pk).exists():
            raise Http404(f"No model {model.public_id} that you may read.")
        return download_answer(
            request, "model", model.public_id, model.file.name.rsplit("/", 1)[-1]
        )


class Artifacts(AiHubView):
    """The job's files of a type: its log (HUB_LOG); the hub keeps no other device log."""

    def get(self, request: Request, job_id: str, attempt: str, artifact_type: str) -> HttpResponse:
        job = _aihub_job(request, job_id)
        if attempt != "latest" and not attempt.isdigit():
            raise BadRequest(f"{attempt!r} is not an attempt: a number, or 'latest'.")
        if not artifact_type.isdigit():
            raise BadRequest(
                f"{artifact_type!r} is not an artifact type (a JobArtifactType number)."
            )
        found: list[pb.NamedArtifactDownloadURL] = []
        if int(artifact_type) == pb.JOB_ARTIFACT_TYPE_HUB_LOG:
            token = transfers.download_token("log", job.public_id, user_of(request).pk)
            url = absolute(request, reverse("aihub-file", args=[token]))
            found.append(pb.NamedArtifactDownloadURL(url=url, filename=f"{job.public_id}.log"))
        return proto(pb.NamedArtifactDownloadURLList(artifacts=found))
