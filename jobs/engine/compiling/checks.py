"""What a compile job's target is checked by before the job is ready: it loads in ONNX Runtime
with the device's execution providers, and gives the source's outputs on sample inputs (the
calibration samples when the job has them, else seeded random inputs of the fixed shapes)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jobs.domain.onnx_runtime import reason_of
from jobs.domain.status import FailureType
from jobs.engine.compiling import CompileFailure
from jobs.engine.compiling.passes import unloadable

CPU = "CPUExecutionProvider"
# The GPU providers a compile job checks its target on, best first. (AzureExecutionProvider,
# which every onnxruntime wheel lists, calls a remote endpoint: no hardware of the device.)
GPU = ("CUDAExecutionProvider",)
COMPARED_SAMPLES = 16  # calibration samples the outputs are compared on, at most
RANDOM_SAMPLES = 4
RANDOM_SEED = 0
SMALL_INTEGERS = 2  # integer inputs no table bounds: 0 and 1 (masks, flags, positions)
# ONNX Runtime's tensor types the compile job makes inputs of and compares outputs of, as numpy
# names them (ONNX Runtime's Python API takes no bfloat16, float8 or 4-bit arrays).
COMPARABLE = {
    "tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
    "tensor(int8)": "int8", "tensor(int16)": "int16", "tensor(int32)": "int32",
    "tensor(int64)": "int64", "tensor(uint8)": "uint8", "tensor(uint16)": "uint16",
    "tensor(uint32)": "uint32", "tensor(uint64)": "uint64", "tensor(bool)": "bool",
}  # fmt: skip
COMPARABLE_WORDS = "float (16, 32, 64 bits), integer (8 to 64 bits, signed or not) and bool tensors"


class RunFailed(Exception):
    """ONNX Runtime refused to run the model on one of the samples: which, and its words."""

    def __init__(self, sample: int, said: str) -> None:
        super().__init__(said)
        self.sample = sample
        self.said = said


def providers_for(available: list[str], compute_unit: list[str] | None, device: str) -> list[str]:
    """The providers the target must load with on this device, best first: its GPU provider
    and the CPU's for ``--compute_unit all`` (the default), one of them for ``gpu`` or
    ``cpu``. A GPU asked for on a device that has none is the user's mistake, named."""
    units = set(compute_unit or ["all"])
    chosen = []
    if units & {"gpu", "all"}:
        chosen += [p for p in GPU if p in available]
    if units & {"cpu", "all"}:
        chosen.append(CPU)
    if not chosen:
        raise CompileFailure(
            FailureType.INVALID_PARAMETERS,
            f"--compute_unit gpu: device {device} has no GPU provider (it runs "
            f"{', '.join(p for p in available if p not in ('AzureExecutionProvider',))}). Submit "
            "it to a device with accelerator:cuda, or with --compute_unit cpu.",
        )
    return chosen


