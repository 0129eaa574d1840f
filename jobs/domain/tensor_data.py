"""Named tensors: the inputs of an inference job, its outputs, a compile job's calibration data.

Two file formats. Seed 000's h5 layout, as its client writes and reads it: a group ``data``
holding one group per entry, named by its position (``"0"``, ``"1"``, …), with the attributes
``name`` (the model input's name), ``order`` (its position) and ``batch_count`` (how many
samples), and one dataset per sample, ``batch_0`` … ``batch_<n-1>``. And ``.npz`` (numpy's
zip of arrays): a key per input name, each array one sample.

Every upload is hostile: an h5 file can link to other files on the server (external links,
external raw storage, virtual datasets), and both formats can declare arrays far larger than
the file (compressed zeros, or a header that lies). A file is described (names, dtypes, shapes;
no values read) in a child process with a memory and time limit (``python -m
jobs.domain.tensor_check``), links and external storage are refused, and sizes are counted
before anything is read.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import unicodedata
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

H5_SUFFIXES = (".h5", ".hdf5")
NPZ_SUFFIX = ".npz"
TENSOR_FORMAT = "tensors"  # Dataset.format
MAX_ENTRIES = 256  # named inputs in one file
MAX_SAMPLES = 10_000  # samples of one entry
MAX_RANK = 8
MAX_NAME = 256  # characters of an entry's name (a model input's or output's)
# Unicode categories no input name holds: control characters (PostgreSQL's JSON cannot store
# NUL), invisible formatting, lone surrogates, line and paragraph separators.
INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
# Every value of a file, decompressed: a few megabytes of gzip (h5) or deflate (.npz) can declare
# gigabytes of zeros, and a worker holds a job's inputs in memory.
MAX_VALUE_BYTES = 1024**3
CHECK_MEMORY = 1024**3
CHECK_SECONDS = 60
# The dtypes ONNX Runtime takes as input, by numpy's name.
DTYPES = {
    "float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16",
    "uint32", "uint64", "bool",
}  # fmt: skip
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
LAYOUT = "seed 000's h5 layout: data/<i>/batch_<j>"
PROJECT_ROOT = Path(__file__).resolve().parents[2]  # where ``python -m jobs…`` finds the package

Entries = dict[str, list[np.ndarray]]


class BadTensors(ValueError):
    """The file is not named tensors the hub can use; the message says what is wrong."""


def is_tensor_file(label: str) -> bool:
    return label.lower().endswith((*H5_SUFFIXES, NPZ_SUFFIX))


def _entry(name: str, arrays: list[tuple[np.dtype[Any], tuple[int, ...]]]) -> dict[str, Any]:
    """One entry's description: its name, dtype, the shape of each sample, and the bytes its
    values take once read (``bytes``, counted by describe_here, not stored)."""
    check_name(name)
    dtypes = {dtype.name for dtype, _ in arrays}
    if len(dtypes) != 1:
        raise BadTensors(
            f"the samples of {name!r} have different dtypes ({', '.join(sorted(dtypes))}); give "
            "every sample of an input the one dtype the model takes."
        )
    (dtype,) = dtypes
    if dtype not in DTYPES:
        held = "strings or Python objects" if dtype == "object" else f"{dtype} values"
        raise BadTensors(
            f"{name!r} holds {held}; the hub takes arrays of {', '.join(sorted(DTYPES))}."
        )
    for _, shape in arrays:
        if len(shape) > MAX_RANK:
            raise BadTensors(
                f"{name!r} has a sample of {len(shape)} dimensions; the hub takes arrays of at "
                f"most {MAX_RANK}."
            )
    size = sum(math.prod(shape) * dt.itemsize for dt, shape in arrays)  # Python ints: no overflow
    return {
        "name": name,
        "dtype": dtype,
        "shapes": [list(shape) for _, shape in arrays],
        "bytes": size,
    }


def check_name(name: str) -> None:
    """BadTensors unless ``name`` can name an entry (an input's or an output's name)."""
    if len(name) > MAX_NAME or any(unicodedata.category(c) in INVISIBLE for c in name):
        raise BadTensors(
            f"an entry's name ({_shown(name)}) is not an input name: at most {MAX_NAME} "
            "characters, none of them control or invisible ones."
        )


def _shown(text: str, limit: int = 60) -> str:
    """A name from the file as a message may show it: as it is when short and printable, else
    quoted with its escapes, and cut."""
    if len(text) <= limit and text.isprintable():
        return text
    return repr(text[:limit]) + ("…" if len(text) > limit else "")


def _whole_number(value: Any) -> int | None:
    """An h5 attribute that should be one whole number (a numpy scalar or a Python int), or
    None: a list, a string or a fraction is not read as one."""
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value.item()
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def _batch_count(value: Any, where: str, name: str) -> int:
    """An entry's batch_count attribute: how many samples it holds, 1 to MAX_SAMPLES."""
    count = _whole_number(value)
    if value is None:
        raise BadTensors(f"{where} has no batch_count attribute (its number of samples).")
    if count is None:
        given = value.tolist() if isinstance(value, np.ndarray | np.generic) else value
        raise BadTensors(
            f"{where} has batch_count {_shown(repr(given))}; it must be a whole number: how "
            "many samples (batch_0, batch_1, …) the entry holds."
        )
    if count < 1:
        raise BadTensors(
            f"{where} has batch_count {count}; it must be how many samples (batch_0, batch_1, …) "
            "the entry holds, at least 1."
        )
    if count > MAX_SAMPLES:
        raise BadTensors(
            f"{name!r} has {count} samples; a dataset takes at most {MAX_SAMPLES} (split it "
            "into several)."
        )
    return count


