"""Training one job in several processes: ``torchrun`` (torch.distributed.run) starts
``HUB_TRAIN_PROCESSES`` copies of jobs.engine.training.child on this machine (one per GPU; or
CPU processes with the gloo backend, which is how the tests run it), Trainer wraps the model in
DistributedDataParallel (or FSDP with ``HUB_TRAIN_STRATEGY=fsdp``), and rank 0 writes its
reports as JSON lines to an event file that the worker relays to the job's progress reporter.

The worker stays the job's one reporter (claim token, heartbeat, cancellation): when the
reporter says stop, the whole process group is ended.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

from jobs.engine.training.sft import Sink, TrainingFailed, TrainResult, TrainSpec

POLL_SECONDS = 0.2
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Linux: this process is killed when its parent dies, so that a worker killed outright
    leaves no training behind to write into the checkpoints its next attempt resumes from."""
    # Not Linux (no prctl): the reaper's requeue still bounds the harm.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class FileSink:
    """Rank 0's sink in a torchrun process: one JSON line per report."""

    def __init__(self, path: Path) -> None:
        self.handle = path.open("a", buffering=1)

    def _write(self, event: str, **data: Any) -> None:
        self.handle.write(json.dumps({"type": event, **data}) + "\n")

    def progress(self, **fields: Any) -> None:
        self._write("progress", fields=fields)

    def metric(self, key: str, step: int, value: float) -> None:
        self._write("metric", key=key, step=step, value=value)

    def log(self, line: str) -> None:
        self._write("log", line=line)

    def note(self, message: str) -> None:
        self._write("note", message=message)

    def check_stop(self) -> None:
        """The worker ends the processes when the job must stop."""

    def checkpoint_done(self, folder: str, state: dict[str, Any]) -> None:
        """The worker marks the checkpoint finished once it has stored what came before."""
        self._write("checkpoint", folder=folder, state=state)

    def result(self, result: TrainResult) -> None:
        self._write("result", result=result.__dict__)

    def failed(self, kind: str, message: str) -> None:
        self._write("failed", kind=kind, message=message)


class NullSink:
    def progress(self, **fields: Any) -> None: ...
    def metric(self, key: str, step: int, value: float) -> None: ...
    def log(self, line: str) -> None: ...
    def note(self, message: str) -> None: ...
    def check_stop(self) -> None: ...
    def checkpoint_done(self, folder: str, state: dict[str, Any]) -> None: ...


def _relay(line: str, sink: Sink) -> dict[str, Any] | None:
    """Hand one event to the sink; the result or failure event is returned."""
    event = json.loads(line)
    kind = event.pop("type")
    if kind == "progress":
        sink.progress(**event["fields"])
    elif kind == "metric":
        sink.metric(event["key"], event["step"], event["value"])
    elif kind == "log":
        sink.log(event["line"])
    elif kind == "note":
        sink.note(event["message"])
    elif kind == "checkpoint":
        sink.checkpoint_done(event["folder"], event["state"])
    else:
        return {"type": kind, **event}
    return None


def train_in_processes(spec: TrainSpec, processes: int, workdir: Path, sink: Sink) -> TrainResult:
    spec_file, events = workdir / "spec.json", workdir / "events.jsonl"
    spec_file.write_text(spec.to_json())
    events.touch()
    output = (workdir / "torchrun.log").open("wb")
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={processes}",
        "-m",
        "jobs.engine.training.child",
        str(spec_file),
        str(events),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(spec.threads), "HF_HUB_OFFLINE": "1"}
    env.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    process = subprocess.Popen(
        command,
        stdout=output,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
        preexec_fn=die_with_parent,
    )
    final: dict[str, Any] | None = None
    try:
        with events.open() as reader:
            while True:
                final = _drain(reader, sink) or final
                sink.check_stop()
                try:
                    code = process.wait(timeout=POLL_SECONDS)
                except subprocess.TimeoutExpired:
                    continue
                final = _drain(reader, sink) or final
                break
    except BaseException:
        _end(process)
        raise
    finally:
        output.close()
    if final and final["type"] == "failed":
        raise TrainingFailed(final["kind"], final["message"])
    if code != 0 or not final:
        tail = (workdir / "torchrun.log").read_text(errors="replace")[-1500:]
        raise RuntimeError(f"torchrun with {processes} processes exited with {code}: {tail}")
    return TrainResult(**final["result"])


def _drain(reader: IO[str], sink: Sink) -> dict[str, Any] | None:
    final = None
    while line := reader.readline():
        if not line.endswith("\n"):  # a line still being written: read it whole next time
            reader.seek(reader.tell() - len(line))
            break
        final = _relay(line, sink) or final
    return final


def _end(process: subprocess.Popen[bytes]) -> None:
    """End torchrun and its children (their own process group)."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
