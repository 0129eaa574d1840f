"""Downloads and the web process's memory: what serving a large model costs the process that
serves it, and how fast it goes.

    .venv/bin/python benchmarks/download_memory.py [--checkout DIR] [--mib N] [--times N] [--json FILE]

It starts the hub of a checkout (this one by default; an older commit's worktree to measure
before a change) in the embedded profile (uvicorn, as ``./serve.sh`` runs it), on a free port with
a scratch data folder, and uploads an ONNX model of about ``--mib`` MiB through the API. The upload
checks the model in the web process (onnx, onnxruntime), which leaves that process larger, so the
hub is then started again on the same data: the downloads are measured in a fresh web process.
Each download goes through the API (``/api/v1/models/<id>/download/``), read 1 MiB at a time and
checked against the model's sha256; for each it prints the web process's peak resident memory
over what it held just before (the kernel's high-water mark, reset before each download) and the
throughput. docs/performance.md quotes the runs.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import runhub  # noqa: E402

MiB = 1024 * 1024


def hub_env(data: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "HUB_DATA_DIR": str(data),
        "HUB_SECRET_KEY": "benchmark-only-" + "x" * 40,
        "HUB_API_RATE_USER": "1000000/minute",
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
    }
    for name in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"):
        env.pop(name, None)
    return env


def token(checkout: Path, env: dict[str, str]) -> str:
    code = (
        "from django.contrib.auth.models import User\n"
        "from rest_framework.authtoken.models import Token\n"
        "user = User.objects.create_user('downloader', 'd@example.com', 'x' * 20)\n"
        "print(Token.objects.create(user=user).key)\n"
    )
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.split()[-1]


def big_model(into: Path, mib: int, seed: int = 0) -> Path:
    """A valid ONNX model of about ``mib`` MiB: y = x + W, W a float32 initializer of that size
    (drawn from ``seed``: models of other seeds are other files)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    count = mib * MiB // 4
    weights = np.random.default_rng(seed).standard_normal(count, dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "weights"], ["y"])],
        "big",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [count])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [count])],
        initializer=[numpy_helper.from_array(weights, "weights")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, str(into))
    return into


class Memory:
    """The web process's resident memory: what it holds now, and its peak since ``reset``
    (Linux's VmHWM, reset through /proc/<pid>/clear_refs; sampled every 10 ms where that file
    cannot be written)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.sampled = 0
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None

    def _field(self, name: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(f"{name}:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"no {name} in /proc/{self.pid}/status")

    def resident(self) -> int:
        return self._field("VmRSS")

    @contextlib.contextmanager
    def watch(self) -> Iterator[dict[str, int]]:
        """Within: a dict that holds, afterwards, ``before`` and ``peak`` (bytes)."""
        figures = {"before": self.resident()}
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")  # resets VmHWM to VmRSS
            exact = True
        except OSError:
            exact = False
        self.sampled = figures["before"]
        self._stop.clear()
        self._sampler = threading.Thread(target=self._sample)
        self._sampler.start()
        try:
            yield figures
        finally:
            self._stop.set()
            self._sampler.join()
            figures["peak"] = max(self.sampled, self._field("VmHWM") if exact else 0)

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.sampled = max(self.sampled, self.resident())


def download(url: str, key: str, model_id: str) -> tuple[str, int, float]:
    """(sha256, bytes, seconds) of one download through the API."""
    import requests

    digest = hashlib.sha256()
    size = 0
    started = time.perf_counter()
    with requests.get(
        f"{url}/api/v1/models/{model_id}/download/",
        headers={"Authorization": f"Token {key}"},
        stream=True,
        timeout=600,
    ) as answer:
        answer.raise_for_status()
        for chunk in answer.iter_content(MiB):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size, time.perf_counter() - started


def run(checkout: Path, mib: int, times: int) -> dict[str, Any]:
    scratch = Path(tempfile.mkdtemp(prefix="hub-download-memory-"))
    try:  # the model, its upload and the hub's data: twice the model's size, not kept
        return measure(checkout, scratch, mib, times)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def measure(checkout: Path, scratch: Path, mib: int, times: int) -> dict[str, Any]:
    import requests

    model = big_model(scratch / "big.onnx", mib)
    sha256 = hashlib.sha256(model.read_bytes()).hexdigest()
    env = hub_env(scratch / "data")
    results: dict[str, Any] = {
        "checkout": str(checkout),
        "model_mib": round(model.stat().st_size / MiB, 1),
    }
    with runhub(checkout, env) as (url, _pid):
        key = token(checkout, env)
        with model.open("rb") as handle:
            uploaded = requests.post(
                f"{url}/api/v1/models/",
                headers={"Authorization": f"Token {key}"},
                files={"file": ("big.onnx", handle)},
                data={"name": "big"},
                timeout=1800,
            )
        if uploaded.status_code != 201:
            raise SystemExit(f"the model was refused: {uploaded.status_code} {uploaded.text[:300]}")
        model_id = uploaded.json()["id"]
    with runhub(checkout, env) as (url, pid):  # a fresh web process for the downloads
        memory = Memory(pid)
        results["web_rss_at_start_mib"] = round(memory.resident() / MiB, 1)
        runs: list[dict[str, float]] = []
        for _ in range(times):
            with memory.watch() as figures:
                got, size, seconds = download(url, key, model_id)
            if got != sha256:
                raise SystemExit(f"download {len(runs) + 1} does not match the upload")
            runs.append(
                {
                    "seconds": round(seconds, 2),
                    "mib_per_s": round(size / MiB / seconds, 1),
                    "rss_before_mib": round(figures["before"] / MiB, 1),
                    "peak_growth_mib": round((figures["peak"] - figures["before"]) / MiB, 1),
                }
            )
        results["downloads"] = runs
        results["web_rss_at_end_mib"] = round(memory.resident() / MiB, 1)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", type=Path, default=ROOT, help="the hub to measure")
    parser.add_argument("--mib", type=int, default=200, help="the model's size (MiB)")
    parser.add_argument("--times", type=int, default=3, help="downloads to measure")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    results = run(args.checkout.resolve(), args.mib, args.times)
    print(f"checkout {results['checkout']}, model {results['model_mib']} MiB")
    print(f"web process at start: {results['web_rss_at_start_mib']} MiB resident")
    for n, figures in enumerate(results["downloads"], start=1):
        print(
            f"download {n}: {figures['seconds']:6.2f} s, {figures['mib_per_s']:7.1f} MiB/s; "
            f"web process {figures['rss_before_mib']:6.1f} MiB before, peak "
            f"+{figures['peak_growth_mib']:6.1f} MiB"
        )
    print(f"web process at the end: {results['web_rss_at_end_mib']} MiB resident")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
