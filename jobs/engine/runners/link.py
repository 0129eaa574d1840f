"""Link jobs: one or more ONNX models into one target model."""

from __future__ import annotations

import json
from pathlib import Path

import onnx

from jobs.domain import hf_models, onnx_data
from jobs.domain.files import describe_graph, uses_external_data
from jobs.domain.onnx_inputs import InputTooLarge
from jobs.domain.redact import library_message
from jobs.domain.status import FailureType
from jobs.engine.runners.base import JobFailure, RunContext, Runner, Space, Target, register
from jobs.engine.runners.onnx_link import (
    LinkError,
    LinkInput,
    TooMuchMemory,
    UnloadableModel,
    link_models,
    needs_external_data,
    verify_linked,
)
from jobs.engine.scratch import local_path
from jobs.models import ArtifactKind, Job, ModelFormat


def _first_line(error: Exception) -> str:
    return library_message(error)


@register
class LinkRunner(Runner):
    kind = "link"

    def space_needed(self, job: Job) -> Space:
        # The target holds every input's graph and weights once; it is written in the work
        # folder (beside the inputs stored with their data, unpacked there), then stored.
        total = sum(i.model.size or 0 for i in job.job_inputs.select_related("model"))
        return Space(media=total, work=3 * total)

    def run(self, ctx: RunContext) -> Target:
        job, reporter = ctx.job, ctx.reporter
        inputs: list[LinkInput] = []
        sources = []
        job_inputs = list(job.job_inputs.select_related("model"))
        for job_input in job_inputs:
            reporter.check_stop()
            model = job_input.model
            label = f"model {model.public_id} ({model.name})"
            try:
                # Outside the check below: a storage that does not answer is not a bad model.
                stored = str(local_path(model.file))
            except FileNotFoundError:
                raise JobFailure(
                    FailureType.INTERNAL_ERROR, f"The stored file of {label} is missing."
                ) from None
            try:
                path = _input_path(stored, ctx.workdir / f"m{job_input.position}", label)
                proto = onnx.load(str(path), load_external_data=False)
                if path.name == onnx_data.MODEL_NAME:
                    # Stored with its data (jobs.domain.onnx_data): the locations were checked
                    # again as it was unpacked into this job's folder, and are read from there.
                    onnx.checker.check_model(str(path))
                    onnx.load_external_data_for_model(proto, str(path.parent))
                else:
                    # Never the data files a single stored .onnx names: uploads refuse such
                    # files, and a path in a stored model is not the hub's to follow.
                    if uses_external_data(proto):
                        raise ValueError("it keeps tensor data in separate files")
                    onnx.checker.check_model(proto)
            except FileNotFoundError:
                raise JobFailure(
                    FailureType.INTERNAL_ERROR, f"The stored file of {label} is missing."
                ) from None
            except Exception as error:
                raise JobFailure(
                    FailureType.INVALID_MODEL,
                    f"{label} is not a valid ONNX model: {_first_line(error)}",
                ) from None
            prefix = f"m{job_input.position}/"
            info = {
                "position": job_input.position,
                "model": model.public_id,
                "name": model.name,
                "sha256": model.sha256,
            }
            inputs.append(LinkInput(prefix=prefix, model=proto, label=label, info=info))
            sources.append((prefix, str(path), label))
            reporter.log(
                f"Loaded {label}: {len(proto.graph.node)} nodes, {len(proto.graph.initializer)} weight tensors."
            )
        reporter.check_stop()
        try:
            result = link_models(inputs)
        except LinkError as error:
            raise JobFailure(FailureType.INVALID_MODEL, str(error)) from None
        # What the model page shows of an uploaded ONNX model (IR version, opsets, …), read
        # before saving: saving with external data moves the weights out of the model.
        metadata = {
            **describe_graph(result.model),
            "opsets": result.manifest["opsets"],
            "linked_from": [m["model"] for m in result.manifest["models"]],
        }
        path = _save_target(result.model, ctx.workdir, metadata)
        manifest = ctx.workdir / "manifest.json"
        manifest.write_text(json.dumps(result.manifest, indent=2))
        reporter.artifact(ArtifactKind.MANIFEST, "manifest.json", manifest)
        shared = result.manifest["shared_tensors"]
        summary = (
            f"Linked {len(inputs)} model{'s' if len(inputs) != 1 else ''} into one target model; "
            f"{len(shared)} identical weight tensor{'s' if len(shared) != 1 else ''} stored once "
            f"({result.manifest['bytes_saved']} bytes saved)."
        )
        if metadata["external_data"]:
            summary += (
                f" It passes protobuf's 2 GB limit for one file, so its weights are in "
                f"{onnx_data.DATA_NAME} beside {onnx_data.MODEL_NAME}, served as one zip."
            )
        reporter.log(summary)
        return Target(
            path,
            f"{job.name}.onnx",
            ModelFormat.ONNX,
            metadata,
            summary,
            extra={"sources": sources},
        )

    def verify(self, ctx: RunContext, target: Target, stored) -> str:  # type: ignore[no-untyped-def]
        try:
            if stored.name.endswith(".zip"):  # saved with its data: checked as an upload is
                stored = onnx_data.stored_folder(stored, ctx.workdir / "verify", "the target")
            compared = verify_linked(stored, target.extra["sources"])
        except (InputTooLarge, TooMuchMemory, UnloadableModel) as error:
            raise JobFailure(FailureType.INVALID_MODEL, str(error)) from None
        except LinkError as error:
            raise JobFailure(
                FailureType.INTERNAL_ERROR, f"The linked model failed verification: {error}"
            ) from None
        return f"Target model verified with onnxruntime: all {compared} outputs match their source models."


def _input_path(stored: str, into: Path, label: str) -> Path:
    """The ONNX file to load for a stored input model: the stored file, or, for a model stored
    with its data file (a zip, jobs.domain.onnx_data), model.onnx unpacked into ``into``."""
    if not stored.endswith(".zip"):
        return Path(stored)
    return onnx_data.stored_folder(Path(stored), into, label)


def _save_target(model: onnx.ModelProto, workdir: Path, metadata: dict) -> Path:
    """Save the linked model in one .onnx file, or, past what protobuf writes in one file
    (2 GB), as model.onnx with its weights in model.onnx.data, zipped as uploads of such
    models are stored; ``metadata`` gains the files and their total size."""
    if not needs_external_data(model):
        path = workdir / "linked.onnx"
        onnx.save(model, str(path))
        metadata["external_data"] = False
        return path
    folder = workdir / "linked"
    folder.mkdir()
    onnx.save(
        model,
        str(folder / onnx_data.MODEL_NAME),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=onnx_data.DATA_NAME,
        size_threshold=1024,
    )
    files = sorted(p for p in folder.iterdir() if p.is_file())
    metadata["files"] = {p.name: p.stat().st_size for p in files}
    metadata["total_size"] = sum(metadata["files"].values())
    metadata["external_data"] = True
    return hf_models.normalised_zip(folder, workdir / "linked.zip")
