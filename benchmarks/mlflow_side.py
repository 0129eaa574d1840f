"""MLflow's side of ./bench.sh, run with the Python of MLflow's own environment (.bench/mlflow):
its tracking server on loopback with a SQLite store and a PostgreSQL store, fed the same points
as the hub through MLflow's client. Prints one JSON line of figures.

    .bench/mlflow/bin/python benchmarks/mlflow_side.py '{"sizes": {...}, "postgres": URL, "folder": DIR}'
"""

from __future__ import annotations

import contextlib
import json
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BATCH = 1000  # MLflow takes at most 1,000 metrics in one log_batch


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def tracking_server(store: str, folder: Path) -> Iterator[str]:
    import urllib.request

    port = free_port()
    command = [
        sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store,
        "--default-artifact-root", str(folder / "artifacts"), "--host", "127.0.0.1",
        "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    log = (folder / f"server-{port}.log").open("w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180  # the first start creates the store's tables
        while True:
            with contextlib.suppress(OSError):
                if urllib.request.urlopen(f"{url}/health", timeout=5).status == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"mlflow server did not start: {(folder / f'server-{port}.log').read_text()[-2000:]}"
                )
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def log_points(client: Any, run_id: str, key: str, points: int) -> float:
    """log_batch of ``points`` points, 1,000 a call; seconds."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    started = time.perf_counter()
    for first in range(0, points, BATCH):
        batch = [
            Metric(key, 1.0 / (step + 1), now, step)
            for step in range(first, min(first + BATCH, points))
        ]
        client.log_batch(run_id, metrics=batch)
    return time.perf_counter() - started


def measure(url: str, sizes: dict[str, int]) -> dict[str, float]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=url)
    experiment = client.create_experiment(f"bench-{time.time_ns()}")
    ingest = client.create_run(experiment).info.run_id
    seconds = log_points(client, ingest, "train_loss", sizes["ingest"])
    one = client.create_run(experiment).info.run_id
    latencies = []
    for step in range(sizes["calls"]):
        started = time.perf_counter()
        client.log_metric(one, "train_loss", 1.0 / (step + 1), step=step)
        latencies.append((time.perf_counter() - started) * 1000)
    history = client.create_run(experiment).info.run_id
    log_points(client, history, "train_loss", sizes["history"])
    reads = []
    for _ in range(5):
        started = time.perf_counter()
        got = client.get_metric_history(history, "train_loss")
        reads.append((time.perf_counter() - started) * 1000)
        assert len(got) == sizes["history"], len(got)
    listed = client.create_experiment(f"bench-list-{time.time_ns()}")
    for i in range(sizes["mlflow_runs"]):
        run = client.create_run(listed, run_name=f"run {i}").info.run_id
        client.log_param(run, "lr", 0.001)
    searches = []
    for _ in range(10):
        started = time.perf_counter()
        found = client.search_runs([listed], max_results=50)
        searches.append((time.perf_counter() - started) * 1000)
        assert len(found) == min(50, sizes["mlflow_runs"]), len(found)
    return {
        "search_runs_ms": round(statistics.median(searches), 1),
        "log_batch_points_per_s": round(sizes["ingest"] / seconds),
        "log_metric_ms_p50": round(statistics.median(latencies), 2),
        "history_ms": round(statistics.median(reads), 1),
    }


def main() -> int:
    config = json.loads(sys.argv[1])
    sizes, folder = config["sizes"], Path(config["folder"])
    stores = {
        "sqlite": f"sqlite:///{folder / 'mlflow.db'}",
        "postgresql": config["postgres"].replace("postgres://", "postgresql+psycopg2://", 1),
    }
    figures: dict[str, dict[str, float]] = {}
    for name, store in stores.items():
        with tracking_server(store, folder) as url:
            figures[name] = measure(url, sizes)
    print(
        json.dumps(
            {
                "mlflow_version": __import__("mlflow").__version__,
                "mlflow_log_batch_points_per_s": {
                    n: f["log_batch_points_per_s"] for n, f in figures.items()
                },
                "mlflow_log_metric_ms": {
                    n: {"p50": f["log_metric_ms_p50"]} for n, f in figures.items()
                },
                # named after the full run's size, as the hub's figure is
                "mlflow_history_10k_ms": {n: f["history_ms"] for n, f in figures.items()},
                "mlflow_search_runs_ms": {n: f["search_runs_ms"] for n, f in figures.items()},
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
