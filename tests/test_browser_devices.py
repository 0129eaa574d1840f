"""Devices and profiles in real Chromium, against a live hub with real workers: the device
list and page, a profile job's page with its charts (live while it runs), and profiles
compared, at a desktop's and a phone's width, as the owner, a reader and a stranger. The
screenshots land in HUB_SHOTS_DIR (test-artifacts/ unless set) for a person to look at.

The profiles here are measured for real in this process with ONNX Runtime (timed runs, its
profiler's per-node times) and reported through the same Reporter a worker uses: the test is
the worker, so that the page can be watched while the runs arrive.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from django.core.files.base import ContentFile
from onnx import TensorProto, helper, numpy_helper

from jobs.domain.devices import Announcement, register, this_machine
from jobs.domain.measures import ms_text
from jobs.domain.state import job_transition
from jobs.domain.status import JobStatus
from jobs.models import ArtifactKind, Device, Job, JobInput, JobKind, MLModel
from jobs.services.assets import model_upload
from tests import factories, test_browser
from tests.test_browser import at_both_widths, signed_in, wait_until

pytestmark = [pytest.mark.production, pytest.mark.django_db(transaction=True)]
browser = test_browser.browser  # Chromium, as tests/test_browser.py launches it


# A model worth profiling, measured here


def deep_mlp(layers: int = 6, width: int = 64, seed: int = 0) -> bytes:
    """``layers`` × (MatMul, Add, Relu) on a fixed [1, width] input: enough nodes that the
    slowest layers and the op types make a chart."""
    rng = np.random.default_rng(seed)
    nodes, weights, last = [], [], "x"
    for i in range(layers):
        w, b = f"w{i}", f"b{i}"
        weights += [
            numpy_helper.from_array(rng.standard_normal((width, width)).astype(np.float32), w),
            numpy_helper.from_array(rng.standard_normal(width).astype(np.float32), b),
        ]
        nodes += [
            helper.make_node("MatMul", [last, w], [f"mm{i}"], name=f"/layers.{i}/MatMul"),
            helper.make_node("Add", [f"mm{i}", b], [f"add{i}"], name=f"/layers.{i}/Add"),
            helper.make_node("Relu", [f"add{i}"], [f"h{i}"], name=f"/layers.{i}/Relu"),
        ]
        last = f"h{i}"
    graph = helper.make_graph(
        nodes,
        "deep",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, width])],
        [helper.make_tensor_value_info(last, TensorProto.FLOAT, [1, width])],
        initializer=weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.checker.check_model(model)
    return model.SerializeToString()


class Measured:
    """One model measured with ONNX Runtime on this machine, without graph optimizations (so
    that each node of the file is timed on its own): the load times, each timed run, and the
    profiler's time of each node per run."""

    def __init__(self, data: bytes, width: int) -> None:
        import onnxruntime as ort

        self.ort, self.data, self.feed = ort, data, {"x": np.ones((1, width), np.float32)}
        started = time.perf_counter()
        self.session = self._session(profiling=False)
        self.first_load_us = (time.perf_counter() - started) * 1e6
        started = time.perf_counter()
        self._session(profiling=False)
        self.warm_load_us = (time.perf_counter() - started) * 1e6

    def _session(self, profiling: bool) -> Any:
        options = self.ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.graph_optimization_level = self.ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.enable_profiling = profiling
        return self.ort.InferenceSession(self.data, options, providers=["CPUExecutionProvider"])

    def run_us(self) -> float:
        started = time.perf_counter()
        self.session.run(None, self.feed)
        return (time.perf_counter() - started) * 1e6

    def layers(self, runs: int = 11) -> list[dict[str, Any]]:
        session = self._session(profiling=True)
        for _ in range(runs):
            session.run(None, self.feed)
        path = Path(session.end_profiling())
        totals: dict[str, dict[str, Any]] = {}
        seen: set[str] = set()
        for event in json.loads(path.read_text()):
            if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time"):
                continue
            name = event["name"].removesuffix("_kernel_time")
            if name not in seen:  # each node's first, cold run (its buffers allocated) left out
                seen.add(name)
                continue
            entry = totals.setdefault(
                name,
                {
                    "name": name,
                    "type": event["args"]["op_name"],
                    "compute_unit": "CPU",
                    "execution_time": 0.0,
                },
            )
            entry["execution_time"] += event["dur"] / (runs - 1)
        path.unlink()
        return list(totals.values())


