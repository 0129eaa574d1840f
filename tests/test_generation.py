""" "Try it": a prompt answered by a generation worker's code, streamed into its row as it grows,
with the model kept loaded for the next prompt; who may ask (owner, reader, stranger), the
limits, and bad input refused in words. The worker's code runs here, in the test's process; the
streams through a live hub and real workers are in test_browser and test_client."""

from __future__ import annotations

import json

import pytest
from django.core.files.base import ContentFile
from django.test import override_settings

from jobs.domain.base_models import BUILTIN_NAME
from jobs.engine import generation as worker
from jobs.models import Generation, GenerationStatus
from jobs.services.assets import model_upload
from jobs.web.api.generation import events
from sharing.services import sharing_modify
from tests import factories
from tests.hf_samples import tiny_llama_zip

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _fresh_worker():
    worker.forget_all()
    yield
    worker.forget_all()


def _ask(user, model: str, **data):
    return factories.api(user).post(
        f"/api/v1/models/{model}/generate/", {"prompt": "7", **data}, format="json"
    )


def _answer(user, model: str, **data) -> Generation:
    response = _ask(user, model, **data)
    assert response.status_code == 202, response.content
    generation = Generation.objects.get(public_id=response.json()["id"])
    worker.run(generation.pk, worker="here")
    generation.refresh_from_db()
    return generation


def test_a_prompt_is_answered_piece_by_piece_into_its_row(alice, monkeypatch):
    written: list[str] = []
    flush = worker._Writer.flush

    def spying(self, final=False):
        flush(self, final)
        written.append(Generation.objects.get(pk=self.generation.pk).text)

    monkeypatch.setattr(worker, "FLUSH_SECONDS", 0.0)  # every token: the spy sees each piece
    monkeypatch.setattr(worker._Writer, "flush", spying)
    done = _answer(alice, BUILTIN_NAME, max_tokens=24, temperature=0.8)
    assert done.status == GenerationStatus.DONE, done.error
    assert done.tokens > 3 and done.text.strip()
    assert done.prompt_tokens and done.first_token_at and done.finished_at
    pieces = [text for text in dict.fromkeys(written) if text]
    assert len(pieces) >= 3, written  # the answer grew in the row, not all at once
    assert pieces[-1] == done.text


def test_the_second_prompt_finds_the_model_loaded(alice):
    first = _answer(alice, BUILTIN_NAME)
    second = _answer(alice, BUILTIN_NAME, prompt="12")
    assert (first.warm, second.warm) == (False, True)
    assert worker.KEPT.loads == 1


def test_a_model_idle_past_its_time_is_let_go(alice):
    _answer(alice, BUILTIN_NAME)
    assert len(worker.KEPT) == 1
    with override_settings(HUB_GENERATE_KEEP_SECONDS=0):
        worker.KEPT.drop_idle()
    assert len(worker.KEPT) == 0
    assert _answer(alice, BUILTIN_NAME).warm is False


def test_greedy_answers_are_the_same_every_time(alice):
    first = _answer(alice, BUILTIN_NAME, max_tokens=12)
    second = _answer(alice, BUILTIN_NAME, max_tokens=12)
    assert first.text == second.text


def test_a_prompt_over_the_models_context_is_refused_naming_both_lengths(alice):
    model = model_upload(owner=alice, file=ContentFile(tiny_llama_zip(), "llama.zip"))
    long = _answer(alice, model.public_id, prompt=" ".join(["seven eleven"] * 200), chat=False)
    assert long.status == GenerationStatus.FAILED
    assert "this model reads at most 128" in long.error and "Shorten the prompt" in long.error


def test_owner_and_reader_may_try_a_model_and_a_stranger_finds_nothing(alice, bob, charlie):
    model = model_upload(owner=alice, file=ContentFile(tiny_llama_zip(), "llama.zip"))
    sharing_modify(target=model, actor=alice, add_emails=[bob.email])
    assert _answer(alice, model.public_id, chat=False).status == GenerationStatus.DONE
    assert _answer(bob, model.public_id, chat=False).status == GenerationStatus.DONE
    refused = _ask(charlie, model.public_id)
    assert refused.status_code == 404
    assert model.public_id not in refused.content.decode()
    assert not Generation.objects.filter(requester=charlie).exists()
    # A generation is its asker's: another person, even the model's owner, cannot read it.
    mine = Generation.objects.filter(requester=bob).get()
    assert factories.api(bob).get(f"/api/v1/generations/{mine.public_id}/").status_code == 200
    assert factories.api(alice).get(f"/api/v1/generations/{mine.public_id}/").status_code == 404


