"""Seed 004's derived values, checked against worked examples of its formulas."""

from datetime import UTC, datetime, timedelta

import pytest

from jobs.domain import formulas
from tests import factories


@pytest.mark.parametrize(
    ("samples", "batch", "has_validation", "per_epoch"),
    [
        # With a validation dataset: ceil(training_samples / batch_size).
        (1000, 32, True, 32),  # ceil(31.25)
        (64, 32, True, 2),  # exact division
        (1, 8, True, 1),
        # Without: ceil(ceil(0.9 × training_samples) / batch_size).
        (1000, 32, False, 29),  # ceil(900 / 32) = ceil(28.125)
        # ceil(0.9 × 7) = ceil(6.3) = 7 would hold nothing out: 6 kept, 1 validates → ceil(6 / 2)
        (7, 2, False, 3),
        (10, 3, False, 3),  # ceil(9.0) = 9 → ceil(3.0); no float round-up to 10
        (300, 16, False, 17),  # the demo job: 270 kept → ceil(16.875)
    ],
)
def test_steps_per_epoch_follows_the_seed(samples, batch, has_validation, per_epoch):
    assert formulas.steps_per_epoch(samples, batch, has_validation) == per_epoch


def test_total_steps_is_epochs_times_steps_per_epoch():
    # Seed: total_steps = epochs * ceil(ceil(training_samples * 0.9) / batch_size).
    per_epoch = formulas.steps_per_epoch(1000, 32, has_validation_dataset=False)
    assert formulas.total_steps(3, per_epoch) == 87


def test_steps_per_epoch_is_not_divided_by_epochs_again():
    # The seed's steps_per_epoch text divides by epochs once more; that contradicts its own
    # total_steps, so the hub follows total_steps (DESIGN.md).
    assert formulas.steps_per_epoch(1000, 32, True) * 5 == formulas.total_steps(5, 32)


def test_holdout_keeps_ten_percent_for_validation():
    assert formulas.training_split(1000, False) == (900, 100)
    assert formulas.training_split(11, False) == (10, 1)
    assert formulas.training_split(11, True) == (11, 0)


@pytest.mark.parametrize(("rows", "split"), [(2, (1, 1)), (7, (6, 1)), (8, (7, 1)), (10, (9, 1))])
def test_a_small_dataset_still_holds_out_one_row_to_validate(rows, split):
    # ceil(0.9 × n) is n itself below 10 rows: nothing would validate (and the run would have
    # no validation loss), so at least one row is held out whenever there are two.
    assert formulas.training_split(rows, False) == split
    assert formulas.steps_per_epoch(rows, 4, False) == -(-split[0] // 4)


@pytest.mark.parametrize(
    ("completed", "epochs", "percent"), [(0, 5, 0.0), (2, 5, 40.0), (5, 5, 100.0), (3, 10, 30.0)]
)
def test_percentage_done_is_completed_epochs_over_epochs(completed, epochs, percent):
    assert formulas.percentage_done(completed, epochs) == pytest.approx(percent)


def test_elapsed_time_counts_from_start_to_finish_or_now():
    start = datetime(2026, 1, 1, tzinfo=UTC)
    now = start + timedelta(seconds=90)
    assert formulas.elapsed_time(None, None, now) is None
    assert formulas.elapsed_time(start, None, now) == 90
    assert formulas.elapsed_time(start, start + timedelta(seconds=12.5), now) == 12.5


def test_eta_extrapolates_the_pace_so_far():
    assert formulas.eta_seconds(30.0, 10, 40) == pytest.approx(90.0)
    assert formulas.eta_seconds(30.0, 0, 40) is None
    assert formulas.eta_seconds(None, 10, 40) is None


def test_job_derives_its_status_details(alice):
    job = factories.customization_job(alice, epochs=4, batch_size=8)
    # 50 records, no validation dataset: 45 kept → ceil(45 / 8) = 6 per epoch.
    assert (job.training_samples, job.steps_per_epoch, job.total_steps) == (50, 6, 24)
    assert job.percentage_done == 0.0
    assert job.elapsed_time is None
    job.epochs_completed = 3
    assert job.percentage_done == 75.0


def test_link_job_has_no_epoch_based_details(alice):
    job = factories.link_job(alice)
    assert (job.epochs, job.steps_per_epoch, job.total_steps, job.percentage_done) == (None,) * 4
