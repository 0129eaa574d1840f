"""Profile jobs: real ONNX models of fixed shapes profiled on this machine's ONNX Runtime, run in
this process as a worker runs them (the profile itself runs in the runner's child process), and
profiles compared side by side."""

from __future__ import annotations

import io
import json
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from onnx import TensorProto, helper, numpy_helper

from jobs.domain.devices import Announcement, register, this_machine
from jobs.domain.status import FailureType, JobStatus
from jobs.engine.reporter import Reporter
from jobs.engine.runners import profile as profile_runner
from jobs.models import Job, MetricPoint
from jobs.services.assets import model_upload
from jobs.services.device_jobs import job_submit_profile
from jobs.services.jobs import job_cancel
from sharing.services import sharing_modify
from tests import factories

# Committed: the runner's heartbeat thread writes what it reports, on a connection of its own.
pytestmark = pytest.mark.django_db(transaction=True)

LAYERS = {"layer1": "MatMul", "squash": "Tanh", "layer2": "MatMul", "out": "Sigmoid"}
SEED_000_SUMMARY = {
    "estimated_inference_time",
    "estimated_inference_peak_memory",
    "first_load_time",
    "first_load_peak_memory",
    "warm_load_time",
    "warm_load_peak_memory",
}


def fixed_mlp(*, batch: int = 2, width: int = 8, hidden: int = 16, seed: int = 1) -> bytes:
    """A two-layer perceptron of one fixed input shape, its nodes named (none of them fused by
    ONNX Runtime's optimizations: MatMul, Tanh, MatMul, Sigmoid)."""
    rng = np.random.default_rng(seed)
    graph = helper.make_graph(
        [helper.make_node(op, inputs, [output], name=name) for name, op, inputs, output in (
            ("layer1", "MatMul", ["x", "w1"], "h0"),
            ("squash", "Tanh", ["h0"], "h"),
            ("layer2", "MatMul", ["h", "w2"], "logits"),
            ("out", "Sigmoid", ["logits"], "y"),
        )],
        "fixed_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 4])],
        initializer=[
            numpy_helper.from_array(rng.standard_normal((width, hidden)).astype(np.float32), "w1"),
            numpy_helper.from_array(rng.standard_normal((hidden, 4)).astype(np.float32), "w2"),
        ],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def upload(owner, data: bytes, name: str = "fixed_mlp"):
    return model_upload(owner=owner, file=ContentFile(data, f"{name}.onnx"))


def profile(owner, model, device, options: str = "--max_profiler_iterations 12", **kwargs) -> Job:
    return job_submit_profile(owner=owner, model=model, device=device, options=options, **kwargs)


def refusal(error: pytest.ExceptionInfo[ValidationError]) -> tuple[str, str]:
    field, messages = next(iter(error.value.message_dict.items()))
    return field, messages[0]


@pytest.fixture
def second_box(settings):
    """A second device: this machine's worker announcing itself under an operator-set name
    (HUB_DEVICE_NAME), as two machines whose hardware reads the same are told apart. Yields a
    function that makes this process that device's worker."""
    this_machine.cache_clear()
    register(this_machine())  # the first device exists too

    def become() -> None:
        settings.HUB_DEVICE_NAME = "Second box"
        this_machine.cache_clear()

    yield become
    this_machine.cache_clear()


def test_a_profile_measures_load_latency_memory_and_each_layer(alice, this_device):
    model = upload(alice, fixed_mlp())
    job = factories.run_here(profile(alice, model, this_device))
    assert job.status == JobStatus.READY, job.failure_message
    assert job.ran_device == this_device

    summary = job.summary
    latency = summary["latency_us"]
    assert summary["runs"] == 12 and summary["stopped_by"] == "iterations"
    assert 0 < latency["min"] <= latency["median"] <= latency["p90"] <= latency["max"]
    assert latency["min"] <= latency["mean"] <= latency["max"]
    execution = summary["execution_summary"]
    assert set(execution) == SEED_000_SUMMARY
    assert execution["estimated_inference_time"] == round(latency["median"])
    assert execution["first_load_time"] > 0 and execution["warm_load_time"] > 0
    assert execution["estimated_inference_peak_memory"] > 0
    assert summary["providers"] == ["CPUExecutionProvider"]
    # Every node of the model, timed by ONNX Runtime's profiler on the CPU.
    named = {layer["name"]: layer for layer in summary["slowest_layers"]}
    assert {name: layer["type"] for name, layer in named.items()} == LAYERS
    assert {layer["compute_unit"] for layer in named.values()} == {"CPU"}
    times = [layer["execution_time"] for layer in summary["slowest_layers"]]
    assert times == sorted(times, reverse=True)
    assert set(summary["op_type_times"]) == {"MatMul", "Tanh", "Sigmoid"}
    assert (
        summary["op_type_times"]["MatMul"]
        == named["layer1"]["execution_time"] + named["layer2"]["execution_time"]
    )
    assert 1 <= summary["profiled_runs"] <= 10

    # One latency point per timed run, pushed as it ran; runs done are the job's progress.
    points = list(
        MetricPoint.objects.filter(series__job=job, series__key="latency_ms").order_by("step")
    )
    assert [p.step for p in points] == list(range(1, 13))
    assert job.steps_completed == 12 and job.total_steps == 12
    assert job.percentage_done == 100.0

    # profile.json: seed 000's shape, the same runs as the chart's points.
    artifact = job.artifacts.get(name="profile.json")
    assert artifact.kind == "profile"
    stored = json.loads(Path(artifact.file.path).read_text())
    assert set(stored) == {"execution_summary", "execution_detail"}
    assert set(stored["execution_summary"]) > SEED_000_SUMMARY
    assert stored["execution_summary"]["all_inference_times"] == [
        round(p.value * 1000) for p in points
    ]
    assert [layer["name"] for layer in stored["execution_detail"]] == list(LAYERS)  # run order
    for layer in stored["execution_detail"]:
        assert set(layer) == {"name", "type", "compute_unit", "execution_time"}
    answer = factories.api(alice).get(f"/api/v1/jobs/{job.public_id}/artifacts/profile.json/")
    assert answer.status_code == 200
    assert json.loads(b"".join(answer.streaming_content)) == stored


def test_a_fixed_shape_torch_export_stored_with_its_data_is_profiled(alice, this_device):
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4))
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "net.onnx"
        torch.onnx.export(
            net.eval(), (torch.randn(3, 16),), str(path), input_names=["x"], dynamo=True
        )
        assert (Path(scratch) / "net.onnx.data").exists()  # its weights beside it
        packed = io.BytesIO()
        with zipfile.ZipFile(packed, "w") as archive:
            for file in sorted(Path(scratch).iterdir()):
                archive.write(file, file.name)
    model = model_upload(owner=alice, file=ContentFile(packed.getvalue(), "net.zip"))
    assert model.metadata["input_specs"]["x"]["shape"] == [3, 16]
    job = factories.run_here(profile(alice, model, this_device, "--max_profiler_iterations 5"))
    assert job.status == JobStatus.READY, job.failure_message
    assert job.summary["runs"] == 5
    assert job.summary["op_type_times"]  # its layers, whatever ONNX Runtime fused them into


