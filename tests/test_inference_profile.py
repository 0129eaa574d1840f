"""Inference jobs that also profile (seed 000's ``submit_inference_job(..., profile=True)``), for
real: a small ONNX model run on this machine's ONNX Runtime over uploaded samples, its outputs
equal to ONNX Runtime run directly, then profiled exactly as a profile job profiles it (its
profile.json and figures beside the outputs); submitted through the service, the REST API, the
page and the Python client. Without ``profile`` nothing is profiled, and the profiler's options
are refused by name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.urls import reverse

from jobs.domain.devices import Announcement, register, this_machine
from jobs.domain.disk import size_text
from jobs.domain.measures import ms_text
from jobs.domain.status import JobStatus
from jobs.engine.reporter import Reporter
from jobs.models import Dataset, Job, MetricPoint, MLModel
from jobs.services.assets import model_upload
from jobs.services.device_jobs import job_submit_inference
from jobs.services.jobs import job_cancel
from sharing.services import sharing_modify
from tests import factories, onnx_samples
from tests.test_inference import directly, h5_of, output_entries, upload

# Committed: the runner's heartbeat thread writes what it reports, on a connection of its own.
pytestmark = pytest.mark.django_db(transaction=True)

SEED_000_SUMMARY = {
    "estimated_inference_time",
    "estimated_inference_peak_memory",
    "first_load_time",
    "first_load_peak_memory",
    "warm_load_time",
    "warm_load_peak_memory",
}
BATCH = 2


def fixed_conv(owner: Any) -> MLModel:
    """onnx_samples' convolution with its batch fixed: a profile measures one shape."""
    model = onnx_samples.conv_model(seed=5, opset=17)
    for value in (*model.graph.input, *model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_value = BATCH
    onnx.checker.check_model(model)
    return model_upload(owner=owner, file=ContentFile(model.SerializeToString(), "conv.onnx"))


@pytest.fixture
def conv(alice: Any) -> MLModel:
    return fixed_conv(alice)


@pytest.fixture
def signals() -> list[np.ndarray]:
    rng = np.random.default_rng(11)
    return [rng.standard_normal((BATCH, 3, 16)).astype(np.float32) for _ in range(3)]


@pytest.fixture
def inputs(alice: Any, signals: list[np.ndarray]) -> Dataset:
    return upload(alice, "signals.h5", h5_of({"signal": signals}))


def submit(owner: Any, model: MLModel, inputs: Dataset, device: Any, **extra: Any) -> Job:
    return job_submit_inference(owner=owner, model=model, device=device, inputs=inputs, **extra)


def refusal(error: pytest.ExceptionInfo[ValidationError]) -> tuple[str, str]:
    field, messages = next(iter(error.value.message_dict.items()))
    return field, messages[0]


def stored_profile(job: Job) -> dict[str, Any]:
    return dict(json.loads(Path(job.artifacts.get(name="profile.json").file.path).read_text()))


def assert_outputs_are_onnx_runtimes(job: Job, model: MLModel, signals: list[np.ndarray]) -> None:
    outputs = output_entries(job)
    assert list(outputs) == ["out"] and len(outputs["out"]) == len(signals)
    for sample, got in zip(signals, outputs["out"], strict=True):
        np.testing.assert_allclose(got, directly(model, {"signal": sample})[0], rtol=1e-6, atol=0)


def test_an_inference_that_profiles_gives_the_outputs_of_onnx_runtime_and_a_profile(
    alice, this_device, conv, inputs, signals
):
    job = submit(
        alice, conv, inputs, this_device, profile=True, options="--max_profiler_iterations 7"
    )
    assert job.hyperparameters["profile"] is True
    job = factories.run_here(job)
    assert job.status == JobStatus.READY, job.failure_message

    assert_outputs_are_onnx_runtimes(job, conv, signals)
    (made,) = Dataset.objects.filter(produced_by=job)
    assert made.num_records == 3

    # profile.json in seed 000's shape, its timed runs those of the latency points.
    profile = stored_profile(job)
    assert set(profile) == {"execution_summary", "execution_detail"}
    assert set(profile["execution_summary"]) > SEED_000_SUMMARY
    points = list(
        MetricPoint.objects.filter(series__job=job, series__key="latency_ms").order_by("step")
    )
    assert [p.step for p in points] == list(range(1, 8))  # steps of a profile job's chart
    assert profile["execution_summary"]["all_inference_times"] == [
        round(p.value * 1000) for p in points
    ]
    assert profile["execution_detail"]
    for layer in profile["execution_detail"]:
        assert set(layer) == {"name", "type", "compute_unit", "execution_time"}
        assert layer["compute_unit"] == "CPU"

    # The summary holds both: the outputs' figures and the profile's, as a profile job's.
    summary = job.summary
    assert summary["samples"] == 3 and [o["name"] for o in summary["outputs"]] == ["out"]
    assert summary["providers"] == summary["profile_providers"] == ["CPUExecutionProvider"]
    assert set(summary["execution_summary"]) == SEED_000_SUMMARY
    assert summary["runs"] == 7 and summary["stopped_by"] == "iterations"
    latency = summary["latency_us"]
    assert 0 < latency["min"] <= latency["median"] <= latency["max"]
    assert summary["execution_summary"]["estimated_inference_time"] == round(latency["median"])
    assert sum(summary["op_type_times"].values()) == pytest.approx(
        sum(layer["execution_time"] for layer in profile["execution_detail"])
    )

    # Its steps: the samples, then the timed runs.
    assert job.total_steps == 3 + 7 and job.steps_completed == 3 + 7
    assert job.percentage_done == 100.0
    ready = job.status_logs.get(status="ready").message
    assert "Outputs stored: output_data.h5" in ready and "profile.json stored" in ready


def test_without_profile_an_inference_stores_no_profile(alice, this_device, conv, inputs, signals):
    job = factories.run_here(submit(alice, conv, inputs, this_device))
    assert job.status == JobStatus.READY, job.failure_message
    assert job.hyperparameters["profile"] is False
    assert_outputs_are_onnx_runtimes(job, conv, signals)
    assert not job.artifacts.filter(name="profile.json").exists()
    assert "execution_summary" not in job.summary and "latency_us" not in job.summary
    assert not job.metric_series.filter(key="latency_ms").exists()
    assert job.total_steps == job.steps_completed == 3


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ("--max_profiler_iterations 5", "--max_profiler_iterations sets the timed runs of a profile"),
        ("--max_profiler_time 2", "--max_profiler_time sets the timed runs of a profile"),
        ("--compute_unit cpu --max_profiler_time 2 --max_profiler_iterations 5",
         "--max_profiler_time and --max_profiler_iterations set the timed runs of a profile"),
    ],
)  # fmt: skip
def test_the_profilers_options_are_refused_for_an_inference_that_does_not_profile(
    alice, this_device, conv, inputs, options, words
):
    with pytest.raises(ValidationError) as error:
        submit(alice, conv, inputs, this_device, options=options)
    field, message = refusal(error)
    assert field == "options" and words in message and "profile=True" in message
    assert not Job.objects.exists()
    submit(alice, conv, inputs, this_device, options=options, profile=True)  # taken with it


