"""The hub's people, devices, models, datasets and jobs as seed 000's messages (the generated
classes of ``qai-hub``, pinned: its ``public_api_pb2``), for one reader.

How the hub's kinds read to the client:

- compile → ``CompileJob``; link → ``LinkJob``; profile → ``InferenceJob`` with profiling on and
  no inputs (the client has no other profile type since 0.56); inference → ``InferenceJob``
  (profiling on when it also profiles). Fine-tuning and external runs have no type in the client:
  they are not listed here, and reading one is refused naming where to read it.
- Statuses: created and (for compile and link) pending are CREATED; pending on a device is
  PROVISIONING_DEVICE; running, and the hub's checks after it, are the kind's working state
  (OPTIMIZING_MODEL, MEASURING_PERFORMANCE, RUNNING_INFERENCE, LINKING_MODELS); ready is DONE;
  failed and cancelled are FAILED with the hub's words. Only states the client's progress bar
  lists for the kind are used (it indexes that list).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from django.contrib.auth.models import User
from google.protobuf.timestamp_pb2 import Timestamp
from qai_hub import public_api_pb2 as pb

from jobs.domain.selectors import readable_producer_ids
from jobs.domain.status import FailureType, JobStatus
from jobs.models import Artifact, Dataset, Device, Job, JobKind, MLModel, ModelFormat

AIHUB_KINDS = frozenset({JobKind.COMPILE, JobKind.PROFILE, JobKind.INFERENCE, JobKind.LINK})
S = pb.JobState
CLIENT_DTYPES = {
    "float32": pb.TENSOR_DTYPE_FLOAT32, "float16": pb.TENSOR_DTYPE_FLOAT16,
    "int32": pb.TENSOR_DTYPE_INT32, "int64": pb.TENSOR_DTYPE_INT64, "int8": pb.TENSOR_DTYPE_INT8,
    "uint8": pb.TENSOR_DTYPE_UINT8, "int16": pb.TENSOR_DTYPE_INT16,
    "uint16": pb.TENSOR_DTYPE_UINT16, "bool": pb.TENSOR_DTYPE_BOOL,
}  # fmt: skip
DTYPE_NAMES = {value: name for name, value in CLIENT_DTYPES.items()}
FAILURE_TYPES = {
    FailureType.INVALID_MODEL: pb.JOB_FAILURE_TYPE_MODEL_INVALID,
    FailureType.INVALID_DATASET: pb.JOB_FAILURE_TYPE_INVALID_INPUTS,
    FailureType.INVALID_PARAMETERS: pb.JOB_FAILURE_TYPE_INVALID_ARGUMENT,
    FailureType.INPUT_UNAVAILABLE: pb.JOB_FAILURE_TYPE_INVALID_INPUTS,
    FailureType.TIME_LIMIT: pb.JOB_FAILURE_TYPE_RUNTIME_TIMEOUT,
    FailureType.WORKER_LOST: pb.JOB_FAILURE_TYPE_RUNTIME_CRASH,
    FailureType.STORAGE_FULL: pb.JOB_FAILURE_TYPE_RUNTIME_OUT_OF_DISK,
}
CANCELLED = "The job was cancelled by its owner."
VERSION = re.compile(r"\d+(?:\.\d+)+|\d+")  # the first version in "Linux-6.1.0-18-amd64"


def stamp(when: datetime | None) -> Timestamp:
    value = Timestamp()
    if when is not None:
        value.FromDatetime(when)
    return value


def user_pb(user: User) -> pb.User:
    return pb.User(
        id=user.pk, first_name=user.first_name, last_name=user.last_name, email=user.email
    )


# Devices


def device_os(device: Device) -> str:
    """The OS version the client filters on: the kernel release's version ("6.1.0")."""
    found = VERSION.search(str(device.specs.get("os_release", "")))
    return found.group(0) if found else ""


def device_pb(device: Device | None) -> pb.Device:
    if device is None:
        return pb.Device()
    cpu, cores = device.specs.get("cpu", ""), device.specs.get("cores")
    return pb.Device(
        name=device.name,
        os=device_os(device),
        attributes=list(device.attributes),
        soc_description=f"{cpu} ({cores} cores)" if cpu and cores else str(cpu),
    )


