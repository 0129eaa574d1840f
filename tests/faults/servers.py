"""Private servers that a fault test starts, stops, pauses (SIGSTOP) and restarts itself, so
that breaking them on purpose never touches the servers the rest of the suite uses."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.helpers import ROOT, LineReader, free_port


class PrivateRedis:
    """A redis-server on a free loopback port, without persistence unless asked."""

    def __init__(self, workdir: Path, *, persistent: bool = False) -> None:
        self.workdir, self.persistent = workdir, persistent
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed (.ci/run installs it)"
        command = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        command += ["--appendonly", "yes" if self.persistent else "no", "--dir", str(self.workdir)]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 20
        while not self.answers():
            assert time.monotonic() < deadline, "the private Redis did not start"
            time.sleep(0.05)

    def answers(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(port=self.port, socket_timeout=0.5).ping())
        except redis.RedisError:
            return False

    def kill(self) -> None:
        """Gone at once, as a crash or an out-of-memory kill leaves it."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def restart(self) -> None:
        self.kill()
        self.start()

    def pause(self) -> None:
        """Stopped, not dead: connections are accepted by the kernel and never answered."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def length(self, queue: str) -> int:
        import redis

        length: Any = redis.Redis(port=self.port).llen(queue)
        return int(length)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.resume()
            self.kill()


class _Proxy:
    """A TCP proxy on a port of its own in front of ``target_port``; subclasses accept."""

    def __init__(self, target_port: int) -> None:
        import socket
        import threading

        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        raise NotImplementedError

    @staticmethod
    def _pipe(source: Any, sink: Any) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(2)


class FaultyProxy(_Proxy):
    """A TCP proxy in front of the live hub that can be made to fail the way a hub whose Redis
    is away does: it drops every open connection and answers every new one with HTTP 503 (a
    refused websocket handshake, a failing API), until it is healed."""

    def __init__(self, target_port: int) -> None:
        import socket

        self.broken = False
        self.open: list[socket.socket] = []
        super().__init__(target_port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def break_(self) -> None:
        self.broken = True
        with self.lock:
            for connection in self.open:
                with contextlib.suppress(OSError):
                    connection.shutdown(2)
            self.open.clear()

    def heal(self) -> None:
        self.broken = False

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.broken:
                with contextlib.suppress(OSError):
                    client.recv(65536)
                    client.sendall(
                        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                        b"Connection: close\r\n\r\n"
                    )
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self.lock:
                self.open += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def close(self) -> None:
        self.listener.close()
        self.break_()


class PrivatePostgres:
    """A PostgreSQL server of its own (initdb in a fresh folder, a free loopback port), that a
    test pauses with SIGSTOP (the server and every backend: connections are accepted by the
    kernel and never answered) and resumes. As root it runs as the ``postgres`` user."""

    def __init__(self) -> None:
        import glob
        import tempfile

        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        assert found, "PostgreSQL's server programs are not installed (.ci/run installs them)"
        self.bin = Path(found[-1]).parent
        self.folder = Path(tempfile.mkdtemp(prefix="hub-pg-"))  # outside root's private tmp
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.as_owner: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
            self.as_owner = ["runuser", "-u", "postgres", "--"]

    @property
    def url(self) -> str:
        return f"postgres://hub:hub@127.0.0.1:{self.port}/hub"

    def start(self) -> None:
        data = self.folder / "data"
        if not data.exists():
            initdb = [str(self.bin / "initdb"), "-D", str(data), "-U", "hub", "--auth=trust"]
            subprocess.run([*self.as_owner, *initdb], check=True, capture_output=True)
        server = [
            str(self.bin / "postgres"), "-D", str(data), "-p", str(self.port),
            "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
            "-c", "fsync=off", "-c", "full_page_writes=off",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            [*self.as_owner, *server],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # one process group: the server and its backends
        )
        deadline = time.monotonic() + 30
        while not self.answers("postgres"):
            assert time.monotonic() < deadline, "the private PostgreSQL did not start"
            time.sleep(0.1)
        if not self.answers("hub"):
            self._sql("postgres", "CREATE DATABASE hub")

    def answers(self, database: str = "hub") -> bool:
        import psycopg

        try:
            with psycopg.connect(self._dsn(database), connect_timeout=1):
                return True
        except psycopg.Error:
            return False

    def _dsn(self, database: str) -> str:
        return f"host=127.0.0.1 port={self.port} user=hub dbname={database}"

    def _sql(self, database: str, statement: str) -> None:
        import psycopg

        with psycopg.connect(self._dsn(database), autocommit=True) as conn:
            conn.execute(statement.encode())

    def pause(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.resume()
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


class CountingProxy(_Proxy):
    """A TCP proxy in front of a Redis that counts the commands each client sends through it,
    by name (RESP arrays: ``*N\\r\\n$len\\r\\nNAME``), so that a test can tell whether a process
    called Redis at all while Redis was paused (the bytes still reach the kernel's buffers)."""

    COMMAND = re.compile(rb"\*\d+\r\n\$\d+\r\n([A-Za-z]+)\r\n")

    def __init__(self, target_port: int) -> None:
        self.commands: Counter[str] = Counter()
        super().__init__(target_port)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def besides(self, *names: str) -> int:
        """Commands sent so far, except those named (a breaker's PING probes)."""
        with self.lock:
            return sum(n for name, n in self.commands.items() if name not in names)

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._count, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    def _count(self, source: Any, sink: Any) -> None:
        pending = b""
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                pending += data
                end = 0
                with self.lock:
                    for match in self.COMMAND.finditer(pending):
                        self.commands[match.group(1).decode().upper()] += 1
                        end = match.end()
                # What follows the last command counted may hold the start of the next one
                # (a name split across two reads): its last bytes are kept for the next read.
                pending = pending[end:][-64:]
                sink.sendall(data)
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(2)

    def close(self) -> None:
        self.listener.close()


@contextlib.contextmanager
def production_web(tmp_path: Path, redis_url: str, **extra: str) -> Iterator[dict[str, str]]:
    """The hub's web process (uvicorn, production profile) on the test database and the given
    Redis, its files under ``tmp_path``; yields its environment (``HUB_BASE_URL`` is its
    address), which the workers of the same hub share."""
    from tests.workers import _database_url

    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "hubsite.settings.base",
        "PYTHONUNBUFFERED": "1",
        "DATABASE_URL": _database_url(),
        "REDIS_URL": redis_url,
        "HUB_MEDIA_ROOT": str(tmp_path / "media"),
        "HUB_DATA_DIR": str(tmp_path / "data"),
        "HUB_BASE_URL": f"http://127.0.0.1:{port}",
        **extra,
    }
    command = [sys.executable, "-m", "uvicorn", "hubsite.asgi:application", "--port", str(port)]
    web = subprocess.Popen(
        [*command, "--lifespan", "off", "--timeout-graceful-shutdown", "2"], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        LineReader(web).wait_for("Uvicorn running", 90)
        yield env
    finally:
        web.terminate()
        web.wait(timeout=30)