def test_the_time_bound_ends_the_timed_runs_before_the_runs_asked(alice, this_device):
    # About a millisecond a run here: 10000 runs would take seconds, the bound is 0.1 s.
    model = upload(alice, fixed_mlp(batch=64, width=256, hidden=512))
    options = "--max_profiler_iterations 10000 --max_profiler_time 0.1"
    job = factories.run_here(profile(alice, model, this_device, options))
    assert job.status == JobStatus.READY, job.failure_message
    runs = job.summary["runs"]
    assert 1 <= runs < 10000
    assert job.summary["stopped_by"] == "time"
    assert job.steps_completed == runs
    assert job.metric_series.get(key="latency_ms").points_count == runs
    assert "--max_profiler_time 0.1 s reached" in job.status_logs.get(status="completed").message


def test_cancelling_a_profile_stops_it_between_runs(alice, this_device, monkeypatch):
    model = upload(alice, fixed_mlp(batch=64, width=256, hidden=512))
    job = profile(alice, model, this_device, "--max_profiler_iterations 10000")
    children: list[Any] = []  # the run it was cancelled at, then the child process
    metrics, close = Reporter.metrics, profile_runner._Child.close

    def cancel_at_the_first_runs(self, key, points):
        metrics(self, key, points)
        if not children:  # the user cancels as the first timed runs reach the page
            children.append(points[-1][0])
            job_cancel(job=Job.objects.get(pk=self.job.pk))
            self.check_every = 0  # and the next check between runs reads it

    def closing(self):
        children.append(self.process)
        return close(self)

    monkeypatch.setattr(Reporter, "metrics", cancel_at_the_first_runs)
    monkeypatch.setattr(profile_runner._Child, "close", closing)
    job = factories.run_here(job)
    stopped_at, child = children
    assert job.status == JobStatus.CANCELLED
    assert 1 <= stopped_at < 10000
    assert job.status_logs.last().message == f"Cancelled at step {stopped_at} of 10000."
    assert job.metric_series.get(key="latency_ms").points_count == stopped_at
    assert not job.artifacts.filter(name="profile.json").exists()
    assert job.summary == {}
    assert child.poll() is not None  # the child was stopped, not left running


