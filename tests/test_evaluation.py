"""Evaluation jobs score models for real: a base model and its fine-tune side by side on the demo
data (the fine-tune ahead), per-row outputs worst first as JSONL and CSV, preference rows' share
won by the chosen answer; models and datasets the user may not read are refused by name."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.core.files.base import ContentFile
from rest_framework.test import APIClient

from jobs.demo import DEMO_HYPERPARAMETERS
from jobs.domain.base_models import BUILTIN_NAME
from jobs.domain.evaluation import EvaluationSettings, corpus_bleu, parse_settings, row_scores
from jobs.domain.status import JobStatus
from jobs.models import Job
from jobs.services.assets import dataset_upload
from jobs.services.jobs import job_submit_customization, job_submit_evaluation
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_fine_tune_scores_higher_than_its_base_on_the_demo_data(alice, client):
    """The demo's own job (jobs.demo: 300 numbers, LoRA, 30 epochs) and its base."""
    data = factories.dataset(alice, records=300)
    tuned = factories.run_here(
        job_submit_customization(owner=alice, dataset=data, hyperparameters=DEMO_HYPERPARAMETERS)
    )
    assert tuned.status == JobStatus.READY, tuned.failure_message
    model = tuned.target_model
    assert model is not None
    job = job_submit_evaluation(
        owner=alice,
        models=[BUILTIN_NAME, model],
        dataset=data,
        settings={"limit": 30, "max_new_tokens": 12, "pattern": "^{answer}$"},
    )
    job = factories.run_here(job)
    assert job.status == JobStatus.READY, job.failure_message
    base, fine = job.summary["models"]
    assert (base["model"], fine["model"]) == (BUILTIN_NAME, model.public_id)
    assert fine["metrics"]["exact_match"] > base["metrics"]["exact_match"]
    assert fine["metrics"]["loss"] < base["metrics"]["loss"]
    assert fine["metrics"]["perplexity"] < base["metrics"]["perplexity"]
    assert fine["metrics"]["rouge_l"] > base["metrics"]["rouge_l"]
    assert 0 <= fine["metrics"]["bleu"] <= 100  # 4-gram BLEU says little of one-word answers
    assert fine["metrics"]["regex"] == fine["metrics"]["exact_match"]  # ^{answer}$ is exact
    assert (job.total_steps, job.steps_completed) == (60, 60)
    rows = [
        json.loads(line)
        for line in job.artifacts.get(name="rows.jsonl").file.read().decode().splitlines()
    ]
    assert len(rows) == 30 and job.summary["rows"] == 30
    assert [r["row_score"] for r in rows] == sorted(r["row_score"] for r in rows)  # worst first
    assert set(rows[0]["outputs"]) == {BUILTIN_NAME, model.public_id}
    table = list(csv.reader(io.StringIO(job.artifacts.get(name="rows.csv").file.read().decode())))
    assert table[0][:3] == ["prompt", "expected", f"{BUILTIN_NAME} output"]
    assert len(table) == 31
    client.force_login(alice)
    page = client.get(job.get_absolute_url()).content.decode()
    assert 'id="evaluation-metrics"' in page and "Worst rows first" in page
    assert f'data-model="{model.public_id}"' in page
    assert (
        'Model <strong>tiny-llama</strong> <span class="muted">(offered by this hub)</span>' in page
    )
    assert f"{fine['metrics']['exact_match'] * 100:.1f}%" in page
    # The fine-tune's page lists it and offers another, its base and dataset chosen.
    tuned_page = client.get(tuned.get_absolute_url()).content.decode()
    assert f'href="{job.get_absolute_url()}"' in tuned_page and 'id="evaluate-it"' in tuned_page
    new = f"/jobs/new/evaluation/?models={BUILTIN_NAME}&models={model.public_id}&dataset={data.public_id}"
    assert new.replace("&", "&amp;") in tuned_page
    form = client.get(new).content.decode()
    assert f'<option value="{model.public_id}" selected>' in form
    answer = client.post(
        "/jobs/new/evaluation/",
        {"models": [BUILTIN_NAME, model.public_id], "dataset": data.public_id, "limit": 2,
         "max_new_tokens": 4, "temperature": 0},
    )  # fmt: skip
    assert answer.status_code == 302, answer.content.decode()[:3000]
    made = Job.objects.filter(kind="evaluation").order_by("-created_at").first()
    assert made is not None and made.hyperparameters["settings"]["limit"] == 2


def test_preference_rows_count_the_share_won_by_the_chosen_answer(alice):
    from tests.test_dpo import preference_rows

    pairs = dataset_upload(owner=alice, file=ContentFile(preference_rows(12), "pairs.jsonl"))
    job = factories.run_here(
        job_submit_evaluation(
            owner=alice, models=[BUILTIN_NAME], dataset=pairs, settings={"max_new_tokens": 4}
        )
    )
    assert job.status == JobStatus.READY, job.failure_message
    (result,) = job.summary["models"]
    assert 0.0 <= result["metrics"]["preference_accuracy"] <= 1.0
    assert job.summary["worst_rows"][0]["expected"] != "I do not know"  # the chosen answer


