"""Devices: the kinds of machine the workers run on (jobs/domain/devices.py says how a worker
describes its machine and how that becomes a name and attributes)."""

from __future__ import annotations

from django.db import models
from django.urls import reverse


class Device(models.Model):
    """One kind of machine: every worker that announces the same name belongs to it."""

    name = models.CharField(max_length=200, unique=True)
    slug = models.SlugField(max_length=100, unique=True)  # its id in addresses and queue names
    attributes = models.JSONField(default=list)  # seed 000's: ["accelerator:cuda", …], sorted
    # The newest announcement of a worker of this device (jobs.domain.devices.Announcement).
    specs = models.JSONField(default=dict)
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("jobs:device-detail", args=[self.slug])
