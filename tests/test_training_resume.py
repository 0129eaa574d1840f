"""Every training type resumes as SFT does: an attempt lost after an epoch's checkpoint is taken
up by the next from that checkpoint (optimizer, scheduler and sampler state with it), not from
step 0, and goes on to the planned epochs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from jobs.domain.base_models import ensure_builtin
from jobs.domain.hyperparameters import parse_hyperparameters
from jobs.domain.numbers import number_in_words
from jobs.engine.training import sft


class Lost(Exception):
    """The worker died right after the first checkpoint was whole."""


class Sink:
    def __init__(self, die_after_checkpoint: bool) -> None:
        self.die = die_after_checkpoint
        self.notes: list[str] = []

    def progress(self, **fields: Any) -> None: ...
    def metric(self, key: str, step: int, value: float) -> None: ...
    def log(self, line: str) -> None: ...
    def note(self, message: str) -> None:
        self.notes.append(message)

    def check_stop(self) -> None: ...

    def checkpoint_done(self, folder: str, state: dict[str, Any]) -> None:
        sft.write_hub_state(folder, state)
        if self.die:
            raise Lost


def _rows(kind: str, path: Path) -> None:
    rows = []
    for n in range(24):
        words = number_in_words(n)
        if kind == "dpo":
            rows.append({"prompt": str(n), "chosen": words, "rejected": "I do not know"})
        elif kind == "grpo":
            rows.append({"prompt": str(n), "answer": words})
        else:
            rows.append({"prompt": str(n), "completion": words})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.mark.parametrize("kind", ["dpo", "grpo", "distillation"])
def test_a_training_type_resumes_from_its_last_checkpoint(kind, tmp_path):
    rows = tmp_path / "rows.jsonl"
    _rows(kind, rows)
    base = ensure_builtin()
    extra: dict[str, Any] = {}
    teacher = None
    if kind == "grpo":
        extra["grpo"] = {"reward": {"kind": "regex", "pattern": "teen"}, "max_completion_length": 4}
    if kind == "distillation":
        teacher = tmp_path / "teacher"
        shutil.copytree(base, teacher)
        extra["distillation"] = {"teacher": "teacher"}
    params = parse_hyperparameters(
        {"training_type": kind, "epochs": 2, "batch_size": 4, "learning_rate": 0.005,
         "early_stopping_patience": 0, **extra}
    )  # fmt: skip
    spec = sft.TrainSpec(
        base=str(base),
        train_file=str(rows),
        validation_file=None,
        kept=20,
        params=params.as_dict(),
        checkpoints=str(tmp_path / "checkpoints"),
        final=str(tmp_path / "final"),
        teacher=str(teacher) if teacher else None,
    )
    with pytest.raises(Lost):
        sft.train(spec, Sink(die_after_checkpoint=True))
    found = sft.latest_checkpoint(tmp_path / "checkpoints")
    assert found is not None and found[1].epoch == 1
    result = sft.train(spec, Sink(die_after_checkpoint=False))
    assert result.resumed_from == found[1].step == 5  # 20 rows, 4 a step
    assert result.epochs_run == 2
    assert (tmp_path / "final" / "merged" / "config.json").is_file()
    assert (tmp_path / "final" / "adapter" / "adapter_config.json").is_file()
