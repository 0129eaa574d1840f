"""A socket opens only from a page of the hub itself: scheme, host and port of the Origin
header all must match (the socket's own Host, or a trusted origin), with the owner's token."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from rest_framework.authtoken.models import Token

from hubsite.asgi import application
from tests import factories

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


@pytest.mark.parametrize(
    ("origin", "host", "allowed"),
    [
        ("http://127.0.0.1:8000", "127.0.0.1:8000", True),  # the hub's base address
        ("http://localhost:8000", "localhost:8000", True),  # same origin as the socket
        ("http://127.0.0.1:9999", "127.0.0.1:8000", False),  # another port of an allowed host
        ("https://127.0.0.1:8000", "127.0.0.1:8000", False),  # another scheme
        ("http://localhost:8001", "localhost:8000", False),
        ("http://evil.example", "127.0.0.1:8000", False),
        ("http://127.0.0.1:8000.evil.example", "127.0.0.1:8000", False),
        ("null", "127.0.0.1:8000", False),  # a sandboxed frame or a file
        ("http://localhost:8000", "evil.example:8000", False),  # a host not allowed
        (None, "127.0.0.1:8000", False),
    ],
)
async def test_the_origin_must_match_scheme_host_and_port_exactly(alice, origin, host, allowed):
    job = await sync_to_async(factories.unqueued_job)(alice)
    token, _ = await sync_to_async(Token.objects.get_or_create)(user=alice)
    headers = [(b"host", host.encode()), (b"authorization", f"Token {token.key}".encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    ws = WebsocketCommunicator(application, f"/ws/jobs/{job.public_id}/", headers=headers)
    connected, _ = await ws.connect()
    assert connected is allowed
    await ws.disconnect()
