"""Upload size limits, enforced while the bytes arrive rather than after they are stored."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, SkipFile

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[..., Awaitable[None]]

MULTIPART_MARGIN = 1024 * 1024  # form fields and boundaries around the file itself


def _too_large(what: str) -> str:
    return f"{what} is larger than the upload limit of {settings.HUB_MAX_UPLOAD_BYTES} bytes (HUB_MAX_UPLOAD_BYTES)."


class SizeLimitUploadHandler(FileUploadHandler):
    """Skips a file field as soon as it passes HUB_MAX_UPLOAD_BYTES, and tells the view why."""

    def new_file(self, field_name: str, file_name: str, *args: Any, **kwargs: Any) -> None:
        super().new_file(field_name, file_name, *args, **kwargs)
        self.label = file_name

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        if start + len(raw_data) > settings.HUB_MAX_UPLOAD_BYTES:
            assert self.request is not None
            self.request.upload_refused = _too_large(self.label)  # type: ignore[attr-defined]
            raise SkipFile
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None  # the next handlers store the file


class BodySizeLimit:
    """ASGI guard: Django reads a whole request body before any view runs, so a request that
    says it is too large is refused before a byte of it is read or spooled to disk."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            limit = settings.HUB_MAX_UPLOAD_BYTES + MULTIPART_MARGIN
            length = dict(scope.get("headers", [])).get(b"content-length")
            if length is not None and length.isdigit() and int(length) > limit:
                await self._refuse(send)
                return
        await self.app(scope, receive, send)

    @staticmethod
    async def _refuse(send: Send) -> None:
        body = json.dumps(
            {"message": _too_large("The request"), "field": "file", "errors": {}}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
