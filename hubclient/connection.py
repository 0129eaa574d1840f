"""The hub's address, token and HTTP session: what every object of the client talks through.
Jobs, models and datasets (hubclient.jobs) hold a connection; ``Client`` is one, with the
methods that make them."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Self
from urllib.parse import urlsplit

import httpx

from hubclient.errors import BY_STATUS, HubError, NotFoundError

DEFAULT_URL = "http://127.0.0.1:8000"
PROGRESS_BYTES = 8 * 1024 * 1024  # files larger than this show a progress bar by default


@contextmanager
def progress_bar(
    description: str, total: int, show: bool | None
) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr (bytes, speed, time left); a no-op when not shown."""
    if show is None:
        show = total > PROGRESS_BYTES and sys.stderr.isatty()
    if not show:
        yield lambda _: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        *size_columns(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task(description, total=total)
        yield lambda done: bar.update(task, advance=done)


def binary_size(size: float) -> str:
    """Bytes in binary units, as the hub's pages write them: 512 B, 3.4 MiB, 1.2 GiB."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def size_columns() -> tuple[Any, Any]:
    """The bar's bytes done and speed, in binary units (rich's defaults are decimal: kB, MB)."""
    from rich.progress import DownloadColumn, TransferSpeedColumn
    from rich.text import Text

    class BinarySpeedColumn(TransferSpeedColumn):
        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            text = "?" if speed is None else f"{binary_size(speed)}/s"
            return Text(text, style="progress.data.speed")

    return DownloadColumn(binary_units=True), BinarySpeedColumn()


class _Counting:
    """A file that reports how much has been read of it (httpx reads uploads in chunks)."""

    def __init__(self, handle: IO[bytes], advance: Callable[[int], None]) -> None:
        self.handle, self.advance = handle, advance

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.advance(len(data))
        return data

    def fileno(self) -> int:  # httpx takes the Content-Length from the file's size
        return self.handle.fileno()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.handle.seek(offset, whence)

    def tell(self) -> int:
        return self.handle.tell()


PART_THRESHOLD = 64 * 1024 * 1024  # files this large go up in parts (/api/v1/uploads/)
PART_TRIES = 3


class Connection:
    """``Connection(url=None, token=None)``; both default to ``HUB_URL`` and ``HUB_API_TOKEN``."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 60.0,
        part_threshold: int = PART_THRESHOLD,
    ) -> None:
        self.part_threshold = part_threshold
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

    def _upload_in_parts(
        self,
        kind: str,
        file: Path,
        name: str | None,
        progress: bool | None,
        label: str | None,
    ) -> Any:
        """A large file in parts (/api/v1/uploads/): each part PUT on its own to the address the
        hub gives (in object storage, the bucket's own: the bytes never pass through the hub)
        and retried on its own; then the upload is completed with the parts' ETags. None when
        the hub has no such route (an older hub): the caller sends the file whole."""
        size = file.stat().st_size
        try:
            begun = self.request(
                "POST",
                "/api/v1/uploads/",
                json={
                    "kind": kind,
                    "filename": label or file.name,
                    "size": size,
                    "name": name or "",
                },
            )
        except NotFoundError:
            return None
        part_size, etags = int(begun["part_size"]), []
        # The addresses carry their own signature: no token goes with the parts.
        with (
            httpx.Client(timeout=self._http.timeout) as plain,
            file.open("rb") as handle,
            progress_bar(f"Uploading {label or file.name}", size, progress) as advance,
        ):
            for number, address in enumerate(begun["parts"], start=1):
                handle.seek((number - 1) * part_size)
                part = handle.read(part_size)
                etags.append(_put_part(plain, address, part, number))
                advance(len(part))
        return self.request(
            "POST",
            f"/api/v1/uploads/{begun['id']}/complete/",
            json={"upload_id": begun["upload_id"], "etags": etags},
        )

    def __enter__(self) -> Self:
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

    def _upload(
        self,
        url: str,
        path: str | os.PathLike[str],
        name: str | None,
        progress: bool | None = None,
        label: str | None = None,
    ) -> Any:
        """POST a file as multipart; with a progress bar on stderr when ``progress`` says so
        (None: for files over PROGRESS_BYTES when stderr is a terminal)."""
        file = Path(path)
        if not file.is_file():
            raise HubError(f"No file at {file}.")
        size = file.stat().st_size
        if size >= self.part_threshold:
            kind = "model" if url.rstrip("/").endswith("models") else "dataset"
            made = self._upload_in_parts(kind, file, name, progress, label)
            if made is not None:
                return made
        with (
            file.open("rb") as handle,
            progress_bar(f"Uploading {label or file.name}", size, progress) as advance,
        ):
            body = _Counting(handle, advance)
            return self.request(
                "POST", url, files={"file": (label or file.name, body)}, data={"name": name or ""}
            )


def _put_part(http: httpx.Client, address: str, data: bytes, number: int) -> str:
    """PUT one part, retried on its own (a network error, a 5xx); its ETag."""
    for attempt in range(1, PART_TRIES + 1):
        try:
            answer = http.put(address, content=data)
        except httpx.HTTPError as error:
            if attempt == PART_TRIES:
                raise HubError(f"Part {number} could not be sent: {error}") from error
            continue
        if answer.status_code < 300 and answer.headers.get("ETag"):
            return str(answer.headers["ETag"])
        if answer.status_code < 500 or attempt == PART_TRIES:
            raise HubError(
                f"Part {number} was refused ({answer.status_code}): {answer.text[:300]}",
                status=answer.status_code,
            )
    raise AssertionError("unreachable")
