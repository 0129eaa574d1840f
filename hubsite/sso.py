"""Single sign-on: people sign in through the team's OpenID Connect provider (the code flow with
PKCE), beside the hub's own passwords or instead of them (``HUB_LOCAL_LOGIN=off``).

Built on mozilla-django-oidc, a small relying-party library that plugs into Django's own
authentication backends and session, so the hub's sign-in page, lockout (django-axes), session
and sign-out stay as they are (django-allauth would bring its own account model and flows). What
it leaves to the site is added here:

* discovery: the provider's endpoints and keys are read from ``<issuer>/.well-known/
  openid-configuration`` (cached), whose ``issuer`` must be the one configured;
* the ID token's signature (the provider's published keys), audience (this hub's client id),
  issuer, expiry and nonce are all checked; the library checks only the signature and nonce;
* an account is matched by *verified* email only: an address the provider does not vouch for
  signs nobody in, so nobody takes over an account, or an invitation, by typing its address;
* groups (``HUB_OIDC_GROUPS_CLAIM``) make staff and administrators, and may be required to sign
  in at all; they are applied at every sign-in, so removing someone from a group at the provider
  takes effect the next time they sign in;
* invitations sent to the address are accepted by signing in with it;
* every refusal is said on the sign-in page in words (never a 500), and logged for operators.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any
from urllib.parse import urlencode

import jwt
import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core.exceptions import ImproperlyConfigured, SuspiciousOperation
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.generic import View
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.views import (
    OIDCAuthenticationCallbackView,
    OIDCAuthenticationRequestView,
)

logger = logging.getLogger(__name__)

DISCOVERY_SECONDS = 3600  # the provider's configuration is read again after this long
KEYS = {
    "OIDC_OP_AUTHORIZATION_ENDPOINT": "authorization_endpoint",
    "OIDC_OP_TOKEN_ENDPOINT": "token_endpoint",
    "OIDC_OP_USER_ENDPOINT": "userinfo_endpoint",
    "OIDC_OP_JWKS_ENDPOINT": "jwks_uri",
}
REFUSAL = "sso_refusal"  # the request attribute that carries why a sign-in was refused


def enabled() -> bool:
    return bool(settings.HUB_OIDC_ISSUER)


class Discovery:
    """The provider's configuration, fetched on first use and kept for DISCOVERY_SECONDS."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._found: dict[str, Any] | None = None
        self._at = 0.0

    def get(self) -> dict[str, Any]:
        with self._lock:
            if self._found is None or time.monotonic() - self._at > DISCOVERY_SECONDS:
                self._found = self._fetch()
                self._at = time.monotonic()
            return self._found

    def forget(self) -> None:
        with self._lock:
            self._found = None

    def _fetch(self) -> dict[str, Any]:
        issuer = settings.HUB_OIDC_ISSUER.rstrip("/")
        url = f"{issuer}/.well-known/openid-configuration"
        answer = requests.get(url, timeout=settings.HUB_OIDC_TIMEOUT_SECONDS)
        answer.raise_for_status()
        found = dict(answer.json())
        if str(found.get("issuer", "")).rstrip("/") != issuer:
            raise ImproperlyConfigured(
                f"The provider at {url} says its issuer is {found.get('issuer')!r}, not "
                f"HUB_OIDC_ISSUER={settings.HUB_OIDC_ISSUER!r}."
            )
        missing = [key for key in KEYS.values() if not found.get(key)]
        if missing:
            raise ImproperlyConfigured(f"The provider's configuration at {url} lacks {missing}.")
        return found


discovery = Discovery()


def _setting(attr: str, *default: Any) -> Any:
    """mozilla-django-oidc's settings, the endpoints from discovery."""
    if attr in KEYS:
        return discovery.get()[KEYS[attr]]
    from mozilla_django_oidc.utils import import_from_settings

    return import_from_settings(attr, *default)


class SignInRefused(Exception):
    """Why a sign-in through the provider was refused, in words for the person."""


