"""The Python client and the ``hub`` command against a live hub (uvicorn, PostgreSQL, Redis and
real worker processes), as a user with only a token would use them."""

import hashlib
import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import onnx
import pytest

from hubclient import (
    AuthenticationError,
    BadInputError,
    Client,
    ConflictError,
    CustomizationJob,
    NotFoundError,
)
from jobs.demo import numbers_dataset, tiny_mlp_onnx
from tests.workers import wait_for

pytestmark = [pytest.mark.production, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def hub(hub_env):
    with Client(hub_env["HUB_URL"], hub_env["HUB_API_TOKEN"]) as client:
        yield client


@pytest.fixture
def files(tmp_path):
    shared = __import__("numpy").random.default_rng(3).standard_normal((8, 16)).astype("float32")
    for name, seed in (("a", 1), ("b", 2)):
        (tmp_path / f"{name}.onnx").write_bytes(tiny_mlp_onnx(name=name, seed=seed, shared=shared))
    (tmp_path / "numbers.jsonl").write_bytes(numbers_dataset(0, 120))
    return tmp_path


def test_link_job_from_files_to_a_verified_target_model(hub, files, tmp_path):
    job = hub.submit_link_job(
        [files / "a.onnx", files / "b.onnx"], device="accelerator:cpu", name="pair"
    )
    assert (job.kind, job.name, job.device, len(job.models)) == ("link", "pair", None, 2)
    assert job.device_attribute == "accelerator:cpu"
    status = job.wait(timeout=120)
    assert (status.finished, status.success, status.code) == (True, True, "ready")
    ran = job.refresh().ran_device
    assert ran is not None and "accelerator:cpu" in ran.attributes
    path = job.download_target_model(str(tmp_path / "linked.onnx"))
    data = Path(path).read_bytes()
    target = hub.get_model(job.refresh().data["target_model"])
    assert hashlib.sha256(data).hexdigest() == target.data["sha256"]
    assert [o.name for o in onnx.load_from_string(data).graph.output] == ["m0/y", "m1/y"]
    in_memory = job.get_target_model()
    assert in_memory.data == data and in_memory.format == "onnx"
    results = job.download_results(tmp_path / "results")
    assert results.target_model.read_bytes() == data
    assert [p.name for p in results.artifacts] == ["log.txt", "manifest.json"]
    assert json.loads(results.status_details.read_text())["status"] == "ready"


def test_customization_job_with_status_details(hub, files):
    dataset = hub.upload_dataset(files / "numbers.jsonl", name="numbers")
    assert dataset.num_records == 120
    job = hub.submit_customization_job(
        None, dataset, hyperparameters={"epochs": 3, "early_stopping_patience": 0}
    )
    assert isinstance(job, CustomizationJob)
    assert job.wait(timeout=120).success
    details = job.get_status_details()
    assert (details.status, details.epochs_completed, details.percentage_done) == (
        "ready",
        3,
        100.0,
    )
    assert details.steps_per_epoch == 7  # 120 records, 108 kept, batch 16
    assert set((details.metrics or {})["keys"]) == {"train_loss", "val_loss"}
    assert details.status_logs[-1]["status"] == "ready"


def test_wait_learns_of_the_end_by_push_not_by_polling(hub, files):
    requests: list[object] = []
    hub._http.event_hooks["request"].append(requests.append)
    job = hub.submit_customization_job(
        None, files / "numbers.jsonl", hyperparameters={"epochs": 40, "early_stopping_patience": 0}
    )
    assert job.data["status"] in ("created", "pending")  # wait starts before the job has run
    requests.clear()
    assert job.wait(timeout=120).success
    assert len(requests) <= 3  # a status check before and after, not a poll every few seconds


def test_wait_with_a_timeout_raises_and_the_job_can_then_be_cancelled(hub, files):
    job = hub.submit_customization_job(
        None, files / "numbers.jsonl", hyperparameters={"epochs": 500, "early_stopping_patience": 0}
    )
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        job.wait(timeout=2)
    assert time.monotonic() - started < 10
    job.cancel()
    status = job.wait(timeout=60)
    assert (status.code, status.finished, status.success) == ("cancelled", True, False)
    for download in (job.download_target_model, job.get_target_model):
        with pytest.raises(ConflictError, match=f"Job {job.job_id} is cancelled"):
            download()
    with pytest.raises(ConflictError, match="Only a ready job"):
        job.download_target_model("never.zip")
    answer = hub._http.get(f"/api/v1/jobs/{job.job_id}/target-model/")
    assert answer.status_code == 409 and "is cancelled" in answer.json()["message"]


def test_errors_are_typed_with_the_hubs_message(hub, hub_env, files):
    with pytest.raises(NotFoundError, match="No such job"):
        hub.get_job("jnosuchjob")
    with pytest.raises(BadInputError) as bad:
        hub.submit_customization_job(None, files / "numbers.jsonl", hyperparameters={"epochs": 0})
    assert bad.value.field == "hyperparameters.epochs"
    with pytest.raises(BadInputError, match="not a valid ONNX model"):
        hub.upload_model(files / "numbers.jsonl")
    with pytest.raises(AuthenticationError):
        Client(hub_env["HUB_URL"], "not-a-token").get_jobs()
    job = hub.submit_link_job([files / "a.onnx"])
    job.wait(timeout=60)
    with pytest.raises(ConflictError, match="already ready"):
        job.cancel()


def test_rename_and_list(hub, files):
    job = hub.submit_link_job([files / "a.onnx"], name="first name")
    job.set_name("second name")
    assert hub.get_job(job.job_id).name == "second name"
    assert job.job_id in [j.job_id for j in hub.get_jobs(kind="link")]
    assert job.job_id not in [j.job_id for j in hub.get_jobs(kind="customization")]
    job.wait(timeout=60)
    again = job.resubmit()
    assert again.job_id != job.job_id and again.wait(timeout=60).success


def run_hub(env, *args):
    return subprocess.run(
        [sys.executable, "-m", "hubclient.cli", *args], env={**__import__("os").environ, **env},
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip


def test_command_line_submits_watches_and_downloads(hub_env, files, tmp_path):
    submitted = run_hub(
        hub_env,
        "submit",
        "customization",
        "--dataset",
        str(files / "numbers.jsonl"),
        "--epochs",
        "2",
        "--wait",
        "--json",
    )
    assert submitted.returncode == 0, submitted.stderr
    events = [json.loads(line) for line in submitted.stdout.splitlines()]
    job_id = events[0]["job"]
    assert events[-1]["data"]["status"] == "ready"
    assert any(e.get("event") == "progress" for e in events)
    listed = json.loads(run_hub(hub_env, "jobs", "--json").stdout)
    assert job_id in [j["id"] for j in listed]
    shown = run_hub(hub_env, "show", job_id)
    assert "status: ready" in shown.stdout and "epochs_completed: 2" in shown.stdout
    downloaded = run_hub(hub_env, "download", job_id, str(tmp_path / "out"))
    assert downloaded.returncode == 0, downloaded.stderr
    assert (tmp_path / "out" / "target_model.zip").is_file()  # the merged Hugging Face folder
    for name in ("metrics.csv", "adapter.zip", "model.onnx", "training_log.txt"):
        assert (tmp_path / "out" / "artifacts" / name).is_file(), name


def test_command_line_watch_exits_non_zero_when_the_job_does_not_succeed(hub_env, files):
    started = run_hub(
        hub_env,
        "submit",
        "customization",
        "--dataset",
        str(files / "numbers.jsonl"),
        "--epochs",
        "500",
        "--early-stopping-patience",
        "0",
        "--json",
    )
    job_id = json.loads(started.stdout)["id"]
    assert run_hub(hub_env, "cancel", job_id).returncode == 0
    watched = run_hub(hub_env, "watch", job_id)
    assert watched.returncode == 1
    assert "cancelled" in watched.stdout


def test_command_line_errors_say_what_is_wrong(hub_env):
    missing = run_hub(hub_env, "show", "jnosuchjob")
    assert missing.returncode == 2
    assert "No such job" in missing.stderr
    no_token = run_hub({**hub_env, "HUB_API_TOKEN": ""}, "jobs")
    assert no_token.returncode == 2 and "HUB_API_TOKEN" in no_token.stderr


def test_an_upload_that_says_it_is_too_large_is_refused_before_it_is_read(hub_env):
    import httpx

    body = b"x" * (4 * 1024 * 1024)
    response = httpx.post(
        f"{hub_env['HUB_URL']}/api/v1/datasets/",
        content=body,
        headers={
            "Authorization": f"Token {hub_env['HUB_API_TOKEN']}",
            "Content-Type": "multipart/form-data; boundary=b",
        },
        timeout=30,
    )
    assert response.status_code == 413
    assert response.json()["field"] == "file"
    assert "larger than the upload limit of 2097152 bytes" in response.json()["message"]


def test_sharing_from_the_client_and_the_command_line(hub, hub_env, bob, files):
    from rest_framework.authtoken.models import Token

    job = hub.submit_link_job([files / "a.onnx"], name="shared pair")
    job.modify_sharing(add_emails=[" Bob@Example.com "])
    assert job.get_sharing() == ["bob@example.com"]
    bob_hub = Client(hub_env["HUB_URL"], Token.objects.get_or_create(user=bob)[0].key)
    assert bob_hub.get_job(job.job_id).name == "shared pair"
    with pytest.raises(BadInputError) as bad:
        job.modify_sharing(add_emails=["not an address"])
    assert bad.value.field == "emails"
    listed = run_hub(hub_env, "share", job.job_id, "--json")
    assert json.loads(listed.stdout) == {"id": job.job_id, "emails": ["bob@example.com"]}
    removed = run_hub(hub_env, "share", job.job_id, "--remove", "bob@example.com")
    assert "shared with: nobody" in removed.stdout
    with pytest.raises(NotFoundError):
        bob_hub.get_job(job.job_id)
    added = run_hub(
        hub_env, "--json", "share", job.job_id, "--add", "bob@example.com,carol@example.com"
    )
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["emails"] == ["bob@example.com", "carol@example.com"]
    model = hub.upload_model(files / "a.onnx")  # a model on its own
    shared = run_hub(hub_env, "--json", "share", model.model_id, "--add", "bob@example.com")
    assert json.loads(shared.stdout) == {"id": model.model_id, "emails": ["bob@example.com"]}
    assert bob_hub.get_model(model.model_id).name == model.name


def test_a_hugging_face_model_folder_is_packed_and_uploaded_by_the_client(hub, tmp_path):
    from tests.hf_samples import tiny_llama_folder

    folder = tiny_llama_folder(tmp_path / "tiny-llama")
    model = hub.upload_model(folder)
    assert (model.name, model.format) == ("tiny-llama", "hf")
    assert model.data["metadata"]["architecture"] == "LlamaForCausalLM"
    assert "model.safetensors" in model.data["metadata"]["weights"]


def test_a_folder_uploads_with_a_progress_bar_and_fine_tunes_from_the_client(hub, files, tmp_path):
    import contextlib
    import io

    from tests.hf_samples import tiny_llama_folder

    folder = tiny_llama_folder(tmp_path / "my-llama")
    shown = io.StringIO()
    with contextlib.redirect_stderr(shown):
        job = hub.submit_customization_job(
            folder,  # a folder: uploaded first
            files / "numbers.jsonl",
            hyperparameters={"finetuning_type": "all_weights", "epochs": 1, "batch_size": 12},
            hardware="cpu",
        )
        forced = hub.upload_model(folder, name="again", progress=True)
    bar = shown.getvalue()
    assert "Packing my-llama/" in bar and "Uploading my-llama.zip" in bar
    # The same folder again: the same bytes, stored once; the answer is the model already there.
    assert forced.already_uploaded and forced.name == "my-llama"
    assert job.wait(timeout=180).success, hub.request(
        "GET", f"/api/v1/jobs/{job.job_id}/status-logs/"
    )
    assert (job.data["hardware"], job.data["ran_on"]) == ("cpu", "cpu (1 thread)")
    target = job.download_target_model(str(tmp_path / "merged.zip"))
    assert zipfile.is_zipfile(target)
    assert "config.json" in zipfile.ZipFile(target).namelist()


# Runs tracked from outside: the training runs in this process, the hub watches.


def test_a_run_reports_from_outside_and_is_watched_like_any_job(hub):
    job_events = []
    with hub.start_run(name="laptop", params={"lr": 0.1}, epochs=2, flush_every=0.05) as run:
        watcher = run.job
        assert (run.status, watcher.kind) == ("running", "external")
        for step in range(1, 21):
            run.log(step=step, train_loss=1.0 / step, learning_rate=0.1)
        run.log(step=10, val_loss=0.5)
        run.log_text("epoch 1 done\nsaved a checkpoint")
        run.log_text("grad norm is large", level="warning")
        run.set_status(epochs_completed=1, steps_completed=10, best_epoch=1, val_loss=0.5)
        run.flush()
        for message in watcher.events(deadline=time.monotonic() + 30):
            job_events.append(message)
            if message.get("type") == "snapshot":
                break  # what a page opening now sees
        run.log(step=21, train_loss=float("nan"))  # kept as a gap
    details = hub.get_job(run.id).get_status_details()
    assert (details.status, details.epochs_completed, details.best_epoch) == ("completed", 1, 1)
    assert details.percentage_done == 50.0
    assert hub.get_job(run.id).data["hyperparameters"] == {"lr": 0.1}
    metrics = hub.request("GET", f"/api/v1/jobs/{run.id}/metrics/")
    assert [p["step"] for p in metrics["metrics"]["train_loss"]] == list(range(1, 22))
    assert metrics["metrics"]["train_loss"][-1]["value"] is None
    assert job_events[-1]["data"]["job"]["percentage_done"] == 50.0
    # The run ended completed, and waiting on it says so at once.
    assert hub.get_job(run.id).wait(timeout=10).code == "completed"
    lines = hub.get_job(run.id).get_logs()
    assert [line.text for line in lines][1:4] == [
        "epoch 1 done",
        "saved a checkpoint",
        "grad norm is large",
    ]
    assert lines[3].level == "warning"
    assert lines[0].text.startswith("[running]") and lines[-1].text.startswith("[completed]")


def test_a_run_that_raises_ends_failed_with_the_exception(hub):
    run = hub.start_run(name="crashes")

    def training() -> None:
        with run:
            run.log(step=1, train_loss=3.0)
            raise RuntimeError("CUDA out of memory")

    with pytest.raises(RuntimeError):
        training()
    status = hub.get_job(run.id).get_status()
    assert (status.code, status.failure_type) == ("failed", "run_failed")
    assert "RuntimeError: CUDA out of memory" in status.message
    with pytest.raises(ValueError, match="Series name"):
        run.log(step=2, **{"bad name": 1.0})


def _tiny_trainer(tmp_path, callbacks, epochs=2):
    import random

    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        Trainer,
        TrainingArguments,
    )

    from tests.hf_samples import WORDS, tiny_llama_folder

    folder = tiny_llama_folder(tmp_path / "llama")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    words, rng = WORDS.split(), random.Random(0)
    rows = []
    for _ in range(32):
        ids = tokenizer(" ".join(rng.choice(words) for _ in range(6)))["input_ids"][:8]
        ids += [tokenizer.eos_token_id] * (8 - len(ids))
        rows.append({"input_ids": ids, "labels": ids})
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"), num_train_epochs=epochs, per_device_train_batch_size=4,
        logging_steps=1, eval_strategy="epoch", save_strategy="no", report_to=[],
        use_cpu=True, learning_rate=1e-3, disable_tqdm=True, run_name="tiny llama",
    )  # fmt: skip
    model = AutoModelForCausalLM.from_pretrained(folder)
    return Trainer(
        model=model, args=args, train_dataset=rows[:24], eval_dataset=rows[24:], callbacks=callbacks
    )


