"""Runs tracked from outside: training that runs here (a laptop, a cluster node) and reports to
the hub, which shows it live, charts it and shares it like any job it ran itself.

    run = hub.start_run(name="llama-lora", params={"lr": 3e-4}, epochs=3)
    for step, batch in enumerate(loader, 1):
        ...
        run.log(step=step, train_loss=loss.item())
    run.finish()

``log`` and ``set_status`` only buffer: a background thread sends what piled up every
``flush_every`` seconds (at most 10,000 points a request), so a training loop pays nothing for
the network, and a hub that is briefly away costs a retry, not the run. Each report carries a
number, so one sent again after a lost answer is not written twice. The answer to a report says
whether the job's owner asked to cancel (``cancel_requested``). Used as a context manager, a run
that raises ends ``failed`` (or ``cancelled`` on Ctrl-C) with the exception's words.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import math
import re
import threading
import time
from collections import defaultdict
from typing import Any

from hubclient.connection import Connection
from hubclient.errors import BadInputError, ConflictError, HubError
from hubclient.jobs import Job, job_from

logger = logging.getLogger("hubclient")

MAX_REPORT_POINTS = 10_000  # the hub's limit for one report
MAX_REPORT_LINES = 1_000  # log lines in one report
KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")
DETAILS = frozenset(
    {
        "epochs_completed",
        "steps_completed",
        "training_samples",
        "best_epoch",
        "train_loss",
        "val_loss",
        "epochs",
        "total_steps",
    }
)
# Seconds: a run with nothing to report still asks this often, so that it hears of a cancel
# (the answer to a report is the only way it does) while its training is quiet: a slow step, an
# evaluation, a loop blocked in a callback. Each ask also says the run is alive.
KEEPALIVE = 2.0
RETRY_MAX = 30.0  # seconds between retries at most while the hub is away


# The hub's log quotas (HUB_QUOTA_RUN_LOG_LINES, …): a report refused by one is sent again
# without its log lines.
LOG_QUOTAS = ("run_log_lines", "run_log_bytes", "log_lines_per_hour", "log_bytes_per_hour")


def _transient(error: HubError) -> bool:
    """Worth sending again: the hub could not be reached, or said it cannot take it now."""
    return error.status is None or error.status in (429, 502, 503, 504)


class Run:
    """A run the hub tracks from outside; made by ``Client.start_run``."""

    def __init__(
        self, client: Connection, data: dict[str, Any], *, flush_every: float = 0.5
    ) -> None:
        self._client = client
        self.job: Job = job_from(client, data)
        self.id: str = data["id"]
        self.url: str = data["url"]
        self.status: str = data["status"]
        self.cancel_requested = False
        self.flush_every = flush_every
        self._points: dict[str, list[list[Any]]] = defaultdict(list)
        self._buffered = 0
        self._details: dict[str, Any] = {}
        self._lines: list[dict[str, str]] = []
        self._batch = 0
        self._pending: dict[str, Any] | None = None  # taken from the buffers, not yet acknowledged
        self._last_sent = time.monotonic()
        self._lock = threading.Lock()  # the buffers
        self._sending = threading.Lock()  # one report in flight at a time
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._over = False  # the hub said the run has ended: nothing more is sent
        self.dropped_lines = 0  # log lines the hub's log quotas refused (the reports went on)
        self._thread = threading.Thread(target=self._loop, name=f"hub-run-{self.id}", daemon=True)
        self._thread.start()
        atexit.register(self._at_exit)

    def __repr__(self) -> str:
        return f"Run({self.id!r}, status={self.status!r})"

    # What the training reports

    def log(self, step: int, **values: float | None) -> None:
        """Points of one step: ``run.log(step=10, train_loss=2.1, learning_rate=3e-4)``. A
        ``loss`` of NaN or infinity (or None) is recorded as a gap in its series."""
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"step must be a whole number ≥ 0, not {step!r}")
        rows: list[tuple[str, float | None]] = []
        for key, value in values.items():
            if not KEY.fullmatch(key):
                raise ValueError(f"Series name {key!r} must be 1 to 64 letters, digits, _ or -.")
            if value is not None and not isinstance(value, int | float):
                try:
                    value = float(value)  # a 0-d tensor, a numpy number
                except (TypeError, ValueError):
                    raise TypeError(f"{key}={value!r} is not a number") from None
            number = None if value is None or not math.isfinite(value) else float(value)
            rows.append((key, number))
        with self._lock:
            for key, number in rows:
                self._points[key].append([step, number])
            self._buffered += len(rows)
            full = self._buffered >= MAX_REPORT_POINTS
        if full:
            self._wake.set()

    def log_text(self, text: str, level: str = "info") -> None:
        """Lines for the run's log on the hub (``level`` info, warning or error), sent with the
        next report: ``run.log_text("loaded 12,000 examples")``."""
        if level not in ("info", "warning", "error"):
            raise ValueError(f"level must be info, warning or error, not {level!r}")
        with self._lock:
            self._lines += [{"text": line, "level": level} for line in str(text).splitlines()]
            full = len(self._lines) >= MAX_REPORT_LINES
        if full:
            self._wake.set()

    def set_status(self, **details: int | float | None) -> None:
        """Status details, sent with the next report: ``epochs_completed``, ``steps_completed``,
        ``training_samples``, ``best_epoch``, ``train_loss``, ``val_loss`` (of the best
        checkpoint, as seed 004 means them), and the plan: ``epochs``, ``total_steps``."""
        unknown = set(details) - DETAILS
        if unknown:
            raise ValueError(
                f"Not a status detail: {', '.join(sorted(unknown))} (known: {', '.join(sorted(DETAILS))})"
            )
        with self._lock:
            self._details.update(details)

    def flush(self, timeout: float = 60.0) -> None:
        """Send everything buffered now; while the hub is away, retry until ``timeout``."""
        deadline = time.monotonic() + timeout
        delay = 0.5
        while True:
            try:
                self._send()
                return
            except HubError as error:
                if not _transient(error) or time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)

    def finish(self, status: str = "completed", message: str | None = None) -> Job:
        """End the run: ``completed`` (asked to cancel, it ends ``cancelled``), ``failed`` or
        ``cancelled``, with a message the page shows. Calling it again changes nothing."""
        if self._over:
            return self.job.refresh()
        self._stopped.set()
        self._wake.set()
        self._thread.join(timeout=10)
        # Ended already (cancelled while unknown, out of time), or refused and logged: finish
        # still says how it ended.
        with contextlib.suppress(ConflictError, BadInputError):
            self.flush()
        body = {"status": status, "message": (message or "")[:2000]}
        data = self._client.request("POST", f"/api/v1/jobs/{self.id}/finish/", json=body)
        self._over = True
        atexit.unregister(self._at_exit)
        self.job = job_from(self._client, data)
        self.status = data["status"]
        return self.job

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, _: Any
    ) -> None:
        if self._over:
            return
        if kind is None:
            self.finish()
        elif issubclass(kind, KeyboardInterrupt):
            self.finish("cancelled", "Interrupted (Ctrl-C) where it ran.")
        else:
            self.finish("failed", f"{kind.__name__}: {error}"[:2000])

    # Sending

    def _loop(self) -> None:
        delay = 0.5
        while not self._stopped.is_set():
            self._wake.wait(self.flush_every)
            self._wake.clear()
            if self._stopped.is_set():
                return  # finish() sends the rest itself, and waits for it
            try:
                self._send(keepalive=True)
                delay = 0.5
            except HubError as error:
                if not _transient(error):
                    continue  # _send said why and dropped what cannot be taken
                logger.warning(
                    "Run %s: the hub is away (%s); retrying in %.1f s", self.id, error, delay
                )
                self._stopped.wait(delay)
                delay = min(delay * 2, RETRY_MAX)

    def _send(self, keepalive: bool = False) -> None:
        """Send what is pending (again) and then what is buffered, a report at a time."""
        with self._sending:
            while not self._over:
                if self._pending is None:
                    self._pending = self._take(keepalive)
                    if self._pending is None:
                        return
                try:
                    answer = self._client.request(
                        "POST", f"/api/v1/jobs/{self.id}/report/", json=self._pending
                    )
                except ConflictError as error:  # the run has ended (cancelled, out of time)
                    self._over, self._pending = True, None
                    logger.warning("Run %s takes no more reports: %s", self.id, error)
                    raise
                except BadInputError as error:  # never taken, however often sent: say so, go on
                    self._pending = None
                    logger.error("Run %s: the hub refused a report: %s", self.id, error)
                    raise
                except HubError as error:
                    if error.status != 429 or error.field not in LOG_QUOTAS:
                        raise
                    # The hub keeps no more of this run's log now (a quota its operator sets):
                    # the report goes again without its lines, so points and status still
                    # arrive. Sending it again as it was would be refused as long as the run.
                    self.dropped_lines += len(self._pending.get("logs") or [])
                    self._pending["logs"] = []
                    logger.warning("Run %s: %s", self.id, error.message)
                    continue
                self._pending, keepalive = None, False
                self._last_sent = time.monotonic()
                self.status = answer["status"]
                self.cancel_requested = bool(answer["cancel_requested"])

    def _take(self, keepalive: bool) -> dict[str, Any] | None:
        """The next report from the buffers (at most MAX_REPORT_POINTS points), numbered; None
        when there is nothing to send and no keep-alive is due."""
        with self._lock:
            quiet = time.monotonic() - self._last_sent >= KEEPALIVE
            if (
                not self._buffered
                and not self._details
                and not self._lines
                and not (keepalive and quiet)
            ):
                return None
            metrics: dict[str, list[list[Any]]] = {}
            room = MAX_REPORT_POINTS
            for key in list(self._points):
                rows = self._points[key]
                metrics[key], rest = rows[:room], rows[room:]
                room -= len(metrics[key])
                if rest:
                    self._points[key] = rest
                else:
                    del self._points[key]
                if room == 0:
                    break
            self._buffered -= MAX_REPORT_POINTS - room
            details, self._details = self._details, {}
            lines, self._lines = self._lines[:MAX_REPORT_LINES], self._lines[MAX_REPORT_LINES:]
            self._batch += 1
            return {"batch": self._batch, "metrics": metrics, "status": details, "logs": lines}

    def _at_exit(self) -> None:
        """The interpreter is ending without ``finish``: send what is buffered (the hub marks
        the run unknown once it stays silent)."""
        self._stopped.set()
        with contextlib.suppress(HubError):
            self.flush(timeout=5)
