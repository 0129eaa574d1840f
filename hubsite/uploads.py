"""Request bodies: size limits enforced while the bytes arrive, spooled on the media file system,
and refused before a byte is read when the sender may not upload at all.

Django's ASGI handler reads a whole request body before any middleware or view runs, so limits
set in views come too late: a chunked upload (no Content-Length) would be written to the temporary
directory in full, and an anonymous one before its 401. ``HubASGIHandler`` does the checks where
the body is read.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from http.cookies import SimpleCookie
from importlib import import_module
from pathlib import Path
from typing import IO, Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.core.exceptions import RequestAborted
from django.core.files.uploadhandler import FileUploadHandler, SkipFile
from django.core.handlers.asgi import ASGIHandler
from django.utils.crypto import constant_time_compare
from rest_framework.authtoken.models import Token

from hubsite.api.throttles import BadTokenThrottle
from hubsite.client_address import scope_address
from jobs.domain.disk import not_kept
from jobs.domain.quotas import upload_refusal

logger = logging.getLogger(__name__)

# The types django-stubs gives ASGIHandler.handle.
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[Mapping[str, Any]]]
Send = Callable[[Mapping[str, Any]], Awaitable[None]]

MULTIPART_MARGIN = 1024 * 1024  # form fields and boundaries around the file itself
# Larger bodies come only from signed-in people (uploads, big submissions): a login form, an
# invitation's sign-up or a token request is a few hundred bytes.
ANONYMOUS_BODY_LIMIT = 64 * 1024
# No route of the hub reads the body of any other method (a DELETE says all in its address).
BODY_METHODS = {"POST", "PUT", "PATCH"}
STALE_TEMP_SECONDS = 24 * 3600
AIHUB = "/aihub/"  # seed 000's client's face (aihub/urls.py)
SIGNED_UPLOADS = AIHUB + "transfers/"
# Reads a signed upload address (the part of the path after SIGNED_UPLOADS) and returns the body
# bytes it takes, or None when it is not valid: set by the aihub app when it is ready, so that
# this module, which jobs reads, does not import it.
signed_upload_allowance: Callable[[str], int | None] = lambda token: None  # noqa: E731


def _too_large(what: str) -> str:
    return f"{what} is larger than the upload limit of {settings.HUB_MAX_UPLOAD_BYTES} bytes (HUB_MAX_UPLOAD_BYTES)."


def body_limit() -> int:
    return int(settings.HUB_MAX_UPLOAD_BYTES) + MULTIPART_MARGIN


class BodyTooLarge(Exception):
    pass


# The most body bytes this request may send, set by HubASGIHandler.handle before Django reads the
# body (read_body gets no scope): a stranger's request never more than ANONYMOUS_BODY_LIMIT,
# whatever its headers said.
_body_allowance: ContextVar[int | None] = ContextVar("body_allowance", default=None)


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


# Temporary files of uploads


def upload_temp_root() -> Path:
    """Temporary upload files live on the media file system, beside what they become: a full
    /tmp cannot fail an upload that the media disk has room for, and the sweep finds them.
    Each process has a folder of its own (FILE_UPLOAD_TEMP_DIR, named host-pid)."""
    return Path(settings.FILE_UPLOAD_TEMP_DIR).parent


def upload_temp_dir() -> str:
    """This process's own folder of temporary upload files (made on first use)."""
    Path(settings.FILE_UPLOAD_TEMP_DIR).mkdir(parents=True, exist_ok=True)
    return str(settings.FILE_UPLOAD_TEMP_DIR)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_upload_temp_files(now: float | None = None) -> int:
    """Remove what killed processes left behind: the folders of this host's processes that are
    gone, and any folder untouched for a day (another host's, whose processes this one cannot
    see). Run when a web process starts. Returns the bytes freed."""
    root = upload_temp_root()
    if not root.is_dir():
        return 0
    now = time.time() if now is None else now
    host, freed = socket.gethostname(), 0
    for folder in root.iterdir():
        name_host, _, pid = folder.name.rpartition("-")
        dead = name_host == host and pid.isdigit() and not _alive(int(pid))
        stale = now - _latest_change(folder) > STALE_TEMP_SECONDS
        mine = str(folder) == str(settings.FILE_UPLOAD_TEMP_DIR)
        if folder.is_dir() and (dead or stale) and not mine:
            size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
            shutil.rmtree(folder, ignore_errors=True)
            freed += size
    if freed:
        logger.info("Removed %d bytes of temporary upload files left by stopped processes", freed)
    return freed


def _latest_change(folder: Path) -> float:
    times = [folder.stat().st_mtime]
    times += [f.stat().st_mtime for f in folder.rglob("*") if f.is_file()]
    return max(times)


# Who is sending a body


