"""Upload limits hold however a body arrives, nothing past the limit is read, and the sender
must be signed in before a large body is read at all (a real uvicorn server, raw sockets)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import httpx
import pytest
from rest_framework.authtoken.models import Token

from tests.security.conftest import UPLOAD_LIMIT, LiveWeb, raw_request, start_web, stop_web

pytestmark = [pytest.mark.production, pytest.mark.django_db(transaction=True)]

MiB = 1024 * 1024
# Past the limit, the server may still have taken what the kernel's socket buffers hold; it must
# not take the tens of megabytes a client offers.
READ_PAST_LIMIT_AT_MOST = 16 * MiB


def chunked(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    """A body in HTTP/1.1 chunked transfer encoding (no Content-Length)."""
    for _ in range(total // size):
        yield f"{size:x}\r\n".encode() + b"x" * size + b"\r\n"
    yield b"0\r\n\r\n"


def plain(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    for _ in range(total // size):
        yield b"x" * size


def head(path: str, token: str | None, length: int | None = None, **headers: str) -> str:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines.append("Content-Type: application/octet-stream")
    lines.append(
        f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    )
    if token:
        lines.append(f"Authorization: Token {token}")
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return "\r\n".join(lines) + "\r\n\r\n"


@pytest.fixture
def token(alice) -> str:
    return Token.objects.get_or_create(user=alice)[0].key


def temp_bytes(web: LiveWeb) -> int:
    root = web.upload_temp_root
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) if root.exists() else 0


@pytest.mark.parametrize("path", ["/api/v1/models/", "/api/v1/datasets/", "/jobs/upload/model/"])
def test_a_chunked_upload_past_the_limit_is_refused_while_it_arrives(live_web, token, path):
    status, taken = raw_request(live_web.port, head(path, token), chunked(64 * MiB))
    assert status == 413
    assert taken < UPLOAD_LIMIT + READ_PAST_LIMIT_AT_MOST
    assert temp_bytes(live_web) == 0


def test_a_declared_length_past_the_limit_is_refused_before_the_body(live_web, token):
    status, taken = raw_request(
        live_web.port, head("/api/v1/models/", token, length=700 * MiB), plain(700 * MiB)
    )
    assert status == 413
    assert taken < READ_PAST_LIMIT_AT_MOST


@pytest.mark.parametrize("length", [None, 700 * MiB, 200 * 1024])
def test_an_anonymous_large_body_is_refused_before_it_is_read(live_web, db, length):
    body = chunked(700 * MiB) if length is None else plain(length)
    status, taken = raw_request(live_web.port, head("/api/v1/models/", None, length=length), body)
    assert status == 401
    assert taken < READ_PAST_LIMIT_AT_MOST
    assert temp_bytes(live_web) == 0


def test_a_bad_token_counts_as_anonymous(live_web, db):
    status, _ = raw_request(live_web.port, head("/api/v1/models/", "not-a-token"), chunked(8 * MiB))
    assert status == 401


def test_a_body_within_the_limit_from_a_signed_in_person_is_stored(live_web, token):
    from jobs.demo import tiny_mlp_onnx

    response = httpx.post(
        f"{live_web.url}/api/v1/models/",
        headers={"Authorization": f"Token {token}"},
        files={"file": ("mlp.onnx", tiny_mlp_onnx(name="mlp", seed=1))},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    assert temp_bytes(live_web) == 0


def test_a_multipart_file_past_the_limit_within_the_body_margin_is_refused(live_web, token):
    """The body fits the limit plus the form's margin, the file itself does not."""
    response = httpx.post(
        f"{live_web.url}/api/v1/datasets/",
        headers={"Authorization": f"Token {token}"},
        files={"file": ("big.jsonl", b"x" * (UPLOAD_LIMIT + 1000))},
        timeout=30,
    )
    assert response.status_code == 400
    assert "upload limit" in response.json()["message"]
    assert temp_bytes(live_web) == 0


def test_a_web_process_sweeps_what_a_killed_one_left_when_it_starts(db, tmp_path):
    """A folder of temporary files of a process of this host that is gone is removed at start;
    a live process's folder is kept."""
    media, data = tmp_path / "media", tmp_path / "data"
    host = socket.gethostname()
    dead = media / ".uploads" / f"{host}-{_a_dead_pid()}"
    live = media / ".uploads" / f"{host}-{os.getpid()}"
    for folder in (dead, live):
        folder.mkdir(parents=True)
        (folder / "tmpabc.upload.onnx").write_bytes(b"x" * MiB)
    web = start_web(media, data)
    try:
        assert not dead.exists()
        assert (live / "tmpabc.upload.onnx").exists()
    finally:
        stop_web(web)


def _a_dead_pid() -> int:
    pid = 4_000_000  # above any default pid_max, so no process has it
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        pid += 1


def test_an_upload_past_a_quota_is_refused_before_its_body_is_read(alice, tmp_path, token):
    web = start_web(
        tmp_path / "media",
        tmp_path / "data",
        HUB_QUOTA_STORAGE_BYTES=str(10 * MiB),
        HUB_MAX_UPLOAD_BYTES=str(256 * MiB),
    )
    try:
        request = head(
            "/api/v1/models/",
            token,
            length=200 * MiB,
            Content_Type="multipart/form-data; boundary=x",
        ).replace("Content-Type: application/octet-stream\r\n", "")
        status, taken = raw_request(web.port, request, plain(200 * MiB))
    finally:
        stop_web(web)
    assert status == 429
    assert taken < READ_PAST_LIMIT_AT_MOST
