"""Inference jobs, for real: a model run with ONNX Runtime on this machine's device over inputs
uploaded as seed 000's client writes them (its own ``dataset_entries_to_h5``) or as a .npz,
each output equal to ONNX Runtime run directly on the same inputs, stored in seed 000's h5
layout (read back with its own ``h5_to_dataset_entries``) and as a dataset that another job can
take, readable by the owner and a reader, never a stranger. Inputs that do not fit the model
are refused at submit, each mismatch named."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from onnx import TensorProto, helper, numpy_helper
from qai_hub.util.dataset_entries_converters import dataset_entries_to_h5, h5_to_dataset_entries

from jobs.domain.selectors import datasets_visible_to, jobs_visible_to
from jobs.domain.status import FailureType, JobStatus
from jobs.models import Dataset, Job, MLModel
from jobs.services.assets import dataset_upload, model_upload
from jobs.services.device_jobs import job_submit_inference
from sharing.services import sharing_modify
from tests import factories

RNG_SEED = 24


def h5_of(entries: dict[str, list[np.ndarray]]) -> bytes:
    """The bytes seed 000's client uploads for ``entries`` (gzip-compressed samples, order and
    batch_count attributes)."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as h5f:
        dataset_entries_to_h5(entries, h5f)
    return buffer.getvalue()


