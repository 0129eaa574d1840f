"""The passes that make a compile job's target from its source, each reading one .onnx and
writing a new one in a folder of its own (with ``model.onnx.data`` beside it when the model is
past what protobuf writes in one file): fixed input shapes, ONNX Runtime's offline graph
optimizations at the portable level, then float16 or int8 if asked."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from jobs.domain import onnx_data, onnx_runtime
from jobs.domain.redact import library_message
from jobs.domain.status import FailureType
from jobs.engine.compiling import CompileFailure
from jobs.engine.runners.onnx_link import ONE_FILE_LIMIT, needs_external_data

logger = logging.getLogger(__name__)

FIXED_NAME = "fixed.onnx"
# Nodes that only a quantized model has: what tells that ONNX Runtime's quantizer found
# something to quantize (it leaves a model it cannot quantize as it was, without a word).
QUANTIZED_OPS = frozenset(
    {
        "QuantizeLinear",
        "DynamicQuantizeLinear",
        "MatMulInteger",
        "ConvInteger",
        "DynamicQuantizeMatMul",
        "DynamicQuantizeLSTM",
        "QAttention",
        "QGemm",
    }
)


def unloadable(error: Exception, providers: list[str]) -> str:
    """ONNX Runtime's refusal to load a model, in words that name the op it cannot run (on
    which provider, when it is a kernel the provider lacks)."""
    text = str(error)
    runs_on = ", ".join(providers)
    if found := onnx_runtime.NO_KERNEL.search(text):
        op, version, node = found.groups()
        where = f"node {node!r}" if node else "a node"
        return (
            f"ONNX Runtime's {runs_on} cannot run {where}: op {op} (opset {version}) has no "
            "implementation there for the types it is given."
        )
    return f"ONNX Runtime ({runs_on}) does not load it: {onnx_runtime.reason_of(text)}"


def is_large(path: Path) -> bool:
    """Whether the model (its file and data file) is past what one .onnx file may hold."""
    return sum(p.stat().st_size for p in path.parent.iterdir() if p.is_file()) > ONE_FILE_LIMIT


def _save(model: Any, folder: Path, large: bool) -> Path:
    """A whole model (its tensors in memory) saved as ``folder``/model.onnx."""
    import onnx

    folder.mkdir()
    path = folder / onnx_data.MODEL_NAME
    if large or needs_external_data(model):
        onnx.save(
            model,
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=onnx_data.DATA_NAME,
            size_threshold=1024,
        )
    else:
        onnx.save(model, str(path))
    return path


def fix_shapes(source: Path, specs: dict[str, dict[str, Any]]) -> tuple[Path, dict[str, Any]]:
    """The source with every input's dimensions fixed (``specs`` for the inputs it names, the
    declared shape for the others, which must then be fixed already), its intermediate and
    output shapes inferred again from them. Written beside the source (it shares its data
    file, which is not read). Returns the path and every input's fixed shape and dtype."""
    import onnx

    from jobs.domain.files import io_specs

    model = onnx.load(str(source), load_external_data=False)
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    inputs = [value for value in graph.input if value.name not in initializers]
    declared = io_specs(inputs)
    fixed: dict[str, Any] = {}
    for value in inputs:
        shape = specs.get(value.name, declared[value.name])["shape"]
        dims = value.type.tensor_type.shape.dim
        if len(shape) != len(dims) or not all(isinstance(d, int) and d > 0 for d in shape):
            raise CompileFailure(
                FailureType.INVALID_PARAMETERS,
                f"Input {value.name!r} has shape {declared[value.name]['shape']}; give "
                "input_specs with a fixed shape for it.",
            )
        for dim, size in zip(dims, shape, strict=True):
            dim.Clear()
            dim.dim_value = size
        fixed[value.name] = {"shape": list(shape), "dtype": declared[value.name]["dtype"]}
    # The exporter's shapes inside the graph and of its outputs name the dynamic dimensions
    # that are now fixed: forgotten, then inferred again from the fixed inputs.
    del graph.value_info[:]
    for value in graph.output:
        for dim in value.type.tensor_type.shape.dim:
            if not dim.HasField("dim_value"):
                dim.Clear()
    path = source.with_name(FIXED_NAME)
    onnx.save(model, str(path))
    try:
        onnx.shape_inference.infer_shapes_path(str(path), str(path), data_prop=True)
    except Exception as error:  # onnx's InferenceError and ValidationError share no base
        raise CompileFailure(
            FailureType.INVALID_PARAMETERS,
            f"The input shapes {fixed} do not fit the model's graph: {library_message(error)}",
        ) from None
    return path, fixed


