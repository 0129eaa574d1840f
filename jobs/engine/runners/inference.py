"""Inference jobs (seed 000): an ONNX model run with ONNX Runtime on the device the job names,
over every sample of a tensors dataset (sample j of every input together). The outputs are
stored in seed 000's h5 layout, as the artifact ``output_data.h5`` (what its client's
``download_output_data()`` reads) and as a dataset of the job's owner made by the job, so that
they can be another job's inputs.

With ``"profile": true`` in its hyperparameters (seed 000's ``profile=True``), once every
sample has run the model is also profiled exactly as a profile job profiles it
(``jobs.engine.runners.profile.profile_model``): profile.json is stored too, and the profile's
figures join the job's summary beside the outputs'. Its steps are the samples, then the timed
runs (``Job.total_steps``); the outputs are stored only once the profile has succeeded, so a job
that fails or is cancelled while profiling has none, as for any other stop.

The inputs were checked against the model at submit; they are checked again here, file and
fit, because the dataset may have been stored before a check existed (or the check grew since):
the file is described again in the limited child (links and external storage refused, sizes
counted) before a value is read.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import onnx

from jobs.domain import onnx_data, tensor_data
from jobs.domain.files import io_specs, uses_external_data
from jobs.domain.onnx_runtime import reason_of
from jobs.domain.redact import library_message
from jobs.domain.status import FailureType
from jobs.engine.runners.base import JobFailure, Results, RunContext, Runner, Space, register
from jobs.engine.runners.profile import profile_model
from jobs.engine.scratch import local_path
from jobs.models import ArtifactKind, Dataset, Job, MLModel

OUTPUT_ARTIFACT = "output_data.h5"
CPU = "CPUExecutionProvider"
# The GPU providers an inference job runs on, best first. (AzureExecutionProvider, which every
# onnxruntime wheel lists, calls a remote endpoint: no hardware of the device.)
GPU = ("CUDAExecutionProvider",)
# ONNX Runtime's names of the tensor types a tensors dataset holds, as numpy names them.
ORT_TYPES = {
    "tensor(float)": "float32", "tensor(double)": "float64", "tensor(float16)": "float16",
    "tensor(int8)": "int8", "tensor(int16)": "int16", "tensor(int32)": "int32",
    "tensor(int64)": "int64", "tensor(uint8)": "uint8", "tensor(uint16)": "uint16",
    "tensor(uint32)": "uint32", "tensor(uint64)": "uint64", "tensor(bool)": "bool",
}  # fmt: skip


@register
class InferenceRunner(Runner):
    kind = "inference"

    def space_needed(self, job: Job) -> Space:
        # The outputs are not known before the model runs; as many bytes as the inputs is the
        # estimate. They are kept twice (the artifact and the dataset); the work folder holds
        # the model (unpacked when stored with its data) and the outputs as they are written.
        model = _model_of(job)
        values = tensor_data.value_bytes(job.dataset.metadata) if job.dataset else 0
        space = Space(media=2 * values, work=2 * (model.size or 0) + values)
        if job.hyperparameters.get("profile"):
            # profile.json and the profiler's trace, as for a profile job (the profile loads the
            # model already in the work folder)
            space = Space(media=space.media + (1 << 22), work=space.work + (1 << 24))
        return space

    def run(self, ctx: RunContext) -> Results:
        job, reporter = ctx.job, ctx.reporter
        model, dataset = _model_of(job), _dataset_of(job)
        model_label = f"model {model.public_id} ({model.name})"
        data_label = f"dataset {dataset.public_id} ({dataset.name})"
        path, specs = _load_model(model, model_label, ctx.workdir / "model")
        reporter.check_stop()
        described = _describe_inputs(dataset, data_label)
        problems = tensor_data.misfits(described["entries"], specs)
        if problems:
            raise JobFailure(
                FailureType.INVALID_DATASET,
                f"{data_label[0].upper()}{data_label[1:]} does not fit the inputs of "
                f"{model_label}: {'; '.join(problems)}.",
            )
        samples = int(described["samples"])
        profiles = bool(job.hyperparameters.get("profile"))
        reporter.progress(training_samples=samples, steps_completed=0)
        reporter.check_stop()
        session = _session(path, _providers(job), model_label)
        outputs = _output_names(session, model_label)
        providers = list(session.get_providers())
        reporter.progress(ran_on=f"ONNX Runtime: {', '.join(providers)}"[:200])
        reporter.log(
            f"Loaded {model_label} on {', '.join(providers)}; running {samples} "
            f"sample{'s' if samples != 1 else ''} of {data_label}"
            + (", then profiling it." if profiles else ".")
        )
        entries = tensor_data.read(local_path(dataset.file), described["file_format"])
        written = ctx.workdir / OUTPUT_ARTIFACT
        shown, seconds = _run_samples(ctx, session, entries, samples, outputs, written)
        profiled = None
        if profiles:
            # The profile loads the model afresh in a process of its own: this session and the
            # inputs are let go first, so they take no memory from what it measures.
            del session, entries
            profiled = profile_model(ctx, model, path, steps_before=samples, ran_on=False)
        reporter.artifact(ArtifactKind.OUTPUT_DATA, OUTPUT_ARTIFACT, written)
        # Read back as any upload is (a file the hub wrote: no child needed), so the dataset's
        # description is what a job reading it will find.
        metadata = tensor_data.describe_here(written, OUTPUT_ARTIFACT)
        made = reporter.produced_dataset(written, f"Outputs of {job.name}"[:200], metadata)
        summary: dict[str, Any] = {}
        if profiled is not None:  # the profile's figures, as a profile job's summary has them
            summary = {**profiled.summary, "profile_providers": profiled.summary["providers"]}
        summary.update(
            samples=samples, outputs=shown, seconds=round(seconds, 6), providers=providers
        )
        reporter.progress(summary=summary)
        message = (
            f"Ran {model_label} on {samples} sample{'s' if samples != 1 else ''} with "
            f"{', '.join(providers)}: {_duration(seconds)} "
            f"({_duration(seconds / samples)} a sample)."
        )
        checked = (
            f"Outputs stored: {OUTPUT_ARTIFACT} (seed 000's h5 layout; "
            f"{', '.join(outputs)}, {metadata['samples']} samples each, read back) and "
            f"dataset {made.public_id}, usable as another job's inputs."
        )
        if profiled is not None:
            message, checked = f"{message} {profiled.message}", f"{checked} {profiled.checked}"
        return Results(message=message, checked=checked)


def _duration(seconds: float) -> str:
    return f"{seconds:.3f} s" if seconds >= 1 else f"{seconds * 1000:.3f} ms"


def _model_of(job: Job) -> MLModel:
    first = job.job_inputs.select_related("model").order_by("position").first()
    if first is None:
        raise JobFailure(FailureType.INVALID_MODEL, "The job has no model to run.")
    return first.model


def _dataset_of(job: Job) -> Dataset:
    dataset = job.dataset
    if dataset is None or dataset.format != tensor_data.TENSOR_FORMAT:
        raise JobFailure(
            FailureType.INVALID_DATASET,
            "An inference job runs on a tensors dataset (seed 000's h5 layout or a .npz); this "
            "job has none.",
        )
    return dataset


def _load_model(model: MLModel, label: str, into: Path) -> tuple[Path, dict[str, Any]]:
    """The ONNX file to run (unpacked with its data when stored so) and its inputs' specs
    ({name: {"shape", "dtype"}}), read from the graph itself rather than the stored metadata."""
    stored = local_path(model.file)
    if not stored.is_file():
        raise JobFailure(FailureType.INTERNAL_ERROR, f"The stored file of {label} is missing.")
    try:
        if stored.name.endswith(".zip"):
            # Stored with its data (jobs.domain.onnx_data): the data file's locations are
            # checked again as it is unpacked, and read from this job's folder.
            path = onnx_data.stored_folder(stored, into, label)
            proto = onnx.load(str(path), load_external_data=False)
        else:
            path = stored
            proto = onnx.load(str(path), load_external_data=False)
            # Never the data files a single stored .onnx names: uploads refuse such files, and
            # a path in a stored model is not the hub's to follow (ONNX Runtime would).
            if uses_external_data(proto):
                raise ValueError("it keeps tensor data in separate files")
    except Exception as error:
        raise JobFailure(
            FailureType.INVALID_MODEL,
            f"{label} is not a valid ONNX model: {library_message(error)}",
        ) from None
    graph = proto.graph
    weights = {t.name for t in graph.initializer}
    return path, io_specs([i for i in graph.input if i.name not in weights])


def _describe_inputs(dataset: Dataset, label: str) -> dict[str, Any]:
    path = local_path(dataset.file)
    if not path.is_file():
        raise JobFailure(FailureType.INTERNAL_ERROR, f"The stored file of {label} is missing.")
    try:
        return tensor_data.describe(path, path.name)
    except tensor_data.BadTensors as bad:
        raise JobFailure(FailureType.INVALID_DATASET, f"{label}: {bad}") from None


def _providers(job: Job) -> list[str]:
    """ONNX Runtime's execution providers for seed 000's ``--compute_unit`` on this worker,
    best first: cpu the CPU's, gpu the GPU's (the CPU's too, for the operators the GPU provider
    lacks, as ONNX Runtime places them), all (the default) every one the device has."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    units = set(job.hyperparameters.get("parsed", {}).get("compute_unit") or ["all"])
    gpus = [p for p in GPU if p in available]
    if "gpu" in units and not gpus:
        device = job.ran_device.name if job.ran_device else "this worker's device"
        shown = ", ".join(p for p in available if p != "AzureExecutionProvider")
        raise JobFailure(
            FailureType.INVALID_PARAMETERS,
            f"--compute_unit gpu asks for a GPU, and device {device} has none that ONNX Runtime "
            f"can use (its execution providers: {shown}). Run it with --compute_unit cpu, or on "
            "a device with the attribute accelerator:cuda.",
        )
    return [*(gpus if units & {"gpu", "all"} else []), CPU]


