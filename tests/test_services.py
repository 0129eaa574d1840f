"""Writes through the services: uploads, submissions, rename, cancel, resubmit. A refusal names
what is wrong and leaves nothing behind."""

from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile

from jobs.demo import numbers_dataset, tiny_mlp_onnx
from jobs.domain.state import job_transition
from jobs.domain.status import InvalidTransition, JobStatus
from jobs.models import Dataset, Job, JobKind, MLModel
from jobs.services.assets import dataset_upload, model_upload
from jobs.services.jobs import (
    job_cancel,
    job_rename,
    job_resubmit,
    job_submit_customization,
    job_submit_link,
)
from tests import factories


def _stored_files() -> list[Path]:
    return [p for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file()]


def test_model_upload_stores_a_valid_onnx_model_with_its_hash_and_graph(alice):
    data = tiny_mlp_onnx(name="clf", seed=3)
    model = model_upload(owner=alice, file=ContentFile(data, "clf.onnx"))
    assert model.public_id.startswith("m")
    assert len(model.public_id) == 9
    assert (model.name, model.format, model.size) == ("clf", "onnx", len(data))
    import hashlib

    assert model.sha256 == hashlib.sha256(data).hexdigest()
    assert model.metadata["inputs"] == ["x"]
    assert model.metadata["outputs"] == ["y"]
    assert Path(model.file.path).read_bytes() == data


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"this is not a model", "not a valid ONNX model"),
        (b"", "is empty"),
    ],
)
def test_model_upload_refuses_what_is_not_onnx_and_keeps_nothing(alice, content, words):
    with pytest.raises(ValidationError) as caught:
        model_upload(owner=alice, file=ContentFile(content, "weights.onnx"))
    assert "weights.onnx" in caught.value.message_dict["file"][0]
    assert words in caught.value.message_dict["file"][0]
    assert not MLModel.objects.exists()
    assert _stored_files() == []


