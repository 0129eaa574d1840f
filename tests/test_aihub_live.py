"""What a user of seed 000's service does with its own client, qai-hub 0.56.0 unmodified, pointed
at a live hub (uvicorn, PostgreSQL, Redis, real Celery workers on this machine's device):
``qai-hub configure`` with the hub's account, the hub's devices, a model sent in parts and a
dataset, compile, profile and inference run by the workers and waited for by the client, a link
job made in the hub read through the client, sharing with Bob and taking it back (Charlie gets
nothing at any point), renaming, listing, every download, and the client's exceptions carrying
the hub's words for a wrong token, another person's job and a bad option."""

from __future__ import annotations

import configparser
import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import qai_hub
from django.contrib.auth.hashers import make_password
from qai_hub.client import Client, JobType, UserError
from qai_hub.public_rest_api import ClientConfig
from rest_framework.authtoken.models import Token

from aihub.models import Transfer
from jobs.demo import tiny_mlp_onnx
from jobs.domain.status import JobStatus
from jobs.models import Job, MLModel
from jobs.services.jobs import job_submit_link
from tests import factories
from tests.workers import wait_for_status

pytestmark = [pytest.mark.production, pytest.mark.django_db(transaction=True)]
CLI = Path(sys.executable).with_name("qai-hub")


def client_of(url: str, user: Any, token: str | None = None) -> Client:
    key = token or Token.objects.get_or_create(user=user)[0].key
    return Client(ClientConfig(api_url=f"{url}/aihub/", web_url=f"{url}/", api_token=key))


def settled(job_id: str) -> Job:
    """The workers' side of the job, once it finished (the client then reads it at once)."""
    job = Job.objects.get(public_id=job_id)
    return wait_for_status(job, {JobStatus.READY, JobStatus.FAILED, JobStatus.CANCELLED}, 180)


