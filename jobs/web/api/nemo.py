"""NeMo Customizer's API (``/v1/customization/…``) with its JSON shapes, so that the official
``nemo-microservices`` SDK pointed at the hub (``base_url`` and the token in its default
headers) can list the configs (one per base model the caller may fine-tune), create
customization jobs, list, retrieve, read the status and logs of, and cancel them.

How NeMo's references resolve here:

- ``config``: what ``configs.list()`` lists, as ``namespace/name@version``, ``namespace/name``,
  ``name@version`` or ``name``: a base model the hub offers in namespace ``hub``
  (``hub/tiny-llama@v1``, ``Org/Name`` from HUB_MODEL_DIRS) or a Hugging Face model the caller may
  read in its owner's namespace (``alice/<model id>``); each has the one version ``v1`` (listed in
  its ``custom_fields``); an unknown name or version is refused listing the configs there are.
- ``dataset``: ``"namespace/name"``, ``"name"``, ``"hf://datasets/namespace/name"`` (NeMo's
  ``files_url``) or ``{"namespace", "name"}``. The namespace is
  a user name (the hub's namespaces are its users); the name is a dataset id, or a dataset's
  name among those the caller may read in that namespace (newest first when several share
  it). Without a namespace the caller's own datasets are searched first, then those shared
  with them.
- ``output_model``: the name given to the merged model the job produces.
"""

from __future__ import annotations

import math
from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.urls import path
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from hubsite.api.auth import user_of
from jobs.domain.base_models import server_models
from jobs.domain.hyperparameters import CHOICES, Hyperparameters
from jobs.domain.selectors import (
    datasets_visible_to,
    job_for_owner,
    job_for_user,
    jobs_visible_to,
    models_visible_to,
)
from jobs.domain.status import JobStatus
from jobs.models import BASE_POSITION, Dataset, Job, JobKind, MLModel, ModelFormat
from jobs.services.jobs import job_cancel, job_submit_customization
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


def _nemo_hyperparameters(stored: dict[str, Any]) -> dict[str, Any]:
    """The job's hyperparameters in NeMo's shape (its optional values left out when unset)."""
    params = Hyperparameters.from_stored(stored).as_shown()
    if "sft" in params:
        params["sft"] = {k: v for k, v in params["sft"].items() if v is not None}
    return {k: v for k, v in params.items() if v is not None}


def customization_job(job: Job) -> dict[str, Any]:
    """A job as NeMo Customizer's CustomizationJob."""
    base = job.builtin_base_model or next(
        (ji.model.public_id for ji in job.job_inputs.all() if ji.position == BASE_POSITION), ""
    )
    return {
        "id": job.public_id,
        "config": base,
        "dataset": job.dataset.public_id if job.dataset else "",
        "hyperparameters": _nemo_hyperparameters(job.hyperparameters),
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "description": job.name,
        "namespace": job.owner.get_username(),
        "ownership": {"created_by": job.owner.get_username()},
        "output_model": job.target_model.public_id if job.target_model else None,
        "status": job.status,
        "status_details": StatusDetailsSerializer(status_details(job)).data,
    }


def _page(
    request: Request, items: list[Any], total: int, page: int, size: int, sort: str
) -> Response:
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
            "sort": sort,
        }
    )


HF_DATASETS = "hf://datasets/"  # NeMo's files_url of a dataset in its data store


def _reference_name(value: object, field: str) -> tuple[str | None, str]:
    """(namespace or None, name) of a NeMo reference: "ns/name", "name", the data store's
    "hf://datasets/ns/name", or {"namespace", "name"} (or {"files_url"})."""
    if (
        isinstance(value, dict)
        and not value.get("name")
        and isinstance(value.get("files_url"), str)
    ):
        value = value["files_url"]
    if isinstance(value, str) and value.strip().startswith(HF_DATASETS):
        value = value.strip().removeprefix(HF_DATASETS).strip("/")
    if isinstance(value, dict):
        name, namespace = value.get("name"), value.get("namespace")
        if not isinstance(name, str) or not name or not isinstance(namespace, str | None):
            raise ValidationError({field: f"{field} must name a {field}: {{'namespace', 'name'}}."})
        return namespace or None, name
    if not isinstance(value, str) or not value.strip():
        raise ValidationError({field: f"{field} is required: a name, or 'namespace/name'."})
    namespace, _, name = value.strip().rpartition("/")
    return namespace or None, name


