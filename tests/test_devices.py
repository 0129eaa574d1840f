"""Devices: what a worker announces becomes a device with a readable name and seed 000's
attributes; a job names a device or an attribute, is queued where only that device's workers
listen, waits with its reason, and is taken only by a worker of that device. Access: every
signed-in person sees the devices, only the jobs they may read."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from hubclient.cli import main as hub_main
from jobs.domain import devices
from jobs.domain.devices import Announcement, register
from jobs.domain.queue import queue_position
from jobs.engine.dispatch import queue_for
from jobs.engine.execution import claim_next
from jobs.models import Device, Hardware, Job, WorkerSeen
from jobs.services.jobs import job_submit_customization, job_submit_link
from sharing.services import sharing_modify
from tests import factories

pytestmark = pytest.mark.django_db


def announcement(**changes) -> Announcement:
    base = {
        "cpu": "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz",
        "cores": 32,
        "memory_bytes": 256 * 1024**3,
        "os": "linux",
        "os_release": "Linux-6.1-x86_64",
        "arch": "x86_64",
        "vendor": "intel",
        "onnxruntime": "1.23.2",
        "providers": ["CPUExecutionProvider"],
    }
    return Announcement(**{**base, **changes})


H100 = {"name": "NVIDIA H100 80GB HBM3", "memory_bytes": 80 * 1024**3}


def test_a_cpu_machine_is_named_by_its_cpu_and_cores_with_seed_000_attributes():
    cpu = announcement()
    assert cpu.name == "Intel Xeon Gold 6338 (32 cores)"
    assert cpu.attributes == [
        "accelerator:cpu",
        "arch:x86_64",
        "chipset:intel-xeon-gold-6338",
        "framework:onnx",
        "os:linux",
        "vendor:intel",
    ]


def test_a_gpu_machine_is_named_by_its_gpus_and_has_accelerator_cuda():
    one = announcement(gpus=[H100], providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert one.name == "NVIDIA H100 80GB HBM3"
    assert {"accelerator:cuda", "vendor:nvidia", "chipset:nvidia-h100-80gb-hbm3"} <= set(
        one.attributes
    )
    assert announcement(gpus=[H100] * 8).name == "NVIDIA H100 80GB HBM3 ×8"


def test_an_operator_names_a_machine_and_its_workers_form_that_device():
    named = announcement(name_override="Anna's laptop")
    assert named.name == "Anna's laptop"
    first, again = register(named), register(named)
    assert first.pk == again.pk and first.slug == "annas-laptop"
    assert Device.objects.count() == 1


def test_workers_of_the_same_hardware_form_one_device_and_update_it():
    first = register(announcement(memory_bytes=1))
    second = register(announcement(memory_bytes=2, onnxruntime="1.24.0"))
    assert first.pk == second.pk
    second.refresh_from_db()
    assert (second.specs["memory_bytes"], second.specs["onnxruntime"]) == (2, "1.24.0")


def test_two_names_that_read_the_same_in_an_address_get_their_own_ids():
    a = register(announcement(name_override="Lab A"))
    b = register(announcement(name_override="LAB A"))
    assert (a.slug, b.slug) == ("lab-a", "lab-a-2")


def test_this_machine_announces_itself_with_onnx_runtime_and_its_providers():
    here = devices.this_machine()
    assert here.cores >= 1 and here.memory_bytes > 0
    assert "CPUExecutionProvider" in here.providers
    assert "framework:onnx" in here.attributes and here.name


def test_a_job_names_a_device_by_name_id_or_attribute_or_runs_anywhere(alice):
    box = register(announcement(name_override="Box A"))
    models = [factories.onnx_model(alice, "m", seed=1)]
    by_name = job_submit_link(owner=alice, models=models, device="box a")
    by_id = job_submit_link(owner=alice, models=models, device=box.slug)
    by_object = job_submit_link(owner=alice, models=models, device=box)
    assert by_name.device == by_id.device == by_object.device == box
    anywhere = job_submit_link(owner=alice, models=models, device="any")
    assert (anywhere.device, anywhere.device_attribute) == (None, "")
    attribute = job_submit_link(owner=alice, models=models, device="os:linux")
    assert (attribute.device, attribute.device_attribute) == (None, "os:linux")


def test_a_device_or_attribute_no_worker_announced_is_refused_naming_what_exists(alice):
    register(announcement(name_override="Box A"))
    models = [factories.onnx_model(alice, "m", seed=1)]
    with pytest.raises(ValidationError) as unknown:
        job_submit_link(owner=alice, models=models, device="Samsung Galaxy S23")
    message = unknown.value.message_dict["device"][0]
    assert "No device 'Samsung Galaxy S23'" in message and "'Box A'" in message
    with pytest.raises(ValidationError) as attribute:
        job_submit_link(owner=alice, models=models, device="accelerator:cuda")
    message = attribute.value.message_dict["device"][0]
    assert "No device has the attribute 'accelerator:cuda'" in message
    assert "accelerator:cpu" in message
    assert not Job.objects.exists()


def test_a_gpu_customization_on_a_device_without_a_gpu_is_refused(alice):
    box = register(announcement(name_override="CPU box"))
    with pytest.raises(ValidationError) as refused:
        job_submit_customization(
            owner=alice, dataset=factories.dataset(alice), device=box, hardware=Hardware.GPU
        )
    assert "device CPU box has none" in refused.value.message_dict["hardware"][0]


def test_each_target_has_a_queue_only_its_workers_consume(alice, settings):
    box = register(announcement(name_override="Box A"))
    models = [factories.onnx_model(alice, "m", seed=1)]
    default = settings.CELERY_TASK_DEFAULT_QUEUE
    assert queue_for(job_submit_link(owner=alice, models=models, device=box)) == (
        f"{default}.device.box-a"
    )
    assert queue_for(job_submit_link(owner=alice, models=models, device="os:linux")) == (
        f"{default}.attr.os.linux"
    )
    assert queue_for(job_submit_link(owner=alice, models=models)) == default
    assert f"{default}.device.box-a" in devices.worker_queue_names(
        default, announcement(name_override="Box A")
    )


def test_a_worker_takes_only_jobs_for_its_device_or_for_any(alice, this_device):
    other = register(announcement(name_override="Somebody else's box", os="windows"))
    models = [factories.onnx_model(alice, "m", seed=1)]
    elsewhere = job_submit_link(owner=alice, models=models, device=other)
    elsewhere_by_attribute = job_submit_link(owner=alice, models=models, device="os:windows")
    for job in (elsewhere, elsewhere_by_attribute):
        Job.objects.filter(pk=job.pk).update(status="pending")
    assert claim_next() is None  # neither is for this machine
    here = job_submit_link(owner=alice, models=models, device=this_device)
    Job.objects.filter(pk=here.pk).update(status="pending")
    taken = claim_next()
    assert taken is not None
    job, _ = taken
    assert job.pk == here.pk and job.ran_device == this_device
    assert f"device {this_device.name}" in job.status_logs.get(status="running").message


def test_a_job_for_a_device_with_no_worker_online_says_so_while_it_waits(alice, settings):
    box = register(announcement(name_override="Box A"))
    job = job_submit_link(
        owner=alice, models=[factories.onnx_model(alice, "m", seed=1)], device=box
    )
    Job.objects.filter(pk=job.pk).update(status="pending")
    job.refresh_from_db()
    place = queue_position(job)
    assert place is not None and place["workers"] == 0
    assert place["reason"].startswith("No worker of device Box A is online")
    from django.utils import timezone

    WorkerSeen.objects.create(
        name="w@box-a", hardware=["any", "cpu"], seen_at=timezone.now(), device=box
    )
    WorkerSeen.objects.create(name="w@other", hardware=["any", "cpu"], seen_at=timezone.now())
    place = queue_position(job)
    assert place is not None and place["workers"] == 1
    assert "running on 1 worker" in place["reason"]


def test_every_signed_in_person_sees_the_devices_and_only_their_own_jobs_on_them(
    alice, bob, charlie
):
    box = register(announcement(name_override="Box A"))
    job = job_submit_link(
        owner=alice, models=[factories.onnx_model(alice, "m", seed=1)], device=box
    )
    sharing_modify(target=job, actor=alice, add_emails=[bob.email])
    listed = factories.api(charlie).get("/api/v1/devices/").json()
    assert [d["name"] for d in listed] == ["Box A"]
    assert listed[0]["jobs_queued"] == 0  # created, not yet pending
    for reader, sees in ((alice, True), (bob, True), (charlie, False)):
        page = factories.api(reader).get(f"/api/v1/devices/{box.slug}/").json()
        assert ([j["id"] for j in page["jobs"]] == [job.public_id]) is sees
    assert factories.api(charlie).get("/api/v1/devices/nothing-here/").status_code == 404
    from rest_framework.test import APIClient

    assert APIClient().get("/api/v1/devices/").status_code == 401


def test_devices_filter_by_name_os_and_attributes_as_seed_000s_get_devices(alice):
    register(announcement(name_override="Box A"))
    register(announcement(name_override="GPU box", gpus=[H100]))
    client = factories.api(alice)

    def names(query: str) -> list[str]:
        return [d["name"] for d in client.get(f"/api/v1/devices/?{query}").json()]

    assert names("attributes=accelerator:cuda") == ["GPU box"]
    assert names("attributes=accelerator:cpu,os:linux") == ["Box A"]
    assert names("name=box") == ["Box A", "GPU box"]
    assert names("os=linux") == ["Box A", "GPU box"]
    assert names("os=darwin") == []


def test_the_device_pages_list_devices_and_show_one(alice):
    box = register(announcement(name_override="Box A"))
    from django.test import Client

    browser = Client()
    browser.force_login(alice)
    listing = browser.get("/jobs/devices/").content.decode()
    assert "Box A" in listing and "accelerator:cpu" in listing
    page = browser.get(f"/jobs/devices/{box.slug}/").content.decode()
    assert "Intel(R) Xeon(R) Gold 6338" in page and "CPUExecutionProvider" in page


def test_hub_devices_lists_them_from_the_shell(alice, live_server, capsys, monkeypatch):
    from rest_framework.authtoken.models import Token

    register(announcement(name_override="Box A"))
    token = Token.objects.create(user=alice).key
    monkeypatch.setenv("HUB_URL", live_server.url)
    monkeypatch.setenv("HUB_API_TOKEN", token)
    assert hub_main(["devices", "--attribute", "os:linux"]) == 0
    out = capsys.readouterr().out
    assert "Box A" in out and "box-a" in out


def test_any_device_with_compute_unit_gpu_is_queued_for_a_device_with_a_gpu(alice, this_device):
    from jobs.services.device_jobs import job_submit_compile

    model = factories.onnx_model(alice, "mlp", seed=1)
    options = "--quantize_full_type float16 --compute_unit gpu"
    with pytest.raises(ValidationError) as none:
        job_submit_compile(
            owner=alice, model=model, device="any", input_specs={"x": [1, 8]}, options=options
        )
    assert "no device of this hub has one" in none.value.message_dict["options"][0]
    register(announcement(name_override="GPU box", gpus=[H100]))
    job = job_submit_compile(
        owner=alice, model=model, device="any", input_specs={"x": [1, 8]}, options=options
    )
    assert (job.device, job.device_attribute) == (None, "accelerator:cuda")


def test_the_active_jobs_quota_counts_device_jobs_like_every_other(alice, this_device, settings):
    from jobs.domain.quotas import QuotaExceeded
    from jobs.services.device_jobs import job_submit_compile

    settings.HUB_QUOTA_ACTIVE_JOBS = 2
    model = factories.onnx_model(alice, "mlp", seed=1)
    for _ in range(2):
        job = job_submit_compile(
            owner=alice, model=model, device=this_device, input_specs={"x": [1, 8]}
        )
        Job.objects.filter(pk=job.pk).update(status="pending")
    with pytest.raises(QuotaExceeded) as refused:
        job_submit_compile(owner=alice, model=model, device=this_device, input_specs={"x": [1, 8]})
    assert "You have 2 jobs queued or running" in str(refused.value)
