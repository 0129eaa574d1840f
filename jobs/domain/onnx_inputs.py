"""The inputs an ONNX model declares, and whether the hub can afford to verify it with them:
checked at upload (jobs/domain/files.py) and again by the link runner before it verifies."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from django.conf import settings


class InputTooLarge(Exception):
    """A model declares an input too large to verify with (the model's fault, not the hub's)."""


def sample_dims(shape: Sequence[Any]) -> list[int]:
    """The dimensions of a test input: a symbolic one (batch, sequence length) gets 2, small and
    not a degenerate 1."""
    return [d if isinstance(d, int) and d > 0 else 2 for d in shape]


def check_input_size(name: str, shape: Sequence[Any], itemsize: int, label: str) -> None:
    """Refuse an input whose test tensor would pass HUB_MAX_VERIFY_INPUT_BYTES: a model of a
    few bytes can declare a shape that takes gigabytes to allocate."""
    dims = sample_dims(shape)
    size = math.prod(dims) * itemsize
    if size > settings.HUB_MAX_VERIFY_INPUT_BYTES:
        raise InputTooLarge(
            f"{label}: input {name} declares shape {dims}, {size} bytes to verify; this hub "
            f"verifies with inputs of at most {settings.HUB_MAX_VERIFY_INPUT_BYTES} bytes "
            "(HUB_MAX_VERIFY_INPUT_BYTES)."
        )