class HubOIDCBackend(OIDCAuthenticationBackend):
    """mozilla-django-oidc's backend, with discovery, every ID token check, verified email and
    groups."""

    get_settings = staticmethod(_setting)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Django makes a backend for every sign-in and every request of a signed-in person: the
        # provider is asked for its endpoints only when someone signs in through it, so a
        # password sign-in never waits on it (or fails with it).
        self.UserModel = get_user_model()

    def _configure(self) -> None:
        for attr in KEYS:
            setattr(self, attr, _setting(attr))
        self.OIDC_RP_CLIENT_ID = settings.OIDC_RP_CLIENT_ID
        self.OIDC_RP_CLIENT_SECRET = settings.OIDC_RP_CLIENT_SECRET
        self.OIDC_RP_SIGN_ALGO = settings.OIDC_RP_SIGN_ALGO
        self.OIDC_RP_IDP_SIGN_KEY = None

    def authenticate(self, request: HttpRequest | None, **kwargs: Any) -> User | None:
        if request is None or not enabled() or "code" not in request.GET:
            return None
        try:
            self._configure()
            return super().authenticate(request, **kwargs)
        except SignInRefused as refused:
            setattr(request, REFUSAL, str(refused))
        except SuspiciousOperation as error:  # the library's own checks (state, nonce, keys)
            setattr(request, REFUSAL, f"the provider's answer did not check out ({error})")
        except (requests.RequestException, ImproperlyConfigured) as error:
            setattr(request, REFUSAL, f"the provider did not answer ({type(error).__name__})")
        logger.warning("Single sign-on refused: %s", getattr(request, REFUSAL))
        return None

    def get_payload_data(self, token: Any, key: Any) -> dict[str, Any]:
        """The ID token, checked whole: signature (the provider's key, its algorithm as
        configured), audience, issuer, expiry and issue time."""
        try:
            return dict(
                jwt.decode(
                    token,
                    key,
                    algorithms=[self.OIDC_RP_SIGN_ALGO],
                    audience=self.OIDC_RP_CLIENT_ID,
                    issuer=discovery.get()["issuer"],
                    options={"require": ["exp", "iat", "aud", "iss", "sub"]},
                    leeway=30,
                )
            )
        except jwt.InvalidAudienceError:
            raise SignInRefused(
                "the provider's ID token was issued to another application"
            ) from None
        except jwt.ExpiredSignatureError:
            raise SignInRefused("the provider's ID token has expired") from None
        except jwt.InvalidIssuerError:
            raise SignInRefused("the ID token was issued by another provider") from None
        except jwt.InvalidSignatureError:
            raise SignInRefused("the ID token's signature is not the provider's") from None
        except jwt.PyJWTError as error:
            raise SignInRefused(f"the provider's ID token is not valid ({error})") from None

    def verify_claims(self, claims: dict[str, Any]) -> bool:
        email = str(claims.get("email") or "")
        if not email:
            raise SignInRefused("the provider gave no email address for this account")
        if claims.get("email_verified") is not True:
            raise SignInRefused(
                f"the provider has not verified {email}; only a verified address signs in"
            )
        required = settings.HUB_OIDC_REQUIRED_GROUPS
        if required and not set(required) & _groups(claims):
            # Left the team at the provider: the hub's account stops too (its API token with it);
            # an operator reactivates it in the admin if that was a mistake.
            left = self.filter_users_by_claims(claims).filter(is_active=True)
            for person in left:
                person.is_active = False
                person.save(update_fields=["is_active"])
                logger.warning(
                    "Single sign-on: %s is no longer in %s; deactivated", email, required
                )
            raise SignInRefused(
                "your account at the provider is not in a group allowed to use this hub"
            )
        return True

    def filter_users_by_claims(self, claims: dict[str, Any]) -> Any:
        return self.UserModel.objects.filter(email__iexact=str(claims["email"]).strip())

    def create_user(self, claims: dict[str, Any]) -> User:
        email = str(claims["email"]).strip().lower()
        user = self.UserModel.objects.create_user(
            _free_username(claims, email), email=email, password=None
        )
        user.set_unusable_password()  # signs in through the provider only
        user.save(update_fields=["password"])
        logger.info("Single sign-on made the account %s for %s", user.username, email)
        return self._apply(user, claims)

    def update_user(self, user: User, claims: dict[str, Any]) -> User:
        if not user.is_active:
            raise SignInRefused("this hub's account for the address is deactivated")
        return self._apply(user, claims)

    def _apply(self, user: User, claims: dict[str, Any]) -> User:
        """Names and groups from the provider, and the invitations waiting for the address."""
        groups = _groups(claims)
        changed: list[str] = []
        for field, claim in (("first_name", "given_name"), ("last_name", "family_name")):
            value = str(claims.get(claim) or "")[:150]
            if value and getattr(user, field) != value:
                setattr(user, field, value)
                changed.append(field)
        if settings.HUB_OIDC_GROUPS_CLAIM in claims:  # only where the provider sends groups
            staff = bool(groups & set(settings.HUB_OIDC_STAFF_GROUPS)) or bool(
                groups & set(settings.HUB_OIDC_SUPERUSER_GROUPS)
            )
            superuser = bool(groups & set(settings.HUB_OIDC_SUPERUSER_GROUPS))
            for flag, on in (("is_staff", staff), ("is_superuser", superuser)):
                if getattr(user, flag) != on:
                    setattr(user, flag, on)
                    changed.append(flag)
        if changed:
            user.save(update_fields=changed)
        _accept_invitations(user)
        return user


