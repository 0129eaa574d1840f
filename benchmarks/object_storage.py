"""Object storage against the local folder: what uploads and downloads cost the web process, and
how much a warm scratch cache saves a job's start.

    .venv/bin/python benchmarks/object_storage.py [--download-mib 1024] [--upload-mib 256]
        [--job-mib 128] [--json FILE]

It starts moto's S3 server on loopback (the one S3 server that installs here: a Python process,
so its own speed bounds the bucket's figures) and, for each storage, the hub as ``./serve.sh``
runs it (``manage.py runhub``: web process, job worker, control worker) on a scratch data folder:

* uploads of an ONNX model of ``--upload-mib``: the whole file as a form through the web process,
  and in parts (the hub's client): to the hub's signed addresses on the local folder, straight to
  the bucket in object storage; the time to send the bytes and the time to complete (the hub
  checks the file and stores it), with the web process's CPU seconds for each;
* a download of a ``--download-mib`` model in a fresh web process: its time and throughput, the
  web process's CPU seconds and its resident memory's peak growth (through the web process on the
  local folder; a presigned redirect and the bucket's bytes in object storage);
* in object storage, a link job of two ``--job-mib`` models, twice: the first worker run fetches
  both into its empty scratch cache (cold), the second finds them there (warm).

docs/operations.md quotes the runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import runhub  # noqa: E402
from benchmarks.download_memory import Memory, big_model, hub_env, token  # noqa: E402

MiB = 1024 * 1024
BUCKET = "hub-bench"


def cpu_seconds(pid: int) -> float:
    """User and system CPU time the process has used (Linux's /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Moto:
    def __init__(self, workdir: Path) -> None:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        binary = Path(sys.executable).parent / "moto_server"
        self.process = subprocess.Popen(
            [str(binary), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=(workdir / "moto.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        import httpx

        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{self.url}/moto-api/", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise SystemExit("moto_server did not start") from None
                time.sleep(0.1)  # a process starting: polled, nothing else to wait on
        import boto3

        boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
            region_name="us-east-1",
        ).create_bucket(Bucket=BUCKET)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {
            "HUB_STORAGE_URL": f"s3://{BUCKET}/hub",
            "HUB_S3_ENDPOINT_URL": self.url,
            "HUB_S3_REGION": "us-east-1",
            "HUB_S3_ACCESS_KEY_ID": "bench",
            "HUB_S3_SECRET_ACCESS_KEY": "bench",
            "HUB_S3_TIMEOUT_SECONDS": "60",
        }

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def upload_whole(url: str, key: str, path: Path, pid: int) -> dict[str, float]:
    import httpx

    cpu = cpu_seconds(pid)
    started = time.perf_counter()
    with path.open("rb") as handle:
        answer = httpx.post(
            f"{url}/api/v1/models/",
            headers={"Authorization": f"Token {key}"},
            files={"file": (path.name, handle)},
            timeout=1800,
        )
    answer.raise_for_status()
    seconds = time.perf_counter() - started
    return {
        "seconds": round(seconds, 2),
        "mib_per_s": round(path.stat().st_size / MiB / seconds, 1),
        "web_cpu_s": round(cpu_seconds(pid) - cpu, 2),
        "model": answer.json()["id"],
    }


def upload_parts(url: str, key: str, path: Path, pid: int) -> dict[str, Any]:
    """The hub client's way (/api/v1/uploads/), each phase timed: sending the parts, completing."""
    import httpx

    size = path.stat().st_size
    auth = {"Authorization": f"Token {key}"}
    begun = httpx.post(
        f"{url}/api/v1/uploads/",
        headers=auth,
        json={"kind": "model", "filename": path.name, "size": size},
        timeout=60,
    ).json()
    cpu, started = cpu_seconds(pid), time.perf_counter()
    etags = []
    with path.open("rb") as handle, httpx.Client(timeout=600) as plain:
        for address in begun["parts"]:
            sent = plain.put(address, content=handle.read(int(begun["part_size"])))
            sent.raise_for_status()
            etags.append(sent.headers["ETag"])
    send_s, send_cpu = time.perf_counter() - started, cpu_seconds(pid) - cpu
    cpu, started = cpu_seconds(pid), time.perf_counter()
    done = httpx.post(
        f"{url}/api/v1/uploads/{begun['id']}/complete/",
        headers=auth,
        json={"upload_id": begun["upload_id"], "etags": etags},
        timeout=1800,
    )
    done.raise_for_status()
    return {
        "parts": len(etags),
        "to": "bucket" if not begun["parts"][0].startswith(url) else "hub",
        "send_s": round(send_s, 2),
        "send_mib_per_s": round(size / MiB / send_s, 1),
        "send_web_cpu_s": round(send_cpu, 2),
        "complete_s": round(time.perf_counter() - started, 2),
        "complete_web_cpu_s": round(cpu_seconds(pid) - cpu, 2),
        "model": done.json()["id"],
    }


def download(url: str, key: str, model_id: str, pid: int, sha256: str) -> dict[str, float]:
    import httpx

    memory = Memory(pid)
    cpu = cpu_seconds(pid)
    digest, size = hashlib.sha256(), 0
    with memory.watch() as figures:
        started = time.perf_counter()
        with httpx.stream(
            "GET",
            f"{url}/api/v1/models/{model_id}/download/",
            headers={"Authorization": f"Token {key}"},
            follow_redirects=True,
            timeout=600,
        ) as answer:
            answer.raise_for_status()
            for chunk in answer.iter_bytes(MiB):
                digest.update(chunk)
                size += len(chunk)
        seconds = time.perf_counter() - started
    if digest.hexdigest() != sha256:
        raise SystemExit("the download does not match the upload")
    return {
        "seconds": round(seconds, 2),
        "mib_per_s": round(size / MiB / seconds, 1),
        "web_cpu_s": round(cpu_seconds(pid) - cpu, 2),
        "web_peak_growth_mib": round((figures["peak"] - figures["before"]) / MiB, 1),
    }


def link_job(url: str, key: str, models: list[str]) -> dict[str, float]:
    import httpx

    auth = {"Authorization": f"Token {key}"}
    job = httpx.post(
        f"{url}/api/v1/jobs/link/", headers=auth, json={"models": models}, timeout=60
    ).json()
    deadline = time.monotonic() + 1800
    while True:
        seen = httpx.get(f"{url}/api/v1/jobs/{job['id']}/", headers=auth, timeout=60).json()
        if seen["status"] in ("ready", "failed", "cancelled"):
            break
        if time.monotonic() > deadline:
            raise SystemExit("the link job did not finish")
        time.sleep(0.5)  # the job runs in the worker; the API is what a client would poll
    if seen["status"] != "ready":
        raise SystemExit(f"the link job {seen['status']}: {seen.get('failure_message')}")
    from datetime import datetime

    def at(field: str) -> datetime:
        return datetime.fromisoformat(str(seen[field]).replace("Z", "+00:00"))

    import re

    lines = httpx.get(f"{url}/api/v1/jobs/{job['id']}/logs/", headers=auth, timeout=60).json()
    said = next(
        (line["text"] for line in lines["lines"] if "Inputs from object storage" in line["text"]),
        "",
    )
    found = re.search(r"([\d.]+) MiB fetched in ([\d.]+) s, ([\d.]+) MiB already", said)
    fetched_mib, fetch_s, cached_mib = (float(g) for g in found.groups()) if found else (0, 0, 0)
    return {
        "queued_to_ready_s": round((at("finished_at") - at("created_at")).total_seconds(), 2),
        "ran_s": round((at("finished_at") - at("started_at")).total_seconds(), 2),
        "inputs_fetched_mib": fetched_mib,
        "inputs_fetch_s": fetch_s,
        "inputs_cached_mib": cached_mib,
    }


def measure(scratch: Path, download_mib: int, upload_mib: int, job_mib: int) -> dict[str, Any]:
    moto = Moto(scratch)
    results: dict[str, Any] = {"s3_server": "moto 5.2.6 on loopback"}
    try:
        upload_file = big_model(scratch / "upload.onnx", upload_mib)
        download_file = big_model(scratch / "download.onnx", download_mib)
        download_sha = hashlib.sha256(download_file.read_bytes()).hexdigest()
        for storage in ("folder", "bucket"):
            env = hub_env(scratch / storage)
            env.update(
                HUB_MAX_UPLOAD_BYTES=str(4 * 1024 * MiB),
                HUB_QUOTA_STORAGE_BYTES="0",
                HUB_MAX_VERIFY_INPUT_BYTES=str(2 * 1024 * MiB),
                HUB_MAX_VERIFY_MEMORY_BYTES=str(8 * 1024 * MiB),
            )
            if storage == "bucket":
                env.update(moto.env())
            figures: dict[str, Any] = {}
            with runhub(ROOT, env) as (url, pid):
                key = token(ROOT, env)
                figures["upload_whole"] = upload_whole(url, key, upload_file, pid)
                figures["upload_parts"] = upload_parts(url, key, upload_file, pid)
                stored = upload_parts(url, key, download_file, pid)["model"]
                if storage == "bucket":
                    models = [
                        upload_parts(
                            url, key, big_model(scratch / f"j{n}.onnx", job_mib, seed=n + 1), pid
                        )["model"]
                        for n in range(2)
                    ]
                    figures["job_cold_scratch"] = link_job(url, key, models)
                    figures["job_warm_scratch"] = link_job(url, key, models)
            with runhub(ROOT, env) as (url, pid):  # a fresh web process for the download
                figures["download"] = download(url, key, stored, pid, download_sha)
            results[storage] = figures
    finally:
        moto.stop()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--download-mib", type=int, default=1024)
    parser.add_argument("--upload-mib", type=int, default=256)
    parser.add_argument("--job-mib", type=int, default=128)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="hub-object-storage-"))
    try:
        results = measure(scratch, args.download_mib, args.upload_mib, args.job_mib)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for storage in ("folder", "bucket"):
        f = results[storage]
        print(f"== {storage}")
        w, p, d = f["upload_whole"], f["upload_parts"], f["download"]
        print(
            f"upload {args.upload_mib} MiB whole through the web: {w['seconds']} s "
            f"({w['mib_per_s']} MiB/s), web CPU {w['web_cpu_s']} s"
        )
        print(
            f"upload {args.upload_mib} MiB in {p['parts']} part(s) to the {p['to']}: sending "
            f"{p['send_s']} s ({p['send_mib_per_s']} MiB/s, web CPU {p['send_web_cpu_s']} s), "
            f"completing {p['complete_s']} s (web CPU {p['complete_web_cpu_s']} s)"
        )
        print(
            f"download {args.download_mib} MiB: {d['seconds']} s ({d['mib_per_s']} MiB/s), "
            f"web CPU {d['web_cpu_s']} s, web memory peak +{d['web_peak_growth_mib']} MiB"
        )
        for warmth in ("cold", "warm"):
            job = f.get(f"job_{warmth}_scratch")
            if job:
                print(
                    f"link job of two {args.job_mib} MiB models, {warmth} scratch cache: inputs "
                    f"{job['inputs_fetched_mib']} MiB fetched in {job['inputs_fetch_s']} s, "
                    f"{job['inputs_cached_mib']} MiB from the cache; ran {job['ran_s']} s "
                    f"({job['queued_to_ready_s']} s from submit to ready)"
                )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
