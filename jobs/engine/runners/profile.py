"""Profile jobs (seed 000): one ONNX model measured on ONNX Runtime on the device the job names.

The measuring happens in a child process of its own (jobs.engine.profiling.child says why): a
cold load (the process's first session) and a warm one, each with its time and peak resident
memory; warm-up runs; then up to ``--max_profiler_iterations`` timed runs within
``--max_profiler_time`` seconds, on seeded random inputs of the model's fixed shapes, without
the profiler; then a separate session with ONNX Runtime's profiler on, for the time of each
layer. This runner relays the timed runs as they come (the child sends those of the last 50 ms
together): the metric ``latency_ms``, a point per run, step = the run's number, and runs done as
``steps_completed``; it checks between them whether the job was cancelled or ran out of time
(and then stops the child), and stores seed 000's profile as the artifact ``profile.json`` and
its figures as the job's summary. All that is ``profile_model``, which an inference job that
also profiles (seed 000's ``profile=True``) calls too, once its samples have run.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from django.conf import settings

from jobs.domain import onnx_data
from jobs.domain.devices import this_machine
from jobs.domain.disk import size_text
from jobs.domain.onnx_runtime import reason_of
from jobs.domain.profile_plan import (
    PROFILED_RUNS,
    WARMUP_RUNS,
    max_seconds,
    model_bytes,
    planned_runs,
)
from jobs.domain.redact import scrub_paths, storable
from jobs.domain.status import FailureType
from jobs.engine.profiling import measure
from jobs.engine.reporter import Reporter
from jobs.engine.runners.base import JobFailure, Results, RunContext, Runner, Space, register
from jobs.engine.scratch import local_path
from jobs.models import ArtifactKind, Job, MLModel

PROFILE_ARTIFACT = "profile.json"  # what seed 000's client reads (download_profile)
SLOWEST = 10  # layers in the summary; profile.json has them all
WAIT = 0.5  # seconds between checks for a stop while the child is in a long step (a big load)


def _model_path(model: MLModel, workdir: Path, label: str) -> Path:
    """The ONNX file to load: the stored file, or model.onnx unpacked (and checked again) from a
    model stored with its data file."""
    stored = local_path(model.file)
    if not stored.name.endswith(".zip"):
        return stored
    return onnx_data.stored_folder(stored, workdir / "model", label)


class _Child:
    """The profiling child process: its lines read on a thread, so that the runner can check for
    a stop while it waits for a step that takes long."""

    def __init__(self, request: dict[str, Any], workdir: Path) -> None:
        self.stderr_path = workdir / "child-stderr.txt"
        self._stderr: IO[str] = self.stderr_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jobs.engine.profiling.child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            cwd=str(settings.BASE_DIR),
            env=dict(os.environ),
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(request))
        self.process.stdin.close()
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(
            target=self._read, args=(self.process.stdout,), name="profile-child", daemon=True
        )
        self._reader.start()

    def _read(self, stdout: IO[str]) -> None:
        for line in stdout:
            self._lines.put(line)
        self._lines.put(None)

    def events(self, reporter: Reporter) -> Iterator[dict[str, Any]]:
        """The child's reports, in order, until it exits; a stop asked meanwhile is raised."""
        while True:
            try:
                line = self._lines.get(timeout=WAIT)
            except queue.Empty:
                reporter.check_stop()
                continue
            if line is None:
                return
            try:
                event = json.loads(line)
            except ValueError:  # a library's stray print: not a report
                continue
            if isinstance(event, dict):
                yield event

    def stderr_tail(self) -> str:
        """The last lines the child wrote to its stderr (ONNX Runtime's own words)."""
        lines = self.stderr_path.read_text(errors="replace").strip().splitlines()
        return scrub_paths(" ".join(lines[-3:]))[-500:]

    def close(self) -> int:
        """Stop the child if it still runs; its exit code."""
        if self.process.poll() is None:
            self.process.kill()
        code = self.process.wait()
        self._reader.join(timeout=5)
        self._stderr.close()
        return code


@register
class ProfileRunner(Runner):
    kind = "profile"

    def space_needed(self, job: Job) -> Space:
        # A model stored with its data is unpacked into the work folder; the profiler's trace
        # (an event per node per run) and profile.json are small beside it.
        size = sum(
            model_bytes(i.model.size, i.model.metadata)
            for i in job.job_inputs.select_related("model")
        )
        return Space(media=1 << 22, work=size + (1 << 24))

    def run(self, ctx: RunContext) -> Results:
        job_input = ctx.job.job_inputs.select_related("model").order_by("position").first()
        if job_input is None:
            raise JobFailure(FailureType.INTERNAL_ERROR, "This profile job names no model.")
        profiled = profile_model(ctx, job_input.model)
        ctx.reporter.progress(summary=profiled.summary)
        return Results(message=profiled.message, checked=profiled.checked)


