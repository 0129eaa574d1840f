"""No absolute server path reaches anyone: not in status messages or details, failure messages,
job logs, artifacts, API answers or upload errors. ONNX external data, which names files by
path, is refused outright."""

from __future__ import annotations

import io
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
from jobs.services import model_upload
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


def _model_with_external_data(location: str) -> bytes:
    weight = helper.make_tensor("w", TensorProto.FLOAT, [2], vals=[])
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "8")):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g", [x], [y], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


@pytest.mark.parametrize("location", ["../../../../etc/passwd", "/etc/passwd", "weights.bin"])
def test_a_model_whose_data_lies_in_other_files_is_refused_at_upload(alice, location):
    with pytest.raises(ValidationError) as refused:
        model_upload(
            owner=alice, file=SimpleUploadedFile("ext.onnx", _model_with_external_data(location))
        )
    message = refused.value.message_dict["file"][0]
    assert "keeps the data of 1 tensor(s) (first: w) in separate files" in message
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