def _dataset(user: User, value: object) -> Dataset:
    namespace, name = _reference_name(value, "dataset")
    readable = datasets_visible_to(user)
    by_id = readable.filter(public_id=name).first()
    if by_id is not None and namespace in (None, by_id.owner.get_username()):
        return by_id
    named = readable.filter(name=name).order_by("-created_at")
    if namespace is not None:
        named = named.filter(owner__username=namespace)
    found = named.filter(owner=user).first() or named.first()
    if found is None:
        where = f" in namespace {namespace!r}" if namespace else ""
        raise ValidationError({"dataset": f"No dataset {name!r}{where} that you may use."})
    return found


CONFIG_VERSION = "v1"  # the one version of each config, as listed (NeMo's name@version)
BUILTIN_NAMESPACE = "hub"  # the namespace offered base models are listed in


def _listed_configs(user: User) -> list[tuple[str, str, MLModel | str]]:
    """(namespace, name, what it trains) of every config the user may use, as listed."""
    listed: list[tuple[str, str, MLModel | str]] = [
        (BUILTIN_NAMESPACE, name, name) for name in server_models()
    ]
    for model in models_visible_to(user).filter(format=ModelFormat.HF).select_related("owner"):
        listed.append((model.owner.get_username(), model.public_id, model))
    return listed


def _config(user: User, value: object) -> MLModel | str:
    """A config by what it is listed under: ``namespace/name@version``, ``namespace/name``,
    ``name@version`` or ``name`` (an operator's model may itself be named ``Org/Name``), or
    ``{"namespace", "name"}``; an unknown version or name is refused listing what exists."""
    namespace: str | None = None
    if isinstance(value, dict):
        namespace, value = value.get("namespace") or None, value.get("name")
    if not isinstance(value, str) or not value.strip() or not isinstance(namespace, str | None):
        raise ValidationError(
            {
                "config": "config is required: the name of a base model (GET /v1/customization/configs)."
            }
        )
    text, _, version = value.strip().partition("@")
    listed = _listed_configs(user)
    matches = [
        target
        for ns, name, target in listed
        if (namespace in (None, ns) and text == name)
        or (namespace is None and text == f"{ns}/{name}")
    ]
    known = ", ".join(f"{ns}/{name}@{CONFIG_VERSION}" for ns, name, _ in listed)
    if not matches:
        raise ValidationError({"config": f"No config {value!r}; the configs you may use: {known}."})
    if version and version != CONFIG_VERSION:
        raise ValidationError(
            {
                "config": f"No version {version!r} of config {text!r}: it has version "
                f"{CONFIG_VERSION!r}; the configs you may use: {known}."
            }
        )
    return matches[0]


def _config_entry(
    name: str, metadata: dict[str, Any], description: str, namespace: str
) -> dict[str, Any]:
    context = metadata.get("context_length") or 2048
    gpus = 0
    return {
        "name": name,
        "namespace": namespace,
        "description": description,
        "max_seq_length": min(int(context), 2048),
        "training_options": [
            {
                "training_type": training,
                "finetuning_type": kind,
                "num_gpus": gpus,
                "micro_batch_size": 1,
            }
            for training in CHOICES["training_type"]
            for kind in ("lora", "all_weights")
        ],
        "training_precision": "bf16-mixed"
        if str(metadata.get("dtype", "")).upper().startswith("BF16")
        else "fp32",
        "custom_fields": {
            "architecture": metadata.get("architecture"),
            "parameters": metadata.get("parameters"),
            # NeMo names a config namespace/name@version; this is the version to name.
            "version": CONFIG_VERSION,
        },
    }


