"""What goes into a job's log besides its runner's own lines: warnings of the libraries it runs
(transformers, torch, peft, onnx, Python's ``warnings``) while it runs, and, when it fails inside
the hub, where (modules and lines, no server paths)."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import PurePath

from jobs.engine.reporter import Reporter
from jobs.models import LogLevel

# The hub's own machinery logs to the worker's log, not the job's: its messages are about the
# deployment (connections, queues, retries), not the job.
HUB_LOGGERS = ("jobs", "hubsite", "sharing", "celery", "kombu", "amqp", "django", "redis")
# Libraries that stop their records at their own handler (propagate off): listened to directly.
LIBRARY_LOGGERS = ("transformers", "peft", "accelerate", "torch", "onnxscript")
FRAMES = 8  # of a failure's traceback, the innermost


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
    for logger in listened:
        logger.addHandler(handler)
    logging.captureWarnings(True)
    try:
        yield
    finally:
        logging.captureWarnings(False)
        for logger in listened:
            logger.removeHandler(handler)


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
