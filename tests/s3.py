"""A real S3 API server on loopback for the object-storage tests: moto's standalone server (the
one known to install here), reached through a gate the tests can close, so that an outage of
the storage is real to the hub (connections refused) while the server keeps what it holds.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import free_port

ACCESS_KEY, SECRET_KEY, REGION = "hub-test", "hub-test-secret", "us-east-1"
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")  # no instance role to look for here


class S3Server:
    """``moto_server`` on a free loopback port."""

    def __init__(self, logs: Path) -> None:
        self.port = free_port()
        self.logs = logs
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = shutil.which("moto_server", path=str(Path(sys.executable).parent))
        assert binary, "moto_server is not installed (pyproject's dev extras install moto[server])"
        log = (self.logs / "moto.log").open("ab")
        self.process = subprocess.Popen(
            [binary, "-H", "127.0.0.1", "-p", str(self.port)], stdout=log, stderr=log
        )
        deadline = time.monotonic() + 60
        while not self.answers():
            assert self.process.poll() is None, "moto_server exited: see its log"
            assert time.monotonic() < deadline, "moto_server did not start"
            time.sleep(0.05)

    def answers(self) -> bool:
        import httpx

        try:
            return httpx.get(self.url + "/moto-api/", timeout=1).status_code < 500
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=20)


class Gate:
    """A TCP relay from its own port to the server: ``close`` refuses new connections and cuts
    those open (the storage is down for the hub), ``open`` lets them through again."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.server: asyncio.base_events.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        threading.Thread(target=self.loop.run_forever, daemon=True, name="s3-gate").start()
        self.open()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=20)

    def open(self) -> None:
        if self.server is None:
            self.server = self._call(
                asyncio.start_server(self._relay, "127.0.0.1", self.port, reuse_address=True)
            )

    def close(self) -> None:
        async def shut() -> None:
            assert self.server is not None
            self.server.close()
            for writer in list(self.writers):
                writer.transport.abort()
            await self.server.wait_closed()

        if self.server is not None:
            self._call(shut())
            self.server = None

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self.writers |= {writer, up_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while chunk := await source.read(65536):
                    sink.write(chunk)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.close()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            self.writers -= {writer, up_writer}


class Bucket:
    """One test's bucket, reached through the gate."""

    def __init__(self, gate: Gate, name: str, prefix: str = "hub") -> None:
        self.gate, self.name, self.prefix = gate, name, prefix

    @property
    def storage_url(self) -> str:
        return f"s3://{self.name}/{self.prefix}"

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.gate.url,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
        )

    def keys(self, under: str = "") -> dict[str, int]:
        """{name under the prefix: size} of what the bucket holds."""
        pages = self.client().get_paginator("list_objects_v2")
        found: dict[str, int] = {}
        for page in pages.paginate(Bucket=self.name, Prefix=f"{self.prefix}/{under}"):
            for item in page.get("Contents", []):
                found[item["Key"].removeprefix(f"{self.prefix}/")] = int(item["Size"])
        return found

    def env(self) -> dict[str, str]:
        """What a hub process is started with to keep its files here."""
        return {
            "HUB_STORAGE_URL": self.storage_url,
            "HUB_S3_ENDPOINT_URL": self.gate.url,
            "HUB_S3_REGION": REGION,
            "HUB_S3_ACCESS_KEY_ID": ACCESS_KEY,
            "HUB_S3_SECRET_ACCESS_KEY": SECRET_KEY,
            "HUB_S3_TIMEOUT_SECONDS": "2",
        }

    def storages(self) -> dict[str, Any]:
        """The STORAGES setting of a process that keeps its files here."""
        from hubsite.settings.storage import options_from_url

        return {
            "default": {
                "BACKEND": "hubsite.object_storage.ObjectStorage",
                "OPTIONS": options_from_url(
                    self.storage_url,
                    endpoint_url=self.gate.url,
                    region=REGION,
                    access_key=ACCESS_KEY,
                    secret_key=SECRET_KEY,
                    addressing_style=None,
                    timeout=2,
                    expire_seconds=300,
                ),
            },
            "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
        }

    @contextmanager
    def down(self) -> Iterator[None]:
        """The storage unreachable for the duration (what it holds is kept)."""
        self.gate.close()
        try:
            yield
        finally:
            self.gate.open()


@pytest.fixture(scope="session")
def s3_gate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gate]:
    server = S3Server(tmp_path_factory.mktemp("moto"))
    server.start()
    gate = Gate(server.port)
    try:
        yield gate
    finally:
        gate.close()
        server.stop()


def new_bucket(gate: Gate) -> Bucket:
    bucket = Bucket(gate, f"hub-{uuid.uuid4().hex[:12]}")
    bucket.client().create_bucket(Bucket=bucket.name)
    return bucket


@pytest.fixture
def bucket(s3_gate: Gate, settings: Any, tmp_path: Path) -> Iterator[Bucket]:
    """This test's files in a bucket of its own: the hub's storage is object storage, and the
    worker code run here keeps its copies in a scratch folder of the test's."""
    made = new_bucket(s3_gate)
    settings.STORAGES = made.storages()
    settings.HUB_SCRATCH_DIR = str(tmp_path / "scratch")
    yield made
    s3_gate.open()


__all__ = ["Bucket", "Gate", "S3Server", "bucket", "new_bucket", "s3_gate"]
