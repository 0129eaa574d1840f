"""Metric series: appending points at COPY speed, and reading them whole, after a step, or
downsampled for a chart.

Downsampling keeps, in each of ``points // 2`` equal step buckets, the point with the lowest
and the point with the highest value, so a spike survives however long the series is; it runs in
the database (window functions, in PostgreSQL and SQLite alike) and reads the (series, step)
index, so a small job's page never pays for a big job's millions of points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection

from jobs.models import Job, MetricPoint, MetricSeries

MAX_POINTS = 100_000  # the most a single request may ask for


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


@dataclass
class SeriesView:
    key: str
    total: int  # points in the whole series
    points: list[dict[str, Any]]  # {"step", "value", "timestamp"}
    downsampled: bool


def _row(step: int, value: float | None, timestamp: Any) -> dict[str, Any]:
    stamp = timestamp if isinstance(timestamp, str) else timestamp.isoformat()
    return {"step": step, "value": value, "timestamp": stamp}


def read_series(
    series: MetricSeries,
    *,
    after_step: int | None = None,
    until_step: int | None = None,
    points: int | None = None,
) -> SeriesView:
    rows = MetricPoint.objects.filter(series=series)
    if after_step is not None:
        rows = rows.filter(step__gt=after_step)
    if until_step is not None:
        rows = rows.filter(step__lte=until_step)
    windowed = after_step is not None or until_step is not None
    count = rows.count() if windowed else series.points_count
    if points is None or count <= points:
        values = rows.order_by("step", "id").values_list("step", "value", "timestamp")
        return SeriesView(series.key, series.points_count, [_row(*v) for v in values], False)
    thinned = _downsample(series, after_step, until_step, points)
    return SeriesView(series.key, series.points_count, thinned, True)


def _downsample(
    series: MetricSeries, after_step: int | None, until_step: int | None, points: int
) -> list[dict[str, Any]]:
    first = (after_step + 1) if after_step is not None else 0
    last = series.last_step if series.last_step is not None else first
    if until_step is not None:
        last = min(last, until_step)
    buckets = max(1, points // 2)
    width = max(1, math.ceil((last - first + 1) / buckets))
    table = MetricPoint._meta.db_table
    sql = f"""
        WITH ranked AS (
            SELECT step, value, timestamp,
                ROW_NUMBER() OVER (PARTITION BY (step - %s) / %s ORDER BY value ASC, step) AS low,
                ROW_NUMBER() OVER (PARTITION BY (step - %s) / %s ORDER BY value DESC, step) AS high
            FROM {table}
            WHERE series_id = %s AND step >= %s AND step <= %s AND value IS NOT NULL
        )
        SELECT step, value, timestamp FROM ranked WHERE low = 1 OR high = 1 ORDER BY step
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, [first, width, first, width, series.pk, first, last])
        return [_row(step, value, timestamp) for step, value, timestamp in cursor.fetchall()]


def job_metrics(
    job: Job,
    *,
    keys: list[str] | None = None,
    after_step: int | None = None,
    after_seq: int | None = None,
    until_step: int | None = None,
    points: int | None = None,
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
        views.append(read_series(series, after_step=since, until_step=until_step, points=points))
    return {
        "keys": [v.key for v in views],
        "metrics": {v.key: v.points for v in views},
        "total_points": {v.key: v.total for v in views},
        "downsampled": any(v.downsampled for v in views),
        "seq": job.event_seq,
    }
