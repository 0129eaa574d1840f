"""What every write checks the same way: names, sizes, time limits, the models a person may use."""

from __future__ import annotations

from collections.abc import Sequence

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError

from jobs.domain.selectors import models_visible_to
from jobs.models import MLModel

NAME_MAX = 200
DEVICE_MAX = 100


def clean_name(name: str | None, default: str, field: str = "name") -> str:
    name = (name or "").strip() or default
    if len(name) > NAME_MAX:
        raise ValidationError(
            {field: f"{field} is {len(name)} characters long; at most {NAME_MAX}."}
        )
    if any(ord(c) < 32 for c in name):
        raise ValidationError({field: f"{field} must not contain control characters."})
    return name


def clean_device(device: str | None) -> str:
    device = (device or "").strip()
    if len(device) > DEVICE_MAX:
        raise ValidationError({"device": f"device is at most {DEVICE_MAX} characters long."})
    if any(ord(c) < 32 for c in device):
        raise ValidationError({"device": "device must not contain control characters."})
    return device


def check_upload_size(size: int, label: str) -> None:
    if size == 0:
        raise ValidationError({"file": f"{label} is empty."})
    if size > settings.HUB_MAX_UPLOAD_BYTES:
        raise ValidationError(
            {
                "file": f"{label} is {size} bytes; "
                f"the limit is {settings.HUB_MAX_UPLOAD_BYTES} bytes."
            }
        )


def check_time_limit(time_limit: int | None) -> None:
    """A job may ask for less time than the operator allows (HUB_JOB_TIME_LIMIT), never more."""
    cap = settings.HUB_JOB_TIME_LIMIT
    if time_limit is not None and not 10 <= time_limit <= cap:
        raise ValidationError(
            {
                "time_limit": f"time_limit must be between 10 and {cap} seconds "
                "(this hub's limit, HUB_JOB_TIME_LIMIT); it can only shorten it."
            }
        )


def require_models(owner: User, models: Sequence[MLModel], field: str) -> None:
    readable = set(
        models_visible_to(owner).filter(pk__in=[m.pk for m in models]).values_list("pk", flat=True)
    )
    for model in models:
        if model.pk not in readable:
            raise ValidationError({field: f"No model {model.public_id} that you may use."})
