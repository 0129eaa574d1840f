"""The hub beside MLflow and beside the floor, on this machine, in one go (``./bench.sh``).

Production profile: a scratch PostgreSQL database of its own (dropped afterwards), Redis, the
web process served by uvicorn. MLflow runs in an environment of its own (.bench/mlflow, made on
first use), its tracking server on loopback with a SQLite and a PostgreSQL store, fed the same
points (benchmarks/mlflow_side.py). The floor is what the machine can do with no application in
the way: PostgreSQL COPY.

    ./bench.sh [--quick] [--json FILE] [--no-mlflow] [--only ingest|reads|live]

``--quick`` runs small sizes (CI runs it: it checks that the benchmark works, not timings).
docs/performance.md holds the table of the last full run and what each optimisation changed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's code, wherever the script is run from

from benchmarks import job_list, live  # noqa: E402
from benchmarks.common import drop_database, running_job, scratch_database  # noqa: E402

MLFLOW_VERSION = "3.17.2"
MLFLOW_ENV = ROOT / ".bench" / "mlflow"

SIZES: dict[str, dict[str, Any]] = {
    "full": {"ingest": 100_000, "history": 10_000, "chart": 1_000_000, "calls": 200,
             "reports": 50, "watchers": [1, 100, 1000], "fanout_seconds": 10,
             "burst_watchers": 100, "burst_events": 200, "pages": 1000,
             "list_jobs": 100_000, "list_owners": 100, "list_shares": 2_000, "list_repeats": 20,
             "list_depth": 10, "mlflow_runs": 1_000},
    "quick": {"ingest": 5_000, "history": 1_000, "chart": 20_000, "calls": 20,
              "reports": 5, "watchers": [1, 10], "fanout_seconds": 1,
              "burst_watchers": 10, "burst_events": 20, "pages": 20,
              "list_jobs": 2_000, "list_owners": 10, "list_shares": 120, "list_repeats": 3,
              "list_depth": 1, "mlflow_runs": 20},
}  # fmt: skip


def timed(action: Callable[[], Any], repeat: int) -> list[float]:
    """Milliseconds of each of ``repeat`` runs of ``action``."""
    took = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        took.append((time.perf_counter() - started) * 1000)
    return took


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# The hub


def hub_ingest(owner: Any, points: int, batch: int) -> float:
    """Points a second through the progress reporter into PostgreSQL, published as events:
    ``batch`` points a call (1,000, as MLflow's log_batch takes), or one (``metric()``, what a
    training loop calls each step)."""
    from jobs.engine.reporter import Reporter

    job, token = running_job(owner, "ingest")
    reporter = Reporter(job, token)
    started = time.perf_counter()
    if batch == 1:
        for step in range(points):
            reporter.metric("train_loss", step, 1.0 / (step + 1))
    else:
        for first in range(0, points, batch):
            steps = range(first, min(first + batch, points))
            reporter.metrics("train_loss", [(step, 1.0 / (step + 1)) for step in steps])
    reporter.flush()
    return points / (time.perf_counter() - started)


def copy_floor(database_url: str, points: int) -> float:
    """Points a second that PostgreSQL takes by binary COPY into a table shaped and indexed like
    the hub's, in one transaction: the floor no application gets under."""
    import psycopg

    now = datetime.now(UTC)
    with psycopg.connect(database_url) as connection, connection.cursor() as cursor:
        cursor.execute(
            b"CREATE TEMP TABLE floor (series_id bigint, step bigint, value float8, "
            b"timestamp timestamptz)"
        )
        cursor.execute(b"CREATE INDEX ON floor (series_id, step)")  # as the hub's table has
        started = time.perf_counter()
        statement = b"COPY floor (series_id, step, value, timestamp) FROM STDIN (FORMAT BINARY)"
        with cursor.copy(statement) as copy:
            copy.set_types(["int8", "int8", "float8", "timestamptz"])
            for step in range(points):
                copy.write_row((1, step, 1.0 / (step + 1), now))
        connection.commit()
        return points / (time.perf_counter() - started)


def series_of(owner: Any, name: str, points: int) -> str:
    """A finished job with a train_loss series of ``points`` points, written by COPY (setup, not
    measured); its public id."""
    from django.db import connection

    from jobs.domain.metrics import rebuild_rollups
    from jobs.models import MetricSeries

    job, _ = running_job(owner, name)
    series = MetricSeries.objects.create(
        job=job, key="train_loss", points_count=points, last_step=points - 1
    )
    now = datetime.now(UTC)
    with connection.cursor() as cursor:
        raw = cursor.cursor  # psycopg's own cursor, for COPY
        with raw.copy(
            b"COPY jobs_metricpoint (series_id, step, value, timestamp) FROM STDIN"
        ) as copy:
            for step in range(points):
                # a decaying loss with a spike every 10,000 steps, which a chart must keep
                spike = 5.0 if step % 10_000 == 5_000 else 0.0
                copy.write_row((series.pk, step, 1.0 / (step + 1) + spike, now))
    rebuild_rollups(series)  # what the reporter keeps as it writes
    return str(job.public_id)


