"""NVIDIA's own NeMo Microservices SDK, pointed at a live hub, lists the hub's configs, creates
customization jobs, and reads, watches and cancels them."""

from typing import Any

import pytest
from django.core.files.base import ContentFile
from nemo_microservices import NeMoMicroservices, NotFoundError, UnprocessableEntityError

from jobs.models import Job
from jobs.services.assets import dataset_upload
from jobs.services.jobs import job_submit_customization
from tests import factories

pytestmark = [pytest.mark.production, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def sdk(hub_env):
    return NeMoMicroservices(
        base_url=hub_env["HUB_URL"],
        default_headers={"Authorization": f"Bearer {hub_env['HUB_API_TOKEN']}"},
    )


def test_the_sdk_lists_retrieves_and_reads_status(sdk, alice, charlie):
    from tests.workers import wait_for_status

    job = job_submit_customization(
        owner=alice, dataset=factories.dataset(alice), hyperparameters={"epochs": 2}
    )
    theirs = job_submit_customization(owner=charlie, dataset=factories.dataset(charlie))
    factories.link_job(alice)  # not a customization: never listed
    wait_for_status(job, {"ready", "failed"}, 120)
    listed = sdk.customization.jobs.list(page_size=50)
    assert [j.id for j in listed.data] == [job.public_id]
    assert listed.pagination.current_page_size == 1
    one = sdk.customization.jobs.retrieve(job.public_id)
    assert (one.id, one.status, one.config, one.hyperparameters.epochs) == (
        job.public_id,
        "ready",
        "tiny-llama",
        2,
    )
    assert one.output_model == job.target_model.public_id
    details = sdk.customization.jobs.status(job.public_id)
    assert (details.status, details.epochs_completed, details.percentage_done) == (
        "ready",
        2,
        100.0,
    )
    assert details.best_epoch == job.best_epoch and details.val_loss == pytest.approx(job.val_loss)
    assert details.status_logs[-1].message.startswith("Merged model verified")
    assert set(details.metrics.keys) == {"train_loss", "val_loss"}
    with pytest.raises(NotFoundError):
        sdk.customization.jobs.retrieve(theirs.public_id)


def test_the_sdk_cancels_a_job(sdk, alice):
    job = job_submit_customization(
        owner=alice,
        dataset=factories.dataset(alice, records=300),
        hyperparameters={"epochs": 500, "early_stopping_patience": 0},
    )
    cancelled = sdk.customization.jobs.cancel(job.public_id)
    assert cancelled.status in ("cancelling", "cancelled")
    from tests.workers import wait_for_status

    assert wait_for_status(job, {"cancelled"}, 60).status == "cancelled"


def test_the_sdk_lists_configs_creates_a_lora_job_and_reads_its_logs(sdk, alice, bob):
    from tests.workers import wait_for_status

    configs = {c.name: c for c in sdk.customization.configs.list(page_size=50).data}
    assert "tiny-llama" in configs
    options = {(o.training_type, o.finetuning_type) for o in configs["tiny-llama"].training_options}
    assert options == {
        (training, kind)
        for training in ("sft", "dpo", "distillation", "grpo")
        for kind in ("lora", "all_weights")
    }
    mine = factories.dataset(alice, records=40, name="numbers")
    factories.dataset(bob, records=10, name="numbers")  # same name, someone else's: not taken
    created = sdk.customization.jobs.create(
        config="tiny-llama@v1",
        dataset={"namespace": "alice", "name": "numbers"},
        hyperparameters={
            "finetuning_type": "lora",
            "training_type": "sft",
            "epochs": 2,
            "batch_size": 8,
            "learning_rate": 0.01,
            "lora": {"adapter_dim": 8, "alpha": 16},
        },
        output_model="alice/numbers-lora",
    )
    assert (created.config, created.dataset, created.status) == (
        "tiny-llama",
        mine.public_id,
        "pending",
    )
    assert created.hyperparameters.lora.adapter_dim == 8
    job = wait_for_status(Job.objects.get(public_id=created.id), {"ready", "failed"}, 180)
    assert job.status == "ready", job.failure_message
    assert sdk.customization.jobs.status(created.id).epochs_completed == 2
    logs = sdk.customization.jobs.container_logs(created.id)
    assert any(e.type == "ready" for e in logs.entries["status"].events)
    assert any("Epoch 2/2" in line for line in logs.entries["training"].logs["lines"])


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (
            {
                "hyperparameters": {
                    "finetuning_type": "lora",
                    "training_type": "grpo",
                    "grpo": {"environment": {"name": "mcqa"}},
                }
            },
            "grpo.environment",
        ),
        (
            {"hyperparameters": {"finetuning_type": "lora", "training_type": "dpo"}},
            "learns from preference rows",
        ),
        (
            {"hyperparameters": {"finetuning_type": "lora", "distillation": {"teacher": "x"}}},
            "apply to training_type 'distillation'",
        ),
        ({"config": "meta/llama-9b@v1"}, "No config"),
        ({"dataset": "bob/numbers"}, "No dataset 'numbers' in namespace 'bob'"),
    ],
)
def test_the_sdk_gets_422_naming_what_the_hub_does_not_support(sdk, alice, change, words):
    factories.dataset(alice, records=10, name="numbers")
    body = {
        "config": "tiny-llama",
        "dataset": "numbers",
        "hyperparameters": {"finetuning_type": "lora", "epochs": 1},
        **change,
    }
    with pytest.raises(UnprocessableEntityError) as refused:
        sdk.customization.jobs.create(**body)
    assert words in str(refused.value.body)
    assert not Job.objects.exists()


