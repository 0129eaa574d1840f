"""A compile job's source model as an ONNX file in its own folder of the job's work folder: an
uploaded ONNX model (one .onnx, or the zip of model.onnx and its data file the hub stores), or
a Hugging Face causal LM exported to ONNX the way customization outputs are
(jobs.engine.training.outputs.export_onnx)."""

from __future__ import annotations

import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError

from jobs.domain import hf_models, onnx_data
from jobs.domain.files import uses_external_data
from jobs.domain.redact import library_message
from jobs.domain.status import FailureType
from jobs.engine.compiling import CompileFailure
from jobs.engine.scratch import local_path
from jobs.models import MLModel, ModelFormat

# The ONNX inputs of an exported Hugging Face causal LM (export_onnx: ``input_ids`` of dynamic
# batch and sequence → ``logits``): what input_specs fix for such a model.
HF_EXPORT_INPUTS: dict[str, dict[str, Any]] = {
    "input_ids": {"shape": ["batch", "sequence"], "dtype": "int64"}
}


@dataclass(frozen=True)
class Source:
    path: Path  # the .onnx, alone in its folder with its data file if it has one
    label: str  # "model m… (name)", for messages
    exported: bool  # made here from a Hugging Face model


def label_of(model: MLModel) -> str:
    return f"model {model.public_id} ({model.name})"


def files_size(path: Path) -> int:
    """Bytes of an ONNX file and the data files beside it (its folder holds nothing else)."""
    return sum(p.stat().st_size for p in path.parent.iterdir() if p.is_file())


def prepare(model: MLModel, into: Path) -> Source:
    """The source model as an .onnx in ``into`` (made here), checked as a link job checks its
    inputs; CompileFailure naming what is wrong."""
    label = label_of(model)
    into.mkdir(parents=True)
    try:
        if model.format == ModelFormat.HF:
            return Source(_export(local_path(model.file), into, label), label, exported=True)
        return Source(_stored_onnx(local_path(model.file), into, label), label, exported=False)
    except FileNotFoundError:
        raise CompileFailure(
            FailureType.INTERNAL_ERROR, f"The stored file of {label} is missing."
        ) from None


def _stored_onnx(stored: Path, into: Path, label: str) -> Path:
    import onnx

    try:
        if stored.name.endswith(".zip"):
            # Stored with its data (jobs.domain.onnx_data): the locations are checked again as
            # it is unpacked, and read from there.
            path = onnx_data.stored_folder(stored, into, label)
            onnx.checker.check_model(str(path))
            return path
        proto = onnx.load(str(stored), load_external_data=False)
        # Never the data files a single stored .onnx names: uploads refuse such files, and a
        # path in a stored model is not the hub's to follow.
        if uses_external_data(proto):
            raise ValueError("it keeps tensor data in separate files")
        onnx.checker.check_model(proto)
    except FileNotFoundError:
        raise
    except Exception as error:
        raise CompileFailure(
            FailureType.INVALID_MODEL,
            f"{label} is not a valid ONNX model: {library_message(error)}",
        ) from None
    path = into / onnx_data.MODEL_NAME
    shutil.copyfile(stored, path)  # the passes write beside it; the stored file stays as it is
    return path


def _export(stored: Path, into: Path, label: str) -> Path:
    """The Hugging Face model unpacked (checked again as it is), loaded in float32 and exported
    with the customization job's exporter, which checks the export against PyTorch."""
    from jobs.engine.training import outputs

    try:
        folder = hf_models.unpack_stored(stored, into.parent / "hf")
    except ValidationError as error:
        raise CompileFailure(
            FailureType.INVALID_MODEL, f"{label} is refused: {' '.join(error.messages)}"
        ) from None
    except (OSError, zipfile.BadZipFile) as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise CompileFailure(
            FailureType.INVALID_MODEL, f"{label} cannot be read: {type(error).__name__}."
        ) from None
    model = _load_causal_lm(folder, label)
    target = into / onnx_data.MODEL_NAME
    try:
        outputs.export_onnx(model, target, model.config.vocab_size)
    except Exception as error:  # the exporter fails in many ways on many architectures
        raise CompileFailure(
            FailureType.INVALID_MODEL,
            f"{label} does not export to ONNX with torch.onnx, which compile jobs use for Hugging "
            f"Face models ({type(error).__name__}: {library_message(error, 200)}).",
        ) from None
    shutil.rmtree(folder)  # the weights are in the export now
    # The exporter names the data file after the model (model.onnx.data): the hub's name too.
    return target


def _load_causal_lm(folder: Path, label: str) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(
            folder, local_files_only=True, dtype=torch.float32
        )
    except Exception as error:  # transformers says what is missing in its own words
        raise CompileFailure(
            FailureType.INVALID_MODEL,
            f"{label} does not load as a causal language model: {library_message(error, 200)}",
        ) from None
    return model.eval()