def npz_of(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def upload(owner: Any, name: str, data: bytes) -> Dataset:
    return dataset_upload(owner=owner, file=ContentFile(data, name))


def upload_model(owner: Any, proto: onnx.ModelProto, name: str) -> MLModel:
    return model_upload(owner=owner, file=ContentFile(proto.SerializeToString(), f"{name}.onnx"))


def fixed_model() -> onnx.ModelProto:
    """Two inputs of fixed shapes (an image and a scale), two outputs (a feature map and a
    scaled mean): the order of entries and of outputs matters."""
    rng = np.random.default_rng(RNG_SEED)
    kernel = rng.standard_normal((2, 3, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["image", "kernel"], ["conv"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["conv"], ["features"]),
            helper.make_node("ReduceMean", ["features"], ["mean"], keepdims=0),
            helper.make_node("Mul", ["mean", "scale"], ["scaled"]),
        ],
        "fixed",
        [
            helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 5, 5]),
            helper.make_tensor_value_info("scale", TensorProto.FLOAT, [1]),
        ],
        [
            helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, 2, 5, 5]),
            helper.make_tensor_value_info("scaled", TensorProto.FLOAT, [1]),
        ],
        initializer=[numpy_helper.from_array(kernel, "kernel")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.checker.check_model(model)
    return model


def softmax_of_y() -> onnx.ModelProto:
    """A model whose input is the demo MLP's output ``y``: it runs on an inference job's
    outputs."""
    graph = helper.make_graph(
        [helper.make_node("Softmax", ["y"], ["p"], axis=-1)],
        "softmax",
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, ["batch", 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.checker.check_model(model)
    return model


def directly(model: MLModel, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """ONNX Runtime run on the stored model file, outside the hub."""
    session = ort.InferenceSession(model.file.path, providers=["CPUExecutionProvider"])
    return list(session.run(None, feeds))


def output_entries(job: Job) -> dict[str, list[np.ndarray]]:
    """The job's output_data.h5 as seed 000's client reads it."""
    artifact = job.artifacts.get(name="output_data.h5")
    with h5py.File(artifact.file.path, "r") as h5f:
        return dict(h5_to_dataset_entries(h5f))


@pytest.fixture
def mlp(alice: Any) -> MLModel:
    return factories.onnx_model(alice, "mlp", seed=3)  # x: [batch, 8] → y: [batch, 4]


@pytest.fixture
def mlp_inputs() -> list[np.ndarray]:
    """Three samples of different batch sizes: the dynamic dimension varies by sample."""
    rng = np.random.default_rng(RNG_SEED)
    return [rng.standard_normal((n, 8)).astype(np.float32) for n in (1, 2, 5)]


def run_inference(owner: Any, model: MLModel, inputs: Dataset, device: Any, **extra: Any) -> Job:
    job = job_submit_inference(owner=owner, model=model, device=device, inputs=inputs, **extra)
    return factories.run_here(job)


def test_three_samples_give_the_outputs_of_onnx_runtime_run_directly(
    alice, this_device, mlp, mlp_inputs
):
    inputs = upload(alice, "inputs.h5", h5_of({"x": mlp_inputs}))
    assert inputs.num_records == 3
    job = run_inference(alice, mlp, inputs, this_device)
    assert job.status == JobStatus.READY, job.failure_message
    outputs = output_entries(job)
    assert list(outputs) == ["y"] and len(outputs["y"]) == 3
    for sample, got in zip(mlp_inputs, outputs["y"], strict=True):
        (expected,) = directly(mlp, {"x": sample})
        assert got.shape == (sample.shape[0], 4) and got.dtype == np.float32
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=0)
    # Progress in samples: the page shows samples done of samples.
    assert (job.steps_completed, job.total_steps, job.percentage_done) == (3, 3, 100.0)
    summary = job.summary
    assert summary["samples"] == 3 and summary["providers"] == ["CPUExecutionProvider"]
    assert summary["seconds"] > 0
    (shown,) = summary["outputs"]
    assert (shown["name"], shown["dtype"], shown["shapes"]) == (
        "y",
        "float32",
        [[1, 4], [2, 4], [5, 4]],
    )
    np.testing.assert_allclose(shown["first_values"], outputs["y"][0].ravel()[:6], rtol=1e-6)
    assert job.status_logs.get(status=JobStatus.READY).message.startswith("Outputs stored")


def test_a_fixed_shape_model_with_two_inputs_and_two_outputs_keeps_their_order(alice, this_device):
    model = upload_model(alice, fixed_model(), "fixed")
    rng = np.random.default_rng(RNG_SEED)
    images = [rng.standard_normal((1, 3, 5, 5)).astype(np.float32) for _ in range(3)]
    scales = [np.array([s], dtype=np.float32) for s in (0.5, 1.0, 2.0)]
    inputs = upload(alice, "images.h5", h5_of({"image": images, "scale": scales}))
    job = run_inference(alice, model, inputs, this_device)
    assert job.status == JobStatus.READY, job.failure_message
    outputs = output_entries(job)
    assert list(outputs) == ["features", "scaled"]
    for j in range(3):
        features, scaled = directly(model, {"image": images[j], "scale": scales[j]})
        np.testing.assert_allclose(outputs["features"][j], features, rtol=1e-6, atol=0)
        np.testing.assert_allclose(outputs["scaled"][j], scaled, rtol=1e-6, atol=0)
    assert [o["name"] for o in job.summary["outputs"]] == ["features", "scaled"]


def test_npz_inputs_run_as_one_sample_each(alice, this_device):
    model = upload_model(alice, fixed_model(), "fixed")
    rng = np.random.default_rng(RNG_SEED)
    image = rng.standard_normal((1, 3, 5, 5)).astype(np.float32)
    scale = np.array([3.0], dtype=np.float32)
    inputs = upload(alice, "one.npz", npz_of({"image": image, "scale": scale}))
    assert (inputs.metadata["file_format"], inputs.num_records) == ("npz", 1)
    job = run_inference(alice, model, inputs, this_device)
    assert job.status == JobStatus.READY, job.failure_message
    outputs = output_entries(job)
    features, scaled = directly(model, {"image": image, "scale": scale})
    np.testing.assert_allclose(outputs["features"][0], features, rtol=1e-6, atol=0)
    np.testing.assert_allclose(outputs["scaled"][0], scaled, rtol=1e-6, atol=0)


def test_big_endian_inputs_are_run_as_the_numbers_they_hold(alice, this_device, mlp, mlp_inputs):
    swapped = [a.astype(">f4") for a in mlp_inputs]
    inputs = upload(alice, "big-endian.h5", h5_of({"x": swapped}))
    job = run_inference(alice, mlp, inputs, this_device)
    assert job.status == JobStatus.READY, job.failure_message
    for sample, got in zip(mlp_inputs, output_entries(job)["y"], strict=True):
        np.testing.assert_allclose(got, directly(mlp, {"x": sample})[0], rtol=1e-6, atol=0)


def test_the_outputs_are_a_dataset_of_the_owner_that_another_job_runs_on(
    alice, this_device, mlp, mlp_inputs
):
    first = run_inference(alice, mlp, upload(alice, "in.h5", h5_of({"x": mlp_inputs})), this_device)
    made = Dataset.objects.get(produced_by=first)
    artifact = first.artifacts.get(name="output_data.h5")
    assert (made.owner, made.format, made.num_records) == (alice, "tensors", 3)
    assert (
        made.sha256
        == artifact.sha256
        == hashlib.sha256(Path(made.file.path).read_bytes()).hexdigest()
    )
    assert made.metadata == {
        "file_format": "h5",
        "entries": [{"name": "y", "dtype": "float32", "shapes": [[1, 4], [2, 4], [5, 4]]}],
        "samples": 3,
    }
    softmax = upload_model(alice, softmax_of_y(), "softmax")
    second = run_inference(alice, softmax, made, this_device)
    assert second.status == JobStatus.READY, second.failure_message
    for y, p in zip(output_entries(first)["y"], output_entries(second)["p"], strict=True):
        np.testing.assert_allclose(p, directly(softmax, {"y": y})[0], rtol=1e-6, atol=0)


MISFITS: dict[str, tuple[str, dict[str, list[np.ndarray]], list[str]]] = {
    "shape": (
        "mlp",
        {"x": [np.zeros((2, 8), np.float32), np.zeros((2, 7), np.float32)]},
        ["'x' sample 1 has shape [2, 7], the model takes ['batch', 8]"],
    ),
    "dtype": (
        "mlp",
        {"x": [np.zeros((2, 8), np.float64)]},
        ["'x' is float64, the model takes float32"],
    ),
    "missing": ("fixed", {"image": [np.zeros((1, 3, 5, 5), np.float32)]}, ["missing 'scale'"]),
    "extra": (
        "mlp",
        {"x": [np.zeros((1, 8), np.float32)], "z": [np.zeros(1, np.float32)]},
        ["'z' not an input of the model"],
    ),
    "all at once": (
        "fixed",
        {"image": [np.zeros((1, 3, 4, 4), np.int64)], "extra": [np.zeros(1, np.float32)]},
        [
            "missing 'scale'",
            "'extra' not an input of the model",
            "'image' is int64, the model takes float32",
            "'image' sample 0 has shape [1, 3, 4, 4], the model takes [1, 3, 5, 5]",
        ],
    ),
}


@pytest.mark.parametrize("case", list(MISFITS))
def test_inputs_that_do_not_fit_are_refused_at_submit_naming_each_mismatch(
    alice, this_device, mlp, case
):
    which, entries, named = MISFITS[case]
    model = mlp if which == "mlp" else upload_model(alice, fixed_model(), "fixed")
    inputs = upload(alice, "bad.h5", h5_of(entries))
    with pytest.raises(ValidationError) as refused:
        job_submit_inference(owner=alice, model=model, device=this_device, inputs=inputs)
    message = refused.value.message_dict["inputs"][0]
    assert message.startswith(f"Dataset {inputs.public_id} does not fit the model's inputs: ")
    for words in named:
        assert words in message, (words, message)
    assert not Job.objects.exists()


def test_a_dataset_that_no_longer_fits_fails_the_job_naming_it(alice, this_device, mlp):
    """Stored before a check existed, or edited since: the worker checks the file again."""
    inputs = upload(alice, "in.h5", h5_of({"x": [np.zeros((1, 8), np.float32)]}))
    job = job_submit_inference(owner=alice, model=mlp, device=this_device, inputs=inputs)
    Path(inputs.file.path).write_bytes(h5_of({"x": [np.zeros((1, 9), np.float32)]}))
    job = factories.run_here(job)
    assert (job.status, job.failure_type) == (JobStatus.FAILED, FailureType.INVALID_DATASET)
    assert "'x' sample 0 has shape [1, 9], the model takes ['batch', 8]" in job.failure_message
    assert not Dataset.objects.filter(produced_by=job).exists()


def test_a_stored_file_that_turned_hostile_is_refused_by_the_worker(
    alice, this_device, mlp, tmp_path
):
    inputs = upload(alice, "in.h5", h5_of({"x": [np.zeros((1, 8), np.float32)]}))
    job = job_submit_inference(owner=alice, model=mlp, device=this_device, inputs=inputs)
    secret = tmp_path / "secret.h5"
    with h5py.File(secret, "w") as h5f:
        h5f["x"] = np.zeros((1, 8), np.float32)
    with h5py.File(inputs.file.path, "w") as h5f:
        group = h5f.create_group("data/0")
        group.attrs.update({"name": "x", "order": 0, "batch_count": 1})
        group["batch_0"] = h5py.ExternalLink(str(secret), "/x")
    job = factories.run_here(job)
    assert job.status == JobStatus.FAILED and job.failure_type == FailureType.INVALID_DATASET
    assert "is a link to another file; links are not followed" in job.failure_message
    assert str(tmp_path) not in job.failure_message


def test_a_sample_the_model_cannot_run_fails_the_job_naming_the_sample(alice, this_device):
    """An embedding's index past its table: ONNX Runtime refuses that sample."""
    from tests.onnx_samples import embedding_model

    model = upload_model(alice, embedding_model(seed=1), "embedding")
    ids = [np.array([[1, 2]], np.int64), np.array([[3, 99]], np.int64)]
    job = run_inference(alice, model, upload(alice, "ids.h5", h5_of({"ids": ids})), this_device)
    assert (job.status, job.failure_type) == (JobStatus.FAILED, FailureType.INVALID_DATASET)
    assert job.failure_message.startswith("The model could not run on sample 1 of the inputs")
    assert not Dataset.objects.filter(produced_by=job).exists()


def test_a_model_whose_output_is_strings_fails_naming_the_output(alice, this_device):
    graph = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["label"], to=TensorProto.STRING)],
        "labels",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("label", TensorProto.STRING, [1])],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    model = upload_model(alice, proto, "labels")
    inputs = upload(alice, "x.h5", h5_of({"x": [np.ones(1, np.float32)]}))
    job = run_inference(alice, model, inputs, this_device)
    assert (job.status, job.failure_type) == (JobStatus.FAILED, FailureType.INVALID_MODEL)
    assert "Output 'label' of model" in job.failure_message
    assert "is tensor(string); an inference job stores tensors of bool" in job.failure_message