def summary_of(measured: Measured, times: list[float]) -> dict[str, Any]:
    """The profile runner's summary shape (issue 24's preamble), from what was measured."""
    layers = measured.layers()
    ops: dict[str, float] = {}
    for layer in layers:
        ops[layer["type"]] = ops.get(layer["type"], 0.0) + layer["execution_time"]
    latency = {
        "min": float(np.min(times)), "median": float(np.median(times)),
        "p90": float(np.percentile(times, 90)), "max": float(np.max(times)),
        "mean": float(np.mean(times)),
    }  # fmt: skip
    return {
        "execution_summary": {
            "estimated_inference_time": round(latency["median"]),
            "first_load_time": round(measured.first_load_us),
            "warm_load_time": round(measured.warm_load_us),
        },
        "runs": len(times),
        "latency_us": latency,
        "providers": ["CPUExecutionProvider"],
        "slowest_layers": sorted(layers, key=lambda layer: -layer["execution_time"])[:10],
        "op_type_times": ops,
    }


def this_device() -> Device:
    return register(this_machine())


def profile_job(owner: Any, model: MLModel, device: Device, planned: int) -> Job:
    """A profile job no worker is sent (this test runs it), claimed as a worker claims it."""
    job = Job.objects.create(
        kind=JobKind.PROFILE, owner=owner, name=f"Profile {model.name}", device=device,
        hyperparameters={"options": f"--max_profiler_iterations {planned}",
                         "parsed": {"max_profiler_iterations": planned}},
    )  # fmt: skip
    JobInput.objects.create(job=job, model=model, position=0)
    return job


def run_profile(
    job: Job, measured: Measured, runs: int, reporter: Any, start: int = 0
) -> list[float]:
    times = []
    for run in range(start + 1, start + runs + 1):
        micros = measured.run_us()
        times.append(micros)
        reporter.metric("latency_ms", run, micros / 1000)
        reporter.progress(steps_completed=run)
    reporter.flush()
    return times


def finish_profile(job: Job, measured: Measured, times: list[float], reporter: Any) -> None:
    summary = summary_of(measured, times)
    reporter.progress(summary=summary)
    path = Path(f"/tmp/profile-{job.public_id}.json")
    detail = summary["slowest_layers"]
    path.write_text(
        json.dumps({"execution_summary": summary["execution_summary"], "execution_detail": detail})
    )
    reporter.artifact(ArtifactKind.PROFILE, "profile.json", path)
    reporter.flush()
    path.unlink()
    job_transition(job=job, to=JobStatus.COMPLETED, message="Profiled.")
    job_transition(job=job, to=JobStatus.READY, message="Ready.")


def run_by_a_worker(job: Job, timeout: float = 180) -> Job:
    from tests.workers import wait_for_status

    job = wait_for_status(job, {JobStatus.READY, JobStatus.FAILED}, timeout)
    assert job.status == JobStatus.READY, job.failure_message
    return job


def profiled_by_a_worker(owner: Any, model: MLModel, runs: int = 100) -> Job:
    """A profile job as anyone submits it, run by the hub's workers (w1, w2) on this machine."""
    from jobs.services.device_jobs import job_submit_profile

    job = job_submit_profile(
        owner=owner, model=model, device=this_device(), options=f"--max_profiler_iterations {runs}"
    )
    return run_by_a_worker(job)


def upload(owner: Any, name: str, layers: int) -> MLModel:
    return model_upload(
        owner=owner, file=ContentFile(deep_mlp(layers=layers), "model.onnx"), name=name
    )


def shots(page: Any, name: str, ready: Any = None) -> None:
    at_both_widths(page, name, ready)


LAYER_NAMES_FIT = (
    "[...document.querySelectorAll('#layers-chart text')].every((t) => "
    "t.getBoundingClientRect().right <= document.documentElement.clientWidth)"
    " && (innerWidth > 560 || document.querySelectorAll('#layers-chart .annotation').length > 0)"
)


def layer_names_fit(page: Any) -> None:
    """Each layer's name shows whole or cut to fit: beside its bar on a desktop, above it on a
    phone (drawn again for the new width)."""
    wait_until(page, LAYER_NAMES_FIT, 10)


# The tests


