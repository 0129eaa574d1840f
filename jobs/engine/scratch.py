"""A worker's local copies of stored files: what a job reads (a base model, a dataset, a model to
link) as a path on this host's disk, whichever storage holds it.

On the local media folder a stored file already is a path. In object storage
(hubsite/object_storage.py) it is fetched into ``HUB_SCRATCH_DIR`` on first use and kept there for
the next job that reads it, up to ``HUB_SCRATCH_BYTES``, the least recently used evicted first.
A copy is kept under the file's name in a folder named after the object's ETag, so a file deleted and stored again under
the same name is never read stale; it is fetched aside and renamed into place, so a copy is whole
or absent. Every process on the host may share the folder: a copy in use holds a shared lock
(``flock``) until the job ends (``release``), and eviction passes over any copy it cannot lock
exclusively.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from django.conf import settings
from django.db.models.fields.files import FieldFile

from hubsite.object_storage import ObjectStorage, is_remote

logger = logging.getLogger(__name__)

# Descriptors of the copies this process's current job reads, each holding a shared lock.
_held: list[int] = []


@dataclass
class Stats:
    """What this process fetched and found (a worker's metrics)."""

    hits: int = 0
    hit_bytes: int = 0
    fetches: int = 0
    fetched_bytes: int = 0
    fetch_seconds: float = 0.0
    evicted: int = 0

    def since(self, before: Stats) -> str | None:
        """What a job read from object storage, in words for its log (None: nothing)."""
        fetched, hit = self.fetched_bytes - before.fetched_bytes, self.hit_bytes - before.hit_bytes
        if not fetched and not hit:
            return None
        seconds = self.fetch_seconds - before.fetch_seconds
        return (
            f"Inputs from object storage: {fetched / 2**20:.1f} MiB fetched in {seconds:.2f} s, "
            f"{hit / 2**20:.1f} MiB already in this worker's scratch cache."
        )


stats = Stats()


def root() -> Path:
    return Path(settings.HUB_SCRATCH_DIR) / "files"


def local_path(field: FieldFile) -> Path:
    """A path on this host holding ``field``'s bytes, valid until ``release``."""
    storage = field.storage
    if not is_remote(storage):
        return Path(storage.path(str(field.name)))
    assert isinstance(storage, ObjectStorage)
    return _cached(storage, str(field.name))


def release() -> None:
    """The job is over: its copies may be evicted again (they stay until space is needed)."""
    while _held:
        with suppress(OSError):
            os.close(_held.pop())


def _copy_path(name: str, etag: str) -> Path:
    relative = PurePosixPath(name)
    if relative.is_absolute() or ".." in relative.parts:  # names are the hub's own; still
        raise ValueError(f"not a stored file's name: {name!r}")
    # The file keeps its own name (its suffix says what it is), in a folder of its version.
    return root() / relative.parent / etag[:16] / relative.name


def _cached(storage: ObjectStorage, name: str) -> Path:
    from botocore.exceptions import ClientError

    client = storage.connection.meta.client
    try:
        head = client.head_object(Bucket=storage.bucket_name, Key=storage.key(name))
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            raise FileNotFoundError(name) from None  # as a missing file on a disk says it
        raise
    etag, size = str(head["ETag"]).strip('"').replace("-", "_"), int(head["ContentLength"])
    path = _copy_path(name, etag)
    if _hold(path, size):
        stats.hits += 1
        stats.hit_bytes += size
        return path
    _make_room(size)
    partial = root() / ".partial" / f"{os.getpid()}-{os.urandom(6).hex()}"
    partial.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        client.download_file(
            storage.bucket_name, storage.key(name), str(partial), Config=storage.transfer_config
        )
        if partial.stat().st_size != size:
            raise OSError(f"{name}: fetched {partial.stat().st_size} bytes of {size}")
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(partial, path)
    finally:
        with suppress(FileNotFoundError):
            partial.unlink()
    stats.fetches += 1
    stats.fetched_bytes += size
    stats.fetch_seconds += time.monotonic() - started
    logger.info(
        "Fetched %s into the scratch cache (%d bytes in %.2f s)",
        name,
        size,
        time.monotonic() - started,
    )
    if not _hold(path, size):
        raise OSError(f"{name}: the copy fetched was evicted before it was opened")
    return path


def _hold(path: Path, size: int) -> bool:
    """Open and share-lock a whole copy (marked as just used); False when there is none."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        if os.fstat(fd).st_nlink == 0 or os.fstat(fd).st_size != size:
            os.close(fd)  # evicted between the open and the lock, or not what the bucket holds
            return False
        os.utime(fd)  # mtime = last used: eviction's order
    except OSError:
        os.close(fd)
        raise
    _held.append(fd)
    return True


def _make_room(needed: int) -> None:
    """Evict the least recently used copies no job holds until ``needed`` more bytes fit under
    HUB_SCRATCH_BYTES (a file larger than the bound is still fetched: the job needs it)."""
    folder = root()
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".evict.lock", "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)  # one evictor at a time on this host
        copies = [
            (entry.stat().st_mtime, entry.stat().st_size, entry)
            for entry in folder.rglob("*")
            if entry.is_file() and not entry.name.startswith(".") and ".partial" not in entry.parts
        ]
        used = sum(size for _, size, _ in copies)
        for _, size, entry in sorted(copies, key=lambda c: c[0]):
            if used + needed <= settings.HUB_SCRATCH_BYTES:
                break
            if _evict(entry):
                used -= size
                stats.evicted += 1


def _evict(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False  # a job is reading it
    try:
        path.unlink()
        return True
    finally:
        os.close(fd)


def usage() -> dict[str, int]:
    """Bytes and copies in this host's scratch cache (``hub doctor``, metrics)."""
    folder = root()
    sizes = (
        [p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")]
        if folder.is_dir()
        else []
    )
    return {"bytes": sum(sizes), "files": len(sizes), "limit": settings.HUB_SCRATCH_BYTES}
