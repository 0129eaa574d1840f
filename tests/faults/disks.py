"""Small disks that a fault test mounts, fills, and turns read-only itself: a tmpfs of a few
megabytes, so that "the disk is full" is the kernel's real ENOSPC and "read-only" its EROFS."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest


class SmallDisk:
    def __init__(self, path: Path, megabytes: int) -> None:
        self.path, self.megabytes = path, megabytes

    def mount(self) -> None:
        if os.geteuid() != 0:
            pytest.skip("mounting a small disk needs root (CI runs as root)")
        self.path.mkdir(parents=True, exist_ok=True)
        size = f"size={self.megabytes}m"
        subprocess.run(["mount", "-t", "tmpfs", "-o", size, "tmpfs", str(self.path)], check=True)

    def unmount(self) -> None:
        subprocess.run(["umount", "--lazy", str(self.path)], check=False)

    def fill(self, leave: int = 0) -> int:
        """Write a ballast file until only ``leave`` bytes are free (or the kernel says the
        disk is full); its size."""
        room = shutil.disk_usage(self.path).free - leave
        written = 0
        with contextlib.suppress(OSError), (self.path / "ballast").open("ab") as out:
            while written < room:
                chunk = min(65536, room - written)
                out.write(b"\0" * chunk)
                out.flush()
                written += chunk
        return written

    def read_only(self) -> None:
        subprocess.run(["mount", "-o", "remount,ro", str(self.path)], check=True)

    def files(self) -> dict[str, int]:
        """Every file on the disk (relative path → size), ballast aside."""
        return {
            str(f.relative_to(self.path)): f.stat().st_size
            for f in self.path.rglob("*")
            if f.is_file() and f.name != "ballast"
        }
