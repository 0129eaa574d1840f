"""What a profile job plans, known at submit: how many timed runs it makes, within how many
seconds, and whether the model can fit in the memory of the device it names.

Kept apart from the compare-profiles read (jobs.domain.profiles) because the Job model reads the
plan for its progress (runs done of runs planned) and so may import nothing that imports it.
"""

from __future__ import annotations

from typing import Any

from jobs.domain.disk import size_text

DEFAULT_ITERATIONS = 100  # timed runs when --max_profiler_iterations is not given
DEFAULT_MAX_TIME = 600.0  # seconds of timed runs at most, when --max_profiler_time is not given
# Untimed runs before the timed ones: the first run of a session allocates its memory arena and
# initializes lazily, which is no part of the model's steady latency.
WARMUP_RUNS = 5
# Runs of the separate session with ONNX Runtime's profiler on, for the per-layer times (the
# first of them, cold, is left out): the timed runs run without the profiler, which costs time.
PROFILED_RUNS = 10

# How many times its own size a model needs in memory while a profile measures it. Creating a
# session holds the model about twice at its peak: the tensors parsed from the file, and the
# initializers ONNX Runtime copies or prepacks into its own layout. benchmarks/profile_fidelity.py
# measures it: with a 200 MB model, the cold load peaked 2.04 times its size above the profiling
# process's start, the warm load 2.10, the timed runs 1.10. Three leaves room for the
# activations of a large input and for the worker beside it; a device with less memory than
# that would swap or have the worker killed, so the profile is refused at submit.
MEMORY_FACTOR = 3


def planned_runs(hyperparameters: dict[str, Any]) -> int:
    """The timed runs a profile job asked for (``--max_profiler_iterations``, default 100)."""
    parsed = hyperparameters.get("parsed") or {}
    return int(parsed.get("max_profiler_iterations") or DEFAULT_ITERATIONS)


def max_seconds(hyperparameters: dict[str, Any]) -> float:
    """The seconds the timed runs may take at most (``--max_profiler_time``, default 600)."""
    parsed = hyperparameters.get("parsed") or {}
    return float(parsed.get("max_profiler_time") or DEFAULT_MAX_TIME)


def model_bytes(size: int | None, metadata: dict[str, Any]) -> int:
    """The bytes of a stored ONNX model: its file, or its files unpacked when it is stored with
    its external data in a zip (their total is in its metadata)."""
    return max(int(size or 0), int(metadata.get("total_size") or 0))


def memory_needed(model_size: int) -> int:
    return model_size * MEMORY_FACTOR


def refusal(
    units: list[str], model_size: int, devices: list[tuple[str, list[str], int]]
) -> tuple[str, str] | None:
    """Why a profile cannot run on any of ``devices`` (name, attributes, memory in bytes: the
    device the job names, or every device that may take it), as (field, message); None if one
    of them can run it. A GPU asked of devices without CUDA, or a model whose profile needs
    more memory than the largest of them has."""
    if not devices:
        return None
    if "gpu" in units:
        with_gpu = [d for d in devices if "accelerator:cuda" in d[1]]
        if not with_gpu:
            where = (
                f"device {devices[0][0]} has none"
                if len(devices) == 1
                else f"no device that may take it has one ({', '.join(d[0] for d in devices[:5])})"
            )
            return (
                "options",
                f"--compute_unit gpu asks for a GPU, and {where}: no accelerator:cuda. Profile "
                "it with --compute_unit cpu, or on a device with accelerator:cuda.",
            )
        devices = with_gpu
    name, _, memory = max(devices, key=lambda d: d[2])
    needed = memory_needed(model_size)
    if memory and needed > memory:
        largest = "" if len(devices) == 1 else ", the largest that may take it,"
        return (
            "model",
            f"The model is {size_text(model_size)}; profiling it takes about {MEMORY_FACTOR} "
            f"times that ({size_text(needed)}), and device {name}{largest} has "
            f"{size_text(memory)} of memory. Profile it on a device with more memory, or a "
            "smaller version of it (compiled to float16 or int8).",
        )
    return None