def test_seed_000s_client_does_its_whole_round_against_a_live_hub(
    live_hub, workers, alice, bob, charlie, tmp_path, monkeypatch
):
    url = live_hub.url
    # configure, as the client's own command line does it: the hub's account gives the token
    # (hashed as the live hub hashes, not with the tests' fast hasher).
    alice.password = make_password(factories.PASSWORD, hasher="pbkdf2_sha256")
    alice.save(update_fields=["password"])
    home = tmp_path / "home"
    home.mkdir()
    configured = subprocess.run(
        [str(CLI), "configure", "--email", alice.email, "--password", factories.PASSWORD,
         "--api_url", f"{url}/aihub/", "--web_url", f"{url}/", "--no-verbose"],
        env={**os.environ, "HOME": str(home)}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert configured.returncode == 0, configured.stderr
    ini = configparser.ConfigParser()
    ini.read(home / ".qai_hub" / "client.ini")
    assert ini["api"]["api_token"] == Token.objects.get(user=alice).key
    monkeypatch.setenv("QAIHUB_CLIENT_INI", str(home / ".qai_hub" / "client.ini"))
    hub = qai_hub.Client()  # reads the file, as every script of theirs does
    listed = subprocess.run(
        [str(CLI), "list-devices"], env={**os.environ, "HOME": str(home)},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    devices = hub.get_devices()
    assert devices and all(d.name in listed.stdout for d in devices), listed.stdout + listed.stderr
    device = qai_hub.Device(devices[0].name)

    # A model of a few hundred kilobytes goes up in parts (HUB_UPLOAD_PART_BYTES is 128 KiB).
    model_file = tmp_path / "wide.onnx"
    model_file.write_bytes(tiny_mlp_onnx(name="wide", seed=7, inputs=8, outputs=6000))
    model = hub.upload_model(str(model_file))
    transfer = Transfer.objects.get(made=model.model_id)
    assert transfer.size > 2 * transfer.part_size
    stored = MLModel.objects.get(public_id=model.model_id)
    assert stored.sha256 == hashlib.sha256(model_file.read_bytes()).hexdigest()

    rng = np.random.default_rng(2)
    samples = [rng.random((1, 8), dtype=np.float32) for _ in range(3)]
    inputs = hub.upload_dataset({"x": samples}, name="three samples")

    compiled = hub.submit_compile_job(
        model, device=device, input_specs=dict(x=(1, 8)), options="--quantize_full_type float16"
    )
    status = compiled.wait()  # the client's own polling, against the workers
    assert status.success, status.message
    target = compiled.get_target_model()
    assert target is not None
    # float16 inside; its inputs and outputs stay float32 (no --quantize_io)
    assert compiled.get_target_shapes() == {"x": ((1, 8), "float32")}
    compiled_path = compiled.download_target_model(str(tmp_path / "compiled.onnx"))

    profiled = hub.submit_profile_job(target, device=device, options="--max_profiler_iterations 5")
    settled(profiled.job_id)
    profile = profiled.download_profile()
    assert len(profile["execution_summary"]["all_inference_times"]) == 5
    assert profile["execution_detail"]
    # Compile and profile at once: the profile waits for the compile's model, on the workers.
    chained, after = hub.submit_compile_and_profile_jobs(
        model, device, input_specs={"x": (1, 8)}, profile_options="--max_profiler_iterations 3"
    )
    assert settled(after.job_id).status == JobStatus.READY
    assert settled(after.job_id).job_inputs.get().model.public_id == (
        chained.get_target_model().model_id
    )
    assert len(after.download_profile()["execution_summary"]["all_inference_times"]) == 3

    inferred = hub.submit_inference_job(target, device=device, inputs=inputs)  # profile=True
    settled(inferred.job_id)
    outputs = inferred.download_output_data()
    assert outputs is not None
    session = ort.InferenceSession(compiled_path, providers=["CPUExecutionProvider"])
    for sample, output in zip(samples, outputs["y"], strict=True):
        expected = session.run(None, {"x": sample})[0]
        np.testing.assert_allclose(output, expected, rtol=1e-3)
    assert inferred.download_profile()["execution_summary"]["estimated_inference_time"] > 0
    results = inferred.download_results(str(tmp_path / "results"))
    assert results.status.success and results.profile
    assert (tmp_path / "results" / f"{inferred.job_id}.log").read_text().strip()

    # A link job made in the hub, read, waited for and downloaded through qai-hub.
    linked = job_submit_link(
        owner=alice,
        models=[factories.onnx_model(alice, "a", 1), factories.onnx_model(alice, "b", 2)],
    )
    read = hub.get_job(linked.public_id)
    assert isinstance(read, qai_hub.LinkJob)
    settled(linked.public_id)
    assert read.wait().success
    read.download_target_model(str(tmp_path / "linked"))

    # Rename and list.
    compiled.set_name("wide, float16")
    assert Job.objects.get(public_id=compiled.job_id).name == "wide, float16"
    summaries = hub.get_job_summaries(type=JobType.INFERENCE)
    assert [s.job_id for s in summaries] == [inferred.job_id, after.job_id, profiled.job_id]
    assert {m.model_id for m in hub.get_models()} >= {model.model_id, target.model_id}

    # Sharing: Bob reads what is shared with him; Charlie never reads anything.
    bobs, charlies = client_of(url, bob), client_of(url, charlie)

    def charlie_sees_nothing() -> None:
        for job_id in (compiled.job_id, inferred.job_id, linked.public_id):
            with pytest.raises(UserError, match="could not be found"):
                charlies.get_job(job_id)
        with pytest.raises(UserError, match="could not be found"):
            charlies.get_model(target.model_id)
        assert charlies.get_job_summaries() == [] and charlies.get_models() == []

    charlie_sees_nothing()
    inferred.modify_sharing(add_emails=[bob.email])
    assert inferred.get_sharing() == [bob.email]
    as_bob = bobs.get_job(inferred.job_id, JobType.INFERENCE)
    bobs_outputs = as_bob.download_output_data()
    assert bobs_outputs is not None
    np.testing.assert_array_equal(bobs_outputs["y"][0], outputs["y"][0])
    # Seed 000: sharing an inference job shares the compile job it ran the model of.
    bobs_compile = bobs.get_job(compiled.job_id, JobType.COMPILE)
    assert bobs_compile.download_target_model(str(tmp_path / "bob.onnx"))
    with pytest.raises(UserError, match="owner"):
        as_bob.modify_sharing(add_emails=[charlie.email])
    model.modify_sharing(add_emails=[bob.email])
    assert bobs.get_model(model.model_id).name == "wide.onnx"
    charlie_sees_nothing()
    inferred.modify_sharing(delete_emails=[bob.email])
    model.disable_sharing()
    for job_id in (inferred.job_id, compiled.job_id):
        with pytest.raises(UserError, match="could not be found"):
            bobs.get_job(job_id)
    with pytest.raises(UserError, match="could not be found"):
        bobs.get_model(model.model_id)
    charlie_sees_nothing()

    # The client's exceptions, in the hub's words.
    with pytest.raises(UserError, match="Failed to authenticate"):
        client_of(url, alice, token="0" * 40).get_devices()
    theirs = job_submit_link(owner=charlie, models=[factories.onnx_model(charlie, "c", 3)])
    with pytest.raises(UserError, match=r"could not be found\. It may not exist or you may not"):
        hub.get_job(theirs.public_id)
    with pytest.raises(UserError, match="this hub's devices have no npu"):
        hub.submit_profile_job(target, device=device, options="--compute_unit npu")
