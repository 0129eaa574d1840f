"""``manage.py runhub``: the one command that runs the hub in the embedded profile.

It prepares the database and static files, makes the demo account, starts a job worker, a
generation worker ("Try it" prompts) and a control worker (Celery beat and the reaper) as child
processes, and serves the web application
with uvicorn in this process. A worker that dies is started again; Ctrl-C stops everything.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from jobs.demo import ensure_demo
from jobs.domain.base_models import BUILTIN_NAME, builtin_folder
from jobs.engine.dispatch import worker_queues

RESTART_DELAY = 2.0
STOP_GRACE = 2.5  # seconds the workers get, together, to exit on Ctrl-C before they are killed


class Supervisor:
    """Keeps the worker processes running until told to stop."""

    def __init__(self, commands: dict[str, list[str]]) -> None:
        self.commands = commands
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.stopping = threading.Event()

    def start(self) -> None:
        for name in self.commands:
            self._spawn(name)
        threading.Thread(target=self._watch, name="hub-supervisor", daemon=True).start()

    def _spawn(self, name: str) -> None:
        # A session (process group) of its own: stopping the hub stops the worker and every
        # process its pool forked (a job's training among them), not only the worker itself.
        process = subprocess.Popen(
            self.commands[name],
            cwd=settings.BASE_DIR,
            start_new_session=True,
            stdout=subprocess.PIPE,
        )
        self.processes[name] = process
        threading.Thread(
            target=_relay, args=(process, self.stopping), name=f"hub-{name}-out", daemon=True
        ).start()

    def _watch(self) -> None:
        while not self.stopping.wait(RESTART_DELAY):
            for name, process in list(self.processes.items()):
                if process.poll() is not None and not self.stopping.is_set():
                    print(
                        f"The {name} stopped (exit code {process.returncode}); starting it again.",
                        file=sys.stderr,
                    )
                    self._spawn(name)

    def stop(self) -> None:
        """Ctrl-C: the running jobs go back to the queue first (their worker stops at its next
        step, its claim gone), then the workers get STOP_GRACE seconds to exit."""
        self.stopping.set()
        if self.processes:
            from jobs.engine.reaper import requeue_held_by

            try:
                requeued = requeue_held_by(f"jobs@{socket.gethostname()}")
            except Exception as error:  # the database away: the reaper requeues them later
                print(f"Could not put running jobs back in the queue: {error}", file=sys.stderr)
            else:
                if requeued:
                    print(f"Put {requeued} running job(s) back in the queue.", file=sys.stderr)
        for process in self.processes.values():
            # Cold shutdown: the jobs are back in the queue already, so no worker waits for its
            # task to end (a message not yet acknowledged is delivered again: harmless).
            _signal_group(process, signal.SIGQUIT)
        deadline = time.monotonic() + STOP_GRACE  # for all of them together
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(deadline - time.monotonic(), 0.01))
            _signal_group(process, signal.SIGKILL)  # whatever of its group is left
            process.wait()


# What a Celery worker prints on its standard output when it is told to stop: advice about
# pressing Ctrl-C again, once per worker. The hub stops its workers itself after one Ctrl-C and
# says so; their advice, twice, was wrong (issue 23).
_SHUTDOWN_CHATTER = (
    "worker: Hitting Ctrl+C again",
    "worker: Cold shutdown",
    "worker: Warm shutdown",
)


def _relay(process: subprocess.Popen[bytes], stopping: threading.Event) -> None:
    """Copy a worker's standard output to the hub's, but its shutdown chatter once stopping."""
    assert process.stdout is not None
    for raw in process.stdout:
        line = raw.decode(errors="replace")
        if stopping.is_set() and line.startswith(_SHUTDOWN_CHATTER):
            continue
        sys.stdout.write(line)
        sys.stdout.flush()


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


def _terminated(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def worker_commands() -> dict[str, list[str]]:
    celery = [sys.executable, "-m", "celery", "-A", "hubsite"]
    return {
        "job worker": [
            *celery, "worker", "-n", "jobs@%h", "-Q", worker_queues(),
            "--concurrency", "1", "--loglevel", "INFO", "--without-gossip", "--without-mingle",
        ],
        # "Try it" prompts: one process that keeps the models it answers with loaded (solo
        # pool: no child to lose them with), on a queue no training job waits on.
        "generation worker": [
            *celery, "worker", "-n", "generate@%h", "-Q", settings.HUB_GENERATION_QUEUE,
            "--pool", "solo", "--loglevel", "WARNING", "--without-gossip", "--without-mingle",
        ],
        "control worker": [
            *celery, "worker", "-n", "control@%h", "-Q", settings.HUB_CONTROL_QUEUE, "--pool", "solo",
            "--beat", "--loglevel", "WARNING", "--without-gossip", "--without-mingle",
        ],
    }  # fmt: skip


# Clients send the hub a few dozen bytes at a time over a socket; uvicorn's default is 16 MiB.
WS_MAX_MESSAGE = 64 * 1024


class Command(BaseCommand):
    help = "Prepare the database and static files, create the demo account, and serve the hub."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=os.environ.get("HUB_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("HUB_PORT", "8000")))
        parser.add_argument(
            "--no-demo", action="store_true", help="Do not create the demo account."
        )
        parser.add_argument(
            "--no-worker", action="store_true", help="Serve pages only; run no jobs."
        )
        parser.add_argument(
            "--access-log",
            action="store_true",
            help="Print a line per HTTP request (off: a live page makes many, errors show anyway).",
        )

    def handle(
        self,
        *args: Any,
        host: str,
        port: int,
        no_demo: bool,
        no_worker: bool,
        access_log: bool = False,
        **options: Any,
    ) -> None:
        if not builtin_folder().exists():  # migrate makes it
            self.stdout.write(
                f"Making the built-in model {BUILTIN_NAME} (once, a few seconds, no download) …"
            )
        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        _fresh_metrics()
        address = f"http://{'localhost' if host in ('0.0.0.0', '::') else host}:{port}/"
        if "HUB_BASE_URL" not in os.environ:
            # Job links (pages, API, the workers' emails) point where this server listens.
            os.environ["HUB_BASE_URL"] = settings.HUB_BASE_URL = address.rstrip("/")
        lines = [f"Model Job Hub ({settings.HUB_PROFILE} profile) is starting at {address}"]
        if not no_demo:
            demo = ensure_demo()
            secret = demo.password or "(changed since it was made; the admin can reset it)"
            lines.append(f"  Demo account: {demo.username} / {secret}")
        lines.append(f"  Data directory: {settings.DATA_DIR}")
        lines.append(
            "  Jobs run on a worker started beside the web server."
            if not no_worker
            else "  No worker: jobs wait."
        )
        lines.append("  Stop with Ctrl-C.")
        self.stdout.write("\n".join(lines))
        self.stdout.flush()
        supervisor = Supervisor({} if no_worker else worker_commands())
        supervisor.start()
        # A service manager stops the hub with SIGTERM. uvicorn shuts down on it and then
        # raises it again, which by default ends the process at once: the workers would be
        # left running. Raised as an exception instead, it reaches the ``finally`` below.
        signal.signal(signal.SIGTERM, _terminated)
        try:
            self._serve(host, port, access_log)
        finally:
            supervisor.stop()

    def _serve(self, host: str, port: int, access_log: bool) -> None:
        import uvicorn

        uvicorn.run(
            "hubsite.asgi:application",
            host=host,
            port=port,
            lifespan="off",
            log_level="info",
            # A line per request (every page's polls and sockets) buries what an operator
            # needs; uvicorn's errors and start and stop lines are kept.
            access_log=access_log,
            ws_max_size=WS_MAX_MESSAGE,
            # Each message is small and goes to many sockets: compressing it for each of them
            # costs the web process more than the bytes it saves (docs/performance.md).
            ws_per_message_deflate=False,
            # The hub reads X-Forwarded-For itself, from HUB_TRUSTED_PROXIES only; uvicorn's
            # own rule would believe it from any process of this machine.
            proxy_headers=False,
            # Ctrl-C stops the hub within seconds even while pages hold websockets open.
            timeout_graceful_shutdown=2,
        )


def _fresh_metrics() -> None:
    """The processes this command starts count from zero: files of earlier runs' processes
    (prometheus_client's multiprocess mode, hubsite/metrics.py) are removed first."""
    folder = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    if folder != Path(settings.DATA_DIR) / "metrics" / socket.gethostname():
        return  # a folder someone else set (and empties): not this command's to empty
    for old in folder.glob("*.db"):
        old.unlink(missing_ok=True)
