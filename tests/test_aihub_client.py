"""Seed 000's own client, qai-hub 0.56.0 as installed from the index, unmodified, against the
hub's /aihub/ face over real HTTP (Django's test server; the jobs run in this process as a worker
runs them — tests/test_aihub_live.py does it all again with real workers on PostgreSQL and
Redis): models and datasets up and down through signed addresses, compile, profile and inference
results read as the client reads them, link and fine-tuning jobs, and each refusal raised by the
client as its own exception carrying the hub's words."""

from __future__ import annotations

import hashlib
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import qai_hub
import requests
from qai_hub.client import Client, JobStatus, JobType, UserError
from qai_hub.public_rest_api import ClientConfig
from rest_framework.authtoken.models import Token

from aihub.models import Transfer
from jobs.demo import tiny_mlp_onnx
from jobs.domain.status import JobStatus as JobState
from jobs.models import Dataset, Job, MLModel
from jobs.services.jobs import job_submit_link
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)


def client_of(live_server: Any, user: Any, token: str | None = None) -> Client:
    if token is None:
        token = Token.objects.get_or_create(user=user)[0].key
    return Client(
        ClientConfig(
            api_url=f"{live_server.url}/aihub/",
            web_url=f"{live_server.url}/",
            api_token=token,
            verbose=False,
        )
    )


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run(job_id: str) -> Job:
    """The hub's job, run in this process as a worker runs it."""
    return factories.run_here(Job.objects.get(public_id=job_id))


@pytest.fixture
def onnx_file(tmp_path: Path) -> Path:
    path = tmp_path / "mlp.onnx"
    path.write_bytes(tiny_mlp_onnx(name="mlp", seed=3))
    return path


@pytest.fixture
def hub(live_server: Any, alice: Any) -> Client:
    return client_of(live_server, alice)


@pytest.fixture
def device(this_device: Any) -> qai_hub.Device:
    return qai_hub.Device(this_device.name)


def test_the_client_compiles_profiles_and_infers_on_the_hubs_device(
    hub, device, this_device, onnx_file, tmp_path
):
    assert [(d.name, d.attributes) for d in hub.get_devices()] == [
        (this_device.name, this_device.attributes)
    ]
    assert hub.get_devices(attributes="framework:onnx")[0].name == this_device.name
    assert hub.get_devices(name="Samsung Galaxy S23") == []
    assert hub.get_frameworks()[0].name == "ONNX Runtime"

    model = hub.upload_model(str(onnx_file))
    stored = MLModel.objects.get(public_id=model.model_id)
    assert stored.name == "mlp.onnx" and stored.sha256 == sha256_of(onnx_file)
    assert hub.get_model(model.model_id).input_spec == {
        None: [qai_hub.client.TensorSpec("x", "float32", (-1, 8))]
    }

    compiled = hub.submit_compile_job(model, device=device, input_specs=dict(x=(1, 8)))
    assert compiled.get_status().code == "CREATED"
    target = compiled.get_target_model()  # given out at submit, before the job made it
    assert (
        target is not None
        and target.model_id == Job.objects.get(public_id=compiled.job_id).target_public_id
    )
    run(compiled.job_id)
    assert compiled.wait().success
    assert compiled.get_target_shapes() == {"x": ((1, 8), "float32")}
    path = compiled.download_target_model(str(tmp_path / "compiled"))
    assert Path(path).read_bytes() == MLModel.objects.get(public_id=target.model_id).file.read()

    profiled = hub.submit_profile_job(target, device=device)
    assert profiled.profiling and isinstance(profiled, qai_hub.InferenceJob)
    run(profiled.job_id)
    profile = profiled.download_profile()
    summary = profile["execution_summary"]
    assert summary["estimated_inference_time"] > 0
    assert len(summary["all_inference_times"]) >= 1
    assert {layer["compute_unit"] for layer in profile["execution_detail"]} == {"CPU"}

    x = np.random.default_rng(0).random((1, 8), dtype=np.float32)
    inferred = hub.submit_inference_job(target, device=device, inputs=dict(x=[x]), profile=False)
    run(inferred.job_id)
    outputs = inferred.download_output_data()
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(outputs["y"][0], session.run(None, {"x": x})[0], rtol=1e-6)

    results = inferred.download_results(str(tmp_path / "results"))
    assert results.status.success
    written = sorted(p.name for p in (tmp_path / "results").iterdir())
    assert f"{inferred.job_id}.log" in written and any(n.endswith(".h5") for n in written)

    summaries = hub.get_job_summaries(type=JobType.COMPILE)
    assert [s.job_id for s in summaries] == [compiled.job_id]
    assert {s.job_id for s in hub.get_job_summaries(state=JobStatus.State.SUCCESS)} == {
        compiled.job_id,
        profiled.job_id,
        inferred.job_id,
    }


