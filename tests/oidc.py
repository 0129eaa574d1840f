"""The test OpenID Connect provider (tests/oidc_provider/) as a process on loopback, and what a
test needs to sign in through it as a browser would."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest

from tests.helpers import ROOT, free_port

CLIENT_ID, CLIENT_SECRET = "model-job-hub", "the hub's client secret"
PASSWORD = "provider-pass-1"


class Provider:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def issuer(self) -> str:
        return f"{self.url}/o"

    def start(self) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        (self.workdir / "key.pem").write_bytes(pem)
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.oidc_provider.settings",
            "OIDC_PROVIDER_DB": str(self.workdir / "provider.sqlite3"),
            "OIDC_PROVIDER_KEY": str(self.workdir / "key.pem"),
        }
        for name in ("DATABASE_URL", "REDIS_URL"):
            env.pop(name, None)
        log = (self.workdir / "provider.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "tests.oidc_provider.asgi:application",
             "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"],
            cwd=ROOT, env=env, stdout=log, stderr=log,
        )  # fmt: skip
        deadline = time.monotonic() + 90
        while True:
            assert self.process.poll() is None, (self.workdir / "provider.log").read_text()
            try:
                if httpx.get(self.discovery_url, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the test OIDC provider did not start"
            time.sleep(0.1)

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=20)

    def setup(self, hub_url: str, people: list[dict[str, Any]]) -> None:
        answer = httpx.post(
            f"{self.url}/test/setup",
            json={
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "redirect_uris": [f"{hub_url}/oidc/callback/"],
                "post_logout_redirect_uris": [f"{hub_url}/accounts/login/"],
                "people": [{"password": PASSWORD, **p} for p in people],
            },
        )
        answer.raise_for_status()

    def misbehave(self, mode: str) -> None:
        httpx.post(f"{self.url}/test/mode", json={"mode": mode}).raise_for_status()


@pytest.fixture(scope="session")
def oidc_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provider]:
    provider = Provider(tmp_path_factory.mktemp("oidc-provider"))
    provider.start()
    try:
        yield provider
    finally:
        provider.stop()


def sso_settings(provider: Provider) -> dict[str, Any]:
    """The settings of a hub that signs people in through ``provider``."""
    return {
        "HUB_OIDC_ISSUER": provider.issuer,
        "OIDC_RP_CLIENT_ID": CLIENT_ID,
        "OIDC_RP_CLIENT_SECRET": CLIENT_SECRET,
        "HUB_OIDC_NAME": "Test Provider",
        "HUB_OIDC_STAFF_GROUPS": ["hub-staff"],
        "HUB_OIDC_SUPERUSER_GROUPS": ["hub-admins"],
    }


@pytest.fixture
def sso(oidc_provider: Provider, settings: Any) -> Provider:
    """This test's hub signs people in through the test provider (passwords still work)."""
    from hubsite import sso as hub_sso

    for name, value in sso_settings(oidc_provider).items():
        setattr(settings, name, value)
    settings.AUTHENTICATION_BACKENDS = [
        *settings.AUTHENTICATION_BACKENDS,
        "hubsite.sso.HubOIDCBackend",
    ]
    hub_sso.discovery.forget()
    oidc_provider.misbehave("")
    yield oidc_provider
    oidc_provider.misbehave("")
    hub_sso.discovery.forget()


def sign_in_through(
    hub_url: str, username: str, *, next_page: str = "/jobs/"
) -> tuple[httpx.Client, httpx.Response]:
    """A browser's sign-in through the provider: the hub sends it to the provider, it signs in
    there, the provider sends it back with a code. The client keeps both sites' cookies."""
    browser = httpx.Client(follow_redirects=True, timeout=30)
    start = browser.get(f"{hub_url}/oidc/authenticate/", params={"next": next_page})
    if start.url.path == "/login/":  # the provider's own sign-in form
        start = browser.post(
            str(start.url),
            data={
                "username": username,
                "password": PASSWORD,
                "next": start.url.params.get("next", ""),
            },
        )
    return browser, start


__all__ = ["Provider", "oidc_provider", "sign_in_through", "sso", "sso_settings", "urljoin"]