def _too_many(count: int, what: str) -> str:
    """A file of more named inputs than the hub takes: entries of an h5, arrays of a .npz."""
    return f"it has {count} {what}, one per input; a dataset takes at most {MAX_ENTRIES} inputs."


def _link_problem(where: str, link: Any) -> str:
    import h5py

    if link is None:
        return f"{where} is missing."
    if isinstance(link, h5py.ExternalLink):
        return f"{where} is a link to another file; links are not followed."
    if isinstance(link, h5py.SoftLink):
        return f"{where} is a link (to {link.path!r} in the file); links are not followed."
    return f"{where} is a link; links are not followed."


def _describe_h5(path: Path) -> list[dict[str, Any]]:
    import h5py

    with h5py.File(path, "r") as h5f:
        data = h5f.get("data", getlink=True)
        if data is None:
            raise BadTensors(f"it has no group 'data' ({LAYOUT}).")
        if not isinstance(data, h5py.HardLink):
            raise BadTensors(_link_problem("'data'", data))
        group = h5f["data"]
        if not isinstance(group, h5py.Group):
            raise BadTensors(f"'data' is not a group of entries ({LAYOUT}).")
        if len(group) > MAX_ENTRIES:
            raise BadTensors(_too_many(len(group), "entries"))
        entries: list[tuple[int, dict[str, Any]]] = []
        for key in group:
            link = group.get(key, getlink=True)
            if not isinstance(link, h5py.HardLink):
                raise BadTensors(_link_problem(f"data/{_shown(key)}", link))
            entries.append(_describe_h5_entry(key, group[key]))
    positions = [p for p, _ in entries]
    if sorted(positions) != list(range(len(entries))):
        raise BadTensors(
            f"the entries' order attributes are {sorted(positions)}; they number the entries "
            f"0 to {len(entries) - 1}, each once."
        )
    return [entry for _, entry in sorted(entries, key=lambda e: e[0])]


