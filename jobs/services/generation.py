""" "Try it": a prompt for a language model, answered by a generation worker.

``generation_start`` checks the request (the model is one the person may read, a Hugging Face
causal language model or one the hub offers by name; the prompt and the limits), counts it
against the person's generation quota and sends it to the generation queue, which only
generation workers serve: a prompt never waits behind a training job. The worker
(jobs/engine/generation.py) streams the answer into the row; ``generation_expire`` fails a
prompt no worker took in time, so a reader is never left waiting on nothing.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from celery import current_app
from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from jobs.domain import base_models, quotas
from jobs.domain.selectors import model_for_user
from jobs.models import Generation, GenerationStatus, MLModel, ModelFormat

logger = logging.getLogger(__name__)

GENERATE_TASK = "jobs.tasks.generate"
MAX_TEMPERATURE = 2.0


def resolve_language_model(user: User, name: str) -> tuple[MLModel | None, str]:
    """(uploaded or trained model, or None; offered name or "") for what a person names: a
    model id they may read (404 otherwise, as for any model) or a model the hub offers."""
    name = (name or "").strip()
    if name in base_models.server_models():
        return None, name
    model = model_for_user(user, name)
    if model.format != ModelFormat.HF:
        raise ValidationError(
            {
                "model": f"Model {model.public_id} is {model.get_format_display()}; only a "
                "Hugging Face causal language model answers prompts."
            }
        )
    return model, ""


def _number(data: dict[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError({key: f"{key} must be a number, not {value!r}."})
    if not low <= value <= high:
        raise ValidationError({key: f"{key} must be from {low:g} to {high:g}, not {value!r}."})
    return float(value)


def generation_options(data: dict[str, Any]) -> dict[str, Any]:
    """prompt, max_tokens, temperature and chat from what a person sent, or a refusal naming
    what is wrong. (Whether the prompt fits the model's context is known once its tokenizer
    has read it: in the worker, which refuses it in words.)"""
    prompt = data.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValidationError({"prompt": "prompt must be some text."})
    limit = settings.HUB_GENERATE_PROMPT_CHARS
    if len(prompt) > limit:
        raise ValidationError(
            {"prompt": f"The prompt is {len(prompt)} characters; this hub takes {limit} at most."}
        )
    most = settings.HUB_GENERATE_MAX_TOKENS
    max_tokens = _number(data, "max_tokens", min(64, most), 1, most)
    if max_tokens != int(max_tokens):
        raise ValidationError({"max_tokens": "max_tokens must be a whole number."})
    chat = data.get("chat", True)
    if not isinstance(chat, bool):
        raise ValidationError({"chat": "chat must be true or false."})
    return {
        "prompt": prompt,
        "max_tokens": int(max_tokens),
        "temperature": _number(data, "temperature", 0.0, 0.0, MAX_TEMPERATURE),
        "chat": chat,
    }


def generation_start(*, requester: User, model: str, data: dict[str, Any]) -> Generation:
    found, offered = resolve_language_model(requester, model)
    options = generation_options(data)
    with transaction.atomic():
        quotas.lock_person(requester.pk)
        quotas.check_generation_quota(requester.pk)
        generation = Generation.objects.create(
            requester=requester, model=found, server_model=offered, **options
        )
        transaction.on_commit(lambda: _send(generation))
    return generation


def _send(generation: Generation) -> None:
    try:
        current_app.send_task(
            GENERATE_TASK,
            args=(generation.pk,),
            queue=settings.HUB_GENERATION_QUEUE,
            retry=False,
            expires=settings.HUB_GENERATE_WAIT_SECONDS,
        )
    except Exception as error:  # kombu raises many kinds; all mean "not sent"
        logger.warning("Could not queue generation %s: %s", generation.public_id, error)
        generation_fail(generation.pk, "The generation queue could not be reached; try again.")


def generation_fail(pk: int, message: str) -> bool:
    """Fail a prompt that has not finished; False if it had."""
    return bool(
        Generation.objects.filter(
            pk=pk, status__in=(GenerationStatus.QUEUED, GenerationStatus.RUNNING)
        ).update(status=GenerationStatus.FAILED, error=message, finished_at=timezone.now())
    )


def generation_expire(generation: Generation) -> bool:
    """Fail the prompt if no generation worker took it in HUB_GENERATE_WAIT_SECONDS, or if its
    worker stopped answering (died) well past HUB_GENERATE_SECONDS; True if it did."""
    now = timezone.now()
    wait = settings.HUB_GENERATE_WAIT_SECONDS
    if generation.status == GenerationStatus.QUEUED:
        if now - generation.created_at < timedelta(seconds=wait):
            return False
        message = (
            f"No generation worker took the prompt in {wait} s: none is running on this hub "
            f"(it serves the queue {settings.HUB_GENERATION_QUEUE})."
        )
    elif generation.status == GenerationStatus.RUNNING and generation.started_at is not None:
        if now - generation.started_at < timedelta(seconds=settings.HUB_GENERATE_SECONDS + 60):
            return False
        message = "The generation worker stopped while answering; try again."
    else:
        return False
    return generation_fail(generation.pk, message)
