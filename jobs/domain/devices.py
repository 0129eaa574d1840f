"""Devices: the kinds of machine the workers run on, as each worker announces itself.

A device is a kind of machine, not one process: workers whose hardware reads the same get the
same readable name (``Intel Xeon Gold 6338 (32 cores)``, ``NVIDIA H100 80GB HBM3``) and so form
one device, whichever host they run on. An operator can name a machine's device outright
(``HUB_DEVICE_NAME``), to tell apart machines whose hardware reads the same or to give a
laptop a name people know. Attributes follow seed 000's client (``framework:onnx``,
``os:linux``, ``vendor:intel``, ``accelerator:cuda``, ``chipset:…``); a job can ask for a device
by name or for any device with an attribute.
"""

from __future__ import annotations

import functools
import os
import platform
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils.text import slugify

ANY = "any"
# key:value, both lower case: "accelerator:cuda", "chipset:intel-xeon-gold-6338".
ATTRIBUTE = re.compile(r"^[a-z][a-z0-9_-]{0,39}:[a-z0-9][a-z0-9._-]{0,79}$")
NVIDIA_GPUS = Path("/proc/driver/nvidia/gpus")  # one folder per GPU the driver sees
# Marks CPU brands carry that say nothing a person needs: "Intel(R) Xeon(R) Gold 6338 CPU @
# 2.00GHz" reads "Intel Xeon Gold 6338".
BRAND_NOISE = re.compile(r"\((?:R|TM|tm|r)\)|\bCPU\b|\bProcessor\b|@\s*[\d.]+\s*[GM]Hz|\s+-?Core\b")
VENDORS = {"genuineintel": "intel", "authenticamd": "amd", "arm": "arm", "apple": "apple"}


@dataclass(frozen=True)
class Announcement:
    """What a worker says about the machine it runs on, when it starts and with each heartbeat."""

    cpu: str  # the CPU's brand, as the processor gives it
    cores: int  # logical cores the worker may use
    memory_bytes: int
    os: str  # "linux", "darwin", "windows"
    os_release: str
    arch: str  # "x86_64", "aarch64"
    vendor: str  # "intel", "amd", "arm", … ("" when unknown)
    onnxruntime: str  # its version
    providers: list[str]  # ONNX Runtime's execution providers here, best first
    gpus: list[dict[str, Any]] = field(default_factory=list)  # {"name", "memory_bytes"} each
    name_override: str = ""  # HUB_DEVICE_NAME

    @property
    def name(self) -> str:
        return device_name(self)

    @property
    def attributes(self) -> list[str]:
        return device_attributes(self)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Announcement:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def cpu_label(brand: str) -> str:
    """ "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz" → "Intel Xeon Gold 6338"."""
    return " ".join(BRAND_NOISE.sub(" ", brand).split()) or "Unknown CPU"


def device_name(announced: Announcement) -> str:
    """The device's readable name: the operator's, else the GPU's (how many, if more than one),
    else the CPU's with its cores."""
    if announced.name_override:
        return announced.name_override
    if announced.gpus:
        names = sorted({g["name"] for g in announced.gpus})
        count = len(announced.gpus)
        return " + ".join(names) + (f" ×{count}" if count > 1 else "")
    cores = f"{announced.cores} core{'s' if announced.cores != 1 else ''}"
    return f"{cpu_label(announced.cpu)} ({cores})"


def _slug(text: str) -> str:
    return slugify(text)[:79].strip("-") or "unknown"


def device_attributes(announced: Announcement) -> list[str]:
    """Seed 000's attributes for this kind of machine, sorted."""
    attributes = {
        "framework:onnx",
        f"os:{_slug(announced.os)}",
        f"arch:{_slug(announced.arch)}",
        f"accelerator:{'cuda' if announced.gpus else 'cpu'}",
        f"chipset:{_slug(announced.gpus[0]['name'] if announced.gpus else cpu_label(announced.cpu))}",
    }
    if announced.vendor:
        attributes.add(f"vendor:{_slug(announced.vendor)}")
    if announced.gpus:
        attributes.add("vendor:nvidia")
    return sorted(attributes)