def test_a_model_comes_in_parts_each_answered_with_its_etag(hub, onnx_file, settings):
    settings.HUB_UPLOAD_PART_BYTES = 64 * 1024
    big = onnx_file.with_name("wide.onnx")
    big.write_bytes(tiny_mlp_onnx(name="wide", seed=4, inputs=96, outputs=4000))
    assert big.stat().st_size > 3 * 64 * 1024
    model = hub.upload_model(str(big))
    transfer = Transfer.objects.get(made=model.model_id)
    assert transfer.size == big.stat().st_size and transfer.completed_at is not None
    assert transfer.size > 3 * transfer.part_size  # four parts, the last one shorter
    assert MLModel.objects.get(public_id=model.model_id).sha256 == sha256_of(big)


def test_a_part_is_sent_again_and_a_wrong_one_is_refused_by_name(
    live_server, hub, alice, onnx_file, settings
):
    """The client's own calls, step by step: a part may be retried on its own, and completing
    with an ETag that is not the received part's is refused naming the part."""
    from qai_hub import public_rest_api as api

    settings.HUB_UPLOAD_PART_BYTES = 64 * 1024
    data = tiny_mlp_onnx(name="wide", seed=5, inputs=64, outputs=1024)
    created = api._create_model(
        hub.config,
        qai_hub.public_api_pb2.Model(
            name="w.onnx", model_type=qai_hub.public_api_pb2.MODEL_TYPE_ONNX
        ),
    )
    answer = api._get_model_upload_response(hub.config, created.id, len(data), True)
    urls, size = answer.multipart_url.urls, answer.multipart_url.max_part_size
    parts = [data[i * size : (i + 1) * size] for i in range(len(urls))]
    etags = [
        requests.put(u, data=p, timeout=30).headers["ETag"]
        for u, p in zip(urls, parts, strict=True)
    ]
    again = requests.put(urls[0], data=parts[0], timeout=30)  # resent: same part, same tag
    assert again.status_code == 200 and again.headers["ETag"] == etags[0]
    short = requests.put(urls[1], data=parts[1][:-1], timeout=30)
    assert short.status_code == 400 and "<Code>IncompleteBody</Code>" in short.text
    with pytest.raises(qai_hub.public_rest_api.APIException, match="Part 2's ETag"):
        api._complete_model_multipart_upload(
            hub.config, created.id, answer.multipart_url.upload_id, [etags[0]] * len(urls)
        )
    done = api._complete_model_multipart_upload(
        hub.config, created.id, answer.multipart_url.upload_id, etags
    )
    assert MLModel.objects.get(public_id=done.id).size == len(data)
    # Said twice (a lost answer): the same model, not a second one.
    assert (
        api._complete_model_multipart_upload(
            hub.config, created.id, answer.multipart_url.upload_id, etags
        ).id
        == done.id
    )


def test_a_dataset_goes_up_as_seed_000s_h5_and_comes_back(hub, tmp_path):
    rng = np.random.default_rng(1)
    entries = {"x": [rng.random((1, 8), dtype=np.float32) for _ in range(3)]}
    dataset = hub.upload_dataset(entries, name="three")
    stored = Dataset.objects.get(public_id=dataset.dataset_id)
    assert (stored.name, stored.num_records, stored.format) == ("three", 3, "tensors")
    fetched = hub.get_dataset(dataset.dataset_id).download()
    for a, b in zip(fetched["x"], entries["x"], strict=True):
        np.testing.assert_array_equal(a, b)
    assert [d.dataset_id for d in hub.get_datasets()] == [dataset.dataset_id]


