"""The derived values of seed 004, as pure functions.

steps_per_epoch = ceil(n / batch_size), where n is the number of training samples when a
validation dataset is given, and ceil(0.9 × training samples) when 10% of the training dataset is
held out for validation instead (at least one sample held out, so n = training samples - 1 below
10 samples). The seed's second formula (dividing by epochs once more)
contradicts its first and its definition of total_steps; DESIGN.md follows the first.
"""

from __future__ import annotations

import math
from datetime import datetime

HOLDOUT_NUMERATOR = 1  # 10% of the training samples validate when no validation dataset is given
HOLDOUT_DENOMINATOR = 10
# The fewest training samples that can both train and validate without a validation dataset.
MIN_SAMPLES_WITHOUT_VALIDATION = 2


def training_split(training_samples: int, has_validation_dataset: bool) -> tuple[int, int]:
    """(samples trained on, samples held out) for a training dataset of this size."""
    if has_validation_dataset:
        return training_samples, 0
    # ceil(0.9 × n) in integers, so that no floating-point rounding decides a step count.
    kept = -(-(HOLDOUT_DENOMINATOR - HOLDOUT_NUMERATOR) * training_samples // HOLDOUT_DENOMINATOR)
    # Below 10 rows ceil(0.9 × n) is n: nothing would validate and the run would have no
    # validation loss, so one row is held out whenever there are two (submit refuses fewer).
    if training_samples >= MIN_SAMPLES_WITHOUT_VALIDATION:
        kept = min(kept, training_samples - 1)
    return kept, training_samples - kept


def steps_per_epoch(training_samples: int, batch_size: int, has_validation_dataset: bool) -> int:
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    kept, _ = training_split(training_samples, has_validation_dataset)
    return math.ceil(kept / batch_size)


def total_steps(epochs: int, steps_per_epoch: int) -> int:
    return epochs * steps_per_epoch


def percentage_done(epochs_completed: int, epochs: int) -> float:
    """Completed epochs over planned epochs × 100: may end below 100 after early stopping."""
    if epochs < 1:
        raise ValueError("epochs must be at least 1")
    return epochs_completed / epochs * 100


def elapsed_time(
    started_at: datetime | None, finished_at: datetime | None, now: datetime
) -> float | None:
    """Seconds the job has been running, or took to run; None before it started."""
    if started_at is None:
        return None
    return ((finished_at or now) - started_at).total_seconds()


def eta_seconds(elapsed: float | None, steps_done: int, steps_total: int) -> float | None:
    """Remaining seconds at the pace so far; None until there is a pace to go by."""
    if elapsed is None or steps_done <= 0 or steps_total <= steps_done:
        return None
    return elapsed / steps_done * (steps_total - steps_done)