def test_compute_unit_gpu_on_a_device_without_one_fails_naming_the_providers(
    alice, this_device, mlp, mlp_inputs
):
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has a GPU provider")
    inputs = upload(alice, "in.h5", h5_of({"x": mlp_inputs}))
    job = run_inference(alice, mlp, inputs, this_device, options="--compute_unit gpu")
    assert (job.status, job.failure_type) == (JobStatus.FAILED, FailureType.INVALID_PARAMETERS)
    assert "--compute_unit gpu asks for a GPU" in job.failure_message
    assert "CPUExecutionProvider" in job.failure_message


def test_the_output_dataset_is_read_by_the_owner_and_a_reader_never_a_stranger(
    alice, bob, charlie, this_device, mlp, mlp_inputs
):
    job = run_inference(alice, mlp, upload(alice, "in.h5", h5_of({"x": mlp_inputs})), this_device)
    made = Dataset.objects.get(produced_by=job)
    url = f"/api/v1/datasets/{made.public_id}/"
    assert made in datasets_visible_to(alice)
    assert made not in datasets_visible_to(bob)
    assert factories.api(bob).get(url).status_code == 404
    sharing_modify(target=job, actor=alice, add_emails=["bob@example.com"])
    assert made in datasets_visible_to(bob) and job in jobs_visible_to(bob)
    answer = factories.api(bob).get(url)
    assert answer.status_code == 200
    data = answer.json()
    assert (data["produced_by"], data["format"], data["owner"]) == (
        job.public_id,
        "tensors",
        "alice",
    )
    assert data["metadata"]["entries"][0]["name"] == "y"
    assert factories.api(bob).get(f"{url}download/").status_code == 200
    assert made not in datasets_visible_to(charlie)
    assert factories.api(charlie).get(url).status_code == 404
    assert factories.api(charlie).get(f"{url}download/").status_code == 404
    listed = [d["id"] for d in factories.api(charlie).get("/api/v1/datasets/").json()["results"]]
    assert made.public_id not in listed
    sharing_modify(target=job, actor=alice, delete_emails=["bob@example.com"])
    assert made not in datasets_visible_to(bob)  # revoked: at once