def test_the_profilers_options_are_checked_as_a_profile_checks_them(
    alice, this_device, conv, inputs
):
    with pytest.raises(ValidationError) as error:
        submit(
            alice, conv, inputs, this_device, profile=True, options="--max_profiler_iterations 0"
        )
    assert refusal(error) == (
        "options",
        "--max_profiler_iterations is 0; it must be between 1 and 10000.",
    )


def test_a_model_with_dynamic_dimensions_runs_but_is_not_profiled(alice, this_device):
    model = factories.onnx_model(alice, "mlp", seed=3)  # x: [batch, 8]
    rows = upload(alice, "rows.h5", h5_of({"x": [np.ones((2, 8), dtype=np.float32)]}))
    with pytest.raises(ValidationError) as error:
        submit(alice, model, rows, this_device, profile=True)
    field, message = refusal(error)
    assert field == "model" and "has dynamic dimensions (x [batch, 8])" in message
    assert "Compile it with input_specs first" in message and "without profile" in message
    submit(alice, model, rows, this_device)  # without a profile it runs


def test_a_profile_is_refused_where_it_is_refused_to_a_profile_job(
    alice, this_device, conv, inputs
):
    memory = 2 * conv.size  # a profile takes about three times the model's size
    small = register(
        Announcement(**{**this_machine().as_dict(), "memory_bytes": memory, "name_override": "Tiny"})
    )  # fmt: skip
    with pytest.raises(ValidationError) as error:
        submit(alice, conv, inputs, small, profile=True)
    field, message = refusal(error)
    assert field == "model" and f"device Tiny has {size_text(memory)} of memory" in message
    submit(alice, conv, inputs, small)  # running the samples needs no such room
    with pytest.raises(ValidationError) as error:
        submit(alice, conv, inputs, this_device, profile=True, options="--compute_unit gpu")
    field, message = refusal(error)
    assert field == "options" and "--compute_unit gpu asks for a GPU" in message