@dataclass(frozen=True)
class Profiled:
    """What profile_model found, its profile.json already stored."""

    summary: dict[str, Any]  # the figures of the job's summary (a profile job's whole summary)
    message: str  # median, p90 and peak memory in words (also a line of the log)
    checked: str  # what profile.json holds


def profile_model(
    ctx: RunContext,
    model: MLModel,
    path: Path | None = None,
    *,
    steps_before: int = 0,
    ran_on: bool = True,
) -> Profiled:
    """``model`` measured on this device as a profile job measures it (the job's parsed
    options: --compute_unit, --max_profiler_iterations, --max_profiler_time), in a child
    process; seed 000's profile stored as the artifact profile.json. ``path`` is the ONNX file
    to load when the caller has it at hand (unpacked already), else the stored one is. Each
    timed run is a point of ``latency_ms`` (step: the run's number) and the job's
    ``steps_completed`` is ``steps_before`` plus the runs done: an inference job profiles after
    its samples, its steps counting on. ``ran_on``: whether the profile's providers are
    written as the job's ran_on (an inference job has written its own)."""
    reporter = ctx.reporter
    label = f"model {model.public_id} ({model.name})"
    machine = this_machine()
    parsed = ctx.job.hyperparameters.get("parsed") or {}
    try:
        providers = measure.providers_for(
            parsed.get("compute_unit") or ["all"], machine.providers, machine.name
        )
    except measure.Unprofilable as problem:
        raise JobFailure(FailureType.INVALID_PARAMETERS, str(problem)) from None
    if path is None:
        try:
            path = _model_path(model, ctx.workdir, label)
        except FileNotFoundError:
            raise JobFailure(
                FailureType.INTERNAL_ERROR, f"The stored file of {label} is missing."
            ) from None
        except Exception as error:  # a stored zip refused as it is unpacked again
            raise JobFailure(
                FailureType.INVALID_MODEL,
                f"{label} cannot be read: {scrub_paths(str(error))[:300]}",
            ) from None
    iterations = planned_runs(ctx.job.hyperparameters)
    seconds = max_seconds(ctx.job.hyperparameters)
    started: dict[str, Any] = {"steps_completed": steps_before}
    if ran_on:
        started["ran_on"] = f"{providers[0]}, ONNX Runtime {machine.onnxruntime}"
    reporter.progress(**started)
    reporter.log(
        f"Profiling {label} on {machine.name} with {', '.join(providers)}: {WARMUP_RUNS} "
        f"warm-up runs, then up to {iterations} timed runs within {seconds:g} s."
    )
    traces = ctx.workdir / "traces"
    traces.mkdir()
    request = {
        "model": str(path),
        "providers": providers,
        "warmup": WARMUP_RUNS,
        "iterations": iterations,
        "max_seconds": seconds,
        "profiled_runs": PROFILED_RUNS,
        "trace_dir": str(traces),
    }
    child = _Child(request, ctx.workdir)
    try:
        found = _relay(child, reporter, label, machine.name, steps_before)
    finally:
        code = child.close()
    if not found.get("done"):
        raise _crash(code, found, child, label, machine.name, model)
    return _results(ctx, found, providers, iterations, seconds, label)


def _relay(
    child: _Child, reporter: Reporter, label: str, device: str, steps_before: int
) -> dict[str, Any]:
    """Pass the child's reports on as they come: each timed run live, each stage as a line
    of the log. What it found, keyed by stage ("done" once it finished)."""
    found: dict[str, Any] = {"times": []}
    for event in child.events(reporter):
        if "runs" in event:  # [[run number, µs], …]: the runs since its last report
            runs = [(int(run), float(time_us)) for run, time_us in event["runs"]]
            found["times"].extend(time_us for _, time_us in runs)
            reporter.metrics("latency_ms", [(run, time_us / 1000) for run, time_us in runs])
            reporter.progress(steps_completed=steps_before + runs[-1][0])
        elif "stage" in event:
            found[event["stage"]] = event
            if event["stage"] in ("first_load", "warm_load"):
                words = "Cold load" if event["stage"] == "first_load" else "Warm load"
                reporter.log(
                    f"{words}: {event['time'] / 1000:.1f} ms, peak memory "
                    f"{size_text(event['peak_memory'])} above the process's start."
                )
        elif "layers" in event:
            found["layers"], found["profiled_runs"] = event["layers"], event["profiled_runs"]
        elif "error" in event:
            raise _refusal(event, label, device)
        elif event.get("done"):
            found["done"] = True
        reporter.check_stop()
    return found


