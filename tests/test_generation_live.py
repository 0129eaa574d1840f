""" "Try it" through a live hub and a real generation worker: the client streams the answer as
it is written, the second prompt finds the model loaded, the ``hub generate`` command prints
it, and a reader may while a stranger may not. (Chromium's view is in test_browser.)"""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile

from hubclient import Client, NotFoundError
from jobs.domain.base_models import BUILTIN_NAME
from jobs.services.assets import model_upload
from sharing.services import sharing_modify
from tests.hf_samples import tiny_llama_zip
from tests.test_client import run_hub

pytestmark = [pytest.mark.production, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def hub(hub_env, generation_worker):
    with Client(hub_env["HUB_URL"], hub_env["HUB_API_TOKEN"]) as client:
        yield client


def test_the_client_streams_the_answer_and_the_second_prompt_finds_the_model_loaded(hub):
    answer = hub.generate(BUILTIN_NAME, "one hundred and", stream=True, max_tokens=48)
    pieces = list(answer)
    assert len(pieces) >= 2 and "".join(pieces) == answer.text
    assert answer.result["tokens"] > 0 and answer.result["first_token_seconds"] is not None
    again = hub.generate(BUILTIN_NAME, "two hundred and", stream=True, max_tokens=8)
    list(again)
    assert again.result["warm"] is True
    assert hub.generate(BUILTIN_NAME, "7", max_tokens=4) == hub.generate(
        BUILTIN_NAME, "7", max_tokens=4
    )


def test_a_reader_may_try_a_shared_model_and_a_stranger_may_not(
    hub_env, generation_worker, alice, bob, charlie
):
    from rest_framework.authtoken.models import Token

    model = model_upload(owner=alice, file=ContentFile(tiny_llama_zip(), "llama.zip"))
    sharing_modify(target=model, actor=alice, add_emails=[bob.email])
    url = hub_env["HUB_URL"]
    for person in (bob, charlie):
        token, _ = Token.objects.get_or_create(user=person)
        with Client(url, token.key) as client:
            if person == bob:
                assert client.get_model(model.public_id).generate("seven", chat=False, max_tokens=4)
            else:
                with pytest.raises(NotFoundError):
                    client.generate(model.public_id, "seven", chat=False)


def test_the_command_prints_the_answer_and_refuses_bad_input_in_words(hub_env, generation_worker):
    done = run_hub(hub_env, "generate", BUILTIN_NAME, "one hundred and", "--max-tokens", "12")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() and "tokens · first after" in done.stderr
    bad = run_hub(hub_env, "generate", BUILTIN_NAME, "7", "--temperature", "9")
    assert bad.returncode != 0
    assert "temperature must be from 0 to 2" in bad.stderr + bad.stdout
