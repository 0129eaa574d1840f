"""The restore check (``manage.py storagecheck``) and the orphan sweep on the local folder (the
bucket's are in tests/test_object_storage.py): rows against files, both ways."""

from __future__ import annotations

import io
import os
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command

from jobs.domain import inventory
from tests import factories

pytestmark = pytest.mark.django_db


def test_a_consistent_folder_passes_and_a_missing_file_fails_naming_its_row(alice, settings):
    model = factories.onnx_model(alice, "kept", seed=1)
    dataset = factories.dataset(alice)
    out = io.StringIO()
    call_command("storagecheck", stdout=out)
    assert "2 rows, 2 stored files" in out.getvalue()
    assert "consistent: every row has its file; 0 file(s) without a row." in out.getvalue()

    media = Path(settings.MEDIA_ROOT)
    Path(media, dataset.file.name).write_bytes(b"{}\n")  # restored from another day: not its size
    Path(media, model.file.name).unlink()
    stray = media / "models" / "mgone0000000" / "old.onnx"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"x" * 10)
    out = io.StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command("storagecheck", stdout=out)
    assert exited.value.code == 1
    text = out.getvalue()
    assert f"model {model.public_id}: {model.file.name} is missing" in text
    assert (
        f"dataset {dataset.public_id}: {dataset.file.name} is 3 bytes, not {dataset.size}" in text
    )
    assert "models/mgone0000000/old.onnx (10 B, stored" in text
    assert "NOT consistent: 2 row(s) without their file, 1 file(s) without a row." in text


def test_the_sweep_removes_old_files_no_row_names_and_nothing_else(alice, settings):
    model = factories.onnx_model(alice, "kept", seed=2)
    media = Path(settings.MEDIA_ROOT)
    old, young = media / "models" / "mold" / "a.onnx", media / "models" / "myoung" / "b.onnx"
    for path in (old, young):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"stray")
    long_ago = time.time() - 2 * 86400
    os.utime(old, (long_ago, long_ago))
    os.utime(Path(media, model.file.name), (long_ago, long_ago))  # old, but named by its row
    (media / ".uploads").mkdir(exist_ok=True)
    assert inventory.sweep_orphans(older_than=timedelta(days=1)) == 1
    assert not old.exists() and young.exists() and Path(media, model.file.name).exists()
