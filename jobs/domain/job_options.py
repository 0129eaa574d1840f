"""The ``options`` string of compile, profile and inference jobs, as seed 000's client sends it
(``"--target_runtime onnx --quantize_full_type float16"``): parsed once at submit, each option
the hub cannot honour refused by name, saying what the hub does take.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MAX_OPTIONS_LENGTH = 2000

# Seed 000's service makes these runtimes for phones and boards; the hub's workers run ONNX
# Runtime, so it makes ONNX models only.
OTHER_RUNTIMES = (
    "tflite", "qnn_lib_aarch64_android", "qnn_context_binary", "qnn_dlc", "precompiled_qnn_onnx",
    "genie",
)  # fmt: skip
QUANTIZE_TYPES = ("float16", "int8")
OTHER_QUANTIZE_TYPES = ("int16", "int4", "w8a16", "w4a8", "w4a16", "w8a8")


class BadOptions(ValueError):
    """What is wrong with the options, in words that name the option."""


@dataclass(frozen=True)
class Option:
    name: str
    parse: Callable[[str | None], Any]  # the value as given (None for a bare flag) → parsed
    help: str


def _flag(name: str) -> Callable[[str | None], bool]:
    def parse(value: str | None) -> bool:
        if value is None or value.lower() in ("true", "1", "yes"):
            return True
        if value.lower() in ("false", "0", "no"):
            return False
        raise BadOptions(f"--{name} takes no value, or true/false (got {value!r}).")

    return parse


def _choice(
    name: str, allowed: tuple[str, ...], others: tuple[str, ...] = ()
) -> Callable[[str | None], str]:
    def parse(value: str | None) -> str:
        if value is None:
            raise BadOptions(f"--{name} needs a value: {', '.join(allowed)}.")
        if value in allowed:
            return value
        if value in others:
            raise BadOptions(
                f"--{name} {value} is made by seed 000's hosted service for its devices; this "
                f"hub's workers run ONNX Runtime and take --{name} {' or '.join(allowed)}."
            )
        raise BadOptions(f"--{name} {value!r} is not one of {', '.join(allowed)}.")

    return parse


def _int(name: str, low: int, high: int) -> Callable[[str | None], int]:
    def parse(value: str | None) -> int:
        try:
            number = int(value or "")
        except ValueError:
            raise BadOptions(f"--{name} needs a whole number between {low} and {high}.") from None
        if not low <= number <= high:
            raise BadOptions(f"--{name} is {number}; it must be between {low} and {high}.")
        return number

    return parse


def _float(name: str, low: float, high: float) -> Callable[[str | None], float]:
    def parse(value: str | None) -> float:
        try:
            number = float(value or "")
        except ValueError:
            raise BadOptions(f"--{name} needs a number between {low:g} and {high:g}.") from None
        if not low <= number <= high:
            raise BadOptions(f"--{name} is {number:g}; it must be between {low:g} and {high:g}.")
        return number

    return parse


def _compute_unit(value: str | None) -> list[str]:
    """Seed 000's --compute_unit (cpu, gpu, npu, all): on the hub, which ONNX Runtime
    execution providers may run the model (npu has none here)."""
    units = [u.strip() for u in (value or "").split(",") if u.strip()]
    if not units or any(u not in ("cpu", "gpu", "all") for u in units):
        raise BadOptions(
            "--compute_unit takes cpu, gpu or all (comma-separated); this hub's devices have no "
            "npu."
        )
    return units


COMPUTE_UNIT = Option("compute_unit", _compute_unit, "cpu, gpu or all: which providers run it")
PROFILER_OPTIONS = (
    Option(
        "max_profiler_iterations",
        _int("max_profiler_iterations", 1, 10_000),
        "timed runs (default 100)",
    ),
    Option(
        "max_profiler_time",
        _float("max_profiler_time", 0.1, 3600.0),
        "seconds of timed runs at most (default 600)",
    ),
)

KINDS: dict[str, tuple[Option, ...]] = {
    "compile": (
        Option(
            "target_runtime",
            _choice("target_runtime", ("onnx",), OTHER_RUNTIMES),
            "onnx: ONNX Runtime's offline graph optimizations, kept portable",
        ),
        Option(
            "quantize_full_type",
            _choice("quantize_full_type", QUANTIZE_TYPES, OTHER_QUANTIZE_TYPES),
            "float16 (weights and compute), or int8 (static with calibration_data, dynamic "
            "without)",
        ),
        Option("quantize_io", _flag("quantize_io"), "the model's inputs and outputs too"),
        COMPUTE_UNIT,
    ),
    "profile": (*PROFILER_OPTIONS, COMPUTE_UNIT),
    # An inference job that also profiles (profile=True) takes the profiler's options; the
    # submit service refuses them for one that does not.
    "inference": (
        COMPUTE_UNIT,
        *(Option(o.name, o.parse, f"{o.help}; only with profile") for o in PROFILER_OPTIONS),
    ),
}


def parse_options(kind: str, text: str | None) -> dict[str, Any]:
    """``{"option_name": value}`` for a job of ``kind``; BadOptions names what is wrong."""
    text = (text or "").strip()
    if len(text) > MAX_OPTIONS_LENGTH:
        raise BadOptions(f"options is {len(text)} characters long; at most {MAX_OPTIONS_LENGTH}.")
    try:
        words = shlex.split(text)
    except ValueError as error:
        raise BadOptions(f"options cannot be read: {error}.") from None
    known = {option.name: option for option in KINDS[kind]}
    parsed: dict[str, Any] = {}
    i = 0
    while i < len(words):
        word = words[i]
        if not word.startswith("--") or len(word) < 3:
            raise BadOptions(f"{word!r} is not an option (options start with --).")
        name, equals, value = word[2:].partition("=")
        if name not in known:
            takes = ", ".join(f"--{n}" for n in known) or "none"
            raise BadOptions(f"--{name} is not an option of a {kind} job here; it takes {takes}.")
        if name in parsed:
            raise BadOptions(f"--{name} is given twice.")
        if not equals and i + 1 < len(words) and not words[i + 1].startswith("--"):
            value, i = words[i + 1], i + 1
        parsed[name] = known[name].parse(value if (equals or value) else None)
        i += 1
    return parsed
