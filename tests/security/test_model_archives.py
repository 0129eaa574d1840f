"""Every name inside an uploaded model is hostile. A Hugging Face model folder names other files
in its JSON (the shard map, the tokenizer's files, an adapter's base model): each must resolve
inside the folder, at upload and again where a worker loads it, and a file outside it is never
opened, whatever the answer (a refusal that differs for a missing file would tell which server
paths exist). Archives that would cost the hub in proportion to their member count or name
lengths, and configs that declare a model their weights do not hold, are refused before that
work is done."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from safetensors.numpy import save_file

from jobs.models import MLModel
from tests.canary import Canary
from tests.hf_samples import copy_of, tiny_llama_folder, zipped
from tests.security.access import api


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    return tiny_llama_folder(tmp_path_factory.mktemp("llama") / "tiny-llama")


@pytest.fixture
def canary(tmp_path):
    """A server file outside any upload: a real safetensors file (so a loader that reached it
    would succeed), watched for any open."""
    import numpy as np

    buffer = tmp_path / "build.safetensors"
    save_file({"secret": np.arange(4, dtype=np.float32)}, str(buffer))
    watched = Canary(tmp_path / "server-secret.safetensors", buffer.read_bytes())
    yield watched
    watched.close()


def upload(user, name: str, data: bytes):
    return api(user).post(
        "/api/v1/models/", {"file": SimpleUploadedFile(name, data)}, format="multipart"
    )


def refused(user, name: str, data: bytes) -> str:
    response = upload(user, name, data)
    assert response.status_code == 400, response.json()
    assert not MLModel.objects.exists()
    return response.json()["message"]


def sharded(llama: Path, folder: Path, second_shard: str) -> Path:
    """The tiny Llama with a shard map whose second shard is ``second_shard``."""
    from safetensors.numpy import load_file

    folder = copy_of(llama, folder)
    weights = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    names = sorted(weights)
    half = len(names) // 2
    save_file({n: weights[n] for n in names[:half]}, str(folder / "model-1.safetensors"))
    save_file({n: weights[n] for n in names[half:]}, str(folder / "model-2.safetensors"))
    weight_map = {n: "model-1.safetensors" for n in names[:half]}
    weight_map |= {n: second_shard for n in names[half:]}
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map})
    )
    return folder


def test_a_sharded_model_whose_shards_are_inside_its_folder_is_accepted(alice, llama, tmp_path):
    folder = sharded(llama, tmp_path / "m", "model-2.safetensors")
    response = upload(alice, "m.zip", zipped(folder))
    assert response.status_code == 201, response.json()
    assert response.json()["metadata"]["weights"] == ["model-1.safetensors", "model-2.safetensors"]


@pytest.mark.parametrize("form", ["absolute", "absolute-missing", "dotdot"])
def test_a_shard_map_naming_a_server_file_is_refused_without_opening_it(
    alice, llama, tmp_path, canary, form
):
    shard = {
        "absolute": str(canary.path),
        "absolute-missing": str(canary.path.with_name("no-such-file.safetensors")),
        "dotdot": "../../../../../../../../" + str(canary.path).lstrip("/"),
    }[form]
    folder = sharded(llama, tmp_path / "m", shard)
    message = refused(alice, "m.zip", zipped(folder))
    assert "model.safetensors.index.json" in message
    assert "outside the model's folder" in message
    assert str(tmp_path) not in message  # the refusal is the same whether the file exists
    assert not canary.opened()


@pytest.mark.parametrize("key", ["tokenizer_file", "vocab_file", "merges_file"])
def test_a_tokenizer_config_naming_a_server_file_is_refused_without_opening_it(
    alice, llama, tmp_path, canary, key
):
    folder = copy_of(llama, tmp_path / "m")
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config[key] = str(canary.path)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    message = refused(alice, "m.zip", zipped(folder))
    assert f"tokenizer_config.json names {key}" in message
    assert "outside the model's folder" in message
    assert not canary.opened()


def test_an_adapter_config_naming_a_base_model_on_the_server_is_refused(
    alice, llama, tmp_path, canary
):
    folder = copy_of(llama, tmp_path / "m")
    (folder / "adapter_config.json").write_text(
        json.dumps({"peft_type": "LORA", "base_model_name_or_path": str(canary.path.parent)})
    )
    message = refused(alice, "m.zip", zipped(folder))
    assert "adapter_config.json" in message
    assert not canary.opened()


def test_a_file_reference_nested_in_the_config_is_checked(alice, llama, tmp_path, canary):
    folder = copy_of(llama, tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    config["text_config"] = {"vocab_file": str(canary.path)}
    (folder / "config.json").write_text(json.dumps(config))
    assert "config.json names text_config.vocab_file" in refused(alice, "m.zip", zipped(folder))
    assert not canary.opened()


def test_a_model_name_or_path_pointing_anywhere_is_not_followed(alice, llama, tmp_path, canary):
    """transformers records where a model was saved from (``_name_or_path``): informative, so
    it is kept off the stored copy rather than refused, and nothing follows it."""
    folder = copy_of(llama, tmp_path / "m")
    for name in ("config.json", "tokenizer_config.json"):
        config = json.loads((folder / name).read_text())
        config["_name_or_path"] = config["name_or_path"] = str(canary.path.parent)
        (folder / name).write_text(json.dumps(config))
    response = upload(alice, "m.zip", zipped(folder))
    assert response.status_code == 201, response.json()
    stored = zipfile.ZipFile(MLModel.objects.get().file.path)
    for name in ("config.json", "tokenizer_config.json"):
        config = json.loads(stored.read(name))
        assert str(tmp_path) not in json.dumps(config)
    assert not canary.opened()


def test_a_worker_checks_the_stored_folder_again_before_loading_it(alice, llama, tmp_path, canary):
    """A model stored before these checks (or altered in storage) is checked where a worker
    unpacks it: the loader never follows a name outside the folder."""
    from django.core.exceptions import ValidationError

    from jobs.domain import hf_models

    folder = sharded(llama, tmp_path / "m", str(canary.path))
    stored = tmp_path / "stored.zip"
    stored.write_bytes(zipped(folder))
    with pytest.raises(ValidationError, match="outside the model's folder"):
        hf_models.unpack_stored(stored, tmp_path / "unpacked")
    assert not canary.opened()


def test_an_archive_of_too_many_members_is_refused_before_unpacking(alice, settings, tmp_path):
    settings.HUB_MODEL_ARCHIVE_MAX_MEMBERS = 50
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("config.json", "{}")
        for number in range(60):
            archive.writestr(f"empty/{number}.txt", b"")
    message = refused(alice, "m.zip", buffer.getvalue())
    assert "61 files" in message and "at most 50" in message


def test_an_archive_member_name_past_what_a_file_system_holds_is_refused(alice):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("config.json", "{}")
        archive.writestr("a" * 300 + ".json", "{}")
    message = refused(alice, "m.zip", buffer.getvalue())
    assert "name is longer than" in message


def test_a_config_that_declares_more_than_its_weights_hold_is_refused(alice, llama, tmp_path):
    """A 2 KiB archive must not pass as a 151M-parameter model: the weights' names and shapes
    are checked against the architecture its config builds."""
    folder = copy_of(llama, tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    config |= {"num_hidden_layers": 12, "hidden_size": 1024, "intermediate_size": 4096}
    (folder / "config.json").write_text(json.dumps(config))
    message = refused(alice, "m.zip", zipped(folder))
    assert "config.json builds" in message
    assert "the weights" in message


def test_weights_of_the_wrong_shape_are_refused(alice, llama, tmp_path):
    import numpy as np
    from safetensors.numpy import load_file

    folder = copy_of(llama, tmp_path / "m")
    weights = load_file(str(folder / "model.safetensors"))
    weights["model.norm.weight"] = np.ones(1, dtype=np.float32)
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    message = refused(alice, "m.zip", zipped(folder))
    assert "model.norm.weight" in message and "(1,)" in message and "(64,)" in message


def test_a_vocabulary_past_the_hubs_bound_is_refused(alice, llama, tmp_path, settings):
    settings.HUB_MAX_VOCABULARY = 100
    folder = copy_of(llama, tmp_path / "m")
    message = refused(alice, "m.zip", zipped(folder))
    assert "vocabulary" in message and "100" in message


def refuse_in_this_process(*args, **kwargs):
    raise AssertionError("the web process loaded a tokenizer or built a model")


def test_the_web_process_loads_no_tokenizer_and_builds_no_model(alice, llama, monkeypatch):
    """A 3,000,000-entry tokenizer grew the web process by 1.1 GB and stalled everyone for
    seconds: the upload's check runs in a child process within its own limits, and the submit
    tokenizes nothing (the worker checks the rows against the model)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from jobs.services.jobs import job_submit_customization
    from tests import factories

    monkeypatch.setattr(AutoTokenizer, "from_pretrained", refuse_in_this_process)
    monkeypatch.setattr(AutoModelForCausalLM, "from_config", refuse_in_this_process)
    response = upload(alice, "m.zip", zipped(llama))
    assert response.status_code == 201, response.json()
    model = MLModel.objects.get()
    assert model.metadata["chat_template"] is False
    job = job_submit_customization(
        owner=alice, dataset=factories.dataset(alice, records=30), base_model=model
    )
    assert job.pk is not None


def test_a_check_past_its_memory_is_refused_saying_so(alice, llama, settings):
    settings.HUB_MODEL_CHECK_MEMORY_BYTES = 256 * 1024 * 1024  # too little to import torch
    message = refused(alice, "m.zip", zipped(llama))
    assert "more than 256 MiB of memory" in message and "HUB_MODEL_CHECK_MEMORY_BYTES" in message


def test_a_chat_template_that_takes_seconds_to_render_is_refused(alice, llama, tmp_path):
    """A chat template with nested loops rendered for 26 s a row at submit: it is tried on a
    short conversation in the checking child, within a few seconds."""
    folder = copy_of(llama, tmp_path / "m")
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["chat_template"] = (
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
        "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    )
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    message = refused(alice, "m.zip", zipped(folder))
    assert "chat template takes more than 5 seconds" in message