def test_a_config_is_usable_by_every_name_it_is_listed_under(sdk, alice, tmp_path):
    from django.core.files.base import ContentFile

    from jobs.services.assets import model_upload
    from tests.hf_samples import tiny_llama_folder, zipped

    uploaded = model_upload(
        owner=alice, file=ContentFile(zipped(tiny_llama_folder(tmp_path / "m")), "mine.zip")
    )
    factories.dataset(alice, records=10, name="numbers")
    listed = {(c.namespace, c.name): c for c in sdk.customization.configs.list(page_size=50).data}
    assert ("hub", "tiny-llama") in listed and ("alice", uploaded.public_id) in listed
    assert listed["hub", "tiny-llama"].custom_fields["version"] == "v1"
    hyperparameters = {"finetuning_type": "lora", "epochs": 1}
    for config, dataset in [
        ("hub/tiny-llama", "alice/numbers"),
        ("hub/tiny-llama@v1", "hf://datasets/alice/numbers"),
        ("tiny-llama", {"files_url": "hf://datasets/alice/numbers"}),
        ({"namespace": "hub", "name": "tiny-llama"}, "numbers"),
        (f"alice/{uploaded.public_id}@v1", "numbers"),
        (uploaded.public_id, "numbers"),
    ]:
        created = sdk.customization.jobs.create(
            config=config, dataset=dataset, hyperparameters=hyperparameters
        )
        job = Job.objects.get(public_id=created.id)
        base = job.builtin_base_model or job.job_inputs.get().model.public_id
        assert base == ("tiny-llama" if "tiny" in str(config) else uploaded.public_id), config
    for config, words in [
        ("hub/tiny-llama@v2", "No version 'v2' of config 'hub/tiny-llama'"),
        ("bob/tiny-llama", "No config 'bob/tiny-llama'"),
        (f"bob/{uploaded.public_id}", f"No config 'bob/{uploaded.public_id}'"),
    ]:
        with pytest.raises(UnprocessableEntityError) as refused:
            sdk.customization.jobs.create(
                config=config, dataset="numbers", hyperparameters=hyperparameters
            )
        assert words in str(refused.value.body)
        assert "hub/tiny-llama@v1" in str(refused.value.body)  # what exists is listed


