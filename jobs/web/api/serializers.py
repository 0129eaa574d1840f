"""What the API takes: the bodies of submissions, renames and uploads. What it answers is in
jobs/wire/serializers.py, shared with the sockets."""

from __future__ import annotations

from rest_framework import serializers

from jobs.domain.hyperparameters import Hyperparameters
from jobs.models import Hardware
from jobs.services.jobs import MAX_LINK_INPUTS


class JobRenameSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200, help_text="The job's new name.")


class LinkSubmitSerializer(serializers.Serializer):
    models = serializers.ListField(
        child=serializers.CharField(max_length=32),
        max_length=MAX_LINK_INPUTS,  # checked before any id is looked up
        help_text=f"Ids of ONNX models, in order (at most {MAX_LINK_INPUTS}).",
    )
    name = serializers.CharField(required=False, allow_blank=True, max_length=200)
    device = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=200,
        help_text="Where it runs: a device's name or id (GET devices/), an attribute any of "
        "those devices has (accelerator:cuda), or any (default).",
    )


class CustomizationSubmitSerializer(serializers.Serializer):
    dataset = serializers.CharField(
        help_text="Id of a JSONL dataset: prompt/completion rows or chat messages."
    )
    validation_dataset = serializers.CharField(
        required=False, allow_null=True, help_text="Without one, 10% of the dataset validates."
    )
    model = serializers.CharField(
        required=False,
        allow_null=True,
        help_text="A base model the hub offers, by name (GET models/builtin/; default "
        "tiny-llama), or the id of a Hugging Face model you may read (uploaded, or made by an "
        "earlier customization).",
    )
    hardware = serializers.ChoiceField(
        choices=Hardware.choices,
        required=False,
        help_text="What it computes on: whatever the worker has (any, default), a GPU, or the CPU.",
    )
    hyperparameters = serializers.DictField(
        required=False, allow_null=True, help_text=f"Defaults: {Hyperparameters().as_dict()}"
    )
    name = serializers.CharField(required=False, allow_blank=True, max_length=200)
    device = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=200,
        help_text="Where it runs: a device's name or id (GET devices/), an attribute any of "
        "those devices has (accelerator:cuda), or any (default).",
    )
    time_limit = serializers.IntegerField(
        required=False, allow_null=True, help_text="Seconds from creation."
    )


class EvaluationSubmitSerializer(serializers.Serializer):
    models = serializers.ListField(
        child=serializers.CharField(max_length=200),
        help_text="1 to 8 models, each a base model the hub offers by name or the id of a "
        "Hugging Face model you may read: a base model and its fine-tunes side by side.",
    )
    dataset = serializers.CharField(
        help_text="Id of a JSONL dataset: prompt/completion, chat, preference or prompt/answer rows."
    )
    settings = serializers.DictField(
        required=False,
        allow_null=True,
        help_text="max_new_tokens (32), temperature (0: greedy), limit (rows; all), pattern (a "
        "regular expression the outputs are checked against; {answer} is the expected text), seed.",
    )
    name = serializers.CharField(required=False, allow_blank=True, max_length=200)
    time_limit = serializers.IntegerField(
        required=False, allow_null=True, help_text="Seconds from creation."
    )


class ExternalRunSerializer(serializers.Serializer):
    name = serializers.CharField(required=False, allow_blank=True, max_length=200)
    params = serializers.DictField(
        required=False,
        allow_null=True,
        help_text="What to remember beside the charts: the run's hyperparameters, its "
        "configuration (any JSON object, at most 64 KiB).",
    )
    device = serializers.CharField(
        required=False, allow_blank=True, max_length=100, help_text="Where it runs ('cuda:0 A100')."
    )
    epochs = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=1_000_000,
        help_text="Epochs it plans: percentage_done is epochs_completed / epochs × 100.",
    )  # fmt: skip
    total_steps = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=2**53,
        help_text="Steps it plans (the ETA; percentage_done when it gives no epochs).",
    )  # fmt: skip
    time_limit = serializers.IntegerField(
        required=False, allow_null=True, help_text="Seconds from creation."
    )