def test_hub_callback_reports_a_real_trainer_live(hub, tmp_path):
    from transformers import TrainerCallback

    from hubclient import HubCallback

    seen_during_training: list[int] = []

    class Look(TrainerCallback):
        """After the first epoch, the hub already has its points: reported live, not at the
        end."""

        def on_epoch_end(self, args, state, control, **kwargs):
            if round(state.epoch) == 1:
                job = hub.get_job(reporter.run.id)
                found = wait_for(
                    lambda: hub.request("GET", f"/api/v1/jobs/{job.job_id}/metrics/")[
                        "metrics"
                    ].get("train_loss", [])[5:],
                    30,
                    "the first epoch's losses on the hub",
                )
                seen_during_training.append(len(found) + 5)

    reporter = HubCallback(hub)
    trainer = _tiny_trainer(tmp_path, [reporter, Look()])
    trainer.train()
    assert seen_during_training and seen_during_training[0] >= 6
    job = hub.get_job(reporter.run.id)
    details = job.get_status_details()
    assert (details.status, details.epochs_completed, details.percentage_done) == (
        "completed",
        2,
        100.0,
    )
    assert details.steps_completed == trainer.state.global_step == 12
    assert details.best_epoch in (1, 2) and details.val_loss is not None
    metrics = hub.request("GET", f"/api/v1/jobs/{job.job_id}/metrics/")["metrics"]
    assert [p["step"] for p in metrics["train_loss"]] == list(range(1, 13))
    assert [p["step"] for p in metrics["val_loss"]] == [6, 12]
    assert {"learning_rate", "grad_norm"} <= set(metrics)
    data = job.refresh().data
    assert (data["name"], data["kind"]) == ("tiny llama", "external")
    assert data["hyperparameters"]["num_train_epochs"] == 2
    assert data["hyperparameters"]["per_device_train_batch_size"] == 4
    assert data["ran_on"] == "cpu"


