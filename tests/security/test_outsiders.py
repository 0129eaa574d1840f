"""Anyone who is not signed in, and anyone signed in who was given nothing, gets nothing: every
route of the URLconf, every operation of the API schema and every socket, enumerated rather
than listed, so a new one is covered the day it is added."""

from __future__ import annotations

import re

import pytest
import yaml
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.core.management import call_command
from rest_framework.authtoken.models import Token

from hubsite.asgi import application
from tests import factories
from tests.security.access import all_routes, api, assert_no_route_reaches

# Routes anyone may open: signing in and out, an invitation link (its token is the secret),
# the API's description, the front door. Everything else needs a sign-in.
# healthz: for load balancers and `hub doctor`; no job, person or address in it
# (tests/faults/test_reaping.py checks it holds no secret).
# aihub-login: seed 000's client's sign-in (email and password give the token).
# oidc_*: signing in through the provider (the start, and the provider's way back).
# metrics: for Prometheus; counts only, no job, person or address in it, and only to its token
# or its networks (tests/test_metrics.py: anyone else gets a 404).
PUBLIC = {
    "login",
    "logout",
    "accept",
    "home",
    "api-schema",
    "api-docs",
    "healthz",
    "aihub-login",
    "oidc_authentication_init",
    "oidc_authentication_callback",
    "metrics",
}


@pytest.fixture
def ready_job(alice):
    return factories.ready_job(factories.link_job(alice))


def _fill(template: str, job) -> str:
    values = {
        "job_id": job.public_id,
        "public_id": job.public_id,
        "model_id": job.target_model.public_id,
        "dataset_id": "d2222222z",
        "name": "manifest.json",
        "token": "not-a-token",
    }
    return "/" + re.sub(r"<(\w+)>", lambda m: values.get(str(m.group(1)), "x"), template)


def test_anonymous_requests_get_nothing_from_any_route(ready_job):
    client = api(None)
    checked = 0
    for route in all_routes():
        if route.name in PUBLIC or route.template.startswith(("admin/", "static/")):
            continue
        url = _fill(route.template, ready_job)
        for method in ("get", "post"):
            response = getattr(client, method)(url)
            assert response.status_code in {302, 401, 403, 405}, (method, url)
            if response.status_code == 302:
                assert response["Location"].startswith("/accounts/login/"), url
            assert ready_job.public_id.encode() not in response.content, url
            checked += 1
    assert checked > 40


def test_the_admin_asks_anonymous_people_and_non_staff_to_sign_in(ready_job, bob, client):
    url = f"/admin/jobs/job/{ready_job.pk}/change/"
    assert client.get(url)["Location"].startswith("/admin/login/")
    client.force_login(bob)
    assert client.get(url)["Location"].startswith("/admin/login/")


def test_every_api_operation_of_the_schema_refuses_anonymous_callers(ready_job, tmp_path):
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--file", str(out))
    client, operations = api(None), 0
    for path, methods in yaml.safe_load(out.read_text())["paths"].items():
        url = re.sub(
            r"\{(\w+)\}",
            lambda m: {"model_id": ready_job.target_model.public_id, "name": "manifest.json"}.get(
                m.group(1), ready_job.public_id
            ),
            path,
        )
        for method in methods:
            response = getattr(client, method)(url)
            assert response.status_code == 401, (method, url, response.status_code)
            assert ready_job.public_id.encode() not in response.content
            operations += 1
    assert operations > 20


def test_a_stranger_gets_nothing_from_any_route_of_a_job(ready_job, charlie):
    assert_no_route_reaches(charlie, ready_job)


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
@pytest.mark.parametrize("who", ["anonymous", "stranger", "bad token"])
async def test_outsiders_get_no_socket(alice, charlie, who):
    job = await sync_to_async(factories.unqueued_job)(alice)
    headers = [(b"origin", settings.HUB_BASE_URL.encode())]
    if who == "stranger":
        token, _ = await sync_to_async(Token.objects.get_or_create)(user=charlie)
        headers.append((b"authorization", f"Token {token.key}".encode()))
    elif who == "bad token":
        headers.append((b"authorization", b"Token " + b"0" * 40))
    paths = [f"/ws/jobs/{job.public_id}/"] + (["/ws/jobs/"] if who != "stranger" else [])
    for path in paths:
        ws = WebsocketCommunicator(application, path, headers=headers)
        connected, _ = await ws.connect()
        assert not connected, (who, path)
        await ws.disconnect()
