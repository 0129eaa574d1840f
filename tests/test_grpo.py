"""GRPO (``training_type: "grpo"``) trains for real on TRL's GRPOTrainer with a verifiable
reward from each row's answer: the reward rises on a small model on the CPU, with reward spread,
KL and completion length as live series; bad rules and datasets without answers are refused."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile

from jobs.domain.numbers import number_in_words
from jobs.domain.rewards import Reward, RewardError, parse_reward
from jobs.domain.status import JobStatus
from jobs.models import Job
from jobs.services.assets import dataset_upload
from jobs.services.jobs import job_submit_customization
from tests import factories


def answer_rows(start: int, stop: int) -> bytes:
    rows = [{"prompt": str(n), "answer": number_in_words(n)} for n in range(start, stop)]
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def _series(job: Job, key: str) -> list[float | None]:
    points = job.metric_series.get(key=key).points.order_by("step")
    return list(points.values_list("value", flat=True))


@pytest.mark.django_db(transaction=True)
def test_a_grpo_job_raises_its_reward(alice):
    """Completions are rewarded for naming the hundreds the way the answer does ("one hundred"):
    a rule the base model meets now and then, and learns to meet more often."""
    data = dataset_upload(owner=alice, file=ContentFile(answer_rows(100, 180), "hundreds.jsonl"))
    assert data.format == "prompt_answer"
    job = job_submit_customization(
        owner=alice,
        dataset=data,
        hyperparameters={
            "training_type": "grpo",
            "epochs": 2,
            "learning_rate": 0.003,
            "early_stopping_patience": 0,
            "grpo": {
                "num_prompts_per_step": 4,
                "num_generations_per_prompt": 4,
                "max_completion_length": 8,
                "reward": {"kind": "regex", "pattern": "hundred"},
            },
        },
    )
    job = factories.run_here(job)
    assert job.status == JobStatus.READY, job.failure_message
    reward = _series(job, "val_reward")
    # The built-in model is pre-trained on the machine that first needs it, so how often the
    # base meets the rule differs between CPUs (measured 0.22 here, 0.53 on CI); what training
    # must do everywhere is bring the validation reward near every completion's.
    assert reward[-1] >= 0.9, reward  # measured: 0.97 here, 1.0 on CI
    assert reward[-1] >= reward[0] + 0.3, reward
    train = [v or 0.0 for v in _series(job, "reward")]
    assert sum(train[-5:]) / 5 > sum(train[:5]) / 5
    for key in ("reward_std", "kl", "completion_length"):
        assert _series(job, key), key
    log = job.artifacts.get(name="training_log.txt").file.read().decode()
    assert "grpo, lora" in log


def test_the_reward_rules_score_completions_against_the_answer():
    assert Reward("exact_match").score("  forty-two ", "forty-two") == 1.0
    assert Reward("exact_match").score("Forty-two", "forty-two") == 0.0
    assert Reward("exact_match", case_sensitive=False).score("Forty-two", "forty-two") == 1.0
    number = Reward("number", tolerance=0.01)
    assert number.score("it is 3.141 or so", "3.14") == 1.0
    assert number.score("it is 3.2", "3.14") == 0.0
    assert number.score("no number here", "3.14") == 0.0
    pattern = Reward("regex", pattern=r"^\s*{answer}\b")
    assert pattern.score(" 1+1 is two", "1+1") == 1.0  # the answer is matched as text
    assert pattern.score("11 is two", "1+1") == 0.0


def test_a_pattern_that_backtracks_without_end_scores_zero_instead_of_hanging():
    assert Reward("regex", pattern=r"(a+)+$").score("a" * 40 + "!", "") == 0.0


@pytest.mark.parametrize(
    ("rule", "text"),
    [
        ({"kind": "regex", "pattern": "(("}, "not a valid regular expression"),
        ({"kind": "number", "tolerance": "small"}, "tolerance must be a number"),
        ({"kind": "judge"}, "must be an object with a kind"),
        ({"kind": "exact_match", "pattern": "x"}, "takes case_sensitive, kind; not pattern"),
    ],
)
def test_bad_reward_rules_are_refused_naming_what_is_wrong(rule, text):
    with pytest.raises(RewardError, match=text):
        parse_reward(rule)


@pytest.mark.django_db(transaction=True)
def test_grpo_takes_only_prompts_with_answers_and_nemo_options_it_runs(alice):
    completions = factories.dataset(alice, records=10)
    with pytest.raises(ValidationError) as refused:
        job_submit_customization(
            owner=alice,
            dataset=completions,
            hyperparameters={"training_type": "grpo", "grpo": {"reward": {"kind": "exact_match"}}},
        )
    assert "learns from prompts with answers" in refused.value.messages[0]
    data = dataset_upload(owner=alice, file=ContentFile(answer_rows(0, 10), "answers.jsonl"))
    with pytest.raises(ValidationError) as refused:
        job_submit_customization(
            owner=alice,
            dataset=data,
            hyperparameters={
                "training_type": "grpo",
                "grpo": {"reward": {"kind": "exact_match"}, "use_rloo": True},
            },
        )
    assert (
        "grpo.use_rloo (RLOO baselines) is a NeMo Customizer option this hub does not run"
        in (refused.value.message_dict["hyperparameters.grpo.use_rloo"][0])
    )
    assert not Job.objects.exists()
