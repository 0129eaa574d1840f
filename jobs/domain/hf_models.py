"""Hugging Face model folders brought as archives (.zip, .tar.gz): unpacked safely, checked
the way the trainer will load them, described for the model page, and stored again as one
normalised zip of the folder.

Checks, each refusal naming the problem: archive members stay inside the archive (no absolute
paths, no ``..``, no links or devices) and unpack to at most twice HUB_MAX_UPLOAD_BYTES; one
folder holds ``config.json``; the config loads with ``AutoConfig`` (no remote code) and names a
causal language model that transformers supports; weights are safetensors, whole (every shard of
an index present), and no pickled weights (``.bin``, ``.pt``, …: loading those runs code); the
tokenizer loads. Nothing is downloaded: ``HF_HUB_OFFLINE`` is set for every hub process.
"""

from __future__ import annotations

import json
import math
import shutil
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError

from jobs.domain.redact import scrub_paths

ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz")
PICKLED = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def is_model_archive(filename: str) -> bool:
    return filename.lower().endswith(ARCHIVE_SUFFIXES)


def _refuse(label: str, problem: str, *, names_member: bool = False) -> ValidationError:
    """The refusal, without server paths (a library's message may name the unpacked files);
    a member's own name, which the person wrote, is quoted as it is."""
    return ValidationError(
        {"file": f"{label}: {problem if names_member else scrub_paths(problem)}"}
    )


def _unpacked_limit() -> int:
    return 2 * int(settings.HUB_MAX_UPLOAD_BYTES)


def _safe_name(name: str, label: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or "\\" in name or ":" in name:
        raise _refuse(
            label, f"the archive member {name!r} would land outside its folder.", names_member=True
        )
    return path


def unpack(archive: Path, label: str, into: Path) -> None:
    """Unpack ``archive`` into ``into``, refusing unsafe members and what would unpack to more
    than the limit (counted as the bytes are written, not as the archive declares them)."""
    limit, written = _unpacked_limit(), 0

    def copy(source: Any, target: Path) -> None:
        nonlocal written
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as out:
            while chunk := source.read(1024 * 1024):
                written += len(chunk)
                if written > limit:
                    raise _refuse(
                        label,
                        f"it unpacks to more than {limit} bytes (twice HUB_MAX_UPLOAD_BYTES).",
                    )
                out.write(chunk)

    if archive.name.lower().endswith(".zip") or zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zipped:
            for member in zipped.infolist():
                path = _safe_name(member.filename, label)
                if member.is_dir():
                    continue
                if (member.external_attr >> 16) & 0o170000 == 0o120000:
                    raise _refuse(label, f"the archive member {member.filename!r} is a link.")
                with zipped.open(member) as source:
                    copy(source, into / path)
        return
    try:
        with tarfile.open(archive, "r:*") as tarred:
            for entry in tarred:
                path = _safe_name(entry.name, label)
                if entry.isdir():
                    continue
                if not entry.isfile():
                    raise _refuse(label, f"the archive member {entry.name!r} is not a plain file.")
                data = tarred.extractfile(entry)
                assert data is not None
                copy(data, into / path)
    except tarfile.TarError as error:
        raise _refuse(label, f"not a readable .zip or .tar.gz archive ({error}).") from None


def model_folder(root: Path, label: str) -> Path:
    """The one folder of the unpacked archive that holds config.json."""
    configs = sorted(root.rglob("config.json"))
    if not configs:
        raise _refuse(
            label,
            "no config.json: upload a Hugging Face model folder (config.json, *.safetensors, tokenizer files).",
        )
    folders = {c.parent for c in configs}
    if len(folders) > 1:
        names = ", ".join(str(f.relative_to(root)) for f in sorted(folders))
        raise _refuse(label, f"several folders hold a config.json ({names}); upload one model.")
    return configs[0].parent


@dataclass(frozen=True)
class Weights:
    files: list[str]
    parameters: int
    dtype: str


def _weights(folder: Path, label: str) -> Weights:
    pickled = sorted(p.name for p in folder.rglob("*") if p.suffix.lower() in PICKLED)
    if pickled:
        raise _refuse(
            label,
            f"pickled weights ({', '.join(pickled[:3])}) are refused: loading them can run code. "
            "Save the model with save_pretrained(..., safe_serialization=True) and upload the "
            "*.safetensors files.",
        )
    index = folder / "model.safetensors.index.json"
    if index.exists():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (ValueError, KeyError, TypeError):
            raise _refuse(label, "model.safetensors.index.json has no weight_map.") from None
        missing = [s for s in shards if not (folder / s).is_file()]
        if missing:
            raise _refuse(
                label, f"the shard(s) {', '.join(missing[:3])} named by the index are missing."
            )
        files = shards
    else:
        files = sorted(p.name for p in folder.glob("*.safetensors"))
    if not files:
        raise _refuse(label, "no weights: the folder needs *.safetensors files.")
    from safetensors import SafetensorError, safe_open

    parameters, dtypes = 0, set()
    for name in files:
        try:
            with safe_open(str(folder / name), "pt") as weights:
                for key in weights.keys():  # noqa: SIM118 (safe_open is not a mapping)
                    tensor = weights.get_slice(key)
                    parameters += math.prod(tensor.get_shape())
                    dtypes.add(tensor.get_dtype())
        except (SafetensorError, OSError) as error:
            raise _refuse(label, f"{name} is not a readable safetensors file ({error}).") from None
    return Weights(files=files, parameters=parameters, dtype=", ".join(sorted(dtypes)))


def describe(folder: Path, label: str) -> dict[str, Any]:
    """Check the folder as the trainer will load it; its description for the model page."""
    from transformers import AutoConfig, AutoTokenizer
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    except Exception as error:  # transformers raises ValueError, OSError, KeyError, …
        raise _refuse(
            label, f"config.json does not load: {str(error).splitlines()[0][:300]}"
        ) from None
    if config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise _refuse(
            label,
            f"its architecture ({config.model_type}) is not a causal language model that this "
            "hub's transformers can fine-tune (Llama, Qwen2, Mistral, Phi, GPT-2, …).",
        )
    weights = _weights(folder, label)
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            folder, local_files_only=True, trust_remote_code=False
        )
    except Exception as error:
        raise _refuse(
            label, f"the tokenizer does not load: {str(error).splitlines()[0][:300]}"
        ) from None
    architectures = getattr(config, "architectures", None) or [
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[config.model_type]
    ]
    context = getattr(config, "max_position_embeddings", None) or getattr(
        config, "n_positions", None
    )
    return {
        "architecture": architectures[0],
        "model_type": config.model_type,
        "parameters": weights.parameters,
        "dtype": weights.dtype,
        "context_length": context,
        "vocab_size": getattr(config, "vocab_size", None) or len(tokenizer),
        "files": sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()),
        "weights": weights.files,
    }


FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can say: no upload time in the bytes


def normalised_zip(folder: Path, target: Path) -> Path:
    """The checked folder as one zip, its files at the top: what is stored and downloaded. The
    same files give the same bytes (sorted names, one fixed time and mode each), so the same
    model uploaded twice has one sha256 and is stored once."""
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED) as zipped:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                info = zipfile.ZipInfo(path.relative_to(folder).as_posix(), FIXED_TIME)
                info.external_attr = 0o644 << 16
                big = path.stat().st_size >= 2**31  # past what a plain entry can say
                with path.open("rb") as source, zipped.open(info, "w", force_zip64=big) as out:
                    while chunk := source.read(1024 * 1024):
                        out.write(chunk)
    return target


def inspect_archive(archive: Path, label: str, workdir: Path) -> tuple[dict[str, Any], Path]:
    """Unpack, check and describe a model archive; (metadata, normalised zip to store)."""
    unpacked = workdir / "unpacked"
    unpacked.mkdir()
    try:
        unpack(archive, label, unpacked)
        folder = model_folder(unpacked, label)
        metadata = describe(folder, label)
        return metadata, normalised_zip(folder, workdir / "model.zip")
    finally:
        shutil.rmtree(unpacked, ignore_errors=True)


WEIGHT_SUFFIXES = (".safetensors",)


def unpack_stored(stored: Path, into: Path, *, weights: bool = True) -> Path:
    """A stored model zip (written by normalised_zip, so its members are known safe) as a
    folder; without the weights when only the config and tokenizer are needed."""
    into.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(stored) as zipped:
        for member in zipped.infolist():
            if not weights and member.filename.endswith(WEIGHT_SUFFIXES):
                continue
            _safe_name(member.filename, stored.name)
            zipped.extract(member, into)
    return into
