"""Report a transformers ``Trainer`` to the hub, live, as MLflow and W&B do with ``report_to``:

    from hubclient import Client, HubCallback
    trainer = Trainer(model, args, train_dataset=…, eval_dataset=…,
                      callbacks=[HubCallback(Client(), name="llama-lora")])
    trainer.train()

Each log becomes points (``loss`` as ``train_loss``, ``eval_loss`` as ``val_loss``, the rest —
``learning_rate``, ``grad_norm``, ``eval_accuracy`` … — under their own names); epochs and
steps become status details, with ``best_epoch`` and its losses (seed 004's meaning: those of the
best checkpoint, by validation loss). Cancelling the job on the hub stops the training at its
next step, and the run ends ``cancelled``. Only the main process of a distributed run reports.
A training that raises never reaches ``on_train_end``: its run falls silent and the hub shows it
``unknown`` after HUB_EXTERNAL_SILENT_AFTER. To have it end ``failed`` at once, start the run
yourself and train inside it::

    with hub.start_run(name="llama-lora") as run:
        Trainer(..., callbacks=[HubCallback(run=run)]).train()
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from hubclient.client import Client
from hubclient.runs import Run

RENAMED = {"loss": "train_loss", "eval_loss": "val_loss"}
# Logged once at the end, about the whole training: not points of a series.
SUMMARY = re.compile(
    r"^(train_runtime|train_samples_per_second|train_steps_per_second|total_flos|train_loss)$"
)
ARGS_KEPT = (
    "learning_rate",
    "num_train_epochs",
    "max_steps",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "weight_decay",
    "warmup_steps",
    "lr_scheduler_type",
    "optim",
    "seed",
)


def _series_name(key: str) -> str:
    return RENAMED.get(key) or re.sub(r"[^A-Za-z0-9_-]", "_", key)[:64]


class HubCallback(TrainerCallback):
    """``HubCallback(client=None, *, name=None, params=None, run=None)``: ``client`` defaults to
    ``Client()`` (``HUB_URL``, ``HUB_API_TOKEN``); ``run`` reports into a run already started."""

    def __init__(
        self,
        client: Client | None = None,
        *,
        name: str | None = None,
        params: dict[str, Any] | None = None,
        run: Run | None = None,
    ) -> None:
        self.client = client
        self.name = name
        self.params = params or {}
        self.run = run
        self._owns_client = False
        self._best: tuple[float, int] | None = None  # (val_loss, epoch)
        self._last_train_loss: float | None = None
        self._best_train_loss: float | None = None
        self._cancelled = False

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if not state.is_world_process_zero:
            return
        epochs = state.num_train_epochs or math.ceil(args.num_train_epochs)
        plan: dict[str, Any] = {"epochs": epochs or None, "total_steps": state.max_steps or None}
        samples = _samples(kwargs.get("train_dataloader"))
        if self.run is None:
            if self.client is None:
                self.client, self._owns_client = Client(), True
            model = kwargs.get("model")
            params = {name: _plain(getattr(args, name, None)) for name in ARGS_KEPT}
            if model is not None and getattr(model, "config", None) is not None:
                params["model"] = (
                    getattr(model.config, "_name_or_path", "") or model.config.model_type
                )
            self.run = self.client.start_run(
                name=self.name or args.run_name or Path(args.output_dir or "trainer").name,
                params={**params, **self.params},
                device=_device(args),
                **{k: v for k, v in plan.items() if v},
            )
        else:
            self.run.set_status(**{k: v for k, v in plan.items() if v})
        if samples is not None:
            self.run.set_status(training_samples=samples)

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if self.run is None or not state.is_world_process_zero or not logs:
            return
        if any(SUMMARY.match(key) for key in logs) and "loss" not in logs:
            return  # the end-of-training summary
        values = {
            _series_name(key): float(value)
            for key, value in logs.items()
            if key != "epoch" and isinstance(value, int | float) and not isinstance(value, bool)
        }
        if "train_loss" in values:
            self._last_train_loss = values["train_loss"]
        if values:
            self.run.log(step=state.global_step, **values)
        if "val_loss" in values and math.isfinite(values["val_loss"]):
            epoch = max(1, round(state.epoch or 0))
            if self._best is None or values["val_loss"] < self._best[0]:
                self._best = (values["val_loss"], epoch)
                self._best_train_loss = self._last_train_loss
                self.run.set_status(
                    epochs_completed=epoch,
                    best_epoch=epoch,
                    val_loss=values["val_loss"],
                    train_loss=self._best_train_loss,
                )

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.run is None or not state.is_world_process_zero:
            return
        self.run.set_status(steps_completed=state.global_step)
        if self.run.cancel_requested:  # its owner cancelled it on the hub
            self._cancelled = True
            control.should_training_stop = True

    def on_epoch_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.run is None or not state.is_world_process_zero:
            return
        epochs = round(state.epoch or 0)
        if self._best is not None:
            epochs = max(epochs, self._best[1])
        self.run.set_status(epochs_completed=epochs, steps_completed=state.global_step)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.run is None or not state.is_world_process_zero:
            return
        self.run.set_status(steps_completed=state.global_step)
        self.run.finish("cancelled" if self._cancelled else "completed")
        if self._owns_client and self.client is not None:
            self.client.close()


def _plain(value: Any) -> Any:
    """An argument as JSON holds it (enums by value)."""
    value = getattr(value, "value", value)
    return value if value is None or isinstance(value, bool | int | float | str) else str(value)


def _device(args: TrainingArguments) -> str:
    device = str(args.device)
    if device.startswith("cuda"):
        import torch

        return f"{device} {torch.cuda.get_device_name(args.device)}"[:100]
    return device


def _samples(loader: Any) -> int | None:
    try:
        return len(loader.dataset)
    except (AttributeError, TypeError):
        return None
