"""Distillation (``training_type: "distillation"``): the student learns a teacher's token
distributions on the dataset's completions, for real, and moves towards it; a teacher the user
may not read, or whose tokenizer is not the student's, is refused naming both."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile

from jobs.domain.base_models import BUILTIN_NAME, ensure_builtin
from jobs.domain.status import FailureType, JobStatus
from jobs.models import TEACHER_POSITION, Job, MLModel
from jobs.services.assets import model_upload
from jobs.services.jobs import job_submit_customization
from tests import factories
from tests.hf_samples import tiny_llama_folder, zipped

pytestmark = pytest.mark.django_db(transaction=True)


def teacher_with_the_builtin_tokenizer(owner, tmp_path: Path, seed: int = 7) -> MLModel:
    """The built-in tiny-llama's architecture and tokenizer with other weights: a teacher whose
    distributions the built-in student does not yet share."""
    from transformers import AutoConfig, AutoModelForCausalLM

    folder = tmp_path / "teacher"
    shutil.copytree(ensure_builtin(), folder)
    torch.manual_seed(seed)
    config = AutoConfig.from_pretrained(folder)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    return model_upload(owner=owner, file=ContentFile(zipped(folder), "teacher.zip"))


def test_a_distilled_student_moves_towards_its_teacher(alice, tmp_path, client):
    teacher = teacher_with_the_builtin_tokenizer(alice, tmp_path)
    job = job_submit_customization(
        owner=alice,
        dataset=factories.dataset(alice, records=60),
        hyperparameters={
            "training_type": "distillation",
            "epochs": 2,
            "batch_size": 8,
            "learning_rate": 0.005,
            "early_stopping_patience": 0,
            "distillation": {"teacher": teacher.public_id, "temperature": 2.0},
        },
    )
    assert job.input_at(TEACHER_POSITION) == teacher
    assert job.params.distillation.teacher == teacher.public_id
    job = factories.run_here(job)
    assert job.status == JobStatus.READY, job.failure_message
    kl = list(
        job.metric_series.get(key="val_loss")
        .points.order_by("step")
        .values_list("value", flat=True)
    )
    assert len(kl) == 3 and kl[0] > 0  # the student's KL to the teacher before training
    assert kl[-1] < 0.5 * kl[0]  # and after: it learned the teacher's distributions
    log = job.artifacts.get(name="training_log.txt").file.read().decode()
    assert f"Distilling from the teacher teacher ({teacher.public_id})" in log
    assert "distillation, lora" in log

    client.force_login(alice)
    page = client.get(job.get_absolute_url()).content.decode()
    assert "Teacher <a" in page and teacher.public_id in page


def test_a_teacher_must_be_readable_and_share_the_students_tokenizer(alice, bob, tmp_path):
    bobs = teacher_with_the_builtin_tokenizer(bob, tmp_path)
    data = factories.dataset(alice, records=10)

    def submit(teacher: str) -> str:
        with pytest.raises(ValidationError) as refused:
            job_submit_customization(
                owner=alice,
                dataset=data,
                hyperparameters={
                    "training_type": "distillation",
                    "distillation": {"teacher": teacher},
                },
            )
        return refused.value.message_dict["hyperparameters.distillation.teacher"][0]

    assert f"No model {bobs.public_id!r} that you may read" in submit(bobs.public_id)
    assert "The teacher is the student (tiny-llama)" in submit(BUILTIN_NAME)
    other = model_upload(
        owner=alice,
        file=ContentFile(zipped(tiny_llama_folder(tmp_path / "other")), "other.zip"),
    )
    words = submit(other.public_id)
    assert f"The teacher other ({other.public_id}) has a vocabulary of" in words
    assert "and the student tiny-llama one of" in words and "same tokenizer" in words
    assert not Job.objects.exists()


def test_a_teacher_with_the_same_vocabulary_size_but_other_tokens_fails_on_the_worker(
    alice, tmp_path
):
    """Same size, other tokens: only the tokenizers themselves tell, on the worker."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    folder = tmp_path / "shuffled"
    shutil.copytree(ensure_builtin(), folder)
    fast = PreTrainedTokenizerFast.from_pretrained(folder)
    state = json.loads(fast.backend_tokenizer.to_str())
    vocab = state["model"]["vocab"]
    first, second = sorted(vocab, key=vocab.get)[-2:]  # two merged tokens swap their ids
    vocab[first], vocab[second] = vocab[second], vocab[first]
    fast = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(state)),
        unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>",
    )  # fmt: skip
    fast.save_pretrained(folder)
    teacher = model_upload(owner=alice, file=ContentFile(zipped(folder), "shuffled.zip"))
    job = factories.run_here(
        job_submit_customization(
            owner=alice,
            dataset=factories.dataset(alice, records=10),
            hyperparameters={
                "training_type": "distillation",
                "epochs": 1,
                "distillation": {"teacher": teacher.public_id},
            },
        )
    )
    assert (job.status, job.failure_type) == (JobStatus.FAILED, FailureType.INVALID_PARAMETERS)
    assert f"The teacher shuffled ({teacher.public_id})'s tokenizer" in job.failure_message
    assert "is not the student tiny-llama's" in job.failure_message


def test_a_teacher_too_large_for_the_workers_memory_fails_before_anything_is_loaded(
    alice, tmp_path
):
    teacher = teacher_with_the_builtin_tokenizer(alice, tmp_path)
    MLModel.objects.filter(pk=teacher.pk).update(
        metadata={**teacher.metadata, "parameters": 10**13}
    )
    job = factories.run_here(
        job_submit_customization(
            owner=alice,
            dataset=factories.dataset(alice, records=10),
            hyperparameters={
                "training_type": "distillation",
                "distillation": {"teacher": teacher.public_id},
            },
        )
    )
    assert (job.status, job.failure_type) == (JobStatus.FAILED, FailureType.INVALID_MODEL)
    assert "with its teacher (10,000,000,000,000 parameters) needs about" in job.failure_message
    assert "a smaller model or teacher" in job.failure_message
