"""Reading uploaded files: hashing them and telling a valid ONNX model or JSONL dataset from
anything else, with messages that name the file and the line at fault."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files import File
from django.db.models.fields.files import FieldFile

from jobs.domain import onnx_data, onnx_runtime, sft_data
from jobs.domain.jsonlimits import JSONRefused, loads_bounded
from jobs.domain.onnx_inputs import InputTooLarge, check_input_size
from jobs.domain.redact import library_message

CHUNK = 1024 * 1024


def sha256_of(file: File | IO[bytes]) -> tuple[str, int]:
    """(hex digest, size in bytes), read in chunks so a large upload never sits in memory."""
    digest, size = hashlib.sha256(), 0
    file.seek(0)
    while chunk := file.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    file.seek(0)
    return digest.hexdigest(), size


@contextmanager
def local_path(file: File) -> Iterator[str]:
    """A path on disk holding the file's bytes: the upload's own temporary file when Django
    spooled it to disk, otherwise a copy that is removed afterwards."""
    temporary = getattr(file, "temporary_file_path", None)
    if temporary is not None:
        yield temporary()
        return
    folder = Path(settings.FILE_UPLOAD_TEMP_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(suffix=".upload", delete=False, dir=folder) as copy:
        file.seek(0)
        while chunk := file.read(CHUNK):
            copy.write(chunk)
    file.seek(0)
    try:
        yield copy.name
    finally:
        os.unlink(copy.name)


@contextmanager
def stored_with_its_row(field: FieldFile) -> Iterator[None]:
    """Around the transaction that saves a file and writes its row: if the row is not written
    (a quota refused, the database away, a retry to come), the stored file is removed again, so
    that the media disk holds no file that no row names (and a retry stores one copy, not two).
    Use outside ``transaction.atomic()``, so that the rollback comes first."""
    try:
        yield
    except BaseException:
        if field.name:
            field.storage.delete(field.name)
        raise


def _invalid(label: str, error: Exception) -> ValidationError:
    return ValidationError({"file": f"{label} is not a valid ONNX model: {library_message(error)}"})


@contextmanager
def work_folder() -> Iterator[Path]:
    """A temporary folder beside the uploads (on the media disk), removed afterwards."""
    root = Path(settings.FILE_UPLOAD_TEMP_DIR)
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as folder:
        yield Path(folder)


def onnx_metadata(path: str, label: str, data_folder: Path | None = None) -> dict[str, Any]:
    """Check that ``path`` is a valid ONNX model and describe its graph; ``label`` names the
    file in the error. A model whose tensors name data files is taken only with the folder
    that holds them (``data_folder``), every name checked first (jobs/domain/onnx_data.py)."""
    import onnx  # imported here: only model uploads and the workers need it

    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as error:  # onnx raises DecodeError, … with no common base
        raise _invalid(label, error) from None
    if data_folder is None:
        _refuse_external_data(model, label)  # before the checker, which reads the locations
    else:
        onnx_data.check_folder(model, data_folder, label)
    try:
        # Given a path, the checker looks for data files beside the model (checked above);
        # given the loaded model, it would look in the process's working directory.
        onnx.checker.check_model(model if data_folder is None else path)
    except Exception as error:
        raise _invalid(label, error) from None
    graph = model.graph
    initializer_names = {t.name for t in graph.initializer}
    _check_declared_inputs(graph, initializer_names, label)
    return describe_graph(model)


def describe_graph(model: Any) -> dict[str, Any]:
    """What a model page shows of an ONNX model: uploaded, or made by a link job."""
    graph = model.graph
    initializer_names = {t.name for t in graph.initializer}
    return {
        "ir_version": model.ir_version,
        "opsets": {imp.domain or "ai.onnx": imp.version for imp in model.opset_import},
        "graph": graph.name,
        "inputs": [i.name for i in graph.input if i.name not in initializer_names],
        "outputs": [o.name for o in graph.output],
        "nodes": len(graph.node),
        "initializers": len(graph.initializer),
        "input_specs": io_specs([i for i in graph.input if i.name not in initializer_names]),
        "output_specs": io_specs(list(graph.output)),
    }


def io_specs(values: list[Any]) -> dict[str, dict[str, Any]]:
    """``{name: {"shape": [1, 3, "height", …], "dtype": "float32"}}`` of graph inputs or
    outputs: a number for a fixed dimension, its name (or "?") for a dynamic one."""
    import onnx

    specs: dict[str, dict[str, Any]] = {}
    for value in values:
        tensor = value.type.tensor_type
        shape: list[int | str] = [
            d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
            for d in tensor.shape.dim
        ]
        try:
            dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name
        except Exception:  # not a tensor (a sequence, a map): named as ONNX names it
            dtype = onnx.TensorProto.DataType.Name(tensor.elem_type).lower()
        specs[value.name] = {"shape": shape, "dtype": dtype}
    return specs


def uses_external_data(model: Any) -> list[str]:
    """Names of the tensors (initializers and constants, subgraphs included) whose data lies in
    files beside the model rather than in it."""
    return [t.name for t in onnx_data.external_tensors(model)]


def _refuse_external_data(model: Any, label: str) -> None:
    """One uploaded .onnx file cannot bring the files its external data lives in: such a model
    is refused, naming a tensor and the two ways to upload it (with its data, or whole)."""
    external = uses_external_data(model)
    if external:
        raise ValidationError(
            {
                "file": f"{label} keeps the data of {len(external)} tensor(s) (first: "
                f"{external[0][:100]}) in separate files; upload it with its data file(s) in "
                "one .zip or .tar.gz (the client's upload_model packs them), or save it as one "
                "file with onnx.save(model, path, save_as_external_data=False)."
            }
        )


def onnx_folder(
    model_path: Path, others: list[Path], label: str, into: Path
) -> tuple[dict[str, Any], Path]:
    """Check an unpacked ONNX upload (the model and the other files of its folder) and write
    its normalised form into ``into``: (metadata, the model's path there, beside its
    jobs.domain.onnx_data.DATA_NAME when it has external data). Only the files the model names
    are kept; a named location is checked as a string before any file is opened."""
    import onnx

    try:
        model = onnx.load(str(model_path), load_external_data=False)
    except Exception as error:
        raise _invalid(label, error) from None
    sizes = onnx_data.check_folder(model, model_path.parent, label)
    unnamed = onnx_data.unnamed_files(others, set(sizes))
    if unnamed:
        raise ValidationError(
            {
                "file": f"{label}: {unnamed[0].name[:100]!r} is not a data file of "
                f"{model_path.name[:100]!r} (its tensors do not name it); an ONNX upload holds "
                "the model and its data file(s) only."
            }
        )
    normal = onnx_data.normalise(model, sizes, model_path.parent, into)
    metadata = onnx_metadata(str(normal), label, data_folder=into)
    # What every job loads it with (ONNX Runtime), checked now; a too-new IR version is lowered.
    lowered = onnx_runtime.loadable(str(normal), label, into)
    if lowered is not None:
        lowered.replace(normal)
        metadata["ir_version_uploaded"] = metadata["ir_version"]
        metadata["ir_version"] = onnx_runtime.runtime().max_ir
    stored = sorted(p for p in into.iterdir() if p.is_file())
    metadata["files"] = {p.name: p.stat().st_size for p in stored}
    metadata["total_size"] = sum(metadata["files"].values())
    metadata["external_data"] = bool(sizes)
    return metadata, normal


def _check_declared_inputs(graph: Any, initializers: set[str], label: str) -> None:
    """Refuse at upload an input that verifying a link job would need too much memory for."""
    import onnx

    for value in graph.input:
        if value.name in initializers or not value.type.HasField("tensor_type"):
            continue
        tensor = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
        try:
            itemsize = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).itemsize
        except (KeyError, TypeError, ValueError):
            itemsize = 1
        try:
            check_input_size(value.name, dims, itemsize, label)
        except InputTooLarge as error:
            raise ValidationError({"file": str(error)}) from None


@dataclass(frozen=True)
class DatasetSummary:
    records: int
    format: str  # jobs.domain.sft_data.PROMPT_COMPLETION or CHAT


def check_jsonl_dataset(file: File | IO[bytes], label: str) -> DatasetSummary:
    """Every non-blank line must be a row of one format (jobs.domain.sft_data): prompt and
    completion, chat ``messages``, preference pairs or prompts with answers; all lines alike.
    Linear in the file's size: lines are read with a bound (never joined chunk by chunk), and
    a line past HUB_MAX_DATASET_LINE_BYTES is refused as soon as the bound is reached."""
    limit = settings.HUB_MAX_DATASET_LINE_BYTES
    file.seek(0)
    records = number = 0
    first_format: str | None = None
    prefers = False  # a preference row whose chosen and rejected answers differ
    while raw := file.readline(limit + 1):
        number += 1
        if len(raw) > limit and not raw.endswith(b"\n"):
            raise ValidationError(
                {
                    "file": f"{label}, line {number}: longer than {limit} bytes "
                    "(HUB_MAX_DATASET_LINE_BYTES); one record per line."
                }
            )
        if not raw.strip():
            continue
        try:
            record = loads_bounded(raw)
        except JSONRefused as refused:
            raise ValidationError({"file": f"{label}, line {number}: {refused}."}) from None
        try:
            row = sft_data.row_format(record)
        except sft_data.RowError as error:
            raise ValidationError({"file": f"{label}, line {number}: {error}."}) from None
        if first_format is None:
            first_format = row
        elif row != first_format:
            raise ValidationError(
                {
                    "file": f"{label}, line {number}: a {row.replace('_', '/')} row in a dataset "
                    f"of {first_format.replace('_', '/')} rows; use one format per dataset."
                }
            )
        if row == sft_data.PREFERENCE and not prefers:
            _, chosen, rejected = sft_data.preference_pair(record)
            prefers = chosen.strip() != rejected.strip()
        records += 1
    file.seek(0)
    if records == 0:
        raise ValidationError({"file": f"{label} has no records: expected JSON lines."})
    assert first_format is not None
    if first_format == sft_data.PREFERENCE and not prefers:
        raise ValidationError(
            {
                "file": f"{label}: in every row the chosen answer is the rejected one, so there "
                "is nothing to prefer. Give each prompt a better (chosen) and a worse (rejected) "
                "answer."
            }
        )
    return DatasetSummary(records=records, format=first_format)