def optimize(source: Path, folder: Path, large: bool) -> Path:
    """ONNX Runtime's offline graph optimizations at the basic level: constant folding,
    redundant nodes removed, and fusions into standard ONNX ops only (MatMul + Add → Gemm).
    The extended level fuses into com.microsoft contrib ops that only some providers run, and
    the layout level rewrites for the memory layout of the CPU it runs on (NCHWc): ONNX
    Runtime's own documentation says a model saved after those must run on the same provider
    and hardware. The basic level keeps the target a model every provider and device loads.
    Run on the CPU provider: the basic rewrites are the same for every provider."""
    import onnxruntime as ort

    folder.mkdir()
    path = folder / onnx_data.MODEL_NAME
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(path)
    options.log_severity_level = 3  # errors only; a refusal is reported as the job's failure
    external = _has_external_data(source)
    if external:
        # Without these, ONNX Runtime's saved model names the source's data file where it
        # was: its tensors go to a data file of the pass's own folder instead.
        options.add_session_config_entry(
            "session.optimized_model_external_initializers_file_name", onnx_data.DATA_NAME
        )
        options.add_session_config_entry(
            "session.optimized_model_external_initializers_min_size_in_bytes", "1024"
        )
    try:
        ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime's Fail, InvalidGraph, … share no useful base
        raise CompileFailure(
            FailureType.INVALID_MODEL, unloadable(error, ["CPUExecutionProvider"])
        ) from None
    if external and not large:  # small enough for one file: the weights go inside
        _inline(path)
    _keep_used_opsets(path)
    return path


def _has_external_data(path: Path) -> bool:
    import onnx

    return bool(onnx_data.external_tensors(onnx.load(str(path), load_external_data=False)))


def _inline(path: Path) -> None:
    """The model and its data file in folder ``path.parent`` made one file."""
    import onnx

    model = onnx.load(str(path))  # its tensors read from the data file
    onnx.save(model, str(path))
    (path.parent / onnx_data.DATA_NAME).unlink(missing_ok=True)


def _graphs(model: Any) -> Iterator[Any]:
    """The model's graph and every subgraph (of If, Loop, Scan)."""
    pending = [model.graph]
    while pending:
        graph = pending.pop()
        yield graph
        for node in graph.node:
            for attribute in node.attribute:
                if attribute.HasField("g"):
                    pending.append(attribute.g)
                pending.extend(attribute.graphs)


def op_types(model: Any) -> list[str]:
    return sorted({node.op_type for graph in _graphs(model) for node in graph.node})


