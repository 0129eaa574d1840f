"""What the API takes: the bodies of submissions, renames and uploads. What it answers is in
jobs/wire/serializers.py, shared with the sockets."""

from __future__ import annotations

from rest_framework import serializers

from jobs.domain.hyperparameters import Hyperparameters
from jobs.models import Hardware
from jobs.services import MAX_LINK_INPUTS


class JobRenameSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200, help_text="The job's new name.")


class LinkSubmitSerializer(serializers.Serializer):
    models = serializers.ListField(
        child=serializers.CharField(max_length=32),
        max_length=MAX_LINK_INPUTS,  # checked before any id is looked up
        help_text=f"Ids of ONNX models, in order (at most {MAX_LINK_INPUTS}).",
    )
    name = serializers.CharField(required=False, allow_blank=True, max_length=200)
    device = serializers.CharField(required=False, allow_blank=True, max_length=100)


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
        help_text="What the job runs on: any worker (default), a GPU worker, or a CPU worker.",
    )
    hyperparameters = serializers.DictField(
        required=False, allow_null=True, help_text=f"Defaults: {Hyperparameters().as_dict()}"
    )
    name = serializers.CharField(required=False, allow_blank=True, max_length=200)
    device = serializers.CharField(required=False, allow_blank=True, max_length=100)
    time_limit = serializers.IntegerField(
        required=False, allow_null=True, help_text="Seconds from creation."
    )


class UploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="The file, sent as multipart/form-data.")
    name = serializers.CharField(required=False, allow_blank=True, max_length=200)
