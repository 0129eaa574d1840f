"""No absolute server path reaches anyone: not in status messages or details, failure messages,
job logs, artifacts, API answers or upload errors. ONNX external data names files by path: a
location must be a plain file name of the model's own folder, refused (naming the tensor) before
any file is opened otherwise, and the bytes it names must lie within a file of the upload."""

from __future__ import annotations

import io
import os
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from onnx import TensorProto, helper

from jobs.domain.redact import scrub_paths
from jobs.domain.state import job_transition
from jobs.domain.status import JobStatus
from jobs.engine.execution import execute
from jobs.models import Job
from jobs.services.assets import model_upload
from tests import factories
from tests.security.access import api


def server_roots() -> list[str]:
    return [
        str(Path(settings.MEDIA_ROOT).resolve()),
        str(Path(settings.DATA_DIR).resolve()),
        tempfile.gettempdir() + "/",
        sys.prefix,
        str(settings.BASE_DIR),
    ]


def assert_no_server_path(text: str, where: str) -> None:
    for root in server_roots():
        assert root not in text, f"{where} names {root}: {text[:500]}"


def test_scrubbing_names_known_folders_and_shortens_any_other_path(settings):
    media = str(Path(settings.MEDIA_ROOT).resolve())
    assert scrub_paths(f"No such file: '{media}/models/m1/x.onnx'") == (
        "No such file: '<media>/models/m1/x.onnx'"
    )
    assert scrub_paths("cannot read /etc/ssl/private/key.pem") == "cannot read …/key.pem"
    assert scrub_paths(f"in {tempfile.gettempdir()}/job-j1/linked.onnx") == (
        "in <tmp>/job-j1/linked.onnx"
    )
    untouched = "see http://127.0.0.1:8000/jobs/j1/ and models/m1/x.onnx, loss 0.5/1.0"
    assert scrub_paths(untouched) == untouched


def _model_with_external_data(location: str, offset: int = 0, length: int = 8) -> bytes:
    weight = helper.make_tensor("w", TensorProto.FLOAT, [2], vals=[])
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g", [x], [y], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


# Every file this process opens (Python's own opens: open(), os.open, io), recorded while a test
# watches: an audit hook cannot be removed, so one is added once and reads a list.
_OPENED: list[str] | None = None


def _record_opens(event: str, args: tuple) -> None:
    if _OPENED is not None and event == "open" and args and isinstance(args[0], str | bytes):
        _OPENED.append(os.fsdecode(args[0]))


sys.addaudithook(_record_opens)


@pytest.fixture
def canary(tmp_path) -> Path:
    """A file outside every upload's folder that no location may make the hub open."""
    secret = tmp_path / "outside" / "canary.bin"
    secret.parent.mkdir()
    secret.write_bytes(b"SECRET!!" * 4)
    return secret


@pytest.fixture
def watched(monkeypatch):
    """The files opened while the test runs, and whether onnxruntime was asked to load
    anything (it opens files in C++, where no audit hook sees it)."""
    global _OPENED
    opened: list[str] = []
    loads: list[object] = []
    from jobs.domain import onnx_runtime

    real = onnx_runtime._refusal

    def refusal(source: str | bytes) -> str | None:
        loads.append(source)
        return real(source)

    monkeypatch.setattr(onnx_runtime, "_refusal", refusal)
    _OPENED = opened
    try:
        yield opened, loads
    finally:
        _OPENED = None


def _upload_archive(alice, members: dict[str, bytes]) -> ValidationError:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(ValidationError) as refused:
        model_upload(owner=alice, file=SimpleUploadedFile("ext.zip", buffer.getvalue()))
    return refused.value


@pytest.mark.parametrize(
    "where",
    ["absolute", "dotdot", "folder/../dotdot", "subfolder", "backslash", "drive"],
)
def test_an_external_data_location_outside_the_model_s_folder_is_refused_before_any_open(
    alice, canary, watched, where
):
    location = {
        "absolute": str(canary),
        "dotdot": "../" * 12 + str(canary).lstrip("/"),
        "folder/../dotdot": "data/../../" + canary.name,
        "subfolder": "data/" + canary.name,
        "backslash": "..\\" + canary.name,
        "drive": "C:" + canary.name,
    }[where]
    before = canary.stat()
    opened, loads = watched
    refused = _upload_archive(
        alice, {"ext.onnx": _model_with_external_data(location), canary.name: b"\0" * 8}
    )
    message = refused.message_dict["file"][0]
    assert "tensor 'w' names its data file" in message  # the entry at fault, named
    assert "not a plain file name in the model's own folder" in message
    assert "SECRET" not in message
    assert str(canary) not in message  # an absolute name is not echoed
    assert not [path for path in opened if canary.name in path and "outside" in path]
    assert loads == []  # refused before onnxruntime (or the checker) saw the model
    after = canary.stat()
    assert (after.st_atime_ns, after.st_mtime_ns) == (before.st_atime_ns, before.st_mtime_ns)


