"""Every download the hub serves, streamed a MiB at a time whichever server runs it, or, for a
file in object storage, a redirect to the bucket (``stored_file_response``).

Under ASGI (uvicorn: ``./serve.sh`` and production) Django consumes a *synchronous* streaming
iterator with ``sync_to_async(list)``: the whole file in the web process's memory before its
first byte leaves (a 154 MB model raised a web process from 536 to 686 MiB). There the body is an
asynchronous iterator that reads each MiB in a thread and closes the file when the body ends or
the client goes away. Under WSGI (the test client, ``live_server``) Django wants a synchronous
one, and an asynchronous one would be read whole the other way round: FileResponse's own stays.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Protocol, runtime_checkable

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.db.models.fields.files import FieldFile
from django.http import (
    FileResponse,
    HttpRequest,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.http.response import HttpResponseBase
from django.utils.http import content_disposition_header
from rest_framework.request import Request

from hubsite.object_storage import ObjectStorage, is_remote

CHUNK_BYTES = 1024 * 1024


@runtime_checkable
class Readable(Protocol):
    """An open binary file: a storage file (``FieldFile.open("rb")``) or a temporary file."""

    def read(self, size: int = ..., /) -> bytes: ...

    def close(self) -> None: ...


def download_response(
    request: HttpRequest | Request,
    source: Readable | Iterable[str],
    *,
    filename: str,
    content_type: str = "application/octet-stream",
) -> StreamingHttpResponse:
    """An attachment named ``filename``: an open binary file (its Content-Length given; closed
    with the response) or text made as it is sent (the lines of a job's log). A HEAD request gets
    the same headers and reads nothing."""
    if isinstance(source, Readable):  # before Iterable: a file is an iterable of lines too
        return _file_response(request, source, filename, content_type)
    return _text_response(request, iter(source), filename, content_type)


def stored_file_response(
    request: HttpRequest | Request,
    field: FieldFile,
    *,
    filename: str,
    content_type: str = "application/octet-stream",
) -> HttpResponseBase:
    """A stored file as an attachment named ``filename``. In object storage, a redirect to a
    presigned address that works for a few minutes (the bytes go from the bucket to the client,
    never through this process; the client follows it at once, and comes back here, where its
    access is checked again, to resume); on the media folder, streamed from the disk. A file
    that is not there raises FileNotFoundError, as opening it would."""
    storage, name = field.storage, str(field.name)
    if not is_remote(storage):
        return download_response(
            request, field.open("rb"), filename=filename, content_type=content_type
        )
    assert isinstance(storage, ObjectStorage)
    if not storage.exists(name):
        raise FileNotFoundError(name)
    response = HttpResponseRedirect(storage.download_url(name, filename, content_type))
    # The address is a credential for as long as it works: no cache may keep it.
    response["Cache-Control"] = "private, no-store"
    return response


def _file_response(
    request: HttpRequest | Request, handle: Readable, filename: str, content_type: str
) -> StreamingHttpResponse:
    # FileResponse sets Content-Length, Content-Type and Content-Disposition (a non-ASCII name
    # as RFC 6266's filename*), and closes the file with the response.
    response = FileResponse(
        handle, as_attachment=True, filename=filename, content_type=content_type
    )
    response.block_size = CHUNK_BYTES
    if request.method == "HEAD":
        response.streaming_content = _nothing() if _is_asgi(request) else iter(())
    elif _is_asgi(request):
        response.streaming_content = _file_chunks(handle)
    return response


def _text_response(
    request: HttpRequest | Request, lines: Iterator[str], filename: str, content_type: str
) -> StreamingHttpResponse:
    response = StreamingHttpResponse(lines, content_type=content_type)
    # As FileResponse writes it (never None for an attachment).
    response["Content-Disposition"] = content_disposition_header(True, filename) or "attachment"
    if request.method == "HEAD":
        response.streaming_content = _nothing() if _is_asgi(request) else iter(())
    elif _is_asgi(request):
        response.streaming_content = _text_chunks(lines)
    return response


def _is_asgi(request: HttpRequest | Request) -> bool:
    # A REST framework request wraps Django's; the test client's and live_server's are WSGI.
    return isinstance(getattr(request, "_request", request), ASGIRequest)


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield  # an asynchronous generator that yields nothing


async def _file_chunks(handle: Readable) -> AsyncIterator[bytes]:
    """The file a MiB at a time, each read in a thread, so the event loop never waits on the disk
    and one chunk at a time is in memory. Closed here, also when the client goes away (Django
    then cancels the send and this generator is closed, without calling the response's close)."""
    read = sync_to_async(handle.read, thread_sensitive=False)
    try:
        while chunk := await read(CHUNK_BYTES):
            yield chunk
    finally:
        # Through a thread too: a read still under way there finishes before the file closes.
        await sync_to_async(handle.close, thread_sensitive=False)()


async def _text_chunks(lines: Iterator[str]) -> AsyncIterator[bytes]:
    """The lines gathered into pieces of about a MiB, made in the request's own thread (they read
    the database a page at a time, on that thread's connection)."""
    take = sync_to_async(_take, thread_sensitive=True)
    try:
        while chunk := await take(lines, CHUNK_BYTES):
            yield chunk
    finally:
        if (close := getattr(lines, "close", None)) is not None:
            await sync_to_async(close, thread_sensitive=True)()


def _take(lines: Iterator[str], limit: int) -> bytes:
    taken: list[bytes] = []
    size = 0
    for line in lines:
        taken.append(line.encode())
        size += len(taken[-1])
        if size >= limit:
            break
    return b"".join(taken)
