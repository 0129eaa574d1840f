"""Named tensors in seed 000's h5 layout, on the client's side (the client stands alone: the
hub's own reader is jobs/domain/tensor_data.py): a group ``data`` with one group per entry,
``data/<i>``, carrying ``name``, ``order`` and ``batch_count``, each sample ``batch_<j>``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

Entries = dict[str, list[Any]]  # input name → a numpy array per sample


def write_h5(entries: dict[str, Any], path: Path) -> Path:
    import h5py
    import numpy as np

    with h5py.File(path, "w") as h5f:
        for index, (name, samples) in enumerate(entries.items()):
            arrays = [np.asarray(a) for a in (samples if isinstance(samples, list) else [samples])]
            group = h5f.create_group(f"data/{index}")
            for j, array in enumerate(arrays):
                group.create_dataset(f"batch_{j}", data=array)
            group.attrs["name"] = name
            group.attrs["order"] = index
            group.attrs["batch_count"] = len(arrays)
    return path


def read_h5(path: Path) -> Entries:
    import h5py
    import numpy as np

    found: list[tuple[int, str, list[Any]]] = []
    with h5py.File(path, "r") as h5f:
        for key, group in h5f["data"].items():
            name = group.attrs["name"]
            name = name.decode() if isinstance(name, bytes) else str(name)
            count = int(group.attrs["batch_count"])
            arrays = [np.asarray(group[f"batch_{j}"]) for j in range(count)]
            found.append((int(group.attrs.get("order", key)), name, arrays))
    return {name: arrays for _, name, arrays in sorted(found, key=lambda entry: entry[0])}
