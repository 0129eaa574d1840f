"""The hub's Python client: ``Client`` talks HTTP to ``/api/v1/`` and listens to a job's
websocket to learn of changes the moment they happen."""

from __future__ import annotations

import itertools
import os
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from hubclient.connection import Connection, progress_bar
from hubclient.errors import BadInputError
from hubclient.generate import Answer, generate
from hubclient.jobs import (
    CompileJob,
    CustomizationJob,
    Dataset,
    Device,
    EvaluationJob,
    InferenceJob,
    Job,
    LinkJob,
    Model,
    ProfileJob,
    device_target,
    job_from,
)
from hubclient.runs import Run

NOTIFICATIONS = "/api/v1/account/notifications/"


class Client(Connection):
    """``Client(url=None, token=None)``; both default to ``HUB_URL`` and ``HUB_API_TOKEN``."""

    # Models and datasets

    def upload_model(
        self, path: str | os.PathLike[str], name: str | None = None, progress: bool | None = None
    ) -> Model:
        """An ONNX file, a model archive (.zip, .tar.gz), or a Hugging Face model folder, which
        is packed into a zip first (its name becomes the model's name unless ``name`` is set;
        links are followed only inside the folder, see ``folder_members``).
        Large files show a progress bar on stderr (``progress=False`` hides it, ``True`` forces
        it)."""
        folder = Path(path)
        data_files = onnx_data_files(folder) if folder.suffix.lower() == ".onnx" else {}
        if data_files:  # torch.onnx.export's model.onnx and model.onnx.data, packed together
            members = {folder.name: folder, **data_files}
            return self._upload_packed(folder.stem, members, name, progress, folder.name)
        if not folder.is_dir():
            return Model(self, self._upload("/api/v1/models/", path, name, progress))
        members = folder_members(folder)
        return self._upload_packed(folder.name, members, name, progress, f"{folder.name}/")

    def _upload_packed(
        self,
        stem: str,
        members: dict[str, Path],
        name: str | None,
        progress: bool | None,
        shown: str,
    ) -> Model:
        """Upload ``members`` (name in the archive → file) as one zip named ``stem``.zip."""
        total = sum(f.stat().st_size for f in members.values())
        with tempfile.TemporaryDirectory() as scratch:
            packed = Path(scratch) / f"{stem}.zip"
            with (
                progress_bar(f"Packing {shown}", total, progress) as advance,
                zipfile.ZipFile(packed, "w", compression=zipfile.ZIP_STORED) as archive,
            ):
                for member, file in members.items():  # not ``name``: that names the model
                    archive.write(file, member)
                    advance(file.stat().st_size)
            return Model(self, self._upload("/api/v1/models/", packed, name, progress))

    def upload_dataset(self, path: str | os.PathLike[str], name: str | None = None) -> Dataset:
        return Dataset(self, self._upload("/api/v1/datasets/", path, name))

    def get_model(self, model_id: str) -> Model:
        return Model(self, self.request("GET", f"/api/v1/models/{model_id}/"))

    def get_dataset(self, dataset_id: str) -> Dataset:
        return Dataset(self, self.request("GET", f"/api/v1/datasets/{dataset_id}/"))

    def generate(
        self, model: Model | str, prompt: str, *, stream: bool = False, **options: Any
    ) -> Answer | str:
        """A language model's answer to ``prompt``: ``model`` is a model (or its id) or the
        name of one the hub offers ("tiny-llama"). See ``Model.generate``."""
        model_id = model.model_id if isinstance(model, Model) else str(model)
        return generate(self, model_id, prompt, stream=stream, **options)

    def get_builtin_models(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/api/v1/models/builtin/"))

    def get_activity(self, limit: int = 50) -> list[dict[str, Any]]:
        """The audit log's entries about you, newest first: what you did, and what was done to
        what you own (shares, invitations, deletions, downloads by others, sign-ins, tokens)."""
        page = self.request("GET", "/api/v1/account/activity/", params={"limit": limit})
        return list(page["results"] if isinstance(page, dict) else page)

    # Jobs

    def submit_link_job(
        self,
        models: Sequence[Model | str | os.PathLike[str]],
        device: Device | str | None = None,
        name: str | None = None,
    ) -> LinkJob:
        """Link models (Model objects, model ids, or paths of ONNX files to upload) into one,
        on ``device`` (a Device, a device's name or id, an attribute; None: any)."""
        ids = [self._model_id(model) for model in models]
        body = {"models": ids, "device": device_target(device), "name": name or ""}
        return LinkJob(self, self.request("POST", "/api/v1/jobs/link/", json=body))

    def submit_customization_job(
        self,
        model: Model | str | os.PathLike[str] | None,
        dataset: Dataset | str | os.PathLike[str],
        validation_dataset: Dataset | str | os.PathLike[str] | None = None,
        hyperparameters: dict[str, Any] | None = None,
        name: str | None = None,
        device: Device | str | None = None,
        hardware: str | None = None,
    ) -> CustomizationJob:
        """Fine-tune ``model``: a Model, a model id, the name of a base model the hub offers
        (``get_builtin_models()``; None for its default), or the path of a Hugging Face model
        folder or archive to upload first. ``hardware`` is "any" (default), "gpu" or "cpu"."""
        if isinstance(model, str | os.PathLike) and Path(model).exists():
            model = self.upload_model(model)
        body: dict[str, Any] = {
            "model": model.model_id if isinstance(model, Model) else model,
            "dataset": self._dataset_id(dataset),
            "validation_dataset": self._dataset_id(validation_dataset)
            if validation_dataset is not None
            else None,
            "hyperparameters": hyperparameters,
            "name": name or "",
            "device": device_target(device),
        }
        if hardware:
            body["hardware"] = hardware
        return CustomizationJob(
            self, self.request("POST", "/api/v1/jobs/customization/", json=body)
        )

    def submit_compile_job(
        self,
        model: Model | str | os.PathLike[str],
        device: Device | str,
        name: str | None = None,
        input_specs: dict[str, Any] | None = None,
        options: str = "",
        calibration_data: Dataset | str | os.PathLike[str] | dict[str, Any] | None = None,
    ) -> CompileJob:
        """An optimized ONNX model for ``device`` (seed 000's signature): ``options`` such as
        "--target_runtime onnx --quantize_full_type float16"; ``calibration_data`` (a Dataset,
        its id, an h5/.npz file, or {input name: [arrays]}) calibrates int8."""
        body: dict[str, Any] = {
            "model": self._model_id(model),
            "device": device_target(device),
            "name": name or "",
            "options": options,
            "input_specs": _specs(input_specs),
        }
        if calibration_data is not None:
            body["calibration_data"] = self._tensors_id(calibration_data)
        return CompileJob(self, self.request("POST", "/api/v1/jobs/compile/", json=body))

    def submit_profile_job(
        self,
        model: Model | str | os.PathLike[str],
        device: Device | str,
        name: str | None = None,
        options: str = "",
    ) -> ProfileJob:
        """The model measured on ``device``: ``download_profile()`` gives seed 000's profile."""
        body = {
            "model": self._model_id(model),
            "device": device_target(device),
            "name": name or "",
            "options": options,
        }
        return ProfileJob(self, self.request("POST", "/api/v1/jobs/profile/", json=body))

    def submit_inference_job(
        self,
        model: Model | str | os.PathLike[str],
        device: Device | str,
        inputs: Dataset | str | os.PathLike[str] | dict[str, Any],
        name: str | None = None,
        options: str = "",
        profile: bool = False,
    ) -> InferenceJob:
        """The model run on ``device`` over ``inputs`` (a Dataset, its id, an h5/.npz file, or
        {input name: [an array per sample]}): ``download_output_data()`` gives the outputs.
        With ``profile=True`` the model is also profiled there (``options`` may then hold
        --max_profiler_iterations and --max_profiler_time): ``download_profile()`` gives seed
        000's profile. (Seed 000's client profiles unless told not to; this one only when
        asked, since a profile's timed runs can take far longer than the samples.)"""
        body = {
            "model": self._model_id(model),
            "device": device_target(device),
            "inputs": self._tensors_id(inputs),
            "name": name or "",
            "options": options,
            "profile": bool(profile),
        }
        return InferenceJob(self, self.request("POST", "/api/v1/jobs/inference/", json=body))

    def submit_evaluation_job(
        self,
        models: Sequence[Model | str],
        dataset: Dataset | str | os.PathLike[str],
        settings: dict[str, Any] | None = None,
        name: str | None = None,
    ) -> EvaluationJob:
        """Score ``models`` (Models, model ids, or names of base models the hub offers: a base
        and its fine-tunes side by side) on ``dataset``'s rows. ``settings``: max_new_tokens,
        temperature (0: greedy), limit (rows), pattern, seed. ``scores()`` gives the metrics per
        model once it is done; ``download_rows()`` every row's outputs, worst first."""
        body = {
            "models": [m.model_id if isinstance(m, Model) else m for m in models],
            "dataset": self._dataset_id(dataset),
            "settings": settings,
            "name": name or "",
        }
        return EvaluationJob(self, self.request("POST", "/api/v1/jobs/evaluation/", json=body))

    def compare_profiles(self, jobs: Sequence[Job | str]) -> dict[str, Any]:
        """Profile jobs side by side (2 to 8; the same model on two devices, or a model and its
        compiled versions): each one's latency, peak memory and time per op type, and
        ``op_types``, the op types of them all, costliest first."""
        ids = ",".join(job.job_id if isinstance(job, Job) else str(job) for job in jobs)
        return dict(self.request("GET", "/api/v1/profiles/compare/", params={"jobs": ids}))

    def upload_tensors(self, entries: dict[str, Any], name: str | None = None) -> Dataset:
        """{input name: [an array per sample]} uploaded as a dataset in seed 000's h5 layout."""
        from hubclient.tensors import write_h5

        with tempfile.TemporaryDirectory() as scratch:
            path = write_h5(entries, Path(scratch) / f"{name or 'tensors'}.h5")
            return self.upload_dataset(path, name)

    def _tensors_id(self, data: Dataset | str | os.PathLike[str] | dict[str, Any]) -> str:
        if isinstance(data, dict):
            return self.upload_tensors(data).dataset_id
        return self._dataset_id(data)

    def start_run(
        self,
        name: str | None = None,
        params: dict[str, Any] | None = None,
        *,
        epochs: int | None = None,
        total_steps: int | None = None,
        device: str | None = None,
        time_limit: int | None = None,
        flush_every: float = 0.5,
    ) -> Run:
        """Track training that runs here: a job of kind ``external`` that the hub shows live,
        charts and shares like its own. ``params`` (any JSON object) is shown beside the
        charts; ``epochs`` and ``total_steps`` (the plan) give percentage_done and the ETA.
        Report with ``run.log(step=…, train_loss=…)`` and ``run.set_status(…)``; end with
        ``run.finish()`` or use the run as a context manager."""
        body: dict[str, Any] = {"name": name or "", "params": params or {}, "device": device or ""}
        for key, value in (
            ("epochs", epochs),
            ("total_steps", total_steps),
            ("time_limit", time_limit),
        ):
            if value is not None:
                body[key] = value
        data = self.request("POST", "/api/v1/jobs/external/", json=body)
        return Run(self, data, flush_every=flush_every)

    def get_devices(
        self, name: str = "", os: str = "", attributes: str | list[str] | None = None
    ) -> list[Device]:
        """The devices the hub's workers run on, as seed 000's ``get_devices``: those whose
        name holds ``name``, whose OS holds ``os``, and that have every attribute given."""
        wanted = [attributes] if isinstance(attributes, str) else list(attributes or [])
        params = {"name": name, "os": os, "attributes": ",".join(wanted)}
        found = self.request(
            "GET", "/api/v1/devices/", params={k: v for k, v in params.items() if v}
        )
        return [device for data in found if (device := Device.from_data(data)) is not None]

    def get_device(self, device: Device | str) -> dict[str, Any]:
        """A device with its workers (online or not), your jobs on it and the models profiled
        there."""
        key = device.id or device.name if isinstance(device, Device) else device
        return dict(self.request("GET", f"/api/v1/devices/{key}/"))

    def get_job(self, job_id: str) -> Job:
        return self._job(self.request("GET", f"/api/v1/jobs/{job_id}/"))

    def get_jobs(
        self, limit: int = 50, kind: str | None = None, status: str | None = None
    ) -> list[Job]:
        """The newest ``limit`` jobs you may read (yours and those shared with you)."""
        jobs = self.iter_jobs(kind=kind, status=status, page_size=min(max(limit, 1), 1000))
        return list(itertools.islice(jobs, limit))

    def iter_jobs(
        self, kind: str | None = None, status: str | None = None, page_size: int = 200
    ) -> Iterator[Job]:
        """Every job you may read, newest first, fetched a page at a time as you go."""
        params: dict[str, Any] = {"limit": page_size, "kind": kind or "", "status": status or ""}
        while True:
            page = self.request("GET", "/api/v1/jobs/", params=params)
            yield from (self._job(data) for data in page["results"])
            if not page["next"]:
                return
            params["after"] = parse_qs(urlsplit(page["next"]).query)["after"][0]

    # Notifications

    def get_notification_settings(self) -> dict[str, Any]:
        """What you are told when a job ends, and how: ``email_own_jobs``,
        ``email_shared_jobs``, ``webhook_url``, ``webhook_shared_jobs``, ``when_finished``,
        ``when_failed``, ``when_cancelled``, and ``webhook_secret`` (signs the webhook)."""
        return dict(self.request("GET", NOTIFICATIONS))

    def set_notification_settings(self, **fields: Any) -> dict[str, Any]:
        """Change the settings named (the others stay): ``set_notification_settings(
        email_shared_jobs=True, webhook_url="https://hooks.slack.com/…")``; ``webhook_url=""``
        removes the webhook. A name the hub does not know, or a URL it may not call, raises
        BadInputError naming it. Returns all the settings."""
        return dict(self.request("PATCH", NOTIFICATIONS, json=fields))

    def rotate_webhook_secret(self) -> dict[str, Any]:
        """A new webhook secret (the old one stops signing at once); returns all the settings."""
        return dict(self.request("POST", f"{NOTIFICATIONS}rotate-secret/"))

    def test_webhook(self) -> dict[str, Any]:
        """POST a test message to your webhook now: ``{"ok": bool, "message": str}``."""
        return dict(self.request("POST", f"{NOTIFICATIONS}test/"))

    def get_recent_notifications(self) -> list[dict[str, Any]]:
        """Your last 20 notifications and how each went (state, attempts, last_error)."""
        return list(self.request("GET", f"{NOTIFICATIONS}recent/")["results"])

    def _model_id(self, model: Model | str | os.PathLike[str]) -> str:
        if isinstance(model, Model):
            return model.model_id
        if _is_path(model):
            return self.upload_model(model).model_id
        return str(model)

    def _dataset_id(self, dataset: Dataset | str | os.PathLike[str]) -> str:
        if isinstance(dataset, Dataset):
            return dataset.dataset_id
        if _is_path(dataset):
            return self.upload_dataset(dataset).dataset_id
        return str(dataset)

    def _job(self, data: dict[str, Any]) -> Job:
        return job_from(self, data)


def _allowed_roots(folder: Path) -> list[Path]:
    """Where links in ``folder`` may point: the folder itself, and for a snapshot of a Hugging
    Face cache (``models--Org--Name/snapshots/<revision>/``, whose files are all links) that
    repository's ``blobs/``."""
    roots = [folder.resolve()]
    repository = folder.parent.parent
    if folder.parent.name == "snapshots" and repository.name.startswith("models--"):
        roots.append((repository / "blobs").resolve())
    return roots


def onnx_data_files(model: Path) -> dict[str, Path]:
    """The data files an ONNX model's tensors name (torch.onnx.export writes its weights to
    ``model.onnx.data`` beside ``model.onnx``), by name; empty when it keeps its data inside.
    Each must be a plain file name of the model's own folder, as the hub requires: anything
    else is refused here, naming it, before a byte is read or sent."""
    import onnx  # only needed for this

    try:
        proto = onnx.load(str(model), load_external_data=False)
    except Exception:  # not readable as ONNX here: the hub says what is wrong with it
        return {}
    found: dict[str, Path] = {}
    tensors = [*proto.graph.initializer]
    tensors += [a.t for n in proto.graph.node for a in n.attribute if a.HasField("t")]
    for tensor in tensors:
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        beside = model.parent / location
        plain = location not in ("", ".", "..") and not any(c in location for c in "/\\:")
        if not plain or beside.is_symlink() or not beside.is_file():
            why = "is not a file beside it" if plain else "is not a plain file name beside it"
            raise BadInputError(
                f"{model.name}: tensor {tensor.name!r} keeps its data in {location!r}, which "
                f"{why}; save the model with its data beside it (onnx.save(model, path, "
                "save_as_external_data=True, location='model.onnx.data')).",
                field="model",
            )
        found[location] = beside
    return dict(sorted(found.items()))


def folder_members(folder: Path) -> dict[str, Path]:
    """The files to pack from a model folder, by their name in the archive, sorted. A link is
    packed as the file it names when that file is inside the folder (or in its Hugging Face
    cache's blobs); a link to a folder inside is skipped (its files are packed where they
    are). A link that leads outside is refused naming it, so that no file the folder merely
    points at (a key, another user's data) leaves the machine unasked."""
    roots = _allowed_roots(folder)
    members: dict[str, Path] = {}
    for directory, subfolders, names in os.walk(folder):  # links to folders are not walked
        subfolders.sort()
        for name in sorted(subfolders + names):
            path = Path(directory, name)
            relative = path.relative_to(folder).as_posix()
            if not path.is_symlink():
                if path.is_file():
                    members[relative] = path
                continue
            target = path.resolve()
            if not any(target.is_relative_to(root) for root in roots):
                raise BadInputError(
                    f"{folder.name}/{relative} is a link to something outside the folder; "
                    "copy what it names into the folder or remove the link (links are "
                    "followed only inside the folder being uploaded).",
                    field="model",
                )
            if target.is_file():
                members[relative] = target
    return dict(sorted(members.items()))


def _is_path(value: str | os.PathLike[str]) -> bool:
    """A file to upload rather than an id: a path object, an existing file, or anything that
    looks like a path (so that a mistyped path says "no file" instead of "no such id")."""
    text = os.fspath(value)
    return (
        isinstance(value, os.PathLike)
        or os.sep in text
        or Path(text).suffix != ""
        or Path(text).is_file()
    )


def _specs(specs: dict[str, Any] | None) -> dict[str, Any] | None:
    """seed 000's input_specs as JSON: tuples become lists."""
    if not specs:
        return None
    return {
        name: [list(value[0]), value[1]]
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], str)
        else list(value)
        for name, value in specs.items()
    }