def _groups(claims: dict[str, Any]) -> set[str]:
    raw = claims.get(settings.HUB_OIDC_GROUPS_CLAIM) or []
    return {str(g) for g in (raw if isinstance(raw, list) else [raw])}


def _free_username(claims: dict[str, Any], email: str) -> str:
    """The provider's preferred user name, else the address's local part; made unique."""
    wanted = str(claims.get("preferred_username") or email.split("@")[0])
    base = "".join(c for c in wanted if c.isalnum() or c in "._-")[:140] or "user"
    name, n = base, 1
    while User.objects.filter(username__iexact=name).exists():
        n += 1
        name = f"{base}{n}"
    return name


def _accept_invitations(user: User) -> None:
    from django.core.exceptions import ValidationError

    from sharing.models import Invitation
    from sharing.services import invitation_accept

    for invitation in Invitation.objects.filter(email__iexact=user.email):
        if invitation.pending:
            try:
                invitation_accept(invitation=invitation, user=user)
            except ValidationError:
                continue  # withdrawn or used meanwhile


class SignIn(OIDCAuthenticationRequestView):
    get_settings = staticmethod(_setting)

    def __init__(self, **kwargs: Any) -> None:
        View.__init__(self, **kwargs)  # the endpoint is read when asked for (get), not here

    def get(self, request: HttpRequest) -> HttpResponse:
        if not enabled():
            return _refused(request, "single sign-on is not set up on this hub", 404)
        try:
            self.OIDC_OP_AUTH_ENDPOINT = _setting("OIDC_OP_AUTHORIZATION_ENDPOINT")
            self.OIDC_RP_CLIENT_ID = settings.OIDC_RP_CLIENT_ID
            return super().get(request)
        except (requests.RequestException, ImproperlyConfigured) as error:
            logger.warning("Single sign-on: the provider's configuration: %s", error)
            return _refused(request, "the sign-in provider does not answer; try again shortly", 503)


class Callback(OIDCAuthenticationCallbackView):
    get_settings = staticmethod(_setting)

    def get(self, request: HttpRequest) -> HttpResponse:
        try:
            return super().get(request)
        except SuspiciousOperation:  # a callback whose state this browser never sent
            return _refused(request, "this sign-in was not started here, or was already used", 400)

    def login_failure(self) -> HttpResponse:
        request = self.request
        why = getattr(request, REFUSAL, None)
        if why is None and request.GET.get("error"):
            why = f"the provider said {request.GET.get('error')!r}"
        return _refused(request, why or "the provider's answer was incomplete", 403)


def _refused(request: HttpRequest, why: str, status: int) -> HttpResponse:
    return render(
        request,
        "registration/login.html",
        {"sso_error": f"Sign-in through {settings.HUB_OIDC_NAME} failed: {why}."},
        status=status,
    )


def end_session_url(request: HttpRequest, id_token: str | None) -> str | None:
    """Where to send someone who signed out, to end their session at the provider too (when it
    offers RP-initiated logout); back to the hub's sign-in page after."""
    if not enabled() or not id_token:
        return None
    try:
        endpoint = discovery.get().get("end_session_endpoint")
    except (requests.RequestException, ImproperlyConfigured):
        return None
    if not endpoint:
        return None
    back = request.build_absolute_uri(reverse("login"))
    query = urlencode({"id_token_hint": id_token, "post_logout_redirect_uri": back})
    return f"{endpoint}?{query}"
