"""Compile jobs, run for real: ONNX models (helper-built, a torch export with its data file, a
tiny Hugging Face Llama exported here) made into target models on this machine's ONNX Runtime,
fp16 and int8, each target loaded and its outputs compared with the source's; and every bad
input refused, at submit or as a failure naming its cause."""

from __future__ import annotations

import io
import zipfile
from contextlib import closing
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
from qai_hub.util.dataset_entries_converters import dataset_entries_to_h5

from jobs.demo import tiny_mlp_onnx
from jobs.domain import onnx_runtime
from jobs.domain.status import FailureType, JobStatus
from jobs.engine.compiling import CompileFailure, checks
from jobs.models import Dataset, Job, MLModel, ModelFormat
from jobs.services.assets import dataset_upload, model_upload
from jobs.services.device_jobs import job_submit_compile
from tests import factories, hf_samples, onnx_samples

pytestmark = pytest.mark.django_db(transaction=True)  # the worker's heartbeat thread writes too

MLP_SPECS = {"x": [2, 8]}


def mlp(owner: Any, seed: int = 1) -> MLModel:
    return factories.onnx_model(owner, f"mlp{seed}", seed=seed)


def upload_onnx(owner: Any, model: onnx.ModelProto, name: str) -> MLModel:
    return model_upload(owner=owner, file=ContentFile(model.SerializeToString(), f"{name}.onnx"))