@contextlib.contextmanager
def live_web(env: dict[str, str]) -> Iterator[tuple[str, int]]:
    """The hub's web process (uvicorn) on a free loopback port; its URL and process id."""
    import socket

    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "uvicorn", "hubsite.asgi:application", "--port", str(port)]
    command += ["--lifespan", "off", "--log-level", "warning", "--ws-per-message-deflate", "false"]
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/healthz", timeout=5).status_code < 600:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("the hub's web process did not start")
            time.sleep(0.2)  # polling for the port to answer, not a figure
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


def hub_reads(url: str, token: str, history_job: str, chart_job: str) -> dict[str, float]:
    """The whole history of a series, and a chart's worth of a long one, over HTTP."""
    import httpx

    with httpx.Client(base_url=url, headers={"Authorization": f"Token {token}"}) as http:

        def get(path: str) -> None:
            response = http.get(path, timeout=120)
            response.raise_for_status()

        history = f"/api/v1/jobs/{history_job}/metrics/?keys=train_loss"
        chart = f"/api/v1/jobs/{chart_job}/metrics/?keys=train_loss&points=1000"
        get(history)  # warm: connections, imports
        return {
            "history_ms": statistics.median(timed(lambda: get(history), 5)),
            "chart_ms": statistics.median(timed(lambda: get(chart), 3)),
        }


def run_hub(
    database_url: str, sizes: dict[str, Any], env: dict[str, str], only: str | None = None
) -> dict[str, Any]:
    import django

    django.setup()
    from django.contrib.auth.models import User
    from rest_framework.authtoken.models import Token

    owner = User.objects.create_user("bench", "bench@example.com", uuid.uuid4().hex)
    token = Token.objects.create(user=owner).key
    results: dict[str, Any] = {}
    if only in (None, "ingest"):
        # The median of three runs each: one run's figure moves by a tenth or so here.
        results["ingest_points_per_s"] = round(
            statistics.median(hub_ingest(owner, sizes["ingest"], batch=1000) for _ in range(3))
        )
        results["ingest_one_a_call_points_per_s"] = round(
            statistics.median(hub_ingest(owner, sizes["ingest"], batch=1) for _ in range(3))
        )
        results["copy_floor_points_per_s"] = round(
            statistics.median(copy_floor(database_url, sizes["ingest"]) for _ in range(3))
        )
    if only in (None, "reads"):
        history_job = series_of(owner, "history", sizes["history"])
        chart_job = series_of(owner, "chart", sizes["chart"])
    with live_web(env) as (url, pid):
        if only in (None, "reads"):
            reads = hub_reads(url, token, history_job, chart_job)
            # The keys name the full run's sizes; a --quick run says its sizes under "sizes".
            results["history_10k_ms"] = round(reads["history_ms"], 1)
            results["chart_1m_ms"] = round(reads["chart_ms"], 1)
        if only in (None, "live"):
            results.update(live.run(url, token, owner, pid, sizes))
        if only in (None, "list"):
            results.update(job_list.run(url, owner, sizes))
    return results


# MLflow, in its own environment


