"""Metric series: appending points at COPY speed, and reading them whole, after a step, or
downsampled for a chart.

Rollups: as points are written, the lowest and the highest point of each bucket of 64, 512,
4,096 and 32,768 steps are kept (MetricRollup). A chart of a long series reads those, not the
points (a million points are ~1,950 rollups of 512), and merges them into its buckets, which are
whole multiples of the rollup's width, so that each bucket's extremes are exact: no spike is lost.

Downsampling keeps, in each of ``points // 2`` equal step buckets, the point with the lowest
and the point with the highest value, so a spike survives however long the series is; it runs in
the database (window functions, in PostgreSQL and SQLite alike) and reads the (series, step)
index, so a small job's page never pays for a big job's millions of points.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import CharField, F, Func, Q, QuerySet

from jobs.models import Job, MetricPoint, MetricRollup, MetricSeries

MAX_POINTS = 100_000  # the most a single request may ask for, downsampled or in a page
PAGE_POINTS = 10_000  # a page of whole points when the asker names no size
ROLLUP_WIDTHS = (64, 512, 4096, 32768)  # each a multiple of the one before

Point = tuple[int, float, datetime]  # step, value, timestamp


def append_points(rows: list[tuple[int, int, float | None, datetime]]) -> None:
    """Append points, each (series id, step, value, timestamp), inside the caller's transaction.
    PostgreSQL takes them by COPY: no model object and no SQL text per point (docs/performance.md
    has the figures before and after). Elsewhere (SQLite), one batched INSERT."""
    if not rows:
        return
    if connection.vendor == "postgresql":
        table = MetricPoint._meta.db_table
        statement = f"COPY {table} (series_id, step, value, timestamp) FROM STDIN (FORMAT BINARY)"
        with connection.cursor() as cursor, cursor.cursor.copy(statement.encode()) as copy:
            # Binary, with the types given: psycopg's C dumpers, no text per value.
            copy.set_types(["int8", "int8", "float8", "timestamptz"])
            for row in rows:
                copy.write_row(row)
        return
    MetricPoint.objects.bulk_create(
        [MetricPoint(series_id=s, step=step, value=v, timestamp=t) for s, step, v, t in rows],
        batch_size=1000,
    )


def _extremes(
    rows: Iterable[tuple[int, float | None, datetime]], width: int
) -> dict[int, list[Point]]:
    """Per bucket of ``width`` steps: [lowest, highest] point (the earlier step on a tie)."""
    found: dict[int, list[Point]] = {}
    for step, value, stamp in rows:
        if value is None:
            continue  # a gap has no height
        bucket = step // width
        pair = found.get(bucket)
        if pair is None:
            found[bucket] = [(step, value, stamp), (step, value, stamp)]
            continue
        low, high = pair
        if value < low[1] or (value == low[1] and step < low[0]):
            pair[0] = (step, value, stamp)
        if value > high[1] or (value == high[1] and step < high[0]):
            pair[1] = (step, value, stamp)
    return found


def _better(side: str, op: str) -> str:
    """SQL: does the incoming row's point beat the stored one (``op`` is < for the lowest)?"""
    table = MetricRollup._meta.db_table
    mine, theirs = f"excluded.{side}_value", f"{table}.{side}_value"
    return (
        f"({mine} {op} {theirs} OR ({mine} = {theirs} AND "
        f"excluded.{side}_step < {table}.{side}_step))"
    )


def _upsert_rollups(series_id: int, rows: list[tuple[int, float | None, datetime]]) -> None:
    found = []
    candidates: Iterable[tuple[int, float | None, datetime]] = rows
    for width in ROLLUP_WIDTHS:
        level = _extremes(candidates, width)
        found += [[series_id, width, bucket, *low, *high] for bucket, (low, high) in level.items()]
        # A wider bucket's extremes are among those of the narrower buckets it holds.
        candidates = [point for pair in level.values() for point in pair]
    for first in range(0, len(found), 1000):  # within any database's limit of parameters
        _upsert(found[first : first + 1000])


