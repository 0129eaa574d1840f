"""``python -m jobs.domain.model_check``: checks one uploaded model archive in a process of its
own, started by jobs.domain.hf_models.inspect_archive within a memory and CPU limit. Reads the
request (archive, work folder, limits) as JSON on stdin; prints one JSON line: the metadata, or
the refusal. Reads no Django settings: the parent hands it everything."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path


def main() -> None:
    request = json.load(sys.stdin)
    from jobs.domain.hf_models import Limits, Refused, check_in_this_process, limit_this_process

    limit_this_process(request["memory"], request["seconds"])
    warnings.simplefilter("ignore")  # the parent hears only the answer
    try:
        metadata = check_in_this_process(
            Path(request["archive"]), Path(request["workdir"]), Limits(**request["limits"])
        )
        answer: dict[str, object] = {"metadata": metadata}
    except Refused as refusal:
        answer = {"refused": refusal.problem, "names_member": refusal.names_member}
    except MemoryError:  # the parent says what the limit is
        answer = {"out_of_memory": True}
    sys.stdout.write("\n" + json.dumps(answer) + "\n")


if __name__ == "__main__":
    main()
