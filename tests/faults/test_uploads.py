"""A web process dies mid-upload (SIGKILL): what it had received stays on the media disk, in the
process's own temporary folder, until the next web process starts and sweeps the folders of
processes that are gone (hubsite.uploads.sweep_upload_temp_files). Real uvicorn processes."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pytest
from rest_framework.authtoken.models import Token

from jobs.demo import numbers_dataset
from tests.security.conftest import start_web, stop_web
from tests.workers import wait_for

pytestmark = [pytest.mark.production, pytest.mark.django_db(transaction=True)]


def _named_temp_files(folder: Path) -> dict[str, int]:
    if not folder.is_dir():
        return {}
    return {f.name: f.stat().st_size for f in folder.iterdir() if f.is_file()}


def test_a_web_process_killed_mid_upload_leaves_files_that_the_next_one_sweeps(
    alice, tmp_path, figures
):
    media, data = tmp_path / "media", tmp_path / "data"
    token = Token.objects.create(user=alice).key
    body = numbers_dataset(0, 1999) * 250  # ~30 MB: checked line by line after it is received
    boundary = "hub-fault-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.jsonl"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    payload = head + body + f"\r\n--{boundary}--\r\n".encode()

    first = start_web(media, data, HUB_MAX_UPLOAD_BYTES=str(64 * 1024 * 1024))
    folder = media / ".uploads" / f"{socket.gethostname()}-{first.process.pid}"
    try:
        with socket.create_connection(("127.0.0.1", first.port)) as conn:
            conn.sendall(
                (
                    "POST /api/v1/datasets/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    f"Authorization: Token {token}\r\n"
                    f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                    f"Content-Length: {len(payload)}\r\n\r\n"
                ).encode()
                + payload
            )
            # The received file is named in the process's folder while the hub checks it.
            wait_for(lambda: _named_temp_files(folder), 60, "the upload's temporary file", 0.002)
            os.kill(first.process.pid, signal.SIGKILL)
            first.process.wait()
    finally:
        stop_web(first)
    left = _named_temp_files(folder)
    left_bytes = sum(left.values())
    assert left_bytes > 0, "the killed process left nothing to sweep: the test caught nothing"

    started = time.monotonic()
    second = start_web(media, data)
    try:
        assert not folder.exists(), f"still there after a new web process started: {left}"
        swept = time.monotonic() - started
    finally:
        stop_web(second)
    figures.record(
        fault="web process SIGKILLed while it checked an upload",
        in_flight=f"1 upload of {len(payload) / 1e6:.0f} MB", lost=0, duplicated=0,
        recovery_s=round(swept, 2),
        note=f"{left_bytes / 1e6:.1f} MB of temporary files left, swept when the next web process started",
    )  # fmt: skip