def _upsert(found: list[list[Any]]) -> None:
    count = len(found)
    values = [value for row in found for value in row]
    table = MetricRollup._meta.db_table
    columns = (
        "series_id, width, bucket, min_step, min_value, min_timestamp, max_step, max_value, "
        "max_timestamp"
    )
    updates = ", ".join(
        f"{side}_{field} = CASE WHEN {_better(side, op)} THEN excluded.{side}_{field} "
        f"ELSE {table}.{side}_{field} END"
        for side, op in (("min", "<"), ("max", ">"))
        for field in ("step", "value", "timestamp")
    )
    placeholders = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s, %s)"] * count)
    sql = (
        f"INSERT INTO {table} ({columns}) VALUES {placeholders} "
        f"ON CONFLICT (series_id, width, bucket) DO UPDATE SET {updates}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, values)


def roll_up(rows: list[tuple[int, int, float | None, datetime]]) -> None:
    """Fold appended points (series id, step, value, timestamp) into their series' rollups, in
    the caller's transaction."""
    by_series: dict[int, list[tuple[int, float | None, datetime]]] = {}
    for series_id, step, value, stamp in rows:
        by_series.setdefault(series_id, []).append((step, value, stamp))
    for series_id, points in by_series.items():
        _upsert_rollups(series_id, points)


def rebuild_rollups(series: MetricSeries, from_step: int = 0) -> None:
    """The rollups of buckets from the one holding ``from_step`` on, made again from the points
    (after points past a step were discarded, or for points written without the reporter)."""
    for width in ROLLUP_WIDTHS:
        series.rollups.filter(width=width, bucket__gte=from_step // width).delete()
    start = (from_step // max(ROLLUP_WIDTHS)) * max(ROLLUP_WIDTHS)
    points = (
        MetricPoint.objects.filter(series=series, step__gte=start)
        .order_by("step")
        .values_list("step", "value", "timestamp")
    )
    chunk: list[tuple[int, float | None, datetime]] = []
    for point in points.iterator(chunk_size=20_000):
        chunk.append(point)
        if len(chunk) >= 100_000:
            _upsert_rollups(series.pk, chunk)
            chunk = []
    _upsert_rollups(series.pk, chunk)


class _IsoUtc(Func):
    """A timestamp as ISO 8601 text in UTC, written by PostgreSQL: reading it as a datetime and
    formatting it again took more than half of the time of reading a series (profile in
    docs/performance.md)."""

    template = (
        "to_char(%(expressions)s AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"')"
    )
    output_field = CharField()


def _stamped(rows: QuerySet[MetricPoint]) -> QuerySet[MetricPoint]:
    """Points with their time as ``stamp``: ISO text made by PostgreSQL, else the datetime."""
    if connection.vendor == "postgresql":
        return rows.annotate(stamp=_IsoUtc("timestamp"))
    return rows.annotate(stamp=F("timestamp"))


@dataclass
class SeriesView:
    key: str
    total: int  # points in the whole series
    points: list[dict[str, Any]]  # {"step", "value", "timestamp"}
    downsampled: bool
    more: bool = False  # cut at the limit: the next page starts after the last step here


def _row(step: int, value: float | None, timestamp: Any) -> dict[str, Any]:
    stamp = timestamp if isinstance(timestamp, str) else timestamp.isoformat()
    return {"step": step, "value": value, "timestamp": stamp}


def read_series(
    series: MetricSeries,
    *,
    after_step: int | None = None,
    until_step: int | None = None,
    points: int | None = None,
    limit: int | None = None,
) -> SeriesView:
    """The series' points in a step range: downsampled to about ``points`` when it holds more,
    else whole, at most ``limit`` of them (the rest are the next page's)."""
    rows = MetricPoint.objects.filter(series=series)
    if after_step is not None:
        rows = rows.filter(step__gt=after_step)
    if until_step is not None:
        rows = rows.filter(step__lte=until_step)
    windowed = after_step is not None or until_step is not None
    count = rows.count() if windowed else series.points_count
    if points is None or count <= points:
        stamped = _stamped(rows).order_by("step", "id")
        values = stamped.values_list("step", "value", "stamp")  # type: ignore[misc]  # annotated
        if limit is not None:
            values = values[: limit + 1]
        kept = [_row(*v) for v in values]
        more = limit is not None and len(kept) > limit
        return SeriesView(
            series.key, series.points_count, kept[:limit] if more else kept, False, more
        )
    thinned = _downsample(series, after_step, until_step, points)
    return SeriesView(series.key, series.points_count, thinned, True)


def _downsample(
    series: MetricSeries, after_step: int | None, until_step: int | None, points: int
) -> list[dict[str, Any]]:
    """About ``points`` points: the lowest and the highest of each of ``points // 2`` buckets.
    The buckets are whole multiples of the widest rollup that fits in one, so the rollups inside
    the range answer for it exactly; only the ragged ends (under one rollup each) are read as
    points."""
    first = (after_step + 1) if after_step is not None else 0
    last = series.last_step if series.last_step is not None else first
    if until_step is not None:
        last = min(last, until_step)
    if last < first:
        return []
    desired = max(1, math.ceil((last - first + 1) / max(1, points // 2)))
    usable = [w for w in ROLLUP_WIDTHS if w <= desired]
    raw = _stamped(MetricPoint.objects.filter(series=series, value__isnull=False))
    fields = ("step", "value", "stamp")
    if not usable:  # a short range: its points, bucketed here
        candidates = list(raw.filter(step__gte=first, step__lte=last).values_list(*fields))
        return _rows_of(_extremes(candidates, desired))
    width = max(usable)
    if not series.rollups.exists():
        rebuild_rollups(series)  # a series from before rollups were kept: once, on first read
    inner_first, inner_last = math.ceil(first / width), (last + 1) // width - 1
    candidates = []
    if inner_first <= inner_last:
        for row in series.rollups.filter(
            width=width, bucket__gte=inner_first, bucket__lte=inner_last
        ).values_list(
            "min_step", "min_value", "min_timestamp", "max_step", "max_value", "max_timestamp"
        ):
            candidates += [row[:3], row[3:]]
        ends = Q(step__gte=first, step__lt=inner_first * width) | Q(
            step__gte=(inner_last + 1) * width, step__lte=last
        )
    else:
        ends = Q(step__gte=first, step__lte=last)
    candidates += list(raw.filter(ends).values_list(*fields))
    return _rows_of(_extremes(candidates, math.ceil(desired / width) * width))


def _rows_of(extremes: dict[int, list[Point]]) -> list[dict[str, Any]]:
    kept = {point[0]: point for pair in extremes.values() for point in pair}
    return [_row(*kept[step]) for step in sorted(kept)]


def job_metrics(
    job: Job,
    *,
    keys: list[str] | None = None,
    after_step: int | None = None,
    after_seq: int | None = None,
    until_step: int | None = None,
    points: int | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """The seed's ``{"keys", "metrics"}`` shape, with how many points each series has in all."""
    all_series = list(job.metric_series.order_by("key"))
    if keys:
        all_series = [s for s in all_series if s.key in keys]
    first_steps: dict[str, int] = {}
    if after_seq is not None:
        # A metrics event stores the step range it carried: everything after ``after_seq`` starts
        # at the smallest first step of those events.
        for payload in job.events.filter(type="metrics", seq__gt=after_seq).values_list(
            "payload", flat=True
        ):
            for key, (first_step, _) in payload["series"].items():
                first_steps[key] = min(first_step, first_steps.get(key, first_step))
    views = []
    for series in all_series:
        since = after_step
        if after_seq is not None:
            if series.key not in first_steps:
                views.append(SeriesView(series.key, series.points_count, [], False))
                continue
            since = max(since if since is not None else -1, first_steps[series.key] - 1)
        views.append(
            read_series(series, after_step=since, until_step=until_step, points=points, limit=limit)
        )
    return {
        "keys": [v.key for v in views],
        "metrics": {v.key: v.points for v in views},
        "total_points": {v.key: v.total for v in views},
        "downsampled": any(v.downsampled for v in views),
        "seq": job.event_seq,
        "next_after_step": {v.key: v.points[-1]["step"] for v in views if v.more},
    }
