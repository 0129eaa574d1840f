"""The measurements of a profile, on ONNX Runtime: which execution providers a compute unit
means, the inputs a model is run on, its latency figures, its per-layer times from ONNX
Runtime's profiler trace, and the memory of the process measuring it.

Plain functions of numpy and onnxruntime, no Django: the profiling child process
(jobs.engine.profiling.child) runs them, and benchmarks/profile_fidelity.py times ONNX Runtime
directly with the same inputs to check that the hub measures what it should.
"""

from __future__ import annotations

import re
import resource
import sys
from pathlib import Path
from typing import Any

import numpy as np

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
# Seed 000's compute units of the layers, by the provider that ran them.
COMPUTE_UNITS = {
    CPU: "CPU",
    CUDA: "GPU",
    "TensorrtExecutionProvider": "GPU",
    "ROCMExecutionProvider": "GPU",
    "MIGraphXExecutionProvider": "GPU",
    "DmlExecutionProvider": "GPU",
}
INPUT_SEED = 0  # the inputs of every profile: the same model is run on the same numbers
STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")
_KIB = re.compile(r"^(VmRSS|VmHWM):\s+(\d+)\s+kB$", re.MULTILINE)


class Unprofilable(Exception):
    """The model cannot be profiled as asked, for a reason its owner can act on."""


def providers_for(units: list[str], available: list[str], device: str) -> list[str]:
    """ONNX Runtime's execution providers for seed 000's ``--compute_unit`` (cpu, gpu, all),
    best first: gpu is CUDA (with the CPU for the operators CUDA lacks, as ONNX Runtime places
    them), cpu the CPU alone, all every compute provider the device has."""
    gpu = "gpu" in units or "all" in units
    if "gpu" in units and CUDA not in available:
        shown = ", ".join(p for p in available if p in COMPUTE_UNITS) or "none"
        raise Unprofilable(
            f"--compute_unit gpu asks for a GPU, and device {device} has none that ONNX Runtime "
            f"can use (its execution providers: {shown}). Profile it with --compute_unit cpu, "
            "or on a device with the attribute accelerator:cuda."
        )
    chosen = [CUDA] if gpu and CUDA in available else []
    return [*chosen, CPU]


def random_inputs(
    specs: list[tuple[str, list[Any], str]], seed: int = INPUT_SEED
) -> dict[str, Any]:
    """Seeded random inputs of fixed shapes: ``specs`` is (name, shape, ONNX Runtime's type,
    such as "tensor(float)") per input. Floats from a standard normal, integers 0 or 1 (an index
    within any table), booleans at random."""
    rng = np.random.default_rng(seed)
    feeds: dict[str, Any] = {}
    for name, shape, kind in specs:
        fixed = [d for d in shape if isinstance(d, int) and d > 0]
        if len(fixed) != len(shape):
            raise Unprofilable(
                f"input {name!r} has shape {list(shape)}: a dimension is not a fixed number. A "
                "profile measures one shape: compile the model with input_specs first."
            )
        dtype = _numpy_dtype(name, kind)
        if dtype.kind == "f":
            feeds[name] = rng.standard_normal(fixed).astype(dtype)
        elif dtype.kind == "b":
            feeds[name] = rng.integers(0, 2, fixed).astype(bool)
        else:
            feeds[name] = rng.integers(0, 2, fixed).astype(dtype)
    return feeds


NUMPY_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(int16)": "int16",
    "tensor(uint16)": "uint16",
    "tensor(int32)": "int32",
    "tensor(uint32)": "uint32",
    "tensor(int64)": "int64",
    "tensor(uint64)": "uint64",
    "tensor(bool)": "bool",
}


def _numpy_dtype(name: str, kind: str) -> np.dtype[Any]:
    if kind not in NUMPY_TYPES:
        raise Unprofilable(
            f"input {name!r} is {kind}; a profile makes random inputs of numeric and boolean "
            "tensors only."
        )
    return np.dtype(NUMPY_TYPES[kind])


def session_inputs(session: Any) -> list[tuple[str, list[Any], str]]:
    return [(i.name, list(i.shape), i.type) for i in session.get_inputs()]


def latency_stats(times_us: list[float]) -> dict[str, float]:
    """min, median, p90, max and mean of the timed runs, in microseconds (p90 interpolated
    between the runs around it, so min <= median <= p90 <= max)."""
    values = np.asarray(times_us, dtype=np.float64)
    figures = {
        "min": values.min(),
        "median": np.median(values),
        "p90": np.percentile(values, 90),
        "max": values.max(),
        "mean": values.mean(),
    }
    return {key: round(float(value), 1) for key, value in figures.items()}


def layer_times(
    events: list[dict[str, Any]], skip_runs: int = 1
) -> tuple[list[dict[str, Any]], int]:
    """Seed 000's ``execution_detail`` from ONNX Runtime's profiler trace (a Chrome trace: one
    "Node" event ``<node>_kernel_time`` per node per run, with its op type, provider and
    duration in microseconds): each node in the order it first ran, its time the mean over the
    runs after the first ``skip_runs`` (a fresh session's first run is cold). Also how many runs
    the times are of. Node names are those of the graph ONNX Runtime ran: nodes its
    optimizations fused carry a name it made (``fc/MatMulAddFusion``), with the fused op type."""
    per_node: dict[str, dict[str, Any]] = {}
    for event in events:
        if event.get("cat") != "Node" or not str(event.get("name", "")).endswith("_kernel_time"):
            continue
        name = str(event["name"])[: -len("_kernel_time")]
        args = event.get("args") or {}
        node = per_node.setdefault(
            name,
            {
                "name": name,
                "type": str(args.get("op_name", "")),
                "compute_unit": COMPUTE_UNITS.get(str(args.get("provider", "")), "CPU"),
                "times": [],
            },
        )
        node["times"].append(float(event.get("dur", 0)))
    runs = max((len(n["times"]) for n in per_node.values()), default=0)
    kept = skip_runs if runs > skip_runs else 0
    detail = [
        {
            "name": node["name"],
            "type": node["type"],
            "compute_unit": node["compute_unit"],
            # µs, a whole number as seed 000 gives it
            "execution_time": round(float(np.mean(node["times"][kept:]))),
        }
        for node in per_node.values()
    ]
    return detail, runs - kept


def op_type_times(detail: list[dict[str, Any]]) -> dict[str, int]:
    """Time per op type (µs, over one run), the slowest first."""
    totals: dict[str, int] = {}
    for layer in detail:
        totals[layer["type"]] = totals.get(layer["type"], 0) + int(layer["execution_time"])
    return dict(sorted(totals.items(), key=lambda item: (-item[1], item[0])))


def memory() -> tuple[int, int]:
    """(resident bytes now, the process's peak resident bytes since its start or the last
    ``reset_peak``). Linux reads /proc/self/status; elsewhere getrusage gives the peak only, as
    the peak since the process started (so stage peaks there are peaks so far)."""
    try:
        found = dict(_KIB.findall(STATUS.read_text()))
        return int(found["VmRSS"]) * 1024, int(found["VmHWM"]) * 1024
    except (OSError, KeyError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak *= 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB elsewhere
        return peak, peak


def reset_peak() -> bool:
    """Start a new peak at the resident memory now (Linux 4.0 and later: writing 5 to
    /proc/self/clear_refs resets VmHWM); False where the peak cannot be reset."""
    try:
        CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False