def test_a_location_naming_a_link_in_the_folder_is_refused_without_following_it(canary, tmp_path):
    """Archives cannot bring links (their unpacking refuses them); the folder check refuses one
    anyway, by lstat, so a link planted beside the model is never read through."""
    import onnx

    from jobs.domain.onnx_data import check_folder

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "weights.bin").symlink_to(canary)
    model = onnx.load_from_string(_model_with_external_data("weights.bin"))
    with pytest.raises(ValidationError) as refused:
        check_folder(model, folder, "ext.zip")
    assert "holds it as something other than a file" in refused.value.message_dict["file"][0]


@pytest.mark.parametrize(
    ("offset", "length", "said"),
    [(0, 64, "bytes 0 to 64"), (100, 8, "bytes 100 to 108"), (-1, 8, "not a whole number")],
)
def test_a_data_range_outside_its_file_is_refused(alice, watched, offset, length, said):
    _, loads = watched
    refused = _upload_archive(
        alice,
        {"ext.onnx": _model_with_external_data("w.bin", offset, length), "w.bin": b"\0" * 8},
    )
    assert said in refused.message_dict["file"][0]
    assert loads == []


@pytest.mark.parametrize("location", ["../../../../etc/passwd", "/etc/passwd", "weights.bin"])
def test_a_single_onnx_file_whose_data_lies_in_other_files_is_refused_at_upload(alice, location):
    """One .onnx file brings no data files: refused, saying how to upload the two together."""
    with pytest.raises(ValidationError) as refused:
        model_upload(
            owner=alice, file=SimpleUploadedFile("ext.onnx", _model_with_external_data(location))
        )
    message = refused.value.message_dict["file"][0]
    assert "keeps the data of 1 tensor(s) (first: w) in separate files" in message
    assert "one .zip or .tar.gz" in message
    assert "passwd" not in message


@pytest.mark.django_db(transaction=True)
def test_a_failure_that_names_a_stored_file_shows_no_server_path(alice):
    job = factories.link_job(alice, models=2)
    stored = Path(job.job_inputs.first().model.file.path)
    stored.unlink()
    stored.mkdir()  # reading it raises IsADirectoryError with the absolute path
    try:
        if Job.objects.get(pk=job.pk).status == JobStatus.CREATED:
            job_transition(job=job, to=JobStatus.PENDING, message="Queued.")
        execute(job.pk)
    finally:
        shutil.rmtree(stored)
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert "…/" in job.failure_message or "<media>" in job.failure_message
    assert_no_server_path(job.failure_message, "failure message")
    for log in job.status_logs.all():
        assert_no_server_path(log.message + log.detail, "status log")
    answer = api(alice).get(f"/api/v1/jobs/{job.public_id}/status/").content.decode()
    assert_no_server_path(answer, "status details")


@pytest.mark.django_db(transaction=True)
def test_a_finished_job_s_results_hold_no_server_path(alice):
    job = factories.link_job(alice, models=2)
    if Job.objects.get(pk=job.pk).status == JobStatus.CREATED:
        job_transition(job=job, to=JobStatus.PENDING, message="Queued.")
    execute(job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.READY, job.failure_message
    client = api(alice)
    for url in (f"/api/v1/jobs/{job.public_id}/", f"/api/v1/jobs/{job.public_id}/status/"):
        assert_no_server_path(client.get(url).content.decode(), url)
    results = client.get(f"/api/v1/jobs/{job.public_id}/results/")
    bundle = zipfile.ZipFile(io.BytesIO(results.getvalue()))
    for name in bundle.namelist():
        if not name.endswith(".onnx"):
            assert_no_server_path(bundle.read(name).decode(), name)
