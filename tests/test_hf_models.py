"""Hugging Face model folders brought as archives: a real tiny Llama folder is accepted and
described; unsafe archives, pickled weights, architectures that are not causal language models,
and folders missing a part are refused, each naming the problem."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from safetensors.numpy import load_file

from jobs.models import MLModel
from tests.hf_samples import copy_of, tarred, tiny_llama_folder, zipped
from tests.security.access import api


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    return tiny_llama_folder(tmp_path_factory.mktemp("llama") / "tiny-llama")


def upload(user, name: str, data: bytes):
    return api(user).post(
        "/api/v1/models/", {"file": SimpleUploadedFile(name, data)}, format="multipart"
    )


def test_a_zipped_model_folder_is_accepted_and_described(alice, llama):
    response = upload(alice, "tiny-llama.zip", zipped(llama))
    assert response.status_code == 201, response.json()
    model = response.json()
    assert (model["name"], model["format"]) == ("tiny-llama", "hf")
    meta = model["metadata"]
    assert meta["architecture"] == "LlamaForCausalLM"
    weights = load_file(str(llama / "model.safetensors"))
    assert meta["parameters"] == sum(tensor.size for tensor in weights.values())
    config = json.loads((llama / "config.json").read_text())
    assert (meta["dtype"], meta["context_length"]) == ("F32", 128)
    assert meta["vocab_size"] == config["vocab_size"] > 256
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(meta["files"])
    download = api(alice).get(f"/api/v1/models/{model['id']}/download/")
    stored = zipfile.ZipFile(io.BytesIO(download.getvalue()))
    assert "config.json" in stored.namelist()  # the folder's files at the top


def test_a_tarred_folder_inside_a_folder_is_found(alice, llama):
    response = upload(alice, "tiny.tar.gz", tarred(llama, prefix="release/tiny-llama/"))
    assert response.status_code == 201, response.json()
    assert response.json()["metadata"]["model_type"] == "llama"


def refused(user, name: str, data: bytes) -> str:
    response = upload(user, name, data)
    assert response.status_code == 400, response.json()
    assert not MLModel.objects.exists()
    return response.json()["message"]


def test_pickled_weights_are_refused(alice, llama, tmp_path):
    folder = copy_of(llama, tmp_path / "m")
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    assert "pickled weights (pytorch_model.bin) are refused" in refused(
        alice, "m.zip", zipped(folder)
    )


def test_a_folder_without_safetensors_weights_is_refused(alice, llama, tmp_path):
    folder = copy_of(llama, tmp_path / "m")
    (folder / "model.safetensors").unlink()
    assert "no weights" in refused(alice, "m.zip", zipped(folder))


def test_an_architecture_that_is_not_a_causal_language_model_is_refused(alice, llama, tmp_path):
    folder = copy_of(llama, tmp_path / "m")
    (folder / "config.json").write_text(
        json.dumps({"model_type": "vit", "architectures": ["ViTModel"]})
    )
    assert "(vit) is not a causal language model" in refused(alice, "m.zip", zipped(folder))


def test_a_folder_whose_tokenizer_does_not_load_is_refused(alice, llama, tmp_path):
    folder = copy_of(llama, tmp_path / "m")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / name).unlink()
    assert "the tokenizer does not load" in refused(alice, "m.zip", zipped(folder))


def test_an_archive_without_a_config_is_refused(alice):
    assert "no config.json" in refused(alice, "m.zip", zipped_files({"weights.txt": b"x"}))


@pytest.mark.parametrize("member", ["../escape.txt", "/etc/cron.d/evil", "a/../../b.txt"])
def test_an_archive_member_that_escapes_its_folder_is_refused(alice, llama, member):
    data = zipped(llama, extra={member: b"x"})
    assert f"{member!r} would land outside its folder" in refused(alice, "m.zip", data)


def test_a_link_in_a_tar_archive_is_refused(alice):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        link = tarfile.TarInfo("config.json")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive.addfile(link)
    assert "is not a plain file" in refused(alice, "m.tar.gz", buffer.getvalue())


def test_an_archive_that_unpacks_past_the_limit_is_refused(alice, settings):
    settings.HUB_MAX_UPLOAD_BYTES = 64 * 1024
    bomb = zipped_files({"config.json": b"{}", "zeros.safetensors": b"\0" * (1024 * 1024)})
    assert len(bomb) < 64 * 1024
    assert "unpacks to more than 131072 bytes" in refused(alice, "m.zip", bomb)


def zipped_files(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_the_same_files_make_the_same_stored_zip_whenever_they_were_written(tmp_path):
    """No time or mode in the stored bytes: the same model uploaded twice has one sha256."""
    import hashlib
    import os

    from jobs.domain.hf_models import normalised_zip

    folder = tmp_path / "m"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "sub" / "weights.bin").write_bytes(bytes(1000))
    first = hashlib.sha256(normalised_zip(folder, tmp_path / "a.zip").read_bytes()).hexdigest()
    for path in (folder / "config.json", folder / "sub" / "weights.bin"):
        os.utime(path, (1_000_000_000, 1_000_000_000))
        path.chmod(0o600)
    second = hashlib.sha256(normalised_zip(folder, tmp_path / "b.zip").read_bytes()).hexdigest()
    assert first == second
