"""Hyperparameters of a customization job: names, defaults and the ranges they must lie in."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from django.core.exceptions import ValidationError


@dataclass(frozen=True)
class Range:
    low: float
    high: float
    integer: bool
    low_inclusive: bool = True

    def describe(self) -> str:
        low = "≥" if self.low_inclusive else ">"
        kind = "a whole number" if self.integer else "a number"
        return f"{kind} {low} {self.low:g} and ≤ {self.high:g}"

    def admits(self, value: float) -> bool:
        above = value >= self.low if self.low_inclusive else value > self.low
        return above and value <= self.high


RANGES: dict[str, Range] = {
    "epochs": Range(1, 1000, integer=True),
    "batch_size": Range(1, 4096, integer=True),
    "learning_rate": Range(0, 1, integer=False, low_inclusive=False),
    "log_every_n_steps": Range(1, 100_000, integer=True),
    "early_stopping_patience": Range(0, 1000, integer=True),
}


@dataclass(frozen=True)
class Hyperparameters:
    epochs: int = 5
    batch_size: int = 16
    learning_rate: float = 0.005
    log_every_n_steps: int = 1
    # Epochs without a better validation loss before training stops; 0 turns early stopping off.
    early_stopping_patience: int = 3

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_hyperparameters(data: object) -> Hyperparameters:
    """Validate a mapping of hyperparameters, filling defaults; errors name every bad field."""
    if data is None:
        return Hyperparameters()
    if not isinstance(data, dict):
        raise ValidationError(
            {"hyperparameters": "Hyperparameters must be an object of name: value."}
        )
    known = {f.name for f in fields(Hyperparameters)}
    errors: dict[str, str] = {}
    for name in sorted(set(data) - known):
        errors[name] = f"Unknown hyperparameter {name!r}; known ones: {', '.join(sorted(known))}."
    values: dict[str, Any] = {}
    for name in known & set(data):
        value, rule = data[name], RANGES[name]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or (rule.integer and not float(value).is_integer())
            or not math.isfinite(value)
            or not rule.admits(value)
        ):
            errors[name] = f"{name} must be {rule.describe()}, not {value!r}."
        else:
            values[name] = int(value) if rule.integer else float(value)
    if errors:
        raise ValidationError(errors)
    return Hyperparameters(**values)