@pytest.mark.parametrize(
    ("stop", "words"),
    [
        # the kernel's out-of-memory killer sends SIGKILL
        ("kill", "The profile of {label} \\(.+\\) was killed during {stage} on device {device}, "
         "most likely for want of memory .*"),
        # a crash inside ONNX Runtime ends it otherwise
        ("terminate", "ONNX Runtime stopped during {stage} of {label} on device {device} "
         "\\(exit code -15\\)\\."),
    ],
)  # fmt: skip
def test_a_profile_whose_process_dies_fails_saying_so(alice, this_device, monkeypatch, stop, words):
    model = upload(alice, fixed_mlp(batch=64, width=256, hidden=512))
    job = profile(alice, model, this_device, "--max_profiler_iterations 10000")
    events = profile_runner._Child.events

    def dies_after_the_cold_load(self, reporter):
        for event in events(self, reporter):
            yield event
            if event.get("stage") == "first_load":
                getattr(self.process, stop)()

    monkeypatch.setattr(profile_runner._Child, "events", dies_after_the_cold_load)
    job = factories.run_here(job)
    assert (job.status, job.failure_type) == (JobStatus.FAILED, FailureType.INTERNAL_ERROR)
    pattern = words.format(
        label=re.escape(f"model {model.public_id} (fixed_mlp)"),
        stage="(the warm load|the timed runs)",  # whichever it had reached
        device=re.escape(this_device.name),
    )
    assert re.fullmatch(pattern, job.failure_message), job.failure_message


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ("--max_profiler_iterations 0", "--max_profiler_iterations is 0; it must be between 1"),
        ("--max_profiler_time 100000", "--max_profiler_time is 100000; it must be between"),
        ("--max_profiler_iterations many", "--max_profiler_iterations needs a whole number"),
        ("--compute_unit npu", "--compute_unit takes cpu, gpu or all"),
        ("--target_runtime onnx", "--target_runtime is not an option of a profile job"),
        ("--max_profiler_iterations 5 --max_profiler_iterations 6", "given twice"),
    ],
)
def test_options_a_profile_cannot_take_are_refused_by_name(alice, this_device, options, words):
    model = upload(alice, fixed_mlp())
    with pytest.raises(ValidationError) as error:
        profile(alice, model, this_device, options)
    field, message = refusal(error)
    assert field == "options" and words in message


def test_a_gpu_profile_is_refused_for_a_device_without_cuda(alice, this_device):
    assert "accelerator:cuda" not in this_device.attributes  # no GPU on this machine
    model = upload(alice, fixed_mlp())
    with pytest.raises(ValidationError) as error:
        profile(alice, model, this_device, "--compute_unit gpu")
    field, message = refusal(error)
    assert field == "options"
    assert f"--compute_unit gpu asks for a GPU, and device {this_device.name} has none" in message


def test_a_gpu_profile_that_reaches_a_device_without_cuda_fails_naming_it(alice, this_device):
    """A job accepted for a device that announced CUDA then and does not any more: the worker
    refuses it in words, as the user's choice of options, not as the hub's error."""
    model = upload(alice, fixed_mlp())
    job = profile(alice, model, this_device, "--compute_unit cpu")
    Job.objects.filter(pk=job.pk).update(
        hyperparameters={**job.hyperparameters, "parsed": {"compute_unit": ["gpu"]}}
    )
    job = factories.run_here(Job.objects.get(pk=job.pk))
    assert (job.status, job.failure_type) == (JobStatus.FAILED, FailureType.INVALID_PARAMETERS)
    assert f"device {this_machine().name} has none that ONNX Runtime can use" in (
        job.failure_message
    )


def test_a_model_with_a_dynamic_dimension_is_refused_at_submit(alice, this_device):
    model = factories.onnx_model(alice)  # jobs.demo.tiny_mlp_onnx: its batch is dynamic
    with pytest.raises(ValidationError) as error:
        profile(alice, model, this_device)
    field, message = refusal(error)
    assert field == "model" and "has dynamic dimensions (x [batch, 8])" in message


def test_a_model_too_big_for_the_devices_memory_is_refused_naming_both_sizes(alice, this_device):
    small = register(
        Announcement(**{**this_machine().as_dict(), "memory_bytes": 40_000, "name_override": "Tiny board"})
    )  # fmt: skip
    model = upload(alice, fixed_mlp(width=64, hidden=64))  # about 17 KiB of weights
    with pytest.raises(ValidationError) as error:
        profile(alice, model, small)
    field, message = refusal(error)
    assert field == "model"
    assert f"The model is {model.size / 1024:.1f} KiB" in message
    assert "device Tiny board has 39.1 KiB of memory" in message
    profile(alice, model, this_device)  # a device with the memory takes it


