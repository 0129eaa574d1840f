"""Single sign-on through an OpenID Connect provider: a real provider process on loopback
(tests/oidc_provider/, django-oauth-toolkit) and the hub on a real HTTP server. Discovery, the
code flow with PKCE, the ID token's signature, audience and expiry, and verified email are each
checked; accounts are matched by verified email, groups make staff, invitations are accepted by
signing in, and sign-out ends the session here and at the provider."""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from django.contrib.auth.models import User

from tests import factories
from tests.oidc import Provider, sign_in_through

pytestmark = pytest.mark.django_db(transaction=True)

CAROL = {"username": "carol", "email": "carol@example.com", "given_name": "Carol"}


def _signed_in_as(browser: httpx.Client, hub_url: str) -> str | None:
    """Whom the hub's session in ``browser`` belongs to (None: nobody)."""
    page = browser.get(f"{hub_url}/account/token/", follow_redirects=False)
    if page.status_code != 200:
        return None
    return User.objects.get(auth_token__key=_token_on(page.text)).username


def _token_on(page: str) -> str:
    from rest_framework.authtoken.models import Token

    return next(t.key for t in Token.objects.all() if t.key in page)


def _form_token(page: str) -> str:
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert found, "no form on the page"
    return found.group(1)


def test_a_new_person_signs_in_with_the_code_flow_and_pkce_and_gets_an_account(
    live_server: Any, sso: Provider
):
    sso.setup(live_server.url, [CAROL])
    first = httpx.get(f"{live_server.url}/oidc/authenticate/", follow_redirects=False)
    asked = parse_qs(urlsplit(first.headers["location"]).query)
    assert first.headers["location"].startswith(f"{sso.issuer}/authorize/")  # from discovery
    assert asked["code_challenge_method"] == ["S256"] and len(asked["code_challenge"][0]) >= 43
    assert asked["client_id"] == ["model-job-hub"] and "nonce" in asked

    browser, landed = sign_in_through(live_server.url, "carol")
    assert landed.status_code == 200 and landed.url.path == "/jobs/"
    carol = User.objects.get(email="carol@example.com")
    assert (carol.username, carol.first_name) == ("carol", "Carol")
    assert not carol.has_usable_password()  # signs in through the provider only
    assert not carol.is_staff
    assert _signed_in_as(browser, live_server.url) == "carol"


def test_an_account_is_matched_by_its_verified_email(live_server: Any, sso: Provider, alice):
    sso.setup(live_server.url, [{"username": "alice-at-idp", "email": alice.email.upper()}])
    browser, landed = sign_in_through(live_server.url, "alice-at-idp")
    assert landed.url.path == "/jobs/"
    assert _signed_in_as(browser, live_server.url) == "alice"
    assert User.objects.filter(email__iexact=alice.email).count() == 1


def test_an_unverified_email_signs_nobody_in_not_even_the_account_with_that_address(
    live_server: Any, sso: Provider, alice
):
    sso.setup(
        live_server.url,
        [{"username": "mallory", "email": alice.email, "email_verified": False}],
    )
    browser, landed = sign_in_through(live_server.url, "mallory")
    assert landed.status_code == 403
    assert f"the provider has not verified {alice.email}" in landed.text
    assert _signed_in_as(browser, live_server.url) is None
    assert User.objects.count() == 1  # alice only: nothing was made either


@pytest.mark.parametrize(
    ("mode", "words"),
    [
        ("wrong_audience", "the provider's ID token was issued to another application"),
        ("expired", "the provider's ID token has expired"),
        ("bad_signature", "the ID token's signature is not the provider's"),
    ],
)
def test_an_id_token_that_does_not_check_out_is_refused_in_words(
    live_server: Any, sso: Provider, mode: str, words: str
):
    sso.setup(live_server.url, [CAROL])
    sso.misbehave(mode)
    browser, landed = sign_in_through(live_server.url, "carol")
    assert landed.status_code == 403
    assert f"Sign-in through Test Provider failed: {words}." in html.unescape(landed.text)
    assert _signed_in_as(browser, live_server.url) is None
    assert not User.objects.filter(email="carol@example.com").exists()


def test_groups_at_the_provider_make_staff_and_administrators_at_every_sign_in(
    live_server: Any, sso: Provider
):
    sso.setup(live_server.url, [{**CAROL, "groups": ["hub-admins"]}])
    sign_in_through(live_server.url, "carol")
    carol = User.objects.get(email="carol@example.com")
    assert carol.is_staff and carol.is_superuser
    sso.setup(live_server.url, [{**CAROL, "groups": ["hub-staff"]}])
    sign_in_through(live_server.url, "carol")
    carol.refresh_from_db()
    assert carol.is_staff and not carol.is_superuser
    sso.setup(live_server.url, [{**CAROL, "groups": []}])
    browser, _ = sign_in_through(live_server.url, "carol", next_page="/admin/")
    carol.refresh_from_db()
    assert not carol.is_staff
    assert browser.get(f"{live_server.url}/admin/").status_code == 403