@database_sync_to_async
def _sender(headers: dict[bytes, bytes], address: str) -> tuple[int | None, float | None]:
    """The signed-in, active user of a request's headers (API token or session cookie), and
    the seconds to wait when the sender's address is past the ``bad_token`` rate. A wrong token
    counts here as at the API: refusing a body must not be a way to try tokens unthrottled."""
    authorization = headers.get(b"authorization", b"").decode("latin-1").split()
    if len(authorization) == 2 and authorization[0].lower() in ("token", "bearer"):
        guesses = BadTokenThrottle()
        if not guesses.allow_address(address):
            return None, guesses.wait() or 1.0
        token = (
            Token.objects.filter(key=authorization[1], user__is_active=True)
            .values_list("user_id", flat=True)
            .first()
        )
        if token is None:
            guesses.count_failure()
            return None, None
        return int(token), None
    cookies: SimpleCookie = SimpleCookie()
    try:
        cookies.load(headers.get(b"cookie", b"").decode("latin-1"))
    except Exception:  # a malformed cookie header authenticates nobody
        return None, None
    morsel = cookies.get(settings.SESSION_COOKIE_NAME)
    if morsel is None:
        return None, None
    session = import_module(settings.SESSION_ENGINE).SessionStore(morsel.value)
    user_id = session.get(SESSION_KEY)
    user = get_user_model().objects.filter(pk=user_id, is_active=True).first() if user_id else None
    if user is None or not constant_time_compare(
        session.get(HASH_SESSION_KEY, ""), user.get_session_auth_hash()
    ):
        return None, None
    return int(user.pk), None


class HubASGIHandler(ASGIHandler):
    """Django's ASGI handler with the body rules above."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal, allowance = await self._refusal(scope)
        client_shape = str(scope.get("path", "")).startswith(AIHUB)
        if refusal is not None:
            await _send_json(send, *refusal, detail=client_shape)
            return
        _body_allowance.set(allowance)
        try:
            await super().handle(scope, receive, send)
        except BodyTooLarge:
            await _send_json(send, 413, _too_large("The request body"), "file", client_shape)
        except OSError as error:  # the body's temporary file could not be written
            message = not_kept(error)
            if message is None:
                raise
            await _send_json(send, 507, message, "file", client_shape)

    async def _refusal(self, scope: Scope) -> tuple[tuple[int, str, str] | None, int]:
        """An answer that refuses the request before its body is read (or None), and how many
        body bytes it may then send."""
        headers = dict(scope.get("headers", []))
        # A body framed by chunks has no length until it ends; one with both framings is
        # smuggling, and is treated as the longer.
        framed_by_chunks = b"transfer-encoding" in headers
        length = headers.get(b"content-length")
        declared = (
            int(length)
            if length is not None and length.isdigit() and not framed_by_chunks
            else None
        )
        method = str(scope.get("method", ""))
        if method not in BODY_METHODS:
            if declared == 0 or (length is None and not framed_by_chunks):
                return None, 0
            # Answered before a byte of it is read, whoever sends it: no route reads one.
            return (400, f"A {method} request carries no body; send it without one.", ""), 0
        path = str(scope.get("path", ""))
        if path.startswith(SIGNED_UPLOADS):
            # The qai-hub client sends its files to signed addresses without a token: the
            # address is the credential, and says how many bytes it takes.
            token = path.removeprefix(SIGNED_UPLOADS).strip("/")
            allowed = await database_sync_to_async(signed_upload_allowance)(token)
            if allowed is None:
                return (403, "This upload address is not valid (expired or replaced).", ""), 0
            if declared is not None and declared > allowed:
                return (413, f"This upload address takes at most {allowed} bytes.", "file"), 0
            return None, allowed
        if declared is not None and declared <= ANONYMOUS_BODY_LIMIT:
            return None, ANONYMOUS_BODY_LIMIT
        user_id, wait = await _sender(headers, scope_address(scope))
        if wait is not None:
            message = (
                f"Too many wrong API tokens from this address; try again in {math.ceil(wait)} s."
            )
            return (429, message, ""), 0
        if user_id is None:  # first: a stranger learns nothing of the limits
            refusal = 401, "Sign in (or send an API token) before sending a large body.", ""
            return refusal, 0
        if declared is not None and declared > body_limit():
            return (413, _too_large("The request"), "file"), 0
        if headers.get(b"content-type", b"").startswith(b"multipart/form-data"):
            over = await database_sync_to_async(upload_refusal)(user_id, declared)
            if over is not None:  # refused before the file is read, not after
                return (429, over.message, over.quota), 0
        return None, body_limit()

    async def read_body(self, receive: Receive) -> IO[bytes]:
        """The body, spooled to this process's temporary folder past FILE_UPLOAD_MAX_MEMORY_SIZE,
        and never more than the limit: reading stops at the first byte past it."""
        body = tempfile.SpooledTemporaryFile(  # noqa: SIM115 (Django closes it with the request)
            max_size=settings.FILE_UPLOAD_MAX_MEMORY_SIZE, mode="w+b", dir=upload_temp_dir()
        )
        allowance = _body_allowance.get()
        size, limit = 0, body_limit() if allowance is None else allowance
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                body.close()
                raise RequestAborted()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                body.close()
                raise BodyTooLarge()
            body.write(chunk)
            if not message.get("more_body", False):
                break
        body.seek(0)
        return body


async def _send_json(
    send: Send, status: int, message: str, field: str, detail: bool = False
) -> None:
    """The hub's error shape; the qai-hub face's (``detail``) too where its client reads it."""
    shape: dict[str, Any] = {"message": message, "field": field, "errors": {}}
    if detail:
        shape["detail"] = message
    body = json.dumps(shape).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Token"))
    # The rest of the body is not read: tell the client the connection ends here.
    headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
