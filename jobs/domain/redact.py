"""Server paths out of everything people see: status messages and details, job logs, upload
errors. Exceptions from onnx, onnxruntime, torch or the file system name files by their absolute
paths (the media folder, a worker's temporary folder, the virtualenv), which tell an outsider how
the server is laid out and are of no use to the person reading."""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from django.conf import settings

# Any remaining absolute path of two or more parts: /a/b, /a/b/c.onnx
# (not after a word, a URL's colon or slash, or a folder already named: <media>/models/x)
_ABSOLUTE = re.compile(r"(?<![\w.:/>])/(?:[\w.@+-]+/)+([\w.@+-]+)")


def _known_roots() -> list[tuple[str, str]]:
    roots = [
        (settings.MEDIA_ROOT, "<media>"),
        (settings.DATA_DIR, "<data>"),
        (tempfile.gettempdir(), "<tmp>"),
        (sys.prefix, "<python>"),
        (settings.BASE_DIR, "<hub>"),
    ]
    resolved = [(str(Path(str(root)).resolve()), label) for root, label in roots if root]
    # Longest first: the media folder lies inside the data folder, which may lie in the hub's.
    return sorted(resolved, key=lambda pair: len(pair[0]), reverse=True)


def storable(value: Any) -> Any:
    """``value`` with each NUL character in its strings (nested in lists and dicts) replaced by
    U+FFFD: PostgreSQL's text and JSON cannot hold NUL, and a model's generated text (a sample
    from an untrained model) or an exception's message may contain one."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, list | tuple):
        return [storable(v) for v in value]
    if isinstance(value, dict):
        return {k: storable(v) for k, v in value.items()}
    return value


def scrub_paths(text: str) -> str:
    """``text`` with server paths replaced: a known folder by its name in angle brackets
    (``<media>/models/m…/x.onnx``), any other absolute path by its last part (``…/x.onnx``);
    storable (no NUL)."""
    text = storable(text)
    if "/" not in text:
        return text
    for root, label in _known_roots():
        text = text.replace(root, label)
    return _ABSOLUTE.sub(lambda match: f"…/{match.group(1)}", text)


def library_message(error: BaseException, limit: int = 300) -> str:
    """A library's error as a person reads it: all its lines joined (the first line alone is
    often cut mid-sentence: "… from one of: "), at most ``limit`` characters, without server
    paths; the exception's name when it says nothing."""
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    text = scrub_paths(text) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"
