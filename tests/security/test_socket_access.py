"""Every open socket closes within a second when its access ends, for any reason: a share
removed by its owner or deleted by an operator, access to an upstream job lost with the share
that gave it, a sign-out, a password change, a replaced token, a deactivation."""

from __future__ import annotations

import pytest
import pytest_asyncio
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.authtoken.models import Token

from hubsite.asgi import application
from jobs.models import Job
from jobs.services.jobs import job_submit_link
from sharing.models import Share
from sharing.services import sharing_modify
from tests import factories
from tests.sockets import next_message, next_output, stays_quiet

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

ORIGIN = (b"origin", settings.HUB_BASE_URL.encode())
# The close must come from the announcement of the change, not from the consumers' periodic
# recheck (jobs.live.consumers.RECHECK_SECONDS, 30 s with Redis): a bound well under that proves
# which, and leaves room for a machine whose CPUs are saturated (a close there took over 1.5 s).
# How fast it is on a quiet machine ("within a second") is a figure, not a test's business.
# A bound for a socket that is never closed; one that is returns as soon as it is, so a busy
# machine (CI with every core saturated) costs only the time it really takes.
CLOSE_WITHIN = 30.0


async def open_socket(
    path: str, user: User, by: str, browser: Client | None = None
) -> WebsocketCommunicator:
    """A socket signed in the way a program (token) or a browser (the session cookie of
    ``browser``, a fresh sign-in when not given) signs in."""
    if by == "token":
        token, _ = await sync_to_async(Token.objects.get_or_create)(user=user)
        credential = (b"authorization", f"Token {token.key}".encode())
    else:
        if browser is None:
            browser = Client()
            await sync_to_async(browser.force_login)(user)
        cookie = browser.cookies[settings.SESSION_COOKIE_NAME].value
        credential = (b"cookie", f"{settings.SESSION_COOKIE_NAME}={cookie}".encode())
    ws = WebsocketCommunicator(application, path, headers=[ORIGIN, credential])
    connected, _ = await ws.connect()
    assert connected
    await next_message(ws)  # the snapshot (or the list's hello)
    return ws


async def assert_closed(ws: WebsocketCommunicator, code: int) -> None:
    while True:
        output = await next_output(ws, CLOSE_WITHIN)
        if output["type"] == "websocket.close":
            assert output["code"] == code
            return


@pytest_asyncio.fixture
async def shared(alice, bob):
    job = await sync_to_async(factories.unqueued_job)(alice)
    await sync_to_async(sharing_modify)(target=job, actor=alice, add_emails=["bob@example.com"])
    return job


@pytest.mark.parametrize("by", ["token", "session"])
async def test_an_operator_deleting_the_share_in_the_admin_closes_the_socket(shared, bob, by):
    ws = await open_socket(f"/ws/jobs/{shared.public_id}/", bob, by)
    operator = await sync_to_async(User.objects.create_superuser)("ops", "ops@example.com", "pw")
    admin = Client()
    await sync_to_async(admin.force_login)(operator)
    share = await sync_to_async(Share.objects.get)(job=shared, user=bob)
    response = await sync_to_async(admin.post)(
        f"/admin/sharing/share/{share.pk}/delete/", {"post": "yes"}
    )
    assert response.status_code == 302
    await assert_closed(ws, 4404)


async def test_losing_a_share_closes_sockets_on_the_upstream_jobs_it_gave(alice, bob):
    def chain() -> tuple[Job, Job]:
        upstream = factories.ready_job(factories.link_job(alice))
        assert upstream.target_model is not None
        downstream = job_submit_link(owner=alice, models=[upstream.target_model])
        sharing_modify(target=downstream, actor=alice, add_emails=["bob@example.com"])
        return upstream, downstream

    upstream, downstream = await sync_to_async(chain)()
    ws = await open_socket(f"/ws/jobs/{upstream.public_id}/", bob, "token")
    await sync_to_async(sharing_modify)(
        target=downstream, actor=alice, delete_emails=["bob@example.com"]
    )
    await assert_closed(ws, 4404)


async def test_signing_out_closes_the_sockets_of_that_session_only(shared, bob):
    browser, other_browser = Client(), Client()
    for client in (browser, other_browser):
        await sync_to_async(client.force_login)(bob)
    page = await open_socket(f"/ws/jobs/{shared.public_id}/", bob, "session", browser)
    listing = await open_socket("/ws/jobs/", bob, "session", browser)
    elsewhere = await open_socket(f"/ws/jobs/{shared.public_id}/", bob, "session", other_browser)
    await sync_to_async(browser.post)("/accounts/logout/")
    await assert_closed(page, 4401)
    await assert_closed(listing, 4401)
    assert await stays_quiet(elsewhere, 1)  # still signed in there
    await elsewhere.disconnect()


async def test_a_password_change_closes_session_sockets(shared, bob):
    ws = await open_socket(f"/ws/jobs/{shared.public_id}/", bob, "session")

    def change() -> None:
        bob.set_password("a brand new password 42")
        bob.save()

    await sync_to_async(change)()
    await assert_closed(ws, 4401)


async def test_replacing_the_api_token_closes_the_sockets_signed_in_with_the_old_one(shared, bob):
    ws = await open_socket(f"/ws/jobs/{shared.public_id}/", bob, "token")
    client = Client()
    await sync_to_async(client.force_login)(bob)
    await sync_to_async(client.post)("/account/token/")
    await assert_closed(ws, 4401)


@pytest.mark.parametrize("by", ["token", "session"])
async def test_deactivating_a_person_closes_every_socket_of_theirs(shared, bob, by):
    page = await open_socket(f"/ws/jobs/{shared.public_id}/", bob, by)
    listing = await open_socket("/ws/jobs/", bob, by)
    await sync_to_async(User.objects.filter(pk=bob.pk).update)(is_active=False)
    await sync_to_async(lambda: User.objects.get(pk=bob.pk).save())()  # as the admin's form does
    await assert_closed(page, 4401)
    await assert_closed(listing, 4401)


async def test_a_socket_whose_access_holds_stays_open(shared, bob):
    ws = await open_socket(f"/ws/jobs/{shared.public_id}/", bob, "token")
    await sync_to_async(lambda: User.objects.get(pk=bob.pk).save())()  # a check, nothing changed
    assert await stays_quiet(ws, 1.5)
    await ws.disconnect()
