"""ONNX models whose weights lie in data files beside them ("external data"), as
``torch.onnx.export`` writes them (``model.onnx`` + ``model.onnx.data``).

Each tensor stored that way names its file by a ``location`` the uploader wrote, with an
``offset`` and a ``length``: every one is treated as hostile. A location must be a plain file
name (no folder, no absolute path, no ``..``, no drive or stream), checked as a string before
anything is opened, so a name can never make the hub open a file outside the model's folder; the
file it names must then be a regular file (not a link) of the upload, and the bytes it names must
lie within that file. Files the model does not name are refused (an empty one, as exporters
leave for small models, is dropped).

A checked model is stored in one normalised form: a zip of ``model.onnx`` and
``model.onnx.data`` (every named file copied into the one data file, offsets moved to match),
whose locations the hub wrote itself. Link jobs unpack it into their work folder and check it
again before onnxruntime reads it.
"""

from __future__ import annotations

import os
import stat
import tarfile
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError

from jobs.domain.redact import scrub_paths

MODEL_NAME = "model.onnx"
DATA_NAME = "model.onnx.data"
MAX_DATA_FILES = 64  # torch and onnx write one; onnx.save(all_tensors_to_one_file=False) one each
MAX_NAME_LENGTH = 255  # a file name's limit on every common file system
KNOWN_KEYS = {"location", "offset", "length", "checksum"}
ALIGNMENT = 4096  # each copied file starts on a page, as onnx aligns its own data files


@dataclass(frozen=True)
class Entry:
    """One tensor's external-data entry: the file it names, and where its bytes lie."""

    tensor: str
    location: str
    offset: int
    length: int | None  # None: to the end of the file


def _refuse(label: str, problem: str) -> ValidationError:
    return ValidationError({"file": f"{label}: {problem}"})


def all_tensors(model: Any) -> Iterator[Any]:
    """Every tensor of the model: initializers and constants, of subgraphs too."""
    graphs = [model.graph]
    while graphs:
        graph = graphs.pop()
        yield from graph.initializer
        for node in graph.node:
            for attribute in node.attribute:
                if attribute.HasField("t"):
                    yield attribute.t
                yield from attribute.tensors
                if attribute.HasField("g"):
                    graphs.append(attribute.g)
                graphs.extend(attribute.graphs)


def external_tensors(model: Any) -> list[Any]:
    """The tensors whose data lies in files beside the model rather than in it."""
    import onnx

    return [t for t in all_tensors(model) if t.data_location == onnx.TensorProto.EXTERNAL]


def _quoted(text: str) -> str:
    return repr(text[:100])


def plain_name(location: str) -> bool:
    """A single file name that can only mean a file of the model's own folder."""
    return (
        0 < len(location) <= MAX_NAME_LENGTH
        and location not in (".", "..")
        and not any(c in location for c in "/\\:")
        and all(ord(c) >= 32 for c in location)
        and location == location.strip()
    )


def entries(model: Any, label: str) -> list[Entry]:
    """The model's external-data entries, each location checked as a string (nothing is opened
    here): a refusal names the tensor and what is wrong with its entry."""
    found: list[Entry] = []
    for tensor in external_tensors(model):
        fields: dict[str, str] = {}
        for item in tensor.external_data:
            if item.key not in KNOWN_KEYS:
                raise _refuse(
                    label,
                    f"tensor {_quoted(tensor.name)} has an unknown external-data key "
                    f"{_quoted(item.key)} (known: location, offset, length, checksum).",
                )
            fields[item.key] = item.value
        location = fields.get("location", "")
        if not plain_name(location):
            # A name leading out of the folder is not echoed: the answer is the same whatever
            # it names, and holds no server path.
            outside = location.startswith(("/", "\\")) or ":" in location or ".." in location
            shown = "a path outside the model's folder" if outside else _quoted(location)
            raise _refuse(
                label,
                f"tensor {_quoted(tensor.name)} names its data file {shown}, which is "
                "not a plain file name in the model's own folder (no folders, absolute paths or "
                "'..'): save the model with its data beside it, e.g. onnx.save(model, "
                "'model.onnx', save_as_external_data=True, location='model.onnx.data').",
            )
        numbers: dict[str, int | None] = {}
        for key in ("offset", "length"):
            text = fields.get(key)
            if text is not None and not (text.isascii() and text.isdigit() and len(text) < 20):
                raise _refuse(
                    label,
                    f"tensor {_quoted(tensor.name)} gives its data {key} as {_quoted(text)}, "
                    "not a whole number of bytes.",
                )
            numbers[key] = int(text) if text is not None else None
        found.append(Entry(tensor.name, location, numbers["offset"] or 0, numbers["length"]))
    return found


