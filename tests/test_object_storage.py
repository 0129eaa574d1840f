"""Files in object storage (HUB_STORAGE_URL=s3://…), against a real S3 API server on loopback
(tests/s3.py): uploads land in the bucket whole, downloads are presigned redirects checked
against access, workers read through a bounded scratch cache, checkpoints go to the bucket as
they are made, and an outage of the storage is said plainly, losing nothing."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command

from jobs.demo import tiny_mlp_onnx
from jobs.domain import inventory
from jobs.domain.status import FailureType, JobStatus
from jobs.engine import checkpoints, scratch
from jobs.models import MLModel
from tests import factories
from tests.s3 import Bucket

pytestmark = pytest.mark.django_db(transaction=True)


def _upload(user: Any, data: bytes, name: str = "net.onnx") -> dict[str, Any]:
    client = factories.api(user)
    client.raise_request_exception = False  # answered by the hub's error handler, as served
    response = client.post(
        "/api/v1/models/", {"file": io.BytesIO(data), "name": name}, format="multipart"
    )
    return {"status": response.status_code, "body": response.json()}


def test_an_uploaded_model_is_kept_whole_in_the_bucket_and_nowhere_on_the_disk(
    alice, bucket: Bucket, settings
):
    data = tiny_mlp_onnx(name="net", seed=3)
    answer = _upload(alice, data)
    assert answer["status"] == 201, answer
    model = MLModel.objects.get(public_id=answer["body"]["id"])
    assert bucket.keys("models/") == {model.file.name: len(data)}
    media = Path(settings.MEDIA_ROOT)
    assert not [p for p in media.rglob("*.onnx")], "a copy was left on the local disk"


def test_a_download_is_a_presigned_redirect_for_its_readers_and_nothing_for_a_stranger(
    alice, bob, charlie, bucket: Bucket
):
    from sharing.services import sharing_modify

    model = factories.onnx_model(alice, "shared-net", seed=4)
    sharing_modify(target=model, actor=alice, add_emails=[bob.email])
    url = f"/api/v1/models/{model.public_id}/download/"
    for reader in (alice, bob):
        response = factories.api(reader).get(url)
        assert response.status_code == 302
        assert response["Cache-Control"] == "private, no-store"
        location = response["Location"]
        assert location.startswith(bucket.gate.url + "/")
        assert "X-Amz-Signature=" in location and "X-Amz-Expires=300" in location
        fetched = httpx.get(location)
        assert fetched.status_code == 200
        assert fetched.content == model.file.storage.open(model.file.name).read()
        assert 'filename="shared-net.onnx"' in fetched.headers["content-disposition"]
    stranger = factories.api(charlie).get(url)
    assert stranger.status_code == 404
    assert "Location" not in stranger


def test_a_presigned_address_names_one_object_and_cannot_be_bent_to_another(alice, bucket: Bucket):
    first = factories.onnx_model(alice, "first", seed=5)
    second = factories.onnx_model(alice, "second", seed=6)
    location = factories.api(alice).get(f"/api/v1/models/{first.public_id}/download/")["Location"]
    bent = location.replace(first.public_id, second.public_id)
    assert httpx.get(bent).status_code == 403  # the signature covers the key


def test_the_results_bundle_reads_its_files_from_the_bucket(alice, bucket: Bucket):
    import zipfile

    job = factories.ready_job(factories.link_job(alice))
    response = factories.api(alice).get(f"/api/v1/jobs/{job.public_id}/results/")
    assert response.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert "target_model.onnx" in archive.namelist()
    assert archive.read("artifacts/manifest.json") == b"{}"


def test_a_worker_fetches_an_input_once_and_reads_it_from_its_scratch_cache_after(
    alice, bucket: Bucket
):
    model = factories.onnx_model(alice, "cached", seed=7)
    fetched = scratch.stats.fetches
    first = scratch.local_path(model.file)
    scratch.release()
    second = scratch.local_path(model.file)
    scratch.release()
    assert first == second and first.read_bytes()[:4] == model.file.open("rb").read(4)
    assert first.name == Path(model.file.name).name  # its suffix still says what it is
    assert scratch.stats.fetches == fetched + 1


def test_the_scratch_cache_evicts_the_least_recently_used_copy_but_never_one_in_use(
    alice, bucket: Bucket, settings
):
    models = [factories.onnx_model(alice, f"m{i}", seed=10 + i) for i in range(3)]
    size = models[0].size
    settings.HUB_SCRATCH_BYTES = int(size * 2.5)  # room for two copies
    held = scratch.local_path(models[0].file)  # held: this "job" is still reading it
    second = scratch.local_path(models[1].file)
    scratch.release()
    held = scratch.local_path(models[0].file)  # the first again: now the most recently used
    third = scratch.local_path(models[2].file)
    assert held.exists() and third.exists()
    assert not second.exists(), "the least recently used copy was kept past the bound"
    settings.HUB_SCRATCH_BYTES = 0  # no room at all: still, nothing in use goes
    scratch.local_path(models[1].file)
    assert held.exists() and third.exists()
    scratch.release()


def test_a_copy_is_fetched_again_when_the_file_under_its_name_changed(alice, bucket: Bucket):
    model = factories.onnx_model(alice, "replaced", seed=20)
    first = scratch.local_path(model.file)
    scratch.release()
    replacement = tiny_mlp_onnx(name="net", seed=21)
    bucket.client().put_object(
        Bucket=bucket.name, Key=f"{bucket.prefix}/{model.file.name}", Body=replacement
    )
    again = scratch.local_path(model.file)
    scratch.release()
    assert again != first and again.read_bytes() == replacement


def test_an_upload_while_the_storage_is_down_is_refused_with_a_503_that_says_so(
    alice, bucket: Bucket
):
    with bucket.down():
        answer = _upload(alice, tiny_mlp_onnx(name="net", seed=8))
    assert answer["status"] == 503, answer
    assert "object storage is not answering" in answer["body"]["message"]
    assert "127.0.0.1" not in answer["body"]["message"]  # the operator's address is not shown
    assert not MLModel.objects.exists()
    assert bucket.keys() == {}
    assert (
        _upload(alice, tiny_mlp_onnx(name="net", seed=8))["status"] == 201
    )  # and works once it is back


def test_healthz_and_hub_doctor_say_the_storage_is_unreachable(
    alice, bucket: Bucket, client, live_server, capsys
):
    from hubclient import cli

    assert client.get("/healthz").json()["storage"]["ok"] is True
    with bucket.down():
        health = client.get("/healthz").json()
        assert health["storage"] == {
            "ok": False,
            "error": "object storage unreachable (EndpointConnectionError)",
            "ms": health["storage"]["ms"],
        }
        assert "storage" in health["problems"]
        assert bucket.name not in json.dumps(health)  # nothing of the deployment's is shown
        capsys.readouterr()
        assert cli.main(["--url", live_server.url, "doctor"]) == 1
        said = capsys.readouterr().out
    assert "object storage unreachable (EndpointConnectionError)" in said


def test_a_dataset_page_previews_its_first_records_with_a_ranged_read(alice, bucket: Bucket):
    from django.test import Client

    from jobs.services.assets import dataset_upload

    rows = "".join(
        json.dumps({"prompt": f"{n} " + "x" * 80, "completion": "y" * 40}) + "\n"
        for n in range(12_000)
    )
    dataset = dataset_upload(owner=alice, file=ContentFile(rows.encode(), "long.jsonl"))
    assert dataset.size > 1024 * 1024  # past the MiB the preview reads
    browser = Client()
    browser.force_login(alice)
    page = browser.get(f"/jobs/datasets/{dataset.public_id}/").content.decode()
    assert '<span class="muted">line 1</span>' in page
    assert "records; download it for the rest" in page


def test_a_job_whose_input_cannot_be_fetched_fails_with_the_storages_words_and_keeps_it(
    alice, bucket: Bucket
):
    job = factories.link_job(alice)
    stored = bucket.keys("models/")
    with bucket.down():
        job = factories.run_here(job)
    assert job.status == JobStatus.FAILED
    assert job.failure_type == FailureType.STORAGE_UNAVAILABLE
    message = job.status_logs.order_by("-id").first().message
    assert "object storage is not answering (could not connect to its endpoint)" in message
    assert bucket.keys("models/") == stored  # its inputs are all still there
    again = factories.run_here(factories.link_job(alice))
    assert again.status == JobStatus.READY


def test_a_link_job_runs_on_object_storage_and_its_target_goes_to_the_bucket(alice, bucket: Bucket):
    job = factories.run_here(factories.link_job(alice))
    assert job.status == JobStatus.READY, job.status_logs.order_by("-id").first().message
    assert job.target_model.file.name in bucket.keys("")
    response = factories.api(alice).get(f"/api/v1/jobs/{job.public_id}/target-model/")
    assert response.status_code == 302
    assert httpx.get(response["Location"]).content[:2] == job.target_model.file.open().read(2)


def test_checkpoints_go_to_the_bucket_as_they_are_made_and_a_fresh_host_resumes_from_them(
    alice, bucket: Bucket, settings, tmp_path
):
    """One host trains two epochs; a second host (another scratch folder, the first's gone)
    restores the newest whole checkpoint from the bucket and says where it goes on from."""
    from jobs.engine.runners.customization import CustomizationRunner

    job = factories.customization_job(alice, epochs=2, batch_size=8, learning_rate=1e-3)
    # Train only the checkpoints: the run keeps them (the job is finished and forgets them
    # after, which the next test covers), so stop the job from being finished here.
    runner = CustomizationRunner()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(CustomizationRunner, "finished", lambda self, job: None)
        job = factories.run_here(job)
    assert job.status == JobStatus.READY
    stored = bucket.keys(f"checkpoints/{job.public_id}/")
    states = [k for k in stored if k.endswith("/hub_state.json")]
    assert states, stored
    assert f"checkpoints/{job.public_id}/hub_training_ended.json" in stored
    settings.HUB_SCRATCH_DIR = str(tmp_path / "another-host")
    assert not checkpoints.folder(job).exists()
    point = runner.resume_point(job)
    assert point is not None and point.training_ended and point.epoch == 2
    here = checkpoints.restore(job)
    assert {p.relative_to(here).as_posix() for p in here.rglob("*") if p.is_file()} == {
        k.removeprefix(f"checkpoints/{job.public_id}/") for k in stored
    }
    checkpoints.forget(job)
    assert bucket.keys(f"checkpoints/{job.public_id}/") == {}
    assert not here.exists()


def test_a_finished_training_job_leaves_no_checkpoint_in_the_bucket(alice, bucket: Bucket):
    job = factories.run_here(factories.customization_job(alice, epochs=1, batch_size=8))
    assert job.status == JobStatus.READY
    assert bucket.keys("checkpoints/") == {}
    assert job.target_model.file.name in bucket.keys("models/")


def test_the_restore_check_finds_a_missing_object_and_a_file_no_row_names(alice, bucket: Bucket):
    model = factories.onnx_model(alice, "kept", seed=30)
    factories.dataset(alice)
    out = io.StringIO()
    call_command("storagecheck", stdout=out)
    assert "2 rows, 2 stored files" in out.getvalue() and "consistent" in out.getvalue()

    default_storage.save("models/mstray000000/stray.onnx", ContentFile(b"stray"))
    bucket.client().delete_object(Bucket=bucket.name, Key=f"{bucket.prefix}/{model.file.name}")
    out = io.StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command("storagecheck", stdout=out)
    assert exited.value.code == 1
    text = out.getvalue()
    assert f"model {model.public_id}: {model.file.name} is missing" in text
    assert "models/mstray000000/stray.onnx (5 B, stored " in text and "is named by no row" in text


def test_the_orphan_sweep_removes_only_old_files_no_row_names(alice, bucket: Bucket):
    model = factories.onnx_model(alice, "kept", seed=31)
    default_storage.save("models/mstray000000/stray.onnx", ContentFile(b"stray"))
    client = bucket.client()
    unfinished = client.create_multipart_upload(Bucket=bucket.name, Key=f"{bucket.prefix}/x.bin")
    # moto dates every multipart upload 2010-11-10: the unfinished one is old, the stray file
    # (stored a moment ago, its row perhaps about to be written) is not yet.
    assert inventory.sweep_orphans(older_than=timedelta(hours=1)) == 1
    assert "models/mstray000000/stray.onnx" in bucket.keys("models/")
    assert inventory.sweep_orphans(older_than=timedelta(seconds=-1)) == 1
    assert set(bucket.keys()) == {model.file.name}
    uploads = client.list_multipart_uploads(Bucket=bucket.name).get("Uploads", [])
    assert unfinished["UploadId"] not in [u["UploadId"] for u in uploads]


def test_deleting_a_model_removes_its_object(alice, bucket: Bucket):
    from jobs.services.deletion import asset_delete

    model = factories.onnx_model(alice, "gone", seed=32)
    assert model.file.name in bucket.keys("")
    asset_delete(asset=model)
    assert bucket.keys("models/") == {}


def test_a_storage_url_that_is_not_s3_is_refused_at_start_with_what_to_write():
    from django.core.exceptions import ImproperlyConfigured

    from hubsite.settings.storage import options_from_url

    for wrong in ("http://bucket/x", "s3://", "s3://bucket/x?region=eu"):
        with pytest.raises(ImproperlyConfigured, match="HUB_STORAGE_URL"):
            options_from_url(
                wrong,
                endpoint_url=None,
                region=None,
                access_key=None,
                secret_key=None,
                addressing_style=None,
                timeout=1,
                expire_seconds=60,
            )


def test_try_it_reads_its_model_from_the_bucket_and_says_so_when_it_cannot(alice, bucket: Bucket):
    from jobs.engine import generation as worker
    from jobs.models import Generation, GenerationStatus
    from jobs.services.assets import model_upload
    from tests.hf_samples import tiny_llama_zip

    model = model_upload(owner=alice, file=ContentFile(tiny_llama_zip(), "tiny.zip"))
    assert model.file.name in bucket.keys("models/")

    def answer() -> Generation:
        asked = factories.api(alice).post(
            f"/api/v1/models/{model.public_id}/generate/", {"prompt": "7"}, format="json"
        )
        assert asked.status_code == 202, asked.content
        generation = Generation.objects.get(public_id=asked.json()["id"])
        worker.run(generation.pk, worker="here")
        generation.refresh_from_db()
        return generation

    worker.forget_all()
    try:
        with bucket.down():
            failed = answer()
        assert failed.status == GenerationStatus.FAILED
        assert "object storage is not answering (could not connect to its endpoint)" in failed.error
        assert answer().status == GenerationStatus.DONE
    finally:
        worker.forget_all()
