"""What goes into a job's log besides its runner's own lines: warnings of the libraries it runs
(transformers, torch, peft, onnx, Python's ``warnings``) while it runs, and, when it fails inside
the hub, where (modules and lines, no server paths).

A library's deprecation (DeprecationWarning, PendingDeprecationWarning, FutureWarning raised in
an installed package or the standard library) is about the deployment, not the user's job: it
goes to the operator's log (this module's logger), not the job's."""

from __future__ import annotations

import logging
import sysconfig
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import PurePath
from typing import Any, TextIO

from jobs.engine.reporter import Reporter
from jobs.models import LogLevel

# The hub's own machinery logs to the worker's log, not the job's: its messages are about the
# deployment (connections, queues, retries), not the job.
HUB_LOGGERS = ("jobs", "hubsite", "sharing", "celery", "kombu", "amqp", "django", "redis")
# Libraries that stop their records at their own handler (propagate off): listened to directly.
LIBRARY_LOGGERS = ("transformers", "peft", "accelerate", "torch", "onnxscript")
FRAMES = 8  # of a failure's traceback, the innermost
DEPRECATIONS = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)
# Where libraries live: installed packages, and the standard library (copyreg, say, warns for
# torch when a pickled LeafSpec is read).
_LIBRARY_ROOTS = tuple(
    {str(PurePath(p)) for p in (sysconfig.get_path("stdlib"), sysconfig.get_path("platstdlib"))}
)

logger = logging.getLogger(__name__)


class _ToJobLog(logging.Handler):
    def __init__(self, reporter: Reporter) -> None:
        super().__init__(level=logging.WARNING)
        self.reporter = reporter

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.split(".", 1)[0] in HUB_LOGGERS:
            return
        try:
            level = LogLevel.ERROR if record.levelno >= logging.ERROR else LogLevel.WARNING
            said = record.levelname.lower()
            if record.name != "py.warnings":  # Python's warnings say where they come from
                said += f" ({record.name})"
            self.reporter.log(f"{said}: {record.getMessage()}", level)
        except Exception:  # a log line must never break the job it describes
            self.handleError(record)


@contextmanager
def library_warnings_into(reporter: Reporter) -> Iterator[None]:
    """While the job runs (one job per worker process), library warnings also go to its log."""
    handler = _ToJobLog(reporter)
    listened = [logging.getLogger()] + [
        logging.getLogger(name) for name in LIBRARY_LOGGERS if not logging.getLogger(name).propagate
    ]
    for listener in listened:
        listener.addHandler(handler)
    logging.captureWarnings(True)
    to_logging = warnings.showwarning  # logging's: to py.warnings, so to the job's log
    warnings.showwarning = _sorting(to_logging)
    try:
        yield
    finally:
        warnings.showwarning = to_logging
        logging.captureWarnings(False)
        for listener in listened:
            listener.removeHandler(handler)


def from_a_library(filename: str) -> bool:
    parts = PurePath(filename).parts
    return (
        "site-packages" in parts or "dist-packages" in parts or filename.startswith(_LIBRARY_ROOTS)
    )


def _sorting(to_job_log: Any) -> Any:
    """A ``warnings.showwarning`` that sends a library's deprecation to the operator's log and
    every other warning on to ``to_job_log``."""

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        if issubclass(category, DEPRECATIONS) and from_a_library(filename):
            logger.info(
                "library deprecation: %s: %s (%s:%s)",
                category.__name__,
                message,
                _where(filename),
                lineno,
            )
            return
        to_job_log(message, category, filename, lineno, file, line)

    return show


def _where(filename: str) -> str:
    """A source file as a module people recognise (``transformers/trainer.py``), never the
    folder it is installed in."""
    parts = PurePath(filename).parts
    for anchor in ("site-packages", "dist-packages"):
        if anchor in parts:
            return "/".join(parts[parts.index(anchor) + 1 :])
    for package in ("jobs", "hubsite", "sharing"):
        if package in parts:
            return "/".join(parts[len(parts) - 1 - parts[::-1].index(package) :])
    return PurePath(filename).name


def failure_summary(error: BaseException) -> str:
    """The exception and its innermost frames, one per line, as module, line and function."""
    frames = traceback.extract_tb(error.__traceback__)[-FRAMES:]
    lines = [f"{type(error).__name__}: {error}", "where (innermost last):"]
    lines += [f"  {_where(f.filename)}:{f.lineno} in {f.name}" for f in frames]
    return "\n".join(lines)