def _keep_used_opsets(path: Path) -> None:
    """ONNX Runtime writes an import of every domain it knows (training, NCHWc, ATen…); the
    target keeps those its nodes use, so that it says what a runtime needs to run it."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    used = {node.domain for graph in _graphs(model) for node in graph.node}
    kept = [i for i in model.opset_import if i.domain in ("", "ai.onnx") or i.domain in used]
    if len(kept) != len(model.opset_import):
        del model.opset_import[:]
        model.opset_import.extend(kept)
        onnx.save(model, str(path))  # its data file, if any, is where it was: the same folder


def to_float16(source: Path, folder: Path, keep_io_types: bool) -> Path:
    """Float16 weights and compute (onnxruntime.transformers' converter). Ops the converter
    knows to have no float16 form stay float32 behind Cast nodes; on the CPU provider, ONNX
    Runtime itself computes in float32 the float16 nodes it has no float16 kernel for. With
    ``keep_io_types`` the inputs and outputs stay float32 (Cast nodes at the edges)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    try:
        # Given the path, the converter infers shapes from the file, as for a model past 2 GB.
        model = convert_float_to_float16(str(source), keep_io_types=keep_io_types)
    except Exception as error:
        raise CompileFailure(
            FailureType.INVALID_MODEL,
            f"ONNX Runtime's float16 converter cannot convert it: {library_message(error)}",
        ) from None
    return _save(model, folder, large=False)


class Calibration:
    """onnxruntime.quantization's CalibrationDataReader over the job's calibration samples
    (a dict per sample: input name → array). Made as a subclass when built, so that the
    quantization package is imported only by a job that quantizes."""

    @staticmethod
    def reader(samples: list[dict[str, np.ndarray]]) -> Any:
        from onnxruntime.quantization import CalibrationDataReader

        class Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self._samples = iter(samples)

            def get_next(self) -> dict[str, np.ndarray] | None:
                return next(self._samples, None)

        return Reader()


def to_int8(
    source: Path,
    folder: Path,
    large: bool,
    calibration: list[dict[str, np.ndarray]] | None,
    providers: list[str],
) -> tuple[Path, str]:
    """int8 with ONNX Runtime's quantizer: static (QDQ: QuantizeLinear/DequantizeLinear around
    each quantized op, activation ranges measured on the calibration samples) when there are
    samples, dynamic (weights int8 ahead of time, activations quantized as it runs) without.
    Returns the path and "static" or "dynamic"."""
    from onnxruntime.quantization import (
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_dynamic,
        quantize_static,
    )

    folder.mkdir()
    prepared = folder / "prepared.onnx"
    path = folder / onnx_data.MODEL_NAME
    try:
        # The quantizer's own preparation: symbolic shape inference, which it needs to find
        # what to quantize in transformer graphs (the optimization was done by optimize()).
        quant_pre_process(
            str(source),
            str(prepared),
            skip_optimization=True,
            save_as_external_data=large,
            all_tensors_to_one_file=True,
            external_data_location="prepared.onnx.data",
        )
    except Exception as error:  # some graphs defeat symbolic shape inference
        # A warning goes to the job's log (jobs.engine.joblogging): the quantizer then works
        # from ONNX's own shape inference, and may leave more of the graph float.
        logger.warning(
            "The quantizer's preparation (symbolic shape inference) failed on this graph (%s); "
            "quantizing without it.",
            library_message(error, 200),
        )
        prepared = source
    try:
        if calibration:
            # CUDA's QDQ kernels (and TensorRT) take symmetric activations only; the CPU
            # provider runs either, and asymmetric ones keep more of a ReLU's range.
            symmetric = any(p != "CPUExecutionProvider" for p in providers)
            quantize_static(
                str(prepared),
                str(path),
                Calibration.reader(calibration),
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                use_external_data_format=large,
                extra_options={"ActivationSymmetric": symmetric},
                # 7-bit weights: x86 CPUs without VNNI (AVX2 only) multiply int8 pairs with an
                # instruction that saturates in 16 bits, and full-range weights then give
                # outputs off by a third of their range (measured here: 5.2 of 13.8 on a
                # two-layer perceptron; 0.41 with this). The model must run right on every
                # device it is compiled for, VNNI or not.
                reduce_range=True,
            )
            made = "static"
        else:
            # Unsigned weights: the CPU provider's ConvInteger takes uint8 weights only (int8
            # ones load nowhere on a CPU), and its MatMulInteger takes both.
            quantize_dynamic(
                str(prepared),
                str(path),
                weight_type=QuantType.QUInt8,
                use_external_data_format=large,
            )
            made = "dynamic"
    except Exception as error:  # the quantizer's refusals are many and untyped
        raise CompileFailure(
            FailureType.INVALID_MODEL,
            f"ONNX Runtime's quantizer cannot quantize it to int8: {library_message(error)}",
        ) from None
    for leftover in folder.glob("prepared.onnx*"):
        leftover.unlink()
    _require_quantized(path)
    return path, made


def _require_quantized(path: Path) -> None:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    ops = op_types(model)
    if not any(op in QUANTIZED_OPS or op.startswith("QLinear") for op in ops):
        raise CompileFailure(
            FailureType.INVALID_MODEL,
            "ONNX Runtime's quantizer found nothing to quantize to int8 in this model (its ops: "
            f"{', '.join(ops)}); it quantizes ops such as MatMul, Gemm, Conv, Gather and "
            "Attention. Compile it without --quantize_full_type int8, or with float16.",
        )


def loadable_ir(path: Path) -> None:
    """The model's IR version lowered, in place, to the newest onnxruntime reads when a pass
    wrote a newer one (the onnx package stamps its own newest): the stamp of the file format,
    not of what the graph uses, which the load check then confirms."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    newest = onnx_runtime.runtime().max_ir
    if model.ir_version > newest:
        model.ir_version = newest
        onnx.save(model, str(path))


def packaged(path: Path, workdir: Path) -> Path:
    """The target as stored: the .onnx alone, or, with its data file, both in a zip as the hub
    stores an uploaded model with its data (jobs.domain.onnx_data)."""
    from jobs.domain import hf_models

    if not (path.parent / onnx_data.DATA_NAME).exists():
        return path
    return hf_models.normalised_zip(path.parent, workdir / "compiled.zip")
