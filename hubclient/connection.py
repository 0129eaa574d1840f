"""The hub's address, token and HTTP session: what every object of the client talks through.
Jobs, models and datasets (hubclient.jobs) hold a connection; ``Client`` is one, with the
methods that make them."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from hubclient.errors import BY_STATUS, HubError

DEFAULT_URL = "http://127.0.0.1:8000"


class Connection:
    """``Connection(url=None, token=None)``; both default to ``HUB_URL`` and ``HUB_API_TOKEN``."""

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

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
