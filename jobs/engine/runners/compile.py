"""Compile jobs (seed 000), on ONNX Runtime on the device the job names: an ONNX model (or a
Hugging Face causal LM, exported to ONNX first) made into a target model for the device.

The run, a stage per line of the job's log: the source as ONNX; its inputs' dimensions fixed
(input_specs); the source's outputs computed on sample inputs (a source ONNX Runtime cannot run
fails here, as the model's fault, in ONNX Runtime's words); ONNX Runtime's offline graph
optimizations at the portable (basic) level; float16 or int8 if asked (int8 static with the
job's calibration dataset, dynamic without); the target loaded with the device's execution
providers. Verification runs the stored target on the same inputs and records the largest
difference of each output in job.summary.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hubsite import object_storage
from jobs.domain import onnx_data, tensor_data
from jobs.domain.devices import this_machine
from jobs.domain.disk import size_text
from jobs.domain.files import describe_graph
from jobs.domain.redact import library_message
from jobs.domain.status import FailureType
from jobs.engine.compiling import CompileFailure, checks, passes
from jobs.engine.compiling.source import files_size, label_of, prepare
from jobs.engine.reporter import Reporter
from jobs.engine.runners.base import JobFailure, RunContext, Runner, Space, Target, register
from jobs.engine.scratch import local_path
from jobs.models import Dataset, Job, MLModel, ModelFormat

# What a target model's metadata says it was compiled with, beside the graph's description.
WITH = ("target_runtime", "quantize_full_type", "calibration", "quantize_io")
HF_EXPORT_FACTOR = 3  # the export's ONNX beside the unpacked weights, then the passes' copies


def _source_model(job: Job) -> MLModel:
    return job.job_inputs.select_related("model").get(position=0).model


@register
class CompileRunner(Runner):
    kind = "compile"

    def space_needed(self, job: Job) -> Space:
        # The target is at most the source's size (float32 kept), written once in the work
        # folder per pass (fixed, optimized, quantized) beside the source; a Hugging Face
        # model's export is about its float32 weights.
        model = _source_model(job)
        size = model.size or 0
        if model.format == ModelFormat.HF:
            size = max(size, 4 * int(model.metadata.get("parameters") or 0))
        return Space(media=size, work=(4 + HF_EXPORT_FACTOR) * size)

    def run(self, ctx: RunContext) -> Target:
        try:
            return self._compile(ctx)
        except CompileFailure as failure:
            raise JobFailure(failure.failure_type, failure.message) from None

    def _compile(self, ctx: RunContext) -> Target:
        job, reporter, workdir = ctx.job, ctx.reporter, ctx.workdir
        parsed: dict[str, Any] = job.hyperparameters.get("parsed") or {}
        quantize = parsed.get("quantize_full_type")
        quantize_io = bool(parsed.get("quantize_io"))
        device = this_machine()
        providers = checks.providers_for(device.providers, parsed.get("compute_unit"), device.name)
        model = _source_model(job)
        label = label_of(model)

        if model.format == ModelFormat.HF:
            reporter.log(f"Exporting {label} to ONNX with torch.onnx (float32, logits only).")
        else:
            reporter.log(f"Reading {label}.")
        source = prepare(model, workdir / "source")
        source_size = files_size(source.path)
        large = passes.is_large(source.path)
        reporter.log(f"Source ONNX model: {size_text(source_size)}.")
        reporter.check_stop()

        fixed_path, fixed = passes.fix_shapes(
            source.path, job.hyperparameters.get("input_specs") or {}
        )
        reporter.log(
            "Input shapes fixed: "
            + "; ".join(f"{n} {s['shape']} {s['dtype']}" for n, s in fixed.items())
            + "."
        )
        calibration = self._calibration(job.dataset, fixed, reporter)
        reporter.check_stop()
        # The source runs first: a model ONNX Runtime cannot run fails as itself, before the
        # passes (the quantizer runs it too, and would say so in its own words).
        compare_on = self._reference(reporter, fixed_path, fixed, calibration, label, job.dataset)
        reporter.check_stop()

        target, made = self._passes(ctx, fixed_path, calibration, large, providers)
        passes.loadable_ir(target)
        reporter.log(f"Loading the target with ONNX Runtime on {', '.join(providers)}.")
        loaded = checks.session(target, providers)
        del loaded  # verify() loads the stored file; this load fails early, naming the op
        reporter.check_stop()

        return self._target(
            ctx,
            model,
            target,
            {
                "target_runtime": "onnx",
                "quantize_full_type": quantize,
                "calibration": made,
                "quantize_io": quantize_io,
                "input_specs": fixed,
                "source_size": source_size,
            },
            {**compare_on, "providers": providers},
        )

    @staticmethod
    def _passes(
        ctx: RunContext,
        fixed_path: Path,
        calibration: list[dict[str, Any]],
        large: bool,
        providers: list[str],
    ) -> tuple[Path, str | None]:
        """The optimized model, then float16 or int8 if asked; the target's path and how int8
        was calibrated ("static", "dynamic"; None when not int8)."""
        reporter, workdir = ctx.reporter, ctx.workdir
        parsed: dict[str, Any] = ctx.job.hyperparameters.get("parsed") or {}
        reporter.log("Optimizing the graph with ONNX Runtime (basic level: portable).")
        target = passes.optimize(fixed_path, workdir / "optimized", large)
        reporter.check_stop()
        made = None
        if parsed.get("quantize_full_type") == "float16":
            quantize_io = bool(parsed.get("quantize_io"))
            io = "inputs and outputs float16 too" if quantize_io else "inputs and outputs kept"
            reporter.log(f"Converting weights and compute to float16 ({io}).")
            target = passes.to_float16(target, workdir / "float16", keep_io_types=not quantize_io)
        elif parsed.get("quantize_full_type") == "int8":
            how = (
                f"static, calibrated on {len(calibration)} samples"
                if calibration
                else "dynamic: no calibration data"
            )
            reporter.log(f"Quantizing to int8 ({how}).")
            target, made = passes.to_int8(
                target, workdir / "int8", large, calibration or None, providers
            )
        reporter.check_stop()
        return target, made

    @staticmethod
    def _reference(
        reporter: Reporter,
        fixed_path: Path,
        fixed: dict[str, Any],
        calibration: list[dict[str, Any]],
        label: str,
        dataset: Dataset | None,
    ) -> dict[str, Any]:
        """The sample inputs (calibration samples, else seeded random ones) and the source's
        outputs on them, as written (no graph optimization, on the CPU): what verify()
        compares the stored target with. A source ONNX Runtime cannot run on them is the
        model's failure, in ONNX Runtime's words."""
        reference = checks.session(fixed_path, [checks.CPU], reference=True)
        checks.comparable(reference, label)
        if calibration:
            samples = calibration[: checks.COMPARED_SAMPLES]
        else:
            import onnx

            graph = onnx.load(str(fixed_path), load_external_data=False)
            samples = checks.random_samples(fixed, checks.index_bounds(graph))
        reporter.log(f"Running the source on {len(samples)} sample inputs, to compare with.")
        try:
            expected = checks.run_all(reference, samples)
        except checks.RunFailed as failed:
            raise CompileFailure(
                FailureType.INVALID_MODEL,
                f"{label} fails when ONNX Runtime runs it on "
                f"{_samples_words(failed.sample, fixed, dataset)}: {failed.said}",
            ) from None
        return {
            "samples": samples,
            "expected": expected,
            "names": [o.name for o in reference.get_outputs()],
        }

    @staticmethod
    def _calibration(
        dataset: Dataset | None, fixed: dict[str, Any], reporter: Reporter
    ) -> list[dict[str, Any]]:
        """The calibration samples, read and checked against the fixed inputs; [] without."""
        if dataset is None:
            return []
        label = f"Calibration dataset {dataset.public_id} ({dataset.name})"
        try:
            # Fetched outside the check below: a storage that does not answer is not bad data.
            stored = local_path(dataset.file)
            entries = tensor_data.read(stored, str(dataset.metadata.get("file_format", "h5")))
        except FileNotFoundError:
            raise CompileFailure(
                FailureType.INTERNAL_ERROR, f"The stored file of {label} is missing."
            ) from None
        except Exception as error:  # h5py and numpy raise many kinds on a damaged file
            if object_storage.unreachable(error):
                raise
            raise CompileFailure(
                FailureType.INVALID_DATASET, f"{label} cannot be read: {library_message(error)}"
            ) from None
        samples = checks.calibration_samples(entries, fixed, label)
        reporter.log(f"{label}: {len(samples)} samples fit the model's inputs.")
        return samples

    @staticmethod
    def _target(
        ctx: RunContext,
        model: MLModel,
        path: Path,
        compiled: dict[str, Any],
        extra: dict[str, Any],
    ) -> Target:
        import onnx
        import onnxruntime

        proto = onnx.load(str(path), load_external_data=False)
        target_size = files_size(path)
        stored = passes.packaged(path, ctx.workdir)
        metadata = {
            **describe_graph(proto),
            "external_data": stored.suffix == ".zip",
            "compiled_from": model.public_id,
            "compiled_with": {
                **{k: compiled[k] for k in WITH},
                "graph_optimization": "basic",
                "onnxruntime": onnxruntime.__version__,
                "providers": extra["providers"],
            },
        }
        what = ["basic graph optimizations"]
        if compiled["quantize_full_type"] == "float16":
            what.append(
                "float16" + ("" if compiled["quantize_io"] else " (inputs and outputs float32)")
            )
        elif compiled["quantize_full_type"] == "int8":
            what.append(f"int8 ({compiled['calibration']})")
        message = (
            f"Compiled {label_of(model)} for ONNX Runtime: {', '.join(what)}; "
            f"{size_text(compiled['source_size'])} → {size_text(target_size)}, "
            f"{len(proto.graph.node)} nodes."
        )
        # Named after its source and what was done to it ("mlp (float16)"), as a merged model is
        # after its job: the model list then tells a source from its compiled versions.
        kind = compiled["quantize_full_type"] or "optimized"
        return Target(
            stored,
            f"{model.name} ({kind}, {ctx.job.public_id})"[:200],
            ModelFormat.ONNX,
            metadata,
            message,
            extra={**extra, "summary": compiled},
        )

    def verify(self, ctx: RunContext, target: Target, stored: Path) -> str:
        """The stored target loads on the device's providers and its outputs on the samples
        are measured against the source's; the differences go to job.summary."""
        extra = target.extra
        try:
            path = stored
            if stored.name.endswith(".zip"):  # saved with its data: checked as an upload is
                path = onnx_data.stored_folder(stored, ctx.workdir / "verify", "the target")
            loaded = checks.session(path, extra["providers"])
            ctx.reporter.check_stop()
            actual = checks.run_all(loaded, extra["samples"])
            comparison = checks.compare(extra["names"], extra["expected"], actual)
        except CompileFailure as failure:
            raise JobFailure(failure.failure_type, failure.message) from None
        except checks.RunFailed as failed:
            raise _target_fails(
                extra["summary"]["quantize_full_type"], extra["providers"], failed
            ) from None
        except ValueError as error:  # the stored zip is not what was written
            raise JobFailure(
                FailureType.INTERNAL_ERROR, f"The stored target cannot be read: {error}"
            ) from None
        summary = {
            **extra["summary"],
            "providers": list(loaded.get_providers()),
            "compared_samples": comparison.samples,
            "max_abs_difference": comparison.max_abs_difference,
            "largest_difference": comparison.largest,
            "target_size": stored.stat().st_size,
        }
        ctx.reporter.progress(summary=summary)
        each = ", ".join(f"{n} {d:.2e}" for n, d in comparison.max_abs_difference.items())
        return (
            f"Target model verified with ONNX Runtime on {', '.join(summary['providers'])}: it "
            f"loads, and on {comparison.samples} sample inputs its outputs differ from the "
            f"source's by at most {comparison.largest:.2e} ({each})."
        )


