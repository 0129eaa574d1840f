"""Fixtures of the fault suite: private servers to break (servers.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.disks import SmallDisk
from tests.faults.servers import PrivateRedis


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    """A 16 MB media disk (tmpfs) that the test may fill or turn read-only."""
    disk = SmallDisk(tmp_path / "disk", megabytes=16)
    disk.mount()
    try:
        yield disk
    finally:
        disk.unmount()


class Figures:
    """What a fault test measured (faults injected, work in flight, lost, duplicated, time to
    recover), appended as a JSON line to $HUB_FAULT_REPORT when set (scripts/reliability-report
    renders them into docs/reliability.md); nothing is written otherwise."""

    def __init__(self, test: str) -> None:
        self.test = test

    def record(self, **figures: object) -> None:
        import json
        import os

        path = os.environ.get("HUB_FAULT_REPORT")
        if path:
            with open(path, "a") as out:
                out.write(json.dumps({"test": self.test, **figures}) + "\n")


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Figures:
    return Figures(request.node.name)
