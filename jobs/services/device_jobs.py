"""Seed 000's other kinds, on the device a job names: compile (an optimized ONNX model for the
device), profile (measured there) and inference (run there on named tensors). Each refuses at
submit, naming the cause, what it can know before a worker starts: the model's format, dynamic
input shapes without ``input_specs``, options the hub cannot honour, inputs whose names, dtypes
or shapes do not fit the model, a device no worker has announced."""

from __future__ import annotations

import math
from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction

from jobs.domain import profile_plan, quotas
from jobs.domain.job_options import PROFILER_OPTIONS, BadOptions, parse_options
from jobs.domain.selectors import datasets_visible_to
from jobs.domain.tensor_data import DTYPES, TENSOR_FORMAT, misfits
from jobs.engine.compiling import source as compile_source
from jobs.engine.dispatch import enqueue_on_commit
from jobs.models import Dataset, Device, Job, JobInput, JobKind, MLModel, ModelFormat
from jobs.services.common import check_time_limit, clean_name, require_models, resolve_device

InputSpecs = dict[str, Any]  # seed 000: {name: shape} or {name: (shape, dtype)}
PROFILER_ONLY = tuple(o.name for o in PROFILER_OPTIONS)  # an inference job takes them to profile


def parse_job_options(kind: str, options: str | None) -> dict[str, Any]:
    try:
        return parse_options(kind, options)
    except BadOptions as bad:
        raise ValidationError({"options": str(bad)}) from None


def _onnx_model(owner: User, model: MLModel, kind: str) -> dict[str, Any]:
    """The model's input specs; refusals name what the job kind needs."""
    require_models(owner, [model], "model")
    if model.format != ModelFormat.ONNX:
        raise ValidationError(
            {
                "model": f"Model {model.public_id} is {model.get_format_display()}; a {kind} job "
                "runs an ONNX model. Compile it first (a compile job exports it to ONNX)."
            }
        )
    return dict(model.metadata.get("input_specs") or {})


def _dynamic(specs: dict[str, Any]) -> dict[str, list[Any]]:
    """Inputs with a dimension that is not a fixed number: {name: shape}."""
    return {
        name: spec["shape"]
        for name, spec in specs.items()
        if any(not isinstance(d, int) or d <= 0 for d in spec["shape"])
    }


