"""``python -m jobs.engine.profiling.child``: one profile of one ONNX model, in a process of its
own, started by the profile runner (jobs/engine/runners/profile.py). Reads the request as JSON
on stdin; prints a JSON line per step as it goes (each stage's time and memory, the timed runs'
latencies every SEND_EVERY seconds, the per-layer times, or the reason it cannot go on), so the
runner can push the runs live and stop it between them. Reads no Django settings: the parent
hands it everything.

Why a child process: the first session of a process is the cold load only in a process that has
made none (ONNX Runtime sets up its environment, thread pools and kernel registry once per
process); the peak resident memory of a stage belongs to the model only in a process that held
nothing else (a worker's own peak comes from whatever job it ran before); and a model that
crashes ONNX Runtime takes down this process, not the worker.

Memory is resident memory (/proc/self/status VmRSS, VmHWM), each stage's peak counted above the
resident memory before the model was loaded (Python, numpy and ONNX Runtime's library are not the
model's); the peak is reset at the start of each stage (/proc/self/clear_refs).
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from jobs.engine.profiling import measure

SEND_EVERY = 0.05  # seconds between the reports of timed runs


def emit(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def _options(ort: Any, *, profile_into: Path | None = None) -> Any:
    """ONNX Runtime's defaults (all graph optimizations, its own thread count), as a person
    running the model would have them; errors only in the log."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if profile_into is not None:
        options.enable_profiling = True
        options.profile_file_prefix = str(profile_into / "trace")
    return options


def _stage(baseline: int, start: float) -> tuple[int, int]:
    """(microseconds since ``start``, peak resident bytes above ``baseline`` since the peak was
    last reset)."""
    elapsed = round((time.perf_counter() - start) * 1e6)
    _, peak = measure.memory()
    return elapsed, max(0, peak - baseline)


def profile(request: dict[str, Any]) -> None:
    import onnxruntime as ort

    parent = os.getppid()
    model, providers = request["model"], request["providers"]
    gc.collect()
    baseline, _ = measure.memory()
    resettable = measure.reset_peak()

    start = time.perf_counter()
    try:
        first = ort.InferenceSession(model, _options(ort), providers=providers)
    except Exception as error:  # onnxruntime's Fail, InvalidGraph, … share no useful base
        emit(error="load", message=str(error))
        return
    used = first.get_providers()
    if providers[0] not in used:  # ONNX Runtime fell back to the CPU: what was asked is not there
        emit(error="provider", message=f"{providers[0]} could not start; ONNX Runtime used {used}")
        return
    load_us, load_peak = _stage(baseline, start)
    emit(stage="first_load", time=load_us, peak_memory=load_peak, reset=resettable)
    try:
        feeds = measure.random_inputs(measure.session_inputs(first))
    except measure.Unprofilable as problem:
        emit(error="inputs", message=str(problem))
        return
    del first
    gc.collect()

    measure.reset_peak()
    start = time.perf_counter()
    session = ort.InferenceSession(model, _options(ort), providers=providers)
    load_us, load_peak = _stage(baseline, start)
    emit(stage="warm_load", time=load_us, peak_memory=load_peak, providers=used)

    measure.reset_peak()
    try:
        for _ in range(request["warmup"]):
            session.run(None, feeds)
    except Exception as error:
        emit(error="run", message=str(error))
        return
    iterations, bound = request["iterations"], request["max_seconds"]
    times: list[float] = []
    unsent: list[tuple[int, float]] = []
    began = sent = time.perf_counter()
    for run in range(1, iterations + 1):
        before = time.perf_counter_ns()
        session.run(None, feeds)
        after = time.perf_counter_ns()
        times.append((after - before) / 1000)
        unsent.append((run, times[-1]))
        # The runs are sent together every SEND_EVERY seconds (each at once when a run takes
        # longer): between two timed runs the loop only reads the clock, as a person timing
        # ONNX Runtime directly would; the page still gets them live.
        now = time.perf_counter()
        if now - sent >= SEND_EVERY:
            if os.getppid() != parent:  # the worker is gone: nobody reads what this measures
                return
            emit(runs=unsent)
            unsent, sent = [], now
        if now - began >= bound:
            break
    if unsent:
        emit(runs=unsent)
    _, inference_peak = _stage(baseline, began)
    emit(stage="inference", timed=len(times), peak_memory=inference_peak)
    del session
    gc.collect()

    # Per-layer times in a session of their own: the profiler writes an event per node per run,
    # which the timed runs above must not pay for.
    traces = Path(request["trace_dir"])
    profiled = ort.InferenceSession(model, _options(ort, profile_into=traces), providers=providers)
    for _ in range(1 + min(request["profiled_runs"], len(times))):
        profiled.run(None, feeds)
    trace = Path(profiled.end_profiling())
    detail, kept = measure.layer_times(json.loads(trace.read_text()))
    trace.unlink(missing_ok=True)
    emit(layers=detail, profiled_runs=kept)


def main() -> None:
    request = json.load(sys.stdin)
    profile(request)
    emit(done=True)


if __name__ == "__main__":
    main()