def _describe_h5_entry(key: str, item: Any) -> tuple[int, dict[str, Any]]:
    """(position, description) of the group ``data/<key>``; every sample a dataset whose values
    are inside the file."""
    import h5py

    stored_key, key = key, _shown(key)  # the name as stored, and as a message shows it
    if not isinstance(item, h5py.Group):
        raise BadTensors(f"data/{key} is not a group of samples ({LAYOUT}).")
    name = item.attrs.get("name")
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    if not isinstance(name, str) or not name:
        raise BadTensors(f"data/{key} has no 'name' attribute (the input it is for).")
    check_name(name)
    count = _batch_count(item.attrs.get("batch_count"), f"data/{key} ({name!r})", name)
    order = item.attrs.get("order")
    if order is not None:
        position = _whole_number(order)
    else:  # seed 000's client leaves it out for entries given as a list: their key is their place
        position = int(stored_key) if stored_key.isascii() and stored_key.isdigit() else None
    if position is None:
        raise BadTensors(f"data/{key} ({name!r}) has an order that is not a whole number.")
    arrays = []
    for j in range(count):
        where = f"data/{key}/batch_{j} ({name!r}, sample {j} of batch_count {count})"
        link = item.get(f"batch_{j}", getlink=True)
        if not isinstance(link, h5py.HardLink):
            raise BadTensors(_link_problem(where, link))
        dataset = item[f"batch_{j}"]
        if not isinstance(dataset, h5py.Dataset):
            raise BadTensors(f"{where} is not an array.")
        # Read from the dataset's creation properties: neither opens the file they name.
        if dataset.external or dataset.is_virtual:
            raise BadTensors(
                f"{where} keeps its values in another file; every value must be inside the "
                "uploaded file."
            )
        arrays.append((dataset.dtype, tuple(int(n) for n in dataset.shape)))
    # Samples past batch_count would be left out without a word: the uploader means them.
    extra = sorted(k for k in item if _beyond(k, count))
    if extra:
        raise BadTensors(
            f"data/{key} ({name!r}) holds {', '.join(extra[:3])} beyond its batch_count {count}; "
            "batch_count is the number of samples."
        )
    return position, _entry(name, arrays)


def _beyond(member: str, count: int) -> bool:
    number = member[6:]
    return (
        member.startswith("batch_")
        and number.isascii()
        and number.isdigit()
        and int(number) >= count
    )


def _describe_npz(path: Path) -> list[dict[str, Any]]:
    from numpy.lib import format as npformat

    entries = []
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
        if len(members) > MAX_ENTRIES:
            raise BadTensors(_too_many(len(members), "arrays"))
        for member in members:
            if not member.filename.endswith(".npy") or "/" in member.filename:
                raise BadTensors(
                    f"it holds {_shown(member.filename)}, which is not an array: a .npz holds "
                    "one <input name>.npy per input (numpy.savez writes them)."
                )
            name = member.filename[:-4]
            with archive.open(member) as handle:
                version = npformat.read_magic(handle)
                if version == (1, 0):
                    shape, _, dtype = npformat.read_array_header_1_0(handle)
                else:
                    shape, _, dtype = npformat.read_array_header_2_0(handle)
            if dtype.hasobject:
                raise BadTensors(
                    f"{name!r} holds Python objects; the hub takes arrays of "
                    f"{', '.join(sorted(DTYPES))}."
                )
            # The zip's own sizes can lie; the total of every file is counted in describe_here.
            if math.prod(shape) * dtype.itemsize > member.file_size:
                raise BadTensors(
                    f"{name!r} declares a shape of {list(shape)}, more values than it holds: the "
                    "file is damaged, or was not written by numpy."
                )
            entries.append(_entry(name, [(dtype, tuple(shape))]))
    return entries


