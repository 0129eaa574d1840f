"""Websocket handshakes are rate limited per client address (the socket's, or what a trusted
proxy says): past the rate, and sooner past the rate of wrong tokens (counted with the API's),
a socket is closed at once with 4429 and a reason that says when to try again. A real uvicorn
server and a real websocket client."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from channels.testing import WebsocketCommunicator
from django.conf import settings
from rest_framework.authtoken.models import Token
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from hubsite.asgi import application
from hubsite.ws_auth import TOO_MANY
from tests.security.conftest import LiveWeb, start_web, stop_web

pytestmark = [pytest.mark.production, pytest.mark.django_db(transaction=True)]

SOCKETS = 6  # handshakes a minute per address, for these tests
GUESSES = 3  # wrong tokens a minute per address


@pytest.fixture
def web(tmp_path) -> Iterator[LiveWeb]:
    web = start_web(
        tmp_path / "media",
        tmp_path / "data",
        HUB_SOCKET_RATE=f"{SOCKETS}/minute",
        HUB_API_RATE_BAD_TOKEN=f"{GUESSES}/minute",
        # A proxy of the operator's on loopback, so that the tests can be several clients.
        HUB_TRUSTED_PROXIES="127.0.0.1",
        # Counts of its own: other tests' handshakes from 127.0.0.1 are not this one's.
        HUB_NAMESPACE=f"hub-test-sockets-{uuid.uuid4().hex[:8]}",
    )
    yield web
    stop_web(web)


def handshake(web: LiveWeb, client: str, credential: str | None = None) -> int | None:
    """Open the job list's socket as ``client``: None if it stays open (it says hello), else
    the close code it gets instead (or the HTTP status of a refused handshake). A 4429 must
    say when to try again."""
    headers = {"Origin": web.url, "X-Forwarded-For": client}
    if credential is not None:
        headers["Authorization"] = credential
    url = web.url.replace("http://", "ws://") + "/ws/jobs/"
    try:
        with connect(url, additional_headers=headers, open_timeout=30) as socket:
            socket.recv(timeout=30)
            return None
    except InvalidStatus as refused:
        return refused.response.status_code
    except ConnectionClosed as closed:
        code, reason = (closed.rcvd.code, closed.rcvd.reason) if closed.rcvd else (None, "")
    if code == TOO_MANY and "try again in" not in reason:
        return -1  # a 4429 without its reason
    return code


def test_handshakes_past_the_rate_are_closed_with_4429(web, alice):
    token = f"Token {Token.objects.get_or_create(user=alice)[0].key}"
    codes = [handshake(web, "203.0.113.1", token) for _ in range(SOCKETS + 2)]
    assert codes == [None] * SOCKETS + [TOO_MANY] * 2
    assert handshake(web, "203.0.113.2", token) is None  # another client is not held up


def test_wrong_tokens_on_sockets_are_refused_sooner(web, alice):
    codes = [handshake(web, "203.0.113.3", f"Token {n:040x}") for n in range(GUESSES + 2)]
    assert codes == [403] * GUESSES + [TOO_MANY] * 2  # a stranger's handshake is refused
    token = Token.objects.get_or_create(user=alice)[0].key
    assert handshake(web, "203.0.113.3", f"Token {token}") == TOO_MANY  # the guesser waits
    assert handshake(web, "203.0.113.4", f"Token {token}") is None


def test_wrong_tokens_count_alike_on_the_api_and_on_sockets(web, db):
    for n in range(GUESSES):
        answer = httpx.get(
            f"{web.url}/api/v1/jobs/",
            headers={"Authorization": f"Token {n:040x}", "X-Forwarded-For": "203.0.113.5"},
            timeout=30,
        )
        assert answer.status_code == 401
    assert handshake(web, "203.0.113.5", f"Token {99:040x}") == TOO_MANY


@pytest.mark.asyncio
async def test_a_credential_that_is_not_text_is_refused_like_a_wrong_one(db):
    headers = [(b"origin", settings.HUB_BASE_URL.encode()), (b"authorization", b"Token \xff\xfe")]
    ws = WebsocketCommunicator(application, "/ws/jobs/", headers=headers)
    connected, code = await ws.connect()
    assert (connected, code) == (False, 4404)
