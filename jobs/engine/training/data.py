"""The training and validation rows as torch datasets, tokenized lazily: a dataset holds the
byte offsets of its lines in the stored JSONL file (8 bytes a row) and reads and tokenizes a
row when the data loader asks for it, so memory does not grow with the dataset."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import torch

from jobs.domain.sft_data import IGNORE, Tokenizer, encode


def line_offsets(path: Path) -> list[int]:
    """Offsets of the non-blank lines."""
    offsets, position = [], 0
    with path.open("rb") as handle:
        for raw in handle:
            if raw.strip():
                offsets.append(position)
            position += len(raw)
    return offsets


def split(offsets: list[int], kept: int, seed: int) -> tuple[list[int], list[int]]:
    """(training, held-out) offsets: shuffled with the job's seed, the first ``kept`` train."""
    order = list(offsets)
    random.Random(seed).shuffle(order)
    return order[:kept], order[kept:]


class Rows(torch.utils.data.Dataset[dict[str, list[int]]]):
    def __init__(
        self, path: Path, offsets: list[int], tokenizer: Tokenizer, max_length: int
    ) -> None:
        self.path, self.offsets = path, offsets
        self.tokenizer, self.max_length = tokenizer, max_length
        self._handle: Any = None

    def __len__(self) -> int:
        return len(self.offsets)

    def record(self, index: int) -> dict[str, Any]:
        if self._handle is None:
            self._handle = self.path.open("rb")
        self._handle.seek(self.offsets[index])
        record: dict[str, Any] = json.loads(self._handle.readline())
        return record

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        # Rows over the limit were refused at submit unless the job truncates them.
        encoded = encode(self.tokenizer, self.record(index), self.max_length, truncate=True)
        assert encoded is not None
        return {"input_ids": encoded.input_ids, "labels": encoded.labels}

    def __getstate__(self) -> dict[str, Any]:  # data loader workers open their own handle
        return {**self.__dict__, "_handle": None}


class Collator:
    """Pads a batch on the right: pad token for inputs, ignored label, mask 0."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, rows: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        width = max(len(row["input_ids"]) for row in rows)
        ids = [row["input_ids"] + [self.pad_id] * (width - len(row["input_ids"])) for row in rows]
        labels = [row["labels"] + [IGNORE] * (width - len(row["labels"])) for row in rows]
        mask = [[1] * len(row["input_ids"]) + [0] * (width - len(row["input_ids"])) for row in rows]
        return {
            "input_ids": torch.tensor(ids),
            "labels": torch.tensor(labels),
            "attention_mask": torch.tensor(mask),
        }
