"""One process of a multi-process training run (started by torchrun; see launch.py):
``python -m jobs.engine.training.child SPEC.json EVENTS.jsonl``. No Django here."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from jobs.domain.disk import storage_fault
from jobs.engine.training.launch import FileSink, NullSink, die_with_parent
from jobs.engine.training.sft import TrainingFailed, TrainSpec, train


def main(spec_file: str, events: str) -> int:
    die_with_parent()  # torchrun's agent gone (its worker killed): stop training too
    spec = TrainSpec.from_json(Path(spec_file).read_text())
    rank0 = int(os.environ.get("RANK", "0")) == 0
    sink = FileSink(Path(events)) if rank0 else None
    try:
        result = train(spec, sink or NullSink())
    except TrainingFailed as failure:
        if sink:
            sink.failed(failure.kind, failure.message)
        return 3
    except Exception as error:
        fault = storage_fault(error, spec.checkpoints, spec.final)
        if fault is None:
            raise
        if sink:  # a full or read-only disk: the job's owner is told so, not "internal error"
            sink.failed(*fault)
        return 3
    if sink:
        sink.result(result)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
