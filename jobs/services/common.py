"""What every write checks the same way: names, sizes, time limits, the models a person may use."""

from __future__ import annotations

from collections.abc import Sequence

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError

from jobs.domain import devices
from jobs.domain.selectors import models_visible_to
from jobs.models import Device, Hardware, MLModel

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


def clean_where(device: str | None) -> str:
    """An external run's own words for where it runs (free text: the hub runs nothing there)."""
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


def resolve_device(
    device: Device | str | None, hardware: str = Hardware.ANY
) -> tuple[Device | None, str]:
    """What a job asks to run on, as people write it: a device (its name or id), an attribute
    any device may have (``accelerator:cuda``), or nothing / "any". (device, attribute); a name
    or attribute no worker has announced is refused, naming those that exist."""
    if isinstance(device, Device):
        found: Device | None = device
        attribute = ""
    else:
        text = (device or "").strip()
        if not text or text.lower() == devices.ANY:
            return None, ""
        if len(text) > 200 or any(ord(c) < 32 for c in text):
            raise ValidationError({"device": "device is a device's name or id, or an attribute."})
        found = (
            Device.objects.filter(name__iexact=text).first()
            or Device.objects.filter(slug=text.lower()).first()
        )
        attribute = "" if found is not None else text
        if found is None:
            known = list(Device.objects.order_by("name"))
            if not devices.ATTRIBUTE.match(text):
                names = ", ".join(f"{d.name!r}" for d in known) or "none yet (no worker has run)"
                raise ValidationError(
                    {
                        "device": f"No device {text!r}: no worker has announced it. Devices: "
                        f"{names}; or ask for an attribute (such as accelerator:cuda) or 'any'."
                    }
                )
            if not any(attribute in d.attributes for d in known):
                every = sorted({a for d in known for a in d.attributes})
                raise ValidationError(
                    {
                        "device": f"No device has the attribute {attribute!r}. Attributes of "
                        f"this hub's devices: {', '.join(every) or 'none yet (no worker has run)'}."
                    }
                )
    if hardware == Hardware.GPU:
        gpu = "accelerator:cuda"
        if found is not None and gpu not in found.attributes:
            raise ValidationError(
                {"hardware": f"hardware 'gpu' asks for a GPU, and device {found.name} has none."}
            )
        if attribute.startswith("accelerator:") and attribute != gpu:
            raise ValidationError(
                {"hardware": f"hardware 'gpu' asks for a GPU, and {attribute} asks for none."}
            )
    return found, attribute