def test_the_sdk_creates_a_dpo_job_with_nemos_names_and_reads_its_options_back(sdk, alice):
    from tests.test_dpo import preference_rows

    dataset_upload(
        owner=alice, file=ContentFile(preference_rows(20, nemo_names=True), "pairs.jsonl")
    )
    created = sdk.customization.jobs.create(
        config="tiny-llama@v1",
        dataset={"namespace": "alice", "name": "pairs"},
        hyperparameters={
            "finetuning_type": "lora",
            "training_type": "dpo",
            "epochs": 1,
            "dpo": {"ref_policy_kl_penalty": 0.2, "sft_loss_weight": 0.5, "max_grad_norm": 2.0},
        },
    )
    assert created.hyperparameters.training_type == "dpo"
    assert created.hyperparameters.dpo.ref_policy_kl_penalty == 0.2
    assert created.hyperparameters.dpo.sft_loss_weight == 0.5
    job = Job.objects.get(public_id=created.id)
    assert job.params.dpo.max_grad_norm == 2.0
    with pytest.raises(UnprocessableEntityError) as refused:
        sdk.customization.jobs.create(
            config="tiny-llama@v1",
            dataset={"namespace": "alice", "name": "pairs"},
            hyperparameters={
                "finetuning_type": "lora",
                "training_type": "dpo",
                "dpo": {"sft_average_log_probs": True},
            },
        )
    assert "dpo.sft_average_log_probs true" in str(refused.value.body)


def test_the_sdk_runs_a_custom_evaluation_and_reads_its_results(sdk, alice, charlie):
    from tests.workers import wait_for_status

    factories.dataset(alice, records=10, name="numbers")
    config: dict[str, Any] = {
        "type": "custom",
        "params": {"max_tokens": 4, "limit_samples": 3},
        "tasks": {
            "spelling": {
                "type": "completion",
                "dataset": {"files_url": "hf://datasets/alice/numbers"},
                "metrics": {
                    "bleu": {"type": "bleu"},
                    "rouge": {"type": "rouge"},
                    "exact": {"type": "em"},
                    "words": {"type": "regex", "params": {"pattern": "^{answer}"}},
                },
            }
        },
    }
    assert [c.name for c in sdk.evaluation.configs.list().data] == ["custom"]
    assert "hub/tiny-llama" in [t.model for t in sdk.evaluation.targets.list(page_size=50).data]
    created = sdk.evaluation.jobs.create(
        config=config, target={"type": "model", "model": "hub/tiny-llama"}
    )
    assert created.status == "pending" and created.target.model == "hub/tiny-llama"
    job = wait_for_status(Job.objects.get(public_id=created.id), {"ready", "failed"}, 180)
    assert job.status == "ready", job.failure_message
    assert sdk.evaluation.jobs.status(created.id).progress == 100.0
    results = sdk.evaluation.jobs.results(created.id)
    metrics = results.tasks["spelling"].metrics
    assert set(metrics) == {"bleu", "rouge", "exact", "words"}
    assert 0.0 <= metrics["rouge"].scores["rouge_l"].value <= 1.0
    assert 0.0 <= metrics["exact"].scores["exact_match"].value <= 1.0
    assert results.tasks["spelling"].data["rows"] == 3
    # Charlie reads none of it; unknown types and datasets are refused by name.
    other = NeMoMicroservices(
        base_url=sdk.base_url, default_headers={"Authorization": f"Bearer {charlie_token(charlie)}"}
    )
    with pytest.raises(NotFoundError):
        other.evaluation.jobs.retrieve(created.id)
    with pytest.raises(UnprocessableEntityError) as refused:
        sdk.evaluation.jobs.create(config={**config, "type": "lm-harness"}, target="hub/tiny-llama")
    assert "runs NeMo's 'custom' evaluation type" in str(refused.value.body)
    bad = {
        **config,
        "tasks": {"t": {**config["tasks"]["spelling"], "metrics": {"x": {"type": "f1"}}}},
    }
    with pytest.raises(UnprocessableEntityError) as refused:
        sdk.evaluation.jobs.create(config=bad, target="hub/tiny-llama")
    assert "Metric type 'f1' is not run here" in str(refused.value.body)


def charlie_token(user) -> str:
    from rest_framework.authtoken.models import Token

    return Token.objects.get_or_create(user=user)[0].key
