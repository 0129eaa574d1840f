"""How measured times and memory read on the pages: seed 000 keeps times in microseconds and
memory in bytes; people read milliseconds and binary units."""

from __future__ import annotations

from typing import Any

from jobs.domain.disk import size_text

# seed 000's execution_summary keys, in the order a person reads them, with their words.
EXECUTION_LABELS = {
    "estimated_inference_time": "inference time",
    "estimated_inference_peak_memory": "peak memory while inferring",
    "first_load_time": "first (cold) load",
    "first_load_peak_memory": "peak memory, first load",
    "warm_load_time": "warm load",
    "warm_load_peak_memory": "peak memory, warm load",
    "compile_time": "compile",
    "compile_peak_memory": "peak memory, compile",
}


def ms_text(micros: Any) -> str:
    """Microseconds as milliseconds, with the digits a reader can tell apart."""
    if micros is None or micros == "" or isinstance(micros, bool):
        return "—"
    try:
        value = float(micros) / 1000
    except (TypeError, ValueError):
        return "—"
    digits = 3 if abs(value) < 10 else 2 if abs(value) < 100 else 1
    return f"{value:.{digits}f} ms"


def number_text(value: Any) -> str:
    """A value of a tensor: a float keeps four significant digits and reads as a float (2.0,
    not 2, beside an integer tensor's 2)."""
    if isinstance(value, float):
        text = f"{value:.4g}"
        return text if any(c in text for c in ".enai") else f"{text}.0"
    return str(value)


def measure_text(key: str, value: Any) -> str:
    """One execution_summary value: a time, a memory size, or (seed 000's later versions) a
    (low, high) range of either."""
    if value is None:
        return "—"
    if isinstance(value, list | tuple):
        if len(value) == 2:
            return f"{measure_text(key, value[0])} – {measure_text(key, value[1])}"
        return ", ".join(measure_text(key, v) for v in value[:5]) + (" …" if len(value) > 5 else "")
    if not isinstance(value, int | float) or isinstance(value, bool):
        return str(value)
    if key.endswith("_time"):
        return ms_text(value)
    if key.endswith("_memory"):
        return size_text(int(value))
    return number_text(value)


def memory_text(value: Any) -> str:
    return size_text(int(value)) if isinstance(value, int | float) and value >= 0 else "—"