def test_cancelling_on_the_hub_stops_the_trainer(hub, tmp_path):
    from transformers import TrainerCallback

    from hubclient import HubCallback

    class CancelAtStep3(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:
                hub.get_job(reporter.run.id).cancel()
                wait_for(lambda: reporter.run.cancel_requested, 30, "the run to hear of it")

    reporter = HubCallback(hub, name="to be cancelled")
    trainer = _tiny_trainer(tmp_path, [CancelAtStep3(), reporter], epochs=3)
    trainer.train()
    assert trainer.state.global_step == 3
    status = hub.get_job(reporter.run.id).get_status()
    assert status.code == "cancelled"


def test_a_jobs_log_streams_live_and_reads_back_the_same(hub, hub_env, files):
    job = hub.submit_customization_job(
        None, files / "numbers.jsonl", hyperparameters={"epochs": 2}, name="logged"
    )
    streamed = list(job.stream_logs(timeout=180))
    assert job.get_status().code == "ready"
    assert [line.n for line in streamed] == list(range(1, len(streamed) + 1))  # each once
    assert streamed[0].text.startswith("[running]") and streamed[-1].text.startswith("[ready]")
    assert any("epoch" in line.text.lower() for line in streamed)  # the training's own lines
    assert [line.text for line in job.get_logs()] == [line.text for line in streamed]
    printed = run_hub(hub_env, "logs", job.job_id)
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.splitlines()[-1].endswith(streamed[-1].text)
    followed = run_hub(hub_env, "logs", job.job_id, "--follow", "--json")
    assert [json.loads(line)["n"] for line in followed.stdout.splitlines()] == [
        line.n for line in streamed
    ]


def test_deleting_from_the_client_and_the_command_line(hub, hub_env, files):
    job = hub.submit_link_job([files / "a.onnx", files / "b.onnx"], name="to delete")
    job.wait(timeout=120)
    plan = job.deletion_plan()
    assert plan["blocked"] == "" and any("target model" in line for line in plan["goes"])
    model = hub.get_model(job.data["models"][0])
    in_use = model.deletion_plan()
    assert any("finished job" in line for line in in_use["kept"])
    dry = run_hub(hub_env, "delete", job.job_id, "--dry-run")
    assert dry.returncode == 0 and "takes with it" in dry.stdout
    unasked = run_hub(hub_env, "delete", job.job_id)  # not a terminal: it will not ask
    assert unasked.returncode == 2 and "--yes" in unasked.stderr
    assert hub.get_job(job.job_id).job_id == job.job_id
    done = run_hub(hub_env, "delete", job.job_id, "--yes", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["id"] == job.job_id
    with pytest.raises(NotFoundError):
        hub.get_job(job.job_id)
    assert model.delete()["id"] == model.model_id
    with pytest.raises(NotFoundError):
        model.download("/dev/null")
    wrong = run_hub(hub_env, "delete", "x123")
    assert wrong.returncode == 2 and "not the id of a job" in wrong.stderr


def test_a_torch_export_and_its_data_file_are_packed_uploaded_and_linked(hub, files, tmp_path):
    from tests.onnx_samples import torch_mlp_export

    exported = torch_mlp_export(tmp_path / "export")  # mlp.onnx + mlp.onnx.data beside it
    model = hub.upload_model(exported)
    assert (model.name, model.format) == ("mlp", "onnx")
    meta = model.data["metadata"]
    assert meta["external_data"] is True
    assert set(meta["files"]) == {"model.onnx", "model.onnx.data"}
    # The folder holding the two: packed the same way, the same model, under the name asked.
    again = hub.upload_model(exported.parent, name="exported mlp")
    assert again.already_uploaded and again.model_id == model.model_id
    # A folder with one whole .onnx: packed, stored as that .onnx, named as asked (not after
    # the last file packed).
    whole = tmp_path / "whole"
    whole.mkdir()
    (whole / "conv.onnx").write_bytes((files / "b.onnx").read_bytes())
    named = hub.upload_model(whole, name="conv model")
    assert (named.name, named.data["metadata"]["external_data"]) == ("conv model", False)
    job = hub.submit_link_job([model, files / "a.onnx"])
    assert job.wait(timeout=120).success, job.data.get("failure_message")
    linked = job.get_target_model().to_onnx()
    assert {o.name for o in linked.graph.output} >= {"m0/y"}


def test_an_export_whose_data_lies_outside_its_folder_is_refused_before_anything_is_sent(
    tmp_path,
):
    from hubclient import Client
    from hubclient.errors import BadInputError

    folder = tmp_path / "model"
    folder.mkdir()
    (tmp_path / "secret.bin").write_bytes(b"\0" * 8)
    weight = onnx.helper.make_tensor("w", onnx.TensorProto.FLOAT, [2], vals=[])
    weight.data_location = onnx.TensorProto.EXTERNAL
    entry = weight.external_data.add()
    entry.key, entry.value = "location", "../secret.bin"
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2])
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Add", ["x", "w"], ["y"])], "g", [x], [x], [weight]
    )
    onnx.save(onnx.helper.make_model(graph), str(folder / "m.onnx"))
    client = Client(url="http://127.0.0.1:9", token="unused")  # nothing listens: nothing sent
    with pytest.raises(BadInputError) as refused:
        client.upload_model(folder / "m.onnx")
    assert "tensor 'w' keeps its data in '../secret.bin'" in str(refused.value)
    assert "not a plain file name" in str(refused.value)


