""" "Try it" over HTTP: ``POST /api/v1/models/<model>/generate/`` asks a generation worker to
answer a prompt, and streams the answer back as server-sent events while it grows (``Accept:
text/event-stream``), or answers 202 with the generation to read at
``GET /api/v1/generations/<id>/``. The page, the client and the CLI all read the events.

Events, each ``data`` a JSON object:

- ``queued``: ``{"id", "model"}`` at once;
- ``token``: ``{"text"}``, the answer's next piece (``"replace": true``: the whole answer so far,
  when the tokenizer rewrote its end, as byte-level tokens do mid-character);
- ``done``: the generation as ``GET`` reads it (text, tokens, timings);
- ``error``: ``{"detail"}`` naming what went wrong (refusals before it starts keep their
  status code, 400, 404 or 429, with the one ``error`` event as their body).

The stream reads the row the worker writes (jobs/engine/generation.py) every POLL_SECONDS, in an
async iterator: a waiting stream holds no thread of the web process.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

from asgiref.sync import sync_to_async
from django.http import Http404, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from hubsite.api.auth import user_of
from hubsite.api.renderers import FastJSONRenderer
from jobs.models import Generation, GenerationStatus
from jobs.services.generation import generation_expire, generation_start

POLL_SECONDS = 0.04
EVENT_STREAM = "text/event-stream"


def sse(event: str, data: Mapping[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


class EventStreamRenderer(BaseRenderer):
    """So that a client asking for events is not refused before the view runs, and gets a
    refusal as an ``error`` event it reads like any other."""

    media_type = EVENT_STREAM
    format = "sse"
    charset = "utf-8"

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        if data is None:
            return b""
        # The hub's error body (hubsite/api/errors.py): its message, and the field it names.
        body = data if isinstance(data, dict) else {"message": str(data)}
        return sse("error", {"detail": str(body.get("message", body)), **body})


def generation_data(generation: Generation) -> dict[str, Any]:
    def since(moment: Any) -> float | None:
        if moment is None or generation.started_at is None:
            return None
        return round((moment - generation.created_at).total_seconds(), 3)

    return {
        "id": generation.public_id,
        "model": generation.model_name,
        "status": generation.status,
        "prompt": generation.prompt,
        "chat": generation.chat,
        "max_tokens": generation.max_tokens,
        "temperature": generation.temperature,
        "text": generation.text,
        "tokens": generation.tokens,
        "prompt_tokens": generation.prompt_tokens,
        "error": generation.error,
        # Seconds from the request: to the first token, and to the end; whether the worker had
        # the model loaded already.
        "first_token_seconds": since(generation.first_token_at),
        "seconds": since(generation.finished_at),
        "warm": generation.warm,
        "worker": generation.worker,
        "created_at": generation.created_at.isoformat(),
    }


def _read(pk: int) -> Generation:
    generation = Generation.objects.select_related("model").get(pk=pk)
    if generation_expire(generation):
        generation.refresh_from_db()
    return generation


async def events(pk: int) -> AsyncIterator[bytes]:
    """The generation's events until it ends (or the reader goes away: the answer then runs
    to its end in the worker and stays readable)."""
    read = sync_to_async(_read)
    generation = await read(pk)
    yield sse("queued", {"id": generation.public_id, "model": generation.model_name})
    sent = ""
    while True:
        generation = await read(pk)
        text = generation.text
        if text != sent:
            if text.startswith(sent):
                yield sse("token", {"text": text[len(sent) :]})
            else:
                yield sse("token", {"text": text, "replace": True})
            sent = text
        if generation.status == GenerationStatus.DONE:
            yield sse("done", generation_data(generation))
            return
        if generation.status == GenerationStatus.FAILED:
            yield sse("error", {"detail": generation.error, "id": generation.public_id})
            return
        await asyncio.sleep(POLL_SECONDS)


class GenerateRequest(serializers.Serializer[Any]):
    prompt = serializers.CharField(help_text="The prompt (a user's turn when chat is true).")
    max_tokens = serializers.IntegerField(required=False, help_text="Tokens to write at most.")
    temperature = serializers.FloatField(required=False, help_text="0 (default) is greedy.")
    chat = serializers.BooleanField(
        required=False, help_text="Render the prompt with the model's chat template (default)."
    )


class Generate(APIView):
    renderer_classes = [FastJSONRenderer, EventStreamRenderer]

    @extend_schema(
        request=GenerateRequest,
        responses={
            (200, EVENT_STREAM): OpenApiResponse(OpenApiTypes.STR, description="The events."),
            (202, "application/json"): OpenApiResponse(
                OpenApiTypes.OBJECT, description="Without Accept: text/event-stream."
            ),
        },
        summary="Answer a prompt with a language model, streamed as server-sent events",
    )
    def post(self, request: Request, model_id: str) -> Response | StreamingHttpResponse:
        data = request.data if isinstance(request.data, dict) else {}
        generation = generation_start(requester=user_of(request), model=model_id, data=dict(data))
        if request.accepted_media_type != EVENT_STREAM:
            return Response(generation_data(generation), status=status.HTTP_202_ACCEPTED)
        response = StreamingHttpResponse(events(generation.pk), content_type=EVENT_STREAM)
        # Every event as it comes: no proxy buffering, no compression holding tokens back.
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"
        return response


class GenerationDetail(APIView):
    @extend_schema(responses={200: OpenApiTypes.OBJECT}, summary="A generation, as it stands")
    def get(self, request: Request, generation_id: str) -> Response:
        generation = (
            Generation.objects.select_related("model")
            .filter(public_id=generation_id, requester=user_of(request))
            .first()
        )
        if generation is None:
            raise Http404("No such generation.")
        if generation_expire(generation):
            generation.refresh_from_db()
        return Response(generation_data(generation))
