"""What the job page shows of a compile, profile or inference job, read from ``job.summary``
(the shapes the runners write; see each runner's module) and put in words and units: times in
milliseconds (the summary keeps seed 000's microseconds), memory in binary units."""

from __future__ import annotations

import json
import math
from typing import Any

from django import template

from jobs.domain.disk import size_text
from jobs.domain.measures import EXECUTION_LABELS, measure_text, ms_text, number_text
from jobs.domain.selectors import User, datasets_visible_to
from jobs.models import Job, JobKind

register = template.Library()

DEFAULT_PROFILE_RUNS = 100  # jobs/domain/job_options.py: --max_profiler_iterations' default
SHOWN_VALUES = 6  # first values of an output, as tensor_data.preview keeps them


@register.filter
def ms(micros: Any) -> str:
    return ms_text(micros)


def _device_choice(job: Job) -> str:
    """What to pre-select as the device of a job made from this one: where this one ran."""
    if job.ran_device is not None:
        return job.ran_device.slug
    if job.device is not None:
        return job.device.slug
    return job.device_attribute or "any"


def _specs_text(specs: dict[str, Any]) -> str:
    """{"x": {"shape": [1, 64], "dtype": "float32"}} → "x [1, 64] float32"."""
    parts = []
    for name, spec in specs.items():
        if isinstance(spec, dict):
            shape = ", ".join(str(d) for d in spec.get("shape", []))
            parts.append(f"{name} [{shape}] {spec.get('dtype', '')}".strip())
        else:
            parts.append(f"{name} {json.dumps(spec)}")
    return "; ".join(parts)


def _compile_view(job: Job, summary: dict[str, Any]) -> dict[str, Any]:
    specs = summary.get("input_specs") or (job.hyperparameters or {}).get("input_specs") or {}
    quantized = summary.get("quantize_full_type")
    made_with = [
        ("target_runtime", summary.get("target_runtime") or "onnx"),
        ("quantize_full_type", quantized or "none (float32 kept)"),
        ("calibration", summary.get("calibration") or ("—" if quantized != "int8" else "dynamic")),
        ("quantize_io", "yes" if summary.get("quantize_io") else "no"),
        ("input_specs", _specs_text(specs) if specs else "the model's own"),
        ("providers", ", ".join(summary.get("providers") or []) or "—"),
    ]
    differences = sorted(
        (summary.get("max_abs_difference") or {}).items(), key=lambda item: -float(item[1])
    )
    source, target = summary.get("source_size"), summary.get("target_size")
    largest = summary.get("largest_difference")
    change = None
    if source and target is not None:
        change = 100.0 * (float(target) - float(source)) / float(source)
    return {
        "made_with": made_with,
        "differences": [(name, f"{float(value):.3g}") for name, value in differences],
        "largest": f"{float(largest):.3g}" if largest is not None else None,
        "compared_samples": summary.get("compared_samples"),
        "source_size": size_text(int(source)) if source is not None else None,
        "target_size": size_text(int(target)) if target is not None else None,
        "change": f"{change:+.1f}%" if change is not None else None,
        "device_choice": _device_choice(job),
    }