def test_the_device_pages_for_owner_reader_and_stranger_at_both_widths(
    browser, hub_env, alice, bob, charlie
):
    from sharing.services import sharing_modify

    hub = hub_env["HUB_URL"]
    here = this_device()  # the workers w1 and w2 of this hub run here
    gpu_box = register(
        Announcement.from_dict(
            {
                **this_machine().as_dict(),
                "name_override": "GPU box",
                "gpus": [{"name": "NVIDIA H100 80GB HBM3", "memory_bytes": 80 * 1024**3}],
            }
        )
    )  # fmt: skip  (announced once, no worker online now)
    profile = profiled_by_a_worker(alice, upload(alice, "encoder", layers=6))
    sharing_modify(target=profile, actor=alice, add_emails=[bob.email])
    waiting = profile_job(alice, profile.job_inputs.first().model, gpu_box, 100)
    job_transition(job=waiting, to=JobStatus.PENDING, message="Queued for device GPU box.")

    for who in ("alice", "bob", "charlie"):
        page = signed_in(browser, hub, who)
        page.goto(f"{hub}/jobs/devices/")
        # text_content: the status chips are upper case on screen only (CSS)
        here_row = page.locator(f'tr[data-device="{here.slug}"]').text_content() or ""
        assert "2 online" in here_row  # w1 and w2
        gpu_row = page.locator(f'tr[data-device="{gpu_box.slug}"]').text_content() or ""
        assert "none online" in gpu_row and "1 queued" in gpu_row
        assert "accelerator:cuda" in gpu_row
        shots(page, f"devices-{who}")
        page.goto(f"{hub}/jobs/devices/{here.slug}/")
        workers = page.text_content("#device-workers") or ""
        assert "w1@" in workers and "w2@" in workers and "online" in workers
        if who == "charlie":
            assert profile.public_id not in page.content()
            assert "No model you may read was profiled here" in page.inner_text("main")
        else:
            assert "encoder" in page.inner_text("#device-profiled")
            assert profile.public_id in page.inner_text("#device-jobs")
        shots(page, f"device-{who}")
        page.goto(f"{hub}/jobs/devices/{gpu_box.slug}/")
        active = page.inner_text("#device-active-card")
        assert "1 job waits for it" in active
        assert (waiting.public_id in active) is (who == "alice")  # not shared with Bob
        shots(page, f"device-gpu-box-{who}")
        page.context.close()


def test_a_profile_fills_its_page_live_and_ends_with_its_charts(
    browser, hub_env, alice, bob, charlie
):
    from jobs.engine.execution import Heartbeat
    from jobs.engine.reporter import Reporter
    from sharing.services import sharing_modify

    hub = hub_env["HUB_URL"]
    data = deep_mlp(layers=8)
    model = model_upload(owner=alice, file=ContentFile(data, "deep.onnx"))
    job = profile_job(alice, model, this_device(), planned=80)
    sharing_modify(target=job, actor=alice, add_emails=[bob.email])
    measured = Measured(data, 64)
    page = signed_in(browser, hub, "alice")
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    job, token = factories.claimed(job)
    reporter = Reporter(job, token)
    # As a worker does: a heartbeat of its own while the test watches the page between runs.
    with Heartbeat(reporter, every=1.0):
        page.goto(f"{hub}/jobs/{job.public_id}/")
        page.wait_for_selector("#live[data-state=live]")
        page.evaluate("window.sameDocument = true")
        times = run_profile(job, measured, 40, reporter)
        wait_until(page, "window.hubProfile.points.length === 40", 15)
        wait_until(page, "document.getElementById('runs-bar').style.width === '50%'", 15)
        assert page.inner_text("#profile-runs").startswith("Timed runs: 40 of up to 80")
        # Drawn on the next animation frame after the points arrive.
        drawn = "document.getElementById('latency-chart').data?.[0]?.x?.length"
        wait_until(page, f"{drawn} === 40", 15)
        assert page.locator("#profile-pending").is_visible()
        shots(page, "profile-running")
        times += run_profile(job, measured, 40, reporter, start=40)
        finish_profile(job, measured, times, reporter)
    page.wait_for_selector("#execution-summary", timeout=15_000)
    page.wait_for_selector("#layers-chart .main-svg", timeout=15_000)
    assert page.evaluate("window.sameDocument") is True  # no reload: the section was fetched
    wait_until(page, "window.hubProfile.points.length === 80", 15)
    assert page.inner_text("#link-progress") == "Profiled: the results are below."
    bars = page.evaluate("document.getElementById('layers-chart').data[0].x.length")
    assert bars == 10  # the ten slowest of 24 nodes
    median = page.inner_text('#latency-stats dd[data-stat="median"]')
    assert median == f"{np.median(times) / 1000:.3f} ms"
    # The fetched section's chart is drawn on the next animation frame, not at once.
    chart = "document.getElementById('latency-chart')"
    wait_until(page, f"({chart}.layout?.annotations ?? []).length > 0", 15)
    annotations = page.evaluate(f"{chart}.layout.annotations.map((a) => a.text)")
    assert annotations == ["median", "p90"]
    beyond = page.locator("#latency-beyond")
    if beyond.is_visible():  # slow outliers, counted, off the edge of the bulk of the runs
        assert "beyond the right edge" in beyond.inner_text()
    shots(page, "profile-ready-owner", ready=layer_names_fit)
    assert errors == []

    reader = signed_in(browser, hub, "bob")
    reader.goto(f"{hub}/jobs/{job.public_id}/")
    reader.wait_for_selector("#layers-chart .main-svg")
    wait_until(reader, "window.hubProfile.points.length === 80", 15)
    assert reader.locator(".rename").count() == 0  # a reader's page
    shots(reader, "profile-ready-reader", ready=layer_names_fit)
    reader.click("#compare-profiles-link")
    reader.wait_for_selector("#profile-choices")
    stranger = signed_in(browser, hub, "charlie")
    answer = stranger.goto(f"{hub}/jobs/{job.public_id}/")
    assert answer.status == 404 and job.name not in stranger.content()
    assert stranger.goto(f"{hub}/jobs/{job.public_id}/summary/").status == 404