# Tensors


def tensor_list(specs: dict[str, Any] | None) -> pb.NamedTensorTypeList | None:
    """``{name: {"shape", "dtype"}}`` as the client's list, a dynamic dimension as -1; None when
    a dtype is one the client cannot read (it raises on those), so the field is left out."""
    types = []
    for name, spec in (specs or {}).items():
        dtype = CLIENT_DTYPES.get(str(spec.get("dtype")))
        if dtype is None:
            return None
        shape = [d if isinstance(d, int) and d > 0 else -1 for d in spec.get("shape", [])]
        types.append(
            pb.NamedTensorType(name=name, tensor_type=pb.TensorType(shape=shape, dtype=dtype))
        )
    return pb.NamedTensorTypeList(types=types)


def specs_of(types: pb.NamedTensorTypeList) -> dict[str, Any]:
    """The client's input specs as a job's ``input_specs``: ``{name: (shape, dtype)}``."""
    specs: dict[str, Any] = {}
    for named in types.types:
        dtype = DTYPE_NAMES.get(named.tensor_type.dtype, "float32")
        specs[named.name] = ([int(d) for d in named.tensor_type.shape], dtype)
    return specs


# Models and datasets


def model_type(model: MLModel) -> pb.ModelType.ValueType:
    return pb.MODEL_TYPE_ONNX if model.format == ModelFormat.ONNX else pb.MODEL_TYPE_UNSPECIFIED


def readable_producers(reader: User, models: list[MLModel]) -> set[int]:
    """The jobs among those that made ``models`` that ``reader`` may read, in one query: the
    id of a job the reader may not read is not shown (it is another person's)."""
    readable = readable_producer_ids(reader, models)
    if not readable:
        return set()
    # Only jobs the client has a type for: it reads the producer of a model it downloads, and a
    # fine-tuning job would be refused to it.
    typed = Job.objects.filter(pk__in=readable, kind__in=AIHUB_KINDS)
    return set(typed.values_list("pk", flat=True))


def model_pb(model: MLModel, reader: User, readable: set[int] | None = None) -> pb.Model:
    """``readable``: jobs the reader may read among the producers (``readable_producers``);
    computed for this one model when not given."""
    mine = model.owner_id == reader.pk
    message = pb.Model(
        model_id=model.public_id,
        owner=user_pb(model.owner),
        name=model.name,
        creation_time=stamp(model.created_at),
        model_type=model_type(model),
        file_upload_complete=True,
        read_only=not mine,
        is_directory=model.file.name.endswith(".zip"),
        hidden=False,
        actor_authorization=pb.ModelAuthorization(
            permissions=[pb.MODEL_CAN_VIEW] + ([pb.MODEL_CAN_UPDATE] if mine else [])
        ),
    )
    if model.produced_by_id is not None and model.produced_by is not None:
        if readable is None:
            readable = readable_producers(reader, [model])
        if model.produced_by_id in readable:
            message.producer_id = model.produced_by.public_id
    for field, key in (("input_spec", "input_specs"), ("output_spec", "output_specs")):
        if (types := tensor_list(model.metadata.get(key))) is not None:
            getattr(message, field).CopyFrom(types)
    return message


def reserved_model_pb(job: Job, reader: User) -> pb.Model:
    """The target model of a job that has not made it yet, under the id given out at submit:
    the client waits on its producer before it reads more of it."""
    mine = job.owner_id == reader.pk
    return pb.Model(
        model_id=job.target_public_id,
        owner=user_pb(job.owner),
        name=job.name,
        creation_time=stamp(job.created_at),
        model_type=pb.MODEL_TYPE_ONNX,
        file_upload_complete=False,
        producer_id=job.public_id,
        read_only=not mine,
        actor_authorization=pb.ModelAuthorization(
            permissions=[pb.MODEL_CAN_VIEW] + ([pb.MODEL_CAN_UPDATE] if mine else [])
        ),
    )