def test_cancelling_while_it_profiles_keeps_no_outputs(alice, this_device, monkeypatch):
    # About a millisecond a run here: 10000 runs would take seconds; it is cancelled at once.
    from tests.test_profile import fixed_mlp

    model = model_upload(
        owner=alice, file=ContentFile(fixed_mlp(batch=64, width=256, hidden=512), "big.onnx")
    )
    rows = upload(alice, "rows.h5", h5_of({"x": [np.ones((64, 256), dtype=np.float32)] * 2}))
    job = submit(
        alice, model, rows, this_device, profile=True, options="--max_profiler_iterations 10000"
    )
    cancelled_at: list[int] = []
    metrics = Reporter.metrics

    def cancel_at_the_first_runs(self, key, points):
        metrics(self, key, points)
        if not cancelled_at:  # the user cancels as the first timed runs reach the page
            cancelled_at.append(points[-1][0])
            job_cancel(job=Job.objects.get(pk=self.job.pk))
            self.check_every = 0

    monkeypatch.setattr(Reporter, "metrics", cancel_at_the_first_runs)
    job = factories.run_here(job)
    assert job.status == JobStatus.CANCELLED
    (run,) = cancelled_at
    # Its steps count on past the samples: stopped at sample 2 + the run it was cancelled at.
    assert job.status_logs.last().message == f"Cancelled at step {2 + run} of {2 + 10000}."
    assert not job.artifacts.filter(name__in=["profile.json", "output_data.h5"]).exists()
    assert not Dataset.objects.filter(produced_by=job).exists()
    assert job.summary == {}


def test_the_api_takes_profile_and_serves_the_profile_beside_the_outputs(
    alice, this_device, conv, inputs
):
    client = factories.api(alice)
    body = {"model": conv.public_id, "device": this_device.slug, "inputs": inputs.public_id}
    refused = client.post(
        "/api/v1/jobs/inference/", {**body, "options": "--max_profiler_time 1"}, format="json"
    )
    assert refused.status_code == 400
    assert "--max_profiler_time sets the timed runs" in json.dumps(refused.json())
    answer = client.post(
        "/api/v1/jobs/inference/",
        {**body, "profile": True, "options": "--max_profiler_iterations 4"},
        format="json",
    )
    assert answer.status_code == 201, answer.content
    assert answer.json()["hyperparameters"]["profile"] is True
    job = factories.run_here(Job.objects.get(public_id=answer.json()["id"]))
    assert job.status == JobStatus.READY, job.failure_message
    detail = client.get(f"/api/v1/jobs/{job.public_id}/").json()
    assert detail["summary"]["runs"] == 4 and detail["summary"]["samples"] == 3
    assert {a["name"] for a in detail["artifacts"]} >= {"profile.json", "output_data.h5"}
    served = client.get(f"/api/v1/jobs/{job.public_id}/artifacts/profile.json/")
    assert served.status_code == 200
    assert json.loads(b"".join(served.streaming_content)) == stored_profile(job)
    plain = client.post("/api/v1/jobs/inference/", body, format="json")
    assert plain.status_code == 201 and plain.json()["hyperparameters"]["profile"] is False


