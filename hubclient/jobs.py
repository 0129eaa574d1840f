"""Jobs, models and datasets as the client sees them (seed 000's job surface)."""

from __future__ import annotations

import json
import time
import zipfile
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from hubclient.connection import Connection
from hubclient.errors import ConflictError, HubError
from hubclient.generate import Answer, generate

FINISHED = {"completed", "ready", "failed", "cancelled"}
SUCCESS = {"completed", "ready"}
# Where waiting ends: a completed job is finished but still becomes ready (its target model
# stored and verified) or failed a moment later, and only then can it be downloaded.
TERMINAL = {"ready", "failed", "cancelled"}
RECONNECT_MAX_DELAY = 10.0  # seconds between reconnects at most (exponential, with jitter)
QUIET = 30.0  # seconds without a message after which the job is polled again


@dataclass(frozen=True)
class Device:
    """A kind of machine the hub's workers run on, as seed 000's client names one: ``name``,
    ``os`` and ``attributes`` (``"accelerator:cuda"``); ``id`` is its short name in addresses.
    ``Device(attributes="accelerator:cuda")`` asks a submit for any device with that attribute."""

    name: str = ""
    os: str = ""
    attributes: str | list[str] = field(default_factory=list)
    id: str = ""
    data: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_data(cls, data: dict[str, Any] | None) -> Device | None:
        if not data:
            return None
        return cls(data["name"], data.get("os", ""), list(data["attributes"]), data["id"], data)

    def target(self) -> str:
        """What a submit sends: the device's id or name, else its (one) attribute."""
        if self.id or self.name:
            return self.id or self.name
        asked = [self.attributes] if isinstance(self.attributes, str) else list(self.attributes)
        if len(asked) != 1:
            raise HubError("A job runs on a device (its name) or on any device with one attribute.")
        return asked[0]


def device_target(device: Device | str | None) -> str:
    if isinstance(device, Device):
        return device.target()
    return device or ""


class _Deadline(TimeoutError):
    """The caller's timeout ran out: never retried."""


class _Interrupted(Exception):
    """The way to the hub broke for now (connection, handshake, the hub away): try again."""


def _stop_at(deadline: float) -> Any:
    """A tenacity stop condition: no retry would start after ``deadline`` (time.monotonic())."""
    return lambda state: time.monotonic() >= deadline


@dataclass(frozen=True)
class JobStatus:
    """A job's status: ``code`` is the hub's status (``ready``, ``failed``, …)."""

    code: str
    message: str = ""
    failure_type: str | None = None

    @property
    def finished(self) -> bool:
        return self.code in FINISHED

    @property
    def success(self) -> bool:
        return self.code in SUCCESS

    @property
    def failure(self) -> bool:
        return self.code == "failed"

    def __str__(self) -> str:
        return f"{self.code}: {self.message}" if self.message else self.code


@dataclass(frozen=True)
class StatusDetails:
    """Seed 004's customization status details."""

    best_epoch: int | None
    created_at: str
    elapsed_time: float | None
    epochs_completed: int | None
    metrics: dict[str, Any] | None
    percentage_done: float | None
    status: str
    status_logs: list[dict[str, Any]]
    steps_completed: int | None
    steps_per_epoch: int | None
    train_loss: float | None
    updated_at: str
    val_loss: float | None


@dataclass(frozen=True)
class LogLine:
    """A line of a job's log, numbered from 1."""

    n: int
    at: datetime
    level: str  # info, warning or error
    text: str

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> LogLine:
        at = datetime.fromisoformat(data["at"].replace("Z", "+00:00"))
        return cls(data["n"], at, data["level"], data["text"])

    def __str__(self) -> str:
        return f"{self.at:%H:%M:%S} {self.text}"


@dataclass
class TargetModel:
    """A downloaded target model, in memory."""

    model_id: str
    name: str
    format: str
    sha256: str
    data: bytes = field(repr=False)

    def save(self, path: str | Path) -> Path:
        target = Path(path)
        target.write_bytes(self.data)
        return target

    def to_onnx(self) -> Any:
        """The ONNX model; one stored with its data file (a zip of model.onnx and
        model.onnx.data, as the hub serves models past protobuf's 2 GB) with its weights
        read in."""
        import io
        import tempfile
        import zipfile

        import onnx  # only needed for this

        if not zipfile.is_zipfile(io.BytesIO(self.data)):
            return onnx.load_from_string(self.data)
        with zipfile.ZipFile(io.BytesIO(self.data)) as archive, tempfile.TemporaryDirectory() as d:
            for member in ("model.onnx", "model.onnx.data"):  # the hub's names, no others
                if member in archive.namelist():
                    Path(d, member).write_bytes(archive.read(member))
            return onnx.load(str(Path(d, "model.onnx")))


