"""The disk's faults, told apart from other errors: no space left, or no writing allowed.

A job whose outputs cannot be stored fails as ``storage_full`` or ``storage_unavailable`` (the
hub's fault, said plainly), not as ``internal_error``; an upload gets a 507. Django-free, so that
the training processes (jobs.engine.training) classify their own errors too.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
UNWRITABLE = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})

STORAGE_FULL = "storage_full"
STORAGE_UNAVAILABLE = "storage_unavailable"


def _chain(error: BaseException | None) -> Iterator[BaseException]:
    """An error and those it was raised from or during (a library often wraps the one that
    matters), each once."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def _said(error: BaseException, codes: frozenset[int]) -> bool:
    """An OSError with one of ``codes`` in the chain, or a library's error that quotes the
    system's words for one (safetensors' and torch's writers wrap it in their own)."""
    texts = [os.strerror(code) for code in codes]
    return any(
        (isinstance(e, OSError) and e.errno in codes) or any(text in str(e) for text in texts)
        for e in _chain(error)
    )


def os_error_text(error: BaseException) -> str:
    """The system's words for a disk fault (``ENOSPC: No space left on device``), without the
    server path an OSError names."""
    for e in _chain(error):
        if isinstance(e, OSError) and e.errno is not None:
            return f"{errno.errorcode.get(e.errno, e.errno)}: {e.strerror}"
    return type(error).__name__


def disk_full(error: BaseException) -> bool:
    """No space left (or the quota reached) on the disk being written."""
    return _said(error, DISK_FULL)


def unwritable(error: BaseException) -> bool:
    """The disk refuses writes: mounted read-only, or not the hub's to write."""
    return _said(error, UNWRITABLE)


def nearly_full(*paths: str | Path, below: int = 1 << 20) -> bool:
    """Some of these folders' disks have less than ``below`` bytes free: what a writer that
    reports "write failed" without saying why (torch.save) most likely met."""
    return any(free_bytes(path) < below for path in paths)


def storage_fault(error: BaseException, *written: str | Path) -> tuple[str, str] | None:
    """(failure type, message for the job's owner) when ``error`` is the disk's fault (or, for
    an error that does not say, when a disk of the ``written`` folders is full now). The message
    names no server path: what the owner needs is what happened and what to do."""
    if disk_full(error) or (written and nearly_full(*written)):
        return STORAGE_FULL, (
            "The hub's storage is full: this job's files could not be written, and no partial "
            "file was kept. Resubmit it once the hub's operator has freed space."
        )
    if unwritable(error):
        return STORAGE_UNAVAILABLE, (
            "The hub's storage refused a write (it is read-only or not writable by the hub): "
            "this job's files could not be written. Resubmit it once the hub's operator has "
            "fixed the storage."
        )
    return None


def not_kept(error: BaseException) -> str | None:
    """What a request is told when the media disk refused what it sent (a 507), or None."""
    if disk_full(error):
        return "The hub's storage is full; nothing was kept. Try again once its operator has freed space."
    if unwritable(error):
        return "The hub's storage refused the write; nothing was kept. Tell the hub's operator."
    return None


def free_bytes(path: str | Path) -> int:
    """Free space for the hub on the file system holding ``path`` (its nearest existing
    folder)."""
    folder = Path(path)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free


def size_text(size: int) -> str:
    """Bytes as the pages show them: 512 B, 3.4 MiB, 1.2 GiB."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