def test_an_uploaded_dataset_says_it_was_made_by_no_job(alice, mlp_inputs):
    inputs = upload(alice, "in.h5", h5_of({"x": mlp_inputs}))
    data = factories.api(alice).get(f"/api/v1/datasets/{inputs.public_id}/").json()
    assert data["produced_by"] is None
    assert data["metadata"]["entries"] == [
        {"name": "x", "dtype": "float32", "shapes": [[1, 8], [2, 8], [5, 8]]}
    ]


def test_a_requeued_job_keeps_one_output_dataset(alice, this_device, mlp, mlp_inputs, tmp_path):
    """A lost attempt that had stored its outputs leaves no second dataset behind."""
    from jobs.domain.state import job_transition
    from jobs.engine.reaper import _release
    from jobs.engine.reporter import Reporter

    inputs = upload(alice, "in.h5", h5_of({"x": mlp_inputs}))
    job = job_submit_inference(owner=alice, model=mlp, device=this_device, inputs=inputs)
    job, token = factories.claimed(job)
    lost = tmp_path / "output_data.h5"
    lost.write_bytes(h5_of({"y": [np.zeros((1, 4), np.float32)]}))
    Reporter(job, token).produced_dataset(lost, "lost attempt", {"samples": 1, "entries": []})
    stored = Path(Dataset.objects.get(produced_by=job).file.path)
    _release(job)
    job_transition(job=job, to=JobStatus.PENDING, message="requeued")
    job = factories.run_here(job)
    assert job.status == JobStatus.READY, job.failure_message
    (made,) = Dataset.objects.filter(produced_by=job)
    assert made.num_records == 3 and not stored.exists()