def test_a_link_job_made_by_the_hub_reads_waits_and_downloads_through_the_client(
    hub, alice, tmp_path
):
    job = job_submit_link(
        owner=alice,
        models=[factories.onnx_model(alice, "a", 1), factories.onnx_model(alice, "b", 2)],
    )
    read = hub.get_job(job.public_id)
    assert isinstance(read, qai_hub.LinkJob) and read.get_status().code == "CREATED"
    assert [m.model_id for m in read.models] == [
        ji.model.public_id for ji in job.job_inputs.order_by("position")
    ]
    run(job.public_id)
    assert read.wait().success
    path = read.download_target_model(str(tmp_path / "linked"))
    job.refresh_from_db()
    assert path is not None and job.target_model is not None
    assert Path(path).read_bytes() == job.target_model.file.read()


def test_a_fine_tuning_job_is_not_an_ai_hub_job_and_says_where_to_read_it(hub, alice):
    job = factories.customization_job(alice)
    with pytest.raises(UserError, match="customization job, which qai-hub has no type for"):
        hub.get_job(job.public_id)
    assert job.public_id not in {s.job_id for s in hub.get_job_summaries()}


def test_refusals_reach_the_client_in_the_hubs_words(
    live_server, hub, alice, charlie, device, onnx_file, tmp_path
):
    with pytest.raises(UserError, match="Failed to authenticate"):
        client_of(live_server, alice, token="not-a-token").get_devices()
    theirs = factories.link_job(charlie)
    with pytest.raises(UserError, match=r"could not be found.*may not have permission"):
        hub.get_job(theirs.public_id)
    model = hub.upload_model(str(onnx_file))
    with pytest.raises(UserError, match="--target_runtime tflite is made by seed 000's hosted"):
        hub.submit_compile_job(
            model, device=device, input_specs=dict(x=(1, 8)), options="--target_runtime tflite"
        )
    with pytest.raises(UserError, match="has dynamic dimensions"):
        hub.submit_compile_job(model, device=device)
    with pytest.raises(UserError, match="This hub has no device with name 'Samsung Galaxy S23'"):
        hub.submit_compile_job(model, device=qai_hub.Device("Samsung Galaxy S23"))
    tflite = tmp_path / "m.tflite"
    tflite.write_bytes(b"\x00" * 4 + b"TFL3" + b"\x00" * 64)
    with pytest.raises(UserError, match=r"TFLITE model is not one the hub runs.*upload a \.onnx"):
        hub.upload_model(str(tflite))
    with pytest.raises(UserError, match="runs no quantize jobs"):
        hub.submit_quantize_job(
            model,
            calibration_data=dict(x=[np.zeros((1, 8), np.float32)]),
            weights_dtype=qai_hub.QuantizeDtype.INT8,
            activations_dtype=qai_hub.QuantizeDtype.INT8,
        )
    garbage = tmp_path / "bad.onnx"
    garbage.write_bytes(b"not a model")
    with pytest.raises(UserError, match=r"bad\.onnx"):
        hub.upload_model(str(garbage))


def test_an_upload_past_the_limit_or_the_storage_quota_is_refused_before_its_bytes(
    hub, onnx_file, settings
):
    settings.HUB_MAX_UPLOAD_BYTES = 100
    with pytest.raises(UserError, match=r"mlp\.onnx is \d+ bytes; the limit is 100 bytes"):
        hub.upload_model(str(onnx_file))
    settings.HUB_MAX_UPLOAD_BYTES = 1 << 20
    settings.HUB_QUOTA_STORAGE_BYTES = 100
    with pytest.raises(UserError, match="HUB_QUOTA_STORAGE_BYTES"):
        hub.upload_model(str(onnx_file))
    assert not MLModel.objects.exists()


def test_signed_addresses_expire_and_a_revoked_reader_cannot_fetch_with_one(
    live_server, hub, alice, bob, settings
):
    from qai_hub import public_rest_api as api

    model = factories.onnx_model(alice, "shared")
    job = factories.ready_job(job_submit_link(owner=alice, models=[model]))
    from sharing.services import sharing_modify

    sharing_modify(target=job, actor=alice, add_emails=[bob.email])
    bobs = client_of(live_server, bob)
    url = api._get_model_download_response(bobs.config, model.public_id).url.url
    assert urllib.request.urlopen(url).read() == model.file.read()
    sharing_modify(target=job, actor=alice, delete_emails=[bob.email])
    refused = requests.get(url, timeout=30)
    assert refused.status_code == 404 and "<Code>NoSuchKey</Code>" in refused.text
    mine = api._get_model_download_response(hub.config, model.public_id).url.url
    settings.HUB_SIGNED_URL_SECONDS = 0
    expired = requests.get(mine, timeout=30)
    assert expired.status_code == 403 and "expired" in expired.text