def _relu_model(*, ir: int | None = None, opset: int | None = None) -> bytes:
    """A one-node model as the ``onnx`` package writes it: its newest IR and opset by default."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    imports = None if opset is None else [helper.make_opsetid("", opset)]
    model = helper.make_model(graph, opset_imports=imports)
    if ir is not None:
        model.ir_version = ir
    return model.SerializeToString()


def test_an_ir_version_too_new_for_onnxruntime_is_lowered_and_the_model_loads(alice):
    import hashlib

    import numpy as np
    import onnx
    import onnxruntime as ort

    from jobs.domain.onnx_runtime import runtime

    supported = runtime()
    data = _relu_model(ir=onnx.IR_VERSION, opset=supported.max_opset)
    assert supported.max_ir < onnx.IR_VERSION  # what this test is about: the onnx package is ahead
    model = model_upload(owner=alice, file=ContentFile(data, "new.onnx"))
    stored = Path(model.file.path).read_bytes()
    assert onnx.load_from_string(stored).ir_version == supported.max_ir
    assert model.metadata["ir_version_uploaded"] == onnx.IR_VERSION
    assert model.metadata["ir_version"] == supported.max_ir
    assert (model.sha256, model.size) == (hashlib.sha256(stored).hexdigest(), len(stored))
    session = ort.InferenceSession(stored, providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"x": np.array([[-1, 2, -3, 4]], dtype=np.float32)})
    assert out.tolist() == [[0, 2, 0, 4]]


def test_a_model_onnxruntime_cannot_load_is_refused_saying_how_to_convert_it(alice):
    import onnx

    from jobs.domain.onnx_runtime import runtime

    supported = runtime()
    newest = onnx.defs.onnx_opset_version()
    assert newest > supported.max_opset
    with pytest.raises(ValidationError) as caught:
        model_upload(owner=alice, file=ContentFile(_relu_model(), "default.onnx"))
    message = caught.value.message_dict["file"][0]
    assert message.startswith(
        f"default.onnx cannot be loaded by ONNX Runtime {supported.version}, which compile, "
        "profile, inference and link jobs run on"
    )
    assert f"IR version {onnx.IR_VERSION}, opsets ai.onnx {newest}" in message
    # The cause (its IR version alone is lowered: the opset is what stays too new), then how.
    assert (
        f": its ai.onnx opset {newest} is newer than the {supported.max_opset} ONNX Runtime "
        "supports." in message
    )
    assert f"opsets 7 to {supported.max_opset}" in message
    assert f"IR versions up to {supported.max_ir}" in message
    assert "convert_version" in message and "onnxruntime_src" not in message
    assert not MLModel.objects.exists()
    assert _stored_files() == []


def _one_node_model(op: str, domain: str = "", opsets: tuple[tuple[str, int], ...] = ()) -> bytes:
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    node = helper.make_node(op, ["x"], ["y"], name="act", domain=domain)
    imports = [helper.make_opsetid(d, v) for d, v in (("", 17), *opsets)]
    model = helper.make_model(helper.make_graph([node], "g", [x], [y]), opset_imports=imports)
    model.ir_version = 9
    return model.SerializeToString()


@pytest.mark.parametrize(
    ("data", "cause"),
    [
        (
            _one_node_model("Frobnicate", "com.example", (("com.example", 1),)),
            "op Frobnicate is of domain com.example, which ONNX Runtime does not know: its ops "
            "are custom ops, which run only where the library that implements them is "
            "registered, and this hub registers none. Export the model with ONNX's standard ops.",
        ),
        (
            _one_node_model("Frobnicate", "com.microsoft", (("com.microsoft", 1),)),
            "ONNX Runtime's domain com.microsoft has no op Frobnicate.",
        ),
    ],
    ids=["custom-op domain", "op its known domain lacks"],
)
def test_a_model_with_an_op_onnxruntime_lacks_is_refused_naming_it_without_opset_advice(
    alice, data, cause
):
    with pytest.raises(ValidationError) as caught:
        model_upload(owner=alice, file=ContentFile(data, "custom.onnx"))
    message = caught.value.message_dict["file"][0]
    assert message.startswith("custom.onnx cannot be loaded by ONNX Runtime ")
    assert message.endswith(f"(IR version 9, opsets {_opsets(data)}): {cause}"), message
    assert "convert_version" not in message and "opset_version" not in message
    assert not MLModel.objects.exists()


def _opsets(data: bytes) -> str:
    import onnx

    imports = onnx.load_from_string(data).opset_import
    return ", ".join(f"{i.domain or 'ai.onnx'} {i.version}" for i in imports)


def test_model_upload_refuses_a_truncated_onnx_model(alice):
    data = tiny_mlp_onnx(name="clf", seed=3)
    with pytest.raises(ValidationError, match="not a valid ONNX model"):
        model_upload(owner=alice, file=ContentFile(data[: len(data) // 2], "cut.onnx"))


def test_model_upload_refuses_a_file_over_the_size_limit(alice, settings):
    settings.HUB_MAX_UPLOAD_BYTES = 100
    with pytest.raises(ValidationError, match="the limit is 100 bytes"):
        model_upload(owner=alice, file=ContentFile(tiny_mlp_onnx(name="big", seed=1), "big.onnx"))


def test_dataset_upload_counts_its_records(alice):
    dataset = dataset_upload(owner=alice, file=ContentFile(numbers_dataset(0, 12), "n.jsonl"))
    assert (dataset.num_records, dataset.name) == (12, "n")


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (
            b'{"prompt": "1", "completion": "one"}\n{"prompt": "2", "completion": \n',
            "line 2: not JSON",
        ),
        (b'{"prompt": "1", "completion": "one"}\n[1, 2]\n', "line 2: expected a JSON object"),
        (b'{"prompt": "1"}\n', "line 1: 'completion' must be a non-empty string"),
        (b'{"prompt": "", "completion": "x"}\n', "line 1: 'prompt' must be a non-empty string"),
        (b"\n\n  \n", "has no records"),
        (b'{"prompt": "\xff", "completion": "x"}\n', "line 1: not UTF-8 text"),
    ],
)
def test_dataset_upload_names_the_line_at_fault_and_keeps_nothing(alice, content, words):
    with pytest.raises(ValidationError) as caught:
        dataset_upload(owner=alice, file=ContentFile(content, "train.jsonl"))
    message = caught.value.message_dict["file"][0]
    assert "train.jsonl" in message
    assert words in message
    assert not Dataset.objects.exists()
    assert _stored_files() == []


def test_link_job_keeps_its_models_in_order(alice, this_device):
    models = [factories.onnx_model(alice, f"m{i}", seed=i) for i in range(3)]
    job = job_submit_link(owner=alice, models=models[::-1], device=this_device.name)
    assert job.device == this_device
    assert job.kind == JobKind.LINK
    assert job.status == JobStatus.CREATED
    assert [ji.model for ji in job.job_inputs.all()] == models[::-1]
    assert job.name == "Link m2 + m1 + m0"


def test_link_job_refuses_a_model_its_submitter_may_not_read(alice, charlie):
    theirs = factories.onnx_model(charlie, "secret")
    with pytest.raises(ValidationError) as caught:
        job_submit_link(owner=alice, models=[factories.onnx_model(alice), theirs])
    assert caught.value.message_dict["models"] == [f"No model {theirs.public_id} that you may use."]
    assert not Job.objects.exists()


def test_link_job_needs_a_model(alice):
    with pytest.raises(ValidationError, match="at least one model"):
        job_submit_link(owner=alice, models=[])


def test_customization_job_defaults_to_the_builtin_model(alice):
    job = factories.customization_job(alice)
    assert job.builtin_base_model == "tiny-llama"
    assert (job.hyperparameters["epochs"], job.hyperparameters["finetuning_type"]) == (5, "lora")


def test_customization_job_refuses_bad_hyperparameters_and_creates_nothing(alice):
    data = factories.dataset(alice)
    with pytest.raises(ValidationError) as caught:
        job_submit_customization(owner=alice, dataset=data, hyperparameters={"batch_size": 0})
    assert "hyperparameters.batch_size" in caught.value.message_dict  # named as the API names it
    assert not Job.objects.exists()


def test_customization_job_refuses_an_unknown_builtin_model(alice):
    with pytest.raises(
        ValidationError, match="No base model 'gpt-9' on this hub; offered: tiny-llama"
    ):
        job_submit_customization(owner=alice, dataset=factories.dataset(alice), base_model="gpt-9")


def test_customization_job_refuses_a_dataset_of_a_stranger(alice, charlie):
    theirs = factories.dataset(charlie)
    with pytest.raises(ValidationError) as caught:
        job_submit_customization(owner=alice, dataset=theirs)
    assert caught.value.message_dict["dataset"] == [
        f"No dataset {theirs.public_id} that you may use."
    ]


def test_customization_job_refuses_an_onnx_model_as_a_base(alice):
    with pytest.raises(ValidationError, match="is ONNX; customization fine-tunes a Hugging Face"):
        job_submit_customization(
            owner=alice, dataset=factories.dataset(alice), base_model=factories.onnx_model(alice)
        )


def test_a_single_record_cannot_be_split_for_validation(alice):
    one = factories.dataset(alice, records=1)
    with pytest.raises(ValidationError, match="at least 2 records"):
        job_submit_customization(owner=alice, dataset=one)
    assert job_submit_customization(owner=alice, dataset=one, validation_dataset=one).pk


def test_rename_validates_the_name(alice):
    job = factories.link_job(alice)
    assert job_rename(job=job, name="  better name ").name == "better name"
    for bad, words in (("", "cannot be empty"), ("x" * 201, "at most 200"), ("a\nb", "control")):
        with pytest.raises(ValidationError, match=words):
            job_rename(job=job, name=bad)
    job.refresh_from_db()
    assert job.name == "better name"


def test_cancelling_a_job_no_worker_has_yet_cancels_it_at_once(alice):
    job = factories.link_job(alice)
    assert job_cancel(job=job).status == JobStatus.CANCELLED


def test_cancelling_a_running_job_asks_the_worker_to_stop(alice):
    job = factories.link_job(alice)
    for status in (JobStatus.PENDING, JobStatus.RUNNING):
        job_transition(job=job, to=status, message=str(status))
    assert job_cancel(job=job).status == JobStatus.CANCELLING
    with pytest.raises(InvalidTransition):
        job_cancel(job=job)


def test_resubmit_clones_a_finished_job_with_the_same_inputs(alice):
    job = factories.customization_job(alice, epochs=2)
    with pytest.raises(ValidationError, match="only a finished job"):
        job_resubmit(job=job, owner=alice)
    job_cancel(job=job)
    clone = job_resubmit(job=job, owner=alice)
    assert clone.pk != job.pk
    assert clone.public_id != job.public_id
    assert (clone.dataset, clone.hyperparameters, clone.resubmitted_from) == (
        job.dataset,
        job.hyperparameters,
        job,
    )
    assert clone.status == JobStatus.CREATED


def test_resubmit_runs_a_compile_profile_or_inference_job_again_as_it_was_asked(alice, this_device):
    """Each kind again, on the device it named, with its options, input specs, inputs and
    profile flag (before, any kind but link was resubmitted as a customization, or failed)."""
    import numpy as np

    from jobs.services.device_jobs import (
        job_submit_compile,
        job_submit_inference,
        job_submit_profile,
    )
    from tests.test_inference import h5_of
    from tests.test_inference_profile import BATCH, fixed_conv

    conv = fixed_conv(alice)
    signal = np.zeros((BATCH, 3, 16), np.float32)
    inputs = dataset_upload(owner=alice, file=ContentFile(h5_of({"signal": [signal]}), "s.h5"))
    asked = [
        job_submit_compile(
            owner=alice,
            model=factories.onnx_model(alice, "mlp", seed=1),
            device=this_device,
            input_specs={"x": [1, 8]},
            options="--quantize_full_type float16",
            time_limit=600,
        ),
        job_submit_profile(
            owner=alice, model=conv, device="any", options="--max_profiler_iterations 7"
        ),
        job_submit_inference(
            owner=alice, model=conv, device=this_device, inputs=inputs, profile=True
        ),
    ]
    for job in asked:
        job_cancel(job=job)
        clone = job_resubmit(job=job, owner=alice)
        assert clone.pk != job.pk and clone.resubmitted_from == job
        assert (clone.kind, clone.device, clone.dataset, clone.time_limit) == (
            job.kind,
            job.device,
            job.dataset,
            job.time_limit,
        )
        assert clone.hyperparameters == job.hyperparameters
        assert [ji.model for ji in clone.job_inputs.all()] == [
            ji.model for ji in job.job_inputs.all()
        ]


def test_job_url_is_absolute(alice, settings):
    settings.HUB_BASE_URL = "https://hub.example.com"
    job = factories.link_job(alice)
    assert job.url == f"https://hub.example.com/jobs/{job.public_id}/"


def test_the_same_bytes_uploaded_again_are_stored_once_and_said_so(alice, bob, client):
    """Owner, again: the first upload is returned and marked; another person's identical
    upload is their own (nothing of Alice's is handed to Bob)."""
    data = tiny_mlp_onnx(name="same", seed=9)
    first = model_upload(owner=alice, file=ContentFile(data, "a.onnx"))
    again = model_upload(owner=alice, file=ContentFile(data, "b.onnx"), name="other name")
    assert again.pk == first.pk and getattr(again, "already_uploaded", False)
    assert MLModel.objects.filter(owner=alice).count() == 1
    assert len(_stored_files()) == 1
    bobs = model_upload(owner=bob, file=ContentFile(data, "a.onnx"))
    assert bobs.pk != first.pk and bobs.owner == bob
    rows = numbers_dataset(0, 30)
    d1 = dataset_upload(owner=alice, file=ContentFile(rows, "n.jsonl"))
    d2 = dataset_upload(owner=alice, file=ContentFile(rows, "copy.jsonl"))
    assert d1.pk == d2.pk and Dataset.objects.filter(owner=alice).count() == 1
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_authenticate(alice)
    answer = api.post("/api/v1/datasets/", {"file": ContentFile(rows, "third.jsonl")})
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["already_uploaded"] is True and body["id"] == d1.public_id
    assert (
        body["message"] == f"Already uploaded as dataset {d1.public_id} ({d1.name}): stored once."
    )
    fresh = api.post("/api/v1/datasets/", {"file": ContentFile(numbers_dataset(0, 31), "x.jsonl")})
    assert fresh.status_code == 201 and fresh.json()["already_uploaded"] is False
    client.force_login(alice)
    page = client.post(
        "/jobs/upload/model/", {"file": ContentFile(data, "c.onnx"), "name": ""}, follow=True
    )
    assert f"Already uploaded as model {first.name} ({first.public_id})" in page.content.decode()


def test_a_gpu_precision_without_a_gpu_names_the_hardware_asked_for_by_its_value(alice):
    dataset = factories.dataset(alice, records=10)
    for asked, shown in ((None, "'any'"), ("cpu", "'cpu'")):
        with pytest.raises(ValidationError) as refused:
            job_submit_customization(
                owner=alice, dataset=dataset, hyperparameters={"precision": "bf16"}, hardware=asked
            )
        message = refused.value.message_dict["hyperparameters.precision"][0]
        assert f"this job asks for hardware {shown}." in message
        assert "Hardware." not in message  # an enum's repr is no word for a person