def test_profiles_compare_side_by_side_for_owner_reader_and_stranger(
    browser, hub_env, alice, bob, charlie
):
    from sharing.services import sharing_modify

    hub = hub_env["HUB_URL"]
    from jobs.services.device_jobs import job_submit_compile

    # Markup in a name shows as the characters typed, in the table and in the charts' legends.
    source = upload(alice, "<b>deep</b> net with a long name for a phone", layers=12)
    compiled = run_by_a_worker(
        job_submit_compile(
            owner=alice, model=source, device=this_device(), options="--quantize_full_type float16"
        )
    )
    fp32 = profiled_by_a_worker(alice, source)
    assert compiled.target_model is not None
    fp16 = profiled_by_a_worker(alice, compiled.target_model)
    sharing_modify(target=fp16, actor=alice, add_emails=[bob.email])
    query = f"?jobs={fp32.public_id},{fp16.public_id}"

    owner = signed_in(browser, hub, "alice")
    owner.goto(f"{hub}/jobs/compare-profiles/{query}")
    owner.wait_for_selector("#ops-compare .main-svg")
    assert owner.evaluate("document.getElementById('latency-compare').data.length") == 2
    types = owner.evaluate("document.getElementById('ops-compare').data[0].y")
    assert len(set(types)) == len(types) and "FusedGemm" in types  # MatMul + Add, fused
    table = owner.inner_text("#profiles")
    assert "<b>deep</b> net with a long name" in table and compiled.target_model.name in table
    legend = owner.locator("#latency-compare .legend").text_content() or ""
    assert "<b>deep</b> net" in legend and owner.locator("#latency-compare .legend b").count() == 0
    medians = owner.locator("#profiles tr:has(th:text-is('median latency')) td").all_inner_texts()
    assert medians == [ms_text(job.summary["latency_us"]["median"]) for job in (fp32, fp16)]

    def charts_readable(page: Any) -> None:
        # Each legend is drawn again for the width (its labels cut to fit), below its plot.
        fits = (
            "[...document.querySelectorAll('#compare-profiles ~ .card .legend, #compare-profiles .legend')]"
            ".every((l) => l.getBoundingClientRect().right <= document.documentElement.clientWidth - 12)"
        )
        wait_until(page, fits, 10)
        for chart in ("#latency-compare", "#ops-compare"):
            plot = page.locator(f"{chart} .nsewdrag").first.bounding_box()
            legend = page.locator(f"{chart} .legend").bounding_box()
            assert plot and legend and legend["y"] >= plot["y"] + plot["height"], chart
        box = page.locator(".table-scroll").bounding_box()
        assert box is not None and box["x"] + box["width"] <= page.viewport_size["width"]

    shots(owner, "compare-profiles-owner", ready=charts_readable)

    reader = signed_in(browser, hub, "bob")
    reader.goto(f"{hub}/jobs/compare-profiles/{query}")
    reader.wait_for_selector("#latency-compare .main-svg")
    assert fp32.public_id not in reader.content()
    assert "1 of the profiles this link names is not shared with you" in reader.inner_text(
        "#left-out"
    )
    shots(reader, "compare-profiles-reader")
    stranger = signed_in(browser, hub, "charlie")
    stranger.goto(f"{hub}/jobs/compare-profiles/{query}")
    assert stranger.locator("#profiles").count() == 0
    assert fp16.public_id not in stranger.content() and "deep" not in stranger.content()
    shots(stranger, "compare-profiles-stranger")


