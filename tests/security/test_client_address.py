"""Clients are counted by the socket's address: an X-Forwarded-For header that anyone can send
neither dodges a rate limit or the sign-in lockout nor turns them against someone else's
address; only the operator's own proxies (HUB_TRUSTED_PROXIES) are believed, and then only for
the address they saw."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import httpx
import pytest
from django.test import Client
from django.urls import reverse

from hubsite.client_address import client_address
from tests.factories import PASSWORD
from tests.helpers import ROOT
from tests.security.access import api
from tests.security.conftest import LiveWeb, start_web, stop_web
from tests.security.test_sign_in_and_headers import _rates

PROXY = "10.0.0.7"  # the operator's reverse proxy, in HUB_TRUSTED_PROXIES below


def anonymous_get(client, address: str, forwarded_for: str | None = None) -> int:
    extra = {"HTTP_X_FORWARDED_FOR": forwarded_for} if forwarded_for is not None else {}
    return client.get("/api/v1/jobs/", REMOTE_ADDR=address, **extra).status_code


def sign_in(address: str, forwarded_for: str | None, password: str = "wrong") -> int:
    meta = {"REMOTE_ADDR": address}
    if forwarded_for is not None:
        meta["HTTP_X_FORWARDED_FOR"] = forwarded_for
    form = {"username": "alice", "password": password}
    return Client().post(reverse("login"), form, **meta).status_code  # type: ignore[arg-type]


# Without trusted proxies: the header is ignored


def test_a_new_forwarded_for_on_each_request_does_not_dodge_the_anonymous_rate(db, settings):
    _rates(settings, anon="3/minute")
    client = api(None)
    answers = [anonymous_get(client, "10.7.1.1", f"203.0.113.{n}") for n in range(4)]
    assert answers == [401, 401, 401, 429]


def test_wrong_tokens_claiming_another_address_count_against_the_sender(db, settings):
    _rates(settings, bad_token="3/minute")
    attacker = api(None)
    answers = []
    for guess in range(5):
        attacker.credentials(HTTP_AUTHORIZATION=f"Token {guess:040x}")
        answers.append(anonymous_get(attacker, "10.4.4.4", "10.3.3.3"))
    assert answers == [401, 401, 401, 429, 429]
    victim = api(None)
    victim.credentials(HTTP_AUTHORIZATION=f"Token {99:040x}")
    assert anonymous_get(victim, "10.3.3.3") == 401  # a mistyped token, answered as such


def test_failed_sign_ins_claiming_another_address_lock_only_the_sender(alice, settings):
    settings.AXES_FAILURE_LIMIT = 3
    answers = [sign_in("10.4.4.5", f"10.3.3.{n}") for n in range(4)]
    assert answers == [200, 200, 429, 429]  # the form again, then the lockout
    assert sign_in("10.3.3.1", None, PASSWORD) == 302  # the address claimed is not locked


# With the operator's proxy named


@pytest.fixture
def behind_proxy(settings):
    settings.HUB_TRUSTED_PROXIES = ["10.0.0.0/24", "fd00::/64"]


def test_behind_a_trusted_proxy_each_client_has_its_own_rate(db, settings, behind_proxy):
    _rates(settings, anon="3/minute")
    client = api(None)
    # The client wrote the left part itself; the proxy appended the address it saw.
    answers = [anonymous_get(client, PROXY, f"198.51.100.{n}, 203.0.113.5") for n in range(4)]
    assert answers == [401, 401, 401, 429]
    assert anonymous_get(client, PROXY, "203.0.113.6") == 401  # someone else behind the proxy


def test_behind_a_trusted_proxy_the_lockout_is_of_the_client_not_the_proxy(
    alice, settings, behind_proxy
):
    settings.AXES_FAILURE_LIMIT = 3
    answers = [sign_in(PROXY, f"198.51.100.{n}, 203.0.113.7") for n in range(3)]
    assert answers == [200, 200, 429]
    assert sign_in(PROXY, "203.0.113.8", PASSWORD) == 302


def test_a_forwarded_for_from_an_address_that_is_not_a_trusted_proxy_is_ignored(
    db, settings, behind_proxy
):
    _rates(settings, anon="3/minute")
    client = api(None)
    answers = [anonymous_get(client, "192.0.2.1", f"10.0.0.{n}") for n in range(4)]
    assert answers == [401, 401, 401, 429]


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "client"),
    [
        ("192.0.2.1", "203.0.113.5", "192.0.2.1"),  # not a proxy: header ignored
        (PROXY, None, PROXY),  # the proxy's own request
        (PROXY, "203.0.113.5", "203.0.113.5"),
        (PROXY, "203.0.113.5, 10.0.0.8", "203.0.113.5"),  # two proxies of ours
        (PROXY, "10.0.0.9, 10.0.0.8", "10.0.0.9"),  # only proxies: the first of them
        (PROXY, "not-an-address, 203.0.113.5", "203.0.113.5"),
        (PROXY, "203.0.113.5, not-an-address", PROXY),  # the proxy vouches for nothing more
        ("::ffff:10.0.0.7", "2001:db8::5", "2001:db8::5"),  # IPv4 peer of a dual-stack socket
        ("fd00::1", "2001:db8::5", "2001:db8::5"),
        ("fd00:0:0:1::1", "2001:db8::5", "fd00:0:0:1::1"),  # outside the trusted /64
        ("::ffff:192.0.2.1", None, "192.0.2.1"),  # one client, one address
        (None, "203.0.113.5", None),  # a Unix socket: no address
        ("", None, None),
    ],
)
def test_the_client_is_the_right_most_address_no_trusted_proxy_added(
    behind_proxy, peer, forwarded_for, client
):
    assert client_address(peer, forwarded_for) == client


def test_a_trusted_proxy_setting_that_is_no_address_stops_the_hub_at_start():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "hubsite.settings.base"}
    env["HUB_TRUSTED_PROXIES"] = "10.0.0.0/8, proxy.internal"
    check = [sys.executable, "-c", "import django; django.setup()"]
    result = subprocess.run(check, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "HUB_TRUSTED_PROXIES: 'proxy.internal' is not an IP address" in result.stderr


# A real web process, as served: the socket's address is what uvicorn hands over


def rated_web(tmp_path, **extra: str) -> LiveWeb:
    # A namespace of its own: rate counts of other tests from 127.0.0.1 are not this one's.
    return start_web(
        tmp_path / "media",
        tmp_path / "data",
        HUB_API_RATE_ANON="3/minute",
        HUB_NAMESPACE=f"hub-test-rates-{uuid.uuid4().hex[:8]}",
        **extra,
    )


@pytest.fixture
def plain_web(tmp_path) -> Iterator[LiveWeb]:
    web = rated_web(tmp_path)
    yield web
    stop_web(web)


@pytest.fixture
def proxied_web(tmp_path) -> Iterator[LiveWeb]:
    web = rated_web(tmp_path, HUB_TRUSTED_PROXIES="127.0.0.1")
    yield web
    stop_web(web)


def served_get(web: LiveWeb, forwarded_for: str) -> int:
    headers = {"X-Forwarded-For": forwarded_for}
    return httpx.get(f"{web.url}/api/v1/jobs/", headers=headers, timeout=30).status_code


@pytest.mark.production
@pytest.mark.django_db(transaction=True)
def test_a_served_hub_counts_anonymous_requests_by_the_socket(plain_web):
    answers = [served_get(plain_web, f"203.0.113.{n}") for n in range(4)]
    assert answers == [401, 401, 401, 429]


@pytest.mark.production
@pytest.mark.django_db(transaction=True)
def test_a_served_hub_behind_a_named_proxy_counts_the_clients_it_forwards(proxied_web):
    answers = [served_get(proxied_web, "198.51.100.9, 203.0.113.20") for _ in range(4)]
    assert answers == [401, 401, 401, 429]
    assert served_get(proxied_web, "203.0.113.21") == 401
