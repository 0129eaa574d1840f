"""Link jobs: one or more ONNX models into one target model."""

from __future__ import annotations

import json

import onnx

from jobs.domain.files import uses_external_data
from jobs.domain.onnx_inputs import InputTooLarge
from jobs.domain.status import FailureType
from jobs.engine.runners.base import JobFailure, RunContext, Runner, Space, Target, register
from jobs.engine.runners.onnx_link import (
    LinkError,
    LinkInput,
    TooMuchMemory,
    UnloadableModel,
    link_models,
    verify_linked,
)
from jobs.models import ArtifactKind, Job, ModelFormat


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:300]


@register
class LinkRunner(Runner):
    kind = "link"

    def space_needed(self, job: Job) -> Space:
        # The target holds every input's graph and weights once; it is written in the work
        # folder, then stored.
        total = sum(i.model.size or 0 for i in job.job_inputs.select_related("model"))
        return Space(media=total, work=total)

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
                # Never the data files a model names: uploads are refused if they use any
                # (jobs.domain.files), and a path in a stored model is not the hub's to follow.
                proto = onnx.load(model.file.path, load_external_data=False)
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
            sources.append((prefix, model.file.path, label))
            reporter.log(
                f"Loaded {label}: {len(proto.graph.node)} nodes, {len(proto.graph.initializer)} weight tensors."
            )
        reporter.check_stop()
        try:
            result = link_models(inputs)
        except LinkError as error:
            raise JobFailure(FailureType.INVALID_MODEL, str(error)) from None
        path = ctx.workdir / "linked.onnx"
        onnx.save(result.model, path)
        manifest = ctx.workdir / "manifest.json"
        manifest.write_text(json.dumps(result.manifest, indent=2))
        reporter.artifact(ArtifactKind.MANIFEST, "manifest.json", manifest)
        shared = result.manifest["shared_tensors"]
        summary = (
            f"Linked {len(inputs)} model{'s' if len(inputs) != 1 else ''} into one target model; "
            f"{len(shared)} identical weight tensor{'s' if len(shared) != 1 else ''} stored once "
            f"({result.manifest['bytes_saved']} bytes saved)."
        )
        reporter.log(summary)
        graph = result.model.graph
        initializers = {t.name for t in graph.initializer}
        metadata = {
            "inputs": [i.name for i in graph.input if i.name not in initializers],
            "outputs": [o.name for o in graph.output],
            "opsets": result.manifest["opsets"],
            "linked_from": [m["model"] for m in result.manifest["models"]],
        }
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
            compared = verify_linked(stored, target.extra["sources"])
        except (InputTooLarge, TooMuchMemory, UnloadableModel) as error:
            raise JobFailure(FailureType.INVALID_MODEL, str(error)) from None
        except LinkError as error:
            raise JobFailure(
                FailureType.INTERNAL_ERROR, f"The linked model failed verification: {error}"
            ) from None
        return f"Target model verified with onnxruntime: all {compared} outputs match their source models."