def test_the_client_submits_with_profile_and_downloads_the_profile(
    hub_here, this_device, conv, signals, tmp_path
):
    from hubclient import ConflictError, InferenceJob

    job = hub_here.submit_inference_job(
        conv.public_id, this_device.name, {"signal": signals}, profile=True,
        options="--max_profiler_iterations 3",
    )  # fmt: skip
    assert isinstance(job, InferenceJob)
    factories.run_here(Job.objects.get(public_id=job.job_id))
    outputs = job.download_output_data()
    assert isinstance(outputs, dict)
    for sample, got in zip(signals, outputs["out"], strict=True):
        np.testing.assert_allclose(got, directly(conv, {"signal": sample})[0], rtol=1e-6, atol=0)
    profile = job.download_profile()
    stored = stored_profile(Job.objects.get(public_id=job.job_id))
    assert profile == stored and len(stored["execution_summary"]["all_inference_times"]) == 3
    saved = job.download_profile(str(tmp_path / "profile.json"))
    assert json.loads(Path(str(saved)).read_text()) == stored

    plain = hub_here.submit_inference_job(conv.public_id, this_device.name, {"signal": signals})
    with pytest.raises(ConflictError, match="submitted without profile=True"):
        plain.download_profile()


def test_the_inference_page_offers_to_profile_and_shows_the_profile_to_owner_and_reader(
    client, alice, bob, charlie, this_device, conv, inputs
):
    client.force_login(alice)
    form = client.get(reverse("jobs:submit-inference")).content.decode()
    assert 'type="checkbox" name="profile"' in form and "Also profile" in form
    assert "--max_profiler_iterations" in form  # among the options it takes
    client.post(
        reverse("jobs:submit-inference"),
        {
            "model": conv.public_id, "device": this_device.slug, "inputs": inputs.public_id,
            "profile": "on", "options": "--max_profiler_iterations 5", "name": "profiled",
        },
    )  # fmt: skip
    job = Job.objects.get(name="profiled")
    assert job.hyperparameters["profile"] is True
    waiting = client.get(job.get_absolute_url()).content.decode()
    assert 'id="inference-profile"' in waiting and 'id="profile-pending"' in waiting
    assert "the 3 samples, then up to 5 timed runs" in waiting

    job = factories.run_here(job)
    assert job.status == JobStatus.READY, job.failure_message
    sharing_modify(target=job, actor=alice, add_emails=[bob.email])
    summary = job.summary
    for reader in (alice, bob):
        client.force_login(reader)
        seen = client.get(job.get_absolute_url()).content.decode()
        assert 'id="inference-outputs"' in seen  # the outputs, as without a profile
        execution = seen[seen.index('id="execution-summary"') :].split("</dl>")[0]
        median = ms_text(summary["execution_summary"]["estimated_inference_time"])
        assert f'data-key="estimated_inference_time">{median}<' in execution
        latency = seen[seen.index('id="latency-stats"') :].split("</dl>")[0]
        assert f'data-stat="median">{ms_text(summary["latency_us"]["median"])}<' in latency
        data = json.loads(
            seen.split('id="profile-data" type="application/json">')[1].split("</script>")[0]
        )
        assert [layer["name"] for layer in data["layers"]] == [
            layer["name"] for layer in summary["slowest_layers"]
        ]
        assert 'id="latency-chart"' in seen and 'id="layers-chart"' in seen
        assert "vendor/plotly" in seen and "hub/profile" in seen
        assert f"/api/v1/jobs/{job.public_id}/artifacts/profile.json/" in seen
    client.force_login(charlie)
    assert client.get(job.get_absolute_url()).status_code == 404


@pytest.mark.django_db(transaction=True)
def test_hub_submit_inference_profile_asks_for_the_profile(
    alice, this_device, conv, inputs, live_server, capsys, monkeypatch
):
    from rest_framework.authtoken.models import Token

    from hubclient.cli import main as hub_main

    monkeypatch.setenv("HUB_URL", live_server.url)
    monkeypatch.setenv("HUB_API_TOKEN", Token.objects.get_or_create(user=alice)[0].key)
    command = ["--json", "submit", "inference", "--model", conv.public_id]
    command += ["--device", this_device.name, "--inputs", inputs.public_id]
    assert hub_main([*command, "--profile"]) == 0
    assert hub_main(command) == 0
    profiled, plain = Job.objects.order_by("created_at")
    assert profiled.hyperparameters["profile"] is True
    assert plain.hyperparameters["profile"] is False