def compare(user, *ids: str):
    return factories.api(user).get("/api/v1/profiles/compare/", {"jobs": ",".join(ids)})


def test_a_model_profiled_on_two_devices_is_compared_side_by_side(alice, second_box, hub_here):
    model = upload(alice, fixed_mlp())
    first = profile(alice, model, this_machine().name, name="On this box")
    first = factories.run_here(first)
    second_box()  # this process is now a worker of the second device
    other = register(this_machine())
    second = factories.run_here(profile(alice, model, "Second box", name="On the second box"))
    for job in (first, second):
        assert job.status == JobStatus.READY, job.failure_message
    assert second.ran_device == other and first.ran_device != other

    answer = compare(alice, first.public_id, second.public_id)
    assert answer.status_code == 200, answer.json()
    data = answer.json()
    assert [j["id"] for j in data["jobs"]] == [first.public_id, second.public_id]
    assert [j["device"]["name"] for j in data["jobs"]] == [first.ran_device.name, "Second box"]
    for compared, job in zip(data["jobs"], (first, second), strict=True):
        assert compared["model"] == {"id": model.public_id, "name": model.name}
        assert compared["name"] == job.name and compared["status"] == "ready"
        assert compared["latency_us"] == job.summary["latency_us"]
        assert (
            compared["peak_memory"]
            == (job.summary["execution_summary"]["estimated_inference_peak_memory"])
        )
        assert compared["op_type_times"] == job.summary["op_type_times"]
        assert compared["runs"] == 12
    assert set(data["op_types"]) == {"MatMul", "Tanh", "Sigmoid"}
    totals = {
        op: sum(j["op_type_times"].get(op, 0) for j in data["jobs"]) for op in data["op_types"]
    }
    assert [totals[op] for op in data["op_types"]] == sorted(totals.values(), reverse=True)
    assert hub_here.compare_profiles([first.public_id, second.public_id]) == data  # the client


def test_compare_profiles_shows_each_person_only_the_jobs_they_may_read(
    alice, bob, charlie, this_device
):
    model = upload(alice, fixed_mlp())
    shared = factories.run_here(profile(alice, model, this_device))
    private = factories.run_here(profile(alice, model, this_device))
    sharing_modify(target=shared, actor=alice, add_emails=["bob@example.com"])
    ids = (shared.public_id, private.public_id)

    assert compare(alice, *ids).status_code == 200

    readers = compare(bob, *ids)
    assert readers.status_code == 400
    assert readers.json()["field"] == "jobs"
    assert readers.json()["message"] == f"No job {private.public_id} that you may read."
    sharing_modify(target=private, actor=alice, add_emails=["bob@example.com"])
    assert [j["id"] for j in compare(bob, *ids).json()["jobs"]] == list(ids)

    strangers = compare(charlie, *ids)
    assert strangers.status_code == 400
    assert strangers.json()["message"] == f"No job {', '.join(ids)} that you may read."
    # A job that does not exist is refused in the same words: a stranger learns nothing.
    assert compare(charlie, shared.public_id, "j00000000").json()["message"] == (
        f"No job {shared.public_id}, j00000000 that you may read."
    )


def test_compare_profiles_refuses_other_kinds_and_counts_by_name(alice, this_device):
    model = upload(alice, fixed_mlp())
    job = profile(alice, model, this_device)  # not run yet: compared with its status only
    link = factories.link_job(alice)
    answer = compare(alice, job.public_id, link.public_id)
    assert answer.status_code == 400
    assert answer.json()["message"] == (
        f"Only profile jobs are compared: {link.public_id} is a link job."
    )
    alone = compare(alice, job.public_id)
    assert (
        alone.status_code == 400
        and "Compare 2 to 8 profile jobs (got 1)" in alone.json()["message"]
    )
    twice = profile(alice, model, this_device)
    pending = compare(alice, job.public_id, twice.public_id).json()["jobs"]
    assert [(j["status"], j["latency_us"], j["op_type_times"]) for j in pending] == [
        (job.status, None, {}),
        (twice.status, None, {}),
    ]
    assert compare(factories.person("nobody"), job.public_id, twice.public_id).status_code == 400
    assert factories.api(alice).get("/api/v1/profiles/compare/").status_code == 400
    long = compare(alice, job.public_id, "x" * 300).json()["message"]
    assert long == f"No job {'x' * 20}… that you may read."  # not the whole of what was sent
