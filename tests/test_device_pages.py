"""The pages of devices and of seed 000's other kinds (compile, profile, inference): what the
owner, a reader the job is shared with and a stranger each see; the submit pages, whose
refusals land on the field they name; the job page's results by kind; profiles compared.

Jobs here are brought to their end as a worker leaves them (status, summary in the runners'
shape, artifacts), as tests/test_browser.py does: these tests are about the pages. The runners'
own tests run the work.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import numpy as np
import onnx
import pytest
from django.core.files.base import ContentFile
from django.urls import reverse
from django.utils import timezone

from jobs.demo import tiny_mlp_onnx
from jobs.domain.devices import Announcement, register
from jobs.domain.measures import ms_text
from jobs.domain.state import job_transition
from jobs.domain.status import JobStatus
from jobs.domain.tensor_data import write_h5
from jobs.models import Artifact, Dataset, Device, Job, MLModel, WorkerSeen
from jobs.services.assets import dataset_upload, model_upload
from jobs.services.device_jobs import job_submit_compile, job_submit_inference, job_submit_profile
from sharing.services import sharing_modify
from tests import factories

pytestmark = pytest.mark.django_db


# Inputs: real ONNX models and real h5 files, through the upload services


def fixed_mlp(owner: Any, name: str = "mlp", seed: int = 1) -> MLModel:
    """The demo's perceptron with its batch fixed at 1: a model a profile can measure."""
    model = onnx.load_from_string(tiny_mlp_onnx(name=name, seed=seed))
    for value in (*model.graph.input, *model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_value = 1
    return model_upload(owner=owner, file=ContentFile(model.SerializeToString(), f"{name}.onnx"))


def dynamic_mlp(owner: Any, name: str = "dyn") -> MLModel:
    return factories.onnx_model(owner, name)  # its batch dimension is a name


def tensors(
    owner: Any, tmp_path: Any, name: str = "inputs", samples: int = 3, width: int = 8
) -> Dataset:
    arrays = [np.full((1, width), i, dtype=np.float32) for i in range(samples)]
    path = write_h5({"x": arrays}, tmp_path / f"{name}.h5")
    return dataset_upload(owner=owner, file=ContentFile(path.read_bytes(), f"{name}.h5"))


def box(name: str = "Box A", gpus: list[dict[str, Any]] | None = None) -> Device:
    return register(
        Announcement(
            cpu="Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz", cores=32, memory_bytes=256 * 1024**3,
            os="linux", os_release="Linux-6.1-x86_64", arch="x86_64", vendor="intel",
            onnxruntime="1.23.2", providers=["CPUExecutionProvider"], gpus=gpus or [],
            name_override=name,
        )
    )  # fmt: skip


def worker(device: Device, name: str, seconds_ago: float) -> WorkerSeen:
    seen = timezone.now() - timedelta(seconds=seconds_ago)
    return WorkerSeen.objects.create(name=name, device=device, seen_at=seen, started_at=seen)


def finish(job: Job, summary: dict[str, Any], *, steps: int | None = None, artifacts=()) -> Job:
    """The job run to READY as a worker leaves it: ran on its device, its summary written, its
    artifacts stored."""
    for status in (JobStatus.PENDING, JobStatus.RUNNING, JobStatus.COMPLETED):
        job_transition(job=job, to=status, message=str(status))
    Job.objects.filter(pk=job.pk).update(
        summary=summary, steps_completed=steps, ran_device=job.device
    )
    for kind, name, content in artifacts:
        artifact = Artifact(job=job, kind=kind, name=name, size=len(content), sha256="0" * 64)
        artifact.file.save(name, ContentFile(content))
    job_transition(job=job, to=JobStatus.READY, message="ready")
    job.refresh_from_db()
    return job


# Summaries in the runners' shapes (the preamble of issue 24): times in µs, memory in bytes.

PROFILE_SUMMARY = {
    "execution_summary": {
        "estimated_inference_time": 1234,
        "estimated_inference_peak_memory": 3 * 1024**2,
        "first_load_time": 45678,
        "first_load_peak_memory": 5 * 1024**2,
        "warm_load_time": 2345,
        "warm_load_peak_memory": 4 * 1024**2,
    },
    "runs": 100,
    "latency_us": {"min": 1100.0, "median": 1234.0, "p90": 1400.0, "max": 2100.0, "mean": 1250.0},
    "providers": ["CPUExecutionProvider"],
    "slowest_layers": [
        {
            "name": "/layers.0/MatMul",
            "type": "MatMul",
            "compute_unit": "CPU",
            "execution_time": 300,
        },
        {"name": "/layers.0/Add", "type": "Add", "compute_unit": "CPU", "execution_time": 120},
    ],
    "op_type_times": {"MatMul": 500.0, "Add": 120.0, "Relu": 60.0},
}


def profiled(owner: Any, model: MLModel, device: Device, **changes: Any) -> Job:
    job = job_submit_profile(owner=owner, model=model, device=device)
    summary = json.loads(json.dumps(PROFILE_SUMMARY))
    summary["latency_us"].update(changes)
    return finish(
        job,
        summary,
        steps=100,
        artifacts=[
            ("profile", "profile.json", b'{"execution_summary": {}, "execution_detail": []}')
        ],
    )


def page(client: Any, user: Any, url: str, status: int = 200) -> str:
    client.force_login(user)
    answer = client.get(url)
    assert answer.status_code == status, (url, answer.status_code)
    return answer.content.decode()


# Devices


def test_the_device_list_shows_workers_load_and_attributes_and_counts_only_the_readers_jobs(
    client, alice, bob, charlie
):
    a, gpu = (
        box("Box A"),
        box("GPU box", gpus=[{"name": "NVIDIA H100 80GB HBM3", "memory_bytes": 80 * 1024**3}]),
    )
    worker(a, "w1@a", seconds_ago=1)
    worker(gpu, "w9@gpu", seconds_ago=24 * 3600)  # long gone
    job = job_submit_profile(owner=alice, model=fixed_mlp(alice), device=a)
    job_transition(job=job, to=JobStatus.PENDING, message="Queued; waiting for a worker.")
    sharing_modify(target=job, actor=alice, add_emails=[bob.email])
    for reader, yours in ((alice, True), (bob, True), (charlie, False)):
        listing = page(client, reader, reverse("jobs:devices"))
        row = listing[listing.index('data-device="box-a"') :].split("</tr>")[0]
        assert "1 online" in row and "1 queued · 0 running" in row
        assert ("1 of yours" in row) is yours
        gpu_row = listing[listing.index('data-device="gpu-box"') :].split("</tr>")[0]
        assert "none online" in gpu_row and "accelerator:cuda" in gpu_row
        assert "NVIDIA H100 80GB HBM3 (80.0 GiB)" in gpu_row
        assert job.public_id not in listing and job.name not in listing


def test_the_device_page_shows_its_workers_its_queue_and_only_the_jobs_the_reader_may_read(
    client, alice, bob, charlie
):
    a = box()
    worker(a, "w1@host", seconds_ago=2)
    worker(a, "w2@old-host", seconds_ago=3 * 3600)
    job = job_submit_profile(owner=alice, model=fixed_mlp(alice), device=a, name="latency of mlp")
    job_transition(job=job, to=JobStatus.PENDING, message="Queued; waiting for a worker.")
    sharing_modify(target=job, actor=alice, add_emails=[bob.email])
    url = reverse("jobs:device-detail", args=[a.slug])
    for reader in (alice, bob):
        seen = page(client, reader, url)
        workers = seen[seen.index('id="device-workers"') :].split("</table>")[0]
        assert "w1@host" in workers and "w2@old-host" in workers
        assert "1 of 2 online" in seen
        assert "3\xa0hours ago" in workers  # last seen, in words
        active = seen[seen.index('id="device-active"') :].split("</table>")[0]
        assert "latency of mlp" in active and "pending" in active
        assert "Profile a model here" in seen and f"?device={a.slug}" in seen
    stranger = page(client, charlie, url)
    assert "1 job waits for it" in stranger  # how busy it is is no one's secret
    assert job.public_id not in stranger and "latency of mlp" not in stranger
    assert "none of them is yours or shared with you" in stranger
    page(client, charlie, reverse("jobs:device-detail", args=["no-such-box"]), 404)


def test_models_profiled_on_a_device_show_their_latest_latency_and_memory_to_their_readers(
    client, alice, bob, charlie
):
    a = box()
    model = fixed_mlp(alice, "encoder")
    profiled(alice, model, a, median=5000.0)
    latest = profiled(alice, model, a, median=1234.0)
    sharing_modify(target=latest, actor=alice, add_emails=[bob.email])
    url = reverse("jobs:device-detail", args=[a.slug])
    for reader in (alice, bob):
        seen = page(client, reader, url)
        table = seen[seen.index('id="device-profiled"') :].split("</table>")[0]
        assert table.count("<tr data-model=") == 1  # each model once: its latest profile
        assert "encoder" in table and "1.234 ms" in table and "3.0 MiB" in table
        assert latest.public_id in table
    # Two profiles of one model are compared from the device page only when there are two models.
    stranger = page(client, charlie, url)
    assert "encoder" not in stranger and "No model you may read was profiled here" in stranger


def test_times_read_in_milliseconds_with_the_digits_that_tell_them_apart():
    assert ms_text(1234) == "1.234 ms"
    assert ms_text(56789) == "56.79 ms"
    assert ms_text(123456) == "123.5 ms"
    assert ms_text(None) == "—"


# Submit pages


def test_the_submit_pages_offer_only_what_the_person_may_use(client, alice, charlie, tmp_path):
    box()
    mine, theirs = fixed_mlp(alice, "mine"), fixed_mlp(charlie, "theirs")
    inputs = tensors(alice, tmp_path)
    jsonl = factories.dataset(alice, name="chat rows")
    compile_page = page(client, alice, reverse("jobs:submit-compile"))
    assert mine.public_id in compile_page and theirs.public_id not in compile_page
    assert "x [1, 8]" in compile_page  # the model's inputs, as input_specs names them
    assert inputs.public_id in compile_page and jsonl.public_id not in compile_page
    for option in ("--target_runtime", "--quantize_full_type", "--quantize_io", "--compute_unit"):
        assert option in compile_page
    assert "{&quot;x&quot;: [1, 8]}" in compile_page  # the example of input_specs
    profile_page = page(client, alice, reverse("jobs:submit-profile"))
    assert "--max_profiler_iterations" in profile_page and "--quantize_io" not in profile_page
    inference_page = page(client, alice, reverse("jobs:submit-inference"))
    assert inputs.public_id in inference_page and jsonl.public_id not in inference_page
    assert "Box A" in inference_page and "Any device" in inference_page


def test_a_link_preselects_the_model_and_device(client, alice):
    a = box()
    model = fixed_mlp(alice)
    seen = page(
        client, alice, f"{reverse('jobs:submit-profile')}?model={model.public_id}&device={a.slug}"
    )
    assert f'<option value="{model.public_id}" selected>' in seen
    assert f'<option value="{a.slug}" selected>' in seen


def refused(client, user, kind: str, data: dict[str, str]) -> dict[str, list[str]]:
    client.force_login(user)
    answer = client.post(reverse(f"jobs:submit-{kind}"), data)
    assert answer.status_code == 200, "a refusal stays on the page"
    errors = answer.context["form"].errors
    html = answer.content.decode()
    for messages in errors.values():  # shown, in the field's error list
        for message in messages:
            assert (
                "errorlist" in html
                and message.replace("'", "&#x27;").replace('"', "&quot;")[:40] in html
            )
    return dict(errors)


def test_refusals_of_the_submit_pages_show_on_the_field_they_name(client, alice, tmp_path):
    a = box()
    fixed, dynamic = fixed_mlp(alice), dynamic_mlp(alice)
    inputs = tensors(alice, tmp_path, width=5)  # the model takes 8 numbers
    before = Job.objects.count()

    errors = refused(client, alice, "compile", {"model": fixed.public_id, "device": ""})
    assert "names a device" in errors["device"][0]
    errors = refused(client, alice, "compile", {"model": dynamic.public_id, "device": a.slug})
    assert "dynamic dimensions" in errors["input_specs"][0] and "batch" in errors["input_specs"][0]
    errors = refused(
        client,
        alice,
        "compile",
        {"model": dynamic.public_id, "device": a.slug, "input_specs": "{x: [1, 8]"},
    )
    assert errors["input_specs"][0].startswith("input_specs is not JSON")
    errors = refused(
        client, alice, "compile",
        {"model": fixed.public_id, "device": a.slug, "options": "--target_runtime tflite"},
    )  # fmt: skip
    assert "--target_runtime tflite" in errors["options"][0] and "onnx" in errors["options"][0]
    errors = refused(
        client, alice, "compile",
        {"model": fixed.public_id, "device": a.slug, "calibration_data": inputs.public_id},
    )  # fmt: skip
    assert "--quantize_full_type int8" in errors["calibration_data"][0]
    errors = refused(client, alice, "profile", {"model": dynamic.public_id, "device": a.slug})
    assert "dynamic dimensions" in errors["model"][0]
    errors = refused(
        client,
        alice,
        "profile",
        {"model": fixed.public_id, "device": a.slug, "options": "--epochs 3"},
    )
    assert "--epochs is not an option of a profile job" in errors["options"][0]
    errors = refused(
        client,
        alice,
        "inference",
        {"model": fixed.public_id, "device": a.slug, "inputs": inputs.public_id},
    )
    assert "'x' sample 0 has shape [1, 5], the model takes [1, 8]" in errors["inputs"][0]
    errors = refused(
        client, alice, "inference", {"model": fixed.public_id, "device": "no-such-box"}
    )
    assert "no-such-box" in errors["device"][0]
    assert Job.objects.count() == before  # nothing was submitted


def test_a_job_submitted_from_each_page_runs_where_it_was_asked_with_its_options(
    client, alice, tmp_path
):
    a = box()
    fixed, dynamic = fixed_mlp(alice), dynamic_mlp(alice)
    inputs = tensors(alice, tmp_path)
    client.force_login(alice)
    answer = client.post(
        reverse("jobs:submit-compile"),
        {
            "model": dynamic.public_id, "device": a.slug, "input_specs": '{"x": [1, 8]}',
            "options": "--quantize_full_type int8", "calibration_data": inputs.public_id,
            "name": "int8 of dyn",
        },
    )  # fmt: skip
    job = Job.objects.get(name="int8 of dyn")
    assert answer["Location"] == job.get_absolute_url()
    assert job.device == a and job.dataset == inputs
    assert job.hyperparameters["parsed"] == {"quantize_full_type": "int8"}
    assert job.hyperparameters["input_specs"] == {"x": {"shape": [1, 8], "dtype": "float32"}}
    client.post(reverse("jobs:submit-profile"), {"model": fixed.public_id, "device": "any"})
    client.post(
        reverse("jobs:submit-inference"),
        {"model": fixed.public_id, "device": "accelerator:cpu", "inputs": inputs.public_id},
    )
    profile = Job.objects.get(kind="profile")
    assert profile.device is None and profile.device_attribute == ""
    inference = Job.objects.get(kind="inference")
    assert inference.device_attribute == "accelerator:cpu" and inference.dataset == inputs


# The job page, by kind


def test_a_compile_job_page_says_what_it_was_compiled_with_its_differences_and_sizes(
    client, alice, bob, charlie
):
    a = box()
    source = dynamic_mlp(alice)
    job = job_submit_compile(
        owner=alice, model=source, device=a, input_specs={"x": [1, 8]},
        options="--quantize_full_type float16",
    )  # fmt: skip
    target = fixed_mlp(alice, "target")
    Job.objects.filter(pk=job.pk).update(target_model=target)
    MLModel.objects.filter(pk=target.pk).update(produced_by=job)
    finish(
        job,
        {
            "target_runtime": "onnx", "quantize_full_type": "float16", "calibration": None,
            "quantize_io": False, "input_specs": {"x": {"shape": [1, 8], "dtype": "float32"}},
            "providers": ["CPUExecutionProvider"], "compared_samples": 3,
            "max_abs_difference": {"y": 0.00123, "z": 0.5}, "largest_difference": 0.5,
            "source_size": 1024, "target_size": 512,
        },
    )  # fmt: skip
    sharing_modify(target=job, actor=alice, add_emails=[bob.email])
    for reader in (alice, bob):
        seen = page(client, reader, job.get_absolute_url())
        made = seen[seen.index('id="compiled-with"') :].split("</dl>")[0]
        assert "float16" in made and "--quantize_full_type float16" in made
        assert "x [1, 8] float32" in made
        differences = seen[seen.index('id="compile-differences"') :].split("</table>")[0]
        assert differences.index(">z<") < differences.index(">y<")  # the largest first
        assert "0.00123" in differences
        assert "1.0 KiB</strong> → <strong>512 B" in seen and "(-50.0%)" in seen
        assert f"?model={target.public_id}&amp;device={a.slug}" in seen  # profile the target
        assert "Compiled, loaded on the device and its outputs checked." in seen
    page(client, charlie, job.get_absolute_url(), 404)


def test_a_profile_job_page_shows_the_execution_summary_and_the_data_its_charts_draw(
    client, alice, bob, charlie
):
    a = box()
    job = profiled(alice, fixed_mlp(alice), a)
    sharing_modify(target=job, actor=alice, add_emails=[bob.email])
    for reader in (alice, bob):
        seen = page(client, reader, job.get_absolute_url())
        execution = seen[seen.index('id="execution-summary"') :].split("</dl>")[0]
        assert 'inference time</dt><dd data-key="estimated_inference_time">1.234 ms' in execution
        assert "45.68 ms" in execution and "3.0 MiB" in execution
        latency = seen[seen.index('id="latency-stats"') :].split("</dl>")[0]
        for stat, shown in (
            ("min", "1.100"),
            ("median", "1.234"),
            ("p90", "1.400"),
            ("max", "2.100"),
        ):
            assert f'data-stat="{stat}">{shown} ms' in latency
        data = json.loads(
            seen.split('id="profile-data" type="application/json">')[1].split("</script>")[0]
        )
        assert [layer["name"] for layer in data["layers"]] == ["/layers.0/MatMul", "/layers.0/Add"]
        assert data["latency_us"]["median"] == 1234.0
        assert 'data-field="steps_completed">100</strong> of up to 100' in seen
        assert f"{reverse('jobs:compare-profiles')}?jobs={job.public_id}" in seen
        assert 'id="latency-chart"' in seen and 'id="layers-chart"' in seen
        assert "vendor/plotly" in seen and "hub/profile" in seen
    page(client, charlie, job.get_absolute_url(), 404)


def test_a_running_profile_page_waits_for_its_runs_without_a_summary(client, alice):
    job = job_submit_profile(
        owner=alice, model=fixed_mlp(alice), device=box(), options="--max_profiler_iterations 40"
    )
    for status in (JobStatus.PENDING, JobStatus.RUNNING):
        job_transition(job=job, to=status, message=str(status))
    Job.objects.filter(pk=job.pk).update(steps_completed=10)
    seen = page(client, alice, job.get_absolute_url())
    assert 'data-field="steps_completed">10</strong> of up to 40' in seen
    assert 'style="width: 25%"' in seen  # 10 of 40 runs
    assert 'id="profile-pending"' in seen and 'id="profile-data"' not in seen
    assert "Linked and verified" not in seen


def test_an_inference_job_page_previews_its_outputs_and_links_their_downloads(
    client, alice, bob, charlie, tmp_path
):
    a = box()
    inputs = tensors(alice, tmp_path)
    job = job_submit_inference(owner=alice, model=fixed_mlp(alice), device=a, inputs=inputs)
    outputs = tensors(alice, tmp_path, name="outputs", width=4)
    Dataset.objects.filter(pk=outputs.pk).update(produced_by=job)
    finish(
        job,
        {
            "samples": 3, "seconds": 0.0123, "providers": ["CPUExecutionProvider"],
            "outputs": [{"name": "y", "dtype": "float32", "shapes": [[1, 4]] * 3,
                         "first_values": [0.5, -1.25, 2.0, 3.0]}],
        },
        artifacts=[("output_data", "output_data.h5", b"h5")],
    )  # fmt: skip
    sharing_modify(target=job, actor=alice, add_emails=[bob.email])
    for reader in (alice, bob):
        seen = page(client, reader, job.get_absolute_url())
        table = seen[seen.index('id="inference-outputs"') :].split("</table>")[0]
        assert ">y<" in table and "float32" in table and "[1, 4] × 3 samples" in table
        assert "0.5, -1.25, 2.0, 3.0" in table
        assert f"/api/v1/jobs/{job.public_id}/artifacts/output_data.h5/" in seen
        assert "(4.100 ms a sample)" in seen
        assert "Inputs <a" in seen  # the inputs dataset, named as such
    owners = page(client, alice, job.get_absolute_url())
    assert reverse("jobs:dataset", args=[outputs.public_id]) in owners
    page(client, charlie, job.get_absolute_url(), 404)


def test_the_results_section_is_fetched_again_by_readers_only(client, alice, bob, charlie):
    job = profiled(alice, fixed_mlp(alice), box())
    sharing_modify(target=job, actor=alice, add_emails=[bob.email])
    url = reverse("jobs:device-job-summary", args=[job.public_id])
    for reader in (alice, bob):
        fragment = page(client, reader, url)
        assert fragment.startswith('<div id="device-job"') or 'id="device-job"' in fragment[:400]
        assert "1.234 ms" in fragment
    stranger = page(client, charlie, url, 404)
    assert job.public_id not in stranger
    link = factories.link_job(alice)  # no such section: an empty one
    empty = page(client, alice, reverse("jobs:device-job-summary", args=[link.public_id]))
    assert 'id="device-job"' in empty and "<section" not in empty


# Compare profiles


def test_profiles_compare_side_by_side_and_each_person_sees_those_they_may_read(
    client, alice, bob, charlie
):
    a, b = box("Box A"), box("Box B")
    model = fixed_mlp(alice, "encoder")
    on_a = profiled(alice, model, a, median=1000.0)
    on_b = profiled(alice, model, b, median=3000.0)
    sharing_modify(target=on_a, actor=alice, add_emails=[bob.email])
    url = f"{reverse('jobs:compare-profiles')}?jobs={on_a.public_id},{on_b.public_id}"

    mine = page(client, alice, url)
    table = mine[mine.index('id="profiles"') :].split("</table>")[0]
    assert on_a.public_id in table and on_b.public_id in table
    assert "Box A" in table and "Box B" in table
    assert '<tr class="differs"><th>median latency</th><td>1.000 ms</td><td>3.000 ms</td>' in table
    assert '<tr class=""><th>peak memory</th><td>3.0 MiB</td><td>3.0 MiB</td>' in table
    data = json.loads(
        mine.split('id="compare-data" type="application/json">')[1].split("</script>")[0]
    )
    assert data["op_types"] == ["MatMul", "Add", "Relu"]
    assert [p["latency_ms"]["median"] for p in data["profiles"]] == [1.0, 3.0]
    assert [p["op_ms"]["MatMul"] for p in data["profiles"]] == [0.5, 0.5]

    readers = page(client, bob, url)
    assert on_a.public_id in readers and on_b.public_id not in readers
    assert "1 of the profiles this link names is not shared with you" in readers
    strangers = page(client, charlie, url)
    assert 'id="profiles"' not in strangers
    assert on_a.public_id not in strangers and "encoder" not in strangers


def test_the_compare_page_offers_a_models_compiled_versions_first(client, alice):
    a = box()
    source = fixed_mlp(alice, "source")
    compile_job = job_submit_compile(owner=alice, model=source, device=a)
    fp16 = fixed_mlp(alice, "source-fp16", seed=2)
    MLModel.objects.filter(pk=fp16.pk).update(produced_by=compile_job)
    of_source = profiled(alice, source, a)
    other = profiled(alice, fixed_mlp(alice, "unrelated", seed=3), a)
    of_fp16 = profiled(alice, fp16, a)
    seen = page(client, alice, f"{reverse('jobs:compare-profiles')}?jobs={of_source.public_id}")
    choices = seen[seen.index('id="profile-choices"') :].split("</ul>")[0]
    assert choices.index(of_fp16.public_id) < choices.index(other.public_id)
    fp16_row = choices[choices.rindex("<li", 0, choices.index(of_fp16.public_id)) :].split("</li>")[
        0
    ]
    assert "same model" in fp16_row


# Datasets of named tensors


def test_a_tensors_dataset_page_lists_its_entries_and_the_job_that_made_it(
    client, alice, bob, charlie, tmp_path
):
    inputs = tensors(alice, tmp_path)
    seen = page(client, alice, reverse("jobs:dataset", args=[inputs.public_id]))
    entries = seen[seen.index('id="tensor-entries"') :].split("</table>")[0]
    assert ">x<" in entries and "float32" in entries and "[1, 8], [1, 8], [1, 8]" in entries
    assert "seed 000's h5 layout" in seen and "an upload" in seen
    assert f"?inputs={inputs.public_id}" in seen  # run inference on it
    job = job_submit_inference(owner=alice, model=fixed_mlp(alice), device=box(), inputs=inputs)
    outputs = tensors(alice, tmp_path, name="outputs", width=4)
    Dataset.objects.filter(pk=outputs.pk).update(produced_by=job)
    made = page(client, alice, reverse("jobs:dataset", args=[outputs.public_id]))
    producer = made[made.index('id="dataset-producer"') :].split("</dd>")[0]
    assert job.public_id in producer and "inference job" in producer
    page(client, charlie, reverse("jobs:dataset", args=[outputs.public_id]), 404)


# Real runs (the compile and inference runners, in this process as a worker runs them)


def test_a_compiled_models_page_shows_what_the_run_recorded_to_owner_and_reader(
    client, alice, bob, charlie, this_device
):
    source = dynamic_mlp(alice)
    job = job_submit_compile(
        owner=alice, model=source, device=this_device, input_specs={"x": [2, 8]},
        options="--quantize_full_type float16",
    )  # fmt: skip
    job = factories.run_here(job)
    assert job.status == JobStatus.READY, job.failure_message
    sharing_modify(target=job, actor=alice, add_emails=[bob.email])
    summary = job.summary
    for reader in (alice, bob):
        seen = page(client, reader, job.get_absolute_url())
        made = seen[seen.index('id="compiled-with"') :].split("</dl>")[0]
        assert "float16" in made and "CPUExecutionProvider" in made
        largest = f"{summary['largest_difference']:.3g}"
        assert f'id="largest-difference">{largest}<' in seen
        assert f"on {summary['compared_samples']} sample inputs" in seen
        sizes = seen[seen.index('id="compile-sizes"') :].split("</p>")[0]
        assert sizes.count("KiB") + sizes.count(" B<") == 2 and "(-" in sizes  # it shrank
        link = f"?model={job.target_model.public_id}&amp;device={this_device.slug}"
        assert link in seen
        profile_page = page(
            client, reader, reverse("jobs:submit-profile") + link.replace("&amp;", "&")
        )
        assert f'<option value="{job.target_model.public_id}" selected>' in profile_page
    page(client, charlie, job.get_absolute_url(), 404)


def test_an_inference_runs_page_previews_its_outputs_and_links_them_for_owner_and_reader(
    client, alice, bob, charlie, this_device, tmp_path
):
    inputs = tensors(alice, tmp_path)
    job = job_submit_inference(
        owner=alice, model=fixed_mlp(alice), device=this_device, inputs=inputs
    )
    job = factories.run_here(job)
    assert job.status == JobStatus.READY, job.failure_message
    sharing_modify(target=job, actor=alice, add_emails=[bob.email])
    (output,) = job.summary["outputs"]
    made = job.produced_datasets.get()
    for reader in (alice, bob):
        seen = page(client, reader, job.get_absolute_url())
        table = seen[seen.index('id="inference-outputs"') :].split("</table>")[0]
        assert f">{output['name']}<" in table and "[1, 4] × 3 samples" in table
        first = f"{output['first_values'][0]:.4g}"
        assert first in table
        downloads = seen[seen.index('id="inference-downloads"') :].split("</ul>")[0]
        assert f"/api/v1/jobs/{job.public_id}/artifacts/output_data.h5/" in downloads
        assert reverse("jobs:dataset", args=[made.public_id]) in downloads  # readable by both
        dataset_page = page(client, reader, reverse("jobs:dataset", args=[made.public_id]))
        assert job.public_id in dataset_page[dataset_page.index('id="dataset-producer"') :]
    page(client, charlie, job.get_absolute_url(), 404)
    page(client, charlie, reverse("jobs:dataset", args=[made.public_id]), 404)


@pytest.mark.django_db(
    transaction=True
)  # the runner's heartbeat thread writes on its own connection
def test_a_profiled_models_page_shows_what_the_run_measured_to_owner_and_reader(
    client, alice, bob, charlie, this_device
):
    job = job_submit_profile(
        owner=alice, model=fixed_mlp(alice), device=this_device,
        options="--max_profiler_iterations 30",
    )  # fmt: skip
    job = factories.run_here(job)
    assert job.status == JobStatus.READY, job.failure_message
    sharing_modify(target=job, actor=alice, add_emails=[bob.email])
    summary = job.summary
    for reader in (alice, bob):
        seen = page(client, reader, job.get_absolute_url())
        execution = seen[seen.index('id="execution-summary"') :].split("</dl>")[0]
        inference = summary["execution_summary"]["estimated_inference_time"]
        assert f'data-key="estimated_inference_time">{ms_text(inference)}<' in execution
        assert "MiB" in execution or "KiB" in execution  # peak memory, measured
        latency = seen[seen.index('id="latency-stats"') :].split("</dl>")[0]
        assert f'data-stat="median">{ms_text(summary["latency_us"]["median"])}<' in latency
        assert 'data-field="steps_completed">30</strong> of up to 30' in seen
        data = json.loads(
            seen.split('id="profile-data" type="application/json">')[1].split("</script>")[0]
        )
        assert [layer["name"] for layer in data["layers"]] == [
            layer["name"] for layer in summary["slowest_layers"]
        ]
        device = page(client, reader, reverse("jobs:device-detail", args=[this_device.slug]))
        profiled_row = device[device.index('id="device-profiled"') :].split("</table>")[0]
        assert (
            job.public_id in profiled_row
            and ms_text(summary["latency_us"]["median"]) in profiled_row
        )
    page(client, charlie, job.get_absolute_url(), 404)
