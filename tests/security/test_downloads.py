"""Downloads stream under uvicorn: a file many times larger than any buffer comes back in the same
bytes while the web process grows by a small part of its size, HEAD reads nothing, a client that
leaves half-way leaves no open file behind, and a job's log comes as text made while it is sent
(a real uvicorn server, as ./serve.sh and production run the hub)."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from django.db import transaction
from rest_framework.authtoken.models import Token

from aihub import transfers
from jobs.domain.joblog import append_lines, as_text
from jobs.models import Job, JobKind, MLModel, ModelFormat
from sharing.services import sharing_modify
from tests.security.conftest import LiveWeb
from tests.workers import wait_for

pytestmark = [pytest.mark.production, pytest.mark.django_db(transaction=True)]

MiB = 1024 * 1024
FILE_BYTES = 96 * MiB  # dozens of times the 1 MiB chunk and the server's socket buffers
# Generous: a download read whole first grows the process by at least the file's size.
GROWTH_AT_MOST = FILE_BYTES // 3


@pytest.fixture
def big_model(live_web: LiveWeb, alice) -> tuple[MLModel, str]:
    """A model of FILE_BYTES written straight into the live server's storage, and its sha256."""
    model = MLModel(owner=alice, name="big", format=ModelFormat.ONNX, size=FILE_BYTES)
    model.file.name = f"models/{model.public_id}/big.onnx"
    path = live_web.media / model.file.name
    path.parent.mkdir(parents=True)
    digest = hashlib.sha256()
    with path.open("wb") as out:
        for _ in range(FILE_BYTES // MiB):
            chunk = os.urandom(MiB)
            digest.update(chunk)
            out.write(chunk)
    model.sha256 = digest.hexdigest()
    model.save()
    return model, model.sha256


def headers_of(user) -> dict[str, str]:
    return {"Authorization": f"Token {Token.objects.get_or_create(user=user)[0].key}"}


class PeakMemory:
    """The web process's peak resident memory over what it held when watching began: Linux's
    VmHWM reset through clear_refs, or sampled where that cannot be written."""

    def __init__(self, pid: int) -> None:
        self.status = Path(f"/proc/{pid}/status")
        self.clear_refs = Path(f"/proc/{pid}/clear_refs")

    def _field(self, name: str) -> int:
        line = next(x for x in self.status.read_text().splitlines() if x.startswith(name + ":"))
        return int(line.split()[1]) * 1024

    def growth_during(self, action) -> int:
        before = self._field("VmRSS")
        try:
            self.clear_refs.write_text("5")
            exact = True
        except OSError:
            exact = False
        sampled, stop = [before], threading.Event()

        def sample() -> None:
            while not stop.wait(0.005):
                sampled.append(self._field("VmRSS"))

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            action()
        finally:
            stop.set()
            sampler.join()
        peak = max(max(sampled), self._field("VmHWM") if exact else 0)
        return peak - before


def download(url: str, headers: dict[str, str]) -> tuple[httpx.Headers, str, int]:
    """(headers, sha256, bytes) of a download read 1 MiB at a time."""
    digest, size = hashlib.sha256(), 0
    with httpx.stream("GET", url, headers=headers, timeout=120) as answer:
        assert answer.status_code == 200, answer.read()[:300]
        for chunk in answer.iter_bytes(MiB):
            digest.update(chunk)
            size += len(chunk)
        return answer.headers, digest.hexdigest(), size


def test_a_large_download_streams_without_the_server_holding_it(live_web, alice, big_model):
    model, sha256 = big_model
    url = f"{live_web.url}/api/v1/models/{model.public_id}/download/"
    # The server's first request imports what answering needs (tens of MiB): made by a HEAD,
    # which reads none of the file, so what is measured is the downloads.
    assert httpx.head(url, headers=headers_of(alice), timeout=30).status_code == 200
    memory = PeakMemory(live_web.process.pid)
    got: list[tuple[httpx.Headers, str, int]] = []
    for _ in range(3):
        growth = memory.growth_during(lambda: got.append(download(url, headers_of(alice))))
        assert growth < GROWTH_AT_MOST, f"the web process grew by {growth / MiB:.1f} MiB"
    for headers, digest, size in got:
        assert (digest, size) == (sha256, FILE_BYTES)
        assert headers["content-length"] == str(FILE_BYTES)
        assert headers["content-type"] == "application/octet-stream"
        assert headers["content-disposition"] == 'attachment; filename="big.onnx"'
    assert not read_whole_warnings(live_web)


def read_whole_warnings(web: LiveWeb) -> list[str]:
    """Django's warning that it read a streaming body whole before sending it."""
    return [line for line in web.reader.lines if "must consume synchronous iterators" in line]


def test_a_shared_reader_downloads_the_same_bytes_and_a_stranger_gets_nothing(
    live_web, alice, bob, charlie, big_model
):
    model, sha256 = big_model
    sharing_modify(target=model, actor=alice, add_emails=[bob.email])
    url = f"{live_web.url}/api/v1/models/{model.public_id}/download/"
    assert download(url, headers_of(bob))[1:] == (sha256, FILE_BYTES)
    refused = httpx.get(url, headers=headers_of(charlie), timeout=30)
    assert refused.status_code == 404
    assert len(refused.content) < 4096


def test_head_gives_the_download_headers_without_a_body(live_web, alice, charlie, big_model):
    model, _ = big_model
    url = f"{live_web.url}/api/v1/models/{model.public_id}/download/"
    answer = httpx.head(url, headers=headers_of(alice), timeout=30)
    assert answer.status_code == 200
    assert answer.headers["content-length"] == str(FILE_BYTES)
    assert answer.headers["content-disposition"] == 'attachment; filename="big.onnx"'
    assert answer.content == b""
    assert httpx.head(url, headers=headers_of(charlie), timeout=30).status_code == 404


def open_handles(pid: int, path: Path) -> int:
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            count += os.readlink(fd) == str(path)
        except OSError:
            continue  # closed meanwhile
    return count


def test_a_client_that_leaves_half_way_leaves_no_open_file(live_web, alice, big_model):
    model, _ = big_model
    path = live_web.media / model.file.name
    url = f"{live_web.url}/api/v1/models/{model.public_id}/download/"
    with httpx.stream("GET", url, headers=headers_of(alice), timeout=30) as answer:
        first = next(answer.iter_bytes(MiB))
        assert first
        assert open_handles(live_web.process.pid, path) == 1  # being read as we leave
    wait_for(
        lambda: open_handles(live_web.process.pid, path) == 0, 20, "the server to close the file"
    )
    # And it still serves the next one whole.
    assert download(url, headers_of(alice))[1:] == (model.sha256, FILE_BYTES)


@pytest.fixture
def long_log(alice) -> Job:
    """A job of alice's whose log is a few MiB of lines."""
    job = Job.objects.create(kind=JobKind.LINK, owner=alice, name="chatty")
    now = datetime.now(UTC)
    for batch in range(6):
        with transaction.atomic():
            append_lines(job, [(now, "info", f"{batch}.{n} " + "x" * 400) for n in range(2000)])
    return job


def signed_log_url(web: LiveWeb, job: Job, user) -> str:
    return f"{web.url}/aihub/files/{transfers.download_token('log', job.public_id, user.pk)}/"


def text_of(url: str) -> Iterator[bytes]:
    with httpx.stream("GET", url, timeout=60) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "text/plain; charset=utf-8"
        assert answer.headers["content-disposition"].startswith("attachment; filename=")
        yield from answer.iter_bytes()


def test_a_jobs_log_streams_as_text_through_its_signed_address(live_web, alice, bob, long_log):
    expected = "".join(as_text(long_log)).encode()
    assert len(expected) > 4 * MiB
    assert b"".join(text_of(signed_log_url(live_web, long_log, alice))) == expected
    assert not read_whole_warnings(live_web)
    # An address made for someone who may not read the job gives nothing.
    refused = httpx.get(signed_log_url(live_web, long_log, bob), timeout=30)
    assert refused.status_code == 404
    assert b"NoSuchKey" in refused.content