def describe_here(path: Path, label: str) -> dict[str, Any]:
    """``{"file_format", "entries": [{"name", "dtype", "shapes"}], "samples"}``; BadTensors
    names what is wrong. Reads headers only. Run it in a child (describe)."""
    try:
        if label.lower().endswith(NPZ_SUFFIX):
            entries, file_format = _describe_npz(path), "npz"
        else:
            entries, file_format = _describe_h5(path), "h5"
    except (BadTensors, MemoryError):  # the child answers a MemoryError as such
        raise
    except Exception as error:  # a corrupt file: whatever the library raises, named
        kind = "a .npz" if label.lower().endswith(NPZ_SUFFIX) else "an h5 file"
        raise BadTensors(f"it is not {kind} that can be read ({type(error).__name__}).") from None
    if not entries:
        raise BadTensors("it holds no arrays; a dataset holds the samples of at least one input.")
    counts = {len(e["shapes"]) for e in entries}
    if len(counts) != 1:
        raise BadTensors(
            "its entries hold different numbers of samples ("
            + ", ".join(f"{e['name']}: {len(e['shapes'])}" for e in entries)
            + "); every input needs one value per sample."
        )
    names = [e["name"] for e in entries]
    twice = next((n for n in names if names.count(n) > 1), None)
    if twice is not None:
        raise BadTensors(
            f"two entries are named {_shown(twice)}; each input's samples are one entry."
        )
    total = sum(e.pop("bytes") for e in entries)
    if total > MAX_VALUE_BYTES:
        largest = max(entries, key=lambda e: max(math.prod(s) for s in e["shapes"]))
        shape = max(largest["shapes"], key=math.prod)
        raise BadTensors(
            f"its arrays hold {total:,} bytes of values once read (the largest, "
            f"{largest['name']!r}, is {largest['dtype']} of shape {shape}); the hub reads at "
            f"most {MAX_VALUE_BYTES:,}."
        )
    return {"file_format": file_format, "entries": entries, "samples": counts.pop()}


