"""JSON for the API, written by orjson: a 10,000-point metric series encodes in a few
milliseconds instead of the standard library's ~12 (profile in docs/performance.md). What orjson
does not know (a lazy translation, a Decimal) goes through DRF's own encoder, and an answer
orjson cannot write at all (an integer past 64 bits: PostgreSQL's jsonb gives a stored 4e74 back
as a 75-digit integer) is written by the standard library instead."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from rest_framework.renderers import JSONRenderer
from rest_framework.utils.encoders import JSONEncoder

_fallback = JSONEncoder()


class FastJSONRenderer(JSONRenderer):
    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        if data is None:
            return b""
        try:
            return orjson.dumps(data, default=_fallback.default, option=orjson.OPT_NON_STR_KEYS)
        except TypeError:  # orjson.JSONEncodeError: what only the slower encoder can write
            return super().render(data, accepted_media_type, renderer_context)