def device_slug(name: str) -> str:
    """The device's id in addresses and queue names: its name, lower case, dashes."""
    return _slug(name)


def attribute_queue_part(attribute: str) -> str:
    """ "accelerator:cuda" → "accelerator.cuda", for a queue name."""
    key, _, value = attribute.partition(":")
    return f"{key}.{value}"


def _cpu() -> tuple[str, str, str]:
    """(brand, vendor, arch) from py-cpuinfo; it reads /proc/cpuinfo, sysctl or CPUID, wherever
    the machine keeps them."""
    import cpuinfo

    info = cpuinfo.get_cpu_info()
    brand = str(info.get("brand_raw") or platform.processor() or "")
    vendor_raw = str(info.get("vendor_id_raw") or "").lower()
    vendor = VENDORS.get(vendor_raw, "")
    if not vendor:
        vendor = next((v for k, v in VENDORS.items() if k in brand.lower()), "")
    arch = platform.machine().lower() or str(info.get("arch") or "").lower()
    return brand, vendor, arch


def _memory() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0


def _gpus() -> list[dict[str, Any]]:
    """CUDA GPUs, asked of torch only where the NVIDIA driver sees one (torch takes seconds to
    import, and a CPU machine has nothing to tell)."""
    if not (NVIDIA_GPUS.is_dir() and any(NVIDIA_GPUS.iterdir())):
        return []
    try:
        import torch

        if not torch.cuda.is_available():
            return []
        return [
            {
                "name": torch.cuda.get_device_name(i),
                "memory_bytes": int(torch.cuda.get_device_properties(i).total_memory),
            }
            for i in range(torch.cuda.device_count())
        ]
    except Exception:  # a broken driver: the machine announces itself as what it can use
        return []


@functools.cache
def this_machine() -> Announcement:
    """What this process's machine is; asked once per process."""
    import onnxruntime

    brand, vendor, arch = _cpu()
    return Announcement(
        cpu=brand,
        cores=os.cpu_count() or 1,
        memory_bytes=_memory(),
        os=platform.system().lower() or "unknown",
        os_release=platform.platform(),
        arch=arch,
        vendor=vendor,
        onnxruntime=onnxruntime.__version__,
        providers=list(onnxruntime.get_available_providers()),
        gpus=_gpus(),
        name_override=str(settings.HUB_DEVICE_NAME or "").strip()[:200],
    )


def register(announced: Announcement) -> Any:
    """The Device of this announcement, made the first time a worker of it is seen, its
    attributes and specs brought up to date otherwise (one row per name, whichever worker
    writes first)."""
    from django.db import IntegrityError, transaction
    from django.utils import timezone

    from jobs.models import Device

    now = timezone.now()
    fields = {
        "attributes": announced.attributes,
        "specs": announced.as_dict(),
        "last_seen_at": now,
    }
    name = announced.name[:200]
    if Device.objects.filter(name=name).update(**fields):
        return Device.objects.get(name=name)
    slug = device_slug(name)
    taken = set(
        Device.objects.filter(slug__startswith=slug).values_list("slug", flat=True)
    )  # another name that reads the same in an address ("A/B" and "A B")
    unique = next(
        s for n in range(1, 1000) if (s := slug if n == 1 else f"{slug}-{n}") not in taken
    )
    try:
        with transaction.atomic():
            return Device.objects.create(name=name, slug=unique, first_seen_at=now, **fields)
    except IntegrityError:  # a worker of the same device registered it a moment ago
        Device.objects.filter(name=name).update(**fields)
        return Device.objects.get(name=name)


def this_device_id() -> int:
    """The id of the Device this process's machine belongs to. Asked at each claim (one
    UPDATE and one SELECT: a claim starts a job), so a device row an operator deleted is made
    again and its last_seen_at stays current."""
    return int(register(this_machine()).pk)


def worker_queue_names(default: str, announced: Announcement) -> list[str]:
    """The queues only workers of this device consume: its own, and one per attribute."""
    return [
        f"{default}.device.{device_slug(announced.name)}",
        *(f"{default}.attr.{attribute_queue_part(a)}" for a in announced.attributes),
    ]
