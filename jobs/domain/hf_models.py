"""Hugging Face model folders brought as archives (.zip, .tar.gz): unpacked safely, checked
the way the trainer will load them, described for the model page, and stored again as one
normalised zip of the folder.

Checks, each refusal naming the problem: archive members stay inside the archive (no absolute
paths, no ``..``, no links or devices) and unpack to at most twice HUB_MAX_UPLOAD_BYTES; one
folder holds ``config.json``; the config loads with ``AutoConfig`` (no remote code) and names a
causal language model that transformers supports; weights are safetensors, whole (every shard of
an index present), and no pickled weights (``.bin``, ``.pt``, …: loading those runs code); the
tokenizer loads. Nothing is downloaded: ``HF_HUB_OFFLINE`` is set for every hub process.

Every name inside an uploaded folder is hostile: the shard map, the tokenizer's file names, an
adapter's base model and any other file a loader follows must resolve inside the folder
(``check_references``), checked before any of those files is opened, at upload and again where a
worker unpacks a stored model. The weights must be what the config builds (names and shapes,
against the architecture made on the meta device), so the parameters counted are real. Archives
are bounded in members and name lengths before they are unpacked, and vocabularies in size.

An upload is checked in a child process of its own (``jobs.domain.model_check``), within
HUB_MODEL_CHECK_MEMORY_BYTES and HUB_MODEL_CHECK_SECONDS: a tokenizer of millions of entries
costs that process, not the web process that serves everyone else.
"""

from __future__ import annotations

import errno
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError

from jobs.domain.redact import scrub_paths

ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz")
PICKLED = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def is_model_archive(filename: str) -> bool:
    return filename.lower().endswith(ARCHIVE_SUFFIXES)


class Refused(Exception):
    """Why a model folder is refused, in the person's words; raised where no Django settings
    may be read (the checking child process), turned into a ValidationError by ``_refuse``."""

    def __init__(self, problem: str, *, names_member: bool = False) -> None:
        super().__init__(problem)
        self.problem, self.names_member = problem, names_member


def _refuse(label: str, problem: str, *, names_member: bool = False) -> ValidationError:
    """The refusal, without server paths (a library's message may name the unpacked files);
    a member's own name, which the person wrote, is quoted as it is."""
    return ValidationError(
        {"file": f"{label}: {problem if names_member else scrub_paths(problem)}"}
    )


@dataclass(frozen=True)
class Limits:
    """What one model folder may cost, read from the settings by the web process and handed
    to the checking child (which reads no settings)."""

    unpacked_bytes: int
    members: int
    vocabulary: int

    @classmethod
    def from_settings(cls) -> Limits:
        return cls(
            unpacked_bytes=2 * int(settings.HUB_MAX_UPLOAD_BYTES),
            members=int(settings.HUB_MODEL_ARCHIVE_MAX_MEMBERS),
            vocabulary=int(settings.HUB_MAX_VOCABULARY),
        )


# What Linux file systems hold: 255 bytes a name, and a path the hub keeps well within PATH_MAX.
NAME_MAX_BYTES = 255
PATH_MAX_BYTES = 1024