def test_a_reader_of_a_fine_tuning_job_may_try_its_model(alice, bob, charlie):
    job = factories.run_here(factories.customization_job(alice, epochs=1))
    assert job.target_model is not None
    sharing_modify(target=job, actor=alice, add_emails=[bob.email])
    assert _answer(bob, job.target_model.public_id).status == GenerationStatus.DONE
    assert _ask(charlie, job.target_model.public_id).status_code == 404


@override_settings(HUB_GENERATE_CONCURRENT=2, HUB_GENERATE_PER_HOUR=3)
def test_prompts_have_their_own_limits_per_person(alice, bob):
    assert _ask(alice, BUILTIN_NAME).status_code == 202
    assert _ask(alice, BUILTIN_NAME).status_code == 202
    third = _ask(alice, BUILTIN_NAME)
    assert third.status_code == 429
    assert "HUB_GENERATE_CONCURRENT" in third.json()["message"]
    assert _ask(bob, BUILTIN_NAME).status_code == 202  # a person's limit, not everyone's
    for generation in Generation.objects.filter(requester=alice):
        worker.run(generation.pk)
    assert _ask(alice, BUILTIN_NAME).status_code == 202
    worker.run(Generation.objects.filter(requester=alice).latest("pk").pk)
    hourly = _ask(alice, BUILTIN_NAME)
    assert hourly.status_code == 429 and "HUB_GENERATE_PER_HOUR" in hourly.json()["message"]


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"prompt": "  "}, "prompt", "prompt must be some text"),
        ({"prompt": "x" * 9000}, "prompt", "9000 characters"),
        ({"max_tokens": 100000}, "max_tokens", "max_tokens must be from 1 to 256"),
        ({"max_tokens": 2.5}, "max_tokens", "whole number"),
        ({"temperature": -1}, "temperature", "temperature must be from 0 to 2"),
        ({"temperature": "hot"}, "temperature", "must be a number"),
        ({"chat": "yes"}, "chat", "true or false"),
    ],
)
def test_bad_requests_are_refused_naming_what_is_wrong(alice, data, field, words):
    response = _ask(alice, BUILTIN_NAME, **data)
    assert response.status_code == 400
    assert words in json.dumps(response.json()), response.json()
    assert not Generation.objects.exists()


def test_a_model_that_is_not_a_language_model_is_refused(alice):
    onnx = factories.onnx_model(alice, "net")
    response = _ask(alice, onnx.public_id)
    assert response.status_code == 400
    assert "only a Hugging Face causal language model answers prompts" in response.content.decode()


def test_a_prompt_no_worker_takes_fails_in_words_after_its_wait(alice):
    with override_settings(HUB_GENERATE_WAIT_SECONDS=1):
        generation = Generation.objects.get(public_id=_ask(alice, BUILTIN_NAME).json()["id"])
        Generation.objects.filter(pk=generation.pk).update(
            created_at=generation.created_at.replace(year=2020)
        )
        read = factories.api(alice).get(f"/api/v1/generations/{generation.public_id}/").json()
    assert read["status"] == "failed"
    assert "No generation worker took the prompt" in read["error"]
    worker.run(generation.pk)  # a late worker leaves it as it is
    generation.refresh_from_db()
    assert generation.status == GenerationStatus.FAILED and not generation.text


async def _collect(pk: int) -> list[tuple[str, dict]]:
    out = []
    async for chunk in events(pk):
        head, data = chunk.decode().strip().split("\n")
        out.append((head.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return out


def test_the_event_stream_carries_the_pieces_then_the_whole_answer(alice):
    from asgiref.sync import async_to_sync

    generation = _answer(alice, BUILTIN_NAME, max_tokens=16)
    stream = async_to_sync(_collect)(generation.pk)
    names = [name for name, _ in stream]
    assert names[0] == "queued" and names[-1] == "done"
    pieces = "".join(data["text"] for name, data in stream if name == "token")
    assert pieces == generation.text == stream[-1][1]["text"]
    assert stream[-1][1]["tokens"] == generation.tokens