def check_folder(model: Any, folder: Path, label: str) -> dict[str, int]:
    """Check every external-data entry of ``model`` against the files of ``folder`` (the hub's
    own work folder of the upload): the names first, as strings, then each named file as a
    regular file of the folder (``lstat``: a link is not followed), then the bytes each entry
    names within it. Returns the named files and their sizes."""
    listed = entries(model, label)  # every name checked before any file is looked at
    names = sorted({entry.location for entry in listed})
    if len(names) > MAX_DATA_FILES:
        raise _refuse(
            label,
            f"its tensors name {len(names)} data files; this hub takes at most {MAX_DATA_FILES}: "
            "save them into one (onnx.save(..., all_tensors_to_one_file=True)).",
        )
    sizes: dict[str, int] = {}
    for name in names:
        try:
            status = os.lstat(folder / name)
        except FileNotFoundError:
            status = None
        if status is None or not stat.S_ISREG(status.st_mode):
            tensor = next(e.tensor for e in listed if e.location == name)
            what = (
                "does not hold it" if status is None else "holds it as something other than a file"
            )
            raise _refuse(
                label,
                f"tensor {_quoted(tensor)} keeps its data in {_quoted(name)}, but the upload "
                f"{what}: upload the model with its data file(s) beside it, in one .zip or "
                ".tar.gz (the client's upload_model packs them).",
            )
        sizes[name] = status.st_size
    for entry in listed:
        size = sizes[entry.location]
        end = entry.offset + (entry.length or 0)
        if entry.offset > size or end > size:
            raise _refuse(
                label,
                f"tensor {_quoted(entry.tensor)} names bytes {entry.offset} to {end} of "
                f"{_quoted(entry.location)}, which holds {size} bytes.",
            )
    return sizes


def copy_into(sizes: dict[str, int], folder: Path, target: Path) -> dict[str, int]:
    """Concatenate the named files of ``folder`` into ``target``, each starting on an aligned
    offset; returns where each one starts."""
    starts: dict[str, int] = {}
    with target.open("wb") as out:
        for name in sorted(sizes):
            position = out.tell()
            if position % ALIGNMENT:
                out.write(b"\0" * (ALIGNMENT - position % ALIGNMENT))
            starts[name] = out.tell()
            with (folder / name).open("rb") as source:
                while chunk := source.read(1024 * 1024):
                    out.write(chunk)
    return starts


def point_at_one_file(model: Any, starts: dict[str, int], sizes: dict[str, int]) -> None:
    """Rewrite every entry to name DATA_NAME at its moved offset, with an explicit length."""
    for tensor in external_tensors(model):
        fields = {item.key: item.value for item in tensor.external_data}
        location, offset = fields["location"], int(fields.get("offset", "0"))
        length = int(fields["length"]) if "length" in fields else sizes[location] - offset
        del tensor.external_data[:]
        for key, value in (
            ("location", DATA_NAME),
            ("offset", str(starts[location] + offset)),
            ("length", str(length)),
        ):
            item = tensor.external_data.add()
            item.key, item.value = key, value
    # Tensors that name no data lose none: a tensor with data in the model is untouched.


def normalise(model: Any, sizes: dict[str, int], folder: Path, into: Path) -> Path:
    """``into``/MODEL_NAME and, when the model names data files, ``into``/DATA_NAME: the hub's
    own names. The model's bytes are written as they are (no library follows its entries)."""
    into.mkdir(parents=True, exist_ok=True)
    if sizes:
        starts = copy_into(sizes, folder, into / DATA_NAME)
        point_at_one_file(model, starts, sizes)
    (into / MODEL_NAME).write_bytes(model.SerializeToString())
    return into / MODEL_NAME