def _safe_name(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or "\\" in name or ":" in name:
        raise Refused(
            f"the archive member {name!r} would land outside its folder.", names_member=True
        )
    longest = max((len(part.encode()) for part in path.parts), default=0)
    if longest > NAME_MAX_BYTES or len(name.encode()) > PATH_MAX_BYTES:
        shown = name if len(name) <= 80 else f"{name[:60]}…{name[-15:]}"
        raise Refused(
            f"the archive member {shown!r}: its name is longer than a file system holds "
            f"({NAME_MAX_BYTES} bytes a name, {PATH_MAX_BYTES} bytes a path).",
            names_member=True,
        )
    return path


def _count_members(count: int, limits: Limits) -> None:
    if count > limits.members:
        raise Refused(
            f"the archive holds {count} files or more; a model folder may hold at most "
            f"{limits.members} (HUB_MODEL_ARCHIVE_MAX_MEMBERS)."
        )


def unpack(archive: Path, into: Path, limits: Limits) -> None:
    """Unpack ``archive`` into ``into``, refusing unsafe members, more members than the limit
    (counted before anything is written) and what would unpack to more than the limit (counted
    as the bytes are written, not as the archive declares them)."""
    written = 0

    def copy(source: Any, target: Path) -> None:
        nonlocal written
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as out:
            while chunk := source.read(1024 * 1024):
                written += len(chunk)
                if written > limits.unpacked_bytes:
                    raise Refused(
                        f"it unpacks to more than {limits.unpacked_bytes} bytes "
                        "(twice HUB_MAX_UPLOAD_BYTES)."
                    )
                out.write(chunk)

    if archive.name.lower().endswith(".zip") or zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zipped:
            members = zipped.infolist()
            _count_members(len(members), limits)
            for member in members:
                _safe_name(member.filename)
            for member in members:
                if member.is_dir():
                    continue
                if (member.external_attr >> 16) & 0o170000 == 0o120000:
                    raise Refused(f"the archive member {member.filename!r} is a link.")
                with zipped.open(member) as source:
                    copy(source, into / member.filename)
        return
    try:
        with tarfile.open(archive, "r:*") as tarred:
            for count, entry in enumerate(tarred, start=1):
                _count_members(count, limits)
                path = _safe_name(entry.name)
                if entry.isdir():
                    continue
                if not entry.isfile():
                    raise Refused(f"the archive member {entry.name!r} is not a plain file.")
                data = tarred.extractfile(entry)
                assert data is not None
                copy(data, into / path)
    except tarfile.TarError as error:
        raise Refused(f"not a readable .zip or .tar.gz archive ({error}).") from None


def model_folder(root: Path) -> Path:
    """The one folder of the unpacked archive that holds config.json."""
    configs = sorted(root.rglob("config.json"))
    if not configs:
        raise Refused(
            "no config.json: upload a Hugging Face model folder (config.json, *.safetensors, "
            "tokenizer files)."
        )
    folders = {c.parent for c in configs}
    if len(folders) > 1:
        names = ", ".join(str(f.relative_to(root)) for f in sorted(folders))
        raise Refused(f"several folders hold a config.json ({names}); upload one model.")
    return configs[0].parent


# JSON files a loader reads whose values may name other files. The tokenizer's own vocabulary
# files are maps of tokens, read by the tokenizers library, which follows no names.
NOT_CONFIGS = frozenset({"tokenizer.json", "vocab.json"})
MAX_CONFIG_BYTES = 16 * 1024 * 1024
# Where transformers records the folder a model was saved from: informative, never needed to
# load it, and rewritten by transformers on load; left off the stored copy.
INFORMATIVE_KEYS = frozenset({"_name_or_path", "name_or_path"})
# A folder that holds these is not a base model: its loader goes to a base named inside it.
FOREIGN_BASES = ("adapter_config.json",)


def _names_a_file(key: str) -> bool:
    return key.endswith(("_file", "_files", "_path", "_dir", "_folder", "_directory"))


def _references(value: Any, where: str) -> list[tuple[str, str]]:
    """(key path, value) of every string in ``value`` under a key that names a file."""
    found: list[tuple[str, str]] = []
    if isinstance(value, dict):
        for key, inner in value.items():
            path = f"{where}.{key}" if where else str(key)
            if isinstance(key, str) and _names_a_file(key) and key not in INFORMATIVE_KEYS:
                strings = inner if isinstance(inner, list) else [inner]
                found += [(path, s) for s in strings if isinstance(s, str) and s]
            else:
                found += _references(inner, path)
    elif isinstance(value, list):
        for inner in value:
            found += _references(inner, where)
    return found


def _inside(folder: Path, name: str) -> bool:
    """Whether ``name``, as a loader joins it to the folder, stays in it (no absolute path, no
    ``..``, no link on the way)."""
    if not name or "\\" in name or "\0" in name:
        return False
    relative = PurePosixPath(name)
    if relative.is_absolute() or ".." in relative.parts:
        return False
    joined = folder / relative
    # Links were refused at unpack; a stored folder is checked again, so resolve to be sure.
    return joined.resolve(strict=False).is_relative_to(folder.resolve())


def _load_config_json(path: Path, shown: str) -> Any:
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise Refused(f"{shown} is larger than a configuration file ({MAX_CONFIG_BYTES} bytes).")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise Refused(f"{shown} is not valid JSON ({error}).") from None


def check_references(folder: Path) -> None:
    """Every file the folder's JSON names resolves inside the folder; checked before any such
    file is opened, so the answer is the same whether a named server file exists or not."""
    for name in FOREIGN_BASES:
        if (folder / name).exists():
            raise Refused(
                f"{name}: the folder is an adapter, which names its base model elsewhere. Upload "
                "the merged model (PeftModel.merge_and_unload().save_pretrained(...)) instead."
            )
    for path in sorted(folder.rglob("*.json")):
        if path.name in NOT_CONFIGS or not path.is_file():
            continue
        shown = path.relative_to(folder).as_posix()
        data = _load_config_json(path, shown)
        references = _references(data, "")
        if path.name.endswith(".safetensors.index.json") and isinstance(data, dict):
            weight_map = data.get("weight_map")
            if isinstance(weight_map, dict):
                references += [("weight_map", v) for v in weight_map.values() if isinstance(v, str)]
        for key, value in references:
            if not _inside(path.parent, value):
                # An absolute name is not echoed: the answer must not differ by what it names.
                if value.startswith(("/", "~")) or ":" in value:
                    shown_value = "an absolute path"
                elif ".." in PurePosixPath(value).parts:
                    shown_value = "a path through '..'"
                else:
                    shown_value = repr(value if len(value) <= 120 else value[:100] + "…")
                raise Refused(
                    f"{shown} names {key} {shown_value}, outside the model's folder: every "
                    "file a model names must be inside its folder, by a relative name.",
                    names_member=True,
                )


def drop_informative_names(folder: Path) -> None:
    """Leave off the stored copy where the model was saved from (its uploader's paths)."""
    for path in sorted(folder.rglob("*.json")):
        if path.name in NOT_CONFIGS or not path.is_file():
            continue
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and INFORMATIVE_KEYS & data.keys():
            for key in INFORMATIVE_KEYS:
                data.pop(key, None)
            path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")


@dataclass(frozen=True)
class Weights:
    files: list[str]
    shapes: dict[str, tuple[int, ...]]
    dtype: str

    @property
    def parameters(self) -> int:
        return sum(math.prod(shape) for shape in self.shapes.values())


def _weights(folder: Path) -> Weights:
    pickled = sorted(p.name for p in folder.rglob("*") if p.suffix.lower() in PICKLED)
    if pickled:
        raise Refused(
            f"pickled weights ({', '.join(pickled[:3])}) are refused: loading them can run code. "
            "Save the model with save_pretrained(..., safe_serialization=True) and upload the "
            "*.safetensors files."
        )
    index = folder / "model.safetensors.index.json"
    if index.exists():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise Refused("model.safetensors.index.json has no weight_map.") from None
        missing = [s for s in shards if not (folder / s).is_file()]
        if missing:
            raise Refused(
                f"the shard(s) {', '.join(missing[:3])} named by the index are missing.",
                names_member=True,
            )
        files = shards
    else:
        files = sorted(p.name for p in folder.glob("*.safetensors"))
    if not files:
        raise Refused("no weights: the folder needs *.safetensors files.")
    from safetensors import SafetensorError, safe_open

    shapes: dict[str, tuple[int, ...]] = {}
    dtypes = set()
    for name in files:
        try:
            with safe_open(str(folder / name), "pt") as weights:
                for key in weights.keys():  # noqa: SIM118 (safe_open is not a mapping)
                    tensor = weights.get_slice(key)
                    shapes[key] = tuple(tensor.get_shape())
                    dtypes.add(tensor.get_dtype())
        except (SafetensorError, OSError) as error:
            raise Refused(f"{name} is not a readable safetensors file ({error}).") from None
    return Weights(files=files, shapes=shapes, dtype=", ".join(sorted(dtypes)))


def _shape(shape: tuple[int, ...]) -> str:
    return f"({shape[0]},)" if len(shape) == 1 else str(shape)


def _check_architecture(config: Any, weights: Weights) -> int:
    """The weights hold what the config builds: every tensor of the architecture (made on the
    meta device, so nothing is allocated), by name and shape. A config that declares a larger
    model than its weights would otherwise be trained at the declared size. The parameters of
    the architecture, now known to be the real ones."""
    import torch
    from transformers import AutoModelForCausalLM

    try:
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, trust_remote_code=False)
    except MemoryError:
        raise
    except Exception as error:
        raise Refused(f"config.json does not build a model: {_first_words(error)}") from None
    prefix = f"{model.base_model_prefix}." if model.base_model_prefix else ""
    stored = {name.removeprefix(prefix): shape for name, shape in weights.shapes.items()}
    groups: dict[int, list[str]] = {}
    expected: dict[str, tuple[int, ...]] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        groups.setdefault(id(tensor), []).append(name.removeprefix(prefix))
        expected[name.removeprefix(prefix)] = tuple(tensor.shape)
    missing = [names[0] for names in groups.values() if not any(name in stored for name in names)]
    layers = getattr(config, "num_hidden_layers", None)
    hidden = getattr(config, "hidden_size", None)
    built = (
        f"config.json builds {layers} layers × {hidden}"
        if layers and hidden
        else f"config.json builds {config.model_type}"
    )
    total = sum(tensor.numel() for tensor in model.parameters())
    if missing:
        shown = ", ".join(
            prefix + name if prefix + name in weights.shapes else name for name in missing[:3]
        )
        raise Refused(
            f"{built} ({total:,} parameters), but the weights lack {len(missing)} of its "
            f"{len(groups)} tensors ({shown}, …); the weights hold {weights.parameters:,} "
            "parameters. Upload the weights the config describes.",
        )
    wrong = [
        (name, stored[name], shape)
        for name, shape in expected.items()
        if name in stored and stored[name] != shape
    ]
    if wrong:
        name, got, want = wrong[0]
        raise Refused(
            f"{built}, but the weights' {prefix + name if prefix + name in weights.shapes else name} "
            f"has shape {_shape(got)} where the architecture needs {_shape(want)}"
            + (f" ({len(wrong)} tensors differ)" if len(wrong) > 1 else "")
            + ".",
        )
    return int(total)