def test_the_login_route_gives_the_accounts_token(live_server, alice):
    from qai_hub.api_utils import get_token

    token = get_token(f"{live_server.url}/aihub/", alice.email, factories.PASSWORD)
    assert token == Token.objects.get(user=alice).key
    with pytest.raises(ValueError, match="Wrong Username / Password"):
        get_token(f"{live_server.url}/aihub/", alice.email, "wrong")


def test_the_clients_web_links_open_the_hubs_pages(hub, alice, bob, client, onnx_file):
    from urllib.parse import urlsplit

    model = hub.upload_model(str(onnx_file))
    dataset = hub.upload_dataset({"x": [np.zeros((1, 8), np.float32)]}, name="zeros")
    job = hub.get_job(factories.link_job(alice).public_id)
    client.force_login(alice)
    for url, name in ((model.url, "mlp.onnx"), (job.url, job.name)):
        page = client.get(urlsplit(url).path)
        assert page.status_code == 200 and name in page.content.decode(), url
    assert client.get(f"/datasets/{dataset.dataset_id}/").status_code == 200
    assert client.get("/account/")["Location"] == "/account/token/"  # the client's token help
    client.force_login(bob)
    assert client.get(urlsplit(model.url).path).status_code == 404


def test_a_model_shared_on_its_own_does_not_name_the_job_that_made_it(live_server, hub, alice, bob):
    from sharing.services import sharing_modify

    job = factories.ready_job(factories.link_job(alice))
    assert job.target_model is not None
    sharing_modify(target=job.target_model, actor=alice, add_emails=[bob.email])
    assert hub.get_model(job.target_model.public_id).get_producer().job_id == job.public_id
    bobs = client_of(live_server, bob)
    assert bobs.get_model(job.target_model.public_id).get_producer() is None
    assert [m.get_producer() for m in bobs.get_models()] == [None]


def test_what_an_outside_check_found_now_works_as_on_the_service(
    live_server, hub, alice, bob, device, this_device, onnx_file, tmp_path, monkeypatch
):
    import time

    from django.test import Client as Browser

    from aihub.wire import device_os
    from jobs.domain.state import job_transition
    from jobs.domain.status import FailureType
    from sharing.services import sharing_modify

    # A dataset uploaded east of Greenwich: its "never expires" fits the local calendar.
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")  # UTC+14
    time.tzset()
    try:
        dataset = hub.upload_dataset({"x": [np.zeros((1, 8), np.float32)]})
        assert not dataset.is_expired()
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    # The OS filter reads the kernel's version.
    assert device_os(this_device)
    for os_filter in (device_os(this_device), device_os(this_device).split(".")[0], "[1,1000)"):
        found = hub.get_devices(name=this_device.name, os=os_filter)
        assert [d.name for d in found] == [this_device.name], os_filter
    assert hub.get_devices(name=this_device.name, os="[1000,)") == []
    # Several devices, one compile (seed 000's single_compile).
    model = hub.upload_model(str(onnx_file))
    both = hub.submit_compile_job(model, device=[device, device], input_specs={"x": (1, 8)})
    assert isinstance(both, qai_hub.CompileJob)
    # A compile that fails: its target model says why it was not made.
    job = Job.objects.get(public_id=both.job_id)
    job_transition(
        job=job,
        to=JobState.FAILED,
        message="ONNX Runtime refused it.",
        failure_type=FailureType.INVALID_MODEL,
    )
    with pytest.raises(UserError, match=r"was not made: job .* failed \(ONNX Runtime refused it"):
        both.download_target_model(str(tmp_path / "none.onnx"))
    # States the hub never gives, and more than a page, are answered, not refused.
    assert hub.get_job_summaries(state=JobStatus.State.QUANTIZING_MODEL) == []
    assert len(hub.get_job_summaries(limit=5000)) == 1
    # Whom a job is shared with is its owner's business.
    sharing_modify(target=job, actor=alice, add_emails=[bob.email])
    with pytest.raises(UserError, match="owner"):
        client_of(live_server, bob).get_job(job.public_id).get_sharing()
    # A model a fine-tuning job made is listed and downloads; it names no producer the client
    # could not read.
    tuned = factories.ready_job(factories.customization_job(alice))
    listed = {m.model_id: m for m in hub.get_models()}[tuned.target_model.public_id]
    assert listed.get_producer() is None
    assert Path(listed.download(str(tmp_path / "tuned"))).is_file()
    # Projects, and the client pointed at the hub's root instead of /aihub/.
    with pytest.raises(UserError, match="This hub has no projects"):
        hub.get_models(project="research")
    token = Token.objects.get(user=alice).key
    rooted = Client(ClientConfig(api_url=live_server.url, web_url=live_server.url, api_token=token))
    with pytest.raises(UserError, match=r"configure api_url as .*/aihub/ \(with the trailing"):
        rooted.get_devices()
    browser = Browser()
    browser.force_login(alice)
    page = browser.get("/docs/hub/getting_started.html", follow=True).content.decode()
    assert f"qai-hub configure --api_token {token} --api_url http://testserver/aihub/" in page


