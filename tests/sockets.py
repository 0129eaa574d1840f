"""Reading a websocket in tests as a page does: heartbeats (one a second) are not news."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from channels.testing import WebsocketCommunicator


def _is_heartbeat(output: dict[str, Any]) -> bool:
    text = output.get("text")
    if output.get("type") != "websocket.send" or not isinstance(text, str):
        return False
    return bool(json.loads(text).get("type") == "heartbeat")


async def next_output(ws: WebsocketCommunicator, timeout: float = 5.0) -> dict[str, Any]:
    """The next ASGI message the socket sends that is not a heartbeat (a send or a close)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        output = await ws.receive_output(timeout=max(end - loop.time(), 0.01))
        if not _is_heartbeat(output):
            return output


async def next_message(ws: WebsocketCommunicator, timeout: float = 5.0) -> dict[str, Any]:
    """The next JSON message that is not a heartbeat."""
    output = await next_output(ws, timeout)
    assert output["type"] == "websocket.send", f"expected a message, got {output}"
    return json.loads(output["text"])


async def stays_quiet(ws: WebsocketCommunicator, seconds: float) -> bool:
    """Whether the socket sends nothing but heartbeats (and does not close) for ``seconds``."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while (left := end - loop.time()) > 0:
        quiet = await ws.receive_nothing(timeout=min(0.1, left))
        if not quiet and not _is_heartbeat(await ws.receive_output(timeout=1)):
            return False
    return True
