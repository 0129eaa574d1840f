"""A canary file that tells whether anything opened it: an inotify watch (Linux) on the file
sees every open by any process, whatever language opened it (safetensors and tokenizers open
files from Rust, where Python's audit hooks see nothing)."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

IN_OPEN = 0x20
IN_NONBLOCK = 0o4000


class Canary:
    """``path`` holds ``data``; ``opened()`` says whether anything has opened it since."""

    def __init__(self, path: Path, data: bytes) -> None:
        self.path = path
        path.write_bytes(data)
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._fd = self._libc.inotify_init1(IN_NONBLOCK)
        if self._fd < 0 or self._libc.inotify_add_watch(self._fd, bytes(path), IN_OPEN) < 0:
            raise OSError(ctypes.get_errno(), "inotify is not available")

    def opened(self) -> bool:
        # An open queues its event before open() returns: nothing to wait for.
        try:
            return bool(os.read(self._fd, 4096))
        except BlockingIOError:
            return False

    def close(self) -> None:
        os.close(self._fd)
