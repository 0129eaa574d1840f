"""Seed 000's own client, qai-hub 0.56.0 as installed from the index, unmodified, against the
hub's /aihub/ face over real HTTP (the test server): configure, devices, models and datasets up
and down, compile, profile and inference jobs run as a worker runs them, link jobs read,
sharing with a second person (a third never sees anything), and each error the client raises
carrying the hub's words."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import qai_hub
from qai_hub.client import Client
from qai_hub.public_rest_api import ClientConfig
from rest_framework.authtoken.models import Token

from jobs.demo import tiny_mlp_onnx
from jobs.models import Job
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)


def client_of(live_server: Any, user: Any) -> Client:
    token, _ = Token.objects.get_or_create(user=user)
    return Client(
        ClientConfig(
            api_url=f"{live_server.url}/aihub/",
            web_url=f"{live_server.url}/",
            api_token=token.key,
            verbose=False,
        )
    )


def run(job_id: str) -> Job:
    """The hub's job run in this process as a worker runs it."""
    return factories.run_here(Job.objects.get(public_id=job_id))


@pytest.fixture
def onnx_file(tmp_path: Path) -> Path:
    path = tmp_path / "mlp.onnx"
    path.write_bytes(tiny_mlp_onnx(name="mlp", seed=3))
    return path


def test_smoke(live_server, alice, this_device, onnx_file, tmp_path):
    hub = client_of(live_server, alice)
    devices = hub.get_devices()
    assert [d.name for d in devices] == [this_device.name]
    model = hub.upload_model(str(onnx_file))
    assert model.model_id.startswith("m")
    again = hub.get_model(model.model_id)
    assert again.name == "mlp.onnx"
    device = qai_hub.Device(this_device.name)
    job = hub.submit_compile_job(model, device=device, input_specs=dict(x=(1, 8)))
    assert job.get_status().code in ("CREATED", "OPTIMIZING_MODEL")
    run(job.job_id)
    status = job.wait()
    assert status.success, status
    target = job.download_target_model(str(tmp_path / "compiled"))
    assert Path(target).is_file()
    prof = hub.submit_profile_job(job.get_target_model(), device=device)
    run(prof.job_id)
    profile = prof.download_profile()
    assert profile["execution_summary"]["estimated_inference_time"] > 0
    x = np.random.default_rng(0).random((1, 8), dtype=np.float32)
    inf = hub.submit_inference_job(
        job.get_target_model(), device=device, inputs=dict(x=[x]), profile=False
    )
    run(inf.job_id)
    out = inf.download_output_data()
    print(out.keys())
    print(hub.get_job_summaries())