def _profile_view(job: Job, summary: dict[str, Any]) -> dict[str, Any]:
    parsed = (job.hyperparameters or {}).get("parsed") or {}
    execution = summary.get("execution_summary") or {}
    known = [k for k in EXECUTION_LABELS if k in execution]
    others = [k for k in execution if k not in EXECUTION_LABELS]
    latency = summary.get("latency_us") or {}
    layers = summary.get("slowest_layers") or []
    total = sum(float(t) for t in (summary.get("op_type_times") or {}).values()) or None
    return {
        "execution": [
            (EXECUTION_LABELS.get(k, k.replace("_", " ")), k, measure_text(k, execution[k]))
            for k in (*known, *others)
        ],
        "latency": [
            (k, ms(latency[k])) for k in ("min", "median", "p90", "max", "mean") if k in latency
        ],
        "planned_runs": int(parsed.get("max_profiler_iterations") or DEFAULT_PROFILE_RUNS),
        "time_cap": parsed.get("max_profiler_time"),
        "runs": summary.get("runs"),
        # Fewer runs than asked: --max_profiler_time ended them (the runner's "stopped_by").
        "stopped_by_time": summary.get("stopped_by") == "time",
        "layers": [
            {
                **layer,
                "ms": ms(layer.get("execution_time")),
                "share": f"{100.0 * float(layer.get('execution_time') or 0) / total:.1f}%"
                if total
                else "",
            }
            for layer in layers
        ],
        "chart": {
            "latency_us": latency,
            "layers": [
                {
                    "name": str(layer.get("name", "")),
                    "type": str(layer.get("type", "")),
                    "compute_unit": str(layer.get("compute_unit", "")),
                    "execution_time": float(layer.get("execution_time") or 0),
                }
                for layer in layers
            ],
        },
    }


def _outputs(outputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    shown = []
    for output in outputs:
        shapes = [list(s) for s in output.get("shapes") or []]
        same = bool(shapes) and all(s == shapes[0] for s in shapes)
        values = output.get("first_values") or []
        more = bool(shapes) and math.prod(shapes[0]) > len(values)
        shown.append(
            {
                "name": output.get("name", ""),
                "dtype": output.get("dtype", ""),
                "shapes": f"{shapes[0]} × {len(shapes)} sample{'s' * (len(shapes) != 1)}"
                if same
                else "; ".join(str(s) for s in shapes[:4]) + (" …" if len(shapes) > 4 else ""),
                "first_values": ", ".join(number_text(v) for v in values[:SHOWN_VALUES])
                + (" …" if more else ""),
            }
        )
    return shown


def _seconds_text(seconds: float) -> str:
    return ms_text(seconds * 1e6) if seconds < 1 else f"{seconds:.2f} s"


def _inference_view(job: Job, summary: dict[str, Any], user: User) -> dict[str, Any]:
    produced = list(job.produced_datasets.filter(deleted_at__isnull=True)[:1])
    output_dataset = produced[0] if produced else None
    readable = (
        output_dataset is not None
        and datasets_visible_to(user).filter(pk=output_dataset.pk).exists()
    )
    seconds = summary.get("seconds")
    samples = summary.get("samples")
    view: dict[str, Any] = {
        "samples": samples,
        "seconds": _seconds_text(float(seconds)) if seconds is not None else None,
        "per_sample": ms(1e6 * float(seconds) / samples)
        if seconds is not None and samples
        else None,
        "providers": ", ".join(summary.get("providers") or []) or None,
        "outputs": _outputs(summary.get("outputs") or []),
        "output_data": job.artifacts.filter(name="output_data.h5").first(),
        "output_dataset": output_dataset,
        "output_dataset_readable": readable,
    }
    if (job.hyperparameters or {}).get("profile"):
        # Submitted with profile=True: its profile shows as a profile job's does.
        view.update(_profile_view(job, summary))
        view["profiles"] = True
        view["profile_json"] = job.artifacts.filter(name="profile.json").first()
    return view


@register.simple_tag
def device_job_view(job: Job, user: User) -> dict[str, Any]:
    """The words and numbers of a compile, profile or inference job's section of its page."""
    summary = job.summary if isinstance(job.summary, dict) else {}
    options = (job.hyperparameters or {}).get("options") or ""
    view: dict[str, Any] = {
        "has_summary": bool(summary),
        "options": options,
        # a profile's figures: a profile job's, or an inference job's that also profiled
        "has_profile": "execution_summary" in summary,
    }
    if job.kind == JobKind.COMPILE:
        view.update(_compile_view(job, summary))
    elif job.kind == JobKind.PROFILE:
        view.update(_profile_view(job, summary))
    elif job.kind == JobKind.INFERENCE:
        view.update(_inference_view(job, summary, user))
    return view