def h5_dataset(owner: Any, entries: dict[str, list[np.ndarray]], name: str = "calib") -> Dataset:
    """An h5 file as seed 000's client writes it (its own converter), uploaded."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as h5f:
        dataset_entries_to_h5(entries, h5f)
    return dataset_upload(owner=owner, file=ContentFile(buffer.getvalue(), f"{name}.h5"))


def compiled(owner: Any, model: MLModel, device: Any, **submit: Any) -> Job:
    job = job_submit_compile(owner=owner, model=model, device=device, **submit)
    return factories.run_here(job)


def target_session(job: Job, workdir: Path) -> ort.InferenceSession:
    """The stored target, loaded as a user who downloads it would load it."""
    assert job.target_model is not None
    stored = Path(job.target_model.file.path)
    if stored.suffix == ".zip":
        with zipfile.ZipFile(stored) as archive:
            archive.extractall(workdir)
        stored = workdir / "model.onnx"
    return ort.InferenceSession(str(stored), providers=["CPUExecutionProvider"])


def target_proto(job: Job) -> onnx.ModelProto:
    assert job.target_model is not None
    return onnx.load(job.target_model.file.path, load_external_data=False)


def fixed_shapes(values: Any) -> list[list[int]]:
    shapes = [[d.dim_value if d.HasField("dim_value") else d.dim_param for d in
               v.type.tensor_type.shape.dim] for v in values]  # fmt: skip
    assert all(isinstance(d, int) and d > 0 for shape in shapes for d in shape), shapes
    return shapes


def source_outputs(data: bytes, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, inputs)


def log_of(job: Job) -> str:
    return "\n".join(job.log_lines.order_by("number").values_list("text", flat=True))


def failure_of(job: Job) -> tuple[str, str]:
    entry = job.status_logs.order_by("-updated_at", "-id").first()
    assert entry is not None
    return str(job.failure_type), entry.message


# Float16


def test_a_model_compiled_to_fp16_records_its_largest_difference(alice, this_device, tmp_path):
    model = mlp(alice)
    job = compiled(
        alice, model, this_device, input_specs=MLP_SPECS,
        options="--target_runtime onnx --quantize_full_type float16",
    )  # fmt: skip
    assert job.status == JobStatus.READY, failure_of(job)
    summary = job.summary
    assert summary["target_runtime"] == "onnx"
    assert (summary["quantize_full_type"], summary["calibration"]) == ("float16", None)
    assert summary["quantize_io"] is False
    assert summary["input_specs"] == {"x": {"shape": [2, 8], "dtype": "float32"}}
    assert summary["providers"] == ["CPUExecutionProvider"]
    assert summary["compared_samples"] == checks.RANDOM_SAMPLES
    assert set(summary["max_abs_difference"]) == {"y"}
    assert summary["largest_difference"] == summary["max_abs_difference"]["y"]
    # float16 keeps about three decimal digits: a real difference, small beside the outputs.
    x = np.random.default_rng(checks.RANDOM_SEED).standard_normal((2, 8)).astype(np.float32)
    (expected,) = source_outputs(tiny_mlp_onnx(name="mlp1", seed=1), {"x": x})
    assert 0 < summary["largest_difference"] < 5e-3 * float(np.abs(expected).max())
    assert summary["source_size"] == model.size
    # Half the weights' bytes: the target is smaller than the source.
    assert summary["target_size"] == job.target_model.size < model.size

    proto = target_proto(job)
    assert {t.data_type for t in proto.graph.initializer} == {TensorProto.FLOAT16}
    assert fixed_shapes(proto.graph.input) == [[2, 8]]
    assert fixed_shapes(proto.graph.output) == [[2, 4]]
    assert proto.ir_version <= onnx_runtime.runtime().max_ir
    session = target_session(job, tmp_path)
    assert [i.type for i in session.get_inputs()] == ["tensor(float)"]  # io types kept
    (actual,) = session.run(None, {"x": x})
    assert np.abs(actual - expected).max() <= summary["largest_difference"] + 1e-6
    assert job.target_model.format == ModelFormat.ONNX
    assert job.target_model.metadata["compiled_with"]["quantize_full_type"] == "float16"
    assert job.target_model.metadata["input_specs"]["x"]["shape"] == [2, 8]
    log = log_of(job)
    for stage in ("Input shapes fixed: x [2, 8]", "basic level", "float16", "Loading the target"):
        assert stage in log


def test_quantize_io_makes_the_inputs_and_outputs_float16(alice, this_device, tmp_path):
    job = compiled(
        alice, mlp(alice), this_device, input_specs=MLP_SPECS,
        options="--quantize_full_type float16 --quantize_io",
    )  # fmt: skip
    assert job.status == JobStatus.READY, failure_of(job)
    assert job.summary["quantize_io"] is True
    session = target_session(job, tmp_path)
    assert [i.type for i in session.get_inputs()] == ["tensor(float16)"]
    assert [o.type for o in session.get_outputs()] == ["tensor(float16)"]
    assert 0 < job.summary["largest_difference"] < 0.1


def test_outputs_past_float16s_range_fail_naming_the_output(alice, this_device):
    # Scaled by 1e5 (the converter clamps the weight to 65504): past float16's range for any
    # input beyond 1, which a float16 output cannot hold.
    big = numpy_helper.from_array(np.full((3,), 1e5, np.float32), "scale")
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "scale"], ["scaled"])],
        "scale",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("scaled", TensorProto.FLOAT, [1, 3])],
        initializer=[big],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    job = compiled(
        alice, upload_onnx(alice, model, "scale"), this_device,
        options="--quantize_full_type float16 --quantize_io",
    )  # fmt: skip
    assert job.status == JobStatus.FAILED
    failure_type, message = failure_of(job)
    assert failure_type == FailureType.INVALID_MODEL
    assert "'scaled'" in message and "65504" in message


# Int8


def test_int8_calibrated_with_a_seed_000_h5_dataset_is_static(alice, this_device, tmp_path):
    rng = np.random.default_rng(7)
    samples = [rng.standard_normal((2, 8)).astype(np.float32) for _ in range(6)]
    calibration = h5_dataset(alice, {"x": samples})
    job = compiled(
        alice, mlp(alice), this_device, input_specs=MLP_SPECS,
        options="--quantize_full_type int8", calibration_data=calibration,
    )  # fmt: skip
    assert job.status == JobStatus.READY, failure_of(job)
    assert (job.summary["quantize_full_type"], job.summary["calibration"]) == ("int8", "static")
    assert job.summary["compared_samples"] == 6  # compared on the calibration samples
    expected = [source_outputs(tiny_mlp_onnx(name="mlp1", seed=1), {"x": x})[0] for x in samples]
    scale = max(float(np.abs(e).max()) for e in expected)
    assert 0 < job.summary["largest_difference"] < 0.05 * scale
    proto = target_proto(job)
    ops = {n.op_type for n in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert fixed_shapes(proto.graph.input) == [[2, 8]]
    session = target_session(job, tmp_path)
    worst = max(
        float(np.abs(session.run(None, {"x": x})[0] - e).max())
        for x, e in zip(samples, expected, strict=True)
    )
    assert worst == pytest.approx(job.summary["largest_difference"], rel=1e-5, abs=1e-7)
    assert "static, calibrated on 6 samples" in log_of(job)


def test_int8_without_calibration_data_is_dynamic(alice, this_device):
    job = compiled(
        alice, mlp(alice), this_device, input_specs=MLP_SPECS, options="--quantize_full_type int8"
    )
    assert job.status == JobStatus.READY, failure_of(job)
    assert job.summary["calibration"] == "dynamic"
    assert "MatMulInteger" in {n.op_type for n in target_proto(job).graph.node}
    x = np.random.default_rng(checks.RANDOM_SEED).standard_normal((2, 8)).astype(np.float32)
    (expected,) = source_outputs(tiny_mlp_onnx(name="mlp1", seed=1), {"x": x})
    assert 0 < job.summary["largest_difference"] < 0.05 * float(np.abs(expected).max())


def test_int8_of_a_model_with_nothing_to_quantize_fails_naming_its_ops(alice, this_device):
    graph = helper.make_graph(
        [helper.make_node("Sin", ["x"], ["y"])],
        "sine",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    job = compiled(
        alice, upload_onnx(alice, model, "sine"), this_device, options="--quantize_full_type int8"
    )
    assert job.status == JobStatus.FAILED
    failure_type, message = failure_of(job)
    assert failure_type == FailureType.INVALID_MODEL
    assert "nothing to quantize" in message and "Sin" in message
    assert job.target_model is None


# Shapes and sources


def test_input_specs_fix_the_dynamic_batch_of_a_torch_export_with_its_data_file(
    alice, this_device, tmp_path
):
    folder = onnx_samples.torch_mlp_export(tmp_path / "export").parent
    archive = onnx_samples.zipped(folder, tmp_path / "mlp.zip")
    model = model_upload(owner=alice, file=ContentFile(archive.read_bytes(), "mlp.zip"))
    assert model.file.name.endswith(".zip")  # stored with its data file
    job = compiled(alice, model, this_device, input_specs={"x": [3, 16]}, options="")
    assert job.status == JobStatus.READY, failure_of(job)
    assert job.summary["quantize_full_type"] is None
    assert job.summary["input_specs"] == {"x": {"shape": [3, 16], "dtype": "float32"}}
    # Only graph rewrites: the same numbers, up to float rounding.
    assert job.summary["largest_difference"] < 1e-5
    proto = target_proto(job)  # small enough for one file: its weights are inside
    assert not job.target_model.metadata["external_data"]
    assert fixed_shapes(proto.graph.input) == [[3, 16]]
    assert fixed_shapes(proto.graph.output) == [[3, 4]]
    session = target_session(job, tmp_path / "unpacked")
    x = np.ones((3, 16), np.float32)
    reference = ort.InferenceSession(str(folder / "mlp.onnx"), providers=["CPUExecutionProvider"])
    assert np.allclose(session.run(None, {"x": x})[0], reference.run(None, {"x": x})[0], atol=1e-5)
    # ONNX Runtime's import of every domain it knows is not kept: only what the nodes use.
    assert {i.domain for i in proto.opset_import} <= {"", "ai.onnx"}


def test_a_hugging_face_model_is_exported_and_compiled(alice, this_device, tmp_path):
    model = model_upload(owner=alice, file=ContentFile(hf_samples.tiny_llama_zip(), "llama.zip"))
    assert model.format == ModelFormat.HF
    job = compiled(
        alice, model, this_device, input_specs={"input_ids": [1, 6]},
        options="--target_runtime onnx",
    )  # fmt: skip
    assert job.status == JobStatus.READY, failure_of(job)
    assert job.summary["input_specs"] == {"input_ids": {"shape": [1, 6], "dtype": "int64"}}
    assert job.summary["largest_difference"] < 1e-4
    vocab = model.metadata["vocab_size"]
    proto = target_proto(job)
    assert fixed_shapes(proto.graph.input) == [[1, 6]]
    assert fixed_shapes(proto.graph.output) == [[1, 6, vocab]]
    session = target_session(job, tmp_path)
    ids = np.arange(6, dtype=np.int64).reshape(1, 6) % vocab
    (logits,) = session.run(None, {"input_ids": ids})
    assert logits.shape == (1, 6, vocab) and np.isfinite(logits).all()
    assert "Exporting" in log_of(job)


# Refused at submit


def test_a_model_with_dynamic_dims_and_no_input_specs_is_refused_naming_the_input(
    alice, this_device
):
    with pytest.raises(ValidationError) as refused:
        job_submit_compile(owner=alice, model=mlp(alice), device=this_device)
    message = refused.value.message_dict["input_specs"][0]
    assert "x [batch, 8]" in message and "'x': [1, 8]" in message
    assert not Job.objects.exists()


def test_a_hugging_face_model_without_input_specs_is_refused_naming_input_ids(alice, this_device):
    model = model_upload(owner=alice, file=ContentFile(hf_samples.tiny_llama_zip(), "l.zip"))
    with pytest.raises(ValidationError) as refused:
        job_submit_compile(owner=alice, model=model, device=this_device)
    assert "input_ids [batch, sequence]" in refused.value.message_dict["input_specs"][0]


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ("--target_runtime tflite", "--target_runtime tflite is made by seed 000's hosted"),
        ("--target_runtime qnn_context_binary", "take --target_runtime onnx"),
        ("--quantize_full_type w8a16", "--quantize_full_type float16 or int8"),
        ("--fold_constants", "--fold_constants is not an option of a compile job"),
        ("--quantize_io", "--quantize_io makes the inputs and outputs float16"),
        ("--quantize_full_type int8 --quantize_io", "cannot make them int8"),
    ],
)
def test_options_the_hub_cannot_honour_are_refused_by_name(alice, this_device, options, words):
    with pytest.raises(ValidationError) as refused:
        job_submit_compile(
            owner=alice, model=mlp(alice), device=this_device, input_specs=MLP_SPECS,
            options=options,
        )  # fmt: skip
    assert words in refused.value.message_dict["options"][0]


def test_calibration_data_without_int8_is_refused(alice, this_device):
    calibration = h5_dataset(alice, {"x": [np.zeros((2, 8), np.float32)]})
    with pytest.raises(ValidationError) as refused:
        job_submit_compile(
            owner=alice, model=mlp(alice), device=this_device, input_specs=MLP_SPECS,
            options="--quantize_full_type float16", calibration_data=calibration,
        )  # fmt: skip
    assert "--quantize_full_type int8" in refused.value.message_dict["calibration_data"][0]


def test_calibration_data_that_does_not_fit_the_inputs_is_refused_naming_them(alice, this_device):
    wrong_shape = h5_dataset(alice, {"x": [np.zeros((4, 8), np.float32)]}, "shape")
    wrong_name = h5_dataset(alice, {"pixels": [np.zeros((2, 8), np.float32)]}, "name")
    for calibration, words in (
        (wrong_shape, "'x' sample 0 has shape [4, 8], the model takes [2, 8]"),
        (wrong_name, "missing 'x'; 'pixels' not an input of the model"),
    ):
        with pytest.raises(ValidationError) as refused:
            job_submit_compile(
                owner=alice, model=mlp(alice), device=this_device, input_specs=MLP_SPECS,
                options="--quantize_full_type int8", calibration_data=calibration,
            )  # fmt: skip
        assert words in refused.value.message_dict["calibration_data"][0]


def test_input_specs_change_shapes_not_dtypes(alice, this_device):
    with pytest.raises(ValidationError) as refused:
        job_submit_compile(
            owner=alice, model=mlp(alice), device=this_device,
            input_specs={"x": ([2, 8], "float16")},
        )  # fmt: skip
    assert "'x' is float32 in the model" in refused.value.message_dict["input_specs"][0]


# Failures at run time, naming their cause


def stored_without_checks(owner: Any, model: onnx.ModelProto, name: str) -> MLModel:
    """A model stored as it is, as an older hub stored uploads before they were loaded in
    onnxruntime at upload: what a job meets in storage, checked again when it runs."""
    from jobs.domain.files import describe_graph

    data = model.SerializeToString()
    stored = MLModel(
        owner=owner, name=name, format=ModelFormat.ONNX, size=len(data), sha256="0" * 64,
        metadata=describe_graph(model),
    )  # fmt: skip
    stored.file.save(f"{name}.onnx", ContentFile(data), save=False)
    stored.save()
    return stored


def test_an_op_the_provider_cannot_run_fails_naming_it(alice, this_device):
    x = helper.make_tensor_value_info("x", TensorProto.BFLOAT16, [2, 2])
    y = helper.make_tensor_value_info("y", TensorProto.BFLOAT16, [2, 2])
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "x"], ["y"], name="square")], "bf16", [x], [y]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.checker.check_model(model)
    job = compiled(alice, stored_without_checks(alice, model, "bf16"), this_device)
    assert job.status == JobStatus.FAILED
    failure_type, message = failure_of(job)
    assert failure_type == FailureType.INVALID_MODEL
    assert "CPUExecutionProvider cannot run node 'square': op MatMul (opset 13)" in message


def impossible_reshape() -> onnx.ModelProto:
    """x [1, 8] reshaped to [3, 5]: a valid graph that ONNX Runtime loads and cannot run (8
    values do not make 15)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 5])
    shape = numpy_helper.from_array(np.array([3, 5], np.int64), "shape")
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"], name="squeeze_in")],
        "reshape", [x], [y], [shape],
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def test_a_model_onnx_runtime_cannot_run_fails_as_the_models_naming_what_it_said(
    alice, this_device
):
    model = upload_onnx(alice, impossible_reshape(), "reshape")
    job = compiled(alice, model, this_device)
    assert job.status == JobStatus.FAILED
    failure_type, message = failure_of(job)
    assert failure_type == FailureType.INVALID_MODEL, message
    assert message.startswith(
        f"model {model.public_id} (reshape) fails when ONNX Runtime runs it on random inputs of "
        "its input shapes (x [1, 8] float32): node 'squeeze_in' (Reshape): The input tensor "
        "cannot be reshaped to the requested shape. Input shape:{1,8}, requested shape:{3,5}"
    ), message
    # Without ONNX Runtime's source location and C++ signature (a path of its build machine).
    assert "onnxruntime_src" not in message and "ReshapeHelper" not in message
    assert "was false" not in message
    assert "Optimizing" not in log_of(job)  # the source failed before any pass ran