def clean_input_specs(specs: Any, model_specs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """seed 000's input_specs ({name: shape} or {name: (shape, dtype)}) as
    {name: {"shape": [...], "dtype": "float32"}}, every name an input of the model and every
    shape filling the model's fixed dimensions."""
    if not isinstance(specs, dict) or not specs:
        raise ValidationError({"input_specs": "input_specs maps each input's name to its shape."})
    cleaned: dict[str, dict[str, Any]] = {}
    for name, value in specs.items():
        if name not in model_specs:
            raise ValidationError(
                {"input_specs": f"The model has no input {name!r}; its inputs are "
                 f"{', '.join(model_specs) or 'none'}."}
            )  # fmt: skip
        declared = model_specs[name]
        dtype = declared["dtype"]
        shape = value
        if isinstance(value, list | tuple) and len(value) == 2 and isinstance(value[1], str):
            shape, dtype = value
        if not isinstance(shape, list | tuple) or not all(
            isinstance(d, int) and not isinstance(d, bool) and 0 < d <= 1_000_000 for d in shape
        ):
            raise ValidationError(
                {"input_specs": f"The shape of {name!r} is a list of positive whole numbers "
                 f"(got {shape!r})."}
            )  # fmt: skip
        if dtype not in DTYPES:
            raise ValidationError(
                {
                    "input_specs": f"{name!r}: dtype {dtype!r} is not one of {', '.join(sorted(DTYPES))}."
                }
            )
        if len(shape) != len(declared["shape"]) or any(
            isinstance(d, int) and d > 0 and d != s
            for d, s in zip(declared["shape"], shape, strict=False)
        ):
            raise ValidationError(
                {"input_specs": f"{name!r} has shape {list(declared['shape'])} in the model; "
                 f"{list(shape)} does not fit it."}
            )  # fmt: skip
        if math.prod(shape) > 2**31:
            raise ValidationError({"input_specs": f"{name!r}: {list(shape)} is too large."})
        cleaned[name] = {"shape": list(shape), "dtype": dtype}
    return cleaned


GPU_ATTRIBUTE = "accelerator:cuda"


def resolve_job_device(
    device: Device | str | None, parsed: dict[str, Any]
) -> tuple[Device | None, str]:
    """Where the job runs. "any" with ``--compute_unit gpu`` means any device with a GPU: the
    job is queued for accelerator:cuda, so that no CPU worker takes it only to fail."""
    if device is None or (isinstance(device, str) and not device.strip()):
        raise ValidationError(
            {"device": "A compile, profile or inference job names a device (or an attribute, "
             "or 'any'): it runs, and is measured, there."}
        )  # fmt: skip
    target, attribute = resolve_device(device)
    if target is None and not attribute and "gpu" in (parsed.get("compute_unit") or []):
        if not any(GPU_ATTRIBUTE in d.attributes for d in Device.objects.all()):
            raise ValidationError(
                {"options": "--compute_unit gpu asks for a GPU, and no device of this hub has "
                 f"one ({GPU_ATTRIBUTE}). Use --compute_unit cpu, or add a GPU worker."}
            )  # fmt: skip
        attribute = GPU_ATTRIBUTE
    return target, attribute


def _save(job: Job, inputs: list[MLModel]) -> Job:
    with transaction.atomic():
        quotas.lock_person(job.owner_id)
        quotas.check_job_quota(job.owner_id)
        job.save()
        JobInput.objects.bulk_create(
            JobInput(job=job, model=model, position=i) for i, model in enumerate(inputs)
        )
        enqueue_on_commit(job)
    return job


def require_tensor_dataset(owner: User, dataset: Dataset, field: str) -> Dataset:
    if not datasets_visible_to(owner).filter(pk=dataset.pk).exists():
        raise ValidationError({field: f"No dataset {dataset.public_id} that you may use."})
    if dataset.format != TENSOR_FORMAT:
        raise ValidationError(
            {field: f"Dataset {dataset.public_id} is {dataset.get_format_display()}; {field} is "
             "named tensors: seed 000's h5 layout or a .npz."}
        )  # fmt: skip
    return dataset


def prepare_compile(
    *,
    owner: User,
    model: MLModel,
    device: Device | str | None,
    name: str | None = None,
    input_specs: Any = None,
    options: str | None = "",
    calibration_data: Dataset | None = None,
    time_limit: int | None = None,
) -> Job:
    """An ONNX model (or a Hugging Face causal LM, exported as customization outputs are)
    optimized for a device, fp16 or int8 if asked, its outputs checked against the source's."""
    parsed = parse_job_options("compile", options)
    target, attribute = resolve_job_device(device, parsed)
    check_time_limit(time_limit)
    require_models(owner, [model], "model")
    if model.format not in (ModelFormat.ONNX, ModelFormat.HF):
        raise ValidationError(
            {"model": f"Model {model.public_id} is {model.get_format_display()}; compile takes an "
             "ONNX model or a Hugging Face causal language model."}
        )  # fmt: skip
    if parsed.get("quantize_io") and parsed.get("quantize_full_type") != "float16":
        raise ValidationError(
            {"options": "--quantize_io makes the inputs and outputs float16 with "
             "--quantize_full_type float16; ONNX Runtime's int8 quantizer keeps a model's inputs "
             "and outputs float (it quantizes inside the graph), so the hub cannot make them int8."}
        )  # fmt: skip
    # A Hugging Face model is compiled from its ONNX export, whose inputs are known.
    specs = dict(
        model.metadata.get("input_specs") or {}
        if model.format == ModelFormat.ONNX
        else compile_source.HF_EXPORT_INPUTS
    )
    cleaned = clean_input_specs(input_specs, specs) if input_specs else {}
    for n, s in cleaned.items():
        if s["dtype"] != specs[n]["dtype"]:
            raise ValidationError(
                {"input_specs": f"{n!r} is {specs[n]['dtype']} in the model; a compile job fixes "
                 f"its shape, not its dtype ({s['dtype']} given)."}
            )  # fmt: skip
    unfixed = {n: s for n, s in _dynamic(specs).items() if n not in cleaned}
    if unfixed:
        shown = "; ".join(f"{n} [{', '.join(str(d) for d in s)}]" for n, s in unfixed.items())
        raise ValidationError(
            {"input_specs": f"Model {model.public_id} has dynamic dimensions ({shown}): give "
             "input_specs with a fixed shape for each, e.g. {" + ", ".join(
                 f"{n!r}: {[d if isinstance(d, int) and d > 0 else 1 for d in s]}"
                 for n, s in unfixed.items()) + "}."}
        )  # fmt: skip
    if calibration_data is not None:
        require_tensor_dataset(owner, calibration_data, "calibration_data")
        if parsed.get("quantize_full_type") != "int8":
            raise ValidationError(
                {"calibration_data": "calibration_data calibrates int8 quantization; add "
                 "--quantize_full_type int8 to options, or leave calibration_data out."}
            )  # fmt: skip
        try:
            check_inputs_fit(calibration_data, {**specs, **cleaned})
        except ValidationError as misfit:
            raise ValidationError({"calibration_data": misfit.messages}) from None
    job = Job(
        kind=JobKind.COMPILE,
        owner=owner,
        name=clean_name(name, f"Compile {model.name}"[:200]),
        device=target,
        device_attribute=attribute,
        dataset=calibration_data,
        hyperparameters={"options": options or "", "parsed": parsed, "input_specs": cleaned},
        time_limit=time_limit,
    )
    return job


def _require_profilable(
    model: MLModel,
    specs: dict[str, Any],
    target: Device | None,
    attribute: str,
    parsed: dict[str, Any],
    then: str,
) -> None:
    """What a profile needs of its model and device, known at submit (a profile job's, or an
    inference job's that also profiles): fixed input shapes (its timed runs are of one shape),
    a GPU if it asks for one, and the memory to load the model; ``then`` ends the refusal of
    dynamic shapes (what to do once the model is compiled)."""
    if unfixed := _dynamic(specs):
        shown = "; ".join(f"{n} [{', '.join(str(d) for d in s)}]" for n, s in unfixed.items())
        raise ValidationError(
            {"model": f"Model {model.public_id} has dynamic dimensions ({shown}); a profile "
             f"measures one shape. Compile it with input_specs first, then {then}."}
        )  # fmt: skip
    candidates = [target] if target else [
        d for d in Device.objects.all() if not attribute or attribute in d.attributes
    ]  # fmt: skip
    if refused := profile_plan.refusal(
        parsed.get("compute_unit") or [],
        profile_plan.model_bytes(model.size, model.metadata),
        [(d.name, d.attributes, int(d.specs.get("memory_bytes") or 0)) for d in candidates],
    ):
        raise ValidationError({refused[0]: refused[1]})


def prepare_profile(
    *,
    owner: User,
    model: MLModel,
    device: Device | str | None,
    name: str | None = None,
    options: str | None = "",
    time_limit: int | None = None,
) -> Job:
    """The model measured on the device: load times, latency over timed runs, peak memory and
    the time of each layer."""
    parsed = parse_job_options("profile", options)
    target, attribute = resolve_job_device(device, parsed)
    check_time_limit(time_limit)
    specs = _onnx_model(owner, model, "profile")
    _require_profilable(model, specs, target, attribute, parsed, "profile the compiled model")
    job = Job(
        kind=JobKind.PROFILE,
        owner=owner,
        name=clean_name(name, f"Profile {model.name}"[:200]),
        device=target,
        device_attribute=attribute,
        hyperparameters={"options": options or "", "parsed": parsed},
        time_limit=time_limit,
    )
    return job


def check_inputs_fit(dataset: Dataset, specs: dict[str, Any]) -> None:
    """Every input of the model given, with its dtype, every sample's shape filling the model's
    fixed dimensions; each mismatch named (the runner checks the file again the same way)."""
    problems = misfits(dataset.metadata.get("entries", []), specs)
    if problems:
        raise ValidationError(
            {"inputs": f"Dataset {dataset.public_id} does not fit the model's inputs: "
             + "; ".join(problems) + "."}
        )  # fmt: skip


def prepare_inference(
    *,
    owner: User,
    model: MLModel,
    device: Device | str | None,
    inputs: Dataset,
    name: str | None = None,
    options: str | None = "",
    time_limit: int | None = None,
    profile: bool = False,
) -> Job:
    """The model run on the device over every sample of ``inputs``; its outputs stored as a
    dataset in the same layout. With ``profile`` (seed 000's ``profile=True``) the model is
    then also measured there as a profile job measures it (``--max_profiler_iterations`` and
    ``--max_profiler_time`` apply): its profile.json and figures beside the outputs."""
    parsed = parse_job_options("inference", options)
    if not profile and (asked := [f"--{n}" for n in parsed if n in PROFILER_ONLY]):
        several = len(asked) > 1
        raise ValidationError(
            {"options": f"{' and '.join(asked)} {'set' if several else 'sets'} the timed runs of "
             "a profile, and this inference job does not profile. Submit it with profile=True "
             f"(the page's \"Also profile\") or leave {'them' if several else 'it'} out."}
        )  # fmt: skip
    target, attribute = resolve_job_device(device, parsed)
    check_time_limit(time_limit)
    specs = _onnx_model(owner, model, "inference")
    if profile:
        _require_profilable(
            model, specs, target, attribute, parsed,
            "run inference on the compiled model (or submit this one without profile)",
        )  # fmt: skip
    require_tensor_dataset(owner, inputs, "inputs")
    check_inputs_fit(inputs, specs)
    job = Job(
        kind=JobKind.INFERENCE,
        owner=owner,
        name=clean_name(name, f"Inference {model.name} on {inputs.name}"[:200]),
        device=target,
        device_attribute=attribute,
        dataset=inputs,
        hyperparameters={"options": options or "", "parsed": parsed, "profile": bool(profile)},
        training_samples=inputs.num_records,
        time_limit=time_limit,
    )
    return job


# Each submit is its preparation (every check, an unsaved job) and the save that queues it. A
# job that waits for another's target model (jobs.services.followers) is prepared again when
# that model exists.


def job_submit_compile(*, owner: User, model: MLModel, **asked: Any) -> Job:
    return _save(prepare_compile(owner=owner, model=model, **asked), [model])


def job_submit_profile(*, owner: User, model: MLModel, **asked: Any) -> Job:
    return _save(prepare_profile(owner=owner, model=model, **asked), [model])


def job_submit_inference(*, owner: User, model: MLModel, **asked: Any) -> Job:
    return _save(prepare_inference(owner=owner, model=model, **asked), [model])
