"""What the rows say is stored, against what the storage holds: the restore check
(``manage.py storagecheck``) and the orphan sweep (jobs.engine.reaper).

After a restore (the database from one backup, the bucket or media folder from another) a row
whose file is missing or of another size is a download that will fail; a file no row names is
space no one can reach. The same comparison, run by the reaper, deletes files no row has named
for a while: what a process killed between storing a file and writing its row left behind.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.core.files.storage import default_storage
from django.utils import timezone

from hubsite import object_storage
from jobs.models import Artifact, Dataset, MLModel

logger = logging.getLogger(__name__)

# Not a stored file's folder: checkpoints (jobs.engine.checkpoints sweeps them), temporary
# files, the built-in model made on each host.
SKIPPED_TOP = frozenset({"checkpoints", "builtin-models"})


@dataclass(frozen=True)
class Missing:
    row: str  # "model m3x9k2p1q0az"
    name: str  # the file's name in the storage
    expected: int
    found: int | None  # None: not there at all


@dataclass
class Inventory:
    rows: int = 0
    objects: int = 0
    stored_bytes: int = 0
    missing: list[Missing] = field(default_factory=list)
    orphans: list[tuple[str, int, datetime]] = field(default_factory=list)  # name, size, when

    @property
    def consistent(self) -> bool:
        return not self.missing


def stored_rows() -> dict[str, tuple[str, int]]:
    """{file name: (row, size in bytes)} of every row whose file should be in the storage."""
    rows: dict[str, tuple[str, int]] = {}
    for label, query in (
        ("model", MLModel.objects.filter(deleted_at__isnull=True)),
        ("dataset", Dataset.objects.filter(deleted_at__isnull=True)),
    ):
        for public_id, name, size in query.exclude(file="").values_list(
            "public_id", "file", "size"
        ):
            rows[name] = (f"{label} {public_id}", size)
    artifacts = Artifact.objects.exclude(file="").values_list(
        "job__public_id", "name", "file", "size"
    )
    for job_id, artifact, name, size in artifacts:
        rows[name] = (f"artifact {artifact!r} of job {job_id}", size)
    return rows


def stored_files() -> dict[str, tuple[int, datetime]]:
    """{file name: (size, last modified)} of what the storage holds, outside SKIPPED_TOP."""
    found: dict[str, tuple[int, datetime]] = {}
    if object_storage.is_remote():
        for name, size, modified in object_storage.remote().objects():
            if name.split("/", 1)[0] not in SKIPPED_TOP:
                found[name] = (size, modified)
        return found
    media = Path(settings.MEDIA_ROOT)
    if not media.is_dir():
        return found
    for top in media.iterdir():
        if top.name.startswith(".") or top.name in SKIPPED_TOP or not top.is_dir():
            continue
        if Path(settings.HUB_BUILTIN_MODEL_DIR).resolve() == top.resolve():
            continue
        for folder, _, files in os.walk(top):
            for file in files:
                path = Path(folder, file)
                stat = path.stat()
                modified = datetime.fromtimestamp(stat.st_mtime, tz=UTC)
                found[path.relative_to(media).as_posix()] = (stat.st_size, modified)
    return found


def take() -> Inventory:
    """Rows against files: which rows lack their file (or have one of another size), which files
    no row names."""
    rows, files = stored_rows(), stored_files()
    inventory = Inventory(rows=len(rows), objects=len(files))
    inventory.stored_bytes = sum(size for size, _ in files.values())
    for name, (row, size) in sorted(rows.items()):
        found = files.get(name)
        if found is None or found[0] != size:
            inventory.missing.append(Missing(row, name, size, found[0] if found else None))
    inventory.orphans = sorted(
        (name, size, modified) for name, (size, modified) in files.items() if name not in rows
    )
    return inventory


def sweep_orphans(older_than: timedelta) -> int:
    """Delete the files no row names that are older than ``older_than`` (a file is stored a
    moment before its row is written), and, in object storage, the multipart uploads begun that
    long ago and never finished. How many were removed."""
    cutoff = timezone.now() - older_than
    inventory = take()
    removed = 0
    for name, _, modified in inventory.orphans:
        # Asked again just before: a row written since the inventory keeps its file.
        if modified < cutoff and not _named_by_a_row(name):
            default_storage.delete(name)
            removed += 1
    if object_storage.is_remote():
        storage = object_storage.remote()
        for key, upload_id, started in storage.unfinished_uploads():
            if started < cutoff:
                storage.abort_upload(key, upload_id)
                removed += 1
    if removed:
        logger.info("Removed %d stored file(s) or unfinished upload(s) no row names", removed)
    return removed


def _named_by_a_row(name: str) -> bool:
    return (
        MLModel.objects.filter(file=name).exists()
        or Dataset.objects.filter(file=name).exists()
        or Artifact.objects.filter(file=name).exists()
    )