def test_a_model_that_cannot_run_on_its_calibration_data_fails_naming_the_sample(
    alice, this_device
):
    model = upload_onnx(alice, impossible_reshape(), "reshape")
    calibration = h5_dataset(alice, {"x": [np.ones((1, 8), np.float32)] * 3})
    job = compiled(
        alice, model, this_device, options="--quantize_full_type int8",
        calibration_data=calibration,
    )  # fmt: skip
    failure_type, message = failure_of(job)
    assert failure_type == FailureType.INVALID_MODEL, message
    # Its own failure, before the quantizer ran it and said so in its words.
    assert message.startswith(
        f"model {model.public_id} (reshape) fails when ONNX Runtime runs it on sample 0 of "
        f"calibration dataset {calibration.public_id} (calib): node 'squeeze_in' (Reshape)"
    ), message
    assert "quantizer" not in message


def one_node(op: str, x: Any, y: Any, **attributes: Any) -> onnx.ModelProto:
    graph = helper.make_graph([helper.make_node(op, ["x"], ["y"], **attributes)], op, [x], [y])
    imports = [helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)]
    return helper.make_model(graph, opset_imports=imports, ir_version=9)


@pytest.mark.parametrize(
    ("model", "words"),
    [
        (
            one_node(
                "Identity",
                helper.make_tensor_value_info("x", TensorProto.STRING, [2]),
                helper.make_tensor_value_info("y", TensorProto.STRING, [2]),
            ),
            "Input 'x' of model {id} (model) is tensor(string); a compile job checks its target "
            "by running both on sample inputs, which it makes of float",
        ),
        (
            one_node(
                "Identity",
                helper.make_tensor_value_info("x", TensorProto.BFLOAT16, [2]),
                helper.make_tensor_value_info("y", TensorProto.BFLOAT16, [2]),
            ),
            "Input 'x' of model {id} (model) is tensor(bfloat16)",
        ),
        (
            one_node(
                "ZipMap",
                helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2]),
                helper.make_value_info(
                    "y",
                    helper.make_sequence_type_proto(
                        helper.make_map_type_proto(
                            TensorProto.INT64, helper.make_tensor_type_proto(TensorProto.FLOAT, [])
                        )
                    ),
                ),
                domain="ai.onnx.ml",
                classlabels_int64s=[0, 1],
            ),
            "Output 'y' of model {id} (model) is seq(map(int64,tensor(float))) (a ZipMap's: "
            "convert the classifier with zipmap=False); a compile job checks its target by "
            "comparing its outputs with the source's",
        ),
    ],
    ids=["string input", "bfloat16 input", "sequence of maps output"],
)
def test_a_model_whose_inputs_or_outputs_cannot_be_compared_fails_naming_them(
    alice, this_device, model, words
):
    stored = upload_onnx(alice, model, "model")
    job = compiled(alice, stored, this_device)
    failure_type, message = failure_of(job)
    assert failure_type == FailureType.INVALID_MODEL, message
    assert message.startswith(words.format(id=stored.public_id)), message