def _samples_words(sample: int, fixed: dict[str, Any], dataset: Dataset | None) -> str:
    """Which inputs the source was run on, for its failure: the calibration sample, or the
    random inputs of its fixed shapes (which the user chose with input_specs)."""
    if dataset is not None:
        return f"sample {sample} of calibration dataset {dataset.public_id} ({dataset.name})"
    shapes = "; ".join(f"{name} {s['shape']} {s['dtype']}" for name, s in fixed.items())
    return f"random inputs of its input shapes ({shapes})"


def _target_fails(
    quantized: str | None, providers: list[str], failed: checks.RunFailed
) -> JobFailure:
    """The target ONNX Runtime refuses to run where its source ran: what the job changed is
    the cause. A conversion the user asked for, or the device's GPU provider, is the user's to
    leave out; the portable graph optimizations alone are ONNX Runtime's fault, not the model's."""
    said = (
        f"The compiled model fails when ONNX Runtime runs it on {', '.join(providers)}, on sample "
        f"{failed.sample} of the inputs its source ran on: {failed.said}"
    )
    if quantized:
        return JobFailure(
            FailureType.INVALID_MODEL,
            f"{said} Compile it without --quantize_full_type {quantized}.",
        )
    if any(p != checks.CPU for p in providers):
        return JobFailure(FailureType.INVALID_MODEL, f"{said} Compile it with --compute_unit cpu.")
    return JobFailure(
        FailureType.INTERNAL_ERROR,
        f"{said} ONNX Runtime's basic graph optimizations alone made it from the source: a fault "
        "of ONNX Runtime's, which the hub's operator should report to its developers.",
    )
