"""DPO (``training_type: "dpo"``) trains for real on TRL's DPOTrainer: preference rows in the hub's
and NeMo's names, the base model as the reference (the adapter switched off with LoRA, a second
copy with all weights), reward margin and preference accuracy as live metric series; bad rows
and mismatched datasets are refused naming what is wrong."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile

from jobs.domain.numbers import number_in_words
from jobs.domain.status import JobStatus
from jobs.models import Job
from jobs.services.assets import dataset_upload
from jobs.services.jobs import job_submit_customization
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)


def preference_rows(count: int, nemo_names: bool = False) -> bytes:
    """Numbers with their spelling chosen over not answering."""
    chosen, rejected = ("chosen_response", "rejected_response") if nemo_names else (
        "chosen", "rejected")  # fmt: skip
    rows = [
        {"prompt": str(n), chosen: number_in_words(n), rejected: "I do not know"}
        for n in range(count)
    ]
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def _series(job: Job, key: str) -> list[float | None]:
    points = job.metric_series.get(key=key).points.order_by("step")
    return list(points.values_list("value", flat=True))


@pytest.mark.parametrize("finetuning_type", ["lora", "all_weights"])
def test_a_dpo_job_learns_to_prefer_the_chosen_answers(alice, finetuning_type):
    data = dataset_upload(
        owner=alice, file=ContentFile(preference_rows(80, nemo_names=True), "pairs.jsonl")
    )
    assert data.format == "preference"
    job = job_submit_customization(
        owner=alice,
        dataset=data,
        hyperparameters={
            "training_type": "dpo",
            "finetuning_type": finetuning_type,
            "epochs": 2,
            "batch_size": 8,
            "learning_rate": 0.005 if finetuning_type == "lora" else 0.0005,
            "early_stopping_patience": 0,
            "dpo": {"ref_policy_kl_penalty": 0.5},
        },
    )
    job = factories.run_here(job)
    assert job.status == JobStatus.READY, job.failure_message
    # Before training the policy is its reference: every reward is 0, no pair is won.
    accuracy = _series(job, "val_preference_accuracy")
    margin = _series(job, "val_reward_margin")
    assert margin[0] == pytest.approx(0.0, abs=1e-6) and accuracy[0] == 0.0
    assert margin[-1] > 1.0 and accuracy[-1] >= 0.9
    assert _series(job, "reward_margin") and _series(job, "preference_accuracy")
    assert _series(job, "reward_chosen") and _series(job, "reward_rejected")
    assert job.val_loss < 0.6  # below -log(sigmoid(0)) = 0.693 where it started
    assert job.summary["tokens_per_second"] > 0
    assert [s["expected"] for s in job.samples] and all(s["after"] for s in job.samples)
    log = job.artifacts.get(name="training_log.txt").file.read().decode()
    assert f"dpo, {finetuning_type}" in log


@pytest.mark.parametrize(
    ("rows", "text"),
    [
        ([{"prompt": "1", "chosen": "one"}], "'rejected' (or 'rejected_response') must be"),
        ([{"prompt": "", "chosen": "a", "rejected": "b"}], "'prompt' must be a non-empty"),
        (
            [{"prompt": [{"role": "assistant", "content": "x"}], "chosen": "a", "rejected": "b"}],
            "must end before the answer",
        ),
        ([{"prompt": "1", "chosen": "one", "rejected": "one "}] * 3, "nothing to prefer"),
        ([{"prompt": "1", "answer": True}], "'answer' must be a non-empty string or a number"),
    ],
)
def test_bad_preference_and_answer_rows_are_refused_at_upload_naming_them(alice, rows, text):
    body = "".join(json.dumps(r) + "\n" for r in rows).encode()
    with pytest.raises(ValidationError) as refused:
        dataset_upload(owner=alice, file=ContentFile(body, "bad.jsonl"))
    assert text in " ".join(refused.value.messages)


def test_each_training_type_takes_only_the_rows_it_learns_from(alice):
    pairs = dataset_upload(owner=alice, file=ContentFile(preference_rows(10), "pairs.jsonl"))
    completions = factories.dataset(alice, records=10)
    with pytest.raises(ValidationError) as refused:
        job_submit_customization(
            owner=alice, dataset=completions, hyperparameters={"training_type": "dpo"}
        )
    assert (
        "holds prompt/completion rows; training_type 'dpo' learns from preference rows"
        in (refused.value.messages[0])
    )
    with pytest.raises(ValidationError) as refused:
        job_submit_customization(owner=alice, dataset=pairs)
    assert "holds preference rows" in refused.value.messages[0]
    assert (
        "training_type 'sft' learns from prompt/completion rows or chat messages"
        in (refused.value.messages[0])
    )
    assert not Job.objects.exists()
