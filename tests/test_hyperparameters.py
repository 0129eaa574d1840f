import pytest
from django.core.exceptions import ValidationError

from jobs.domain.hyperparameters import Hyperparameters, parse_hyperparameters


def test_missing_hyperparameters_take_their_defaults():
    assert parse_hyperparameters(None) == Hyperparameters()
    assert parse_hyperparameters({"epochs": 2}).epochs == 2
    assert parse_hyperparameters({"epochs": 2}).batch_size == Hyperparameters().batch_size


def test_whole_floats_are_accepted_for_whole_number_fields():
    assert parse_hyperparameters({"epochs": 3.0}).epochs == 3


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"epochs": 0}, "epochs", "≥ 1"),
        ({"epochs": 1001}, "epochs", "≤ 1000"),
        ({"epochs": 2.5}, "epochs", "whole number"),
        ({"epochs": True}, "epochs", "not True"),
        ({"batch_size": "16"}, "batch_size", "not '16'"),
        ({"learning_rate": 0}, "learning_rate", "> 0"),
        ({"learning_rate": float("nan")}, "learning_rate", "nan"),
        ({"early_stopping_patience": -1}, "early_stopping_patience", "≥ 0"),
        ({"lr": 0.1}, "lr", "Unknown hyperparameter 'lr'"),
    ],
)
def test_bad_hyperparameters_are_refused_naming_the_field(data, field, words):
    with pytest.raises(ValidationError) as caught:
        parse_hyperparameters(data)
    assert field in caught.value.message_dict
    assert words in caught.value.message_dict[field][0]


def test_every_bad_field_is_named_at_once():
    with pytest.raises(ValidationError) as caught:
        parse_hyperparameters({"epochs": 0, "batch_size": 0})
    assert set(caught.value.message_dict) == {"epochs", "batch_size"}


def test_hyperparameters_must_be_an_object():
    with pytest.raises(ValidationError, match="object"):
        parse_hyperparameters([1, 2])