def test_a_quiet_run_hears_of_a_cancel_without_reporting_anything(hub):
    # The answer to a report is how a run hears of a cancel. A run with nothing new to say (a
    # slow step, a loop that waits, a busy machine) must still ask, not wait for its next point.
    run = hub.start_run(name="quiet", flush_every=0.05)
    run.log(step=1, train_loss=1.0)
    wait_for(lambda: run._pending is None and not run._buffered, 30, "the point to be sent")
    hub.get_job(run.id).cancel()
    wait_for(lambda: run.cancel_requested, 15, "the quiet run to hear of the cancel")
    run.finish()
    assert hub.get_job(run.id).get_status().code == "cancelled"


def test_an_evaluation_from_the_client_and_the_command_line(hub, hub_env, files, tmp_path):
    job = hub.submit_evaluation_job(
        ["tiny-llama"], files / "numbers.jsonl", {"limit": 3, "max_new_tokens": 4}
    )
    assert job.wait().code == "ready"
    scores = job.scores()["tiny-llama"]
    assert {"loss", "perplexity", "exact_match", "rouge_l", "bleu", "string_check"} <= set(scores)
    table = Path(job.download_rows(str(tmp_path / "rows.csv"), format="csv")).read_text()
    assert table.splitlines()[0].startswith("prompt,expected,tiny-llama output")
    assert len(table.splitlines()) == 4
    dataset = job.data["dataset"] if isinstance(job.data.get("dataset"), str) else None
    submitted = run_hub(
        hub_env, "submit", "evaluation", "tiny-llama", "--dataset",
        dataset or str(files / "numbers.jsonl"), "--limit", "2", "--wait", "--json",
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    events = [json.loads(line) for line in submitted.stdout.splitlines()]
    assert events[-1]["data"]["status"] == "ready"
