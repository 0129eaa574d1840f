"""Live figures: how fast a job's events reach open sockets, and what many open pages cost.

bench.py runs these against the hub's web process (uvicorn, production profile). Watchers are
websocket clients in this process that behave as the job page does (a heartbeat ahead of what
they have makes them ask for the rest). Events are published from this process as a worker's
would be (``jobs.domain.events.publish`` in a transaction, or the progress reporter), each
carrying the moment it was made, so that a watcher's latency is its arrival time minus that:
one process, one clock.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path
from typing import Any

import orjson


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


class Watcher:
    """One open job page: what it received, when, and whether it was told of gaps."""

    def __init__(self) -> None:
        self.seq = -1
        self.arrived: dict[int, float] = {}  # seq → arrival (perf_counter)
        self.made: dict[int, float] = {}  # seq → when the event was made, as it says
        self.gaps = 0
        self.snapshot = asyncio.Event()
        self.socket: Any = None
        self.task: asyncio.Task[None] | None = None

    async def open(self, url: str, token: str, job: str) -> None:
        from websockets.asyncio.client import connect

        self.socket = await connect(
            f"{url.replace('http', 'ws', 1)}/ws/jobs/{job}/",
            additional_headers={"Authorization": f"Token {token}"},
            origin=url,  # type: ignore[arg-type]
            open_timeout=120,
            max_queue=None,
        )
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for raw in self.socket:
            message = orjson.loads(raw)
            kind = message["type"]
            if kind == "snapshot":
                self.seq = message["seq"]
                self.snapshot.set()
            elif kind == "event":
                now = time.perf_counter()
                seq = message["seq"]
                self.seq = max(self.seq, seq)
                if seq not in self.arrived:
                    self.arrived[seq] = now
                    made = message["data"].get("made")
                    if made is not None:
                        self.made[seq] = made
            elif kind == "heartbeat" and message["seq"] > self.seq >= 0:
                await self.socket.send(orjson.dumps({"type": "catch_up", "after": self.seq}))
            elif kind == "gap":
                self.gaps += 1

    async def close(self) -> None:
        await self.socket.close()
        if self.task is not None:
            self.task.cancel()


async def open_watchers(url: str, token: str, job: str, count: int) -> list[Watcher]:
    watchers = [Watcher() for _ in range(count)]
    await asyncio.gather(*(w.open(url, token, job) for w in watchers))
    await asyncio.gather(*(w.snapshot.wait() for w in watchers))
    return watchers


def publish_events(job_id: int, count: int, per_second: float | None) -> list[int]:
    """Publish ``count`` events of the job, paced at ``per_second`` (None: at once); their
    sequence numbers."""
    from django.db import connection, transaction

    from jobs.domain.events import EventType, publish
    from jobs.models import Job

    job = Job.objects.get(pk=job_id)
    seqs = []
    start = time.perf_counter()
    try:
        for n in range(count):
            if per_second is not None:  # pace the events at the rate asked for
                time.sleep(max(0.0, start + n / per_second - time.perf_counter()))
            with transaction.atomic():
                payload = {"message": f"event {n}", "made": time.perf_counter()}
                seqs.append(publish(job, EventType.LOG, payload))
    finally:
        connection.close()
    return seqs


def cpu_seconds(pid: int) -> float:
    """CPU time (user and system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def fanout(
    url: str,
    token: str,
    job: Any,
    watchers: int,
    events: int,
    per_second: float | None,
    web_pid: int,
) -> dict[str, Any]:
    """``watchers`` open pages of one job; ``events`` published at ``per_second``; each page
    must get every one (live or repaired). Latency counts only events that arrived. The CPU
    time of the web process and of this one (the watchers) says which of them was busy."""
    pages = await open_watchers(url, token, job.public_id, watchers)
    web_cpu, own_cpu, started = cpu_seconds(web_pid), time.process_time(), time.perf_counter()
    seqs = await asyncio.to_thread(publish_events, job.pk, events, per_second)
    wanted = set(seqs)
    deadline = time.perf_counter() + 10  # a lost event is repaired within a tick or two
    while time.perf_counter() < deadline and any(wanted - set(p.arrived) for p in pages):
        await asyncio.sleep(0.05)
    latencies = [
        (page.arrived[s] - page.made[s]) * 1000 for page in pages for s in wanted if s in page.made
    ]
    delivered = sum(len(wanted & set(page.arrived)) for page in pages)
    busy = {
        "seconds": round(time.perf_counter() - started, 1),
        "web_cpu_s": round(cpu_seconds(web_pid) - web_cpu, 1),
        "watchers_cpu_s": round(time.process_time() - own_cpu, 1),
    }
    result = {
        "watchers": watchers,
        "events_per_s": per_second if per_second is not None else "burst",
        "sent": len(seqs) * watchers,
        "delivered": delivered,
        "gaps_repaired": sum(page.gaps for page in pages),
        "p50_ms": round(percentile(latencies, 50), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
        **busy,
    }
    await asyncio.gather(*(page.close() for page in pages))
    return result


def report_roundtrip(url: str, token: str, owner: Any, reports: int) -> dict[str, Any]:
    """One progress report, from the runner's call to an open page: the reporter as a worker
    uses it (with its heartbeat thread), with its default pacing, a report every 100 ms as a
    training loop might."""
    from django.db import connection

    from benchmarks.common import running_job
    from jobs.engine.execution import Heartbeat
    from jobs.engine.reporter import Reporter

    job, claim = running_job(owner, "roundtrip")
    done = threading.Event()
    arrivals: dict[int, float] = {}

    async def watch() -> None:
        from websockets.asyncio.client import connect

        async with connect(
            f"{url.replace('http', 'ws', 1)}/ws/jobs/{job.public_id}/",
            additional_headers={"Authorization": f"Token {token}"},
            origin=url,  # type: ignore[arg-type]
        ) as socket:
            opened.set()
            while not done.is_set():
                try:
                    raw = await asyncio.wait_for(socket.recv(), 0.5)
                except TimeoutError:
                    continue
                message = orjson.loads(raw)
                if message.get("event") == "progress":
                    step = message["data"].get("steps_completed")
                    arrivals.setdefault(step, time.perf_counter())

    opened = threading.Event()
    thread = threading.Thread(target=lambda: asyncio.run(watch()), daemon=True)
    thread.start()
    opened.wait(30)
    reporter = Reporter(job, claim)
    made: dict[int, float] = {}
    with Heartbeat(reporter, every=5):  # as a worker runs it: it writes what waits too long
        for step in range(1, reports + 1):
            made[step] = time.perf_counter()
            reporter.progress(steps_completed=step)
            time.sleep(0.1)  # the pace of a training loop's reports; not part of any figure
    reporter.flush()
    deadline = time.perf_counter() + 5
    while len(arrivals) < reports and time.perf_counter() < deadline:
        time.sleep(0.05)
    done.set()
    thread.join(5)
    connection.close()
    # The reporter coalesces reports between its writes: a report has reached the page when
    # the page shows it or a later one.
    latencies = []
    for step, at in made.items():
        shown = [arrived for seen, arrived in arrivals.items() if seen >= step]
        if shown:
            latencies.append((min(shown) - at) * 1000)
    return {
        "p50": round(percentile(latencies, 50), 2),
        "p99": round(percentile(latencies, 99), 2),
        "shown": len(latencies),
        "reports": reports,
    }


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def transactions() -> int:
    """PostgreSQL's count of the benchmark database's transactions so far."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database"
            " WHERE datname = current_database()"
        )
        return int(cursor.fetchone()[0])


async def many_pages(url: str, token: str, job: Any, pages: int, web_pid: int) -> dict[str, Any]:
    """``pages`` pages of one job opened at once: the time until every one has its snapshot,
    the web process's CPU time and the database's transactions meanwhile, and the web process's
    memory with them all open."""
    before = rss_mb(web_pid)
    cpu, count = cpu_seconds(web_pid), await asyncio.to_thread(transactions)
    started = time.perf_counter()
    watchers = await open_watchers(url, token, job.public_id, pages)
    opened = time.perf_counter() - started
    cpu = cpu_seconds(web_pid) - cpu
    await asyncio.sleep(1)  # PostgreSQL's statistics are sent when a backend is idle a while
    count = await asyncio.to_thread(transactions) - count
    await asyncio.sleep(1)  # a couple of heartbeats: what open sockets hold while they idle
    with_them = rss_mb(web_pid)
    await asyncio.gather(*(w.close() for w in watchers))
    return {
        "open_pages_s": round(opened, 2),
        "open_pages_web_cpu_ms_a_page": round(cpu * 1000 / pages, 2),
        "open_pages_transactions_a_page": round(count / pages, 2),
        "web_rss_mb": round(with_them, 1),
        "web_rss_mb_before": round(before, 1),
        "kb_per_socket": round((with_them - before) * 1024 / pages, 1),
    }


def run(url: str, token: str, owner: Any, web_pid: int, sizes: dict[str, Any]) -> dict[str, Any]:
    from django.db import connection

    from jobs.models import Job, JobKind

    def job(name: str) -> Job:
        return Job.objects.create(owner=owner, name=name, kind=JobKind.LINK)

    results: dict[str, Any] = {
        "report_roundtrip_ms": report_roundtrip(url, token, owner, sizes["reports"])
    }
    rate, seconds = 10.0, sizes["fanout_seconds"]

    async def scenarios() -> dict[str, Any]:
        runs = []
        for watchers in sizes["watchers"]:
            target = await asyncio.to_thread(job, f"fanout-{watchers}")
            runs.append(
                await fanout(url, token, target, watchers, int(rate * seconds), rate, web_pid)
            )
        target = await asyncio.to_thread(job, "burst")
        runs.append(
            await fanout(
                url, token, target, sizes["burst_watchers"], sizes["burst_events"], None, web_pid
            )
        )
        target = await asyncio.to_thread(job, "pages")
        pages = await many_pages(url, token, target, sizes["pages"], web_pid)
        return {"fanout": runs, **pages}

    measured = asyncio.run(scenarios())
    connection.close()
    results["fanout"] = measured["fanout"]
    results["open_1000_pages_s"] = measured["open_pages_s"]
    results["open_pages_web_cpu_ms_a_page"] = measured["open_pages_web_cpu_ms_a_page"]
    results["open_pages_transactions_a_page"] = measured["open_pages_transactions_a_page"]
    results["web_rss_mb_1000_sockets"] = measured["web_rss_mb"]
    results["web_rss_mb_no_sockets"] = measured["web_rss_mb_before"]
    results["kb_per_socket"] = measured["kb_per_socket"]
    return results
