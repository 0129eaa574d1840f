"""The API's JSON parser: a bounded body, read with the limits of ``jobs.domain.jsonlimits``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import IO, Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from jobs.domain.jsonlimits import JSONRefused, loads_bounded

MAX_JSON_BODY = 1024 * 1024  # a submission is a few kilobytes; a megabyte is generous


class BoundedJSONParser(JSONParser):
    def parse(
        self,
        stream: IO[bytes] | None,
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        data = stream.read(MAX_JSON_BODY + 1) if stream is not None else b""
        if len(data) > MAX_JSON_BODY:
            raise ParseError(f"The JSON body is larger than {MAX_JSON_BODY} bytes.")
        try:
            return loads_bounded(data)
        except JSONRefused as refused:
            raise ParseError(f"The JSON body was refused: {refused}.") from None
