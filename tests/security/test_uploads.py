"""Upload limits hold however a body arrives, nothing past the limit is read, and the sender
must be signed in before a large body is read at all (a real uvicorn server, raw sockets)."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import uuid
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


# Bodies where none belongs, and bodies of strangers: nothing reaches the disk, the answer comes
# before the body is read. This web process takes large uploads (256 MiB), so that only the rules
# for strangers and for body-less methods can stop what is offered here.

OFFERED = 64 * MiB
BODYLESS = ["GET", "OPTIONS", "HEAD", "DELETE"]


@pytest.fixture(scope="module")
def roomy_web(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[LiveWeb]:
    from tests.conftest import _missing_services

    with django_db_blocker.unblock():
        missing = _missing_services()
    if missing:
        pytest.skip(missing)
    web = start_web(
        tmp_path_factory.mktemp("roomy-media"),
        tmp_path_factory.mktemp("roomy-data"),
        HUB_MAX_UPLOAD_BYTES=str(256 * MiB),
    )
    try:
        yield web
    finally:
        stop_web(web)


def request_head(method: str, path: str, credential: str | None, length: int | None) -> str:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    lines.append(
        f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    )
    if credential:
        lines.append(f"Authorization: {credential}")
    return "\r\n".join(lines) + "\r\n\r\n"


class DiskWatch:
    """Looks at the web process's temporary upload folder and media folder between the chunks a
    client sends: the most bytes ever found there while the body was on its way."""

    def __init__(self, web: LiveWeb) -> None:
        self.web, self.most = web, 0

    def sending(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        for n, chunk in enumerate(chunks):
            if n % 16 == 0:
                self.most = max(self.most, self.bytes_on_disk())
            yield chunk
        self.most = max(self.most, self.bytes_on_disk())

    def bytes_on_disk(self) -> int:
        found = 0
        for f in self.web.media.rglob("*"):
            with contextlib.suppress(FileNotFoundError):  # removed while we looked
                found += f.stat().st_size if f.is_file() else 0
        return found


def offered(length: int | None) -> Iterator[bytes]:
    return chunked(OFFERED) if length is None else plain(OFFERED)


@pytest.mark.parametrize("framing", ["chunked", "length"])
@pytest.mark.parametrize("credential", [None, "Token not-a-token", "signed-in"])
@pytest.mark.parametrize("method", BODYLESS)
def test_a_body_on_a_method_that_takes_none_is_refused_unread(
    roomy_web, token, method, credential, framing
):
    """GET, OPTIONS, HEAD and DELETE take no body on the hub: one is refused (400, whoever sends
    it) before a byte of it is read, and nothing of it is written anywhere."""
    credential = f"Token {token}" if credential == "signed-in" else credential
    length = OFFERED if framing == "length" else None
    watch = DiskWatch(roomy_web)
    request = request_head(method, "/api/v1/models/", credential, length)
    status, taken = raw_request(roomy_web.port, request, watch.sending(offered(length)))
    assert status == 400
    assert taken < READ_PAST_LIMIT_AT_MOST
    assert watch.most == 0


def test_a_body_on_a_get_is_answered_with_what_is_wrong(live_web, db):
    with socket.create_connection(("127.0.0.1", live_web.port), timeout=10) as sock:
        sock.sendall(request_head("GET", "/jobs/", None, 5).encode() + b"hello")
        answer = b""
        while b"}" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    assert answer.startswith(b"HTTP/1.1 400")
    assert b"A GET request carries no body" in answer
    assert b"connection: close" in answer.lower()


@pytest.mark.parametrize("framing", ["chunked", "length"])
@pytest.mark.parametrize("credential", [None, "Token not-a-token", "Bearer not-a-token"])
@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
def test_a_strangers_body_never_reaches_the_disk(roomy_web, db, method, credential, framing):
    length = OFFERED if framing == "length" else None
    watch = DiskWatch(roomy_web)
    request = request_head(method, "/api/v1/models/", credential, length)
    status, taken = raw_request(roomy_web.port, request, watch.sending(offered(length)))
    assert status == 401
    assert taken < READ_PAST_LIMIT_AT_MOST
    assert watch.most == 0


def test_many_strangers_bodies_at_once_leave_the_disk_empty(roomy_web, db):
    """Twenty at once, each offering 64 MiB by each way and method the hub once took them in."""
    kinds = [
        (m, length) for m in ("GET", "OPTIONS", "POST", "DELETE") for length in (None, OFFERED)
    ]
    watch = DiskWatch(roomy_web)
    results: list[tuple[int, int]] = []

    def one(n: int) -> None:
        method, length = kinds[n % len(kinds)]
        request = request_head(method, "/api/v1/datasets/", None, length)
        results.append(raw_request(roomy_web.port, request, watch.sending(offered(length))))

    threads = [threading.Thread(target=one, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 20
    assert all(status in (400, 401) for status, _ in results), results
    assert all(taken < READ_PAST_LIMIT_AT_MOST for _, taken in results), results
    assert watch.most == 0


def test_wrong_tokens_at_the_body_gate_count_as_at_the_api(tmp_path, db):
    """Refusing a large body checks its token: that must not be a way to try tokens unthrottled."""
    web = start_web(
        tmp_path / "media",
        tmp_path / "data",
        HUB_API_RATE_BAD_TOKEN="3/minute",
        HUB_NAMESPACE=f"hub-test-guesses-{uuid.uuid4().hex[:8]}",
    )
    try:
        statuses = [
            raw_request(web.port, head("/api/v1/models/", f"{n:040x}"), chunked(8 * MiB))[0]
            for n in range(5)
        ]
    finally:
        stop_web(web)
    assert statuses == [401, 401, 401, 429, 429]


# Signed upload addresses (the qai-hub face): no token, the address is the credential


def _signed_part(owner, part_bytes: int, parts: int = 3) -> str:
    from aihub import transfers
    from aihub.models import Transfer

    transfer = Transfer.objects.create(
        owner=owner, kind="model", name="m.onnx", size=parts * part_bytes, part_size=part_bytes
    )
    transfers.new_upload_id(transfer)
    return f"/aihub/transfers/{transfers.upload_token(transfer, 1)}/"


def put_head(path: str, length: int | None) -> str:
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{framing}\r\n\r\n"


def test_a_signed_part_address_takes_its_part_from_anyone_holding_it(live_web, alice):
    path = _signed_part(alice, 256 * 1024)
    response = httpx.put(f"{live_web.url}{path}", content=b"x" * 256 * 1024, timeout=30)
    assert response.status_code == 200 and response.headers["ETag"].startswith('"')


@pytest.mark.parametrize("length", [None, 700 * MiB])
def test_a_signed_part_address_reads_no_more_than_its_part(live_web, alice, length):
    path = _signed_part(alice, 256 * 1024)
    body = chunked(64 * MiB) if length is None else plain(length)
    status, taken = raw_request(live_web.port, put_head(path, length), body)
    assert status == 413
    assert taken < READ_PAST_LIMIT_AT_MOST
    assert temp_bytes(live_web) == 0


def test_a_forged_upload_address_is_refused_before_its_body(live_web, alice):
    path = _signed_part(alice, 256 * 1024)
    forged = path.replace("/aihub/transfers/", "/aihub/transfers/x")
    status, taken = raw_request(live_web.port, put_head(forged, 700 * MiB), plain(700 * MiB))
    assert status == 403
    assert taken < READ_PAST_LIMIT_AT_MOST