@dataclass
class JobResults:
    directory: Path
    target_model: Path | None
    artifacts: list[Path]
    status_details: Path


class _Shared:
    """Seed 000's sharing methods, the same on a job, a model and a dataset: only the owner
    sees or changes who it is shared with (PermissionDenied, 403, for anyone else)."""

    _client: Connection

    def _sharing_path(self) -> str:
        raise NotImplementedError

    def get_sharing(self) -> list[str]:
        """The addresses it is shared with (the owner's to see)."""
        return list(self._client.request("GET", self._sharing_path())["emails"])

    def modify_sharing(
        self, add_emails: list[str] | None = None, delete_emails: list[str] | None = None
    ) -> None:
        """Share with ``add_emails`` and stop sharing with ``delete_emails`` (all or nothing)."""
        body = {"add_emails": list(add_emails or []), "delete_emails": list(delete_emails or [])}
        self._client.request("POST", self._sharing_path(), json=body)

    def disable_sharing(self) -> None:
        """Stop sharing it with anyone."""
        self._client.request("DELETE", self._sharing_path())


class Model(_Shared):
    """A model; shared on its own (``modify_sharing``), its readers read, download and use it
    in their jobs, but do not see the jobs that made or used it."""

    def __init__(self, client: Connection, data: dict[str, Any]) -> None:
        self._client, self.data = client, data
        self.model_id: str = data["id"]
        self.name: str = data["name"]
        self.format: str = data["format"]
        # The id of the job that made it; None for an upload, or a job you may not read (a
        # model shared with you on its own names no job of its owner's).
        self.produced_by: str | None = data.get("produced_by")
        # True when the upload was the same bytes as a model already yours: that one is used.
        self.already_uploaded: bool = bool(data.get("already_uploaded"))

    def download(self, filename: str | Path) -> Path:
        return _download(self._client, f"/api/v1/models/{self.model_id}/download/", Path(filename))

    def generate(self, prompt: str, *, stream: bool = False, **options: Any) -> Answer | str:
        """Try a language model: its answer to ``prompt`` (``max_tokens``, ``temperature``,
        ``chat=False`` to send the prompt as it is); with ``stream=True``, an ``Answer`` to
        iterate for the pieces as they are written."""
        return generate(self._client, self.model_id, prompt, stream=stream, **options)

    def deletion_plan(self) -> dict[str, Any]:
        """What deleting it would take with it (``goes``, ``kept``) and what stops it now
        (``blocked``), without deleting anything."""
        return _deletion(self._client, "GET", f"/api/v1/models/{self.model_id}/deletion/")

    def delete(self) -> dict[str, Any]:
        """Delete it (its owner only): ``ConflictError`` while an unfinished job uses it."""
        return _deletion(self._client, "DELETE", f"/api/v1/models/{self.model_id}/")

    def __repr__(self) -> str:
        return f"Model({self.model_id!r}, name={self.name!r}, format={self.format!r})"

    def _sharing_path(self) -> str:
        return f"/api/v1/models/{self.model_id}/sharing/"


class Dataset(_Shared):
    """A dataset; shared on its own as a model is."""

    def __init__(self, client: Connection, data: dict[str, Any]) -> None:
        self._client, self.data = client, data
        self.dataset_id: str = data["id"]
        self.name: str = data["name"]
        self.num_records: int = data["num_records"]
        # The inference job whose outputs it is, as ``Model.produced_by``.
        self.produced_by: str | None = data.get("produced_by")
        self.already_uploaded: bool = bool(data.get("already_uploaded"))

    def deletion_plan(self) -> dict[str, Any]:
        """As ``Model.deletion_plan``."""
        return _deletion(self._client, "GET", f"/api/v1/datasets/{self.dataset_id}/deletion/")

    def delete(self) -> dict[str, Any]:
        """Delete it (its owner only): ``ConflictError`` while an unfinished job uses it."""
        return _deletion(self._client, "DELETE", f"/api/v1/datasets/{self.dataset_id}/")

    def __repr__(self) -> str:
        return f"Dataset({self.dataset_id!r}, name={self.name!r}, records={self.num_records})"

    def _sharing_path(self) -> str:
        return f"/api/v1/datasets/{self.dataset_id}/sharing/"


