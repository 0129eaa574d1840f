"""Writes to jobs and their assets. Each service validates everything first and changes nothing
when it refuses; callers pass objects they fetched through ``jobs.domain.selectors``, and each service
checks again that the acting user may use them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path, PurePath
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.files import File
from django.db import transaction
from django.db.models import QuerySet

from jobs.domain import base_models, files, hf_models, onnx_data, onnx_runtime, quotas, sft_data
from jobs.domain.events import EventType, publish
from jobs.domain.formulas import MIN_SAMPLES_WITHOUT_VALIDATION
from jobs.domain.hyperparameters import GPU_PRECISIONS, Hyperparameters, parse_hyperparameters
from jobs.domain.redact import scrub_paths
from jobs.domain.selectors import datasets_visible_to, models_visible_to
from jobs.domain.state import job_transition
from jobs.domain.status import FINISHED, JobStatus
from jobs.engine.dispatch import enqueue_on_commit
from jobs.engine.runners import external
from jobs.models import Dataset, Hardware, Job, JobInput, JobKind, MLModel, ModelFormat

MAX_LINK_INPUTS = 32
NAME_MAX = 200
DEVICE_MAX = 100


def _clean_name(name: str | None, default: str, field: str = "name") -> str:
    name = (name or "").strip() or default
    if len(name) > NAME_MAX:
        raise ValidationError(
            {field: f"{field} is {len(name)} characters long; at most {NAME_MAX}."}
        )
    if any(ord(c) < 32 for c in name):
        raise ValidationError({field: f"{field} must not contain control characters."})
    return name


def _clean_device(device: str | None) -> str:
    device = (device or "").strip()
    if len(device) > DEVICE_MAX:
        raise ValidationError({"device": f"device is at most {DEVICE_MAX} characters long."})
    if any(ord(c) < 32 for c in device):
        raise ValidationError({"device": "device must not contain control characters."})
    return device


def _check_upload_size(size: int, label: str) -> None:
    if size == 0:
        raise ValidationError({"file": f"{label} is empty."})
    if size > settings.HUB_MAX_UPLOAD_BYTES:
        raise ValidationError(
            {
                "file": f"{label} is {size} bytes; "
                f"the limit is {settings.HUB_MAX_UPLOAD_BYTES} bytes."
            }
        )


def _check_time_limit(time_limit: int | None) -> None:
    """A job may ask for less time than the operator allows (HUB_JOB_TIME_LIMIT), never more."""
    cap = settings.HUB_JOB_TIME_LIMIT
    if time_limit is not None and not 10 <= time_limit <= cap:
        raise ValidationError(
            {
                "time_limit": f"time_limit must be between 10 and {cap} seconds "
                "(this hub's limit, HUB_JOB_TIME_LIMIT); it can only shorten it."
            }
        )


def _filename(file: File) -> str:
    return PurePath(file.name or "upload").name


def model_upload(*, owner: User, file: File, name: str | None = None) -> MLModel:
    """Store a model after checking it: an ONNX file (for link jobs), or a Hugging Face model
    folder as a .zip or .tar.gz archive (for customization jobs)."""
    label = _filename(file)
    sha256, size = files.sha256_of(file)
    _check_upload_size(size, label)
    if hf_models.is_model_archive(label):
        with files.local_path(file) as path:
            onnx_archive = onnx_data.is_onnx_archive(Path(path))
        if onnx_archive:
            return _onnx_archive_upload(owner=owner, file=file, name=name, label=label)
        return _hf_model_upload(owner=owner, file=file, name=name, label=label)
    name = _clean_name(name, PurePath(label).stem or "model")
    stored_name = label if label.endswith(".onnx") else f"{label}.onnx"
    with files.local_path(file) as path, files.work_folder() as workdir:
        metadata = files.onnx_metadata(path, label)
        # What a link job will load it with, checked now; a too-new IR version is lowered.
        lowered = onnx_runtime.loadable(path, label, workdir)
        if lowered is None:
            return _store_onnx(owner, name, file, stored_name, size, sha256, metadata)
        with lowered.open("rb") as handle:
            sha256, size = files.sha256_of(handle)
            metadata["ir_version_uploaded"] = metadata["ir_version"]
            metadata["ir_version"] = onnx_runtime.runtime().max_ir
            return _store_onnx(owner, name, File(handle), stored_name, size, sha256, metadata)


def _store_onnx(
    owner: User,
    name: str,
    file: File,
    stored_name: str,
    size: int,
    sha256: str,
    metadata: dict[str, Any],
) -> MLModel:
    if (same := _already_uploaded(_same_model(owner, sha256, ModelFormat.ONNX))) is not None:
        return same
    model = MLModel(owner=owner, name=name, format=ModelFormat.ONNX, size=size, sha256=sha256)
    model.metadata = metadata
    with files.stored_with_its_row(model.file), transaction.atomic():
        quotas.lock_person(owner.pk)
        quotas.check_upload_quota(owner.pk, size)
        model.file.save(stored_name, file, save=False)
        model.save()
    return model


def _archive_stem(label: str) -> str:
    stem = label
    for suffix in hf_models.ARCHIVE_SUFFIXES:
        stem = stem.removesuffix(suffix).removesuffix(suffix.upper())
    return stem or "model"


def _onnx_archive_upload(*, owner: User, file: File, name: str | None, label: str) -> MLModel:
    """An ONNX model with its data file(s), as an archive: unpacked as a Hugging Face archive is
    (members inside it, the unpacked size counted as written), every data location checked, and
    stored normalised (jobs/domain/onnx_data.py): a zip of model.onnx and model.onnx.data, or the
    plain .onnx when its tensors name no data file."""
    stem = _archive_stem(label)
    name = _clean_name(name, stem)
    with files.local_path(file) as path, files.work_folder() as workdir:
        unpacked = workdir / "unpacked"
        unpacked.mkdir()
        onnx_data.unpack_upload(Path(path), label, unpacked)
        model_path, others = onnx_data.find_model(unpacked, label)
        normal = workdir / "normal"
        metadata, stored = files.onnx_folder(model_path, others, label, normal)
        if metadata["external_data"]:
            stored = hf_models.normalised_zip(normal, workdir / "model.zip")
        with stored.open("rb") as handle:
            sha256, size = files.sha256_of(handle)
            stored_name = f"{stem}.zip" if metadata["external_data"] else f"{stem}.onnx"
            return _store_onnx(owner, name, File(handle), stored_name, size, sha256, metadata)


def _hf_model_upload(*, owner: User, file: File, name: str | None, label: str) -> MLModel:
    """Unpack and check the folder (jobs/domain/hf_models.py), then store it as one normalised
    zip, whose size and sha256 are what the hub keeps and serves."""
    stem = label
    for suffix in hf_models.ARCHIVE_SUFFIXES:
        stem = stem.removesuffix(suffix).removesuffix(suffix.upper())
    name = _clean_name(name, stem or "model")
    with files.local_path(file) as path, files.work_folder() as workdir:
        metadata, normalised = hf_models.inspect_archive(Path(path), label, workdir)
        with normalised.open("rb") as handle:
            sha256, size = files.sha256_of(handle)
            if (same := _already_uploaded(_same_model(owner, sha256, ModelFormat.HF))) is not None:
                return same
            model = MLModel(owner=owner, name=name, format=ModelFormat.HF, size=size, sha256=sha256)
            model.metadata = metadata
            with files.stored_with_its_row(model.file), transaction.atomic():
                quotas.lock_person(owner.pk)
                quotas.check_upload_quota(owner.pk, size)
                model.file.save(f"{stem or 'model'}.zip", File(handle), save=False)
                model.save()
    return model


def dataset_upload(*, owner: User, file: File, name: str | None = None) -> Dataset:
    """Store a JSONL dataset (prompt/completion or chat rows) after reading every line."""
    label = _filename(file)
    sha256, size = files.sha256_of(file)
    _check_upload_size(size, label)
    name = _clean_name(name, PurePath(label).stem or "dataset")
    summary = files.check_jsonl_dataset(file, label)
    if (
        same := _already_uploaded(
            Dataset.objects.filter(owner=owner, sha256=sha256, deleted_at__isnull=True)
        )
    ) is not None:
        return same
    dataset = Dataset(
        owner=owner,
        name=name,
        size=size,
        sha256=sha256,
        num_records=summary.records,
        format=summary.format,
    )
    with files.stored_with_its_row(dataset.file), transaction.atomic():
        quotas.lock_person(owner.pk)
        quotas.check_upload_quota(owner.pk, size)
        dataset.file.save(label, file, save=False)
        dataset.save()
    return dataset


def _already_uploaded(found: QuerySet[Any]) -> Any:
    """The owner's own asset with exactly this content (``found``), marked ``already_uploaded``:
    the same bytes again are stored once (and count once against the quota), and the uploader is
    told which."""
    same = found.order_by("created_at").first()
    if same is not None:
        same.already_uploaded = True  # read by the views: 200 and "already uploaded as …"
    return same


def _same_model(owner: User, sha256: str, format: str) -> QuerySet[MLModel]:
    """Models the owner uploaded (not ones a job made) with this content."""
    return MLModel.objects.filter(
        owner=owner, sha256=sha256, format=format, produced_by__isnull=True, deleted_at__isnull=True
    )


def _require_models(owner: User, models: Sequence[MLModel], field: str) -> None:
    readable = set(
        models_visible_to(owner).filter(pk__in=[m.pk for m in models]).values_list("pk", flat=True)
    )
    for model in models:
        if model.pk not in readable:
            raise ValidationError({field: f"No model {model.public_id} that you may use."})


def job_submit_link(
    *,
    owner: User,
    models: Sequence[MLModel],
    name: str | None = None,
    device: str | None = None,
) -> Job:
    """A link job: one or more ONNX models into one target model."""
    if not models:
        raise ValidationError({"models": "A link job needs at least one model."})
    if len(models) > MAX_LINK_INPUTS:
        raise ValidationError({"models": f"A link job takes at most {MAX_LINK_INPUTS} models."})
    _require_models(owner, models, "models")
    for model in models:
        if model.format != ModelFormat.ONNX:
            raise ValidationError(
                {"models": f"Model {model.public_id} is not ONNX; only ONNX models link."}
            )
    job = Job(
        kind=JobKind.LINK,
        owner=owner,
        name=_clean_name(name, "Link " + " + ".join(m.name for m in models)[:190]),
        device=_clean_device(device),
    )
    with transaction.atomic():
        quotas.lock_person(owner.pk)
        quotas.check_job_quota(owner.pk)
        job.save()
        JobInput.objects.bulk_create(
            JobInput(job=job, model=model, position=i) for i, model in enumerate(models)
        )
        enqueue_on_commit(job)
    return job


def _hyperparameters(data: object) -> Hyperparameters:
    """Parsed once, here, for the form, the API and the NeMo routes alike; each error names its
    field as ``hyperparameters.<name>`` (the form puts it back on its own field)."""
    try:
        return parse_hyperparameters(data)
    except ValidationError as error:
        raise ValidationError(
            {
                key if key == "hyperparameters" else f"hyperparameters.{key}": messages
                for key, messages in error.message_dict.items()
            }
        ) from None


def _clean_hardware(hardware: str | None) -> str:
    hardware = hardware or Hardware.ANY
    if hardware not in Hardware.values:
        raise ValidationError(
            {"hardware": f"hardware must be one of {', '.join(Hardware.values)}, not {hardware!r}."}
        )
    return hardware


def _base_model(
    owner: User, base_model: MLModel | str | None
) -> tuple[str, MLModel | None, dict[str, Any]]:
    """(offered name or "", uploaded model or None, its description) of a customization's
    base model; refusals name what is wrong."""
    if base_model is None or isinstance(base_model, str):
        offered = base_models.server_model(base_model or base_models.BUILTIN_NAME)
        return offered.name, None, offered.metadata
    _require_models(owner, [base_model], "model")
    if base_model.format == ModelFormat.TORCH:
        raise ValidationError(
            {
                "model": f"Model {base_model.public_id} is a checkpoint of the retired "
                "tiny-char-lm; customize a Hugging Face model (upload one, or use "
                f"{base_models.BUILTIN_NAME!r})."
            }
        )
    if base_model.format != ModelFormat.HF:
        raise ValidationError(
            {
                "model": f"Model {base_model.public_id} is {base_model.get_format_display()}; "
                "customization fine-tunes a Hugging Face causal language model (a folder "
                "uploaded as .zip or .tar.gz)."
            }
        )
    return "", base_model, base_model.metadata


def _check_fit(
    params: Hyperparameters,
    base: str | MLModel,
    metadata: dict[str, Any],
    datasets: list[tuple[str, Dataset]],
) -> None:
    """What can be known at submit without loading a tokenizer or rendering a row: the
    max_seq_length fits the model's context, and chat rows have a chat template to render them
    with (recorded when the model was checked). Tokenizing the rows with the model (the
    overlong-row check) is the worker's first step: in the web process a hostile tokenizer or
    template would cost everyone (jobs.domain.sft_data.fit_problem)."""
    context = metadata.get("context_length")
    if params.max_seq_length and context and params.max_seq_length > context:
        raise ValidationError(
            {
                "hyperparameters.max_seq_length": f"max_seq_length ({params.max_seq_length}) is "
                f"longer than the base model's context length ({context} tokens)."
            }
        )
    if metadata.get("chat_template") is not False:
        return  # present, or a model checked before this was recorded: the worker tells
    label = base if isinstance(base, str) else f"{base.name} ({base.public_id})"
    for field, dataset in datasets:
        if dataset.format == sft_data.CHAT:
            raise ValidationError(
                {
                    field: f"Dataset {dataset.public_id} holds chat messages, but the tokenizer "
                    f"of {label} has no chat template to render them with. Use prompt/completion "
                    "rows, or a model whose tokenizer has a chat template."
                }
            )


def job_submit_customization(
    *,
    owner: User,
    dataset: Dataset,
    validation_dataset: Dataset | None = None,
    base_model: MLModel | str | None = None,
    hyperparameters: dict[str, Any] | None = None,
    name: str | None = None,
    device: str | None = None,
    time_limit: int | None = None,
    hardware: str | None = None,
) -> Job:
    """A customization job: fine-tune a Hugging Face causal LM (one the hub offers, by name, or
    one the user may read: uploaded, or made by an earlier customization) on a dataset, with
    LoRA or all weights, on the hardware asked for."""
    params = _hyperparameters(hyperparameters)
    hardware = _clean_hardware(hardware)
    if params.precision in GPU_PRECISIONS and hardware != Hardware.GPU:
        raise ValidationError(
            {
                "hyperparameters.precision": f"precision {params.precision!r} needs a GPU; this "
                f"job asks for hardware '{Hardware(hardware).value}'. Set hardware to 'gpu', or "
                "precision to "
                "'auto' or 'fp32'."
            }
        )
    readable = datasets_visible_to(owner)
    for field, value in (("dataset", dataset), ("validation_dataset", validation_dataset)):
        if value is not None and not readable.filter(pk=value.pk).exists():
            raise ValidationError({field: f"No dataset {value.public_id} that you may use."})
    if validation_dataset is None and dataset.num_records < MIN_SAMPLES_WITHOUT_VALIDATION:
        raise ValidationError(
            {
                "dataset": f"A dataset without a validation dataset needs at least "
                f"{MIN_SAMPLES_WITHOUT_VALIDATION} records (10% of them, at least one, "
                f"validate); this one has {dataset.num_records}. Add records or give a "
                "validation_dataset."
            }
        )
    _check_time_limit(time_limit)
    offered, uploaded, metadata = _base_model(owner, base_model)
    _check_fit(
        params,
        uploaded or offered,
        metadata,
        [("dataset", dataset)]
        + ([("validation_dataset", validation_dataset)] if validation_dataset else []),
    )
    base_label = offered or (uploaded.name if uploaded else "")
    job = Job(
        kind=JobKind.CUSTOMIZATION,
        owner=owner,
        name=_clean_name(name, f"Customize {base_label} on {dataset.name}"[:200]),
        device=_clean_device(device),
        hardware=hardware,
        dataset=dataset,
        validation_dataset=validation_dataset,
        builtin_base_model=offered,
        hyperparameters=params.as_dict(),
        training_samples=dataset.num_records,
        time_limit=time_limit,
    )
    with transaction.atomic():
        quotas.lock_person(owner.pk)
        quotas.check_job_quota(owner.pk)
        job.save()
        if uploaded is not None:
            JobInput.objects.create(job=job, model=uploaded, position=0)
        enqueue_on_commit(job)
    return job


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
    _check_time_limit(time_limit)
    job = Job(
        kind=JobKind.EXTERNAL,
        owner=owner,
        name=_clean_name(name, "external run"),
        device=_clean_device(device),
        ran_on=_clean_device(device),
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


def job_rename(*, job: Job, name: str) -> Job:
    """A new name, which open pages and job lists show at once (a ``job`` event)."""
    job.name = _clean_name(name, "")
    if not job.name:
        raise ValidationError({"name": "A job name cannot be empty."})
    with transaction.atomic():
        job.save(update_fields=["name", "updated_at"])
        publish(job, EventType.JOB, {"name": job.name})
    return job


def job_cancel(*, job: Job) -> Job:
    """Cancel a job: at once if no worker has it yet, otherwise ask the worker to stop (it
    finishes the cancellation at its next step)."""
    if job.status in (JobStatus.CREATED, JobStatus.PENDING):
        return job_transition(
            job=job, to=JobStatus.CANCELLED, message="Cancelled before it started."
        )
    if job.kind == JobKind.EXTERNAL:
        if job.status == JobStatus.UNKNOWN:  # nobody is there to stop
            return job_transition(
                job=job, to=JobStatus.CANCELLED, message="Cancelled; the run had stopped reporting."
            )
        return job_transition(
            job=job,
            to=JobStatus.CANCELLING,
            message="Cancellation requested; the run stops when it next reports.",
        )
    return job_transition(
        job=job,
        to=JobStatus.CANCELLING,
        message="Cancellation requested; waiting for the worker to stop.",
    )


def job_resubmit(*, job: Job, owner: User) -> Job:
    """A new job with the same inputs as a finished one."""
    if job.status not in FINISHED:
        raise ValidationError(
            {"job": f"Job {job.public_id} is {job.status}; only a finished job can be resubmitted."}
        )
    if job.kind == JobKind.EXTERNAL:
        raise ValidationError(
            {"job": f"Job {job.public_id} ran outside the hub; start it again where it ran."}
        )
    inputs = [ji.model for ji in job.job_inputs.select_related("model")]
    gone = [
        asset
        for asset in (*inputs, job.dataset, job.validation_dataset)
        if asset is not None and asset.deleted_at is not None
    ]
    if gone:
        names = ", ".join(f"{asset.name} ({asset.public_id})" for asset in gone)
        raise ValidationError(
            {"job": f"Job {job.public_id} cannot be resubmitted: {names} was deleted by its owner."}
        )
    if job.kind == JobKind.LINK:
        clone = job_submit_link(owner=owner, models=inputs, name=job.name, device=job.device)
    else:
        assert job.dataset is not None
        clone = job_submit_customization(
            owner=owner,
            dataset=job.dataset,
            validation_dataset=job.validation_dataset,
            base_model=inputs[0] if inputs else job.builtin_base_model,
            hyperparameters=job.hyperparameters,
            name=job.name,
            device=job.device,
            time_limit=job.time_limit,
            hardware=job.hardware,
        )
    Job.objects.filter(pk=clone.pk).update(resubmitted_from=job)
    clone.resubmitted_from = job
    return clone
