"""Named tensors: the inputs of an inference job, its outputs, a compile job's calibration data.

Two file formats. Seed 000's h5 layout, as its client writes and reads it: a group ``data``
holding one group per entry, named by its position (``"0"``, ``"1"``, …), with the attributes
``name`` (the model input's name), ``order`` (its position) and ``batch_count`` (how many
samples), and one dataset per sample, ``batch_0`` … ``batch_<n-1>``. And ``.npz`` (numpy's
zip of arrays): a key per input name, each array one sample.

Every upload is hostile: an h5 file can link to other files on the server (external links,
external raw storage, virtual datasets), and both formats can declare arrays far larger than
the file. A file is described (names, dtypes, shapes; no values read) in a child process with a
memory and time limit (``python -m jobs.domain.tensor_check``), links and external storage are
refused, and sizes are counted before anything is read.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

H5_SUFFIXES = (".h5", ".hdf5")
NPZ_SUFFIX = ".npz"
TENSOR_FORMAT = "tensors"  # Dataset.format
MAX_ENTRIES = 256  # named inputs in one file
MAX_SAMPLES = 10_000  # samples of one entry
MAX_RANK = 8
CHECK_MEMORY = 1024**3
CHECK_SECONDS = 60
# The dtypes ONNX Runtime takes as input, by numpy's name.
DTYPES = {
    "float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16",
    "uint32", "uint64", "bool",
}  # fmt: skip

Entries = dict[str, list[np.ndarray]]


class BadTensors(ValueError):
    """The file is not named tensors the hub can use; the message says what is wrong."""


def is_tensor_file(label: str) -> bool:
    return label.lower().endswith((*H5_SUFFIXES, NPZ_SUFFIX))


def _entry(name: str, arrays: list[tuple[str, tuple[int, ...]]]) -> dict[str, Any]:
    """One entry's description: its name, dtype and the shape of each sample."""
    dtypes = {dtype for dtype, _ in arrays}
    if len(dtypes) != 1:
        raise BadTensors(
            f"the samples of {name!r} have different dtypes ({', '.join(sorted(dtypes))})."
        )
    (dtype,) = dtypes
    if dtype not in DTYPES:
        raise BadTensors(f"{name!r} is {dtype}; the hub takes {', '.join(sorted(DTYPES))}.")
    for _, shape in arrays:
        if len(shape) > MAX_RANK:
            raise BadTensors(f"{name!r} has {len(shape)} dimensions; at most {MAX_RANK}.")
    return {"name": name, "dtype": dtype, "shapes": [list(shape) for _, shape in arrays]}


def _describe_h5(path: Path) -> list[dict[str, Any]]:
    import h5py

    with h5py.File(path, "r") as h5f:
        data = h5f.get("data", getlink=True)
        if data is None:
            raise BadTensors("it has no group 'data' (seed 000's h5 layout: data/<i>/batch_<j>).")
        if not isinstance(data, h5py.HardLink):
            raise BadTensors("'data' is a link; links are not followed.")
        group = h5f["data"]
        if not isinstance(group, h5py.Group):
            raise BadTensors("'data' is not a group.")
        if len(group) > MAX_ENTRIES:
            raise BadTensors(f"it has {len(group)} entries; at most {MAX_ENTRIES}.")
        entries: list[tuple[int, dict[str, Any]]] = []
        for key in group:
            if not isinstance(group.get(key, getlink=True), h5py.HardLink):
                raise BadTensors(f"data/{key} is a link; links are not followed.")
            item = group[key]
            if not isinstance(item, h5py.Group):
                raise BadTensors(f"data/{key} is not a group of samples.")
            name = item.attrs.get("name")
            count = item.attrs.get("batch_count")
            if isinstance(name, bytes):
                name = name.decode("utf-8", "replace")
            if not isinstance(name, str) or not name:
                raise BadTensors(f"data/{key} has no 'name' attribute (the input it is for).")
            if count is None or not 0 < int(count) <= MAX_SAMPLES:
                raise BadTensors(
                    f"data/{key} ({name!r}) needs a batch_count between 1 and {MAX_SAMPLES}."
                )
            order = item.attrs.get("order", key)
            try:
                position = int(order)
            except (TypeError, ValueError):
                raise BadTensors(f"data/{key} has an order that is not a number.") from None
            arrays = []
            for j in range(int(count)):
                sample = f"batch_{j}"
                if not isinstance(item.get(sample, getlink=True), h5py.HardLink):
                    raise BadTensors(f"data/{key}/{sample} ({name!r}) is missing or a link.")
                dataset = item[sample]
                if not isinstance(dataset, h5py.Dataset):
                    raise BadTensors(f"data/{key}/{sample} is not an array.")
                if dataset.external or dataset.is_virtual:
                    raise BadTensors(
                        f"data/{key}/{sample} keeps its values in another file; every value "
                        "must be inside the uploaded file."
                    )
                arrays.append((dataset.dtype.name, tuple(int(n) for n in dataset.shape)))
            entries.append((position, _entry(name, arrays)))
    positions = [p for p, _ in entries]
    if sorted(positions) != list(range(len(entries))):
        raise BadTensors(
            f"the entries' order attributes are {sorted(positions)}; expected 0…{len(entries) - 1}."
        )
    return [entry for _, entry in sorted(entries, key=lambda e: e[0])]