def dataset_pb(dataset: Dataset, reader: User) -> pb.Dataset:
    mine = dataset.owner_id == reader.pk
    return pb.Dataset(
        dataset_id=dataset.public_id,
        owner=user_pb(dataset.owner),
        name=dataset.name,
        creation_time=stamp(dataset.created_at),
        file_upload_complete=True,
        read_only=not mine,
        permanent=True,  # the hub keeps a dataset until its owner deletes it
        actor_authorization=pb.DatasetAuthorization(
            permissions=[pb.DATASET_CAN_VIEW] + ([pb.DATASET_CAN_UPDATE] if mine else [])
        ),
    )


# Jobs


def profiles(job: Job) -> bool:
    return job.kind == JobKind.PROFILE or (
        job.kind == JobKind.INFERENCE and bool(job.hyperparameters.get("profile"))
    )


WORKING = {
    JobKind.COMPILE: S.JOB_STATE_OPTIMIZING_MODEL,
    JobKind.LINK: S.JOB_STATE_LINKING_MODELS,
    JobKind.PROFILE: S.JOB_STATE_MEASURING_PERFORMANCE,
}


def client_state(job: Job) -> tuple[int, str | None]:
    """The client's state of the job, and the failure's words when it failed."""
    if job.status == JobStatus.READY:
        return S.JOB_STATE_DONE, None
    if job.status == JobStatus.FAILED:
        return S.JOB_STATE_FAILED, job.failure_message or "The job failed."
    if job.status == JobStatus.CANCELLED:
        return S.JOB_STATE_FAILED, CANCELLED
    on_device = job.kind in (JobKind.PROFILE, JobKind.INFERENCE)
    if job.status == JobStatus.CREATED or (job.status == JobStatus.PENDING and not on_device):
        return S.JOB_STATE_CREATED, None
    if job.status == JobStatus.PENDING:
        return S.JOB_STATE_PROVISIONING_DEVICE, None
    if job.kind == JobKind.INFERENCE:
        working = S.JOB_STATE_MEASURING_PERFORMANCE if profiles(job) else None
        return working or S.JOB_STATE_RUNNING_INFERENCE, None
    return WORKING[JobKind(job.kind)], None


def _first_model(job: Job) -> MLModel | None:
    first = next(iter(job.job_inputs.all()), None)  # prefetched, in position order
    return first.model if first else None


def _awaited_model(job: Job, reader: User) -> pb.Model | None:
    """The model a job waits for (jobs.services.followers), under the id it will have."""
    upstream = job.waits_for
    if upstream is None or not upstream.target_public_id:
        return None
    return reserved_model_pb(upstream, reader)


def _models_pb(job: Job, reader: User) -> list[pb.Model]:
    models = [ji.model for ji in job.job_inputs.all()]
    readable = readable_producers(reader, models)
    return [model_pb(model, reader, readable) for model in models]


def _target(job: Job, reader: User) -> pb.Model | None:
    if job.target_model is not None and job.status == JobStatus.READY:
        return model_pb(job.target_model, reader, {job.pk})  # made by this job, which they read
    if job.target_public_id and job.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
        return reserved_model_pb(job, reader)
    return None


def _times(job: Job) -> dict[str, Timestamp]:
    return {
        "creation_time": stamp(job.created_at),
        "queued_time": stamp(job.queued_at),
        "start_time": stamp(job.started_at),
        "completion_time": stamp(job.finished_at),
        "last_updated_time": stamp(job.updated_at),
    }


def _device_of(job: Job) -> Device | None:
    return job.ran_device or job.device


def _execution(job: Job) -> dict[str, Any]:
    """The profile figures of a job that profiled: median time (µs) and peak memory (bytes)."""
    summary = (job.summary or {}).get("execution_summary") or {}
    found: dict[str, Any] = {}
    if isinstance(summary.get("estimated_inference_time"), int | float):
        found["execution_time"] = int(summary["estimated_inference_time"])
    peak = summary.get("estimated_inference_peak_memory")
    if isinstance(peak, int | float):
        found["execution_peak_memory"] = pb.Range(lower=int(peak), upper=int(peak))
    return found