def test_the_client_sends_a_dict_of_arrays_and_downloads_the_outputs_as_seed_000s(
    hub_here, this_device, mlp, mlp_inputs, tmp_path
):
    from hubclient import InferenceJob

    job = hub_here.submit_inference_job(mlp.public_id, this_device.name, {"x": mlp_inputs})
    assert isinstance(job, InferenceJob) and job.kind == "inference"
    factories.run_here(Job.objects.get(public_id=job.job_id))
    outputs = job.download_output_data()
    assert isinstance(outputs, dict) and list(outputs) == ["y"]
    for sample, got in zip(mlp_inputs, outputs["y"], strict=True):
        np.testing.assert_allclose(got, directly(mlp, {"x": sample})[0], rtol=1e-6, atol=0)
    saved = job.download_output_data(str(tmp_path / "outputs.h5"))
    with h5py.File(saved, "r") as h5f:
        theirs = h5_to_dataset_entries(h5f)
    for ours, read in zip(outputs["y"], theirs["y"], strict=True):
        np.testing.assert_array_equal(ours, read)


def test_sharing_a_job_run_on_another_jobs_outputs_shares_that_job_but_not_past_its_owner(
    alice, bob, charlie, this_device, mlp, mlp_inputs
):
    """Seed 000: an inference job shares the jobs whose outputs it ran on. Alice's job B ran on
    the outputs of her job A; sharing B with Bob gives him A and its outputs. Bob's own job C on
    those outputs, shared with Charlie, gives Charlie C only: never Alice's A or its outputs."""
    from jobs.domain.selectors import datasets_visible_to, jobs_visible_to
    from sharing.services import sharing_modify

    first = run_inference(alice, mlp, upload(alice, "in.h5", h5_of({"x": mlp_inputs})), this_device)
    made = Dataset.objects.get(produced_by=first)
    softmax = upload_model(alice, softmax_of_y(), "softmax")
    second = run_inference(alice, softmax, made, this_device)
    assert first not in jobs_visible_to(bob)
    sharing_modify(target=second, actor=alice, add_emails=[bob.email])
    assert {first, second} <= set(jobs_visible_to(bob))
    assert made in datasets_visible_to(bob)

    bobs_model = upload_model(bob, softmax_of_y(), "bob's softmax")
    third = run_inference(bob, bobs_model, made, this_device)
    sharing_modify(target=third, actor=bob, add_emails=[charlie.email])
    assert set(jobs_visible_to(charlie)) == {third}
    assert made not in datasets_visible_to(charlie)


def test_deleting_an_inference_job_removes_its_output_data_unless_another_job_ran_on_it(
    alice, this_device, mlp, mlp_inputs, django_capture_on_commit_callbacks
):
    from jobs.services.deletion import job_delete, plan_job

    inputs = upload(alice, "in.h5", h5_of({"x": mlp_inputs}))
    alone = run_inference(alice, mlp, inputs, this_device)
    made = Dataset.objects.get(produced_by=alone)
    path = Path(made.file.path)
    assert any(f"its output data {made.name} ({made.public_id}" in g for g in plan_job(alone).goes)
    with django_capture_on_commit_callbacks(execute=True):
        job_delete(job=alone)
    assert not Dataset.objects.filter(pk=made.pk).exists() and not path.exists()

    used = run_inference(alice, mlp, inputs, this_device)
    kept = Dataset.objects.get(produced_by=used)
    run_inference(alice, upload_model(alice, softmax_of_y(), "softmax"), kept, this_device)
    assert any("which other jobs ran on" in k for k in plan_job(used).kept)
    with django_capture_on_commit_callbacks(execute=True):
        job_delete(job=used)
    kept.refresh_from_db()
    assert kept.produced_by is None and kept.metadata["made_by_deleted_job"] == used.name
    assert Path(kept.file.path).exists()


def test_an_output_datasets_page_says_who_reads_it_through_the_job_that_made_it(
    alice, bob, this_device, mlp, mlp_inputs
):
    from jobs.domain.lineage import access_of, lineage_of
    from sharing.services import sharing_modify

    job = run_inference(alice, mlp, upload(alice, "in.h5", h5_of({"x": mlp_inputs})), this_device)
    made = Dataset.objects.get(produced_by=job)
    assert access_of(alice, made).readers == []
    sharing_modify(target=job, actor=alice, add_emails=[bob.email])
    assert [g.email for g in access_of(alice, made).readers] == [bob.email]
    assert [j.pk for j in access_of(bob, made).through] == [job.pk]
    assert lineage_of(bob, made).producer == job