def test_a_profile_and_an_inference_of_a_model_still_being_compiled_wait_for_it(
    hub, device, onnx_file
):
    """seed 000's submit_compile_and_profile_jobs: the profile is submitted on the compile's
    target model before it exists; it waits, created, and runs once the model is made."""
    model = hub.upload_model(str(onnx_file))
    compiled, profiled = hub.submit_compile_and_profile_jobs(
        model, device, input_specs={"x": (1, 8)}
    )
    x = np.ones((1, 8), np.float32)
    inferred = hub.submit_inference_job(compiled.get_target_model(), device, inputs={"x": [x]})
    waiting = Job.objects.get(public_id=profiled.job_id)
    assert waiting.waits_for.public_id == compiled.job_id and not waiting.job_inputs.exists()
    assert profiled.get_status().code == "CREATED"
    assert "Waiting for job" in waiting.status_logs.get().message
    run(compiled.job_id)  # its end releases them: checked with the model, and queued
    for job_id in (profiled.job_id, inferred.job_id):
        released = Job.objects.get(public_id=job_id)
        assert released.status == "pending", released.status_logs.values_list("message")
        assert released.job_inputs.get().model.public_id == compiled.get_target_model().model_id
        run(job_id)
    assert profiled.download_profile()["execution_summary"]["estimated_inference_time"] > 0
    assert inferred.download_output_data()["y"][0].shape == (1, 4)
    assert inferred.download_profile()["execution_detail"]


def test_a_job_waiting_for_a_model_that_is_not_made_fails_saying_so(hub, alice, device, onnx_file):
    from jobs.services.jobs import job_cancel

    model = hub.upload_model(str(onnx_file))
    compiled = hub.submit_compile_job(model, device, input_specs={"x": (1, 8)})
    profiled = hub.submit_profile_job(compiled.get_target_model(), device)
    job_cancel(job=Job.objects.get(public_id=compiled.job_id))
    status = profiled.wait()
    assert status.failure
    assert f"Job {compiled.job_id}, which was to make this job's model, did not" in status.message
    # A compile on the target of a job that ended without it is refused at once, in words.
    with pytest.raises(UserError, match=rf"was not made: job {compiled.job_id}"):
        hub.submit_profile_job(compiled.get_target_model(), device)


def test_the_producer_filter_names_only_jobs_the_reader_may_read(live_server, hub, alice, bob):
    from sharing.services import sharing_modify

    job = factories.ready_job(factories.link_job(alice))
    assert job.target_model is not None
    sharing_modify(target=job.target_model, actor=alice, add_emails=[bob.email])
    assert [m.model_id for m in hub.get_models()] != []
    bobs = client_of(live_server, bob)
    assert [m.model_id for m in bobs.get_models()] == [job.target_model.public_id]
    from qai_hub import public_rest_api as api

    by_job = api.get_model_list(bobs.config, producer_id=job.public_id)
    assert list(by_job.models) == []  # Bob may not read the job: the filter tells nothing
    assert [
        m.model_id for m in api.get_model_list(hub.config, producer_id=job.public_id).models
    ] == [job.target_model.public_id]
