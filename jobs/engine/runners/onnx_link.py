"""Linking ONNX models: every input graph side by side in one model, with weight tensors that are
identical across (or within) the inputs stored once, and a check with onnxruntime that each graph
still gives its source model's outputs."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import (
    GraphProto,
    ModelProto,
    TensorProto,
    compose,
    helper,
    numpy_helper,
    version_converter,
)

from jobs.domain import onnx_runtime
from jobs.domain.onnx_data import all_tensors
from jobs.domain.onnx_inputs import check_input_size, sample_dims
from jobs.domain.redact import library_message

# Protobuf serialises at most 2 GiB in one message: a linked model whose tensors pass this (with
# room for its graph) is saved with its weights in a data file beside it. A test lowers it.
ONE_FILE_LIMIT = 2**31 - 64 * 2**20


def needs_external_data(model: ModelProto) -> bool:
    """Whether ``model`` is too large for one .onnx file (its tensors measured one by one: the
    whole may be too large for protobuf to measure)."""
    return sum(tensor.ByteSize() for tensor in all_tensors(model)) > ONE_FILE_LIMIT


class LinkError(Exception):
    """The inputs cannot be linked; the message names the model at fault."""


class TooMuchMemory(LinkError):
    """Running a model on test inputs needs more memory than the hub gives verification."""


@dataclass
class LinkInput:
    prefix: str  # e.g. "m0/": every name of this input's graph gets it
    model: ModelProto
    label: str  # how messages name this model, e.g. "model mabc (classifier)"
    info: dict[str, Any] = field(default_factory=dict)  # copied into the manifest


@dataclass
class LinkResult:
    model: ModelProto
    manifest: dict[str, Any]


def _default_opset(model: ModelProto) -> int:
    return next((imp.version for imp in model.opset_import if imp.domain in ("", "ai.onnx")), 0)


def _graph_inputs(graph: GraphProto) -> list[str]:
    initializers = {t.name for t in graph.initializer}
    return [i.name for i in graph.input if i.name not in initializers]


def _subgraphs(node: onnx.NodeProto) -> Iterable[GraphProto]:
    for attribute in node.attribute:
        if attribute.type == onnx.AttributeProto.GRAPH:
            yield attribute.g
        elif attribute.type == onnx.AttributeProto.GRAPHS:
            yield from attribute.graphs


def _rename_uses(graph: GraphProto, renames: dict[str, str]) -> None:
    """Point every node input (subgraphs included: they may use outer weights) at the new names."""
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in renames:
                node.input[i] = renames[name]
        for subgraph in _subgraphs(node):
            _rename_uses(subgraph, renames)


def _tensor_key(tensor: TensorProto) -> str:
    array = numpy_helper.to_array(tensor)
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _unify_opsets(inputs: Sequence[LinkInput]) -> tuple[list[ModelProto], dict[str, int]]:
    versions: dict[str, int] = {}
    for item in inputs:
        for imp in item.model.opset_import:
            domain = "" if imp.domain == "ai.onnx" else imp.domain
            versions[domain] = max(versions.get(domain, 0), imp.version)
    target = versions.get("", 0)
    models = []
    for item in inputs:
        model, current = item.model, _default_opset(item.model)
        if current != target:
            try:
                model = version_converter.convert_version(model, target)
            except Exception as error:
                raise LinkError(
                    f"{item.label} uses opset {current} and cannot be converted to opset {target}, "
                    f"which another input needs: {library_message(error, 200)}"
                ) from None
            item.info["converted_from_opset"] = current
        models.append(model)
    return models, versions


def link_models(inputs: Sequence[LinkInput]) -> LinkResult:
    if not inputs:
        raise LinkError("Nothing to link.")
    models, opsets = _unify_opsets(inputs)
    graphs = [
        compose.add_prefix(model, item.prefix).graph
        for model, item in zip(models, inputs, strict=True)
    ]

    # Group weight tensors by content; a content seen more than once is stored once.
    occurrences: dict[str, list[TensorProto]] = defaultdict(list)
    kept: list[TensorProto] = []
    for graph in graphs:
        overridable = {
            i.name for i in graph.input
        }  # an initializer that is also an input can be fed
        for tensor in graph.initializer:
            if tensor.name in overridable:
                kept.append(tensor)
            else:
                occurrences[_tensor_key(tensor)].append(tensor)
    renames: dict[str, str] = {}
    shared: list[dict[str, Any]] = []
    bytes_saved = 0
    for key, tensors in occurrences.items():
        if len(tensors) == 1:
            kept.append(tensors[0])
            continue
        canonical = TensorProto()
        canonical.CopyFrom(tensors[0])
        canonical.name = f"shared/{key[:16]}"
        kept.append(canonical)
        size = numpy_helper.to_array(canonical).nbytes
        bytes_saved += size * (len(tensors) - 1)
        for tensor in tensors:
            renames[tensor.name] = canonical.name
        shared.append(
            {
                "name": canonical.name,
                "dtype": str(numpy_helper.to_array(canonical).dtype),
                "shape": list(canonical.dims),
                "bytes": size,
                "used_as": [t.name for t in tensors],
            }
        )
    for graph in graphs:
        _rename_uses(graph, renames)

    linked_graph = helper.make_graph(
        nodes=[node for graph in graphs for node in graph.node],
        name="linked",
        inputs=[value for graph in graphs for value in graph.input],
        outputs=[value for graph in graphs for value in graph.output],
        initializer=kept,
        value_info=[value for graph in graphs for value in graph.value_info],
    )
    linked = helper.make_model(
        linked_graph,
        opset_imports=[
            helper.make_opsetid(domain, version) for domain, version in sorted(opsets.items())
        ],
        ir_version=max(model.ir_version for model in models),
        producer_name="model-job-hub",
    )
    for model in models:
        linked.functions.extend(model.functions)
    try:
        onnx.checker.check_model(linked)
    except onnx.checker.ValidationError as error:
        raise LinkError(f"The linked model is not valid ONNX: {library_message(error)}") from None

    manifest = {
        "graph": "linked",
        "opsets": {domain or "ai.onnx": version for domain, version in sorted(opsets.items())},
        "models": [
            {
                **item.info,
                "prefix": item.prefix,
                "inputs": {name: item.prefix + name for name in _graph_inputs(model.graph)},
                "outputs": {o.name: item.prefix + o.name for o in model.graph.output},
            }
            for model, item in zip(models, inputs, strict=True)
        ],
        "shared_tensors": shared,
        "bytes_saved": bytes_saved,
    }
    return LinkResult(linked, manifest)


# Verification

_RANDOM = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
}
_INTEGER = {
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
}


def _sample(kind: str, shape: list[Any], rng: np.random.Generator, label: str) -> np.ndarray:
    dims = sample_dims(shape)
    if kind in _RANDOM:
        return rng.standard_normal(dims).astype(_RANDOM[kind])
    if kind in _INTEGER:
        # 0 and 1 are valid wherever integers index something (token ids, class ids).
        return rng.integers(0, 2, size=dims).astype(_INTEGER[kind])
    if kind == "tensor(bool)":
        return rng.random(dims) < 0.5
    raise LinkError(f"{label}: cannot make a test input of type {kind} to verify the link.")


def _itemsize(kind: str) -> int:
    known = (
        _RANDOM.get(kind) or _INTEGER.get(kind) or (np.bool_ if kind == "tensor(bool)" else None)
    )
    return np.dtype(known).itemsize if known is not None else 1


_ENV_ALLOCATOR_REGISTERED = False


def _bounded_session_options() -> tuple[Any, Any]:
    """Session and run options under which onnxruntime allocates from one arena capped at
    HUB_MAX_VERIFY_MEMORY_BYTES (registered once per process), given back after every run: a
    model of a few bytes can compute a tensor of gigabytes (an Expand to a huge shape), and
    verifying it must fail, not take the worker's memory."""
    import onnxruntime as ort
    from django.conf import settings

    global _ENV_ALLOCATOR_REGISTERED
    if not _ENV_ALLOCATOR_REGISTERED:
        same_as_requested = 1  # grow by what a run needs, not by powers of two
        arena = ort.OrtArenaCfg(settings.HUB_MAX_VERIFY_MEMORY_BYTES, same_as_requested, -1, -1)
        cpu = ort.OrtMemoryInfo(
            "Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT
        )
        ort.create_and_register_allocator(cpu, arena)
        _ENV_ALLOCATOR_REGISTERED = True
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.add_session_config_entry("session.use_env_allocators", "1")
    run = ort.RunOptions()
    run.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    return options, run


