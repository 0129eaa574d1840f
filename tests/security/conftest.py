"""A web process of the hub served by uvicorn over real HTTP, for attacks that only a real
server shows (request bodies arrive as the network sends them, headers as a browser sends them).
It uses the test database, so people made by a test (with transaction=True) can sign in."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import ROOT, LineReader, free_port
from tests.workers import READY_TIMEOUT, _database_url

UPLOAD_LIMIT = 1024 * 1024  # small, so the attacks send megabytes rather than gigabytes


@dataclass
class LiveWeb:
    url: str
    port: int
    media: Path
    process: subprocess.Popen[str]
    reader: LineReader

    @property
    def upload_temp_root(self) -> Path:
        return self.media / ".uploads"


def start_web(media: Path, data: Path, **extra: str) -> LiveWeb:
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "hubsite.settings.base",
        "PYTHONUNBUFFERED": "1",
        "DATABASE_URL": _database_url(),
        "HUB_MEDIA_ROOT": str(media),
        "HUB_DATA_DIR": str(data),
        "HUB_BASE_URL": f"http://127.0.0.1:{port}",
        "HUB_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT),
        **extra,
    }
    command = [sys.executable, "-m", "uvicorn", "hubsite.asgi:application"]
    # As the README serves it: the hub, not uvicorn, decides whom X-Forwarded-For is believed
    # from (hubsite/client_address.py).
    command += ["--port", str(port), "--lifespan", "off", "--no-proxy-headers"]
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    reader = LineReader(process)
    reader.wait_for("Uvicorn running", READY_TIMEOUT)
    return LiveWeb(f"http://127.0.0.1:{port}", port, media, process, reader)


def stop_web(web: LiveWeb) -> None:
    web.process.terminate()
    try:
        web.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        web.process.kill()
        web.process.wait()


@pytest.fixture(scope="module")
def web_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return tmp_path_factory.mktemp("web-media"), tmp_path_factory.mktemp("web-data")


@pytest.fixture(scope="module")
def live_web(
    django_db_setup: None, django_db_blocker: object, web_dirs: tuple[Path, Path]
) -> Iterator[LiveWeb]:
    from tests.conftest import _missing_services

    with django_db_blocker.unblock():  # type: ignore[attr-defined]
        missing = _missing_services()
    if missing:
        pytest.skip(missing)
    web = start_web(*web_dirs)
    try:
        yield web
    finally:
        stop_web(web)


def raw_request(port: int, head: str, body_chunks: Iterable[bytes]) -> tuple[int, int]:
    """Send a request as bytes on a socket: the head, then the body chunks until the server
    answers or stops reading. Returns (status, body bytes the server took before answering)."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode("latin-1"))
        sock.setblocking(False)
        answer = b""
        for chunk in body_chunks:
            answer += _read_available(sock)
            if answer:
                break
            try:
                sock.settimeout(5)
                sock.sendall(chunk)
                sent += len(chunk)
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                break
        sock.settimeout(10)
        while b"\r\n" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0
    return status, sent


def _read_available(sock: socket.socket) -> bytes:
    sock.setblocking(False)
    try:
        return sock.recv(65536)
    except (BlockingIOError, InterruptedError):
        return b""
    except ConnectionResetError:
        return b""