def _first_words(error: BaseException) -> str:
    """A library's message, whole but bounded: its lines joined (the first line alone is often
    cut mid-sentence, "… from one of: "), at most 300 characters."""
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    text = text or type(error).__name__
    return text if len(text) <= 300 else text[:299] + "…"


def _check_vocabulary(folder: Path, limits: Limits) -> None:
    """Bounded before the tokenizer is built: the vocabulary the tokenizer file declares."""
    tokenizer_file = folder / "tokenizer.json"
    if not tokenizer_file.exists():
        return
    # A vocabulary entry takes at least a few bytes: a file this large cannot be within bounds.
    if tokenizer_file.stat().st_size > 64 * limits.vocabulary + MAX_CONFIG_BYTES:
        raise Refused(
            f"tokenizer.json is {tokenizer_file.stat().st_size} bytes: larger than a vocabulary "
            f"of at most {limits.vocabulary:,} entries (HUB_MAX_VOCABULARY) needs."
        )


TEMPLATE_PROBE_SECONDS = 5
PROBE_CONVERSATION = [
    {"role": "system", "content": "You are helpful."},
    {"role": "user", "content": "What is 2 + 2?"},
    {"role": "assistant", "content": "4"},
]


def _check_template_work(tokenizer: Any) -> None:
    """A chat template is a program (Jinja, sandboxed, but loops are allowed): one that takes
    seconds to render a three-message conversation would take hours over a dataset, so it is
    refused here, in the checking child, rather than found by a worker. Rendering errors are
    left to the worker, which names the row (a template may refuse a system message)."""
    import signal

    if not getattr(tokenizer, "chat_template", None):
        return

    def too_slow(signum: int, frame: Any) -> None:
        raise TimeoutError

    previous = signal.signal(signal.SIGALRM, too_slow)
    signal.alarm(TEMPLATE_PROBE_SECONDS)
    try:
        tokenizer.apply_chat_template(PROBE_CONVERSATION, tokenize=False)
    except TimeoutError:
        raise Refused(
            f"its chat template takes more than {TEMPLATE_PROBE_SECONDS} seconds to render a "
            "three-message conversation; a dataset would take hours. Simplify the template."
        ) from None
    except MemoryError:
        raise
    except Exception:  # a template may refuse a system message: the worker names the row
        pass
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _raise_if_out_of_memory(error: BaseException) -> None:
    """Past its memory limit, a library may fail as an OSError (ENOMEM: "Cannot allocate
    memory", listing a folder while importing) or a SystemError (a C extension whose allocation
    failed returns no exception: "error return without exception set") rather than a
    MemoryError: all are the limit reached (or a crash), which the parent words, not "config.json
    does not load" (both seen here under HUB_MODEL_CHECK_MEMORY_BYTES=256 MiB)."""
    if isinstance(error, SystemError) or (
        isinstance(error, OSError) and error.errno == errno.ENOMEM
    ):
        raise MemoryError(str(error)) from error