class NemoConfigList(APIView):
    schema = None

    def get(self, request: Request) -> Response:
        user = user_of(request)
        entries = [
            _config_entry(m.name, m.metadata, m.description, BUILTIN_NAMESPACE)
            for m in server_models().values()
        ]
        for model in models_visible_to(user).filter(format=ModelFormat.HF).select_related("owner"):
            entries.append(
                _config_entry(
                    model.public_id, model.metadata, model.name, model.owner.get_username()
                )
            )
        page = int_param(request, "page", minimum=1, maximum=10**9) or 1
        size = int_param(request, "page_size", minimum=1, maximum=MAX_PAGE_SIZE) or 10
        return _page(
            request, entries[(page - 1) * size : page * size], len(entries), page, size, "name"
        )


class NemoJobList(APIView):
    schema = None  # documented by NVIDIA, not in the hub's own schema

    def post(self, request: Request) -> Response:
        """customization.jobs.create: config, dataset, hyperparameters (NeMo's names). Refusals
        are 422, as NeMo Customizer answers them (the SDK raises UnprocessableEntityError)."""
        try:
            return self._create(request)
        except ValidationError as error:
            errors = error.message_dict if hasattr(error, "error_dict") else {"": error.messages}
            field, messages = next(iter(errors.items()))
            body = {"message": messages[0], "field": field or None, "errors": errors}
            return Response({**body, "detail": messages[0]}, status=422)

    def _create(self, request: Request) -> Response:
        user = user_of(request)
        body = request.data if isinstance(request.data, dict) else {}
        hyperparameters = body.get("hyperparameters")
        if not isinstance(hyperparameters, dict) or "finetuning_type" not in hyperparameters:
            raise ValidationError(
                {
                    "hyperparameters": "hyperparameters with a finetuning_type ('lora' or 'all_weights') are required."
                }
            )
        unsupported = sorted(set(body) & {"integrations", "wandb-api-key", "dataset_parameters"})
        if unsupported:
            raise ValidationError(
                {
                    unsupported[
                        0
                    ]: f"{unsupported[0]} is a NeMo Customizer option this hub does not support; leave it out."
                }
            )
        job = job_submit_customization(
            owner=user,
            dataset=_dataset(user, body.get("dataset")),
            base_model=_config(user, body.get("config")),
            hyperparameters=hyperparameters,
            name=str(body.get("name") or body.get("description") or body.get("output_model") or "")
            or None,
        )
        return Response(customization_job(job))

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
        return _page(
            request, items, total, page, size, "created_at" if ascending else "-created_at"
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
        job_for_owner(request.user, job_id, action="cancel it")
        return Response(customization_job(job_cancel(job=job)))


class NemoJobLogs(APIView):
    """customization.jobs.container_logs: the job's status log and, once stored, its training
    log, as NeMo's JobLogs."""

    schema = None

    def get(self, request: Request, job_id: str) -> Response:
        job = _customization(request, job_id)
        entries: dict[str, Any] = {
            "status": {
                "object": "status_log",
                "events": [
                    {
                        "type": log.status,
                        "reason": log.status,
                        "message": log.message,
                        "first_seen": int(log.updated_at.timestamp()),
                        "last_seen": int(log.updated_at.timestamp()),
                        "count": "1",
                    }
                    for log in job.status_logs.all()
                ],
                "status": {"status": job.status},
            }
        }
        training_log = job.artifacts.filter(name="training_log.txt").first()
        if training_log is not None:
            with training_log.file.open("rb") as handle:
                lines = handle.read().decode(errors="replace").splitlines()
            entries["training"] = {"object": "log", "logs": {"lines": lines}}
        return Response({"entries": entries})


urlpatterns = [
    path("configs", NemoConfigList.as_view(), name="nemo-configs"),
    path("jobs", NemoJobList.as_view(), name="nemo-jobs"),
    path("jobs/<slug:job_id>/container-logs", NemoJobLogs.as_view(), name="nemo-job-logs"),
    path("jobs/<slug:job_id>", NemoJobDetail.as_view(), name="nemo-job"),
    path("jobs/<slug:job_id>/status", NemoJobStatus.as_view(), name="nemo-job-status"),
    path("jobs/<slug:job_id>/cancel", NemoJobCancel.as_view(), name="nemo-job-cancel"),
]
