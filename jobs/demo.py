"""The demo account and its jobs, so that a newcomer's first page is not empty.

Everything here is real input: two small ONNX models that share a weight tensor (so linking them
shows the deduplication), and a dataset of numbers spelled out in words that a LoRA adapter on the
built-in tiny-llama learns.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.db import transaction

from jobs.domain.numbers import number_in_words
from jobs.models import Job
from jobs.services.assets import dataset_upload, model_upload
from jobs.services.jobs import job_submit_customization, job_submit_link

DEMO_USERNAME = "demo"
DEMO_CUSTOMIZATION = "Demo: LoRA-tune tiny-llama to spell numbers"
# Chosen by measuring (docs/performance.md, "The demo"): at 0.01 for 12 epochs the validation
# loss jumped about and no held-out number was spelled right (0 of 30); at 0.005 decaying
# (cosine) over 30 epochs, about half a minute of training on 2 cores, 19 of 30 are. All 30
# epochs, no early stopping: the validation loss (per token since issue 26) rises for a few
# epochs before it falls, and a patience of 6 stopped the demo at epoch 10 (best 4, val_loss
# 0.71, none of its three samples right); trained through, best epoch 27, 0.36, two of three.
DEMO_HYPERPARAMETERS = {
    "finetuning_type": "lora",
    "epochs": 30,
    "batch_size": 16,
    "learning_rate": 0.005,
    "optimizer": "adamw_with_cosine_annealing",
    "early_stopping_patience": 0,
    "lora": {"adapter_dim": 16, "alpha": 32},
}


def numbers_dataset(start: int = 0, stop: int = 300) -> bytes:
    """JSONL records {"prompt": "137", "completion": "one hundred and thirty-seven"}."""
    lines = (
        json.dumps({"prompt": str(n), "completion": number_in_words(n)}) for n in range(start, stop)
    )
    return ("\n".join(lines) + "\n").encode()


def tiny_mlp_onnx(
    *, name: str, seed: int, shared: np.ndarray | None = None, inputs: int = 8, outputs: int = 4
) -> bytes:
    """A two-layer perceptron as an ONNX model. ``shared``, when given, is its first weight
    matrix, so that two models can carry an identical tensor."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    hidden = 16
    w1 = shared if shared is not None else rng.standard_normal((inputs, hidden)).astype(np.float32)
    b1 = rng.standard_normal(hidden).astype(np.float32)
    w2 = rng.standard_normal((hidden, outputs)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w1"], ["h0"]),
            helper.make_node("Add", ["h0", "b1"], ["h1"]),
            helper.make_node("Relu", ["h1"], ["h"]),
            helper.make_node("MatMul", ["h", "w2"], ["y"]),
        ],
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", inputs])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", outputs])],
        initializer=[
            numpy_helper.from_array(w1, "w1"),
            numpy_helper.from_array(b1, "b1"),
            numpy_helper.from_array(w2, "w2"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.checker.check_model(model)
    return model.SerializeToString()


@dataclass(frozen=True)
class DemoAccount:
    username: str
    password: str | None  # None when someone changed it since it was made
    jobs_created: int


def _password_file() -> Path:
    return Path(settings.DATA_DIR) / "demo-password"


def ensure_demo() -> DemoAccount:
    """Create the demo account and its demo jobs unless they exist; say how to sign in."""
    users = get_user_model()
    path = _password_file()
    user = users.objects.filter(username=DEMO_USERNAME).first()
    if user is None:
        password = secrets.token_urlsafe(9)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(password)
        path.chmod(0o600)
        user = users.objects.create_user(DEMO_USERNAME, email="demo@example.com", password=password)
    stored = path.read_text().strip() if path.exists() else None
    password_known = stored is not None and user.check_password(stored)
    created = 0
    if not Job.objects.filter(owner=user).exists():
        created = _create_demo_jobs(user)
    return DemoAccount(DEMO_USERNAME, stored if password_known else None, created)


@transaction.atomic
def _create_demo_jobs(user: User) -> int:
    shared = np.random.default_rng(7).standard_normal((8, 16)).astype(np.float32)
    encoder = model_upload(
        owner=user,
        file=ContentFile(
            tiny_mlp_onnx(name="classifier", seed=1, shared=shared), "classifier.onnx"
        ),
    )
    regressor = model_upload(
        owner=user,
        file=ContentFile(tiny_mlp_onnx(name="regressor", seed=2, shared=shared), "regressor.onnx"),
    )
    numbers = dataset_upload(
        owner=user,
        file=ContentFile(numbers_dataset(), "numbers-in-words.jsonl"),
    )
    job_submit_link(owner=user, models=[encoder, regressor], name="Demo: link two models")
    job_submit_customization(
        owner=user,
        dataset=numbers,
        name=DEMO_CUSTOMIZATION,
        hyperparameters=DEMO_HYPERPARAMETERS,
    )
    return 2
