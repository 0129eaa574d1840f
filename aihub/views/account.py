"""Who is asking, signing in for a token, the devices and the frameworks."""

from __future__ import annotations

import json
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from django.conf import settings
from django.contrib.auth import authenticate, get_user_model
from django.db.models import QuerySet
from django.http import HttpResponse, JsonResponse
from packaging.version import InvalidVersion, Version
from qai_hub import public_api_pb2 as pb
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request

from aihub.views.base import AiHubView, proto
from aihub.wire import device_os, device_pb, user_pb
from audit import services as audit
from audit.models import Action
from hubsite.api.throttles import AnonymousRateLimit
from jobs.domain.device_selectors import devices_listed
from jobs.models import Device


class CurrentUser(AiHubView):
    def get(self, request: Request) -> HttpResponse:
        return proto(user_pb(self.person(request)))


class Login(AiHubView):
    """seed 000's ``qai-hub configure --email … --password …``: the hub's account (its email
    address or user name) and password give the account's API token. Wrong ones count against
    the sign-in lockout as the sign-in page's do."""

    authentication_classes: list[Any] = []
    permission_classes = [AnonymousRateLimit]

    def post(self, request: Request) -> HttpResponse:
        try:
            given = json.loads(request.body or b"{}")
        except ValueError:
            given = None
        if not isinstance(given, dict):
            raise ValidationError('Send {"email": …, "password": …} as JSON.')
        if not settings.HUB_LOCAL_LOGIN:
            raise ValidationError(
                f"This hub signs people in through {settings.HUB_OIDC_NAME}, not with passwords: "
                "sign in on its web page, copy your API token from the account page, and run "
                "qai-hub configure --api_token <token>."
            )
        login, password = str(given.get("email") or ""), str(given.get("password") or "")
        people = get_user_model().objects.filter(is_active=True)
        account = people.filter(email__iexact=login).order_by("pk").first() if login else None
        username = account.get_username() if account else login
        user = authenticate(request._request, username=username, password=password)
        if user is None:
            raise ValidationError("Wrong email (or user name) or password.")
        token, made = Token.objects.get_or_create(user=user)
        audit.record(
            Action.TOKEN_CHANGED if made else Action.SIGN_IN,
            actor=user,
            target=user,
            how="qai-hub configure (password)",
        )
        return JsonResponse({"key": token.key})


def _version(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


def os_matches(device_version: str, wanted: str) -> bool:
    """seed 000's OS filter: a version (this one, or one it begins: "6" matches "6.1.0") or a
    right-open interval "[6.1,7)" (either side may be empty)."""
    if not wanted:
        return True
    mine = _version(device_version)
    if wanted.startswith("["):
        low, _, high = wanted[1:].removesuffix(")").partition(",")
        low_v, high_v = _version(low) if low else None, _version(high) if high else None
        return (
            mine is not None
            and (low_v is None or mine >= low_v)
            and (high_v is None or mine < high_v)
        )
    return device_version == wanted or device_version.startswith(wanted + ".")


def matching(name: str, os: str, attributes: list[str]) -> list[Device]:
    devices: QuerySet[Device] = devices_listed(attributes=attributes)
    if name:
        devices = devices.filter(name__iexact=name) | devices.filter(slug=name.lower())
    return [d for d in devices if os_matches(device_os(d), os)]


def best_first(device: Device) -> tuple[bool, float]:
    """A device with workers online first, then the one seen last (devices_listed counts)."""
    online = getattr(device, "workers_online", 0)
    return not online, -device.last_seen_at.timestamp()


def offered() -> str:
    """The hub's devices, for a refusal that names what it has instead."""
    shown = [f"{d.name} ({', '.join(d.attributes)})" for d in Device.objects.order_by("name")]
    return "; ".join(shown) or "none yet (no worker has started)"


class Devices(AiHubView):
    """seed 000's ``get_devices(name, os, attributes)``; with ``select`` (how the client picks
    the device of a job) the one device a job would run on, or the hub's refusal naming the
    devices it has: its machines run ONNX Runtime, not Android phones."""

    def get(self, request: Request) -> HttpResponse:
        name = request.query_params.get("name", "").strip()
        os = request.query_params.get("os", "").strip()
        attributes = [a.strip() for a in request.query_params.getlist("attributes") if a.strip()]
        select = request.query_params.get("select", "").lower() in ("true", "1")
        found = matching(name, os, attributes)
        if select:
            found.sort(key=best_first)
            if not found:
                parts = [f"name {name!r}" if name else "", f"os {os!r}" if os else ""]
                parts += [f"attribute {a!r}" for a in attributes]
                asked = ", ".join(part for part in parts if part)
                raise ValidationError(
                    f"This hub has no device with {asked or 'those properties'}. Its devices "
                    f"run ONNX models with ONNX Runtime: {offered()}."
                )
            found = found[:1]
        return proto(
            pb.DeviceList(devices=[device_pb(d) for d in found], total_query_count=len(found))
        )


@cache
def _onnxruntime() -> str:
    try:
        return version("onnxruntime")
    except PackageNotFoundError:
        return ""


class Frameworks(AiHubView):
    def get(self, request: Request) -> HttpResponse:
        full = _onnxruntime()
        api = ".".join(full.split(".")[:2])
        return proto(
            pb.FrameworkList(
                frameworks=[
                    pb.Framework(
                        name="ONNX Runtime",
                        api_version=api,
                        api_tags=["default", "latest"],
                        full_version=full,
                    )
                ],
                total_query_count=1,
            )
        )


def onnxruntime_version() -> str:
    return _onnxruntime()


class Projects(AiHubView):
    """seed 000's projects (``project=`` on a call, or ``default_project``): the hub has none."""

    def _refuse(self, request: Request, **ids: str) -> HttpResponse:
        raise ValidationError(
            "This hub has no projects: leave project (and default_project) out; your jobs, "
            "models and datasets are yours and those shared with you."
        )

    get = post = patch = delete = _refuse
