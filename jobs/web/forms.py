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
    training_type = forms.ChoiceField(
        label="Training",
        choices=[
            ("sft", "SFT: learn the completions (prompt/completion or chat rows)"),
            ("dpo", "DPO: prefer the chosen answers over the rejected (preference rows)"),
            ("distillation", "Distillation: learn a teacher's token distributions (SFT rows)"),
            ("grpo", "GRPO: raise a reward scored against each row's answer (prompt/answer rows)"),
        ],
        initial=DEFAULTS.training_type,
        required=False,
    )
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
    teacher = forms.ChoiceField(
        label="Distillation teacher",
        required=False,
        help_text="A model with the base model's tokenizer, whose distributions it learns.",
    )
    reward_kind = forms.ChoiceField(
        label="GRPO reward",
        required=False,
        choices=[
            ("exact_match", "The completion is the answer"),
            ("number", "Its first number is within the tolerance of the answer"),
            ("regex", "It matches the pattern ({answer} stands for the answer)"),
        ],
    )
    reward_tolerance = forms.FloatField(label="GRPO reward: tolerance", required=False)
    reward_pattern = forms.CharField(label="GRPO reward: pattern", required=False, max_length=1000)
    sequence_packing_enabled = forms.BooleanField(
        label="Pack rows into sequences (SFT)",
        required=False,
        help_text="Several rows per sequence of max_seq_length tokens, kept apart: less padding.",
    )
    ref_policy_kl_penalty = forms.FloatField(
        label="DPO beta (ref_policy_kl_penalty)",
        required=False,
        help_text=f"How far the model may move from the base; default {DEFAULTS.dpo.ref_policy_kl_penalty:g}.",
    )
    sft_loss_weight = forms.FloatField(
        label="DPO: SFT loss weight on the chosen answers",
        required=False,
        help_text="0 (default) trains on preferences only.",
    )
    log_every_n_steps = forms.IntegerField(initial=DEFAULTS.log_every_n_steps)
    early_stopping_patience = forms.IntegerField(
        initial=DEFAULTS.early_stopping_patience, help_text="0 turns it off."
    )
    name = forms.CharField(required=False, max_length=200)
    device = device_field()

    HYPERPARAMETERS = (
        "training_type",
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
    DPO = ("ref_policy_kl_penalty", "sft_loss_weight")

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
        self.fields["teacher"].choices = [  # type: ignore[attr-defined]
            ("", "None (not distilling)"),
            *self.fields["base_model"].choices,  # type: ignore[attr-defined]
        ]
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
        if self.cleaned_data.get("sequence_packing_enabled"):
            values["sequence_packing_enabled"] = True
        dpo = {n: self.cleaned_data[n] for n in self.DPO if self.cleaned_data.get(n) is not None}
        if dpo and values.get("training_type") == "dpo":
            values["dpo"] = dpo
        if values.get("training_type") == "grpo":
            kind = self.cleaned_data.get("reward_kind") or "exact_match"
            reward: dict[str, Any] = {"kind": kind}
            if kind == "number":
                reward["tolerance"] = self.cleaned_data.get("reward_tolerance") or 0.0
            if kind == "regex":
                reward["pattern"] = self.cleaned_data.get("reward_pattern") or ""
            values["grpo"] = {"reward": reward}
        if values.get("training_type") == "distillation":
            values["distillation"] = {"teacher": self.cleaned_data.get("teacher") or ""}
        return values


class EvaluationJobForm(forms.Form):
    models = BoundedMultipleChoiceField(
        max_choices=8,
        help_text="1 to 8: a base model and its fine-tunes side by side.",
        widget=forms.SelectMultiple(attrs={"size": 6}),
    )
    dataset = forms.ChoiceField(
        help_text="Its rows' expected answers are what the models are scored against."
    )
    limit = forms.IntegerField(required=False, help_text="The first N rows only; empty: every row.")
    max_new_tokens = forms.IntegerField(initial=32, label="Max new tokens")
    temperature = forms.FloatField(initial=0.0, help_text="0 writes the likeliest tokens (greedy).")
    pattern = forms.CharField(
        required=False,
        max_length=1000,
        help_text="A regular expression each answer is checked against; {answer} is the expected text.",
    )
    name = forms.CharField(required=False, max_length=200)

    def __init__(self, *args: Any, user: User, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        uploaded = models_visible_to(user).filter(format=ModelFormat.HF)
        self.fields["models"].choices = [  # type: ignore[attr-defined]
            *[(m.name, f"{m.name} (offered by this hub)") for m in server_models().values()],
            *[(m.public_id, f"{m.name} ({m.public_id})") for m in uploaded],
        ]
        self.fields["dataset"].choices = [  # type: ignore[attr-defined]
            (d.public_id, f"{d.name} ({d.num_records} {d.get_format_display().lower()} rows)")
            for d in datasets_visible_to(user).exclude(format="tensors")
        ]

    def settings(self) -> dict[str, Any]:
        names = ("limit", "max_new_tokens", "temperature", "pattern")
        return {
            n: self.cleaned_data[n] for n in names if self.cleaned_data.get(n) not in (None, "")
        }


def put_errors(form: forms.BaseForm, error: ValidationError) -> None:
    """A service's errors onto the form: on the field they name, else on the form."""
    for field, messages in error.message_dict.items():
        name = field.removeprefix("hyperparameters.")
        for group in ("lora.", "dpo.", "distillation.", "grpo.", "settings."):
            name = name.removeprefix(group)
        target = name if name in form.fields else None
        for message in messages:
            form.add_error(target, message)


# Seed 000's other kinds: compile, profile, inference. Each names a device; "any" is a choice
# of its own, not the blank one, so that leaving the select untouched is refused by the service
# with its words ("… names a device"), on the field.


def device_job_choices() -> list[tuple[str, str]]:
    """device_choices() with the blank choice asking for one, and "any" spelled out."""
    return [
        ("", "Choose where it runs…"),
        *device_choices()[1:],
        ("any", "Any device (whichever worker is free first)"),
    ]


def _model_label(model: Any) -> str:
    """A model as a select shows it: name, id and, for ONNX, its inputs' shapes (a dynamic
    dimension is a name, which compile's input_specs must fix)."""
    specs = model.metadata.get("input_specs") or {}
    shapes = ", ".join(
        f"{n} [{', '.join(str(d) for d in s.get('shape', []))}]" for n, s in list(specs.items())[:4]
    )
    return f"{model.name} ({model.public_id}){f' · {shapes}' if shapes else ''}"


def _tensor_datasets(user: User) -> list[tuple[str, str]]:
    return [
        (
            d.public_id,
            f"{d.name} ({d.public_id}, {d.num_records} sample{'s' * (d.num_records != 1)})",
        )
        for d in datasets_visible_to(user).filter(format="tensors")
    ]


def options_help(kind: str) -> str:
    """The options a kind takes, named from the parser itself (jobs/domain/job_options.py);
    the page lists what each does."""
    from jobs.domain.job_options import KINDS

    names = ", ".join(f"--{o.name}" for o in KINDS[kind])
    return f"As seed 000's client writes them. A {kind} job takes {names} (each explained below)."


class _DeviceJobForm(forms.Form):
    kind = ""
    model = forms.ChoiceField()
    device = device_field()
    name = forms.CharField(required=False, max_length=200)
    options = forms.CharField(
        required=False,
        max_length=2000,
        widget=forms.TextInput(attrs={"class": "mono", "spellcheck": "false"}),
    )
    MODEL_FORMATS: tuple[str, ...] = (ModelFormat.ONNX,)

    def __init__(self, *args: Any, user: User, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        models = models_visible_to(user).filter(format__in=self.MODEL_FORMATS)
        self.fields["model"].choices = [(m.public_id, _model_label(m)) for m in models]  # type: ignore[attr-defined]
        self.fields["device"].choices = device_job_choices()  # type: ignore[attr-defined]
        self.fields[
            "device"
        ].help_text = (
            "Only workers of that device take the job; what it measures, it measures there."
        )
        self.fields["options"].help_text = options_help(self.kind)


class CompileJobForm(_DeviceJobForm):
    kind = "compile"
    MODEL_FORMATS = (ModelFormat.ONNX, ModelFormat.HF)
    input_specs = forms.CharField(
        required=False,
        label="input_specs",
        widget=forms.Textarea(attrs={"rows": 3, "class": "mono", "spellcheck": "false"}),
        help_text='JSON: each input\'s name and a fixed shape, e.g. {"x": [1, 8]}, or with its '
        'dtype, {"x": [[1, 8], "float32"]}. Needed when the model has dynamic dimensions '
        "(a name such as batch in its shape); empty keeps the model's own shapes.",
    )
    calibration_data = forms.ChoiceField(
        required=False,
        label="Calibration data",
        help_text="A tensors dataset (seed 000's h5, or .npz) of sample inputs: int8 is then "
        "quantized statically, calibrated on it; without one, dynamically.",
    )
    field_order = ("model", "device", "input_specs", "options", "calibration_data", "name")

    def __init__(self, *args: Any, user: User, **kwargs: Any) -> None:
        super().__init__(*args, user=user, **kwargs)
        self.fields[
            "model"
        ].help_text = (
            "An ONNX model, or a Hugging Face causal language model (exported to ONNX first)."
        )
        self.fields["calibration_data"].choices = [("", "None"), *_tensor_datasets(user)]  # type: ignore[attr-defined]
        self.fields["options"].widget.attrs["placeholder"] = "--quantize_full_type float16"

    def clean_input_specs(self) -> Any:
        import json

        text = self.cleaned_data["input_specs"].strip()
        if not text:
            return None
        try:
            specs = json.loads(text)
        except ValueError as error:
            raise ValidationError(f"input_specs is not JSON: {error}.") from None
        if not isinstance(specs, dict):
            raise ValidationError(
                'input_specs is a JSON object of input names and shapes, e.g. {"x": [1, 8]}.'
            )
        return specs


class ProfileJobForm(_DeviceJobForm):
    kind = "profile"
    field_order = ("model", "device", "options", "name")

    def __init__(self, *args: Any, user: User, **kwargs: Any) -> None:
        super().__init__(*args, user=user, **kwargs)
        self.fields["model"].help_text = (
            "An ONNX model with fixed input shapes (compile one with input_specs first if it "
            "has dynamic dimensions)."
        )
        self.fields["options"].widget.attrs["placeholder"] = "--max_profiler_iterations 100"


class InferenceJobForm(_DeviceJobForm):
    kind = "inference"
    inputs = forms.ChoiceField(
        help_text="A tensors dataset: an entry per input of the model, named as the model "
        "names it, each a list of samples (seed 000's h5, or .npz)."
    )
    profile = forms.BooleanField(
        required=False,
        label="Also profile",
        widget=forms.CheckboxInput(attrs={"style": "width: auto"}),  # inputs are full-width
        help_text="Once every sample has run, measure the model there as a profile job does "
        "(load times, latency over timed runs, peak memory, each layer's time); it needs fixed "
        "input shapes, and takes --max_profiler_iterations and --max_profiler_time.",
    )
    field_order = ("model", "device", "inputs", "profile", "options", "name")

    def __init__(self, *args: Any, user: User, **kwargs: Any) -> None:
        super().__init__(*args, user=user, **kwargs)
        self.fields[
            "model"
        ].help_text = "An ONNX model; the inputs must fit its input names, dtypes and shapes."
        self.fields["inputs"].choices = _tensor_datasets(user)  # type: ignore[attr-defined]
        self.fields["options"].widget.attrs["placeholder"] = "--compute_unit cpu"
