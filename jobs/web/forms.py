"""Forms of the upload and submit pages. They only collect input: the services validate it, and
their errors are put back on the field they name."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError

from jobs.domain.base_models import BUILTIN_NAME, server_models
from jobs.domain.hyperparameters import LORA_RANGES, RANGES, Hyperparameters
from jobs.domain.selectors import datasets_visible_to, models_visible_to
from jobs.models import Device, Hardware, ModelFormat
from jobs.services.jobs import MAX_LINK_INPUTS

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


def device_choices() -> list[tuple[str, str]]:
    """Where a job can run: any worker, a device, or any device with an attribute."""
    known = list(Device.objects.order_by("name"))
    attributes = sorted({a for d in known for a in d.attributes})
    return [
        ("", "Any device"),
        *((d.slug, d.name) for d in known),
        *((a, f"Any device with {a}") for a in attributes),
    ]


def device_field() -> forms.ChoiceField:
    """Its choices are set by the form at each render (device_choices): devices come and go."""
    return forms.ChoiceField(
        required=False,
        label="Device",
        help_text="Only workers of that device take the job (see Devices).",
    )


class LinkJobForm(forms.Form):
    models = BoundedMultipleChoiceField(
        max_choices=MAX_LINK_INPUTS, help_text="ONNX models, linked in the order listed."
    )
    name = forms.CharField(required=False, max_length=200)
    device = device_field()

    def __init__(self, *args: Any, user: User, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        onnx = models_visible_to(user).filter(format=ModelFormat.ONNX)
        self.fields["models"].choices = [(m.public_id, f"{m.name} ({m.public_id})") for m in onnx]  # type: ignore[attr-defined]
        self.fields["device"].choices = device_choices()  # type: ignore[attr-defined]


class CustomizationJobForm(forms.Form):
    dataset = forms.ChoiceField()
    validation_dataset = forms.ChoiceField(
        required=False, help_text="Without one, 10% of the dataset validates."
    )
    base_model = forms.ChoiceField(label="Base model")
    finetuning_type = forms.ChoiceField(
        label="Fine-tuning",
        choices=[("lora", "LoRA adapter (peft)"), ("all_weights", "All weights")],
        initial=DEFAULTS.finetuning_type,
        required=False,
    )
    hardware = forms.ChoiceField(
        choices=Hardware.choices,
        initial=Hardware.ANY,
        required=False,
        label="Compute on",
        help_text="A GPU trains in bfloat16 where it supports it.",
    )
    epochs = forms.IntegerField(initial=DEFAULTS.epochs)
    batch_size = forms.IntegerField(initial=DEFAULTS.batch_size)
    learning_rate = forms.FloatField(initial=DEFAULTS.learning_rate)
    adapter_dim = forms.IntegerField(
        label="LoRA rank (adapter_dim)", initial=DEFAULTS.lora.adapter_dim, required=False
    )
    alpha = forms.IntegerField(label="LoRA alpha", initial=DEFAULTS.lora.alpha, required=False)
    max_seq_length = forms.IntegerField(
        required=False, help_text="Tokens; empty uses the model's context length (at most 2048)."
    )
    overlong_rows = forms.ChoiceField(
        label="Rows longer than that",
        choices=[("refuse", "Refuse the job, naming them"), ("truncate", "Truncate them")],
        initial=DEFAULTS.overlong_rows,
        required=False,
    )
    log_every_n_steps = forms.IntegerField(initial=DEFAULTS.log_every_n_steps)
    early_stopping_patience = forms.IntegerField(
        initial=DEFAULTS.early_stopping_patience, help_text="0 turns it off."
    )
    name = forms.CharField(required=False, max_length=200)
    device = device_field()

    HYPERPARAMETERS = (
        "finetuning_type",
        "epochs",
        "batch_size",
        "learning_rate",
        "max_seq_length",
        "overlong_rows",
        "log_every_n_steps",
        "early_stopping_patience",
    )
    LORA = ("adapter_dim", "alpha")

    def __init__(self, *args: Any, user: User, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        datasets = [
            (d.public_id, f"{d.name} ({d.num_records} {d.get_format_display().lower()} rows)")
            for d in datasets_visible_to(user).exclude(format="tensors")
        ]
        self.fields["dataset"].choices = datasets  # type: ignore[attr-defined]
        self.fields["device"].choices = device_choices()  # type: ignore[attr-defined]
        self.fields["validation_dataset"].choices = [("", "None: hold out 10%"), *datasets]  # type: ignore[attr-defined]
        uploaded = models_visible_to(user).filter(format=ModelFormat.HF)
        self.fields["base_model"].choices = [  # type: ignore[attr-defined]
            *[
                (m.name, f"{m.name} ({'built in' if m.builtin else 'offered by this hub'})")
                for m in server_models().values()
            ],
            *[(m.public_id, f"{m.name} ({m.public_id})") for m in uploaded],
        ]
        self.fields["base_model"].initial = BUILTIN_NAME
        for name in (*self.HYPERPARAMETERS, *self.LORA):
            rule = RANGES.get(name) or LORA_RANGES.get(name)
            if rule is not None:
                self.fields[name].help_text = self.fields[name].help_text or rule.describe()

    def hyperparameters(self) -> dict[str, Any]:
        values: dict[str, Any] = {
            name: self.cleaned_data[name]
            for name in self.HYPERPARAMETERS
            if self.cleaned_data.get(name) not in (None, "")
        }
        if values.get("finetuning_type") == "lora":
            lora = {
                n: self.cleaned_data[n] for n in self.LORA if self.cleaned_data.get(n) is not None
            }
            if lora:
                values["lora"] = lora
        return values


def put_errors(form: forms.BaseForm, error: ValidationError) -> None:
    """A service's errors onto the form: on the field they name, else on the form."""
    for field, messages in error.message_dict.items():
        name = field.removeprefix("hyperparameters.").removeprefix("lora.")
        target = name if name in form.fields else None
        for message in messages:
            form.add_error(target, message)
