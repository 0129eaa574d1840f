"""Jobs the hub runs: submitting (link, customization), renaming, cancelling, resubmitting (every
kind but an external run)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction

from jobs.domain import base_models, quotas, sft_data
from jobs.domain.devices import ANY
from jobs.domain.events import EventType, publish
from jobs.domain.formulas import MIN_SAMPLES_WITHOUT_VALIDATION
from jobs.domain.hyperparameters import GPU_PRECISIONS, Hyperparameters, parse_hyperparameters
from jobs.domain.selectors import datasets_visible_to, models_visible_to
from jobs.domain.state import job_transition
from jobs.domain.status import FINISHED, JobStatus
from jobs.engine.dispatch import enqueue_on_commit
from jobs.models import (
    BASE_POSITION,
    TEACHER_POSITION,
    Dataset,
    Device,
    Hardware,
    Job,
    JobInput,
    JobKind,
    MLModel,
    ModelFormat,
)
from jobs.services import device_jobs
from jobs.services.common import check_time_limit, clean_name, require_models, resolve_device

MAX_LINK_INPUTS = 32


def job_submit_link(
    *,
    owner: User,
    models: Sequence[MLModel],
    name: str | None = None,
    device: Device | str | None = None,
) -> Job:
    """A link job: one or more ONNX models into one target model, on the device named (or any
    worker)."""
    if not models:
        raise ValidationError({"models": "A link job needs at least one model."})
    if len(models) > MAX_LINK_INPUTS:
        raise ValidationError({"models": f"A link job takes at most {MAX_LINK_INPUTS} models."})
    require_models(owner, models, "models")
    for model in models:
        if model.format != ModelFormat.ONNX:
            raise ValidationError(
                {"models": f"Model {model.public_id} is not ONNX; only ONNX models link."}
            )
    job = Job(
        kind=JobKind.LINK,
        owner=owner,
        name=clean_name(name, "Link " + " + ".join(m.name for m in models)[:190]),
    )
    job.device, job.device_attribute = resolve_device(device)
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
    require_models(owner, [base_model], "model")
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


_FORMAT_WORDS = {
    sft_data.PROMPT_COMPLETION: "prompt/completion rows",
    sft_data.CHAT: "chat messages",
    sft_data.PREFERENCE: 'preference rows {"prompt", "chosen", "rejected"}',
    sft_data.PROMPT_ANSWER: 'prompts with answers {"prompt", "answer"}',
    "tensors": "tensors (an inference or calibration dataset)",
}


def _check_format(params: Hyperparameters, field: str, dataset: Dataset) -> None:
    """The dataset holds the rows the job's training type learns from."""
    kind = params.training_type
    wanted = sft_data.FORMATS_OF_TRAINING[kind]
    if dataset.format not in wanted:
        needs = " or ".join(_FORMAT_WORDS[f] for f in wanted)
        raise ValidationError(
            {
                field: f"Dataset {dataset.public_id} holds {_FORMAT_WORDS.get(dataset.format, dataset.format)}; "
                f"training_type {kind!r} learns from {needs}."
            }
        )


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
    device: Device | str | None = None,
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
        if value is not None:
            _check_format(params, field, value)
    if validation_dataset is None and dataset.num_records < MIN_SAMPLES_WITHOUT_VALIDATION:
        raise ValidationError(
            {
                "dataset": f"A dataset without a validation dataset needs at least "
                f"{MIN_SAMPLES_WITHOUT_VALIDATION} records (10% of them, at least one, "
                f"validate); this one has {dataset.num_records}. Add records or give a "
                "validation_dataset."
            }
        )
    check_time_limit(time_limit)
    target, attribute = resolve_device(device, hardware)
    offered, uploaded, metadata = _base_model(owner, base_model)
    _check_fit(
        params,
        uploaded or offered,
        metadata,
        [("dataset", dataset)]
        + ([("validation_dataset", validation_dataset)] if validation_dataset else []),
    )
    base_label = offered or (uploaded.name if uploaded else "")
    teacher: MLModel | None = None
    if params.training_type == "distillation":
        canonical, teacher = _teacher(
            owner, params, uploaded.public_id if uploaded else offered, base_label, metadata
        )
        params = replace(params, distillation=replace(params.distillation, teacher=canonical))
    job = Job(
        kind=JobKind.CUSTOMIZATION,
        owner=owner,
        name=clean_name(name, f"Customize {base_label} on {dataset.name}"[:200]),
        device=target,
        device_attribute=attribute,
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
            JobInput.objects.create(job=job, model=uploaded, position=BASE_POSITION)
        if teacher is not None:
            JobInput.objects.create(job=job, model=teacher, position=TEACHER_POSITION)
        enqueue_on_commit(job)
    return job


def _teacher(
    owner: User,
    params: Hyperparameters,
    student: str,
    student_label: str,
    student_metadata: dict[str, Any],
) -> tuple[str, MLModel | None]:
    """(what the job stores, the uploaded model or None) of a distillation's teacher: a model
    the owner may read by its id, or one the hub offers by name; one whose vocabulary differs
    from the student's is refused naming both (their token distributions are compared)."""
    field = "hyperparameters.distillation.teacher"
    name = params.distillation.teacher or ""
    model = models_visible_to(owner).filter(public_id=name).first()
    if model is not None:
        if model.format != ModelFormat.HF:
            raise ValidationError(
                {
                    field: f"Model {model.public_id} is {model.get_format_display()}; a teacher is "
                    "a Hugging Face causal language model."
                }
            )
        canonical, label, metadata = (
            model.public_id,
            f"{model.name} ({model.public_id})",
            model.metadata,
        )
    else:
        try:
            offered = base_models.server_model(name)
        except ValidationError:
            known = ", ".join(sorted(base_models.server_models()))
            raise ValidationError(
                {
                    field: f"No model {name!r} that you may read: name a model id you may read, "
                    f"or a model this hub offers ({known})."
                }
            ) from None
        canonical, label, metadata = offered.name, offered.name, offered.metadata
    if canonical == student:
        raise ValidationError(
            {field: f"The teacher is the student ({label}): distil from another model."}
        )
    ours, theirs = student_metadata.get("vocab_size"), metadata.get("vocab_size")
    if ours and theirs and ours != theirs:
        raise ValidationError(
            {
                field: f"The teacher {label} has a vocabulary of {theirs:,} tokens and the student "
                f"{student_label} one of {ours:,}: distillation compares their token "
                "distributions, so both must use the same tokenizer."
            }
        )
    return canonical, model if model is not None else None


def job_rename(*, job: Job, name: str) -> Job:
    """A new name, which open pages and job lists show at once (a ``job`` event)."""
    job.name = clean_name(name, "")
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
        clone = job_submit_link(
            owner=owner, models=inputs, name=job.name, device=job.device or job.device_attribute
        )
    elif job.kind in (JobKind.COMPILE, JobKind.PROFILE, JobKind.INFERENCE):
        clone = _resubmit_device_job(job, owner, inputs[0])
    elif job.kind == JobKind.EVALUATION:
        assert job.dataset is not None
        by_id = {model.public_id: model for model in inputs}
        stored = job.hyperparameters
        clone = job_submit_evaluation(
            owner=owner,
            models=[by_id.get(name, name) for name in stored.get("models", [])],
            dataset=job.dataset,
            settings=stored.get("settings"),
            name=job.name,
            time_limit=job.time_limit,
            nemo=stored.get("nemo"),
        )
    else:
        assert job.dataset is not None
        clone = job_submit_customization(
            owner=owner,
            dataset=job.dataset,
            validation_dataset=job.validation_dataset,
            # A distillation's uploaded teacher is an input too: the base is the one at its place.
            base_model=job.input_at(BASE_POSITION) or job.builtin_base_model,
            hyperparameters=job.hyperparameters,
            name=job.name,
            device=job.device or job.device_attribute,
            time_limit=job.time_limit,
            hardware=job.hardware,
        )
    Job.objects.filter(pk=clone.pk).update(resubmitted_from=job)
    clone.resubmitted_from = job
    return clone


def _resubmit_device_job(job: Job, owner: User, model: MLModel) -> Job:
    """A compile, profile or inference job again, on the device (or attribute, or any) it named,
    with its options, input specs, inputs and time limit: checked again as a new submit is."""
    where = job.device or job.device_attribute or ANY
    stored = job.hyperparameters
    common: dict[str, Any] = {
        "owner": owner,
        "model": model,
        "device": where,
        "name": job.name,
        "options": stored.get("options", ""),
        "time_limit": job.time_limit,
    }
    if job.kind == JobKind.COMPILE:
        specs = {
            name: (spec["shape"], spec["dtype"])
            for name, spec in (stored.get("input_specs") or {}).items()
        }
        return device_jobs.job_submit_compile(
            **common, input_specs=specs or None, calibration_data=job.dataset
        )
    if job.kind == JobKind.PROFILE:
        return device_jobs.job_submit_profile(**common)
    assert job.dataset is not None
    return device_jobs.job_submit_inference(
        **common, inputs=job.dataset, profile=bool(stored.get("profile"))
    )


def job_submit_evaluation(
    *,
    owner: User,
    models: Sequence[MLModel | str],
    dataset: Dataset,
    settings: dict[str, Any] | None = None,
    name: str | None = None,
    time_limit: int | None = None,
    nemo: dict[str, Any] | None = None,
) -> Job:
    """An evaluation job: each model (one the owner may read, or one the hub offers by name; a
    base model and its fine-tunes side by side) scored on the dataset's rows
    (jobs.domain.evaluation)."""
    from jobs.domain.evaluation import MAX_MODELS, parse_settings

    parsed = parse_settings(settings)
    if not models or len(models) > MAX_MODELS:
        raise ValidationError(
            {"models": f"Name 1 to {MAX_MODELS} models to evaluate; {len(models)} given."}
        )
    if not datasets_visible_to(owner).filter(pk=dataset.pk).exists():
        raise ValidationError({"dataset": f"No dataset {dataset.public_id} that you may use."})
    if dataset.format == "tensors":
        raise ValidationError(
            {
                "dataset": f"Dataset {dataset.public_id} holds tensors; an evaluation reads "
                "prompt/completion, chat, preference or prompt/answer rows."
            }
        )
    check_time_limit(time_limit)
    names: list[str] = []
    uploaded: list[MLModel] = []
    for model in models:
        try:
            offered, found, _ = _base_model(owner, model)
        except ValidationError as error:
            raise ValidationError({"models": error.messages}) from None
        key = found.public_id if found else offered
        if key in names:
            raise ValidationError({"models": f"{key} is named twice."})
        names.append(key)
        if found is not None:
            uploaded.append(found)
    job = Job(
        kind=JobKind.EVALUATION,
        owner=owner,
        name=clean_name(name, f"Evaluate {', '.join(names)} on {dataset.name}"[:200]),
        dataset=dataset,
        # ``nemo``: what NeMo Evaluator's routes were given, to answer in its shapes.
        hyperparameters={
            "models": names,
            "settings": parsed.as_dict(),
            **({"nemo": nemo} if nemo else {}),
        },
        time_limit=time_limit,
    )
    with transaction.atomic():
        quotas.lock_person(owner.pk)
        quotas.check_job_quota(owner.pk)
        job.save()
        for position, model in enumerate(uploaded):
            JobInput.objects.create(job=job, model=model, position=position)
        enqueue_on_commit(job)
    return job
