"""ONNX models whose weights lie in a data file beside them, as torch.onnx.export writes them:
uploaded as an archive (page and API), stored normalised (model.onnx + model.onnx.data in one
zip), shown and downloaded, and linked by link jobs (outputs past protobuf's 2 GB limit
saved with their data beside them)."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from jobs.domain.onnx_data import DATA_NAME, MODEL_NAME
from jobs.models import MLModel
from jobs.services.assets import model_upload
from tests import factories
from tests.onnx_samples import torch_mlp_export, zipped

api = factories.api


@pytest.fixture
def export(tmp_path) -> Path:
    """A real torch.onnx.export: mlp.onnx and, beside it, mlp.onnx.data."""
    model = torch_mlp_export(tmp_path / "export")
    assert (tmp_path / "export" / "mlp.onnx.data").stat().st_size > 0
    return model


def outputs_of(folder: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(folder / MODEL_NAME), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def unzip(data: bytes, into: Path) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert sorted(archive.namelist()) == [MODEL_NAME, DATA_NAME]
        archive.extractall(into)
    return into


def test_a_torch_export_with_its_data_file_is_accepted_as_a_zip_and_stored_normalised(
    alice, export, tmp_path
):
    archive = zipped(export.parent, tmp_path / "mlp.zip", prefix="exported/")
    model = model_upload(owner=alice, file=ContentFile(archive.read_bytes(), "mlp.zip"), name="mlp")
    assert model.format == "onnx"
    assert model.file.name.endswith(".zip")
    meta = model.metadata
    assert meta["external_data"] is True
    assert set(meta["files"]) == {MODEL_NAME, DATA_NAME}
    assert meta["total_size"] == sum(meta["files"].values())
    assert meta["inputs"] == ["x"] and meta["outputs"] == ["y"]
    assert meta["ir_version"] and meta["opsets"]["ai.onnx"]
    # The stored zip runs in onnxruntime as the export does, and names only the hub's file.
    stored = unzip(model.file.read(), tmp_path / "stored")
    x = np.random.default_rng(0).standard_normal((3, 16)).astype(np.float32)
    original = ort.InferenceSession(str(export), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(outputs_of(stored, x), original.run(None, {"x": x})[0], rtol=1e-6)
    proto = onnx.load(str(stored / MODEL_NAME), load_external_data=False)
    locations = {
        e.value for t in proto.graph.initializer for e in t.external_data if e.key == "location"
    }
    assert locations == {DATA_NAME}


def test_the_same_export_uploaded_twice_is_stored_once(alice, export, tmp_path):
    archive = zipped(export.parent, tmp_path / "mlp.zip").read_bytes()
    first = model_upload(owner=alice, file=ContentFile(archive, "mlp.zip"))
    again = model_upload(owner=alice, file=ContentFile(archive, "mlp.zip"))
    assert again.pk == first.pk and getattr(again, "already_uploaded", False)


def test_a_tar_gz_upload_through_the_api_answers_with_the_model_and_downloads_as_a_zip(
    alice, export, tmp_path
):
    archive = tmp_path / "mlp.tar.gz"
    with tarfile.open(archive, "w:gz") as tarred:
        for path in export.parent.iterdir():
            tarred.add(path, f"mlp/{path.name}")
    client = api(alice)
    answer = client.post(
        "/api/v1/models/",
        {"file": SimpleUploadedFile("mlp.tar.gz", archive.read_bytes())},
        format="multipart",
    )
    assert answer.status_code == 201, answer.content
    body = answer.json()
    assert body["format"] == "onnx" and body["metadata"]["external_data"] is True
    download = client.get(f"/api/v1/models/{body['id']}/download/")
    assert download.status_code == 200
    assert download["Content-Disposition"].endswith('.zip"')
    unzip(download.getvalue(), tmp_path / "downloaded")


def test_the_model_page_shows_inputs_opsets_ir_version_files_and_total_size(
    alice, export, tmp_path, client
):
    archive = zipped(export.parent, tmp_path / "mlp.zip").read_bytes()
    model = model_upload(owner=alice, file=ContentFile(archive, "mlp.zip"))
    client.force_login(alice)
    html = client.get(reverse("jobs:model", args=[model.public_id])).content.decode()
    facts = html[html.index('id="model-facts"') :]
    assert "IR version" in facts and "opsets" in facts and "ai.onnx" in facts
    assert "total size" in facts
    assert DATA_NAME in html[html.index('id="model-files"') :]


def test_an_upload_page_form_takes_the_archive(alice, export, tmp_path, client):
    archive = zipped(export.parent, tmp_path / "mlp.zip").read_bytes()
    client.force_login(alice)
    answer = client.post(
        reverse("jobs:upload-model"), {"file": SimpleUploadedFile("mlp.zip", archive)}
    )
    assert answer.status_code == 302, answer.content.decode()[:2000]
    assert MLModel.objects.get(owner=alice).metadata["external_data"] is True


def test_a_single_onnx_file_whose_data_is_elsewhere_is_told_how_to_upload_it(alice, export):
    with pytest.raises(ValidationError) as refused:
        model_upload(owner=alice, file=ContentFile(export.read_bytes(), "mlp.onnx"))
    message = refused.value.message_dict["file"][0]
    assert "in separate files" in message and ".zip or .tar.gz" in message


def test_an_archive_missing_the_data_file_is_refused_naming_the_tensor_and_the_file(
    alice, export, tmp_path
):
    (export.parent / "mlp.onnx.data").unlink()
    archive = zipped(export.parent, tmp_path / "mlp.zip").read_bytes()
    with pytest.raises(ValidationError) as refused:
        model_upload(owner=alice, file=ContentFile(archive, "mlp.zip"))
    message = refused.value.message_dict["file"][0]
    assert "'mlp.onnx.data'" in message and "does not hold it" in message
    assert "tensor '" in message


def test_a_truncated_data_file_is_refused_naming_the_bytes_it_lacks(alice, export, tmp_path):
    data = export.parent / "mlp.onnx.data"
    data.write_bytes(data.read_bytes()[:100])
    archive = zipped(export.parent, tmp_path / "mlp.zip").read_bytes()
    with pytest.raises(ValidationError) as refused:
        model_upload(owner=alice, file=ContentFile(archive, "mlp.zip"))
    assert "which holds 100 bytes" in refused.value.message_dict["file"][0]


def test_an_archive_with_two_models_or_files_the_model_does_not_name_is_refused(
    alice, export, tmp_path
):
    (export.parent / "notes.txt").write_text("not a data file")
    archive = zipped(export.parent, tmp_path / "mlp.zip").read_bytes()
    with pytest.raises(ValidationError) as refused:
        model_upload(owner=alice, file=ContentFile(archive, "mlp.zip"))
    assert "'notes.txt' is not a data file of 'mlp.onnx'" in refused.value.message_dict["file"][0]
    (export.parent / "notes.txt").unlink()
    (export.parent / "second.onnx").write_bytes(export.read_bytes())
    archive = zipped(export.parent, tmp_path / "two.zip").read_bytes()
    with pytest.raises(ValidationError) as refused:
        model_upload(owner=alice, file=ContentFile(archive, "two.zip"))
    assert "exactly one .onnx file" in refused.value.message_dict["file"][0]


def test_an_archive_holding_only_a_whole_onnx_file_is_stored_as_that_file(alice, tmp_path):
    from tests.onnx_samples import conv_model

    folder = tmp_path / "whole"
    folder.mkdir()
    onnx.save(conv_model(seed=1, opset=17), str(folder / "conv.onnx"))
    (folder / "conv.onnx.data").write_bytes(b"")  # an exporter's empty leftover
    archive = zipped(folder, tmp_path / "conv.zip").read_bytes()
    model = model_upload(owner=alice, file=ContentFile(archive, "conv.zip"))
    assert model.file.name.endswith(".onnx") and model.metadata["external_data"] is False
    onnx.checker.check_model(onnx.load_from_string(model.file.read()))


@pytest.mark.django_db(transaction=True)
def test_a_link_job_links_a_model_stored_with_its_data_and_its_target_says_its_ir_version(
    alice, export, tmp_path, client
):
    from jobs.services.jobs import job_submit_link

    archive = zipped(export.parent, tmp_path / "mlp.zip").read_bytes()
    with_data = model_upload(owner=alice, file=ContentFile(archive, "mlp.zip"))
    whole = factories.onnx_model(alice, "whole")
    job = factories.run_here(job_submit_link(owner=alice, models=[with_data, whole]))
    assert job.status == "ready", job.failure_message
    target = job.target_model
    assert target is not None and target.file.name.endswith(".onnx")
    meta = target.metadata
    stored = target.file.read()
    assert meta["ir_version"] == onnx.load_from_string(stored).ir_version
    assert meta["external_data"] is False and "m0/x" in meta["inputs"]
    client.force_login(alice)
    html = client.get(reverse("jobs:model", args=[target.public_id])).content.decode()
    assert f"<dt>IR version</dt><dd>{meta['ir_version']}" in html
    # The linked graph gives the export's outputs (verified by the job; checked here again).
    x = np.random.default_rng(1).standard_normal((2, 16)).astype(np.float32)
    linked = ort.InferenceSession(stored, providers=["CPUExecutionProvider"])
    original = ort.InferenceSession(str(export), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(
        linked.run(["m0/y"], {"m0/x": x, "m1/x": np.zeros((1, 8), np.float32)})[0],
        original.run(None, {"x": x})[0],
        rtol=1e-6,
    )


@pytest.mark.django_db(transaction=True)
def test_a_target_past_protobuf_s_limit_is_saved_with_its_data_and_served_as_a_zip(
    alice, export, tmp_path, monkeypatch
):
    """The 2 GB decision with the limit lowered: the same path a 2 GB target takes."""
    from jobs.engine.runners import onnx_link
    from jobs.services.jobs import job_submit_link

    monkeypatch.setattr(onnx_link, "ONE_FILE_LIMIT", 1024)
    archive = zipped(export.parent, tmp_path / "mlp.zip").read_bytes()
    with_data = model_upload(owner=alice, file=ContentFile(archive, "mlp.zip"))
    job = factories.run_here(
        job_submit_link(owner=alice, models=[with_data, factories.onnx_model(alice, "whole")])
    )
    assert job.status == "ready", job.failure_message
    target = job.target_model
    assert target is not None and target.file.name.endswith(".zip")
    assert target.metadata["external_data"] is True and target.metadata["ir_version"]
    assert set(target.metadata["files"]) == {MODEL_NAME, DATA_NAME}
    client = api(alice)
    download = client.get(f"/api/v1/jobs/{job.public_id}/target-model/")
    assert download.status_code == 200
    assert download["Content-Disposition"].endswith('-target-model.zip"')
    folder = unzip(download.getvalue(), tmp_path / "target")
    session = ort.InferenceSession(str(folder / MODEL_NAME), providers=["CPUExecutionProvider"])
    assert {o.name for o in session.get_outputs()} == {"m0/y", "m1/y"}
    results = zipfile.ZipFile(
        io.BytesIO(client.get(f"/api/v1/jobs/{job.public_id}/results/").getvalue())
    )
    assert "target_model.zip" in results.namelist()
    # The linked target is itself a model with its data: a second link job takes it.
    again = factories.run_here(job_submit_link(owner=alice, models=[target, with_data]))
    assert again.status == "ready", again.failure_message


def test_an_onnx_archive_is_unpacked_within_the_limits_of_any_model_archive(
    alice, export, settings
):
    """Unpacked as Hugging Face archives are: the bytes counted as written, links refused."""
    settings.HUB_MAX_UPLOAD_BYTES = 64 * 1024
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("mlp.onnx", export.read_bytes())
        archive.writestr("mlp.onnx.data", b"\0" * (1024 * 1024))  # a 1 MiB data file, zipped small
    assert len(buffer.getvalue()) < 64 * 1024
    with pytest.raises(ValidationError) as refused:
        model_upload(owner=alice, file=ContentFile(buffer.getvalue(), "bomb.zip"))
    assert "unpacks to more than 131072 bytes" in refused.value.message_dict["file"][0]

    settings.HUB_MAX_UPLOAD_BYTES = 512 * 1024 * 1024
    linked = io.BytesIO()
    with tarfile.open(fileobj=linked, mode="w:gz") as tarred:
        model = tarfile.TarInfo("mlp.onnx")
        model.size = len(export.read_bytes())
        tarred.addfile(model, io.BytesIO(export.read_bytes()))
        link = tarfile.TarInfo("mlp.onnx.data")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tarred.addfile(link)
    with pytest.raises(ValidationError) as refused:
        model_upload(owner=alice, file=ContentFile(linked.getvalue(), "linked.tar.gz"))
    assert "'mlp.onnx.data' is not a plain file" in refused.value.message_dict["file"][0]
