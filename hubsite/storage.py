"""The media storage: a stored file is whole or absent, never partial.

Django's FileSystemStorage writes a file in place, chunk after chunk, so a full disk, a killed
process or a read-only mount leaves a partial file under its final name, which a download or a
requeued job then reads as if it were whole. Here each file is written under a temporary name in
this process's own folder on the same file system (``<media>/.uploads/<host>-<pid>``, which the
upload sweep removes once the process is gone: hubsite.uploads.sweep_upload_temp_files), flushed
to disk, and then linked under its final name in one step. An upload already received into a
temporary file on the media disk is linked without a copy.

What a full or read-only disk means for a job or an upload: jobs.domain.disk.
"""

from __future__ import annotations

import errno
import os
import socket
from contextlib import suppress
from pathlib import Path
from typing import Any

from django.core.files.storage import FileSystemStorage
from django.utils._os import safe_makedirs  # type: ignore[attr-defined]  # Django 5.2, not in the stubs


def partial_folder(location: str | os.PathLike[str]) -> Path:
    """Where this process writes files before they are complete: on the media file system (so
    that the final rename is one step), in a folder named after the process (so that what a
    killed process left is found and swept)."""
    folder = Path(location) / ".uploads" / f"{socket.gethostname()}-{os.getpid()}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class WholeFileStorage(FileSystemStorage):
    def _save(self, name: str, content: Any) -> str:
        full_path = self.path(name)
        directory = os.path.dirname(full_path)
        if self.directory_permissions_mode is not None:
            safe_makedirs(directory, self.directory_permissions_mode, exist_ok=True)
        else:
            os.makedirs(directory, exist_ok=True)

        partial = self._complete_copy(content)
        try:
            while True:
                try:
                    os.link(partial, full_path)  # fails if the name is taken: never overwrites
                    break
                except FileExistsError:
                    name = self.get_available_name(name)
                    full_path = self.path(name)
        finally:
            with suppress(FileNotFoundError):
                os.unlink(partial)

        if self.file_permissions_mode is not None:
            os.chmod(full_path, self.file_permissions_mode)
        name = os.path.relpath(full_path, self.location)
        self._ensure_location_group_id(full_path)  # type: ignore[attr-defined]
        return str(name).replace("\\", "/")

    def _complete_copy(self, content: Any) -> str:
        """A complete copy of ``content`` on the media file system, under a temporary name."""
        folder = partial_folder(self.location)
        partial = str(folder / f"{os.urandom(8).hex()}.partial")
        source = getattr(content, "temporary_file_path", None)
        if source is not None:
            try:
                # The upload is complete in its temporary file (on the media disk): link it.
                os.link(source(), partial)
                return partial
            except OSError as error:
                if error.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                    raise
        try:
            with open(partial, "xb") as out:
                for chunk in content.chunks():
                    out.write(chunk.encode() if isinstance(chunk, str) else chunk)
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            with suppress(FileNotFoundError):
                os.unlink(partial)
            raise
        return partial