class Job(_Shared):
    def __init__(self, client: Connection, data: dict[str, Any]) -> None:
        self._client = client
        self._update(data)

    def _update(self, data: dict[str, Any]) -> None:
        self.data = data
        self.job_id: str = data["id"]
        self.name: str = data["name"]
        self.kind: str = data["kind"]
        self.owner: str = data["owner"]
        # The device it names (None: any device, or any with ``device_attribute``), and the
        # device whose worker ran it.
        self.device: Device | None = Device.from_data(data.get("device"))
        self.device_attribute: str = data.get("device_attribute") or ""
        self.ran_device: Device | None = Device.from_data(data.get("ran_device"))
        # What a compile, profile or inference job found (its largest differences, its
        # execution summary, its outputs' shapes), as the job page shows it.
        self.summary: dict[str, Any] = data.get("summary") or {}
        self.models: list[str] = data["models"]
        self.date: datetime = datetime.fromisoformat(data["date"].replace("Z", "+00:00"))
        self.url: str = data["url"]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.job_id!r}, name={self.name!r}, status={self.data['status']!r})"

    @property
    def _last_statuses(self) -> Collection[str]:
        """Where the job ends: an external run ends ``completed`` (it has no target model for
        the hub to verify into ``ready``)."""
        return FINISHED if self.kind == "external" else TERMINAL

    def refresh(self) -> Job:
        self._update(self._client.request("GET", f"/api/v1/jobs/{self.job_id}/"))
        return self

    def get_status(self) -> JobStatus:
        self.refresh()
        return _status(self.data)

    def get_queue(self) -> dict[str, Any] | None:
        """Where the job stands while it is pending: ``ahead`` (jobs before it), ``running``,
        ``workers`` (that can run it) and ``reason`` (in words); None once it is not pending."""
        queue: dict[str, Any] | None = self._client.request(
            "GET", f"/api/v1/jobs/{self.job_id}/queue/"
        )["queue"]
        return queue

    def set_name(self, job_name: str) -> None:
        self._update(
            self._client.request("PATCH", f"/api/v1/jobs/{self.job_id}/", json={"name": job_name})
        )

    def cancel(self) -> JobStatus:
        self._update(self._client.request("POST", f"/api/v1/jobs/{self.job_id}/cancel/"))
        return _status(self.data)

    def _sharing_path(self) -> str:
        return f"/api/v1/jobs/{self.job_id}/sharing/"

    def get_logs(self, after: int = 0) -> list[LogLine]:
        """The job's log (after line ``after``): what its runner did, warnings, training lines
        and a failed job's summary of where it failed."""
        lines: list[LogLine] = []
        while True:
            page = self._client.request(
                "GET", f"/api/v1/jobs/{self.job_id}/logs/", params={"after": after}
            )
            lines += [LogLine.from_api(line) for line in page["lines"]]
            after = page["last"]
            if not page["more"]:
                return lines

    def stream_logs(self, timeout: float | None = None) -> Iterator[LogLine]:
        """The log so far, then each new line as the job writes it, until the job finishes (or
        ``timeout`` seconds pass: TimeoutError). Lines come in order, each once, also across a
        reconnect."""
        last = 0

        def new(lines: list[LogLine]) -> Iterator[LogLine]:
            nonlocal last
            for line in lines:
                if line.n > last:
                    last = line.n
                    yield line

        yield from new(self.get_logs())
        deadline = None if timeout is None else time.monotonic() + timeout
        for message in self.events(deadline=deadline, stop_when_finished=True):
            if message["type"] == "snapshot":  # after a reconnect: what was written meanwhile
                yield from new(self.get_logs(after=last))
            elif message.get("event") == "lines":
                lines = [LogLine.from_api(line) for line in message["data"]["lines"]]
                if lines and lines[0].n > last + 1:  # some were missed: the API has them
                    yield from new(self.get_logs(after=last))
                yield from new(lines)
        yield from new(self.get_logs(after=last))

    def deletion_plan(self) -> dict[str, Any]:
        """What deleting the job would take with it (``goes``, ``kept``) and what stops it now
        (``blocked``: a job that has not finished), without deleting anything."""
        return _deletion(self._client, "GET", f"/api/v1/jobs/{self.job_id}/deletion/")

    def delete(self) -> dict[str, Any]:
        """Delete the finished job with its results and shares (its owner only; a job that has
        not finished raises ``ConflictError``: cancel it first)."""
        return _deletion(self._client, "DELETE", f"/api/v1/jobs/{self.job_id}/")

    def resubmit(self) -> Job:
        return job_from(
            self._client, self._client.request("POST", f"/api/v1/jobs/{self.job_id}/resubmit/")
        )

    def wait(self, timeout: float | None = None) -> JobStatus:
        """Block until the job finishes (ready, failed or cancelled) and return its final status.

        The hub pushes every change over a websocket, so this returns the moment the job
        finishes. ``TimeoutError`` is raised only when ``timeout`` (seconds) runs out here; a job
        the hub itself timed out comes back as a failed status.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        for _ in self.events(deadline=deadline, stop_when_finished=True):
            pass
        return self.get_status()

    def events(
        self, *, deadline: float | None = None, stop_when_finished: bool = False
    ) -> Iterator[dict[str, Any]]:
        """The job's websocket messages (a snapshot, then each event), until the job finishes
        (with ``stop_when_finished``) or ``deadline`` (time.monotonic()) passes.

        Whatever breaks between here and the hub (a dropped connection, a refused handshake
        while the hub's Redis restarts, the hub itself away) is outlasted: the client reconnects
        with exponential backoff and jitter (tenacity), asking for the events after the last
        sequence number it saw, and meanwhile polls the job over HTTP so that a job that
        finished while the socket could not open still ends the wait. Only the deadline, a
        final status, or a job that cannot be read ends it."""
        from tenacity import (
            Retrying,
            retry_if_exception_type,
            stop_never,
            wait_random_exponential,
        )

        state: dict[str, Any] = {"seq": None}
        retrying = Retrying(
            retry=retry_if_exception_type(_Interrupted),
            wait=wait_random_exponential(multiplier=0.5, max=RECONNECT_MAX_DELAY),
            stop=stop_never if deadline is None else _stop_at(deadline),
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    yield from self._stream(state, deadline, stop_when_finished)
        except _Interrupted as interrupted:
            raise TimeoutError(
                f"Job {self.job_id} did not finish within the timeout (the hub could not be "
                f"reached at the end: {interrupted})."
            ) from None

    def _stream(
        self, state: dict[str, Any], deadline: float | None, stop_when_finished: bool
    ) -> Iterator[dict[str, Any]]:
        """One connection's worth of events; _Interrupted when the connection cannot be made or
        is lost."""
        from websockets.exceptions import ConnectionClosed, InvalidHandshake
        from websockets.sync.client import connect
        from websockets.typing import Origin

        try:
            status = self.get_status()  # the poll that also covers the time the socket was away
        except HubError as error:
            if error.status is not None and error.status < 500:
                raise
            raise _Interrupted(error.message) from None
        # A job that finished is still read from its socket, from the last event seen: the
        # events it sent while the connection was away are part of what a watcher asked for.
        # Only if the socket cannot be read does the poll alone end the stream.
        finished = stop_when_finished and status.code in self._last_statuses
        query = f"?after={state['seq']}" if state["seq"] is not None else ""
        url = self._client.websocket_url(f"/ws/jobs/{self.job_id}/{query}")
        try:
            with connect(
                url,
                additional_headers={"Authorization": f"Token {self._client.token}"},
                origin=Origin(self._client.origin),
                open_timeout=10,
            ) as socket:
                while True:
                    wait = None if deadline is None else deadline - time.monotonic()
                    if wait is not None and wait <= 0:
                        raise _Deadline(f"Job {self.job_id} did not finish within the timeout.")
                    try:
                        # A quiet socket is asked again after a while: a final event that never
                        # arrived is found by the poll of the next round.
                        message = json.loads(socket.recv(timeout=min(wait or QUIET, QUIET)))
                    except TimeoutError:
                        if wait is not None and wait <= QUIET:
                            raise _Deadline(
                                f"Job {self.job_id} did not finish within the timeout."
                            ) from None
                        raise _Interrupted("no message for a while") from None
                    kind = message.get("type")
                    if kind == "heartbeat":
                        # The job's latest number: one not seen yet was lost on the way.
                        if state["seq"] is not None and message.get("seq", 0) > state["seq"]:
                            socket.send(json.dumps({"type": "catch_up", "after": state["seq"]}))
                        continue
                    if kind not in ("snapshot", "event"):
                        continue  # a gap notice (the missed events follow) or an error
                    state["seq"] = message.get("seq", state["seq"])
                    yield message
                    if stop_when_finished and _finished(message, self._last_statuses):
                        return
        except _Deadline:
            raise
        except ConnectionClosed as closed:
            if closed.rcvd is not None and closed.rcvd.code == 4404:
                raise HubError(f"No job {self.job_id} that you may read.", status=404) from None
            if finished:
                return
            raise _Interrupted(f"connection closed ({closed})") from None
        except (OSError, InvalidHandshake) as error:
            if finished:
                return
            raise _Interrupted(f"{type(error).__name__}: {error}") from None

    def get_target_model(self) -> TargetModel:
        """The target model in memory, once the job finishes; ``ConflictError`` naming the
        job's status if it has none (failed, cancelled, an external run)."""
        self._require_target()
        meta = self._client.request("GET", f"/api/v1/models/{self.data['target_model']}/")
        with self._client.stream(f"/api/v1/jobs/{self.job_id}/target-model/") as response:
            data = response.read()
        return TargetModel(meta["id"], meta["name"], meta["format"], meta["sha256"], data)

    def download_target_model(self, filename: str | None = None) -> TargetModel | str:
        """To a file when ``filename`` is given (returns its path), else to memory; waits for
        the job to finish, and raises ``ConflictError`` naming its status if it has no target
        model."""
        if filename is None:
            return self.get_target_model()
        self._require_target()
        return str(
            _download(self._client, f"/api/v1/jobs/{self.job_id}/target-model/", Path(filename))
        )

    def _require_target(self) -> None:
        status = self.wait()
        if status.code == "ready" and not self.data.get("target_model"):
            raise ConflictError(
                f"Job {self.job_id}'s target model was deleted by its owner.", status=409
            )
        if status.code != "ready":
            why = f": {status.message}" if status.message else ""
            raise ConflictError(
                f"Job {self.job_id} is {status.code}{why}. Only a ready job has a target model "
                "to download.",
                status=409,
            )

    def _require_success(self) -> None:
        status = self.wait()
        if status.code != "ready":
            why = f": {status.message}" if status.message else ""
            raise ConflictError(
                f"Job {self.job_id} is {status.code}{why}. Only a ready job has results.",
                status=409,
            )

    def download_results(self, artifacts_dir: str | Path) -> JobResults:
        """Everything the job produced, unpacked into ``artifacts_dir`` (created if missing)."""
        self.wait()
        directory = Path(artifacts_dir)
        directory.mkdir(parents=True, exist_ok=True)
        archive = _download(
            self._client,
            f"/api/v1/jobs/{self.job_id}/results/",
            directory / f"{self.job_id}-results.zip",
        )
        with zipfile.ZipFile(archive) as bundle:
            bundle.extractall(directory)
            names = bundle.namelist()
        archive.unlink()
        target = next((directory / n for n in names if n.startswith("target_model")), None)
        return JobResults(
            directory,
            target,
            [directory / n for n in names if n.startswith("artifacts/")],
            directory / "status_details.json",
        )


class LinkJob(Job):
    pass


PROFILE_ARTIFACT = "profile.json"
OUTPUT_ARTIFACT = "output_data.h5"


class CompileJob(Job):
    """An ONNX model optimized for a device: ``download_target_model()`` as for a link job."""


class ProfileJob(Job):
    def download_profile(self, filename: str | None = None) -> dict[str, Any] | str:
        """Seed 000's profile: ``execution_summary`` (times in microseconds, memory in bytes)
        and ``execution_detail`` (one entry per layer); to a JSON file when ``filename`` is
        given. Waits for the job; ConflictError names its status if it has no profile."""
        return _profile(self, filename)


def _profile(job: Job, filename: str | None) -> dict[str, Any] | str:
    """The profile.json of a finished job that profiled (a profile job, or an inference job
    submitted with profile=True)."""
    job._require_success()
    path = f"/api/v1/jobs/{job.job_id}/artifacts/{PROFILE_ARTIFACT}/"
    if filename is not None:
        return str(_download(job._client, path, Path(filename)))
    with job._client.stream(path) as response:
        profile: dict[str, Any] = json.loads(response.read())
    return profile


class InferenceJob(Job):
    def download_profile(self, filename: str | None = None) -> dict[str, Any] | str:
        """Seed 000's profile, as ``ProfileJob.download_profile`` gives it, of a job submitted
        with ``profile=True``; ConflictError for one submitted without (seed 000's client
        answers {} then: here the reason is named)."""
        if not (self.data.get("hyperparameters") or {}).get("profile"):
            raise ConflictError(
                f"Job {self.job_id} was submitted without profile=True: it ran the model on its "
                "inputs and did not profile it. Submit it again with profile=True for a profile.",
                status=409,
            )
        return _profile(self, filename)

    def download_output_data(self, filename: str | None = None) -> dict[str, list[Any]] | str:
        """The outputs, seed 000's way: {output name: [an array per input sample]}; the h5
        file itself when ``filename`` is given."""
        self._require_success()
        path = f"/api/v1/jobs/{self.job_id}/artifacts/{OUTPUT_ARTIFACT}/"
        if filename is not None:
            return str(_download(self._client, path, Path(filename)))
        import tempfile

        from hubclient.tensors import read_h5

        with tempfile.TemporaryDirectory() as scratch:
            return read_h5(_download(self._client, path, Path(scratch) / OUTPUT_ARTIFACT))


class EvaluationJob(Job):
    def scores(self) -> dict[str, dict[str, float | None]]:
        """{model id or name: {metric: value}} once the job is ready: loss, perplexity,
        exact_match, rouge_l, bleu, string_check (and regex, preference_accuracy when they
        apply)."""
        self._require_success()
        self.refresh()
        return {r["model"]: r["metrics"] for r in (self.data.get("summary") or {})["models"]}

    def download_rows(self, filename: str, format: str = "jsonl") -> str:
        """Every row (prompt, expected, each model's output and scores), worst first, as
        ``rows.jsonl`` or ``rows.csv`` (``format="csv"``)."""
        self._require_success()
        name = "rows.csv" if format == "csv" else "rows.jsonl"
        path = f"/api/v1/jobs/{self.job_id}/artifacts/{name}/"
        return str(_download(self._client, path, Path(filename)))


class CustomizationJob(Job):
    def get_status_details(self) -> StatusDetails:
        return StatusDetails(**self._client.request("GET", f"/api/v1/jobs/{self.job_id}/status/"))


class ExternalJob(CustomizationJob):
    """A run trained outside the hub that reports to it (``Client.start_run``, ``HubCallback``):
    the same status details as a customization job."""


def _status(data: dict[str, Any]) -> JobStatus:
    failure = data.get("failure") or {}
    return JobStatus(data["status"], failure.get("message", ""), failure.get("type"))


def _finished(message: dict[str, Any], last: Collection[str]) -> bool:
    if message.get("type") == "snapshot":
        return message["data"]["job"]["status"] in last
    return message.get("event") == "status" and message["data"].get("status") in last


def _download(client: Connection, path: str, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    with client.stream(path) as response, target.open("wb") as out:
        for chunk in response.iter_bytes():
            out.write(chunk)
    return target


def _deletion(client: Connection, method: str, path: str) -> dict[str, Any]:
    plan: dict[str, Any] = client.request(method, path)
    return plan


def job_from(connection: Connection, data: dict[str, Any]) -> Job:
    """The client's object for a job the hub described: its kind's class."""
    kinds: dict[str, type[Job]] = {
        "link": LinkJob,
        "customization": CustomizationJob,
        "external": ExternalJob,
        "compile": CompileJob,
        "profile": ProfileJob,
        "inference": InferenceJob,
        "evaluation": EvaluationJob,
    }
    kind = kinds.get(data["kind"], Job)
    return kind(connection, data)