def test_scores_of_one_output():
    settings = EvaluationSettings(pattern=r"\bhundred\b")
    scores = row_scores("one hundred and two", "one hundred and two", settings)
    assert scores == {"exact_match": 1.0, "rouge_l": 1.0, "string_check": 1.0, "regex": 1.0}
    partial = row_scores("It is One Hundred.", "one hundred", EvaluationSettings())
    assert partial["exact_match"] == 0.0 and partial["string_check"] == 1.0
    assert 0 < partial["rouge_l"] < 1
    assert corpus_bleu(
        ["one hundred and two", "seven"], ["one hundred and two", "seven"]
    ) == pytest.approx(100)


@pytest.mark.parametrize(
    ("given", "field", "text"),
    [
        ({"temperature": -1}, "settings.temperature", "from 0 (greedy) to 10"),
        ({"limit": 0}, "settings.limit", "from 1 to"),
        ({"pattern": "(("}, "settings.pattern", "not a valid regular expression"),
        ({"top_p": 0.5}, "settings.top_p", "Unknown setting"),
    ],
)
def test_bad_settings_are_refused_naming_them(given, field, text):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as refused:
        parse_settings(given)
    assert text in refused.value.message_dict[field][0]


def test_the_api_refuses_models_and_datasets_the_user_may_not_read(alice, bob):
    client = APIClient()
    client.force_authenticate(alice)
    mine = factories.dataset(alice, records=10)
    theirs = factories.dataset(bob, records=10)
    bobs_model = factories.onnx_model(bob, "m", seed=1)
    cases = [
        ({"models": [bobs_model.public_id], "dataset": mine.public_id}, "models"),
        ({"models": [BUILTIN_NAME], "dataset": theirs.public_id}, "dataset"),
        ({"models": [], "dataset": mine.public_id}, "models"),
        ({"models": [BUILTIN_NAME, BUILTIN_NAME], "dataset": mine.public_id}, "models"),
    ]
    for body, field in cases:
        answer = client.post("/api/v1/jobs/evaluation/", body, format="json")
        assert answer.status_code == 400, answer.content
        assert field in answer.json()["errors"], answer.json()
    assert not Job.objects.exists()
    created = client.post(
        "/api/v1/jobs/evaluation/",
        {"models": [BUILTIN_NAME], "dataset": mine.public_id, "settings": {"limit": 2}},
        format="json",
    )
    assert created.status_code == 201, created.content
    assert created.json()["kind"] == "evaluation"


def test_an_evaluation_is_read_by_its_owner_and_readers_and_by_no_stranger(alice, bob, charlie):
    from sharing.services import sharing_modify
    from tests.security.access import assert_every_route_reads, assert_no_route_reaches

    job = factories.run_here(
        job_submit_evaluation(
            owner=alice,
            models=[BUILTIN_NAME],
            dataset=factories.dataset(alice, records=4),
            settings={"limit": 2, "max_new_tokens": 2},
        )
    )
    assert job.status == JobStatus.READY, job.failure_message
    sharing_modify(target=job, actor=alice, add_emails=["bob@example.com"])
    assert_every_route_reads(alice, job)
    assert_every_route_reads(bob, job)
    assert_no_route_reaches(charlie, job)
    assert_no_route_reaches(None, job)


def test_an_evaluation_and_a_distillation_resubmit_as_they_were(alice, tmp_path):
    from jobs.models import TEACHER_POSITION
    from jobs.services.jobs import job_resubmit
    from tests.test_distillation import teacher_with_the_builtin_tokenizer

    data = factories.dataset(alice, records=10)
    evaluation = factories.run_here(
        job_submit_evaluation(
            owner=alice,
            models=[BUILTIN_NAME],
            dataset=data,
            settings={"limit": 2, "max_new_tokens": 2},
        )
    )
    again = job_resubmit(job=evaluation, owner=alice)
    assert (again.kind, again.hyperparameters["models"]) == ("evaluation", [BUILTIN_NAME])
    assert again.hyperparameters["settings"]["limit"] == 2
    teacher = teacher_with_the_builtin_tokenizer(alice, tmp_path)
    distillation = job_submit_customization(
        owner=alice,
        dataset=data,
        hyperparameters={"training_type": "distillation", "epochs": 1,
                         "distillation": {"teacher": teacher.public_id}},
    )  # fmt: skip
    from jobs.domain.state import job_transition

    job_transition(job=distillation, to=JobStatus.CANCELLED, message="cancelled by its owner")
    clone = job_resubmit(job=distillation, owner=alice)
    assert clone.builtin_base_model == BUILTIN_NAME  # not the teacher, which is an input too
    assert clone.input_at(TEACHER_POSITION) == teacher
    assert clone.params == distillation.params