def describe(folder: Path, label: str, limits: Limits | None = None) -> dict[str, Any]:
    """Check the folder as the trainer will load it; its description for the model page. For
    folders the hub trusts to be loaded in this process (the operator's, a job's own output);
    an upload is checked by ``inspect_archive``, in a child process."""
    try:
        return _describe(folder, limits or Limits.from_settings(), uploaded=False)
    except Refused as refusal:
        raise _refuse(label, refusal.problem, names_member=refusal.names_member) from None


def _describe(folder: Path, limits: Limits, *, uploaded: bool = True) -> dict[str, Any]:
    """The checks and the description. The weights are checked against the architecture for
    uploads (which are checked in a child process); a folder the hub trusts (the operator's,
    a job's merged model) is not built again in the process that describes it."""
    from transformers import AutoConfig, AutoTokenizer
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    check_references(folder)
    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    except MemoryError:
        raise
    except Exception as error:  # transformers raises ValueError, OSError, KeyError, …
        _raise_if_out_of_memory(error)
        raise Refused(f"config.json does not load: {_first_words(error)}") from None
    if config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise Refused(
            f"its architecture ({config.model_type}) is not a causal language model that this "
            "hub's transformers can fine-tune (Llama, Qwen2, Mistral, Phi, GPT-2, …)."
        )
    declared = getattr(config, "vocab_size", None)
    if isinstance(declared, int) and declared > limits.vocabulary:
        raise Refused(
            f"config.json declares a vocabulary of {declared:,} tokens; this hub takes at most "
            f"{limits.vocabulary:,} (HUB_MAX_VOCABULARY)."
        )
    weights = _weights(folder)
    parameters = _check_architecture(config, weights) if uploaded else weights.parameters
    _check_vocabulary(folder, limits)
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            folder, local_files_only=True, trust_remote_code=False
        )
    except MemoryError:
        raise
    except Exception as error:
        _raise_if_out_of_memory(error)
        raise Refused(f"the tokenizer does not load: {_first_words(error)}") from None
    if uploaded:
        _check_template_work(tokenizer)
    if len(tokenizer) > limits.vocabulary:
        raise Refused(
            f"the tokenizer's vocabulary holds {len(tokenizer):,} tokens; this hub takes at most "
            f"{limits.vocabulary:,} (HUB_MAX_VOCABULARY)."
        )
    architectures = getattr(config, "architectures", None) or [
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[config.model_type]
    ]
    context = getattr(config, "max_position_embeddings", None) or getattr(
        config, "n_positions", None
    )
    return {
        "architecture": architectures[0],
        "model_type": config.model_type,
        "parameters": parameters,
        "dtype": weights.dtype,
        "context_length": context,
        "vocab_size": getattr(config, "vocab_size", None) or len(tokenizer),
        "chat_template": bool(getattr(tokenizer, "chat_template", None)),
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


def check_in_this_process(archive: Path, workdir: Path, limits: Limits) -> dict[str, Any]:
    """Unpack, check and describe ``archive``, leaving the normalised zip at
    ``workdir/model.zip``: what the checking child process runs (jobs.domain.model_check)."""
    unpacked = workdir / "unpacked"
    unpacked.mkdir()
    try:
        unpack(archive, unpacked, limits)
        folder = model_folder(unpacked)
        metadata = _describe(folder, limits)
        drop_informative_names(folder)
        normalised_zip(folder, workdir / "model.zip")
        return metadata
    finally:
        shutil.rmtree(unpacked, ignore_errors=True)


def inspect_archive(archive: Path, label: str, workdir: Path) -> tuple[dict[str, Any], Path]:
    """Unpack, check and describe a model archive in a child process within the check's memory
    and time (the web process loads no tokenizer and builds no model); (metadata, normalised
    zip to store)."""
    seconds = int(settings.HUB_MODEL_CHECK_SECONDS)
    memory = int(settings.HUB_MODEL_CHECK_MEMORY_BYTES)
    request = {
        "archive": str(archive),
        "workdir": str(workdir),
        "limits": asdict(Limits.from_settings()),
        "memory": memory,
        "seconds": seconds,
    }
    try:
        done = subprocess.run(
            [sys.executable, "-m", "jobs.domain.model_check"],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            timeout=seconds,
            cwd=str(settings.BASE_DIR),
            # One thread for the math libraries: OpenBLAS sizes buffers by the machine's cores,
            # and on a large machine those alone can pass the child's memory limit.
            env={
                **os.environ,
                "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_VERBOSITY": "error",
                "OMP_NUM_THREADS": "1",
                "OPENBLAS_NUM_THREADS": "1",
                "MKL_NUM_THREADS": "1",
            },
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise _refuse(
            label,
            f"checking it took longer than {seconds} seconds (HUB_MODEL_CHECK_SECONDS): its "
            "tokenizer, config or weights are too large for this hub.",
        ) from None
    try:
        answer = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        answer = None
    if not isinstance(answer, dict) or answer.get("out_of_memory"):
        # Killed (memory) or crashed: say what it cost, not the child's traceback.
        raise _refuse(
            label,
            f"checking it needed more than {memory // 1024**2} MiB of memory "
            "(HUB_MODEL_CHECK_MEMORY_BYTES), or crashed; its tokenizer, config or weights are "
            "too large for this hub.",
        )
    if "refused" in answer:
        raise _refuse(label, answer["refused"], names_member=bool(answer.get("names_member")))
    return answer["metadata"], workdir / "model.zip"


def limit_this_process(memory: int, seconds: int) -> None:
    """The checking child bounds itself before it imports anything large: its memory (the data
    segment, where allocations land) and CPU time; the parent's timeout bounds the wall time.
    (Set here rather than in a preexec_fn: the web process that starts it has threads.)"""
    resource.setrlimit(resource.RLIMIT_DATA, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (seconds, seconds + 5))


WEIGHT_SUFFIXES = (".safetensors",)


def unpack_stored(stored: Path, into: Path, *, weights: bool = True) -> Path:
    """A stored model zip as a folder, without the weights when only the config and tokenizer
    are needed. Checked again as it is unpacked (member names, and every file its JSON names
    inside the folder): a model stored before a check existed, or altered in storage, never
    sends a loader outside its folder."""
    into.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(stored) as zipped:
            for member in zipped.infolist():
                _safe_name(member.filename)
                if (member.external_attr >> 16) & 0o170000 == 0o120000:
                    raise Refused(f"the archive member {member.filename!r} is a link.")
            for member in zipped.infolist():
                if not weights and member.filename.endswith(WEIGHT_SUFFIXES):
                    continue
                zipped.extract(member, into)
        check_references(into)
    except Refused as refusal:
        raise _refuse(stored.name, refusal.problem, names_member=refusal.names_member) from None
    return into