def test_the_submit_pages_show_a_refusal_on_its_field_at_both_widths(browser, hub_env, alice):
    hub = hub_env["HUB_URL"]
    here = this_device()
    dynamic = factories.onnx_model(alice, "dynamic batch")  # its batch dimension is a name
    page = signed_in(browser, hub, "alice")
    page.goto(f"{hub}/jobs/new/profile/?device={here.slug}")
    page.select_option("#id_model", dynamic.public_id)
    page.click("button[type=submit]")
    error = page.locator("#id_model ~ .errorlist")
    assert "dynamic dimensions" in error.inner_text() and "batch" in error.inner_text()
    assert page.input_value("#id_device") == here.slug  # what was chosen stays chosen
    shots(page, "submit-profile-refused")
    page.click("#compile-first a")  # what to do instead, one click away
    assert page.input_value("#id_model") == dynamic.public_id
    assert page.input_value("#id_device") == here.slug
    page.fill("#id_input_specs", '{"x": [1, 8]')
    page.fill("#id_options", "--target_runtime tflite")
    page.click("button[type=submit]")
    assert "not JSON" in page.locator("#id_input_specs ~ .errorlist").inner_text()
    page.fill("#id_input_specs", '{"x": [1, 8]}')
    page.click("button[type=submit]")
    assert "--target_runtime tflite" in page.locator("#id_options ~ .errorlist").inner_text()
    assert page.locator("#options-help[open]").count() == 1  # the options it takes, opened
    shots(page, "submit-compile-refused")


def test_a_profile_submitted_from_the_page_runs_on_a_worker_to_its_charts(browser, hub_env, alice):
    hub = hub_env["HUB_URL"]
    here = this_device()
    model = upload(alice, "encoder", layers=8)
    page = signed_in(browser, hub, "alice")
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{hub}/jobs/devices/{here.slug}/")
    page.click("#profile-here")  # from the device's page: the device chosen
    page.select_option("#id_model", model.public_id)
    page.fill("#id_options", "--max_profiler_iterations 300")
    page.click("button[type=submit]")
    page.wait_for_url("**/jobs/j*/")
    page.evaluate("window.sameDocument = true")
    page.wait_for_selector("#execution-summary", timeout=180_000)  # fetched when it finished
    page.wait_for_selector("#layers-chart .main-svg", timeout=15_000)
    assert page.evaluate("window.sameDocument") is True
    job = Job.objects.get(public_id=page.url.rstrip("/").rsplit("/", 1)[1])
    assert job.status == JobStatus.READY and job.ran_device == here
    wait_until(page, f"window.hubProfile.points.length === {job.summary['runs']}", 15)
    assert page.inner_text("#profile-runs").startswith(
        f"Timed runs: {job.summary['runs']} of up to 300"
    )
    for key in ("estimated_inference_peak_memory", "first_load_time", "warm_load_time"):
        assert page.locator(f'#execution-summary dd[data-key="{key}"]').count() == 1, key
    shots(page, "profile-worker-run", ready=layer_names_fit)
    assert errors == []


def test_a_compile_and_an_inference_job_show_their_results_at_both_widths(
    browser, hub_env, alice, tmp_path
):
    from jobs.domain.tensor_data import write_h5
    from jobs.services.assets import dataset_upload
    from jobs.services.device_jobs import job_submit_compile, job_submit_inference

    hub = hub_env["HUB_URL"]
    source = upload(alice, "encoder", layers=4)
    compiled = run_by_a_worker(
        job_submit_compile(
            owner=alice, model=source, device=this_device(), options="--quantize_full_type float16"
        )
    )
    arrays = [
        np.random.default_rng(i).standard_normal((1, 64)).astype(np.float32) for i in range(3)
    ]
    path = write_h5({"x": arrays}, tmp_path / "inputs.h5")
    inputs = dataset_upload(owner=alice, file=ContentFile(path.read_bytes(), "inputs.h5"))
    assert compiled.target_model is not None
    inference = run_by_a_worker(
        job_submit_inference(
            owner=alice, model=compiled.target_model, device=this_device(), inputs=inputs
        )
    )
    page = signed_in(browser, hub, "alice")
    page.goto(f"{hub}/jobs/{compiled.public_id}/")
    largest = f"{compiled.summary['largest_difference']:.3g}"
    assert page.inner_text("#largest-difference") == largest
    shots(page, "compile-job")
    page.click("#profile-target")  # profile what it made, on the same device
    assert page.input_value("#id_model") == compiled.target_model.public_id
    page.goto(f"{hub}/jobs/{inference.public_id}/")
    outputs = page.inner_text("#inference-outputs")
    assert "× 3 samples" in outputs and "float32" in outputs
    shots(page, "inference-job")
    page.click("#output-dataset")
    page.wait_for_selector("#tensor-entries")
    assert inference.public_id in page.inner_text("#dataset-producer")
    shots(page, "inference-outputs-dataset")
