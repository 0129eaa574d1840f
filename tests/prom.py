"""A real Prometheus server (Debian's package) scraping a hub on loopback, queried with PromQL."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import free_port

TOKEN = "metrics-token-for-tests"


class PrometheusServer:
    def __init__(self, workdir: Path, target: str) -> None:
        self.port = free_port()
        self.workdir, self.target = workdir, target

    def start(self) -> None:
        binary = shutil.which("prometheus")
        assert binary, "prometheus is not installed (.ci/run installs Debian's package)"
        config = self.workdir / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
            "scrape_configs:\n  - job_name: hub\n    metrics_path: /metrics\n"
            f"    authorization:\n      credentials: {TOKEN}\n"
            f"    static_configs:\n      - targets: ['{self.target}']\n"
        )
        self.process = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={self.workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=(self.workdir / "prometheus.log").open("ab"), stderr=subprocess.STDOUT,
        )  # fmt: skip

    def query(self, promql: str) -> list[dict[str, Any]]:
        answer = httpx.get(
            f"http://127.0.0.1:{self.port}/api/v1/query", params={"query": promql}, timeout=5
        )
        answer.raise_for_status()
        return list(answer.json()["data"]["result"])

    def scalar(self, promql: str) -> float | None:
        try:
            result = self.query(promql)
        except httpx.HTTPError:
            return None
        return float(result[0]["value"][1]) if result else None

    def wait_for(self, promql: str, check: Any, timeout: float = 60) -> float:
        deadline = time.monotonic() + timeout
        while True:
            value = self.scalar(promql)
            if value is not None and check(value):
                return value
            assert self.process.poll() is None, (self.workdir / "prometheus.log").read_text()
            assert time.monotonic() < deadline, f"{promql} never satisfied the check (last {value})"
            time.sleep(0.5)  # Prometheus scrapes every second; nothing to be woken by

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)


@pytest.fixture
def prometheus(live_server: Any, settings: Any, tmp_path: Path) -> Iterator[PrometheusServer]:
    settings.HUB_METRICS_TOKEN = TOKEN
    server = PrometheusServer(tmp_path, live_server.url.removeprefix("http://"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
