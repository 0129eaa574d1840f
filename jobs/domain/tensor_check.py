"""``python -m jobs.domain.tensor_check``: describes one uploaded tensors file (h5 or .npz) in a
process of its own, within the memory and CPU time the request gives (jobs.domain.tensor_data
.describe starts it). Reads the request as JSON on stdin; prints one JSON line: the
description, or the refusal. Reads no Django settings."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> None:
    request = json.load(sys.stdin)
    import resource

    resource.setrlimit(resource.RLIMIT_DATA, (request["memory"], request["memory"]))
    resource.setrlimit(resource.RLIMIT_CPU, (request["seconds"], request["seconds"] + 5))
    from jobs.domain.tensor_data import BadTensors, describe_here

    try:
        answer: dict[str, object] = {
            "metadata": describe_here(Path(request["path"]), request["label"])
        }
    except BadTensors as refusal:
        answer = {"refused": str(refusal)}
    except MemoryError:
        answer = {"out_of_memory": True}
    sys.stdout.write("\n" + json.dumps(answer) + "\n")


if __name__ == "__main__":
    main()