class ExternalReportSerializer(serializers.Serializer):
    """For the schema only: the view checks the body itself (jobs/engine/runners/external.py),
    in one pass over up to 10,000 points."""

    batch = serializers.IntegerField(
        required=False,
        min_value=0,
        help_text="The report's number, increasing: one sent again (its answer was lost) with a "
        "number already taken is acknowledged and not written twice.",
    )
    metrics = serializers.DictField(
        required=False,
        child=serializers.ListField(child=serializers.JSONField()),
        help_text='Series name → points, each [step, value] or {"step", "value"}; value null for '
        "a gap; at most 10,000 points a report, 100 series a run.",
    )
    status = serializers.DictField(
        required=False,
        help_text="Status details: epochs_completed, steps_completed, training_samples, "
        "best_epoch, train_loss, val_loss, epochs, total_steps.",
    )
    logs = serializers.ListField(
        required=False,
        child=serializers.JSONField(),
        help_text='Lines for the run\'s log, each a string or {"text", "level": info | warning | '
        "error}; at most 1,000 a report.",
    )


class ExternalReportAnswerSerializer(serializers.Serializer):
    id = serializers.CharField()
    status = serializers.CharField()
    cancel_requested = serializers.BooleanField(help_text="The owner asked the run to stop.")
    event_seq = serializers.IntegerField()
    points_written = serializers.IntegerField()
    duplicate = serializers.BooleanField(help_text="A batch already written: nothing written.")


class ExternalFinishSerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=["completed", "failed", "cancelled"], default="completed"
    )
    message = serializers.CharField(required=False, allow_blank=True, max_length=2000)


class UploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="The file, sent as multipart/form-data.")
    name = serializers.CharField(required=False, allow_blank=True, max_length=200)


DEVICE_HELP = (
    "Where it runs and is measured: a device's name or id (GET devices/), or an attribute any of "
    "them has (accelerator:cuda), or any."
)


class CompileSubmitSerializer(serializers.Serializer):
    model = serializers.CharField(help_text="Id of an ONNX model or a Hugging Face causal LM.")
    device = serializers.CharField(max_length=200, help_text=DEVICE_HELP)
    name = serializers.CharField(required=False, allow_blank=True, max_length=200)
    input_specs = serializers.DictField(
        required=False,
        allow_null=True,
        help_text="Seed 000's input_specs: {name: shape} or {name: [shape, dtype]}; needed for "
        "every input with a dynamic dimension.",
    )
    options = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=2000,
        help_text="--target_runtime onnx, --quantize_full_type float16|int8, --quantize_io, "
        "--compute_unit cpu|gpu|all.",
    )
    calibration_data = serializers.CharField(
        required=False, allow_null=True, help_text="Id of a tensors dataset (int8 calibration)."
    )
    time_limit = serializers.IntegerField(required=False, allow_null=True)


class ProfileSubmitSerializer(serializers.Serializer):
    model = serializers.CharField(help_text="Id of an ONNX model with fixed input shapes.")
    device = serializers.CharField(max_length=200, help_text=DEVICE_HELP)
    name = serializers.CharField(required=False, allow_blank=True, max_length=200)
    options = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=2000,
        help_text="--max_profiler_iterations N, --max_profiler_time S, --compute_unit.",
    )
    time_limit = serializers.IntegerField(required=False, allow_null=True)


class InferenceSubmitSerializer(serializers.Serializer):
    model = serializers.CharField(help_text="Id of an ONNX model.")
    device = serializers.CharField(max_length=200, help_text=DEVICE_HELP)
    inputs = serializers.CharField(
        help_text="Id of a tensors dataset (seed 000's h5 layout or .npz): a value per input."
    )
    name = serializers.CharField(required=False, allow_blank=True, max_length=200)
    options = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=2000,
        help_text="--compute_unit; with profile, --max_profiler_iterations N and "
        "--max_profiler_time S too.",
    )
    time_limit = serializers.IntegerField(required=False, allow_null=True)
    profile = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Seed 000's profile=True: once every sample has run, the model is also "
        "profiled there as a profile job profiles it (profile.json, and the profile's figures "
        "in the job's summary beside the outputs').",
    )
