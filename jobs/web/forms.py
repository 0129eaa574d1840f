"""Forms of the upload and submit pages. They only collect input: the services validate it, and
their errors are put back on the field they name."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError

from jobs.domain.hyperparameters import RANGES, Hyperparameters
from jobs.domain.selectors import datasets_visible_to, models_visible_to
from jobs.engine.runners.builtin_models import BUILTIN_MODELS, DEFAULT_BASE_MODEL
from jobs.models import ModelFormat
from jobs.services import MAX_LINK_INPUTS

DEFAULTS = Hyperparameters()


class UploadForm(forms.Form):
    file = forms.FileField()
    name = forms.CharField(required=False, max_length=200, help_text="Defaults to the file's name.")


class BoundedMultipleChoiceField(forms.MultipleChoiceField):
    """Counts the choices before checking each one: that check walks every choice per value."""

    def __init__(self, *args: Any, max_choices: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_choices = max_choices

    def validate(self, value: Any) -> None:
        if len(value) > self.max_choices:
            raise forms.ValidationError(f"Choose at most {self.max_choices}.")
        super().validate(value)


class LinkJobForm(forms.Form):
    models = BoundedMultipleChoiceField(
        max_choices=MAX_LINK_INPUTS, help_text="ONNX models, linked in the order listed."
    )
    name = forms.CharField(required=False, max_length=200)
    device = forms.CharField(required=False, max_length=100)

    def __init__(self, *args: Any, user: User, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        onnx = models_visible_to(user).filter(format=ModelFormat.ONNX)
        self.fields["models"].choices = [(m.public_id, f"{m.name} ({m.public_id})") for m in onnx]  # type: ignore[attr-defined]


class CustomizationJobForm(forms.Form):
    dataset = forms.ChoiceField()
    validation_dataset = forms.ChoiceField(
        required=False, help_text="Without one, 10% of the dataset validates."
    )
    base_model = forms.ChoiceField(label="Base model")
    epochs = forms.IntegerField(initial=DEFAULTS.epochs)
    batch_size = forms.IntegerField(initial=DEFAULTS.batch_size)
    learning_rate = forms.FloatField(initial=DEFAULTS.learning_rate)
    log_every_n_steps = forms.IntegerField(initial=DEFAULTS.log_every_n_steps)
    early_stopping_patience = forms.IntegerField(
        initial=DEFAULTS.early_stopping_patience, help_text="0 turns it off."
    )
    name = forms.CharField(required=False, max_length=200)
    device = forms.CharField(required=False, max_length=100)

    HYPERPARAMETERS = (
        "epochs",
        "batch_size",
        "learning_rate",
        "log_every_n_steps",
        "early_stopping_patience",
    )

    def __init__(self, *args: Any, user: User, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        datasets = [
            (d.public_id, f"{d.name} ({d.num_records} records)") for d in datasets_visible_to(user)
        ]
        self.fields["dataset"].choices = datasets  # type: ignore[attr-defined]
        self.fields["validation_dataset"].choices = [("", "None: hold out 10%"), *datasets]  # type: ignore[attr-defined]
        checkpoints = models_visible_to(user).filter(format=ModelFormat.TORCH)
        self.fields["base_model"].choices = [  # type: ignore[attr-defined]
            *[(name, f"{name} (built-in)") for name in BUILTIN_MODELS],
            *[(m.public_id, f"{m.name} ({m.public_id})") for m in checkpoints],
        ]
        self.fields["base_model"].initial = DEFAULT_BASE_MODEL
        for name in self.HYPERPARAMETERS:
            self.fields[name].help_text = (
                self.fields[name].help_text or f"{RANGES[name].describe()}"
            )

    def hyperparameters(self) -> dict[str, Any]:
        return {name: self.cleaned_data[name] for name in self.HYPERPARAMETERS}


def put_errors(form: forms.BaseForm, error: ValidationError) -> None:
    """A service's errors onto the form: on the field they name, else on the form."""
    for field, messages in error.message_dict.items():
        name = field.removeprefix("hyperparameters.")
        target = name if name in form.fields else None
        for message in messages:
            form.add_error(target, message)