def _refusal(event: dict[str, Any], label: str, device: str) -> JobFailure:
    said = reason_of(str(event.get("message", "")))
    if event["error"] == "load":
        return JobFailure(
            FailureType.INVALID_MODEL,
            f"ONNX Runtime cannot load {label} on device {device}: {said}",
        )
    if event["error"] == "inputs":
        return JobFailure(FailureType.INVALID_MODEL, f"{label}: {said}")
    if event["error"] == "run":
        return JobFailure(
            FailureType.INVALID_MODEL,
            f"{label} fails when run on random inputs of its shapes on device {device}: {said}",
        )
    return JobFailure(  # the device announced a provider that does not start
        FailureType.INTERNAL_ERROR,
        f"Device {device} could not start what the profile asked: {said} Its operator "
        "should check the worker's CUDA installation.",
    )


def _crash(
    code: int,
    found: dict[str, Any],
    child: _Child,
    label: str,
    device: str,
    model: MLModel,
) -> JobFailure:
    """The child ended without finishing: killed (the kernel's out-of-memory killer sends
    SIGKILL) or crashed inside ONNX Runtime."""
    stage = next(
        (words for key, words in (("inference", "measuring per-layer times"),
                                  ("warm_load", "the timed runs"),
                                  ("first_load", "the warm load"))
         if key in found),
        "the cold load",
    )  # fmt: skip
    size = size_text(model_bytes(model.size, model.metadata))
    if code == -signal.SIGKILL:
        return JobFailure(
            FailureType.INTERNAL_ERROR,
            f"The profile of {label} ({size}) was killed during {stage} on device {device}, "
            "most likely for want of memory (the system stops the largest process when "
            "memory runs out). Resubmitting it when the device is less busy may succeed.",
        )
    return JobFailure(
        FailureType.INTERNAL_ERROR,
        f"ONNX Runtime stopped during {stage} of {label} on device {device} (exit code {code}).",
        detail=child.stderr_tail(),
    )


def _results(
    ctx: RunContext,
    found: dict[str, Any],
    providers: list[str],
    iterations: int,
    seconds: float,
    label: str,
) -> Profiled:
    reporter = ctx.reporter
    times: list[float] = found["times"]
    stats = measure.latency_stats(times)
    first, warm, inference = found["first_load"], found["warm_load"], found["inference"]
    detail: list[dict[str, Any]] = found.get("layers", [])
    execution_summary = {
        "estimated_inference_time": round(stats["median"]),
        "estimated_inference_peak_memory": inference["peak_memory"],
        "first_load_time": first["time"],
        "first_load_peak_memory": first["peak_memory"],
        "warm_load_time": warm["time"],
        "warm_load_peak_memory": warm["peak_memory"],
    }
    profile = {
        "execution_summary": {
            **execution_summary,
            # seed 000's every-run lists (its profile format 1.2 and later)
            "all_first_load_times": [first["time"]],
            "all_warm_load_times": [warm["time"]],
            "all_inference_times": [round(t) for t in times],
        },
        "execution_detail": detail,
    }
    path = ctx.workdir / PROFILE_ARTIFACT
    path.write_text(json.dumps(storable(profile), indent=1))
    reporter.artifact(ArtifactKind.PROFILE, PROFILE_ARTIFACT, path)
    slowest = sorted(detail, key=lambda layer: -layer["execution_time"])[:SLOWEST]
    summary = {
        "execution_summary": execution_summary,
        "runs": len(times),
        "runs_planned": iterations,
        # what ended the timed runs: all asked were made, or --max_profiler_time was reached
        "stopped_by": "iterations" if len(times) >= iterations else "time",
        "max_profiler_time": seconds,
        "warmup_runs": WARMUP_RUNS,
        "profiled_runs": found.get("profiled_runs", 0),
        "latency_us": stats,
        "providers": warm.get("providers", providers),
        "slowest_layers": slowest,
        "op_type_times": measure.op_type_times(detail),
    }
    runs = len(times)
    bound = "" if runs >= iterations else f" (--max_profiler_time {seconds:g} s reached)"
    message = (
        f"Profiled {label}: median {stats['median'] / 1000:.3f} ms over {runs} timed "
        f"run{'s' if runs != 1 else ''}{bound}, p90 {stats['p90'] / 1000:.3f} ms; peak "
        f"memory {size_text(inference['peak_memory'])}."
    )
    reporter.log(message)
    checked = (
        f"{PROFILE_ARTIFACT} stored: {len(detail)} layer{'s' if len(detail) != 1 else ''} "
        f"timed by ONNX Runtime's profiler over {found.get('profiled_runs', 0)} further "
        f"run{'s' if found.get('profiled_runs', 0) != 1 else ''}."
    )
    return Profiled(summary=summary, message=message, checked=checked)
