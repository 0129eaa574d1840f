"""The hub's Python client: ``Client`` talks HTTP to ``/api/v1/`` and listens to a job's
websocket to learn of changes the moment they happen."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from hubclient.errors import BY_STATUS, HubError
from hubclient.jobs import CustomizationJob, Dataset, Job, LinkJob, Model

DEFAULT_URL = "http://127.0.0.1:8000"


class Client:
    """``Client(url=None, token=None)``; both default to ``HUB_URL`` and ``HUB_API_TOKEN``."""

    def __init__(
        self, url: str | None = None, token: str | None = None, *, timeout: float = 60.0
    ) -> None:
        self.url = (url or os.environ.get("HUB_URL") or DEFAULT_URL).rstrip("/")
        self.token = token or os.environ.get("HUB_API_TOKEN")
        if not self.token:
            raise HubError(
                "No API token: pass token= or set HUB_API_TOKEN (your token is on the hub's API token page)."
            )
        self._http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Token {self.token}"},
            timeout=timeout,
            follow_redirects=True,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Models and datasets

    def upload_model(self, path: str | os.PathLike[str], name: str | None = None) -> Model:
        return Model(self, self._upload("/api/v1/models/", path, name))

    def upload_dataset(self, path: str | os.PathLike[str], name: str | None = None) -> Dataset:
        return Dataset(self, self._upload("/api/v1/datasets/", path, name))

    def get_model(self, model_id: str) -> Model:
        return Model(self, self.request("GET", f"/api/v1/models/{model_id}/"))

    def get_dataset(self, dataset_id: str) -> Dataset:
        return Dataset(self, self.request("GET", f"/api/v1/datasets/{dataset_id}/"))

    def get_builtin_models(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/api/v1/models/builtin/"))

    # Jobs

    def submit_link_job(
        self,
        models: Sequence[Model | str | os.PathLike[str]],
        device: str | None = None,
        name: str | None = None,
    ) -> LinkJob:
        """Link models (Model objects, model ids, or paths of ONNX files to upload) into one."""
        ids = [self._model_id(model) for model in models]
        body = {"models": ids, "device": device or "", "name": name or ""}
        return LinkJob(self, self.request("POST", "/api/v1/jobs/link/", json=body))

    def submit_customization_job(
        self,
        model: Model | str | None,
        dataset: Dataset | str | os.PathLike[str],
        validation_dataset: Dataset | str | os.PathLike[str] | None = None,
        hyperparameters: dict[str, Any] | None = None,
        name: str | None = None,
        device: str | None = None,
    ) -> CustomizationJob:
        """Fine-tune ``model`` (a built-in model's name, a checkpoint, or None for the default)."""
        body: dict[str, Any] = {
            "model": model.model_id if isinstance(model, Model) else model,
            "dataset": self._dataset_id(dataset),
            "validation_dataset": self._dataset_id(validation_dataset)
            if validation_dataset is not None
            else None,
            "hyperparameters": hyperparameters,
            "name": name or "",
            "device": device or "",
        }
        return CustomizationJob(
            self, self.request("POST", "/api/v1/jobs/customization/", json=body)
        )

    def get_job(self, job_id: str) -> Job:
        return self._job(self.request("GET", f"/api/v1/jobs/{job_id}/"))

    def get_jobs(
        self, offset: int = 0, limit: int = 50, kind: str | None = None, status: str | None = None
    ) -> list[Job]:
        params = {"offset": offset, "limit": limit, "kind": kind or "", "status": status or ""}
        return [
            self._job(data)
            for data in self.request("GET", "/api/v1/jobs/", params=params)["results"]
        ]

    # Plumbing

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise HubError(f"Could not reach the hub at {self.url}: {error}") from error
        if response.status_code >= 400:
            raise self._error(response)
        return response.json() if response.content else None

    @contextmanager
    def stream(self, path: str) -> Iterator[httpx.Response]:
        with self._http.stream("GET", path) as response:
            if response.status_code >= 400:
                response.read()
                raise self._error(response)
            yield response

    def websocket_url(self, path: str) -> str:
        parts = urlsplit(self.url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return f"{scheme}://{parts.netloc}{parts.path}{path}"

    @property
    def origin(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"

    @staticmethod
    def _error(response: httpx.Response) -> HubError:
        try:
            body = response.json()
            message, field = body.get("message") or json.dumps(body), body.get("field")
        except ValueError:
            message, field = response.text[:500] or response.reason_phrase, None
        kind = BY_STATUS.get(response.status_code, HubError)
        return kind(message, status=response.status_code, field=field)

    def _upload(self, url: str, path: str | os.PathLike[str], name: str | None) -> Any:
        file = Path(path)
        if not file.is_file():
            raise HubError(f"No file at {file}.")
        with file.open("rb") as handle:
            return self.request(
                "POST", url, files={"file": (file.name, handle)}, data={"name": name or ""}
            )

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
        kind = {"link": LinkJob, "customization": CustomizationJob}.get(data["kind"], Job)
        return kind(self, data)


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