def test_a_required_group_keeps_everyone_else_out(live_server: Any, sso: Provider, settings):
    settings.HUB_OIDC_REQUIRED_GROUPS = ["ml-team"]
    sso.setup(
        live_server.url,
        [CAROL, {"username": "dan", "email": "dan@example.com", "groups": ["ml-team"]}],
    )
    _, refused = sign_in_through(live_server.url, "carol")
    assert refused.status_code == 403
    assert "not in a group allowed to use this hub" in html.unescape(refused.text)
    _, welcomed = sign_in_through(live_server.url, "dan")
    assert welcomed.url.path == "/jobs/"
    # Dan leaves the team at the provider: his next sign-in is refused and his account (and so
    # his API token) stops working here too.
    dan = User.objects.get(email="dan@example.com")
    token = factories.api(dan)
    assert token.get("/api/v1/jobs/").status_code == 200
    sso.setup(live_server.url, [{"username": "dan", "email": "dan@example.com", "groups": []}])
    _, refused = sign_in_through(live_server.url, "dan")
    assert refused.status_code == 403
    dan.refresh_from_db()
    assert not dan.is_active
    assert token.get("/api/v1/jobs/").status_code == 401


def test_an_invitation_to_an_address_is_accepted_by_signing_in_with_it(
    live_server: Any, sso: Provider, alice
):
    from sharing.services import sharing_modify

    job = factories.ready_job(factories.link_job(alice))
    sharing_modify(target=job, actor=alice, add_emails=["carol@example.com"])
    sso.setup(live_server.url, [CAROL])
    browser, _ = sign_in_through(live_server.url, "carol")
    page = browser.get(f"{live_server.url}/jobs/{job.public_id}/")
    assert page.status_code == 200 and job.name in page.text


def test_signing_out_ends_the_hubs_session_and_the_providers(live_server: Any, sso: Provider):
    sso.setup(live_server.url, [CAROL])
    browser, _ = sign_in_through(live_server.url, "carol")
    page = browser.get(f"{live_server.url}/jobs/")
    out = browser.post(
        f"{live_server.url}/accounts/logout/",
        data={"csrfmiddlewaretoken": _form_token(page.text)},
        follow_redirects=False,
    )
    assert out.status_code == 302
    assert out.headers["location"].startswith(f"{sso.issuer}/logout/")
    assert "id_token_hint=" in out.headers["location"]
    assert _signed_in_as(browser, live_server.url) is None
    back = browser.get(out.headers["location"])  # the provider ends its session, sends us back
    assert back.url.path == "/accounts/login/"
    again = browser.get(f"{live_server.url}/oidc/authenticate/")
    assert again.url.path == "/login/"  # the provider asks for the password again


def test_with_local_passwords_off_only_the_provider_signs_people_in(
    live_server: Any, sso: Provider, settings, alice, client
):
    settings.HUB_LOCAL_LOGIN = False
    settings.AUTHENTICATION_BACKENDS = [
        b for b in settings.AUTHENTICATION_BACKENDS if not b.endswith("ModelBackend")
    ]
    page = httpx.get(f"{live_server.url}/accounts/login/")
    assert 'id="sso-sign-in"' in page.text and 'name="password"' not in page.text
    refused = client.post("/accounts/login/", {"username": "alice", "password": factories.PASSWORD})
    assert refused.status_code == 403 and "passwords are not taken" in refused.text
    qai_hub_login = client.post(
        "/aihub/api/v1/users/auth/login/",
        {"email": alice.email, "password": factories.PASSWORD},
        content_type="application/json",
    )
    assert qai_hub_login.status_code == 400
    assert "not with passwords" in qai_hub_login.json()["detail"]
    sso.setup(live_server.url, [{"username": "alice-idp", "email": alice.email}])
    browser, landed = sign_in_through(live_server.url, "alice-idp")
    assert landed.url.path == "/jobs/" and _signed_in_as(browser, live_server.url) == "alice"


def test_with_local_passwords_off_an_invitation_asks_for_the_provider_not_a_password(
    live_server: Any, sso: Provider, settings, alice
):
    from sharing.models import Invitation
    from sharing.services import invitation_token, sharing_modify

    settings.HUB_LOCAL_LOGIN = False
    job = factories.ready_job(factories.link_job(alice))
    sharing_modify(target=job, actor=alice, add_emails=["carol@example.com"])
    link = f"{live_server.url}/invitations/{invitation_token(Invitation.objects.get())}/"
    sso.setup(live_server.url, [CAROL])
    browser = httpx.Client(follow_redirects=True)
    page = browser.get(link)
    assert page.url.path == "/accounts/login/" and 'id="sso-sign-in"' in page.text
    assert 'name="password1"' not in page.text
    browser, landed = sign_in_through(live_server.url, "carol", next_page=urlsplit(link).path)
    assert landed.url.path == f"/jobs/{job.public_id}/"


def test_a_provider_that_does_not_answer_is_said_and_passwords_still_work(
    live_server: Any, sso: Provider, settings, alice
):
    settings.HUB_OIDC_ISSUER = "http://127.0.0.1:9/o"  # nothing listens there
    answer = httpx.get(f"{live_server.url}/oidc/authenticate/")
    assert answer.status_code == 503
    assert "the sign-in provider does not answer" in answer.text
    browser = httpx.Client(follow_redirects=True)
    form = browser.get(f"{live_server.url}/accounts/login/")
    signed = browser.post(
        f"{live_server.url}/accounts/login/",
        data={
            "username": "alice",
            "password": factories.PASSWORD,
            "csrfmiddlewaretoken": _form_token(form.text),
        },
    )
    assert signed.url.path == "/jobs/"


def test_the_admin_signs_in_through_the_hubs_page_with_its_provider_button(
    live_server: Any, sso: Provider
):
    first = httpx.get(f"{live_server.url}/admin/login/?next=/admin/", follow_redirects=False)
    assert (first.status_code, first.headers["location"]) == (
        302,
        "/accounts/login/?next=%2Fadmin%2F",
    )
    page = httpx.get(live_server.url + first.headers["location"])
    assert 'id="sso-sign-in"' in page.text and "next=/admin/" in page.text
