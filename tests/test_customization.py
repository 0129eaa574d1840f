"""Customization jobs train Hugging Face causal LMs for real, in this process exactly as a worker
runs them: transformers' Trainer, LoRA with peft or all weights, on the built-in tiny-llama or
a model folder uploaded through the API; outputs that load with transformers, peft and
onnxruntime. Worker processes (requeue and resume, cancellation) are in test_workers.py."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from rest_framework.test import APIClient

from jobs.domain import sft_data
from jobs.domain.base_models import BUILTIN_NAME, ensure_builtin
from jobs.domain.numbers import number_in_words
from jobs.domain.status import FailureType, JobStatus
from jobs.engine.execution import claim_next
from jobs.models import Job, MLModel
from jobs.services.assets import dataset_upload, model_upload
from jobs.services.jobs import job_submit_customization
from tests import factories
from tests.hf_samples import tiny_llama_folder, zipped

pytestmark = pytest.mark.django_db(transaction=True)


_run = factories.run_here


def _unzip(data: bytes, into: Path) -> Path:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        archive.extractall(into)
    return into


def _jsonl(rows: list[dict]) -> ContentFile:
    return ContentFile("".join(json.dumps(r) + "\n" for r in rows).encode(), "rows.jsonl")


def _val_losses(job: Job) -> list[float]:
    points = job.metric_series.get(key="val_loss").points.order_by("step")
    return [v for v in points.values_list("value", flat=True)]


@pytest.fixture
def uploaded_llama(alice, tmp_path) -> MLModel:
    """A Hugging Face folder built here (no chat template), uploaded as a .zip."""
    folder = tiny_llama_folder(tmp_path / "llama")
    return model_upload(owner=alice, file=ContentFile(zipped(folder), "tiny-llama.zip"))


def test_a_lora_job_on_the_builtin_model_trains_and_gives_loadable_outputs(alice, tmp_path):
    job = job_submit_customization(
        owner=alice,
        dataset=factories.dataset(alice, records=120),
        hyperparameters={
            "finetuning_type": "lora",
            "epochs": 4,
            "batch_size": 8,
            "learning_rate": 0.005,
            "log_every_n_steps": 3,
            "early_stopping_patience": 0,
            "lora": {"adapter_dim": 8, "alpha": 16},
        },
    )
    job = _run(job)
    assert job.status == JobStatus.READY, job.failure_message
    # 120 rows, 10% held out: 108 train → ceil(108 / 8) = 14 steps an epoch, 56 in all.
    assert (job.steps_per_epoch, job.total_steps, job.steps_completed) == (14, 56, 56)
    assert (job.epochs_completed, job.percentage_done) == (4, 100.0)
    assert job.ran_on == "cpu (1 thread)"
    losses = _val_losses(job)
    assert len(losses) == 5  # the base model's at step 0, then one an epoch
    assert losses[-1] < losses[0] * 0.8  # it learns
    assert job.val_loss == pytest.approx(min(losses))
    assert job.metric_series.get(key="train_loss").points_count == 18  # every 3rd of 56 steps
    assert [s["prompt"] for s in job.samples] and all(
        s["before"] is not None and s["after"] is not None for s in job.samples
    )

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    target = job.target_model
    assert (target.format, target.produced_by) == ("hf", job)
    assert target.metadata["architecture"] == "LlamaForCausalLM"
    assert target.metadata["finetuning_type"] == "lora"
    merged = AutoModelForCausalLM.from_pretrained(
        _unzip(Path(target.file.path).read_bytes(), tmp_path / "merged")
    ).eval()
    adapter = _unzip(job.artifacts.get(name="adapter.zip").file.read(), tmp_path / "adapter")
    assert (adapter / "adapter_config.json").exists()
    base = AutoModelForCausalLM.from_pretrained(ensure_builtin())
    tuned = PeftModel.from_pretrained(base, adapter).eval()
    probe = torch.randint(0, merged.config.vocab_size, (2, 10))
    with torch.no_grad():
        difference = (tuned(input_ids=probe).logits - merged(input_ids=probe).logits).abs().max()
    assert float(difference) < 1e-4  # the adapter on the base is the merged model

    import onnxruntime as ort

    onnx_file = tmp_path / "model.onnx"
    onnx_file.write_bytes(job.artifacts.get(name="model.onnx").file.read())
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    (logits,) = session.run(["logits"], {"input_ids": probe.numpy()})
    with torch.no_grad():
        expected = merged(input_ids=probe).logits.numpy()
    assert np.abs(logits - expected).max() < 1e-3
    verified = job.status_logs.get(status="ready").message
    assert "loads with AutoModelForCausalLM" in verified and "ONNX export checked" in verified
    log = job.artifacts.get(name="training_log.txt").file.read().decode()
    assert "Epoch 4/4" in log and "Sample:" in log and "tokens/s" in log
    from jobs.engine.checkpoints import folder as checkpoint_folder

    assert not checkpoint_folder(job).exists()  # checkpoints go once the job is finished


def test_an_all_weights_job_on_an_uploaded_model_learns_and_can_be_customized_again(
    alice, uploaded_llama
):
    job = job_submit_customization(
        owner=alice,
        dataset=factories.dataset(alice, records=100),
        base_model=uploaded_llama,
        hyperparameters={
            "finetuning_type": "all_weights",
            "epochs": 3,
            "batch_size": 10,
            "learning_rate": 0.003,
            "early_stopping_patience": 0,
        },
    )
    job = _run(job)
    assert job.status == JobStatus.READY, job.failure_message
    losses = _val_losses(job)
    assert losses[-1] < losses[0] * 0.8
    assert not job.artifacts.filter(name="adapter.zip").exists()  # no adapter without LoRA
    assert job.target_model.metadata["base_model"] == uploaded_llama.public_id

    again = _run(
        job_submit_customization(
            owner=alice,
            dataset=factories.dataset(alice, records=20),
            base_model=job.target_model,
            hyperparameters={"epochs": 1, "batch_size": 6},
        )
    )
    assert again.status == JobStatus.READY, again.failure_message
    assert [i.model for i in again.job_inputs.all()] == [job.target_model]


def test_a_chat_dataset_trains_on_the_assistant_turns(alice):
    rows = [
        {
            "messages": [
                {"role": "system", "content": "Spell numbers."},
                {"role": "user", "content": str(n)},
                {"role": "assistant", "content": number_in_words(n)},
            ]
        }
        for n in range(40)
    ]
    chat = dataset_upload(owner=alice, file=_jsonl(rows))
    assert chat.format == "chat"
    job = _run(
        job_submit_customization(
            owner=alice,
            dataset=chat,
            hyperparameters={"epochs": 2, "batch_size": 8, "learning_rate": 0.01},
        )
    )
    assert job.status == JobStatus.READY, job.failure_message
    assert job.samples[0]["prompt"] in {str(n) for n in range(40)}


def test_only_assistant_tokens_carry_labels_in_a_chat_row():
    from jobs.engine.training.sft import load_tokenizer

    tokenizer = load_tokenizer(str(ensure_builtin()))
    record = {
        "messages": [
            {"role": "user", "content": "12"},
            {"role": "assistant", "content": "twelve"},
            {"role": "user", "content": "13"},
            {"role": "assistant", "content": "thirteen"},
        ]
    }
    encoded = sft_data.encode(tokenizer, record, 256, truncate=False)
    learned = tokenizer.decode(
        [t for t, label in zip(encoded.input_ids, encoded.labels, strict=False) if label != -100]
    )
    assert "twelve" in learned and "thirteen" in learned
    assert "12" not in learned and "13" not in learned and "user" not in learned


def test_prompt_tokens_carry_no_labels_in_a_prompt_completion_row():
    from jobs.engine.training.sft import load_tokenizer

    tokenizer = load_tokenizer(str(ensure_builtin()))
    encoded = sft_data.encode(tokenizer, {"prompt": "42", "completion": "forty-two"}, 64, False)
    learned = [
        t for t, label in zip(encoded.input_ids, encoded.labels, strict=False) if label != -100
    ]
    assert tokenizer.decode(learned, skip_special_tokens=True) == "forty-two"
    assert learned[-1] == tokenizer.eos_token_id  # it learns to stop


def test_a_chat_dataset_is_refused_for_a_model_without_a_chat_template(alice, uploaded_llama):
    chat = dataset_upload(
        owner=alice,
        file=_jsonl(
            [
                {
                    "messages": [
                        {"role": "user", "content": "1"},
                        {"role": "assistant", "content": "one"},
                    ]
                }
            ]
            * 3
        ),
    )
    with pytest.raises(ValidationError) as refused:
        job_submit_customization(owner=alice, dataset=chat, base_model=uploaded_llama)
    assert "has no chat template" in str(refused.value.message_dict["dataset"])


def test_an_overlong_row_fails_the_job_on_its_worker_naming_its_line_or_is_truncated_when_asked(
    alice,
):
    """Tokenizing every row with the model's tokenizer is a worker's work (a hostile tokenizer or
    template must not cost the web process): the submit answers at once, and the job fails as an
    invalid dataset, before training, in the words the submit would have used."""
    rows = [{"prompt": str(n), "completion": number_in_words(n)} for n in range(30)]
    rows[6] = {"prompt": "7", "completion": " ".join(["seven"] * 60)}
    data = dataset_upload(owner=alice, file=_jsonl(rows))
    job = _run(
        job_submit_customization(owner=alice, dataset=data, hyperparameters={"max_seq_length": 32})
    )
    assert (job.status, job.failure_type) == (JobStatus.FAILED, FailureType.INVALID_DATASET)
    message = job.failure_message
    assert "1 of 30 rows are longer than max_seq_length (32 tokens" in message
    assert "first on line(s) 7" in message and 'overlong_rows to "truncate"' in message
    assert not job.steps_completed and not job.metric_series.exists()
    lines = list(job.log_lines.values_list("text", flat=True))
    assert any("Checking the dataset against the model's tokenizer" in line for line in lines)
    job = job_submit_customization(
        owner=alice,
        dataset=data,
        hyperparameters={"max_seq_length": 32, "overlong_rows": "truncate", "epochs": 1},
    )
    assert _run(job).status == JobStatus.READY, job.failure_message


def test_a_model_too_large_for_the_workers_memory_fails_before_it_is_loaded(alice, uploaded_llama):
    """Memory is counted from the parameters the weights hold (checked against the config at
    upload), before anything is loaded."""
    uploaded_llama.metadata = {**uploaded_llama.metadata, "parameters": 10**13}
    uploaded_llama.save(update_fields=["metadata"])
    job = _run(
        job_submit_customization(
            owner=alice,
            dataset=factories.dataset(alice),
            base_model=uploaded_llama,
            hyperparameters={"finetuning_type": "all_weights"},
        )
    )
    assert (job.status, job.failure_type) == (JobStatus.FAILED, FailureType.INVALID_MODEL)
    assert "10,000,000,000,000 parameters, sft all_weights) needs about" in job.failure_message
    assert "GiB free" in job.failure_message


def test_a_base_model_with_nan_weights_fails_before_training_naming_it(alice, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = tiny_llama_folder(tmp_path / "nan")
    weights = load_file(folder / "model.safetensors")
    weights = {
        k: torch.full_like(v, float("nan")) if "norm" in k else v for k, v in weights.items()
    }
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    broken = model_upload(owner=alice, file=ContentFile(zipped(folder), "nan.zip"))
    job = _run(
        job_submit_customization(
            owner=alice,
            dataset=factories.dataset(alice),
            base_model=broken,
            hyperparameters={"finetuning_type": "all_weights", "epochs": 1},
        )
    )
    assert (job.status, job.failure_type) == (JobStatus.FAILED, FailureType.INVALID_MODEL)
    assert "validation loss is NaN or infinite before any training" in job.failure_message
    assert job.failed_by_user_error and job.target_model is None
    assert job.metric_series.get(key="val_loss").points.get().value is None  # kept as a gap


@pytest.mark.parametrize(
    ("hyperparameters", "field", "text"),
    [
        ({"training_type": "ppo"}, "hyperparameters.training_type", "must be one of 'sft', 'dpo'"),
        ({"training_type": "grpo"}, "hyperparameters.grpo.reward", "needs grpo.reward"),
        ({"dpo": {"ref_policy_kl_penalty": 0.5}}, "hyperparameters.dpo", "apply to training_type 'dpo'"),
        ({"training_type": "dpo", "dpo": {"beta": 0.1}}, "hyperparameters.dpo.beta", "Unknown dpo option"),
        ({"training_type": "dpo", "sequence_packing_enabled": True},
         "hyperparameters.sequence_packing_enabled", "does not pack"),
        ({"finetuning_type": "prefix"}, "hyperparameters.finetuning_type", "must be one of"),
        ({"lora": {"adapter_dim": 0}}, "hyperparameters.lora.adapter_dim", "≥ 1"),
        ({"lora": {"rank": 8}}, "hyperparameters.lora.rank", "Unknown lora option"),
        ({"batch_size": 10, "gradient_accumulation_steps": 4},
         "hyperparameters.gradient_accumulation_steps", "multiple"),
        ({"precision": "bf16"}, "hyperparameters.precision", "needs a GPU"),
        ({"max_seq_length": 100_000}, "hyperparameters.max_seq_length", "context length (256"),
    ],
)  # fmt: skip
def test_bad_training_options_are_refused_naming_them(alice, hyperparameters, field, text):
    client = APIClient()
    client.force_authenticate(alice)
    data = factories.dataset(alice, records=10)
    response = client.post(
        "/api/v1/jobs/customization/",
        {"dataset": data.public_id, "hyperparameters": hyperparameters, "hardware": "cpu"},
        format="json",
    )
    assert response.status_code == 400, response.content
    assert text in " ".join(response.json()["errors"][field])
    assert not Job.objects.exists()


def test_a_retired_tiny_char_lm_checkpoint_is_refused_as_a_base(alice):
    old = MLModel.objects.create(owner=alice, name="old", format="torch", size=1, sha256="0" * 64)
    with pytest.raises(ValidationError) as refused:
        job_submit_customization(owner=alice, dataset=factories.dataset(alice), base_model=old)
    assert "retired tiny-char-lm" in refused.value.message_dict["model"][0]


def test_a_gpu_job_waits_for_a_gpu_worker_with_a_visible_reason(alice, settings):
    job = job_submit_customization(owner=alice, dataset=factories.dataset(alice), hardware="gpu")
    job.refresh_from_db()
    assert job.status == JobStatus.PENDING
    assert "Queued for a worker with a GPU (queue hub" in job.status_logs.last().message
    from jobs.engine.dispatch import queue_for

    assert queue_for(job) == f"{settings.CELERY_TASK_DEFAULT_QUEUE}.gpu"
    assert claim_next() is None  # this machine has no GPU: its worker leaves the job waiting
    assert Job.objects.get(pk=job.pk).status == JobStatus.PENDING


def test_the_operator_offers_models_from_a_hugging_face_cache(alice, tmp_path, settings):
    snapshot = tmp_path / "hub" / "models--Acme--Tiny-1" / "snapshots" / "abc123"
    tiny_llama_folder(snapshot)
    (tmp_path / "hub" / "models--Acme--Tiny-1" / "refs").mkdir()
    (tmp_path / "hub" / "models--Acme--Tiny-1" / "refs" / "main").write_text("abc123")
    settings.HUB_MODEL_DIRS = [str(tmp_path / "hub")]
    client = APIClient()
    client.force_authenticate(alice)
    offered = {m["name"]: m for m in client.get("/api/v1/models/builtin/").json()}
    assert list(offered) == [BUILTIN_NAME, "Acme/Tiny-1"]
    assert offered["Acme/Tiny-1"]["metadata"]["architecture"] == "LlamaForCausalLM"
    job = job_submit_customization(
        owner=alice,
        dataset=factories.dataset(alice, records=20),
        base_model="Acme/Tiny-1",
        hyperparameters={"epochs": 1, "batch_size": 6},
    )
    assert _run(job).status == JobStatus.READY, job.failure_message


def test_two_training_processes_train_one_job_with_gloo(alice, settings):
    settings.HUB_TRAIN_PROCESSES = 2
    job = _run(
        job_submit_customization(
            owner=alice,
            dataset=factories.dataset(alice, records=60),
            hyperparameters={"epochs": 2, "batch_size": 8, "learning_rate": 0.01},
        )
    )
    assert job.status == JobStatus.READY, job.failure_message
    # 54 training rows, global batch 8 (4 a process): ceil(54 / 8) = 7 steps an epoch.
    assert (job.steps_completed, job.epochs_completed) == (14, 2)
    assert job.metric_series.get(key="val_loss").points_count == 3  # step 0, then each epoch
    log = job.artifacts.get(name="training_log.txt").file.read().decode()
    assert "in 2 processes (ddp)" in log


def test_a_training_that_runs_away_fails_as_diverged_naming_the_losses(alice):
    """learning_rate 1 on all weights: the validation loss jumps far above the base model's
    after the first epoch; the job fails as training_diverged instead of ending ready."""
    job = _run(
        job_submit_customization(
            owner=alice,
            dataset=factories.dataset(alice),
            hyperparameters={
                "finetuning_type": "all_weights",
                "epochs": 3,
                "learning_rate": 1.0,
                "early_stopping_patience": 0,
            },
        )
    )
    assert (job.status, job.failure_type) == (JobStatus.FAILED, FailureType.TRAINING_DIVERGED)
    message = job.failure_message
    assert "before training to" in message or "NaN or infinite" in message, message
    assert "Lower learning_rate (now 1)" in message
    assert job.target_model is None and job.failed_by_user_error


def test_a_validation_loss_running_away_after_a_good_epoch_stops_and_keeps_that_epoch(tmp_path):
    """The training callback as the Trainer drives it: epoch 1 improves on the base model,
    epoch 2's validation loss is far above it; training stops, and the timeline says that the
    weights of epoch 1 are kept, and why."""
    from types import SimpleNamespace

    from jobs.domain.hyperparameters import Hyperparameters
    from jobs.engine.training import sft

    class Sink:
        def __init__(self) -> None:
            self.notes: list[str] = []

        def progress(self, **fields): ...
        def metric(self, key, step, value): ...
        def log(self, line): ...
        def check_stop(self): ...
        def checkpoint_done(self, folder, state): ...

        def note(self, message):
            self.notes.append(message)

    sink = Sink()
    callback = sft._callback_class()(sink, Hyperparameters(epochs=5, learning_rate=0.5), None, True)
    args = SimpleNamespace(output_dir=str(tmp_path))
    control = SimpleNamespace(should_training_stop=False)
    state = SimpleNamespace(
        global_step=0, epoch=0, best_model_checkpoint=None, num_input_tokens_seen=0
    )
    callback.on_evaluate(args, state, control, metrics={"eval_loss": 2.0})  # the base model
    for step, epoch, loss in ((10, 1.0, 1.0), (20, 2.0, 3.5)):
        (tmp_path / f"checkpoint-{step}").mkdir()
        state.global_step, state.epoch = step, epoch
        callback.on_evaluate(args, state, control, metrics={"eval_loss": loss})
        if loss < 2.0:  # the Trainer's best checkpoint, by eval_loss
            state.best_model_checkpoint = str(tmp_path / f"checkpoint-{step}")
        assert control.should_training_stop is (loss > 3 * 1.0)
        callback.on_save(args, state, control)
    (note,) = sink.notes
    assert note.startswith("Stopped after epoch 2 of 5: the training is diverging (val_loss 3.5000")
    assert "The weights of epoch 1 are kept" in note and "learning_rate (now 0.5)" in note


def test_a_one_row_dataset_without_validation_is_refused_naming_the_minimum(alice):
    with pytest.raises(ValidationError) as refused:
        job_submit_customization(owner=alice, dataset=factories.dataset(alice, records=1))
    assert "at least 2 records" in str(refused.value.message_dict["dataset"])


def test_an_eight_row_dataset_without_validation_holds_one_out_and_trains_to_ready(alice):
    job = _run(
        job_submit_customization(
            owner=alice,
            dataset=factories.dataset(alice, records=8),
            hyperparameters={"epochs": 1, "batch_size": 4},
        )
    )
    assert job.status == JobStatus.READY, job.failure_message
    assert job.steps_per_epoch == 2  # 7 rows train, 1 validates
    assert len(_val_losses(job)) >= 1


def test_an_attempt_lost_after_training_ended_keeps_the_best_weights_and_trains_nothing_again(
    alice, tmp_path
):
    """The Trainer keeps only the best epoch's checkpoint once training ends; an attempt lost
    while sampling or exporting used to "resume" from that epoch, train the later ones again and
    report the best epoch as the epochs completed (66.7% for a job that had reached 83.3%)."""
    from safetensors.torch import load_file

    from jobs.domain.hyperparameters import Hyperparameters
    from jobs.engine.training import sft

    rows = tmp_path / "rows.jsonl"
    rows.write_bytes(factories.numbers_dataset(0, 30))
    params = Hyperparameters(epochs=3, batch_size=8, learning_rate=0.005).as_dict()
    params["early_stopping_patience"] = 0
    spec = sft.TrainSpec(
        base=str(tiny_llama_folder(tmp_path / "base")),
        train_file=str(rows),
        validation_file=None,
        kept=27,
        params=params,
        checkpoints=str(tmp_path / "checkpoints"),
        final=str(tmp_path / "final"),
    )

    class Sink:
        def __init__(self) -> None:
            self.progress_seen: list[dict] = []

        def progress(self, **fields):
            self.progress_seen.append(fields)

        def metric(self, key, step, value): ...
        def log(self, line): ...
        def note(self, message): ...
        def check_stop(self): ...
        def checkpoint_done(self, folder, state): ...

    first = sft.train(spec, Sink())
    merged = tmp_path / "final" / "merged" / "model.safetensors"
    trained = load_file(merged)
    ended = sft.training_ended(tmp_path / "checkpoints")
    assert ended is not None
    kept, state = ended
    assert (state.epoch, state.best_epoch) == (3, first.best_epoch)
    assert kept.name == f"checkpoint-{first.best_epoch * 4}"  # ceil(27 / 8) = 4 steps an epoch
    latest = sft.latest_checkpoint(tmp_path / "checkpoints")
    assert latest is not None and latest[1].epoch == first.best_epoch  # the only one kept

    again = Sink()
    second = sft.train(spec, again)
    assert again.progress_seen == []  # no step trained, no epoch reported again
    assert (second.epochs_run, second.best_epoch, second.val_loss) == (
        3,
        first.best_epoch,
        first.val_loss,
    )
    assert second.tokens_trained == 0
    reloaded = load_file(merged)
    assert trained.keys() == reloaded.keys()
    assert all(torch.equal(trained[k], reloaded[k]) for k in trained)

    # What the requeue keeps and says: the epochs completed, not the best epoch's.
    import shutil

    from jobs.engine.checkpoints import folder as checkpoint_folder
    from jobs.engine.runners.customization import CustomizationRunner

    job = factories.customization_job(alice)
    shutil.copytree(tmp_path / "checkpoints", checkpoint_folder(job))
    resume = CustomizationRunner().resume_point(job)
    assert resume is not None and resume.details["epochs_completed"] == 3
    assert resume.step == 12 and resume.details["best_epoch"] == first.best_epoch
    assert resume.words.startswith("the end of training (epoch 3, step 12;")