def unnamed_files(files: Iterable[Path], named: set[str]) -> list[Path]:
    """The files of an upload beside its .onnx that its model does not name (empty ones, which
    exporters leave behind for models small enough to keep their data inside, excepted)."""
    return [f for f in files if f.name not in named and f.stat().st_size > 0]


def find_model(root: Path, label: str) -> tuple[Path, list[Path]]:
    """The one .onnx of an unpacked upload, and the other files of its folder. Anything else
    (a second model, a file outside that folder that it cannot name) is refused, named."""
    found = sorted(p for p in root.rglob("*") if p.is_file())
    models = [p for p in found if p.name.lower().endswith(".onnx")]
    if len(models) != 1:
        listed = ", ".join(str(p.relative_to(root)) for p in models[:5])
        raise _refuse(
            label,
            f"an ONNX upload holds exactly one .onnx file and its data file(s); this one holds "
            f"{len(models)}{f' ({listed})' if listed else ''}.",
        )
    model = models[0]
    elsewhere = [p for p in found if p.parent != model.parent]
    if elsewhere:
        raise _refuse(
            label,
            f"{_quoted(str(elsewhere[0].relative_to(root)))} is not in the folder of "
            f"{_quoted(model.name)}, so the model cannot name it; keep the data files beside it.",
        )
    if len(found) - 1 > MAX_DATA_FILES:
        raise _refuse(
            label,
            f"it holds {len(found)} files; an ONNX upload holds the model and at most "
            f"{MAX_DATA_FILES} data files.",
        )
    return model, [p for p in found if p != model]


def stored_folder(stored: Path, into: Path, label: str) -> Path:
    """A stored ONNX zip (MODEL_NAME and maybe DATA_NAME, written by the hub) unpacked into
    ``into``, its entries checked again before anything reads it; the model's path."""
    import onnx

    into.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(stored) as zipped:
        for member in zipped.infolist():
            if member.filename not in (MODEL_NAME, DATA_NAME):
                raise ValueError(f"the stored archive holds an unexpected {member.filename!r}")
            with zipped.open(member) as source, (into / member.filename).open("wb") as out:
                while chunk := source.read(1024 * 1024):
                    out.write(chunk)
    path = into / MODEL_NAME
    try:
        check_folder(onnx.load(str(path), load_external_data=False), into, label)
    except ValidationError as refused:
        raise ValueError(" ".join(refused.messages)) from None
    return path


LISTED_MEMBERS = 4 * MAX_DATA_FILES  # past this, an archive is no ONNX upload (folders count too)


def is_onnx_archive(archive: Path) -> bool:
    """Whether an uploaded archive (.zip, .tar.gz) brings an ONNX model rather than a Hugging
    Face folder: a .onnx member and no config.json, judged from the member list alone. Reading
    a tar's list means reading through it, so that stops past twice HUB_MAX_UPLOAD_BYTES (as
    unpacking does) or LISTED_MEMBERS members: such an archive is left to the Hugging Face
    checks, which refuse it."""
    names: list[str] = []
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zipped:
                members = zipped.infolist()
                if len(members) > LISTED_MEMBERS:
                    return False
                names = [m.filename for m in members]
        else:
            limit, declared = 2 * int(settings.HUB_MAX_UPLOAD_BYTES), 0
            with tarfile.open(archive, "r|*") as tarred:
                for entry in tarred:
                    declared += entry.size
                    names.append(entry.name)
                    if declared > limit or len(names) > LISTED_MEMBERS:
                        return False
    except (OSError, EOFError, tarfile.TarError, zipfile.BadZipFile):
        return False  # the Hugging Face checks say what is wrong with it
    base = [name.rstrip("/").rsplit("/", 1)[-1].lower() for name in names]
    return any(b.endswith(".onnx") for b in base) and "config.json" not in base


def unpack_upload(archive: Path, label: str, into: Path) -> None:
    """Unpack an uploaded archive with the Hugging Face archives' unpacking (members inside the
    folder, no links, members counted first, the unpacked size counted as written); its
    refusals as the upload's."""
    from jobs.domain import hf_models

    try:
        hf_models.unpack(archive, into, hf_models.Limits.from_settings())
    except hf_models.Refused as refused:
        problem = refused.problem if refused.names_member else scrub_paths(refused.problem)
        raise _refuse(label, problem) from None