@pytest.mark.parametrize(
    ("quantized", "providers", "failure_type", "words"),
    [
        ("float16", ["CPUExecutionProvider"], FailureType.INVALID_MODEL,
         "Compile it without --quantize_full_type float16."),
        (None, ["CUDAExecutionProvider", "CPUExecutionProvider"], FailureType.INVALID_MODEL,
         "Compile it with --compute_unit cpu."),
        (None, ["CPUExecutionProvider"], FailureType.INTERNAL_ERROR,
         "a fault of ONNX Runtime's, which the hub's operator should report"),
    ],
)  # fmt: skip
def test_a_target_that_fails_where_its_source_ran_blames_what_the_job_changed(
    quantized, providers, failure_type, words
):
    from jobs.engine.runners.compile import _target_fails

    failure = _target_fails(quantized, providers, checks.RunFailed(2, "node 'n' (Cast): no."))
    assert failure.failure_type == failure_type
    assert failure.message.startswith(
        f"The compiled model fails when ONNX Runtime runs it on {', '.join(providers)}, on "
        "sample 2 of the inputs its source ran on: node 'n' (Cast): no."
    )
    assert words in failure.message and "resubmitting" not in failure.message


def test_compute_unit_gpu_on_a_device_without_one_fails_naming_the_device(alice, this_device):
    if any(p in ort.get_available_providers() for p in checks.GPU):
        pytest.skip("this machine has a GPU provider")
    job = compiled(
        alice, mlp(alice), this_device, input_specs=MLP_SPECS, options="--compute_unit gpu"
    )
    assert job.status == JobStatus.FAILED
    failure_type, message = failure_of(job)
    assert failure_type == FailureType.INVALID_PARAMETERS
    assert f"device {this_device.name} has no GPU provider" in message


