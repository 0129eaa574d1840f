"""The API schema documents every status code a route can answer, so a client (and the
schemathesis run in the tests) knows them all: the errors every route shares, in the one JSON
shape of ``hubsite.api.errors``."""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers


class ErrorSerializer(serializers.Serializer):
    message = serializers.CharField(help_text="What is wrong, in words a person can act on.")
    field = serializers.CharField(
        allow_null=True, help_text="The input at fault (a quota's name for a 429), or null."
    )
    # DRF's metaclass takes declared fields off the class, so this does not hide the
    # ``errors`` property at run time; only the type checker sees a clash.
    errors = serializers.DictField(  # type: ignore[assignment]
        child=serializers.ListField(child=serializers.CharField()),
        help_text="Every field's messages, when several are wrong at once.",
    )


ERRORS = {
    "400": "The request is malformed or an input is invalid (the message names it).",
    "401": "No valid API token or session.",
    "403": "Signed in, but only the job's owner may do this.",
    "404": "No such object for you (the same whether it does not exist or is not yours).",
    "409": "The job's status does not allow this now.",
    "413": "The upload is larger than HUB_MAX_UPLOAD_BYTES.",
    "429": "A rate limit or a quota was reached (the field names a quota); see Retry-After.",
    "503": "The job queue is unreachable; nothing was queued.",
}


EVENT_STREAM = "text/event-stream"
EVENTS = "Server-sent events (jobs/web/api/generation.py); a refusal is one `error` event."


class HubAutoSchema(AutoSchema):
    def _error_codes(self) -> list[str]:
        codes = ["400", "401", "429"]  # any request: bad query or body, no sign-in, a rate
        if "{" in self.path:
            codes.append("404")
        if self.method != "GET":
            codes += ["403", "409", "503"]
        elif self.path.endswith("/deletion/"):
            codes.append("403")  # shared with the reader, who may not delete it
        elif self.path.endswith("/target-model/"):
            codes.append("409")  # only a ready job has a target model to download
            if any("multipart" in media for media in self.map_parsers()):
                codes.append("413")
        return codes

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        for code in self._error_codes():
            if code not in responses:
                response = self._get_response_for_code(ErrorSerializer, code, direction=direction)
                response["description"] = ERRORS[code]
                responses[code] = response
        for response in responses.values():
            content = response.get("content", {})
            # An event stream's refusal is the one ``error`` event, not the error object; events
            # have no JSON schema (a validator that reads them gets what it parsed, unchecked).
            if EVENT_STREAM in content:
                content[EVENT_STREAM] = {"schema": {"description": EVENTS}}
        return responses
