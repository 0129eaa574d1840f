"""Where a training job's checkpoints live, so that the attempt after a lost worker finds them,
on this host or another.

On the local media folder (one disk every worker shares) training writes its checkpoints
straight into ``<media>/checkpoints/<job>``. In object storage there is no shared disk: training
writes into this host's scratch folder, and each checkpoint is uploaded as soon as it is whole
(``push``), under ``checkpoints/<job>/`` in the bucket; an attempt on any host first fetches the
newest of them (``restore``). A checkpoint's ``hub_state.json`` is uploaded after its weights, so
a checkpoint in the bucket with its state is whole, as one on disk is. Checkpoints the trainer
rotated away are deleted from the bucket too, and the whole prefix once the job is finished
(``forget``, and the reaper for jobs that went away).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from django.conf import settings

from hubsite import object_storage
from jobs.engine.training.sft import CHECKPOINT, HUB_STATE, TRAINING_ENDED
from jobs.models import Job

logger = logging.getLogger(__name__)

PREFIX = "checkpoints"


def root() -> Path:
    """The folder of every job's checkpoints on this host."""
    base = settings.HUB_SCRATCH_DIR if object_storage.is_remote() else settings.MEDIA_ROOT
    return Path(base) / PREFIX


def folder(job: Job) -> Path:
    """Where training writes the job's checkpoints on this host."""
    return root() / job.public_id


def _prefix(job: Job | str) -> str:
    return f"{PREFIX}/{job if isinstance(job, str) else job.public_id}/"


def restore(job: Job) -> Path:
    """The job's checkpoints on this host as the bucket holds them (the newest finished one, the
    best one and the end-of-training mark): what another host's attempt left is fetched, what
    is here and not there is removed. On a shared disk, the folder as it is."""
    here = folder(job)
    if not object_storage.is_remote():
        return here
    storage = object_storage.remote()
    wanted = _wanted(_stored(job))
    here.mkdir(parents=True, exist_ok=True)
    for path in sorted(p for p in here.rglob("*") if p.is_file()):
        if path.relative_to(here).as_posix() not in wanted:
            path.unlink()
    client = storage.connection.meta.client
    for relative, size in wanted.items():
        target = here / relative
        if target.is_file() and target.stat().st_size == size:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        client.download_file(
            storage.bucket_name,
            storage.key(_prefix(job) + relative),
            str(partial),
            Config=storage.transfer_config,
        )
        partial.replace(target)
    if wanted:
        logger.info("Job %s: fetched its checkpoints (%d files)", job.public_id, len(wanted))
    return here


@contextmanager
def states(job: Job) -> Iterator[Path]:
    """A folder with the job's checkpoint states only (no weights): enough to say where the
    next attempt goes on from without fetching gigabytes."""
    if not object_storage.is_remote():
        yield folder(job)
        return
    storage = object_storage.remote()
    stored = _stored(job)
    with tempfile.TemporaryDirectory(prefix="hub-states-") as temporary:
        for relative in _wanted(stored):
            if PurePosixPath(relative).name not in (HUB_STATE, TRAINING_ENDED):
                continue
            target = Path(temporary) / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            with storage.open(_prefix(job) + relative, "rb") as source:
                target.write_bytes(source.read())
        yield Path(temporary)


def push(job: Job, checkpoint: Path | None = None) -> None:
    """Upload a checkpoint that is whole (its weights, then its state), the end-of-training mark
    if written, and delete from the bucket the checkpoints no longer on this host (rotated away
    by the trainer). Without ``checkpoint``, every one here that the bucket lacks."""
    if not object_storage.is_remote():
        return
    storage = object_storage.remote()
    here = folder(job)
    stored = _stored(job)
    local = _local(here)
    for name in [checkpoint.name] if checkpoint is not None else sorted(local):
        files = local.get(name)
        if not files:
            continue
        # The state last: a checkpoint in the bucket with its state is whole.
        for path in sorted(files, key=lambda p: p.name == HUB_STATE):
            relative = path.relative_to(here).as_posix()
            if stored.get(relative) == path.stat().st_size and path.name != HUB_STATE:
                continue
            _upload(storage, _prefix(job) + relative, path)
    marker = here / TRAINING_ENDED
    if marker.is_file():
        _upload(storage, _prefix(job) + TRAINING_ENDED, marker)
    gone = [
        relative
        for relative in stored
        if (top := relative.split("/", 1)[0]) != TRAINING_ENDED and top not in local
    ]
    if gone:
        client = storage.connection.meta.client
        for start in range(0, len(gone), 1000):
            batch = [{"Key": storage.key(_prefix(job) + r)} for r in gone[start : start + 1000]]
            client.delete_objects(
                Bucket=storage.bucket_name, Delete={"Objects": batch, "Quiet": True}
            )


def forget(job: Job | str) -> None:
    """The job is finished: its checkpoints go, here and in the bucket."""
    public_id = job if isinstance(job, str) else job.public_id
    shutil.rmtree(root() / public_id, ignore_errors=True)
    if object_storage.is_remote():
        object_storage.remote().delete_under(_prefix(public_id))


def stored_jobs() -> set[str]:
    """The public ids of the jobs that have checkpoints kept (on the shared disk or the bucket)."""
    if object_storage.is_remote():
        return {
            name.split("/", 2)[1]
            for name, _, _ in object_storage.remote().objects(f"{PREFIX}/")
            if name.count("/") >= 2
        }
    here = root()
    return {p.name for p in here.iterdir() if p.is_dir()} if here.is_dir() else set()


def _upload(storage: object_storage.ObjectStorage, name: str, path: Path) -> None:
    storage.connection.meta.client.upload_file(
        str(path), storage.bucket_name, storage.key(name), Config=storage.transfer_config
    )


def _stored(job: Job) -> dict[str, int]:
    """{path under the job's prefix: size} of what the bucket holds of the job."""
    storage = object_storage.remote()
    prefix = _prefix(job)
    return {
        name.removeprefix(prefix): size
        for name, size, _ in storage.objects(prefix)
        if name.startswith(prefix)
    }


def _local(here: Path) -> dict[str, list[Path]]:
    """{checkpoint folder name: its files} on this host."""
    found: dict[str, list[Path]] = {}
    if here.is_dir():
        for child in here.iterdir():
            if child.is_dir() and CHECKPOINT.match(child.name):
                found[child.name] = [p for p in child.rglob("*") if p.is_file()]
    return found


def _wanted(stored: dict[str, int]) -> dict[str, int]:
    """What an attempt needs of what the bucket holds: the whole checkpoints (those with their
    state) and the end-of-training mark; a checkpoint an upload was cut short in is skipped."""
    whole = {
        relative.split("/", 1)[0]
        for relative in stored
        if relative.count("/") == 1 and relative.endswith("/" + HUB_STATE)
    }
    return {
        relative: size
        for relative, size in stored.items()
        if relative == TRAINING_ENDED or relative.split("/", 1)[0] in whole
    }