def _describe_npz(path: Path) -> list[dict[str, Any]]:
    from numpy.lib import format as npformat

    entries = []
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
        if len(members) > MAX_ENTRIES:
            raise BadTensors(f"it has {len(members)} arrays; at most {MAX_ENTRIES}.")
        for member in members:
            if not member.filename.endswith(".npy") or "/" in member.filename:
                raise BadTensors(f"{member.filename!r} is not an array of a .npz.")
            with archive.open(member) as handle:
                version = npformat.read_magic(handle)
                if version == (1, 0):
                    shape, _, dtype = npformat.read_array_header_1_0(handle)
                else:
                    shape, _, dtype = npformat.read_array_header_2_0(handle)
            if dtype.hasobject:
                raise BadTensors(f"{member.filename[:-4]!r} holds Python objects; arrays only.")
            declared = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            if declared > member.file_size:
                raise BadTensors(f"{member.filename[:-4]!r} declares more values than it holds.")
            entries.append(_entry(member.filename[:-4], [(dtype.name, tuple(shape))]))
    return entries


def describe_here(path: Path, label: str) -> dict[str, Any]:
    """``{"file_format", "entries": [{"name", "dtype", "shapes"}], "samples"}``; BadTensors
    names what is wrong. Reads headers only. Run it in a child (describe)."""
    try:
        if label.lower().endswith(NPZ_SUFFIX):
            entries, file_format = _describe_npz(path), "npz"
        else:
            entries, file_format = _describe_h5(path), "h5"
    except BadTensors:
        raise
    except Exception as error:  # a corrupt file: whatever the library raises, named
        kind = "a .npz" if label.lower().endswith(NPZ_SUFFIX) else "an h5 file"
        raise BadTensors(f"it is not {kind} that can be read ({type(error).__name__}).") from None
    if not entries:
        raise BadTensors("it holds no arrays.")
    counts = {len(e["shapes"]) for e in entries}
    if len(counts) != 1:
        raise BadTensors(
            "its entries hold different numbers of samples ("
            + ", ".join(f"{e['name']}: {len(e['shapes'])}" for e in entries)
            + "); every input needs one value per sample."
        )
    names = [e["name"] for e in entries]
    if len(set(names)) != len(names):
        raise BadTensors("two entries have the same name.")
    return {"file_format": file_format, "entries": entries, "samples": counts.pop()}


def describe(path: Path, label: str) -> dict[str, Any]:
    """describe_here in a child process within CHECK_MEMORY and CHECK_SECONDS: a hostile file
    costs that child, never the web process."""
    request = {"path": str(path), "label": label, "memory": CHECK_MEMORY, "seconds": CHECK_SECONDS}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "jobs.domain.tensor_check"],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            timeout=CHECK_SECONDS,
            env={**os.environ},
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BadTensors(f"reading it took longer than {CHECK_SECONDS} s.") from None
    try:
        answer = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        answer = None
    if not isinstance(answer, dict):
        raise BadTensors(f"reading it needed more than {CHECK_MEMORY // 1024**2} MiB, or crashed.")
    if "refused" in answer:
        raise BadTensors(answer["refused"])
    return dict(answer["metadata"])


def read(path: Path, file_format: str) -> Entries:
    """The arrays of a described file, by entry name in order (a worker reads them; the upload
    check has already refused links and external storage)."""
    if file_format == "npz":
        with np.load(path, allow_pickle=False) as archive:
            return {name: [np.asarray(archive[name])] for name in archive.files}
    import h5py

    entries: list[tuple[int, str, list[np.ndarray]]] = []
    with h5py.File(path, "r") as h5f:
        for key, item in h5f["data"].items():
            name = item.attrs["name"]
            name = name.decode() if isinstance(name, bytes) else str(name)
            arrays = [np.asarray(item[f"batch_{j}"]) for j in range(int(item.attrs["batch_count"]))]
            entries.append((int(item.attrs.get("order", key)), name, arrays))
    return {name: arrays for _, name, arrays in sorted(entries, key=lambda e: e[0])}


def write_h5(entries: Entries, path: Path) -> Path:
    """Seed 000's layout, as its client's ``h5_to_dataset_entries`` reads it back."""
    import h5py

    with h5py.File(path, "w") as h5f:
        for index, (name, arrays) in enumerate(entries.items()):
            group = h5f.create_group(f"data/{index}")
            for j, array in enumerate(arrays):
                group.create_dataset(f"batch_{j}", data=array)
            group.attrs["name"] = name
            group.attrs["order"] = index
            group.attrs["batch_count"] = len(arrays)
    return path


def preview(entries: Entries, values: int = 6) -> list[dict[str, Any]]:
    """What a page shows of each entry: dtype, the shape of each sample, the first values."""
    shown = []
    for name, arrays in entries.items():
        first = arrays[0].ravel()[:values] if arrays else np.array([])
        shown.append(
            {
                "name": name,
                "dtype": arrays[0].dtype.name if arrays else "",
                "shapes": [list(a.shape) for a in arrays],
                "first_values": [v.item() for v in first],
            }
        )
    return shown