def job_pb(job: Job, reader: User, hub_version: str) -> pb.Job:
    """Callers prefetch ``job_inputs__model__owner`` and select ``owner``, devices, the target
    model and the dataset."""
    state, reason = client_state(job)
    mine = job.owner_id == reader.pk
    common: dict[str, Any] = {
        "user": user_pb(job.owner),
        "user_id": job.owner_id,
        "job_state": state,
        "name": job.name,
        "options": str(job.hyperparameters.get("options", "")),
        **_times(job),
    }
    if reason is not None:
        common["failure_reason"] = reason
    outer = pb.Job(
        hub_version=hub_version,
        read_only=not mine,
        failure_type=_failure_type(job),
        available_artifacts=[pb.JOB_ARTIFACT_TYPE_HUB_LOG],
        actor_authorization=pb.JobAuthorization(
            permissions=[pb.JOB_CAN_VIEW] + ([pb.JOB_CAN_UPDATE] if mine else [])
        ),
    )
    target = _target(job, reader)
    device = device_pb(_device_of(job))
    if job.kind == JobKind.COMPILE:
        model = _first_model(job)
        compile_job = pb.CompileJob(
            compile_job_id=job.public_id,
            device=device,
            devices=pb.DeviceList(devices=[device], total_query_count=1),
            **common,
        )
        if model is not None:
            compile_job.model.CopyFrom(model_pb(model, reader))
        elif (awaited := _awaited_model(job, reader)) is not None:
            compile_job.model.CopyFrom(awaited)
        asked = {
            name: {"shape": spec["shape"], "dtype": spec["dtype"]}
            for name, spec in (job.hyperparameters.get("input_specs") or {}).items()
        }
        if (types := tensor_list(asked)) is not None:
            compile_job.tensor_type_list.CopyFrom(types)
        if target is not None:
            compile_job.target_model.CopyFrom(target)
            made = job.target_model.metadata if job.target_model else {}
            if (
                job.status == JobStatus.READY
                and (types := tensor_list(made.get("input_specs"))) is not None
            ):
                compile_job.target_tensor_type_list.CopyFrom(types)
        if job.dataset is not None:
            compile_job.calibration_dataset.CopyFrom(dataset_pb(job.dataset, reader))
        outer.compile_job.CopyFrom(compile_job)
    elif job.kind == JobKind.LINK:
        link_job = pb.LinkJob(link_job_id=job.public_id, device=device, **common)
        models = _models_pb(job, reader)
        link_job.models.CopyFrom(pb.ModelList(models=models, total_query_count=len(models)))
        if target is not None:
            link_job.target_model.CopyFrom(target)
        outer.link_job.CopyFrom(link_job)
    else:
        inference = pb.InferenceJob(
            inference_job_id=job.public_id,
            device=device,
            is_profiling_on=profiles(job),
            **common,
            **_execution(job),
        )
        model = _first_model(job)
        if model is not None:
            inference.model.CopyFrom(model_pb(model, reader))
            if (types := tensor_list(model.metadata.get("input_specs"))) is not None:
                inference.tensor_type_list.CopyFrom(types)
        elif (awaited := _awaited_model(job, reader)) is not None:
            inference.model.CopyFrom(awaited)
        if job.dataset is not None:
            inference.dataset.CopyFrom(dataset_pb(job.dataset, reader))
        outer.inference_job.CopyFrom(inference)
    return outer


def _failure_type(job: Job) -> pb.JobFailureType.ValueType:
    if job.status == JobStatus.READY:
        return pb.JOB_FAILURE_TYPE_SUCCESS
    if job.status == JobStatus.CANCELLED:
        return pb.JOB_FAILURE_TYPE_UNKNOWN
    if job.status != JobStatus.FAILED:
        return pb.JOB_FAILURE_TYPE_UNSPECIFIED
    return FAILURE_TYPES.get(FailureType(job.failure_type), pb.JOB_FAILURE_TYPE_INTERNAL_UNKNOWN)


def job_summary_pb(job: Job) -> pb.JobSummary:
    state, _ = client_state(job)
    device = _device_of(job)
    common: dict[str, Any] = {
        "job_id": job.public_id,
        "user": user_pb(job.owner),
        "name": job.name,
        "job_state": state,
        **_times(job),
    }
    if job.kind != JobKind.LINK:
        common["device_name"] = device.name if device else ""
        common["device_os_version"] = device_os(device) if device else ""
    if job.kind == JobKind.COMPILE:
        return pb.JobSummary(
            compile_job_summary=pb.CompileJobSummary(target_model_type=pb.MODEL_TYPE_ONNX, **common)
        )
    if job.kind == JobKind.LINK:
        return pb.JobSummary(
            link_job_summary=pb.LinkJobSummary(target_model_type=pb.MODEL_TYPE_ONNX, **common)
        )
    return pb.JobSummary(
        inference_job_summary=pb.InferenceJobSummary(
            is_profiling_on=profiles(job), **common, **_execution(job)
        )
    )