def describe(path: Path, label: str) -> dict[str, Any]:
    """describe_here in a child process within CHECK_MEMORY and CHECK_SECONDS: a hostile file
    costs that child, never the web process or the worker."""
    request = {
        "path": str(path.resolve()),  # the child runs in the project folder
        "label": label,
        "memory": CHECK_MEMORY,
        "seconds": CHECK_SECONDS,
    }
    try:
        done = subprocess.run(
            [sys.executable, "-m", "jobs.domain.tensor_check"],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            timeout=CHECK_SECONDS,
            cwd=str(PROJECT_ROOT),
            # One thread: the child does no arithmetic, and OpenBLAS starting a thread per core
            # inside the memory limit (each with its buffer) fails and hangs until the timeout.
            env={**os.environ, **dict.fromkeys(THREAD_VARIABLES, "1")},
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BadTensors(f"reading it took longer than {CHECK_SECONDS} s.") from None
    try:
        answer = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        answer = None
    if isinstance(answer, dict) and "refused" in answer:
        raise BadTensors(str(answer["refused"]))
    if isinstance(answer, dict) and isinstance(answer.get("metadata"), dict):
        return dict(answer["metadata"])
    limit = f"{CHECK_MEMORY // 1024**2} MiB"
    if isinstance(answer, dict) and answer.get("out_of_memory"):
        raise BadTensors(f"reading its headers needed more than {limit} of memory.")
    if done.returncode == -signal.SIGXCPU:
        raise BadTensors(f"reading it needed more than {CHECK_SECONDS} s of CPU time.")
    # Killed (an allocation past the limit can end it without a MemoryError) or crashed: what
    # it cost, never the child's traceback.
    raise BadTensors(f"reading it needed more than {limit} of memory, or crashed.")


def misfits(entries: list[dict[str, Any]], specs: dict[str, dict[str, Any]]) -> list[str]:
    """What keeps described entries (``describe``'s ``entries``) from being a model's inputs
    (``{name: {"shape", "dtype"}}``, files.io_specs): each missing input, each entry that is no
    input, each wrong dtype, and the first sample of each input whose shape does not fill the
    model's fixed dimensions. Empty when they fit."""
    given = {e["name"]: e for e in entries}
    problems = []
    missing = [n for n in specs if n not in given]
    if missing:
        problems.append(f"missing {', '.join(repr(n) for n in missing)}")
    extra = [n for n in given if n not in specs]
    if extra:
        problems.append(f"{', '.join(repr(n) for n in extra)} not an input of the model")
    for name, spec in specs.items():
        entry = given.get(name)
        if entry is None:
            continue
        if entry["dtype"] != spec["dtype"]:
            problems.append(f"{name!r} is {entry['dtype']}, the model takes {spec['dtype']}")
        fixed = spec["shape"]
        for j, shape in enumerate(entry["shapes"]):
            if len(shape) != len(fixed) or any(
                isinstance(d, int) and d > 0 and d != s for d, s in zip(fixed, shape, strict=False)
            ):
                problems.append(f"{name!r} sample {j} has shape {shape}, the model takes {fixed}")
                break
    return problems


def read(path: Path, file_format: str) -> Entries:
    """The arrays of a described file, by entry name in order, in this machine's byte order (a
    worker reads them; ``describe`` has already refused links, external storage and sizes past
    the limits)."""
    if file_format == "npz":
        with np.load(path, allow_pickle=False) as archive:
            return {name: [_native(archive[name])] for name in archive.files}
    import h5py

    entries: list[tuple[int, str, list[np.ndarray]]] = []
    with h5py.File(path, "r") as h5f:
        for key, item in h5f["data"].items():
            name = item.attrs["name"]
            name = name.decode() if isinstance(name, bytes) else str(name)
            count = int(item.attrs["batch_count"])
            arrays = [_native(np.asarray(item[f"batch_{j}"])) for j in range(count)]
            entries.append((int(item.attrs.get("order", key)), name, arrays))
    return {name: arrays for _, name, arrays in sorted(entries, key=lambda e: e[0])}


def _native(array: np.ndarray) -> np.ndarray:
    """A big-endian array (h5 and .npz keep the writer's byte order) as ONNX Runtime reads it."""
    return array if array.dtype.isnative else array.astype(array.dtype.newbyteorder("="))


class H5Writer:
    """Seed 000's layout written a sample at a time (a job's outputs are never all in memory),
    as its client's ``h5_to_dataset_entries`` reads it back."""

    def __init__(self, path: Path, names: list[str], values: int = 6) -> None:
        import h5py

        self.path, self.names, self.values = path, names, values
        self.samples = 0
        self._file = h5py.File(path, "w")
        self._groups = []
        for index, name in enumerate(names):
            group = self._file.create_group(f"data/{index}")
            group.attrs["name"] = name
            group.attrs["order"] = index
            self._groups.append(group)
        self._shown: list[dict[str, Any]] = [
            {"name": n, "dtype": "", "shapes": [], "first_values": []} for n in names
        ]

    def add(self, arrays: Iterable[np.ndarray]) -> None:
        """One sample: an array for each name, in order."""
        for group, shown, array in zip(self._groups, self._shown, arrays, strict=True):
            group.create_dataset(f"batch_{self.samples}", data=array)
            shown["shapes"].append(list(array.shape))
            if not self.samples:
                shown["dtype"] = array.dtype.name
                shown["first_values"] = [v.item() for v in array.ravel()[: self.values]]
        self.samples += 1

    def close(self) -> list[dict[str, Any]]:
        """Finish the file; what ``preview`` says of what was written."""
        for group in self._groups:
            group.attrs["batch_count"] = self.samples
        self._file.close()
        return self._shown

    def abandon(self) -> None:
        self._file.close()


def write_h5(entries: Entries, path: Path) -> Path:
    """Seed 000's layout, as its client's ``h5_to_dataset_entries`` reads it back."""
    writer = H5Writer(path, list(entries))
    for j in range(max((len(a) for a in entries.values()), default=0)):
        writer.add(arrays[j] for arrays in entries.values())
    writer.close()
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


def value_bytes(metadata: dict[str, Any]) -> int:
    """The bytes of every value a described file holds (its Dataset.metadata)."""
    return sum(
        math.prod(shape) * np.dtype(entry["dtype"]).itemsize
        for entry in metadata.get("entries", [])
        for shape in entry["shapes"]
    )
