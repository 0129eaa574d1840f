"""Formatting of job values for the pages."""

from __future__ import annotations

import math
from typing import Any

from django import template

from jobs.domain.disk import size_text

register = template.Library()


@register.filter
def duration(seconds: float | None) -> str:
    """1h 02m, 3m 07s, 12.4s; an em dash for no value."""
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"


@register.filter
def filesize(size: int | None) -> str:
    return "—" if size is None else size_text(size)


@register.filter
def loss(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


@register.filter
def intcomma_plain(value: int | None) -> str:
    """12345678 → 12,345,678 (no locale, no django.contrib.humanize for one filter)."""
    if value is None or value == "":
        return "—"
    return f"{int(value):,}"


FINISHED = ("completed", "ready", "failed", "cancelled")


@register.simple_tag
def progress_words(job: Any) -> dict[str, Any]:
    """How a job's progress reads: the bar's width and its words. percentage_done keeps its
    meaning (epochs completed / epochs), but a finished job's bar is complete and says where it
    stopped ("stopped early at epoch 8 of 12 (percentage_done 66.7)") rather than reading as
    work left to do. static/hub/live.js (hubProgressWords) writes the same words live."""
    percent = float(job.percentage_done or 0)
    tenths = f"{math.floor(percent * 10 + 0.5) / 10:.1f}"  # halves up, as the page's script does
    words = {"width": percent, "headline": f"{tenths}%", "detail": "done (percentage_done)"}
    words["short"] = f"{math.floor(percent + 0.5)}%"
    if job.status not in FINISHED:
        return words
    words["width"] = 100.0
    verb = "stopped early" if job.status in ("ready", "completed") else "stopped"
    epochs, steps = job.epochs, job.total_steps
    if epochs and (job.epochs_completed or 0) < epochs:
        where = f"{verb} at epoch {job.epochs_completed or 0} of {epochs}"
    elif not epochs and steps and (job.steps_completed or 0) < steps:
        where = f"{verb} at step {job.steps_completed or 0} of {steps}"
    else:
        return words
    words.update(headline=where, detail=f"(percentage_done {tenths})", short=where)
    return words


@register.filter
def percent(value: float | None) -> str:
    """0.634 → 63.4% (a share of rows)."""
    return "—" if value is None else f"{value * 100:.1f}%"


@register.filter
def get(mapping: dict[str, Any] | None, key: str) -> Any:
    """A mapping's value by a key held in a variable (a model's id in an evaluation's rows)."""
    return (mapping or {}).get(key, "")