def _session(path: Path, providers: list[str], label: str) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: a refusal is reported as the job's failure
    try:
        session = ort.InferenceSession(str(path), options, providers=providers)
    except Exception as error:  # onnxruntime's Fail, InvalidGraph, … share no useful base
        raise JobFailure(
            FailureType.INVALID_MODEL,
            f"ONNX Runtime {ort.__version__} cannot load {label} on {', '.join(providers)}: "
            f"{reason_of(str(error))}",
        ) from None
    missing = [p for p in providers if p not in session.get_providers()]
    if missing:
        # ONNX Runtime falls back to the CPU with a warning when a provider cannot start (a
        # CUDA library missing on the worker): the hub's fault, not the model's.
        raise JobFailure(
            FailureType.INTERNAL_ERROR,
            f"{', '.join(missing)} did not start on this worker, whose device announces it; "
            "the operator should check its CUDA installation.",
        )
    return session


def _output_names(session: Any, label: str) -> list[str]:
    """The model's outputs, each a tensor a tensors dataset can hold (not a sequence, a map or
    strings), in order."""
    for output in session.get_outputs():
        if output.type not in ORT_TYPES:
            raise JobFailure(
                FailureType.INVALID_MODEL,
                f"Output {output.name!r} of {label} is {output.type}; an inference job stores "
                f"tensors of {', '.join(sorted(set(ORT_TYPES.values())))}.",
            )
        try:
            tensor_data.check_name(output.name)
        except tensor_data.BadTensors as bad:
            raise JobFailure(
                FailureType.INVALID_MODEL, f"An output of {label} cannot be stored: {bad}"
            ) from None
    return [output.name for output in session.get_outputs()]


def _run_samples(
    ctx: RunContext,
    session: Any,
    entries: tensor_data.Entries,
    samples: int,
    outputs: list[str],
    path: Path,
) -> tuple[list[dict[str, Any]], float]:
    """Run every sample, writing its outputs as it goes; (what the page shows of the outputs,
    seconds spent in ONNX Runtime)."""
    reporter = ctx.reporter
    writer = tensor_data.H5Writer(path, outputs)
    seconds = 0.0
    try:
        for j in range(samples):
            reporter.check_stop()
            feeds = {name: arrays[j] for name, arrays in entries.items()}
            started = time.perf_counter()
            try:
                results = session.run(outputs, feeds)
            except Exception as error:
                raise JobFailure(
                    FailureType.INVALID_DATASET,
                    f"The model could not run on sample {j} of the inputs: {reason_of(str(error))}",
                ) from None
            seconds += time.perf_counter() - started
            writer.add(results)
            reporter.progress(steps_completed=j + 1)
    except BaseException:
        writer.abandon()
        raise
    return writer.close(), seconds
