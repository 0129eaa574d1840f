"""Uploads: models (ONNX files and archives, Hugging Face folders) and datasets, each checked
before it is stored, and stored once per owner and content."""

from __future__ import annotations

from pathlib import Path, PurePath
from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.files import File
from django.db import transaction
from django.db.models import QuerySet

from jobs.domain import files, hf_models, onnx_data, onnx_runtime, quotas, tensor_data
from jobs.models import Dataset, MLModel, ModelFormat
from jobs.services.common import check_upload_size, clean_name


def _filename(file: File) -> str:
    return PurePath(file.name or "upload").name


def model_upload(*, owner: User, file: File, name: str | None = None) -> MLModel:
    """Store a model after checking it: an ONNX file (for link jobs), or a Hugging Face model
    folder as a .zip or .tar.gz archive (for customization jobs)."""
    label = _filename(file)
    sha256, size = files.sha256_of(file)
    check_upload_size(size, label)
    if hf_models.is_model_archive(label):
        with files.local_path(file) as path:
            onnx_archive = onnx_data.is_onnx_archive(Path(path))
        if onnx_archive:
            return _onnx_archive_upload(owner=owner, file=file, name=name, label=label)
        return _hf_model_upload(owner=owner, file=file, name=name, label=label)
    name = clean_name(name, PurePath(label).stem or "model")
    stored_name = label if label.endswith(".onnx") else f"{label}.onnx"
    with files.local_path(file) as path, files.work_folder() as workdir:
        metadata = files.onnx_metadata(path, label)
        # What a link job will load it with, checked now; a too-new IR version is lowered.
        lowered = onnx_runtime.loadable(path, label, workdir)
        if lowered is None:
            return _store_onnx(owner, name, file, stored_name, size, sha256, metadata)
        with lowered.open("rb") as handle:
            sha256, size = files.sha256_of(handle)
            metadata["ir_version_uploaded"] = metadata["ir_version"]
            metadata["ir_version"] = onnx_runtime.runtime().max_ir
            return _store_onnx(owner, name, File(handle), stored_name, size, sha256, metadata)


def _store_onnx(
    owner: User,
    name: str,
    file: File,
    stored_name: str,
    size: int,
    sha256: str,
    metadata: dict[str, Any],
) -> MLModel:
    if (same := _already_uploaded(_same_model(owner, sha256, ModelFormat.ONNX))) is not None:
        return same
    model = MLModel(owner=owner, name=name, format=ModelFormat.ONNX, size=size, sha256=sha256)
    model.metadata = metadata
    with files.stored_with_its_row(model.file), transaction.atomic():
        quotas.lock_person(owner.pk)
        quotas.check_upload_quota(owner.pk, size)
        model.file.save(stored_name, file, save=False)
        model.save()
    return model


def _archive_stem(label: str) -> str:
    stem = label
    for suffix in hf_models.ARCHIVE_SUFFIXES:
        stem = stem.removesuffix(suffix).removesuffix(suffix.upper())
    return stem or "model"


def _onnx_archive_upload(*, owner: User, file: File, name: str | None, label: str) -> MLModel:
    """An ONNX model with its data file(s), as an archive: unpacked as a Hugging Face archive is
    (members inside it, the unpacked size counted as written), every data location checked, and
    stored normalised (jobs/domain/onnx_data.py): a zip of model.onnx and model.onnx.data, or the
    plain .onnx when its tensors name no data file."""
    stem = _archive_stem(label)
    name = clean_name(name, stem)
    with files.local_path(file) as path, files.work_folder() as workdir:
        unpacked = workdir / "unpacked"
        unpacked.mkdir()
        onnx_data.unpack_upload(Path(path), label, unpacked)
        model_path, others = onnx_data.find_model(unpacked, label)
        normal = workdir / "normal"
        metadata, stored = files.onnx_folder(model_path, others, label, normal)
        if metadata["external_data"]:
            stored = hf_models.normalised_zip(normal, workdir / "model.zip")
        with stored.open("rb") as handle:
            sha256, size = files.sha256_of(handle)
            stored_name = f"{stem}.zip" if metadata["external_data"] else f"{stem}.onnx"
            return _store_onnx(owner, name, File(handle), stored_name, size, sha256, metadata)


def _hf_model_upload(*, owner: User, file: File, name: str | None, label: str) -> MLModel:
    """Unpack and check the folder (jobs/domain/hf_models.py), then store it as one normalised
    zip, whose size and sha256 are what the hub keeps and serves."""
    stem = label
    for suffix in hf_models.ARCHIVE_SUFFIXES:
        stem = stem.removesuffix(suffix).removesuffix(suffix.upper())
    name = clean_name(name, stem or "model")
    with files.local_path(file) as path, files.work_folder() as workdir:
        metadata, normalised = hf_models.inspect_archive(Path(path), label, workdir)
        with normalised.open("rb") as handle:
            sha256, size = files.sha256_of(handle)
            if (same := _already_uploaded(_same_model(owner, sha256, ModelFormat.HF))) is not None:
                return same
            model = MLModel(owner=owner, name=name, format=ModelFormat.HF, size=size, sha256=sha256)
            model.metadata = metadata
            with files.stored_with_its_row(model.file), transaction.atomic():
                quotas.lock_person(owner.pk)
                quotas.check_upload_quota(owner.pk, size)
                model.file.save(f"{stem or 'model'}.zip", File(handle), save=False)
                model.save()
    return model


def dataset_upload(*, owner: User, file: File, name: str | None = None) -> Dataset:
    """Store a dataset after checking it: a JSONL file (prompt/completion or chat rows, every
    line read), or named tensors in seed 000's h5 layout or a .npz (inference inputs,
    calibration data: described in a child process, jobs.domain.tensor_data)."""
    label = _filename(file)
    sha256, size = files.sha256_of(file)
    check_upload_size(size, label)
    name = clean_name(name, PurePath(label).stem or "dataset")
    metadata: dict[str, Any] = {}
    if tensor_data.is_tensor_file(label):
        with files.local_path(file) as path:
            try:
                metadata = tensor_data.describe(Path(path), label)
            except tensor_data.BadTensors as bad:
                raise ValidationError({"file": f"{label}: {bad}"}) from None
        records, format = metadata["samples"], tensor_data.TENSOR_FORMAT
    else:
        summary = files.check_jsonl_dataset(file, label)
        records, format = summary.records, summary.format
    if (
        same := _already_uploaded(
            Dataset.objects.filter(owner=owner, sha256=sha256, deleted_at__isnull=True)
        )
    ) is not None:
        return same
    dataset = Dataset(
        owner=owner,
        name=name,
        size=size,
        sha256=sha256,
        num_records=records,
        format=format,
        metadata=metadata,
    )
    with files.stored_with_its_row(dataset.file), transaction.atomic():
        quotas.lock_person(owner.pk)
        quotas.check_upload_quota(owner.pk, size)
        dataset.file.save(label, file, save=False)
        dataset.save()
    return dataset


def _already_uploaded(found: QuerySet[Any]) -> Any:
    """The owner's own asset with exactly this content (``found``), marked ``already_uploaded``:
    the same bytes again are stored once (and count once against the quota), and the uploader is
    told which."""
    same = found.order_by("created_at").first()
    if same is not None:
        same.already_uploaded = True  # read by the views: 200 and "already uploaded as …"
    return same


def _same_model(owner: User, sha256: str, format: str) -> QuerySet[MLModel]:
    """Models the owner uploaded (not ones a job made) with this content."""
    return MLModel.objects.filter(
        owner=owner, sha256=sha256, format=format, produced_by__isnull=True, deleted_at__isnull=True
    )