# Results


def _range(value: Any) -> pb.Range:
    number = int(value) if isinstance(value, int | float) else 0
    return pb.Range(lower=number, upper=number)


def profile_detail(profile: dict[str, Any], onnxruntime: str) -> pb.ProfileDetail:
    """profile.json (seed 000's execution_summary and execution_detail, as the profile runner
    writes it) as the client's ProfileDetail, format 1.2: the client turns it back into the same
    dict for ``download_profile()``."""
    summary = profile.get("execution_summary") or {}

    def number(key: str) -> int:
        value = summary.get(key)
        return int(value) if isinstance(value, int | float) else 0

    def numbers(key: str) -> list[int]:
        return [int(v) for v in summary.get(key) or [] if isinstance(v, int | float)]

    layers = []
    for layer in profile.get("execution_detail") or []:
        unit = str(layer.get("compute_unit", "CPU")).upper()
        detail = pb.LayerDetail(
            name=str(layer.get("name", "")),
            layer_type_name=str(layer.get("type", "")),
            compute_unit=getattr(pb, f"COMPUTE_UNIT_{unit}", pb.COMPUTE_UNIT_CPU),
        )
        if isinstance(layer.get("execution_time"), int | float):
            detail.execution_time = int(layer["execution_time"])
        layers.append(detail)
    memory = pb.ProfileDetail.MemoryUsage
    return pb.ProfileDetail(
        major_version=1,
        minor_version=2,
        execution_time=number("estimated_inference_time"),
        peak_memory_usage=number("estimated_inference_peak_memory"),
        after_execution_peak_memory=number("estimated_inference_peak_memory"),
        cold_load_time=number("first_load_time"),
        after_cold_load_peak_memory=number("first_load_peak_memory"),
        warm_load_time=number("warm_load_time"),
        after_warm_load_peak_memory=number("warm_load_peak_memory"),
        cold_load_memory=memory(peak=_range(summary.get("first_load_peak_memory"))),
        warm_load_memory=memory(peak=_range(summary.get("warm_load_peak_memory"))),
        execution_memory=memory(peak=_range(summary.get("estimated_inference_peak_memory"))),
        all_cold_load_times=numbers("all_first_load_times"),
        all_warm_load_times=numbers("all_warm_load_times"),
        all_execution_times=numbers("all_inference_times"),
        layer_details=layers,
        tool_versions=[pb.ToolVersion(name="ONNX Runtime", version=onnxruntime)],
    )


def stored_profile(job: Job) -> dict[str, Any] | None:
    artifact = Artifact.objects.filter(job=job, name="profile.json").first()
    if artifact is None:
        return None
    try:
        with artifact.file.open("rb") as handle:
            loaded = json.load(handle)
    except (OSError, ValueError):
        return None
    return loaded if isinstance(loaded, dict) else None


def job_result_pb(job: Job, onnxruntime: str) -> pb.JobResult:
    tools = [pb.ToolVersion(name="ONNX Runtime", version=onnxruntime)]
    if job.kind == JobKind.COMPILE:
        return pb.JobResult(
            compile_job_result=pb.CompileJobResult(
                compile_job_id=job.public_id, compile_detail=pb.CompileDetail(tool_versions=tools)
            )
        )
    if job.kind == JobKind.LINK:
        return pb.JobResult(
            link_job_result=pb.LinkJobResult(
                link_job_id=job.public_id, link_detail=pb.LinkDetail(tool_versions=tools)
            )
        )
    result = pb.InferenceJobResult(inference_job_id=job.public_id)
    made = job.produced_datasets.filter(deleted_at__isnull=True).first()
    if made is not None:
        result.output_dataset_id = made.public_id
    if job.status == JobStatus.READY and (profile := stored_profile(job)) is not None:
        result.detail.CopyFrom(profile_detail(profile, onnxruntime))
    return pb.JobResult(inference_job_result=result)
