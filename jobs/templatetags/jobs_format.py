"""Formatting of job values for the pages."""

from __future__ import annotations

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