def session(path: Path, providers: list[str], *, reference: bool = False) -> Any:
    """An ONNX Runtime session of the model on ``providers``; CompileFailure naming the op a
    provider cannot run. ``reference``: the source as written (no graph optimization), on
    the CPU, whose outputs the target's are compared with."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: a refusal is reported as the job's failure
    if reference:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    elif CPU not in providers:
        # --compute_unit gpu: a node the GPU provider cannot run must fail the load, naming
        # it, rather than run on the CPU unseen. (Written for CUDA workers; this hub's test
        # machines have no GPU, so this path is not run by its tests.)
        options.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    try:
        loaded = ort.InferenceSession(str(path), options, providers=providers)
    except Exception as error:  # onnxruntime's Fail, InvalidGraph, … share no useful base
        raise CompileFailure(FailureType.INVALID_MODEL, unloadable(error, providers)) from None
    missing = [p for p in providers if p not in loaded.get_providers()]
    if missing:
        # onnxruntime falls back to the CPU with a warning when a provider cannot start (a
        # CUDA library missing on the worker): the hub's fault, not the model's.
        raise CompileFailure(
            FailureType.INTERNAL_ERROR,
            f"{', '.join(missing)} did not start on this worker, whose device announces it; "
            "the operator should check its CUDA installation.",
        )
    return loaded


def index_bounds(model: Any) -> dict[str, int]:
    """Integer inputs that index a table of the model (the indices of a Gather whose data is
    an initializer, as token ids index an embedding): {input: rows}. Random values past that
    would fail the source itself."""
    tables = {t.name: list(t.dims) for t in model.graph.initializer}
    bounds: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type == "Gather" and len(node.input) == 2 and node.input[0] in tables:
            axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
            dims = tables[node.input[0]]
            rows = int(dims[axis]) if -len(dims) <= axis < len(dims) else 0
            if rows > 0:
                name = node.input[1]
                bounds[name] = min(bounds.get(name, rows), rows)
    return bounds


def random_samples(
    specs: dict[str, dict[str, Any]], bounds: dict[str, int]
) -> list[dict[str, np.ndarray]]:
    """Seeded random inputs of the fixed shapes and dtypes: normal floats, integers within
    the table they index (else small ones), booleans."""
    rng = np.random.default_rng(RANDOM_SEED)
    samples = []
    for _ in range(RANDOM_SAMPLES):
        sample = {}
        for name, spec in specs.items():
            dtype, shape = np.dtype(spec["dtype"]), spec["shape"]
            if dtype.kind == "f":
                sample[name] = rng.standard_normal(shape).astype(dtype)
            elif dtype.kind == "b":
                sample[name] = rng.integers(0, 2, shape).astype(bool)
            else:
                high = bounds.get(name, SMALL_INTEGERS)
                sample[name] = rng.integers(0, high, shape).astype(dtype)
        samples.append(sample)
    return samples


def calibration_samples(
    entries: dict[str, list[np.ndarray]], specs: dict[str, dict[str, Any]], label: str
) -> list[dict[str, np.ndarray]]:
    """The calibration dataset as one dict per sample, checked against the fixed inputs (the
    submit checked its description; this is what the file holds)."""
    problems = [f"missing {name!r}" for name in specs if name not in entries]
    problems += [f"{name!r} is not an input of the model" for name in entries if name not in specs]
    for name, spec in specs.items():
        for j, array in enumerate(entries.get(name, [])):
            if list(array.shape) != spec["shape"] or array.dtype.name != spec["dtype"]:
                problems.append(
                    f"{name!r} sample {j} is {array.dtype.name} {list(array.shape)}, the model "
                    f"takes {spec['dtype']} {spec['shape']}"
                )
                break
    if problems:
        raise CompileFailure(
            FailureType.INVALID_DATASET,
            f"{label} does not fit the model's inputs: {'; '.join(problems)}.",
        )
    count = len(next(iter(entries.values()))) if entries else 0
    return [{name: entries[name][j] for name in specs} for j in range(count)]


def comparable(loaded: Any, label: str) -> None:
    """The model's inputs are tensors the job can make samples of, and its outputs tensors it
    can compare; CompileFailure naming the first that is not (a string input, a classifier's
    sequence of maps)."""
    for value in loaded.get_inputs():
        if value.type not in COMPARABLE:
            raise CompileFailure(
                FailureType.INVALID_MODEL,
                f"Input {value.name!r} of {label} is {value.type}; a compile job checks its target "
                f"by running both on sample inputs, which it makes of {COMPARABLE_WORDS} only.",
            )
    for value in loaded.get_outputs():
        if value.type not in COMPARABLE:
            zipmap = (
                " (a ZipMap's: convert the classifier with zipmap=False)"
                if "map(" in value.type
                else ""
            )
            raise CompileFailure(
                FailureType.INVALID_MODEL,
                f"Output {value.name!r} of {label} is {value.type}{zipmap}; a compile job checks "
                f"its target by comparing its outputs with the source's, {COMPARABLE_WORDS} only.",
            )


def run_all(loaded: Any, samples: list[dict[str, np.ndarray]]) -> list[list[np.ndarray]]:
    """The model's outputs on each sample, each input given in the dtype the model takes (a
    target with --quantize_io takes float16 where the source took float32; its types checked by
    comparable()); RunFailed naming the first sample ONNX Runtime refuses to run it on."""
    takes = {i.name: np.dtype(COMPARABLE[i.type]) for i in loaded.get_inputs()}
    outputs = []
    for j, sample in enumerate(samples):
        feeds = {name: value.astype(takes.get(name, value.dtype), copy=False)
                 for name, value in sample.items()}  # fmt: skip
        try:
            outputs.append(loaded.run(None, feeds))
        except Exception as error:  # onnxruntime's RuntimeException, Fail, … share no base
            raise RunFailed(j, reason_of(str(error))) from None
    return outputs


@dataclass(frozen=True)
class Comparison:
    samples: int
    max_abs_difference: dict[str, float]

    @property
    def largest(self) -> float:
        return max(self.max_abs_difference.values(), default=0.0)


def compare(
    names: list[str], expected: list[list[np.ndarray]], actual: list[list[np.ndarray]]
) -> Comparison:
    """The largest absolute difference of each output over the samples. An output of another
    shape is the hub's fault; one that overflows where the source's is finite (float16's range
    ends at 65504) is the model's, named."""
    largest = dict.fromkeys(names, 0.0)
    for want, got in zip(expected, actual, strict=True):
        for name, a, b in zip(names, want, got, strict=True):
            if a.shape != b.shape:
                raise CompileFailure(
                    FailureType.INTERNAL_ERROR,
                    f"The compiled model's output {name!r} has shape {list(b.shape)}; the "
                    f"source's has {list(a.shape)}.",
                )
            source, target = a.astype(np.float64), b.astype(np.float64)
            finite = np.isfinite(source)
            if np.any(finite & ~np.isfinite(target)):
                raise CompileFailure(
                    FailureType.INVALID_MODEL,
                    f"The compiled model's output {name!r} is infinite or NaN where the source's "
                    "is a number: its values pass the range of the compiled type (float16 ends "
                    "at 65504). Compile it without that --quantize_full_type.",
                )
            if np.any(finite):
                difference = float(np.max(np.abs(source[finite] - target[finite])))
                largest[name] = max(largest[name], difference)
    return Comparison(len(expected), largest)
