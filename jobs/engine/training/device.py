"""What hardware a worker trains on, and which numeric precision it can use there."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Device:
    kind: str  # "cuda" or "cpu"
    label: str  # recorded on the job: "cuda:0 NVIDIA H100 80GB HBM3" or "cpu (2 threads)"
    count: int  # GPUs, or 1 for the CPU
    bf16: bool  # bfloat16 arithmetic supported and worth using

    @property
    def is_gpu(self) -> bool:
        return self.kind == "cuda"


NVIDIA_GPUS = Path("/proc/driver/nvidia/gpus")  # one entry per GPU the driver sees


@functools.cache
def has_gpu() -> bool:
    """Whether this machine can train on a GPU. Asked on every claim, so a machine without the
    NVIDIA driver answers without importing torch (seconds, for a link job that needs none)."""
    if not (NVIDIA_GPUS.is_dir() and any(NVIDIA_GPUS.iterdir())):
        return False
    import torch

    return bool(torch.cuda.is_available() and torch.cuda.device_count() > 0)


def detect(*, want: str, threads: int) -> Device:
    """The device a job that asks for ``want`` ("gpu", "cpu" or "any") runs on here."""
    import torch

    if want != "cpu" and has_gpu():
        count = torch.cuda.device_count()
        names = {torch.cuda.get_device_name(i) for i in range(count)}
        label = f"cuda:0 {' + '.join(sorted(names))}" + (f" ×{count}" if count > 1 else "")
        return Device("cuda", label, count, bool(torch.cuda.is_bf16_supported()))
    return Device("cpu", f"cpu ({threads} thread{'s' if threads != 1 else ''})", 1, False)


def precision_flags(precision: str, device: Device) -> dict[str, bool]:
    """TrainingArguments' bf16/fp16 for the job's ``precision`` on this device. "auto" is
    bfloat16 where the GPU supports it; a CPU always trains in float32 (the submit refuses
    bf16 and fp16 for jobs that ask for the CPU)."""
    if not device.is_gpu:
        return {"bf16": False, "fp16": False}
    if precision == "auto":
        return {"bf16": device.bf16, "fp16": False}
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}