def mlflow_python() -> Path:
    """The Python of an environment holding MLflow (and a PostgreSQL driver for its store),
    made on first use; the hub's own environment stays free of it."""
    python = MLFLOW_ENV / "bin" / "python"
    stamp = MLFLOW_ENV / f".installed-{MLFLOW_VERSION}"
    if not stamp.exists():
        subprocess.run([sys.executable, "-m", "venv", str(MLFLOW_ENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", f"mlflow=={MLFLOW_VERSION}",
             "psycopg2-binary==2.9.11"],
            check=True,
        )  # fmt: skip
        stamp.touch()
    return python


def run_mlflow(base_url: str, sizes: dict[str, Any]) -> dict[str, Any]:
    store_url, name = scratch_database(base_url, "_mlflow")
    try:
        with tempfile.TemporaryDirectory(prefix="mlflow-bench-") as folder:
            done = subprocess.run(
                [str(mlflow_python()), str(ROOT / "benchmarks" / "mlflow_side.py"),
                 json.dumps({"sizes": sizes, "postgres": store_url, "folder": folder})],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"the MLflow side failed:\n{done.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return result
    finally:
        drop_database(base_url, name)


# The table


ROWS = [
    ("metric ingest, {ingest:,} points, 1,000 a call (points/s)",
     "mlflow_log_batch_points_per_s", "ingest_points_per_s", "copy_floor_points_per_s"),
    ("metric ingest, a call a point (points/s)", None, "ingest_one_a_call_points_per_s", None),
    ("{history:,}-point history (ms)", "mlflow_history_10k_ms", "history_10k_ms", None),
    ("{chart:,} points downsampled for a chart (ms)", "mlflow_history_1m_ms", "chart_1m_ms", None),
    ("one progress report to an open page, p50 / p99 (ms; MLflow: log_metric p50)",
     "mlflow_log_metric_ms", "report_roundtrip_ms", None),
    ("{pages:,} pages of one job opened at once, all with their snapshot (s)", None,
     "open_1000_pages_s", None),
    ("web process with {pages:,} sockets (MB RSS)", None, "web_rss_mb_1000_sockets", None),
]  # fmt: skip


def table(results: dict[str, Any]) -> str:
    sizes = results["sizes"]

    def cell(key: str | None) -> str:
        if key is None or key not in results:
            return "–"
        value = results[key]
        if isinstance(value, dict) and "p50" in value:
            return f"{value['p50']:,} / {value['p99']:,}"
        if isinstance(value, dict):
            return " / ".join(cell_of(v) for v in value.values())
        return f"{value:,}"

    def cell_of(value: Any) -> str:
        return f"{value['p50']:,}" if isinstance(value, dict) else f"{value:,}"

    lines = ["| measure | MLflow (SQLite / PostgreSQL) | hub | floor |", "|---|---|---|---|"]
    for label, mlflow, hub, floor in ROWS:
        measure = label.format(**sizes)
        lines.append(f"| {measure} | {cell(mlflow)} | {cell(hub)} | {cell(floor)} |")
    if "job_list_ms" in results:
        got = results["job_list_ms"]
        depth = sizes["list_depth"] + 1
        lines.append(
            f"| first page of the job list among {results['job_list_jobs']:,} jobs, owner / "
            f"reader of {sizes['list_shares']:,} shares (ms; MLflow: search_runs, "
            f"{sizes['mlflow_runs']:,} runs) | {cell('mlflow_search_runs_ms')} | "
            f"{got['owner']} / {got['shared']} ({got['queries']} queries) | – |"
        )
        lines.append(
            f"| page {depth} of the job list, owner / reader (ms) | – | "
            f"{got[f'owner_page_{depth}']} / {got[f'shared_page_{depth}']} | – |"
        )
    for run in results.get("fanout", []):
        rate = run["events_per_s"]
        pace = "a burst" if rate == "burst" else f"{rate:g} events/s"
        measure = f"{run['watchers']:,} sockets on one job, {pace}: delivered, p50 / p99 (ms)"
        got = f"{run['delivered']:,}/{run['sent']:,} ({run['gaps_repaired']} gap notices)"
        lines.append(f"| {measure} | polls | {got}, {run['p50_ms']} / {run['p99_ms']} | – |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (CI)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--no-mlflow", action="store_true", help="the hub and the floor only")
    parser.add_argument(
        "--only",
        choices=["ingest", "reads", "live", "list"],
        help="one group of measures (implies --no-mlflow)",
    )
    args = parser.parse_args()
    sizes = SIZES["quick" if args.quick else "full"]
    base_url = os.environ["DATABASE_URL"]
    database_url, name = scratch_database(base_url)
    data = Path(tempfile.mkdtemp(prefix="hub-bench-"))
    (data / "static").mkdir()  # no pages are served here: an empty folder, no warning
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DJANGO_SETTINGS_MODULE": "hubsite.settings.base",
        "HUB_SECRET_KEY": os.environ.get("HUB_SECRET_KEY", "benchmark-only-" + "x" * 40),
        "HUB_DATA_DIR": str(data),
        "HUB_NAMESPACE": f"bench-{os.getpid()}",
        "HUB_LOG_LEVEL": "WARNING",
        "HUB_API_RATE_USER": "1000000/minute",
        # The live benchmark opens up to a thousand sockets from this one address at once.
        "HUB_SOCKET_RATE": "1000000/minute",
    }
    os.environ.update(env)
    started = time.monotonic()
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, check=True)
        results = {
            "machine": f"{os.cpu_count()} cores",
            "when": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
            "sizes": {"run": "quick" if args.quick else "full", **sizes},
            **run_hub(database_url, sizes, env, args.only),
        }
        if not args.no_mlflow and args.only is None:
            results.update(run_mlflow(base_url, sizes))
    finally:
        from django.db import connections

        connections.close_all()
        drop_database(base_url, name)
    results["seconds"] = round(time.monotonic() - started, 1)
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