def test_the_load_error_of_an_op_of_an_unknown_domain_names_both():
    from jobs.engine.compiling.passes import unloadable

    said = unloadable(
        RuntimeError("[ONNXRuntimeError] : 1 : FAIL : com.example:Frobnicate(-1) is not a "
                     "registered function/op"),
        ["CUDAExecutionProvider", "CPUExecutionProvider"],
    )  # fmt: skip
    assert said.startswith(
        "ONNX Runtime (CUDAExecutionProvider, CPUExecutionProvider) does not load it: op "
        "Frobnicate is of domain com.example, which ONNX Runtime does not know: its ops are "
        "custom ops"
    ), said


def test_gpu_providers_come_first_when_the_device_has_them():
    available = ["CUDAExecutionProvider", "AzureExecutionProvider", "CPUExecutionProvider"]
    assert checks.providers_for(available, None, "box") == [
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]
    assert checks.providers_for(available, ["gpu"], "box") == ["CUDAExecutionProvider"]
    assert checks.providers_for(available, ["cpu"], "box") == ["CPUExecutionProvider"]
    with pytest.raises(CompileFailure):
        checks.providers_for(["CPUExecutionProvider"], ["gpu"], "box")


# Through the client, against a live hub and its workers


@pytest.mark.production
def test_the_client_compiles_int8_calibrated_with_seed_000s_entries(hub_env, tmp_path):
    from hubclient import BadInputError, Client

    (tmp_path / "mlp.onnx").write_bytes(tiny_mlp_onnx(name="mlp", seed=4))
    rng = np.random.default_rng(5)
    samples = [rng.standard_normal((2, 8)).astype(np.float32) for _ in range(4)]
    # closing(): Connection.__enter__ is typed to return a Connection, not the Client.
    with closing(Client(hub_env["HUB_URL"], hub_env["HUB_API_TOKEN"])) as client:
        job = client.submit_compile_job(
            tmp_path / "mlp.onnx", device="accelerator:cpu", input_specs={"x": (2, 8)},
            options="--target_runtime onnx --quantize_full_type int8",
            calibration_data={"x": samples},
        )  # fmt: skip
        assert job.wait(timeout=120).success, job.get_status()
        path = job.download_target_model(str(tmp_path / "target.onnx"))
        assert isinstance(path, str)
        with pytest.raises(BadInputError, match="--target_runtime tflite is made by seed 000"):
            client.submit_compile_job(
                tmp_path / "mlp.onnx", device="accelerator:cpu", input_specs={"x": (2, 8)},
                options="--target_runtime tflite",
            )  # fmt: skip
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.shape for i in session.get_inputs()] == [[2, 8]]
    summary = Job.objects.get(public_id=job.job_id).summary
    assert (summary["calibration"], summary["compared_samples"]) == ("static", 4)
    reference = ort.InferenceSession(tiny_mlp_onnx(name="mlp", seed=4))
    worst = max(
        float(np.abs(session.run(None, {"x": x})[0] - reference.run(None, {"x": x})[0]).max())
        for x in samples
    )
    assert worst == pytest.approx(summary["largest_difference"], rel=1e-5, abs=1e-7)
