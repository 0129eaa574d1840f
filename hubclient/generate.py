""" "Try it" from Python: a prompt answered by a model on the hub, streamed as it is written.

``client.generate("tiny-llama", "12")`` or ``model.generate("12")`` return the answer;
with ``stream=True`` an ``Answer`` that yields its pieces as they come, then holds the whole
answer and its timings (``answer.result``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx

from hubclient.connection import Connection
from hubclient.errors import BY_STATUS, HubError


def _events(lines: Iterator[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event, data) of a server-sent event stream."""
    name, data = "message", ""
    for line in lines:
        if not line:
            if data:
                yield name, json.loads(data)
            name, data = "message", ""
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data += line[5:].strip()
    if data:
        yield name, json.loads(data)


class Answer:
    """A streamed answer: iterate for its pieces; then ``text`` is the whole answer and
    ``result`` what the hub says of it (tokens, ``first_token_seconds``, ``seconds``, ``warm``:
    whether the model was still loaded from an earlier prompt)."""

    def __init__(self, client: Connection, model: str, body: dict[str, Any]) -> None:
        self._client, self._model, self._body = client, model, body
        self.id: str | None = None
        self.text = ""
        self.result: dict[str, Any] = {}

    def __iter__(self) -> Iterator[str]:
        if self.result:  # asked and answered already: the answer, not a second prompt
            yield self.text
            return
        path = f"/api/v1/models/{quote(self._model, safe='/')}/generate/"
        headers = {"Accept": "text/event-stream"}
        http = self._client._http
        try:
            with http.stream("POST", path, json=self._body, headers=headers) as response:
                if response.status_code >= 400:
                    raise _refusal(response)
                for name, data in _events(response.iter_lines()):
                    if name == "queued":
                        self.id = data["id"]
                    elif name == "token":
                        piece = data["text"]
                        if data.get("replace"):
                            self.text = piece
                            continue  # a rewritten start: nothing new to hand on
                        self.text += piece
                        yield piece
                    elif name == "done":
                        self.result, self.text = data, data["text"]
                        return
                    elif name == "error":
                        raise HubError(data.get("detail") or "The generation failed.")
        except httpx.HTTPError as error:
            raise HubError(f"Could not reach the hub at {self._client.url}: {error}") from error
        raise HubError("The hub ended the answer's stream before the answer.")


def _refusal(response: httpx.Response) -> HubError:
    response.read()
    events = list(_events(iter(response.text.splitlines())))
    data = events[0][1] if events else {}
    kind = BY_STATUS.get(response.status_code, HubError)
    message = data.get("message") or data.get("detail") or response.reason_phrase
    return kind(message, status=response.status_code, field=data.get("field"))


def generate(
    client: Connection,
    model: str,
    prompt: str,
    *,
    max_tokens: int | None = None,
    temperature: float | None = None,
    chat: bool = True,
    stream: bool = False,
) -> Answer | str:
    body: dict[str, Any] = {"prompt": prompt, "chat": chat}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if temperature is not None:
        body["temperature"] = temperature
    answer = Answer(client, model, body)
    if stream:
        return answer
    for _ in answer:
        pass
    return answer.text
