"""Webhooks: where the hub may send one, how it is signed, and the POST itself.

A webhook URL is someone's input that makes the hub open a connection, so it must not reach the
hub's own network (its database, Redis, a cloud's metadata service at 169.254.169.254) unless the
operator says so (HUB_WEBHOOK_ALLOW_PRIVATE). The host is resolved and every address it resolves
to is checked, when the URL is saved and again before each POST (a name may resolve elsewhere by
then); the POST then connects to the address that was checked, not to a second lookup of the
name, so a name that answers differently the second time (DNS rebinding) gains nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
import ssl
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

import httpx
from django.conf import settings

MAX_URL_LENGTH = 2000
RESOLVE_SECONDS = 5.0
TIMEOUT = httpx.Timeout(5.0, connect=3.0)
SIGNATURE_HEADER = "X-Hub-Signature-256"
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class WebhookRefused(ValueError):
    """The URL may not be used; the message says why, in words for its owner."""


class WebhookFailed(Exception):
    """The receiver was reached, or not, and did not take the message. ``retry`` says whether
    trying again later may help (a timeout, a 5xx) or not (a 404, a redirect)."""

    def __init__(self, message: str, *, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry


@dataclass(frozen=True)
class Target:
    """A checked URL and the address the POST connects to."""

    url: httpx.URL
    address: IPAddress


def _lookup(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


# The resolver, replaceable in tests (a name that resolves to a public and a private address).
resolve: Callable[[str, int], list[str]] = _lookup
# Certificates are checked against the system's authorities (a test trusts its own).
tls_verify: ssl.SSLContext | bool = True

_resolver_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="webhook-dns")


def _addresses(host: str, port: int) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    # getaddrinfo has no timeout of its own: a hung resolver must not hang a request.
    future = _resolver_pool.submit(resolve, host, port)
    try:
        found = future.result(timeout=RESOLVE_SECONDS)
    except FutureTimeout:
        raise WebhookRefused(
            f"The host {host} did not resolve within {RESOLVE_SECONDS:g} s."
        ) from None
    except (OSError, ValueError) as error:  # ValueError: a name IDNA cannot encode
        raise WebhookRefused(f"The host {host} does not resolve ({error}).") from None
    if not found:
        raise WebhookRefused(f"The host {host} does not resolve.")
    # An IPv6 scope (fe80::1%eth0) is no part of the address.
    return [ipaddress.ip_address(address.split("%", 1)[0]) for address in found]


_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052's well-known prefix
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215's local-use prefix
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # RFC 4291's deprecated form


def _embedded_ipv4(address: ipaddress.IPv6Address) -> tuple[str, ipaddress.IPv4Address] | None:
    """The IPv4 address an IPv6 form carries and the form's name, or None. A router or relay
    turns such an address into a packet to that IPv4 (6to4 and Teredo relays, a NAT64 gateway,
    an ISATAP tunnel), so 2002:7f00:1:: reaches 127.0.0.1 as surely as 127.0.0.1 does."""
    last32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.ipv4_mapped is not None:
        return "an IPv4-mapped address", address.ipv4_mapped
    if address.sixtofour is not None:
        return "a 6to4 address", address.sixtofour
    if address.teredo is not None:
        return "a Teredo address", address.teredo[1]  # the client's (NOT of the last 32 bits)
    if address in _NAT64 or address in _NAT64_LOCAL:
        # The local-use prefix may be cut at any length up to /96; hubs that use it use /96.
        return "a NAT64 address", last32
    if address in _IPV4_COMPATIBLE and int(address) > 1:  # not :: nor ::1
        return "an IPv4-compatible address", last32
    # ISATAP: any /64 prefix, an interface identifier of [02]00:5efe then the IPv4.
    if (int(address) >> 32) & 0xFDFFFFFF == 0x00005EFE:
        return "an ISATAP address", last32
    return None


def _why_not_public(address: IPAddress) -> str | None:
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            form, ipv4 = embedded
            why = _why_not_public(ipv4)
            if why:
                return f"{form} of {ipv4}, {why}"
            if address in _NAT64:
                # DNS64 answers a public name on an IPv6-only network with 64:ff9b::<IPv4>:
                # the gateway's destination is the IPv4, which is public.
                return None
    for test, words in (
        ("is_unspecified", "an unspecified address"),
        ("is_multicast", "a multicast address"),
    ):
        if getattr(address, test):
            return words  # never a web server, whatever the operator allows
    if settings.HUB_WEBHOOK_ALLOW_PRIVATE:
        return None
    for test, words in (
        ("is_loopback", "a loopback address"),
        ("is_link_local", "a link-local address"),
        ("is_private", "a private address"),
        ("is_reserved", "a reserved address"),
    ):
        if getattr(address, test):
            return words
    return None if address.is_global else "not a public address"


def check_url(raw: str) -> Target:
    """The URL, checked: http(s) only (https unless the operator allows private addresses),
    and every address its host resolves to public. Raises WebhookRefused saying why."""
    text = raw.strip()
    if len(text) > MAX_URL_LENGTH:
        raise WebhookRefused(f"A webhook URL has at most {MAX_URL_LENGTH} characters.")
    try:
        url = httpx.URL(text)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise WebhookRefused("This is not a URL.") from None
    allowed = ("http", "https") if settings.HUB_WEBHOOK_ALLOW_PRIVATE else ("https",)
    if url.scheme not in allowed:
        raise WebhookRefused(
            "A webhook URL must start with "
            + (" or ".join(f"{s}://" for s in allowed))
            + (
                " (the hub sends signed job details; plain http is allowed only where the "
                "operator allows private addresses)."
                if url.scheme == "http"
                else "."
            )
        )
    if not url.host:
        raise WebhookRefused("A webhook URL needs a host name.")
    port = url.port or (443 if url.scheme == "https" else 80)
    addresses = _addresses(url.host, port)
    for address in addresses:
        why = _why_not_public(address)
        if why:
            raise WebhookRefused(
                f"{url.host} resolves to {address}, {why}: webhooks go only to public "
                "addresses on this hub (the operator's HUB_WEBHOOK_ALLOW_PRIVATE allows others)."
            )
    return Target(url=url, address=addresses[0])


def signature(secret: str, body: bytes) -> str:
    """What X-Hub-Signature-256 carries: the HMAC-SHA256 of the raw body with the person's
    secret, in hex, as GitHub's webhooks sign theirs (receivers' code for those works)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def post(target: Target, body: bytes, secret: str, headers: dict[str, str]) -> int:
    """POST ``body`` to the checked target: connect to its checked address, name the host in
    the Host header and in TLS (so its certificate is verified for that name), follow no
    redirect, read no more of the answer than its status. Returns the status (2xx)."""
    host = target.url.raw_host.decode("ascii")  # an international name in its ASCII form
    direct = target.url.copy_with(host=str(target.address))
    all_headers = {
        "Host": target.url.netloc.decode("ascii"),
        "Content-Type": "application/json",
        "User-Agent": "ModelJobHub-Webhook/1",
        SIGNATURE_HEADER: signature(secret, body),
        **headers,
    }
    try:
        with (
            httpx.Client(
                timeout=TIMEOUT, follow_redirects=False, trust_env=False, verify=tls_verify
            ) as client,
            client.stream(
                "POST",
                direct,
                content=body,
                headers=all_headers,
                extensions={"sni_hostname": host},
            ) as response,
        ):
            status = response.status_code
    except httpx.TimeoutException:
        raise WebhookFailed(f"{host} did not answer in time.", retry=True) from None
    except httpx.HTTPError as error:
        raise WebhookFailed(f"Could not reach {host}: {error}", retry=True) from None
    if 200 <= status < 300:
        return status
    if 300 <= status < 400:
        raise WebhookFailed(
            f"{host} answered {status}, a redirect; webhooks follow none: give the final URL.",
            retry=False,
        )
    # A busy or broken receiver may recover; one that refuses the request will not.
    retry = status >= 500 or status in (408, 425, 429)
    raise WebhookFailed(f"{host} answered HTTP {status}.", retry=retry)