def _run(session: Any, names: list[str] | None, feeds: dict[str, Any], run: Any, label: str) -> Any:
    from django.conf import settings

    try:
        return session.run(names, feeds, run)
    except Exception as error:  # onnxruntime's own exception types, one per status code
        if "Available memory of" not in str(error):
            raise
        raise TooMuchMemory(
            f"{label} needs more than {settings.HUB_MAX_VERIFY_MEMORY_BYTES} bytes of memory to "
            "run on test inputs (HUB_MAX_VERIFY_MEMORY_BYTES)."
        ) from None


class UnloadableModel(Exception):
    """onnxruntime refuses an input model: the user's to fix (its message says how)."""


def verify_linked(target: Path, sources: Sequence[tuple[str, Path, str]], seed: int = 0) -> int:
    """Run every source model and the linked target on the same random inputs and require the
    same outputs; returns the number of outputs compared."""
    import onnxruntime as ort

    options, run = _bounded_session_options()
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    expected: dict[str, np.ndarray] = {}
    for prefix, path, label in sources:
        try:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime's own exception types, one per status code
            # A file stored before uploads were checked with onnxruntime (jobs/domain/onnx_runtime).
            raise UnloadableModel(
                f"{label} cannot be loaded by onnxruntime: {onnx_runtime.reason_of(str(error))} "
                "Upload it again: the upload converts or explains what to change."
            ) from None
        for i in session.get_inputs():
            check_input_size(i.name, i.shape, _itemsize(i.type), label)
        inputs = {i.name: _sample(i.type, list(i.shape), rng, label) for i in session.get_inputs()}
        outputs = _run(session, None, inputs, run, label)
        feeds.update({prefix + name: value for name, value in inputs.items()})
        for meta, value in zip(session.get_outputs(), outputs, strict=True):
            expected[prefix + meta.name] = value
    linked = ort.InferenceSession(str(target), options, providers=["CPUExecutionProvider"])
    names = list(expected)
    for name, value in zip(names, _run(linked, names, feeds, run, "the linked model"), strict=True):
        if value.shape != expected[name].shape or not np.allclose(
            value, expected[name], rtol=1e-5, atol=1e-6
        ):
            worst = (
                float(np.max(np.abs(value.astype(np.float64) - expected[name])))
                if value.shape == expected[name].shape
                else None
            )
            raise LinkError(
                f"Output {name} of the linked model differs from its source (largest difference {worst})."
            )
    return len(names)
